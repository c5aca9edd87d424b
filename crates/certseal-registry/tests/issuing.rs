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
use certseal_store::{Direction, Read, RocksOptions, RocksStore, Table};
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
    r.change_seal_status(&admin, &seal, SealAction::Activate, "filed")
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
    let r = Registry::open(dir.path(), &RegistryOptions::default()).unwrap();
    let admin = actor(ADMIN, Role::Admin);
    let (dept, type_code, seal) = issuer(&r, 1).await;
    let me = actor(&dept, Role::Issuer);
    r.issue_licence(&me, request(&type_code, &seal, "a"))
        .await
        .unwrap();

    r.change_seal_status(&admin, &seal, SealAction::Suspend, "lost")
        .await
        .unwrap();
    let m = precondition(
        r.issue_licence(&me, request(&type_code, &seal, "b"))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("suspended"), "{m}");

    r.change_seal_status(&admin, &seal, SealAction::Reinstate, "found")
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
    let r = Arc::new(Registry::open(dir.path(), &RegistryOptions::default()).unwrap());
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
        r.change_seal_status(&admin, &seal, SealAction::Suspend, "check")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        r.change_seal_status(&admin, &seal, SealAction::Reinstate, "done")
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
