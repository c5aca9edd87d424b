use std::collections::HashMap;
use std::net::SocketAddr;

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::seal_service_client::SealServiceClient;
use certseal::pb::template_service_client::TemplateServiceClient;
use certseal_core::{LicenceClaims, LicenceId};
use tonic::Code;
use tonic::transport::Channel;

use crate::util::*;

pub const PERSON: &str = "11010519491231002X";

/// A department with a published licence type and an active seal.
pub struct Issuer {
    pub dept: String,
    pub type_code: String,
    pub seal_id: String,
    pub seal_cert: Vec<u8>,
}

pub fn food_template(name: &str) -> pb::TemplateContent {
    let mut c = content(name);
    c.fields.extend([
        pb::FieldSpec {
            name: "capital".into(),
            label: "注册资本".into(),
            r#type: pb::FieldType::Decimal as i32,
            scale: 2,
            visibility: pb::Visibility::Public as i32,
            ..Default::default()
        },
        pb::FieldSpec {
            name: "staff".into(),
            label: "从业人数".into(),
            r#type: pb::FieldType::Integer as i32,
            ..Default::default()
        },
        pb::FieldSpec {
            name: "chain".into(),
            label: "连锁".into(),
            r#type: pb::FieldType::Boolean as i32,
            ..Default::default()
        },
        pb::FieldSpec {
            name: "opened".into(),
            label: "开业日期".into(),
            r#type: pb::FieldType::Date as i32,
            ..Default::default()
        },
    ]);
    c
}

/// Registers department `n` with a published type `…001` and an active seal of `alg`.
pub async fn issuer(addr: SocketAddr, n: u32, alg: pb::SealAlgorithm) -> Issuer {
    let channel = connect(addr).await;
    let dept = dept_code(n);
    register(
        &mut certseal::pb::department_service_client::DepartmentServiceClient::new(channel.clone()),
        &dept,
        "厦门市市场监督管理局",
    )
    .await;
    let type_code = format!("{dept}001");
    let mut t = TemplateServiceClient::new(channel.clone());
    t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
        type_code: type_code.clone(),
        base_version: 0,
        content: Some(food_template("食品经营许可证")),
    }))
    .await
    .unwrap();
    t.publish_template(admin(pb::PublishTemplateRequest {
        type_code: type_code.clone(),
        version: 1,
    }))
    .await
    .unwrap();
    let mut s = SealServiceClient::new(channel);
    let seal = s
        .register_seal(admin(pb::RegisterSealRequest {
            department: dept.clone(),
            name: "厦门市市场监督管理局行政审批专用章".into(),
            r#type: pb::SealType::SpecialPurpose as i32,
            image: png(2),
            algorithm: alg as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .seal
        .unwrap();
    s.activate_seal(admin(pb::SealTransitionRequest {
        request_id: String::new(),
        seal_id: seal.seal_id.clone(),
        note: String::new(),
    }))
    .await
    .unwrap();
    Issuer {
        dept,
        type_code,
        seal_id: seal.seal_id,
        seal_cert: seal.certificate_der,
    }
}

fn text(s: &str) -> pb::FieldValue {
    pb::FieldValue {
        value: Some(pb::field_value::Value::Text(s.into())),
    }
}

pub fn fields(name: &str) -> HashMap<String, pb::FieldValue> {
    HashMap::from([
        ("operator_name".to_owned(), text(name)),
        ("legal_rep_id".to_owned(), text(PERSON)),
        ("capital".to_owned(), text("1000.5")),
        (
            "staff".to_owned(),
            pb::FieldValue {
                value: Some(pb::field_value::Value::Integer(12)),
            },
        ),
        (
            "chain".to_owned(),
            pb::FieldValue {
                value: Some(pb::field_value::Value::Boolean(true)),
            },
        ),
        ("opened".to_owned(), text("2026-03-01")),
    ])
}

pub fn request(i: &Issuer, key: &str) -> pb::IssueLicenceRequest {
    pb::IssueLicenceRequest {
        type_code: i.type_code.clone(),
        template_version: 0,
        holder: Some(pb::Holder {
            kind: pb::HolderKind::Person as i32,
            id: PERSON.into(),
            name: "张三".into(),
        }),
        fields: fields("张三小吃店"),
        not_before: None,
        not_after: None,
        seal_id: i.seal_id.clone(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn as_issuer<T>(i: &Issuer, m: T) -> tonic::Request<T> {
    as_actor(&i.dept, "issuer", m)
}

fn licences(channel: Channel) -> LicenceServiceClient<Channel> {
    LicenceServiceClient::new(channel)
}

async fn log_size(addr: SocketAddr) -> u64 {
    AuditServiceClient::new(connect(addr).await)
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .size
}

/// The document verifies with the seal certificate and says what the licence says.
fn check_document(l: &pb::Licence, i: &Issuer) -> LicenceClaims {
    let doc = certseal_crypto::cose::parse_sign1(&l.document, 1 << 20).unwrap();
    doc.verify_with_certificate(&i.seal_cert).unwrap();
    assert_eq!(
        doc.kid,
        certseal_crypto::sha256(&[&i.seal_cert])[..8].to_vec()
    );
    assert_eq!(doc.content_type, "application/certseal-licence+cbor; v=1");
    let claims = LicenceClaims::decode(&doc.payload).unwrap();
    assert_eq!(claims.id.as_str(), l.licence_id);
    assert_eq!(claims.issuer.as_str(), l.issuer);
    assert_eq!(certseal_core::qr::decode(&l.qr).unwrap(), l.document);
    claims
}

#[tokio::test]
async fn issue_read_list_and_idempotency() {
    let server = TestServer::start().await;
    let i = issuer(server.addr(), 1, pb::SealAlgorithm::Ed25519).await;
    let mut c = licences(server.channel().await);
    let l = c
        .issue_licence(as_issuer(&i, request(&i, "k-1")))
        .await
        .unwrap()
        .into_inner();
    // GB/T 36904 shape with a MOD 37,36 check character, issued by the caller's department.
    let id: LicenceId = l.licence_id.parse().unwrap();
    assert_eq!(id.type_code().as_str(), i.type_code);
    assert_eq!(id.issuer().as_str(), i.dept);
    assert_eq!(id.version(), 1);
    // Time and counter (12), then 10 random characters: not guessable from the time.
    assert_eq!(id.serial().len(), 22);
    assert_eq!(l.status(), pb::LicenceStatus::Active);
    assert_eq!(l.holder.as_ref().unwrap().name, "张三");
    let claims = check_document(&l, &i);
    assert_eq!(
        claims.fields["capital"],
        certseal_core::FieldValue::Text("1000.50".into()),
        "canonical decimal"
    );
    assert_eq!(
        claims.exp.unwrap() - claims.nbf,
        1825 * 86400,
        "the template's default validity"
    );
    assert_eq!(l.fields["staff"], fields("x")["staff"]);

    // A retry returns the same licence, byte for byte; another request under the key is refused.
    let again = c
        .issue_licence(as_issuer(&i, request(&i, "k-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.licence_id, l.licence_id);
    assert_eq!(again.document, l.document);
    let mut other = request(&i, "k-1");
    other.fields = fields("另一家店");
    let e = c.issue_licence(as_issuer(&i, other)).await.unwrap_err();
    assert!(e.message().contains(&l.licence_id), "{e:?}");
    expect_code(e, Code::AlreadyExists);

    // Reads: one licence, and lists newest first.
    let got = c
        .get_licence(as_actor(
            &dept_code(9),
            "verifier",
            pb::GetLicenceRequest {
                licence_id: l.licence_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.document, l.document);
    assert_eq!(got.fields, l.fields);
    assert_eq!(got.qr, l.qr);
    let mut ids = vec![l.licence_id.clone()];
    for k in ["k-2", "k-3"] {
        ids.push(
            c.issue_licence(as_issuer(&i, request(&i, k)))
                .await
                .unwrap()
                .into_inner()
                .licence_id,
        );
    }
    ids.reverse();
    let list = |holder: bool, issuer: &str, type_code: &str, size: u32, token: String| {
        pb::ListLicencesRequest {
            holder_kind: if holder {
                pb::HolderKind::Person as i32
            } else {
                0
            },
            holder_id: if holder { PERSON.into() } else { String::new() },
            issuer: issuer.into(),
            type_code: type_code.into(),
            page_size: size,
            page_token: token,
        }
    };
    for req in [
        list(true, "", "", 0, String::new()),
        list(false, &i.dept, "", 0, String::new()),
        list(false, "", &i.type_code, 0, String::new()),
    ] {
        let page = c.list_licences(admin(req)).await.unwrap().into_inner();
        let got: Vec<_> = page.licences.iter().map(|l| l.licence_id.clone()).collect();
        assert_eq!(got, ids, "newest first");
        assert!(
            page.licences[0].document.is_empty(),
            "lists carry no documents"
        );
    }
    let first = c
        .list_licences(admin(list(false, &i.dept, "", 2, String::new())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.licences.len(), 2);
    // A token is opaque: it names no record (the last key read may be another department's),
    // and serves only the list that returned it.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let token = &first.next_page_token;
    assert!(
        !token.contains(&hex(&i.dept)) && !token.contains(&hex(&ids[1])),
        "{token}"
    );
    let mut tampered = token.clone().into_bytes();
    tampered[40] = if tampered[40] == b'0' { b'1' } else { b'0' };
    for (req, what) in [
        (
            list(false, "", &i.type_code, 2, token.clone()),
            "another list",
        ),
        (
            list(false, &i.dept, "", 2, String::from_utf8(tampered).unwrap()),
            "tampered",
        ),
    ] {
        let e = c.list_licences(admin(req)).await.unwrap_err();
        assert_eq!(
            expect_code(e, Code::InvalidArgument)[0].0,
            "page_token",
            "{what}"
        );
    }
    let rest = c
        .list_licences(admin(list(false, &i.dept, "", 2, first.next_page_token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.licences.len(), 1);
    assert_eq!(rest.licences[0].licence_id, ids[2]);
    assert!(rest.next_page_token.is_empty());
    let e = c
        .list_licences(admin(list(true, &i.dept, "", 0, String::new())))
        .await
        .unwrap_err();
    expect_code(e, Code::InvalidArgument);

    // Two racing requests with one key: one licence, both told about it.
    let (mut c1, mut c2) = (c.clone(), c.clone());
    let (a, b) = tokio::join!(
        c1.issue_licence(as_issuer(&i, request(&i, "race"))),
        c2.issue_licence(as_issuer(&i, request(&i, "race")))
    );
    let (a, b) = (a.unwrap().into_inner(), b.unwrap().into_inner());
    assert_eq!(a.licence_id, b.licence_id);
    assert_eq!(a.document, b.document);
    // A suspended licence can be revoked; every change needs a reason in the note.
    let tr = |note: &str| pb::LicenceTransitionRequest {
        request_id: String::new(),
        licence_id: a.licence_id.clone(),
        note: note.into(),
    };
    let f = expect_code(
        c.suspend_licence(as_issuer(&i, tr(""))).await.unwrap_err(),
        Code::InvalidArgument,
    );
    assert_eq!(f[0].0, "note");
    c.suspend_licence(as_issuer(&i, tr("inspection")))
        .await
        .unwrap();
    let r = c
        .revoke_licence(as_issuer(
            &i,
            pb::RevokeLicenceRequest {
                request_id: String::new(),
                licence_id: a.licence_id.clone(),
                reason: pb::LicenceRevocationReason::Cancelled as i32,
                note: "business closed".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), pb::LicenceStatus::Revoked);

    // An ECDSA P-256 seal signs too.
    let p = issuer(server.addr(), 2, pb::SealAlgorithm::EcdsaP256).await;
    let lp = c
        .issue_licence(as_issuer(&p, request(&p, "k-1")))
        .await
        .unwrap()
        .into_inner();
    check_document(&lp, &p);
    server.stop().await;
}

#[tokio::test]
async fn every_lifecycle_path_is_kept_and_logged() {
    let server = TestServer::start().await;
    let i = issuer(server.addr(), 1, pb::SealAlgorithm::Ed25519).await;
    let mut c = licences(server.channel().await);
    let l = c
        .issue_licence(as_issuer(&i, request(&i, "a")))
        .await
        .unwrap()
        .into_inner();
    let id = l.licence_id.clone();
    let tr = |id: &str, note: &str| pb::LicenceTransitionRequest {
        request_id: String::new(),
        licence_id: id.into(),
        note: note.into(),
    };
    expect_code(
        c.reinstate_licence(as_issuer(&i, tr(&id, "")))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );
    let s = c
        .suspend_licence(as_issuer(&i, tr(&id, "inspection")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status(), pb::LicenceStatus::Suspended);
    assert_eq!(s.history.last().unwrap().note, "inspection");
    // Another department cannot touch it; a suspended licence cannot be amended.
    let other = as_actor(&dept_code(5), "issuer", tr(&id, ""));
    expect_code(
        c.reinstate_licence(other).await.unwrap_err(),
        Code::PermissionDenied,
    );
    let mut amend = pb::AmendLicenceRequest {
        request_id: String::new(),
        licence_id: id.clone(),
        fields: fields("张三餐饮有限公司"),
        holder_name: String::new(),
        template_version: 0,
        not_before: None,
        not_after: None,
        seal_id: String::new(),
        note: "new name".into(),
    };
    expect_code(
        c.amend_licence(as_issuer(&i, amend.clone()))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );
    c.reinstate_licence(as_issuer(&i, tr(&id, "passed")))
        .await
        .unwrap();

    // Amend: same serial, next version, prev/next linked, the old one superseded for good.
    let a = c
        .amend_licence(as_issuer(&i, amend.clone()))
        .await
        .unwrap()
        .into_inner();
    let aid: LicenceId = a.licence_id.parse().unwrap();
    let oid: LicenceId = id.parse().unwrap();
    assert_eq!(aid.serial(), oid.serial());
    assert_eq!(aid.version(), 2);
    assert_eq!(a.prev, id);
    let claims = check_document(&a, &i);
    assert_eq!(claims.prev.as_ref().map(|p| p.as_str()), Some(id.as_str()));
    assert_eq!(
        claims.fields["operator_name"],
        certseal_core::FieldValue::Text("张三餐饮有限公司".into())
    );
    assert_eq!(a.not_after, l.not_after, "an amendment keeps the window");
    let old = c
        .get_licence(admin(pb::GetLicenceRequest {
            licence_id: id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.status(), pb::LicenceStatus::Superseded);
    assert_eq!(old.next, a.licence_id);
    amend.licence_id = id.clone();
    expect_code(
        c.amend_licence(as_issuer(&i, amend)).await.unwrap_err(),
        Code::FailedPrecondition,
    );
    expect_code(
        c.suspend_licence(as_issuer(&i, tr(&id, "")))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );

    // Renew: a new window, the same fields.
    let r = c
        .renew_licence(as_issuer(
            &i,
            pb::RenewLicenceRequest {
                licence_id: a.licence_id.clone(),
                note: "renewed on time".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.licence_id.parse::<LicenceId>().unwrap().version(), 3);
    assert_eq!(r.fields, a.fields);
    assert_eq!(r.prev, a.licence_id);

    // Revoke: final.
    let e = c
        .revoke_licence(as_issuer(
            &i,
            pb::RevokeLicenceRequest {
                request_id: String::new(),
                licence_id: r.licence_id.clone(),
                reason: 0,
                note: String::new(),
            },
        ))
        .await
        .unwrap_err();
    expect_code(e, Code::InvalidArgument);
    let v = c
        .revoke_licence(as_issuer(
            &i,
            pb::RevokeLicenceRequest {
                request_id: String::new(),
                licence_id: r.licence_id.clone(),
                reason: pb::LicenceRevocationReason::Withdrawn as i32,
                note: "hygiene violations".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.status(), pb::LicenceStatus::Revoked);
    assert_eq!(
        v.history.last().unwrap().reason(),
        pb::LicenceRevocationReason::Withdrawn
    );
    for e in [
        c.reinstate_licence(as_issuer(&i, tr(&r.licence_id, "")))
            .await
            .unwrap_err(),
        c.suspend_licence(as_issuer(&i, tr(&r.licence_id, "")))
            .await
            .unwrap_err(),
        c.renew_licence(as_issuer(
            &i,
            pb::RenewLicenceRequest {
                licence_id: r.licence_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err(),
    ] {
        expect_code(e, Code::FailedPrecondition);
    }

    // Expiry follows the window: a licence whose window has ended reads as EXPIRED.
    let mut past = request(&i, "past");
    let now = certseal_core::Timestamp::now().0 / 1000;
    past.not_before = Some(prost_types::Timestamp {
        seconds: now - 400 * 86400,
        nanos: 0,
    });
    past.not_after = Some(prost_types::Timestamp {
        seconds: now - 35 * 86400,
        nanos: 0,
    });
    let expired = c
        .issue_licence(as_issuer(&i, past))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expired.status(), pb::LicenceStatus::Expired);

    // Each change is an audit entry committing to the document or the new state.
    let mut a_log = AuditServiceClient::new(server.channel().await);
    let mut stream = a_log
        .export_entries(as_actor(
            ADMIN_DEPT,
            "auditor",
            pb::ExportEntriesRequest { start: 0, end: 0 },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        if let Some(pb::export_chunk::Item::Entry(e)) = chunk.item {
            let entry = certseal_log::Entry::decode(&e.entry).unwrap();
            if entry.kind.starts_with("licence.") {
                assert_eq!(entry.digest, certseal_crypto::sha256(&[&e.record]));
                if entry.kind == "licence.issued" && entry.subject == id {
                    assert_eq!(e.record, l.document, "the entry commits to the document");
                }
                kinds.push((entry.kind, entry.subject));
            }
        }
    }
    let (aid, rid) = (a.licence_id.clone(), r.licence_id.clone());
    let expect: Vec<(&str, &str)> = vec![
        ("licence.issued", &id),
        ("licence.suspended", &id),
        ("licence.reinstated", &id),
        ("licence.amended", &aid),
        ("licence.superseded", &id),
        ("licence.renewed", &rid),
        ("licence.superseded", &aid),
        ("licence.revoked", &rid),
    ];
    let got: Vec<(&str, &str)> = kinds
        .iter()
        .take(expect.len())
        .map(|(k, s)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(got, expect);
    server.stop().await;
}

/// A change that makes a request bad.
type Change = Box<dyn Fn(&mut pb::IssueLicenceRequest)>;

#[tokio::test]
async fn bad_issue_requests_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let i = issuer(server.addr(), 1, pb::SealAlgorithm::Ed25519).await;
    let j = issuer(server.addr(), 2, pb::SealAlgorithm::Ed25519).await;
    // A seal of i's that is registered but not filed.
    let pending = SealServiceClient::new(server.channel().await)
        .register_seal(admin(pb::RegisterSealRequest {
            department: i.dept.clone(),
            name: "合同章".into(),
            r#type: pb::SealType::Contract as i32,
            image: png(5),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .seal
        .unwrap()
        .seal_id;
    // A draft version and a type nobody defined.
    let mut t = TemplateServiceClient::new(server.channel().await);
    t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
        type_code: format!("{}002", i.dept),
        base_version: 0,
        content: Some(food_template("草稿")),
    }))
    .await
    .unwrap();
    let before = log_size(server.addr()).await;
    let mut c = licences(server.channel().await);

    let invalid: Vec<(Change, &str)> = vec![
        (
            Box::new(|r| r.holder.as_mut().unwrap().id = "110105194912310021".into()),
            "holder.id",
        ),
        (
            Box::new(|r| r.holder.as_mut().unwrap().kind = 0),
            "holder.kind",
        ),
        (
            Box::new(|r| {
                r.fields
                    .insert("legal_rep_id".into(), text("110105194912310021"));
            }),
            "fields.legal_rep_id",
        ),
        (
            Box::new(|r| {
                r.fields.remove("operator_name");
            }),
            "fields.operator_name",
        ),
        (
            Box::new(|r| {
                r.fields.insert("colour".into(), text("red"));
            }),
            "fields.colour",
        ),
        (
            Box::new(|r| {
                r.fields.insert("capital".into(), text("12.345"));
            }),
            "fields.capital",
        ),
        (Box::new(|r| r.type_code = "123".into()), "type_code"),
        (Box::new(|r| r.seal_id = "nope".into()), "seal_id"),
        (
            Box::new(|r| r.idempotency_key = String::new()),
            "idempotency_key",
        ),
        (
            Box::new(|r| r.idempotency_key = "k".repeat(129)),
            "idempotency_key",
        ),
        (
            Box::new(|r| {
                r.not_after = Some(prost_types::Timestamp {
                    seconds: 4_000_000_000,
                    nanos: 0,
                })
            }),
            "not_after",
        ),
        (
            Box::new(|r| {
                r.not_before = Some(prost_types::Timestamp {
                    seconds: 1_900_000_000,
                    nanos: 0,
                });
                r.not_after = Some(prost_types::Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                });
            }),
            "not_after",
        ),
    ];
    for (n, (change, field)) in invalid.iter().enumerate() {
        let mut r = request(&i, &format!("bad-{n}"));
        change(&mut r);
        let e = c.issue_licence(as_issuer(&i, r)).await.unwrap_err();
        let shown = format!("{e:?}");
        let fields = expect_code(e, Code::InvalidArgument);
        assert!(fields.iter().any(|(f, _)| f == field), "{field}: {shown}");
    }
    // Several bad fields are reported together.
    let mut r = request(&i, "many");
    r.fields.remove("operator_name");
    r.fields.insert("staff".into(), text("twelve"));
    let f = expect_code(
        c.issue_licence(as_issuer(&i, r)).await.unwrap_err(),
        Code::InvalidArgument,
    );
    assert!(f.len() >= 2, "{f:?}");

    let precondition: Vec<(pb::IssueLicenceRequest, &str)> = vec![
        (
            pb::IssueLicenceRequest {
                type_code: format!("{}007", i.dept),
                ..request(&i, "p1")
            },
            "published",
        ),
        (
            pb::IssueLicenceRequest {
                type_code: format!("{}002", i.dept),
                ..request(&i, "p2")
            },
            "published",
        ),
        (
            pb::IssueLicenceRequest {
                template_version: 9,
                ..request(&i, "p3")
            },
            "published",
        ),
        (
            pb::IssueLicenceRequest {
                seal_id: pending.clone(),
                ..request(&i, "p4")
            },
            "pending",
        ),
        (
            pb::IssueLicenceRequest {
                seal_id: "0190f5e4-7d3a-7c4e-8a1b-2c3d4e5f6a7b".into(),
                ..request(&i, "p5")
            },
            "not registered",
        ),
    ];
    for (r, says) in precondition {
        let e = c.issue_licence(as_issuer(&i, r)).await.unwrap_err();
        assert!(e.message().contains(says), "{says}: {e:?}");
        expect_code(e, Code::FailedPrecondition);
    }
    // Another department's seal; a role that does not issue.
    let e = c
        .issue_licence(as_issuer(
            &i,
            pb::IssueLicenceRequest {
                seal_id: j.seal_id.clone(),
                ..request(&i, "x1")
            },
        ))
        .await
        .unwrap_err();
    expect_code(e, Code::PermissionDenied);
    expect_code(
        c.issue_licence(as_actor(&i.dept, "verifier", request(&i, "x2")))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );
    // An over-long request.
    let mut huge = request(&i, "huge");
    huge.fields
        .insert("operator_name".into(), text(&"店".repeat(2_000_000)));
    let e = c.issue_licence(as_issuer(&i, huge)).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    // Unknown and malformed licence IDs.
    expect_code(
        c.get_licence(admin(pb::GetLicenceRequest {
            licence_id: format!("1.2.156.3005.2.{}.{}.0ABC.001.X", i.type_code, i.dept),
        }))
        .await
        .unwrap_err(),
        Code::InvalidArgument,
    );

    assert_eq!(log_size(server.addr()).await, before, "nothing logged");
    let none = c
        .list_licences(admin(pb::ListLicencesRequest {
            issuer: i.dept.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(none.licences.is_empty(), "nothing stored");
    server.stop().await;
}

#[tokio::test]
async fn documents_verify_with_an_independent_cose_implementation() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = licences(server.channel().await);
    let mut cases = Vec::new();
    for (n, alg) in [
        (1, pb::SealAlgorithm::Ed25519),
        (2, pb::SealAlgorithm::EcdsaP256),
    ] {
        let i = issuer(server.addr(), n, alg).await;
        let l = c
            .issue_licence(as_issuer(&i, request(&i, "py")))
            .await
            .unwrap()
            .into_inner();
        let amended = c
            .amend_licence(as_issuer(
                &i,
                pb::AmendLicenceRequest {
                    licence_id: l.licence_id.clone(),
                    fields: fields("张三餐饮"),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        cases.push((i, l, None));
        let prev = cases.last().unwrap().1.licence_id.clone();
        let i = issuer_clone(&cases.last().unwrap().0);
        cases.push((i, amended, Some(prev)));
    }
    let tl = SealServiceClient::new(server.channel().await)
        .get_trust_list(admin(pb::GetTrustListRequest {}))
        .await
        .unwrap()
        .into_inner()
        .signed;
    std::fs::write(dir.path().join("trust-list.cose"), &tl).unwrap();
    for (n, (i, l, prev)) in cases.iter().enumerate() {
        let doc = dir.path().join(format!("doc{n}.cose"));
        std::fs::write(&doc, &l.document).unwrap();
        let fields: serde_json::Map<String, serde_json::Value> = l
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match v.value.as_ref().unwrap() {
                    pb::field_value::Value::Text(t) => serde_json::json!(t),
                    pb::field_value::Value::Integer(x) => serde_json::json!(x),
                    pb::field_value::Value::Boolean(b) => serde_json::json!(b),
                };
                (k.clone(), v)
            })
            .collect();
        let expected = serde_json::json!({
            "licence_id": l.licence_id,
            "issuer": i.dept,
            "type_code": i.type_code,
            "template_version": 1,
            "seal_id": i.seal_id,
            "holder": {"kind": "person", "id": PERSON, "name": "张三"},
            "fields": fields,
            "prev": prev,
            "nbf": l.not_before.as_ref().unwrap().seconds,
            "exp": l.not_after.as_ref().map(|t| t.seconds),
            "iat": l.issued_at.as_ref().unwrap().seconds,
        });
        let exp = dir.path().join(format!("expected{n}.json"));
        std::fs::write(&exp, expected.to_string()).unwrap();
        let out = std::process::Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/python/verify_licence.py"
            ))
            .args([dir.path().join("trust-list.cose"), doc.clone(), exp.clone()])
            .output()
            .expect("the project virtualenv (scripts/ensure-deps --test makes it)");
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.trim() == "OK", "{said}");
        // And a changed byte is caught by the same independent check.
        let mut bad = l.document.clone();
        let at = bad.len() - 70;
        bad[at] ^= 1;
        std::fs::write(&doc, &bad).unwrap();
        let out = std::process::Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/python/verify_licence.py"
            ))
            .args([dir.path().join("trust-list.cose"), doc, exp])
            .output()
            .expect("the project virtualenv (scripts/ensure-deps --test makes it)");
        assert!(!out.status.success());
    }
    server.stop().await;
}

pub fn issuer_clone(i: &Issuer) -> Issuer {
    Issuer {
        dept: i.dept.clone(),
        type_code: i.type_code.clone(),
        seal_id: i.seal_id.clone(),
        seal_cert: i.seal_cert.clone(),
    }
}

fn cli(server: &ChildServer, as_dept: &str, role: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(args)
        .args([
            "--server",
            &server.url(),
            "--as-department",
            as_dept,
            "--as-role",
            role,
        ])
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A valid resident ID for row `n` (birth date 1980-01-01, sequence n).
fn resident_id(n: u32) -> String {
    let body = format!("110105198001{:02}{:03}", 1 + n % 28, n % 1000);
    (0..11)
        .map(|c| {
            format!(
                "{body}{}",
                if c == 10 {
                    'X'
                } else {
                    char::from(b'0' + c as u8)
                }
            )
        })
        .find(|s| s.parse::<certseal_core::ResidentId>().is_ok())
        .unwrap()
}

#[tokio::test]
async fn cli_issue_and_bulk_import_with_bad_rows_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    let i = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;

    // One licence through the CLI.
    let out = ok(cli(
        &server,
        &i.dept,
        "issuer",
        &[
            "licence",
            "issue",
            "--type",
            &i.type_code,
            "--holder-kind",
            "person",
            "--holder-id",
            PERSON,
            "--holder-name",
            "张三",
            "--seal",
            &i.seal_id,
            "--idempotency-key",
            "cli-1",
            "--field",
            "operator_name=张三小吃店",
            "--field",
            &format!("legal_rep_id={PERSON}"),
            "--field",
            "staff=3",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["licence_id"].as_str().unwrap().to_owned();
    assert_eq!(v["status"], "active");
    assert_eq!(v["fields"]["staff"], 3);
    let qr = ok(cli(&server, &i.dept, "verifier", &["licence", "qr", &id]));
    assert!(qr.starts_with("CS1:"));
    let shown = ok(cli(
        &server,
        &i.dept,
        "issuer",
        &["licence", "suspend", &id, "--note", "check"],
    ));
    assert!(shown.contains("suspended"), "{shown}");

    // A file of 60 rows, 3 of them bad.
    let mut lines = Vec::new();
    for n in 0..60u32 {
        let holder = resident_id(n);
        let line = match n {
            7 => "{not json".to_owned(),
            19 => serde_json::json!({
                "type_code": i.type_code, "seal_id": i.seal_id,
                "holder": {"kind": "person", "id": "110105194912310021", "name": "李四"},
                "fields": {"operator_name": "店", "legal_rep_id": PERSON},
            })
            .to_string(),
            33 => serde_json::json!({
                "type_code": i.type_code, "seal_id": i.seal_id,
                "holder": {"kind": "person", "id": holder, "name": "王五"},
                "fields": {"operator_name": "店", "legal_rep_id": PERSON, "colour": "red"},
            })
            .to_string(),
            _ => serde_json::json!({
                "type_code": i.type_code, "seal_id": i.seal_id,
                "holder": {"kind": "person", "id": holder, "name": format!("持证人{n}")},
                "fields": {"operator_name": format!("第{n}号店"), "legal_rep_id": holder,
                           "capital": "1000.5", "staff": n, "chain": n % 2 == 0},
            })
            .to_string(),
        };
        lines.push(line);
    }
    let file = dir.path().join("licences.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let failures = dir.path().join("failures.jsonl");
    let run = || {
        cli(
            &server,
            &i.dept,
            "issuer",
            &[
                "licence",
                "import",
                file.to_str().unwrap(),
                "--failures",
                failures.to_str().unwrap(),
            ],
        )
    };
    let out = run();
    assert!(!out.status.success(), "bad rows make the import fail");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("57 licences issued, 3 failed"), "{stdout}");
    for line in ["line 8:", "line 20:", "line 34:"] {
        assert!(stderr.contains(line), "{line} in {stderr}");
    }
    assert!(stderr.contains("holder.id"), "{stderr}");
    assert!(stderr.contains("fields.colour"), "{stderr}");
    let failed: Vec<u64> = std::fs::read_to_string(&failures)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(failed, [8, 20, 34]);
    let count = |server: &ChildServer| {
        let out = ok(cli(
            server,
            &i.dept,
            "verifier",
            &["licence", "list", "--issuer", &i.dept, "--json"],
        ));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(&server), 58);
    // Importing the same file again issues nothing twice.
    let again = run();
    assert!(String::from_utf8_lossy(&again.stdout).contains("57 licences issued, 3 failed"));
    assert_eq!(count(&server), 58);

    // Everything acknowledged survives kill -9.
    let before = ok(cli(
        &server,
        &i.dept,
        "verifier",
        &["licence", "get", &id, "--json"],
    ));
    server.kill9();
    let server = ChildServer::spawn(&data);
    let after = ok(cli(
        &server,
        &i.dept,
        "verifier",
        &["licence", "get", &id, "--json"],
    ));
    assert_eq!(before, after);
    assert_eq!(count(&server), 58);
}

#[tokio::test]
async fn stalled_or_endless_bulk_streams_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_config(
        &dir.path().join("data"),
        "[limits]\nstream_idle_secs = 1\nstream_max_items = 3\n",
    )
    .await;
    let i = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;
    let mut c = licences(connect(server.addr).await);
    let item = |n: u32| pb::IssueLicencesItem {
        r#ref: n.to_string(),
        licence: Some(request(&i, &format!("bulk-{n}"))),
    };

    // A client that sends one item and then neither sends nor closes.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(item(0)).await.unwrap();
    let mut results = c
        .issue_licences(as_issuer(
            &i,
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .await
        .unwrap()
        .into_inner();
    let first = results.message().await.unwrap().unwrap();
    assert!(matches!(
        first.outcome,
        Some(pb::issue_licences_result::Outcome::LicenceId(_))
    ));
    let started = std::time::Instant::now();
    let e = loop {
        match results.message().await {
            Err(e) => break e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without an error"),
        }
    };
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(tx);

    // A client that sends more items than a stream may carry.
    let items: Vec<_> = (10..20).map(item).collect();
    let mut results = c
        .issue_licences(as_issuer(&i, tokio_stream::iter(items)))
        .await
        .unwrap()
        .into_inner();
    let mut issued = 0;
    let e = loop {
        match results.message().await {
            Err(e) => break e,
            Ok(Some(_)) => issued += 1,
            Ok(None) => panic!("the stream ended without an error"),
        }
    };
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(issued <= 3, "{issued}");
    server.stop().await.unwrap();
}

/// Issuing from "the latest published version" follows every publication and deprecation,
/// though the registry keeps that version in memory between issues.
#[tokio::test]
async fn the_latest_published_version_follows_publication_and_deprecation() {
    let server = TestServer::start().await;
    let i = issuer(server.addr(), 71, pb::SealAlgorithm::Ed25519).await;
    let channel = server.channel().await;
    let mut l = licences(channel.clone());
    let mut t = TemplateServiceClient::new(channel);
    let mut issue = async |key: &str| {
        l.issue_licence(as_issuer(&i, request(&i, key)))
            .await
            .map(|r| r.into_inner().template_version)
    };
    assert_eq!(issue("v-a").await.unwrap(), 1);
    t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
        type_code: i.type_code.clone(),
        base_version: 1,
        content: Some(food_template("食品经营许可证（第二版）")),
    }))
    .await
    .unwrap();
    assert_eq!(issue("v-b").await.unwrap(), 1, "a draft is not issued from");
    let version = |v| pb::PublishTemplateRequest {
        type_code: i.type_code.clone(),
        version: v,
    };
    t.publish_template(admin(version(2))).await.unwrap();
    assert_eq!(issue("v-c").await.unwrap(), 2);
    let deprecate = |v| pb::DeprecateTemplateRequest {
        type_code: i.type_code.clone(),
        version: v,
    };
    t.deprecate_template(admin(deprecate(2))).await.unwrap();
    assert_eq!(issue("v-d").await.unwrap(), 1);
    t.deprecate_template(admin(deprecate(1))).await.unwrap();
    expect_code(issue("v-e").await.unwrap_err(), Code::FailedPrecondition);
    server.stop().await;
}

/// `n` CJK characters of 4 bytes each in UTF-8 (Extension B), varied so they compress little.
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

/// Every licence a published template issues verifies: a template whose largest licence no
/// check would read is refused at publish, naming the size and the limit; one with ordinary
/// long fields publishes, and its largest licence verifies by ID and by document. A licence
/// whose QR string is too long for a printable QR code is not drawn as one: the CLI says so
/// and what is printed instead; a short licence of the same template prints.
#[tokio::test]
async fn a_published_template_issues_only_licences_that_verify_and_print() {
    use certseal::pb::verification_service_client::VerificationServiceClient;
    use certseal_core::qr::MAX_PRINTABLE_QR_CHARS;

    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(&dir.path().join("data"));
    let i = issuer(server.addr, 1, pb::SealAlgorithm::EcdsaP256).await;
    let t = TemplateServiceClient::new(connect(server.addr).await);
    let text_field = |name: &str, max_length: u32| pb::FieldSpec {
        name: name.into(),
        label: name.into(),
        r#type: pb::FieldType::String as i32,
        max_length,
        visibility: pb::Visibility::Public as i32,
        ..Default::default()
    };
    let draft = |type_code: String, content: pb::TemplateContent| {
        let mut t = t.clone();
        async move {
            t.create_template_draft(admin(pb::CreateTemplateDraftRequest {
                type_code: type_code.clone(),
                base_version: 0,
                content: Some(content),
            }))
            .await
            .unwrap();
            t.publish_template(admin(pb::PublishTemplateRequest {
                type_code,
                version: 1,
            }))
            .await
        }
    };
    // Six text fields of 4,096 characters: a licence of up to 98 KB, which no check would read.
    let mut six = content("大证照");
    six.fields = (1..=6)
        .map(|n| text_field(&format!("t{n}"), 4096))
        .collect();
    let e = draft(format!("{}002", i.dept), six).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let m = e.message();
    let size: usize = m
        .split("a signed document of ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in: {m}"));
    assert!(size > 96 * 1024, "{m}");
    for words in [
        "cannot be published",
        "bytes; verification reads at most 65536",
        "max_length",
        "24576 characters",
    ] {
        assert!(m.contains(words), "{words}: {m}");
    }

    // A business licence's long texts: two of 1,000 characters and one of the default 256.
    let type_code = format!("{}003", i.dept);
    let mut long = content("营业执照");
    long.fields.extend([
        text_field("scope", 1000),
        text_field("scope_licensed", 1000),
        text_field("remarks", 0),
    ]);
    draft(type_code.clone(), long).await.unwrap();

    // Its largest licence: every text at its longest in 4-byte characters.
    let mut r = request(&i, "largest");
    r.type_code = type_code.clone();
    r.holder = Some(pb::Holder {
        kind: pb::HolderKind::Person as i32,
        id: PERSON.into(),
        name: wide_text(200, 1),
    });
    r.fields = HashMap::from([
        ("operator_name".to_owned(), text(&wide_text(100, 2))),
        ("legal_rep_id".to_owned(), text(PERSON)),
        ("scope".to_owned(), text(&wide_text(1000, 3))),
        ("scope_licensed".to_owned(), text(&wide_text(1000, 4))),
        ("remarks".to_owned(), text(&wide_text(256, 5))),
    ]);
    let mut lc = licences(connect(server.addr).await);
    let l = lc
        .issue_licence(as_issuer(&i, r))
        .await
        .unwrap()
        .into_inner();
    assert!(l.document.len() > 9 * 1024, "{}", l.document.len());
    let mut v = VerificationServiceClient::new(connect(server.addr).await);
    let purpose = Some(pb::Purpose {
        code: "ADMIN_APPROVAL".into(),
        text: "核验".into(),
    });
    let by_id = v
        .verify_licence(as_issuer(
            &i,
            pb::VerifyLicenceRequest {
                licence_id: l.licence_id.clone(),
                purpose: purpose.clone(),
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let by_document = v
        .verify_document(as_issuer(
            &i,
            pb::VerifyDocumentRequest {
                document: Some(pb::verify_document_request::Document::Cose(
                    l.document.clone(),
                )),
                purpose,
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    for r in [by_id, by_document] {
        assert_eq!(r.indication(), pb::Indication::TotalPassed, "{}", r.reason);
    }

    // Too long to print as a QR code: the CLI says so, and what carries it instead.
    assert!(l.qr.len() > MAX_PRINTABLE_QR_CHARS, "{}", l.qr.len());
    let png = dir.path().join("largest.png");
    let qr_png = |id: &str, png: &std::path::Path| {
        cli(
            &server,
            &i.dept,
            "issuer",
            &["licence", "qr", id, "--png", png.to_str().unwrap()],
        )
    };
    let out = qr_png(&l.licence_id, &png);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for words in [
        format!("a QR string of {} characters", l.qr.len()),
        format!("at most {MAX_PRINTABLE_QR_CHARS}"),
        format!("<public_page.base_url>/v/{}", l.licence_id),
    ] {
        assert!(err.contains(&words), "{words}: {err}");
    }
    assert!(!png.exists(), "no image is written");
    // The whole string is still there for machines.
    assert_eq!(
        ok(cli(
            &server,
            &i.dept,
            "issuer",
            &["licence", "qr", &l.licence_id]
        ))
        .trim_end(),
        l.qr
    );

    // A licence of the same template with short values prints.
    let mut r = request(&i, "short");
    r.type_code = type_code;
    r.fields = HashMap::from([
        ("operator_name".to_owned(), text("张三小吃店")),
        ("legal_rep_id".to_owned(), text(PERSON)),
        ("scope".to_owned(), text("预包装食品销售；热食类食品制售")),
    ]);
    let short = lc
        .issue_licence(as_issuer(&i, r))
        .await
        .unwrap()
        .into_inner();
    ok(qr_png(&short.licence_id, &png));
    let image = image::open(&png).unwrap();
    assert!(image.width() <= (177 + 8) * 4, "{}", image.width());
    let read = certseal::qr_image::read(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!(read, short.qr);
}
