//! Issuing against seals and departments that change under it. Issuing reads them from memory
//! and the writer skips its own check when nothing changed, so these tests hold it to the log:
//! no licence is signed with a seal, or for a department, that the log shows unusable then.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

mod common;

use certseal_core::seal::SealAction;
use certseal_core::template::{
    FieldSpec, FieldType, TemplateCategory, TemplateContent, Visibility,
};
use certseal_core::{HolderKind, Role};
use certseal_log::Entry;
use certseal_registry::{IssueRequest, Registry, RegistryError, RegistryOptions};
use certseal_store::{Direction, Read, Table};
use certseal_store_rocks::{RocksOptions, RocksStore};
use common::{ADMIN, actor, code, new_seal};

/// A department with a published type and an active seal.
async fn issuer(r: &Registry, n: u32) -> (String, String, String) {
    let admin = actor(ADMIN, Role::Admin);
    let dept = code(n);
    r.register_department(&admin, &dept, "市场监督管理局", "350200")
        .await
        .unwrap();
    let type_code = format!("{dept}001");
    let content = TemplateContent {
        name: "食品经营许可证".into(),
        category: TemplateCategory::Licence,
        default_validity_days: 365,
        fields: vec![FieldSpec {
            name: "scope".into(),
            label: "经营范围".into(),
            field_type: FieldType::String,
            required: true,
            max_length: 0,
            pattern: String::new(),
            enum_values: Vec::new(),
            scale: 0,
            visibility: Visibility::Public,
        }],
    };
    r.create_template_draft(&admin, &type_code, 0, content)
        .await
        .unwrap();
    r.publish_template(&admin, &type_code, 1).await.unwrap();
    let seal = r
        .register_seal(&admin, new_seal(&dept))
        .await
        .unwrap()
        .seal
        .id
        .to_string();
    r.change_seal_status(&admin, &seal, SealAction::Activate, "filed", "")
        .await
        .unwrap();
    (dept, type_code, seal)
}

fn request(type_code: &str, seal: &str, key: &str) -> IssueRequest {
    IssueRequest {
        idempotency_key: key.into(),
        type_code: type_code.into(),
        template_version: 0,
        holder_kind: HolderKind::Organisation,
        holder_id: code(9_000_000),
        holder_name: "厦门某某餐饮有限公司".into(),
        fields: BTreeMap::from([(
            "scope".into(),
            certseal_core::FieldValue::Text("热食类食品制售".into()),
        )]),
        not_before: None,
        not_after: None,
        seal_id: seal.into(),
        existing_id: String::new(),
        collected: None,
    }
}

fn precondition(e: RegistryError) -> String {
    match e {
        RegistryError::FailedPrecondition(m) => m,
        other => panic!("expected a failed precondition, got {other}"),
    }
}

#[tokio::test]
async fn the_next_issue_sees_every_seal_and_department_change() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(
        dir.path(),
        &RocksOptions::default(),
        &RegistryOptions::default(),
    )
    .unwrap();
    let admin = actor(ADMIN, Role::Admin);
    let (dept, type_code, seal) = issuer(&r, 1).await;
    let me = actor(&dept, Role::Issuer);
    r.issue_licence(&me, request(&type_code, &seal, "a"))
        .await
        .unwrap();

    r.change_seal_status(&admin, &seal, SealAction::Suspend, "lost", "")
        .await
        .unwrap();
    let m = precondition(
        r.issue_licence(&me, request(&type_code, &seal, "b"))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("suspended"), "{m}");

    r.change_seal_status(&admin, &seal, SealAction::Reinstate, "found", "")
        .await
        .unwrap();
    r.issue_licence(&me, request(&type_code, &seal, "c"))
        .await
        .unwrap();

    r.deactivate_department(&admin, &dept).await.unwrap();
    let m = precondition(
        r.issue_licence(&me, request(&type_code, &seal, "d"))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("deactivated"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_licence_is_signed_with_a_seal_the_log_shows_suspended() {
    let dir = tempfile::tempdir().unwrap();
    let r = Arc::new(
        Registry::open(
            dir.path(),
            &RocksOptions::default(),
            &RegistryOptions::default(),
        )
        .unwrap(),
    );
    let (dept, type_code, seal) = issuer(&r, 2).await;
    let me = actor(&dept, Role::Issuer);

    // 32 issuers run flat out while the seal is suspended and reinstated 20 times.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut issuers = Vec::new();
    for lane in 0..32 {
        let (r, me, type_code, seal, stop) = (
            r.clone(),
            me.clone(),
            type_code.clone(),
            seal.clone(),
            stop.clone(),
        );
        issuers.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                match r
                    .issue_licence(&me, request(&type_code, &seal, &format!("{lane}-{i}")))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(RegistryError::FailedPrecondition(m)) if m.contains("suspended") => {
                        refused += 1;
                        // A refusal does not wait for anything: let the other tasks run.
                        tokio::task::yield_now().await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            (ok, refused)
        }));
    }
    let admin = actor(ADMIN, Role::Admin);
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        r.change_seal_status(&admin, &seal, SealAction::Suspend, "check", "")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        r.change_seal_status(&admin, &seal, SealAction::Reinstate, "done", "")
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut refused) = (0, 0);
    for t in issuers {
        let (o, f) = t.await.unwrap();
        ok += o;
        refused += f;
    }
    drop(r);
    assert!(refused > 0, "some issues met a suspended seal");

    // Replay the log: every licence.issued entry falls where the seal was active.
    let store = RocksStore::open(&dir.path().join("db"), &RocksOptions::default()).unwrap();
    let mut active: HashMap<String, bool> = HashMap::new();
    let mut issued = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan(
                Table::LogEntries,
                b"",
                after.as_deref(),
                1000,
                Direction::Forward,
            )
            .unwrap();
        for (k, v) in &page.items {
            let e = Entry::decode(v).unwrap();
            match e.kind.as_str() {
                "seal.activated" | "seal.reinstated" => {
                    active.insert(e.subject.clone(), true);
                }
                "seal.suspended" => {
                    active.insert(e.subject.clone(), false);
                }
                "licence.issued" => {
                    issued += 1;
                    assert_eq!(
                        active.get(&seal),
                        Some(&true),
                        "licence {} at log index {} was signed while seal {seal} was suspended",
                        e.subject,
                        e.seq
                    );
                }
                _ => {}
            }
            after = Some(k.clone());
        }
        if page.items.len() < 1000 {
            break;
        }
    }
    assert_eq!(
        issued, ok,
        "every acknowledged issue, and only those, is logged"
    );
}

/// `n` varied CJK characters of 4 bytes each in UTF-8, so they compress little.
fn wide_text(n: usize, seed: u32) -> String {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from_u32(0x20000 + x % 0xA6D0).unwrap()
        })
        .collect()
}

/// A version published before publishing checked the largest licence keeps issuing every
/// licence that verifies, long ones too, and refuses the others, naming the size and the limit.
#[tokio::test]
async fn a_template_published_before_the_bound_issues_only_what_verifies() {
    use certseal_store::{Batch, KvStore};

    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(
        dir.path(),
        &RocksOptions::default(),
        &RegistryOptions::default(),
    )
    .unwrap();
    let admin = actor(ADMIN, Role::Admin);
    let (dept, _, seal) = issuer(&r, 3).await;
    let type_code = format!("{dept}002");
    let six = TemplateContent {
        name: "大证照".into(),
        category: TemplateCategory::Licence,
        default_validity_days: 365,
        fields: (1..=6)
            .map(|n| FieldSpec {
                name: format!("t{n}"),
                label: format!("第{n}栏"),
                field_type: FieldType::String,
                required: false,
                max_length: 4096,
                pattern: String::new(),
                enum_values: Vec::new(),
                scale: 0,
                visibility: Visibility::Public,
            })
            .collect(),
    };
    r.create_template_draft(&admin, &type_code, 0, six)
        .await
        .unwrap();
    let m = precondition(r.publish_template(&admin, &type_code, 1).await.unwrap_err());
    assert!(m.contains("cannot be published"), "{m}");
    drop(r);

    // Published as an older release did, without the check.
    {
        let store = RocksStore::open(&dir.path().join("db"), &RocksOptions::default()).unwrap();
        let key = [type_code.as_bytes(), &1u32.to_be_bytes()].concat();
        let stored = store.get(Table::Templates, &key).unwrap().unwrap();
        let mut t: certseal_core::Template = ciborium::from_reader(stored.as_slice()).unwrap();
        t.status = certseal_core::TemplateStatus::Published;
        t.published_at = Some(certseal_core::Timestamp::now());
        let mut record = Vec::new();
        ciborium::into_writer(&t, &mut record).unwrap();
        let mut b = Batch::new();
        b.put(Table::Templates, key, record);
        store.write(&b, true).unwrap();
    }
    let r = Registry::open(
        dir.path(),
        &RocksOptions::default(),
        &RegistryOptions::default(),
    )
    .unwrap();
    let me = actor(&dept, Role::Issuer);
    let with = |key: &str, text: &dyn Fn(u32) -> String| {
        let mut req = request(&type_code, &seal, key);
        req.fields = (1..=6)
            .map(|n| (format!("t{n}"), certseal_core::FieldValue::Text(text(n))))
            .collect();
        req
    };
    let invalid = |e: RegistryError| match e {
        RegistryError::InvalidArgument(v) => {
            assert_eq!(v.len(), 1, "{v:?}");
            assert_eq!(v[0].field, "fields");
            v[0].description.clone()
        }
        other => panic!("expected an invalid argument, got {other}"),
    };
    let logged = r.latest_checkpoint().checkpoint.size;
    // 96 KB and more: no check would read it.
    let e = r
        .issue_licence(&me, with("huge", &|_| "𠀀".repeat(4096)))
        .await
        .unwrap_err();
    let m = invalid(e);
    let size: usize = m
        .strip_prefix("the signed licence would have ")
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in: {m}"));
    assert!(size > 96 * 1024, "{m}");
    assert!(m.contains("verification reads at most 65536"), "{m}");
    assert_eq!(
        r.latest_checkpoint().checkpoint.size,
        logged,
        "the refusal logged nothing"
    );
    // Long, under 64 KiB: issued, though its QR string is too long to print as a QR code.
    let l = r
        .issue_licence(&me, with("long", &|n| wide_text(1000, n)))
        .await
        .unwrap();
    assert!(
        (20_000..=65_536).contains(&l.document.len()),
        "{}",
        l.document.len()
    );
    assert!(l.qr.len() > certseal_core::qr::MAX_PRINTABLE_QR_CHARS);
    assert_eq!(r.latest_checkpoint().checkpoint.size, logged + 1);
}
