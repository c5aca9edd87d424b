//! Licences collected (归集) under the IDs another platform gave them: a credit-code issuer and a
//! region-code issuer (docs/formats.md, "Licence ID, addition 1.1"), each verified by ID, by
//! document and offline; every refusal; one collecting authority per (type, region); the CLI
//! import of a file.

use std::net::SocketAddr;

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::policy_service_client::PolicyServiceClient;
use certseal::pb::seal_service_client::SealServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;
use certseal_core::{CreditCode, IdIssuer, LicenceClaims, LicenceId, Timestamp, TypeCode};
use certseal_log::{Entry, Extra};
use tonic::Code;

use crate::licences::{Issuer, PERSON, issuer, request};
use crate::util::*;

const REGION: &str = "350200";
/// 2021-06-01T00:00:00Z, when the other platform first issued the licences.
const FIRST_ISSUED_MS: i64 = 1_622_505_600_000;

fn id_of(i: &Issuer, issuer_position: IdIssuer, serial: &str) -> LicenceId {
    let t: TypeCode = i.type_code.parse().unwrap();
    LicenceId::with_issuer(&t, &issuer_position, serial, 1).unwrap()
}

fn dept_of(i: &Issuer) -> IdIssuer {
    IdIssuer::Department(i.dept.parse::<CreditCode>().unwrap())
}

fn region() -> IdIssuer {
    IdIssuer::Region(REGION.parse().unwrap())
}

fn collect(i: &Issuer, existing_id: &str, key: &str) -> pb::IssueLicenceRequest {
    pb::IssueLicenceRequest {
        existing_id: existing_id.into(),
        collected: Some(pb::Collected {
            source: "福建省电子证照库".into(),
            first_issued_at: Some(prost_types::Timestamp {
                seconds: FIRST_ISSUED_MS / 1000,
                nanos: 0,
            }),
        }),
        ..request(i, key)
    }
}

async fn licences(addr: SocketAddr) -> LicenceServiceClient<tonic::transport::Channel> {
    LicenceServiceClient::new(connect(addr).await)
}

/// Names `i` the collecting authority of its type for `regions`.
async fn collecting_authority(addr: SocketAddr, i: &Issuer, regions: &[&str]) {
    PolicyServiceClient::new(connect(addr).await)
        .set_department_policy(admin(pb::SetDepartmentPolicyRequest {
            department: i.dept.clone(),
            roles: vec![pb::Role::Issuer as i32],
            issue: vec![pb::IssueGrant {
                type_code: i.type_code.clone(),
                seal_ids: vec![],
                collect_regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            }],
            ..Default::default()
        }))
        .await
        .unwrap();
}

fn purpose() -> Option<pb::Purpose> {
    Some(pb::Purpose {
        code: "ADMIN_APPROVAL".into(),
        text: "核验归集证照".into(),
    })
}

/// VerifyLicence by ID and VerifyDocument by the COSE document, as another department.
async fn verify_both(addr: SocketAddr, l: &pb::Licence) {
    let mut v = VerificationServiceClient::new(connect(addr).await);
    let by_id = v
        .verify_licence(as_actor(
            &dept_code(9),
            "verifier",
            pb::VerifyLicenceRequest {
                licence_id: l.licence_id.clone(),
                purpose: purpose(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_id.indication(),
        pb::Indication::TotalPassed,
        "{}: {by_id:?}",
        l.licence_id
    );
    let by_doc = v
        .verify_document(as_actor(
            &dept_code(9),
            "verifier",
            pb::VerifyDocumentRequest {
                document: Some(pb::verify_document_request::Document::Cose(
                    l.document.clone(),
                )),
                purpose: purpose(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_doc.indication(),
        pb::Indication::TotalPassed,
        "{}: {by_doc:?}",
        l.licence_id
    );
}

/// The document's claims: its ID is the collected one, `iss` the collecting department.
fn claims(l: &pb::Licence, i: &Issuer) -> LicenceClaims {
    let doc = certseal_crypto::cose::parse_sign1(&l.document, 1 << 20).unwrap();
    doc.verify_with_certificate(&i.seal_cert).unwrap();
    let c = LicenceClaims::decode(&doc.payload).unwrap();
    assert_eq!(c.id.as_str(), l.licence_id);
    assert_eq!(
        c.issuer.as_str(),
        i.dept,
        "iss is the collecting department"
    );
    c
}

#[tokio::test]
async fn collected_ids_verify_by_id_by_document_and_offline() {
    let server = TestServer::start().await;
    let addr = server.addr();
    register(&mut server.departments().await, &dept_code(9), "某核验局").await;
    let a = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    collecting_authority(addr, &a, &[REGION]).await;
    let mut c = licences(addr).await;

    // A credit-code issuer: the caller's own code.
    let own = id_of(&a, dept_of(&a), "HZ2021000123");
    let l = c
        .issue_licence(as_actor(
            &a.dept,
            "issuer",
            collect(&a, own.as_str(), "c-1"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.licence_id, own.as_str());
    assert_eq!(l.issuer, a.dept);
    let got = l.collected.clone().expect("the collected record");
    assert_eq!(got.source, "福建省电子证照库");
    assert_eq!(got.first_issued_at.unwrap().seconds, FIRST_ISSUED_MS / 1000);
    claims(&l, &a);
    verify_both(addr, &l).await;
    // A retry with the same key and request answers with the same licence.
    let again = c
        .issue_licence(as_actor(
            &a.dept,
            "issuer",
            collect(&a, own.as_str(), "c-1"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.document, l.document);

    // A region-code issuer: the ID names the region; the document and the record name the
    // collecting department.
    let regional = id_of(&a, region(), "XM2021000456");
    let r = c
        .issue_licence(as_actor(
            &a.dept,
            "issuer",
            collect(&a, regional.as_str(), "c-2"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.licence_id, regional.as_str());
    assert_eq!(r.issuer, a.dept);
    claims(&r, &a);
    let read = c
        .get_licence(as_actor(
            &a.dept,
            "issuer",
            pb::GetLicenceRequest {
                licence_id: regional.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.collected, r.collected);
    // Its issue entry (the latest) says where and when it was first issued, and commits to
    // the document.
    let mut audit = AuditServiceClient::new(connect(addr).await);
    let size = audit
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .size;
    let entry = audit
        .get_entry(admin(pb::GetEntryRequest { index: size - 1 }))
        .await
        .unwrap()
        .into_inner();
    let entry = Entry::decode(&entry.entry).unwrap();
    assert_eq!(
        (entry.kind.as_str(), entry.subject.as_str()),
        ("licence.issued", regional.as_str())
    );
    assert_eq!(entry.digest, certseal_crypto::sha256(&[&r.document]));
    assert_eq!(
        entry.extra.get("collected_from"),
        Some(&Extra::Text("福建省电子证照库".into()))
    );
    assert_eq!(
        entry.extra.get("first_issued_at"),
        Some(&Extra::Uint(FIRST_ISSUED_MS as u64))
    );
    verify_both(addr, &r).await;

    // The same ID collected twice, under another key: ALREADY_EXISTS, both shapes.
    for (id, key) in [(&own, "c-3"), (&regional, "c-4")] {
        let e = c
            .issue_licence(as_actor(&a.dept, "issuer", collect(&a, id.as_str(), key)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{id}: {e:?}");
    }

    // The same new ID arriving twice at once, under two keys: one is collected, the other is
    // ALREADY_EXISTS (checked before signing and again in the write).
    let racing = id_of(&a, region(), "XM2021000457");
    let (mut c1, mut c2) = (licences(addr).await, licences(addr).await);
    let (x, y) = tokio::join!(
        c1.issue_licence(as_actor(
            &a.dept,
            "issuer",
            collect(&a, racing.as_str(), "r-1")
        )),
        c2.issue_licence(as_actor(
            &a.dept,
            "issuer",
            collect(&a, racing.as_str(), "r-2")
        )),
    );
    let codes = [x.map(|_| Code::Ok), y.map(|_| Code::Ok)].map(|r| r.unwrap_or_else(|e| e.code()));
    assert!(
        codes.contains(&Code::Ok) && codes.contains(&Code::AlreadyExists),
        "{codes:?}"
    );

    // The offline verifier accepts the region-code licence with the trust and status lists.
    let mut seals = SealServiceClient::new(connect(addr).await);
    let ca = seals
        .get_ca_certificate(admin(pb::GetCaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner()
        .der;
    let tl = seals
        .get_trust_list(admin(pb::GetTrustListRequest {}))
        .await
        .unwrap()
        .into_inner()
        .signed;
    let sl = VerificationServiceClient::new(connect(addr).await)
        .get_status_list(admin(pb::GetStatusListRequest { version: 2 }))
        .await
        .unwrap()
        .into_inner()
        .signed;
    let trust_list = certseal_verify::verify_trust_list(&tl, &ca).unwrap();
    let status = certseal_verify::verify_status_list(&sl, &ca).unwrap();
    for doc in [&r.document, &l.document] {
        let o = certseal_verify::verify_document_offline(
            doc,
            &trust_list,
            Some(&status),
            Timestamp::now(),
        );
        assert_eq!(
            o.indication,
            certseal_core::Indication::TotalPassed,
            "{}",
            o.reason
        );
    }

    // A renewal keeps the holder's ID family: the region form, the next version.
    let amended = c
        .renew_licence(as_actor(
            &a.dept,
            "issuer",
            pb::RenewLicenceRequest {
                licence_id: regional.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let next: LicenceId = amended.licence_id.parse().unwrap();
    assert_eq!(next.issuer(), region());
    assert_eq!((next.serial(), next.version()), (regional.serial(), 2));
    assert_eq!(amended.prev, regional.as_str());
    claims(&amended, &a);
    verify_both(addr, &amended).await;
    server.stop().await;
}

async fn refused(
    c: &mut LicenceServiceClient<tonic::transport::Channel>,
    i: &Issuer,
    r: pb::IssueLicenceRequest,
    code: Code,
) -> tonic::Status {
    let e = c
        .issue_licence(as_actor(&i.dept, "issuer", r))
        .await
        .unwrap_err();
    assert_eq!(e.code(), code, "{e:?}");
    e
}

#[tokio::test]
async fn wrong_collected_ids_are_refused() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let a = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let b = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    collecting_authority(addr, &a, &[REGION]).await;
    let mut c = licences(addr).await;

    // A wrong check character.
    let good = id_of(&a, dept_of(&a), "HZ2021000789");
    let last = good.as_str().chars().last().unwrap();
    let wrong = format!(
        "{}{}",
        &good.as_str()[..good.as_str().len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let e = refused(
        &mut c,
        &a,
        collect(&a, &wrong, "w-1"),
        Code::InvalidArgument,
    )
    .await;
    let fields = expect_code(e, Code::InvalidArgument);
    assert!(
        fields
            .iter()
            .any(|(f, d)| f == "existing_id" && d.contains("check character")),
        "{fields:?}"
    );
    // Another department's credit code in the issuer position.
    let theirs = id_of(&a, dept_of(&b), "HZ2021000790");
    let e = refused(
        &mut c,
        &a,
        collect(&a, theirs.as_str(), "w-2"),
        Code::PermissionDenied,
    )
    .await;
    assert!(e.message().contains(&b.dept), "{e:?}");
    // A region the caller is not the collecting authority of; and b, for a's region.
    let elsewhere = id_of(&a, IdIssuer::Region("350500".parse().unwrap()), "QZ1");
    refused(
        &mut c,
        &a,
        collect(&a, elsewhere.as_str(), "w-3"),
        Code::PermissionDenied,
    )
    .await;
    let b_regional = id_of(&b, region(), "XM1");
    refused(
        &mut c,
        &b,
        collect(&b, b_regional.as_str(), "w-4"),
        Code::PermissionDenied,
    )
    .await;
    // An ID of another type than the request's; no collected record; collected without an ID.
    let e = refused(
        &mut c,
        &a,
        collect(&a, b_regional.as_str(), "w-5"),
        Code::InvalidArgument,
    )
    .await;
    assert!(
        expect_code(e, Code::InvalidArgument)
            .iter()
            .any(|(f, _)| f == "existing_id")
    );
    let mut bare = collect(&a, good.as_str(), "w-6");
    bare.collected = None;
    refused(&mut c, &a, bare, Code::InvalidArgument).await;
    let mut future = collect(&a, good.as_str(), "w-7");
    future.collected.as_mut().unwrap().first_issued_at = Some(prost_types::Timestamp {
        seconds: Timestamp::now().0 / 1000 + 86_400,
        nanos: 0,
    });
    refused(&mut c, &a, future, Code::InvalidArgument).await;
    let mut no_id = collect(&a, "", "w-8");
    no_id.existing_id.clear();
    refused(&mut c, &a, no_id, Code::InvalidArgument).await;
    // Nothing was issued by any of them.
    let listed = c
        .list_licences(as_actor(
            &a.dept,
            "issuer",
            pb::ListLicencesRequest {
                issuer: a.dept.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.licences.is_empty(), "{:?}", listed.licences);

    // One collecting authority per (type, region): b cannot be named for a's.
    let e = PolicyServiceClient::new(connect(addr).await)
        .set_department_policy(admin(pb::SetDepartmentPolicyRequest {
            department: b.dept.clone(),
            roles: vec![pb::Role::Issuer as i32],
            issue: vec![pb::IssueGrant {
                type_code: a.type_code.clone(),
                seal_ids: vec![],
                collect_regions: vec![REGION.into()],
            }],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&a.dept), "{e:?}");
    server.stop().await;
}

#[tokio::test]
async fn cli_imports_collected_licences_from_a_json_array() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(&dir.path().join("data"));
    let a = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;
    collecting_authority(server.addr, &a, &[REGION]).await;
    let own = id_of(&a, dept_of(&a), "IMP1");
    let regional = id_of(&a, region(), "IMP2");
    let row = |id: &LicenceId| {
        serde_json::json!({
            "type_code": a.type_code, "seal_id": a.seal_id,
            "holder": {"kind": "person", "id": PERSON, "name": "张三"},
            "fields": {"operator_name": "张三小吃店", "legal_rep_id": PERSON},
            "existing_id": id.as_str(),
            "collected": {"source": "福建省电子证照库", "first_issued_at": "2021-06-01T00:00:00Z"},
        })
    };
    let bad = id_of(&a, IdIssuer::Region("350500".parse().unwrap()), "IMP3");
    let file = dir.path().join("collected.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&[row(&own), row(&regional), row(&bad)]).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["licence", "import", file.to_str().unwrap()])
        .args(["--server", &server.url(), "--as-department", &a.dept])
        .args(["--as-role", "issuer"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a refused row fails the import");
    assert!(stdout.contains("2 licences issued, 1 failed"), "{stdout}");
    assert!(stderr.contains("line 3: PERMISSION_DENIED"), "{stderr}");
    let mut c = licences(server.addr).await;
    for id in [&own, &regional] {
        let l = c
            .get_licence(as_actor(
                &a.dept,
                "issuer",
                pb::GetLicenceRequest {
                    licence_id: id.to_string(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            l.collected.unwrap().first_issued_at.unwrap().seconds,
            FIRST_ISSUED_MS / 1000
        );
    }
}
