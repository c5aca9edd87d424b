use std::net::SocketAddr;

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::seal_service_client::SealServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;
use certseal_core::Timestamp;
use tonic::Code;
use tonic::transport::Channel;

use crate::licences::{Issuer, issuer, request};
use crate::util::*;

fn verifier() -> String {
    dept_code(9)
}

fn purpose() -> Option<pb::Purpose> {
    Some(pb::Purpose {
        code: "ADMIN_APPROVAL".into(),
        text: "食品经营许可申请材料核验".into(),
    })
}

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn ms(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().unwrap();
    t.seconds * 1000 + i64::from(t.nanos / 1_000_000)
}

struct Checker {
    v: VerificationServiceClient<Channel>,
}

impl Checker {
    async fn new(addr: SocketAddr) -> Self {
        Self {
            v: VerificationServiceClient::new(connect(addr).await),
        }
    }

    async fn by_id(&mut self, id: &str, at: Option<i64>) -> pb::VerificationResult {
        self.v
            .verify_licence(as_actor(
                &verifier(),
                "verifier",
                pb::VerifyLicenceRequest {
                    licence_id: id.into(),
                    purpose: purpose(),
                    at: at.map(ts),
                    use_code: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn by_doc(
        &mut self,
        doc: pb::verify_document_request::Document,
    ) -> pb::VerificationResult {
        self.v
            .verify_document(as_actor(
                &verifier(),
                "verifier",
                pb::VerifyDocumentRequest {
                    document: Some(doc),
                    purpose: purpose(),
                    at: None,
                    use_code: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn cose(&mut self, doc: &[u8]) -> pb::VerificationResult {
        self.by_doc(pb::verify_document_request::Document::Cose(doc.to_vec()))
            .await
    }
}

fn says(r: &pb::VerificationResult) -> (pb::Indication, pb::SubIndication) {
    (r.indication(), r.sub_indication())
}

async fn issue(
    addr: SocketAddr,
    i: &Issuer,
    key: &str,
    nb: Option<i64>,
    na: Option<i64>,
) -> pb::Licence {
    let mut r = request(i, key);
    r.not_before = nb.map(ts);
    r.not_after = na.map(ts);
    LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", r))
        .await
        .unwrap()
        .into_inner()
}

fn replace(doc: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = doc
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in the document");
    let mut d = doc.to_vec();
    d[at..at + from.len()].copy_from_slice(to);
    d
}

#[tokio::test]
async fn every_sub_indication_from_a_real_case_and_the_offline_verifier_agrees() {
    use pb::Indication::{Indeterminate, TotalFailed, TotalPassed};
    use pb::SubIndication as S;
    let server = TestServer::start().await;
    let addr = server.addr();
    let i = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let mut c = Checker::new(addr).await;
    let mut l = LicenceServiceClient::new(server.channel().await);
    let now = Timestamp::now().0;
    let tr = |id: &str, note: &str| pb::LicenceTransitionRequest {
        request_id: String::new(),
        licence_id: id.into(),
        note: note.into(),
    };
    let mut docs: Vec<(&str, Vec<u8>, (pb::Indication, S))> = Vec::new();

    // Valid: by ID, by document, by QR.
    let ok = issue(addr, &i, "ok", None, None).await;
    let r = c.by_id(&ok.licence_id, None).await;
    assert_eq!(says(&r), (TotalPassed, S::Unspecified), "{}", r.reason);
    let shown = r.licence.as_ref().unwrap();
    assert!(shown.fields.contains_key("operator_name"), "public field");
    assert!(
        !shown.fields.contains_key("legal_rep_id"),
        "personal field hidden"
    );
    assert_eq!(
        says(&c.cose(&ok.document).await),
        (TotalPassed, S::Unspecified)
    );
    let q = c
        .by_doc(pb::verify_document_request::Document::Qr(ok.qr.clone()))
        .await;
    assert_eq!(says(&q), (TotalPassed, S::Unspecified));
    docs.push(("valid", ok.document.clone(), (TotalPassed, S::Unspecified)));

    // Tampered payload (same length, still well formed): the signature fails.
    let t = replace(&ok.document, "小吃".as_bytes(), "大吃".as_bytes());
    assert_eq!(says(&c.cose(&t).await), (TotalFailed, S::SigCryptoFailure));
    docs.push(("tampered payload", t, (TotalFailed, S::SigCryptoFailure)));
    // Tampered protected header: alg -8 written as -7.
    let t = replace(&ok.document, &[0x01, 0x27], &[0x01, 0x26]);
    assert_eq!(says(&c.cose(&t).await), (TotalFailed, S::SigCryptoFailure));
    docs.push(("tampered header", t, (TotalFailed, S::SigCryptoFailure)));
    // An algorithm certseal does not sign with (-1).
    let t = replace(&ok.document, &[0x01, 0x27], &[0x01, 0x20]);
    assert_eq!(says(&c.cose(&t).await), (TotalFailed, S::FormatFailure));
    docs.push(("unknown algorithm", t, (TotalFailed, S::FormatFailure)));
    // A valid signature by another seal, presented under this seal's key ID.
    let other = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    let by_other = issue(addr, &other, "other", None, None).await;
    let kid_ok = certseal_crypto::sha256(&[&i.seal_cert])[..8].to_vec();
    let kid_other = certseal_crypto::sha256(&[&other.seal_cert])[..8].to_vec();
    let t = replace(&by_other.document, &kid_other, &kid_ok);
    assert_eq!(says(&c.cose(&t).await), (TotalFailed, S::SigCryptoFailure));
    docs.push((
        "another seal's signature",
        t,
        (TotalFailed, S::SigCryptoFailure),
    ));
    // Not a document at all, truncated, untagged, oversize, garbage QR strings.
    for bad in [
        b"garbage".to_vec(),
        ok.document[..ok.document.len() - 9].to_vec(),
        ok.document[1..].to_vec(),
        vec![0xd2; 70_000],
    ] {
        assert_eq!(says(&c.cose(&bad).await), (TotalFailed, S::FormatFailure));
        docs.push(("malformed", bad, (TotalFailed, S::FormatFailure)));
    }
    let bomb = {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0u8; 1 << 20]).unwrap();
        format!("CS1:{}", base45::encode(z.finish().unwrap()))
    };
    for qr in [
        "CS1:!!!".to_owned(),
        ok.qr.replacen("CS1:", "HC1:", 1),
        bomb,
    ] {
        let r = c
            .by_doc(pb::verify_document_request::Document::Qr(qr))
            .await;
        assert_eq!(says(&r), (TotalFailed, S::FormatFailure), "{}", r.reason);
    }

    // Revoked, and valid before.
    let rv = issue(addr, &i, "revoked", None, None).await;
    let before = Timestamp::now().0;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    l.revoke_licence(as_actor(
        &i.dept,
        "issuer",
        pb::RevokeLicenceRequest {
            request_id: String::new(),
            licence_id: rv.licence_id.clone(),
            reason: pb::LicenceRevocationReason::Withdrawn as i32,
            note: "violations".into(),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        says(&c.by_id(&rv.licence_id, None).await),
        (TotalFailed, S::Revoked)
    );
    assert_eq!(
        says(&c.by_id(&rv.licence_id, Some(before)).await),
        (TotalPassed, S::Unspecified),
        "it was valid before the revocation"
    );
    docs.push(("revoked", rv.document.clone(), (TotalFailed, S::Revoked)));
    // Revoked as a penalty (吊销): a reason of its own, the same sub-indication.
    let penalty = issue(addr, &i, "penalty", None, None).await;
    let revoked = l
        .revoke_licence(as_actor(
            &i.dept,
            "issuer",
            pb::RevokeLicenceRequest {
                request_id: String::new(),
                licence_id: penalty.licence_id.clone(),
                reason: pb::LicenceRevocationReason::Penalty as i32,
                note: "行政处罚决定书 厦市监罚〔2026〕1号".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        revoked.history.last().unwrap().reason(),
        pb::LicenceRevocationReason::Penalty
    );
    assert_eq!(
        says(&c.by_id(&penalty.licence_id, None).await),
        (TotalFailed, S::Revoked)
    );
    docs.push((
        "revoked as a penalty",
        penalty.document.clone(),
        (TotalFailed, S::Revoked),
    ));

    // Suspended, then reinstated.
    let su = issue(addr, &i, "suspended", None, None).await;
    l.suspend_licence(as_actor(
        &i.dept,
        "issuer",
        tr(&su.licence_id, "inspection"),
    ))
    .await
    .unwrap();
    let during = Timestamp::now().0;
    assert_eq!(
        says(&c.by_id(&su.licence_id, None).await),
        (Indeterminate, S::Suspended)
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    l.reinstate_licence(as_actor(&i.dept, "issuer", tr(&su.licence_id, "passed")))
        .await
        .unwrap();
    assert_eq!(
        says(&c.by_id(&su.licence_id, None).await),
        (TotalPassed, S::Unspecified)
    );
    assert_eq!(
        says(&c.by_id(&su.licence_id, Some(during)).await),
        (Indeterminate, S::Suspended),
        "at an instant during the suspension"
    );
    docs.push((
        "reinstated",
        su.document.clone(),
        (TotalPassed, S::Unspecified),
    ));

    // Suspended, then revoked: at an instant during the suspension it was not in force.
    let sr = issue(addr, &i, "suspended then revoked", None, None).await;
    l.suspend_licence(as_actor(
        &i.dept,
        "issuer",
        tr(&sr.licence_id, "inspection"),
    ))
    .await
    .unwrap();
    let sr_suspended = Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    l.revoke_licence(as_actor(
        &i.dept,
        "issuer",
        pb::RevokeLicenceRequest {
            request_id: String::new(),
            licence_id: sr.licence_id.clone(),
            reason: pb::LicenceRevocationReason::Withdrawn as i32,
            note: "violations found".into(),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        says(&c.by_id(&sr.licence_id, Some(sr_suspended.0)).await),
        (Indeterminate, S::Suspended)
    );

    // Expired; not yet valid.
    let ex = issue(
        addr,
        &i,
        "expired",
        Some(now - 400 * 86_400_000),
        Some(now - 86_400_000),
    )
    .await;
    assert_eq!(
        says(&c.by_id(&ex.licence_id, None).await),
        (TotalFailed, S::Expired)
    );
    docs.push(("expired", ex.document.clone(), (TotalFailed, S::Expired)));
    let ny = issue(addr, &i, "future", Some(now + 30 * 86_400_000), None).await;
    assert_eq!(
        says(&c.by_id(&ny.licence_id, None).await),
        (Indeterminate, S::NotYetValid)
    );
    docs.push((
        "not yet valid",
        ny.document.clone(),
        (Indeterminate, S::NotYetValid),
    ));

    // A seal revoked for key compromise between two issues.
    let k = issuer(addr, 3, pb::SealAlgorithm::EcdsaP256).await;
    let early = issue(addr, &k, "early", None, None).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let compromised_at = Timestamp::now().0;
    // The late document's iat (whole seconds) must fall after the compromise for the offline
    // verifier too.
    tokio::time::sleep(std::time::Duration::from_millis(
        (1020 - compromised_at % 1000) as u64,
    ))
    .await;
    let late = issue(addr, &k, "late", None, None).await;
    SealServiceClient::new(server.channel().await)
        .revoke_seal(admin(pb::RevokeSealRequest {
            request_id: String::new(),
            seal_id: k.seal_id.clone(),
            reason: pb::RevocationReason::KeyCompromise as i32,
            compromised_at: Some(ts(compromised_at)),
            note: "key copied".into(),
        }))
        .await
        .unwrap();
    let r = c.by_id(&early.licence_id, None).await;
    assert_eq!(
        says(&r),
        (TotalPassed, S::Unspecified),
        "the log proves it was issued before the compromise: {}",
        r.reason
    );
    assert_eq!(
        says(&c.by_id(&late.licence_id, None).await),
        (TotalFailed, S::SealRevoked)
    );
    docs.push((
        "issued after the compromise",
        late.document.clone(),
        (TotalFailed, S::SealRevoked),
    ));

    // Unknown licence; malformed ID; bad purposes; a role that does not check.
    let unknown = format!(
        "1.2.156.3005.2.{}.{}.0ZZZZZZZZZZZ.001.",
        i.type_code, i.dept
    );
    let unknown = (0..36)
        .map(|n| {
            format!(
                "{unknown}{}",
                char::from_digit(n, 36).unwrap().to_ascii_uppercase()
            )
        })
        .find(|s| s.parse::<certseal_core::LicenceId>().is_ok())
        .unwrap();
    assert_eq!(
        says(&c.by_id(&unknown, None).await),
        (TotalFailed, S::UnknownLicence)
    );
    let bad = |id: &str, p: Option<pb::Purpose>, role: &str| {
        as_actor(
            &verifier(),
            role,
            pb::VerifyLicenceRequest {
                licence_id: id.into(),
                purpose: p,
                at: None,
                use_code: String::new(),
            },
        )
    };
    for (req, field) in [
        (bad("1.2.3", purpose(), "verifier"), "licence_id"),
        (bad(&ok.licence_id, None, "verifier"), "purpose.code"),
        (
            bad(
                &ok.licence_id,
                Some(pb::Purpose {
                    code: "CURIOSITY".into(),
                    text: "x".into(),
                }),
                "verifier",
            ),
            "purpose.code",
        ),
        (
            bad(
                &ok.licence_id,
                Some(pb::Purpose {
                    code: "ADMIN_APPROVAL".into(),
                    text: " ".into(),
                }),
                "verifier",
            ),
            "purpose.text",
        ),
    ] {
        let f = expect_code(
            c.v.verify_licence(req).await.unwrap_err(),
            Code::InvalidArgument,
        );
        assert!(f.iter().any(|(n, _)| n == field), "{field}: {f:?}");
    }
    expect_code(
        c.v.verify_licence(bad(&ok.licence_id, purpose(), "auditor"))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
    );

    // The offline verifier, with the trust list and status list, agrees on every document.
    let dir = tempfile::tempdir().unwrap();
    let ca = SealServiceClient::new(server.channel().await)
        .get_ca_certificate(admin(pb::GetCaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner()
        .der;
    let tl = SealServiceClient::new(server.channel().await)
        .get_trust_list(admin(pb::GetTrustListRequest {}))
        .await
        .unwrap()
        .into_inner()
        .signed;
    let sl =
        c.v.get_status_list(admin(pb::GetStatusListRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .signed;
    let trust_list = certseal_verify::verify_trust_list(&tl, &ca).unwrap();
    // Without a version, version 1, as verifiers of version 1 expect.
    let v1 = certseal_verify::verify_status_list(&sl, &ca).unwrap();
    assert_eq!(v1.version(), 1);
    let now = Timestamp::now();
    assert_eq!(
        v1.status_at(&rv.licence_id, now),
        Some(certseal_core::LicenceStatus::Revoked)
    );
    let certseal_core::AnyStatusList::V1(raw) = &v1 else {
        panic!("version 1")
    };
    assert!(
        raw.entries.iter().all(|e| e.id != su.licence_id),
        "reinstated: not in version 1"
    );
    // Version 2 keeps each licence's history and the revocation reason.
    let sl2 =
        c.v.get_status_list(admin(pb::GetStatusListRequest { version: 2 }))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(sl2.version, 2);
    let status = certseal_verify::verify_status_list(&sl2.signed, &ca).unwrap();
    let certseal_core::AnyStatusList::V2(v2) = &status else {
        panic!("version 2")
    };
    let history = |id: &str| &v2.entries.iter().find(|e| e.id == id).unwrap().history;
    assert_eq!(
        history(&rv.licence_id)[0].reason.as_deref(),
        Some("withdrawn")
    );
    assert_eq!(
        history(&penalty.licence_id)[0].reason.as_deref(),
        Some("penalty")
    );
    assert_eq!(history(&su.licence_id).len(), 2, "suspended, reinstated");
    use certseal_core::LicenceStatus::{Revoked, Suspended};
    assert_eq!(
        status.status_at(&su.licence_id, Timestamp(during)),
        Some(Suspended)
    );
    assert_eq!(status.status_at(&su.licence_id, now), None);
    assert_eq!(
        status.status_at(&sr.licence_id, sr_suspended),
        Some(Suspended)
    );
    assert_eq!(status.status_at(&sr.licence_id, now), Some(Revoked));
    // Version 1 knows only the revocation: offline, at an instant of the suspension, it would
    // pass the licence; version 2 answers as the registry does.
    assert_eq!(v1.status_at(&sr.licence_id, sr_suspended), None);
    let o = certseal_verify::verify_document_offline(
        &sr.document,
        &trust_list,
        Some(&status),
        sr_suspended,
    );
    assert_eq!(
        (o.indication, o.sub),
        (
            certseal_core::Indication::Indeterminate,
            Some(certseal_core::SubIndication::Suspended)
        ),
        "{}",
        o.reason
    );
    // Unchanged log, the same signed list: it is not rebuilt and re-signed on every call.
    let again =
        c.v.get_status_list(admin(pb::GetStatusListRequest { version: 2 }))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(again.signed, sl2.signed);
    let e =
        c.v.get_status_list(admin(pb::GetStatusListRequest { version: 3 }))
            .await
            .unwrap_err();
    assert_eq!(expect_code(e, Code::InvalidArgument)[0].0, "version");
    for (what, doc, expected) in &docs {
        let service = says(&c.cose(doc).await);
        assert_eq!(&service, expected, "service, {what}");
        let o = certseal_verify::verify_document_offline(
            doc,
            &trust_list,
            Some(&status),
            Timestamp::now(),
        );
        let offline = (
            match o.indication {
                certseal_core::Indication::TotalPassed => TotalPassed,
                certseal_core::Indication::TotalFailed => TotalFailed,
                certseal_core::Indication::Indeterminate => Indeterminate,
            },
            o.sub
                .map_or(S::Unspecified, |s| S::from_str_name(s.as_str()).unwrap()),
        );
        assert_eq!(offline, service, "offline vs service, {what}: {}", o.reason);
    }
    // Offline, a document of a compromised seal signed before the compromise cannot be proved
    // so: the offline verifier sends the caller to the registry.
    let o = certseal_verify::verify_document_offline(
        &early.document,
        &trust_list,
        Some(&status),
        Timestamp::now(),
    );
    assert_eq!(o.sub, Some(certseal_core::SubIndication::TryLater));
    // Without a status list, the result says the status was not checked.
    let o =
        certseal_verify::verify_document_offline(&rv.document, &trust_list, None, Timestamp::now());
    assert!(
        !o.status_checked && o.reason.contains("not checked"),
        "{}",
        o.reason
    );

    // The CLI does the same from files.
    std::fs::write(dir.path().join("ca.der"), &ca).unwrap();
    std::fs::write(dir.path().join("tl.cose"), &tl).unwrap();
    std::fs::write(dir.path().join("sl.cose"), &sl).unwrap();
    std::fs::write(dir.path().join("doc.cose"), &rv.document).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args([
            "verify",
            dir.path().join("doc.cose").to_str().unwrap(),
            "--json",
        ])
        .args(["--trust-list", dir.path().join("tl.cose").to_str().unwrap()])
        .args(["--ca", dir.path().join("ca.der").to_str().unwrap()])
        .args(["--status", dir.path().join("sl.cose").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["indication"], "TOTAL_FAILED");
    assert_eq!(v["sub_indication"], "REVOKED");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["verify", &ok.qr, "--json"])
        .args(["--trust-list", dir.path().join("tl.cose").to_str().unwrap()])
        .args(["--ca", dir.path().join("ca.der").to_str().unwrap()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["indication"], "TOTAL_PASSED");
    assert_eq!(v["status_checked"], false);
    server.stop().await;
}

#[tokio::test]
async fn receipts_are_signed_logged_listed_and_verify_independently() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let i = issuer(addr, 1, pb::SealAlgorithm::Ed25519).await;
    let l = issue(addr, &i, "r", None, None).await;
    let mut c = Checker::new(addr).await;
    let first = c.by_id(&l.licence_id, None).await;
    let second = c
        .by_doc(pb::verify_document_request::Document::Qr(l.qr.clone()))
        .await;

    // The receipt verifies with the receipt certificate it carries, which the seal CA issued.
    let ca = SealServiceClient::new(server.channel().await)
        .get_ca_certificate(admin(pb::GetCaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner();
    let sign1 = certseal_crypto::cose::parse_sign1(&first.receipt, 1 << 16).unwrap();
    let cert = sign1.x5chain.clone().unwrap();
    sign1.verify_with_certificate(&cert).unwrap();
    certseal_crypto::x509::check_issued_by(&cert, &ca.der, Timestamp::now().0 / 1000).unwrap();
    assert_eq!(
        certseal_crypto::x509::certificate_from_pem_or_der(ca.receipt_certificate_pem.as_bytes())
            .unwrap()
            .der,
        cert
    );
    let receipt = certseal_core::Receipt::decode(&sign1.payload).unwrap();
    assert_eq!(receipt.licence, l.licence_id);
    assert_eq!(receipt.result, certseal_core::Indication::TotalPassed);
    assert_eq!(receipt.verifier.as_str(), verifier());
    assert_eq!(receipt.purpose.code, "ADMIN_APPROVAL");
    assert_eq!(
        receipt.document,
        certseal_crypto::sha256(&[&l.document]).to_vec()
    );
    assert_eq!(receipt.id, first.receipt_id);

    // Independently: Python's cbor2 and cryptography.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("receipt.cose"), &first.receipt).unwrap();
    std::fs::write(dir.path().join("ca.der"), &ca.der).unwrap();
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/verify_receipt.py"
        ))
        .args([dir.path().join("receipt.cose"), dir.path().join("ca.der")])
        .output()
        .expect("the project virtualenv (scripts/ensure-deps --test makes it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(py["licence"], l.licence_id.as_str());
    assert_eq!(py["result"], "TOTAL_PASSED");
    assert_eq!(py["verifier"], verifier().as_str());
    // Version 2: the basis of the check (a department checking by its grant, or unenforced).
    assert_eq!(py["v"], 2);
    assert_eq!(py["basis"]["kind"], "grant");

    // Each receipt is an audit entry whose inclusion proof can be fetched.
    let mut a = AuditServiceClient::new(server.channel().await);
    for _ in 0..100 {
        let size = a
            .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
            .await
            .unwrap()
            .into_inner()
            .size;
        if size > second.receipt_log_index {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let entry = a
        .get_entry(admin(pb::GetEntryRequest {
            index: first.receipt_log_index,
        }))
        .await
        .unwrap()
        .into_inner();
    let e = certseal_log::Entry::decode(&entry.entry).unwrap();
    assert_eq!(e.kind, "receipt.issued");
    assert_eq!(e.subject, first.receipt_id);
    assert_eq!(e.digest, certseal_crypto::sha256(&[&first.receipt]));
    a.get_inclusion_proof(admin(pb::GetInclusionProofRequest {
        target: Some(pb::get_inclusion_proof_request::Target::Index(
            first.receipt_log_index,
        )),
        holder: None,
    }))
    .await
    .unwrap();

    // The holder's right to know: who checked, when, why — newest first.
    let list =
        c.v.list_receipts(admin(pb::ListReceiptsRequest {
            licence_id: l.licence_id.clone(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = list.receipts.iter().map(|r| r.receipt_id.clone()).collect();
    assert_eq!(ids, [second.receipt_id.clone(), first.receipt_id.clone()]);
    assert_eq!(list.receipts[0].verifier, verifier());
    assert_eq!(
        list.receipts[0].purpose.as_ref().unwrap().text,
        "食品经营许可申请材料核验"
    );
    assert_eq!(ms(&list.receipts[1].checked_at), ms(&first.checked_at));

    // A batch: one result per item, errors per item.
    let items = vec![
        pb::VerifyLicencesItem {
            r#ref: "a".into(),
            request: Some(pb::VerifyLicenceRequest {
                licence_id: l.licence_id.clone(),
                purpose: purpose(),
                at: None,
                use_code: String::new(),
            }),
        },
        pb::VerifyLicencesItem {
            r#ref: "b".into(),
            request: Some(pb::VerifyLicenceRequest {
                licence_id: "nonsense".into(),
                purpose: purpose(),
                at: None,
                use_code: String::new(),
            }),
        },
    ];
    let mut stream =
        c.v.verify_licences(as_actor(&verifier(), "verifier", tokio_stream::iter(items)))
            .await
            .unwrap()
            .into_inner();
    let mut got = std::collections::BTreeMap::new();
    while let Some(r) = stream.message().await.unwrap() {
        got.insert(r.r#ref.clone(), r.outcome.unwrap());
    }
    match &got["a"] {
        pb::verify_licences_result::Outcome::Result(r) => {
            assert_eq!(r.indication(), pb::Indication::TotalPassed)
        }
        other => panic!("{other:?}"),
    }
    match &got["b"] {
        pb::verify_licences_result::Outcome::Error(e) => assert_eq!(e.code, "INVALID_ARGUMENT"),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// Signs `claims` with a PKCS#8 key as a licence document under `kid`.
fn forge(
    claims: &certseal_core::LicenceClaims,
    alg: certseal_crypto::KeyAlgorithm,
    pkcs8: &[u8],
    kid: &[u8],
) -> Vec<u8> {
    let signer = certseal_crypto::load_signer(alg, pkcs8).unwrap();
    certseal_crypto::cose::sign1(
        signer.as_ref(),
        kid,
        certseal_core::licence::LICENCE_CONTENT_TYPE,
        None,
        claims.encode(),
    )
    .unwrap()
}

#[tokio::test]
async fn forged_and_superseded_documents_get_their_sub_indications() {
    use certseal_crypto::KeyAlgorithm::Ed25519;
    use pb::Indication::{Indeterminate, TotalFailed};
    use pb::SubIndication as S;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    let i = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;
    let pending = SealServiceClient::new(connect(server.addr).await)
        .register_seal(admin(pb::RegisterSealRequest {
            department: i.dept.clone(),
            name: "合同章".into(),
            r#type: pb::SealType::Contract as i32,
            image: png(7),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .seal
        .unwrap();
    let ok = issue(server.addr, &i, "ok", None, None).await;
    // Superseded: the old document after an amendment.
    let amended = LicenceServiceClient::new(connect(server.addr).await)
        .amend_licence(as_actor(
            &i.dept,
            "issuer",
            pb::AmendLicenceRequest {
                licence_id: ok.licence_id.clone(),
                fields: crate::licences::fields("新名字"),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut c = Checker::new(server.addr).await;
    assert_eq!(
        says(&c.cose(&ok.document).await),
        (TotalFailed, S::Superseded)
    );
    let r = c
        .by_id(&amended.licence_id, Some(Timestamp::now().0 - 3_600_000))
        .await;
    assert_eq!(
        says(&r),
        (Indeterminate, S::NotYetValid),
        "an amendment did not exist an hour ago"
    );
    server.kill9();

    // What a thief with the registry's files could sign: read the keys the registry keeps.
    let kek = certseal_crypto::Kek::load_or_create(&data.join("keys").join("kek")).unwrap();
    let store =
        certseal_store_rocks::RocksStore::open(&data.join("db"), &Default::default()).unwrap();
    let key_of = |id: &str| {
        use certseal_store::Read;
        let sid: certseal_core::SealId = id.parse().unwrap();
        let sealed = store
            .get(certseal_store::Table::SealKeys, sid.as_bytes())
            .unwrap()
            .unwrap();
        kek.open(format!("certseal/seal-key/{id}").as_bytes(), &sealed)
            .unwrap()
    };
    let active_key = key_of(&i.seal_id);
    let pending_key = key_of(&pending.seal_id);
    drop(store);
    let kid = |der: &[u8]| certseal_crypto::sha256(&[der])[..8].to_vec();
    let genuine = certseal_core::LicenceClaims::decode(
        &certseal_crypto::cose::parse_sign1(&amended.document, 1 << 16)
            .unwrap()
            .payload,
    )
    .unwrap();

    // Same licence ID, other content, signed by the right (not revoked) seal key.
    let mut c1 = genuine.clone();
    c1.fields.insert(
        "operator_name".into(),
        certseal_core::FieldValue::Text("冒名顶替".into()),
    );
    let mismatch = forge(&c1, Ed25519, &active_key, &kid(&i.seal_cert));
    // A licence the registry never issued.
    let mut c2 = genuine.clone();
    c2.id = certseal_core::LicenceId::new(&c2.type_code, &c2.issuer, "ZZZZZZZZZZZZ", 1).unwrap();
    let never = forge(&c2, Ed25519, &active_key, &kid(&i.seal_cert));
    // Signed by a seal that was never filed.
    let mut c3 = c2.clone();
    c3.seal = pending.seal_id.parse().unwrap();
    let not_filed = forge(&c3, Ed25519, &pending_key, &kid(&pending.certificate_der));
    // A valid signature by another seal than the one the document names.
    let other_seal = forge(&c2, Ed25519, &pending_key, &kid(&pending.certificate_der));
    // A key nobody certified.
    let stranger = certseal_crypto::x509::generate_key(Ed25519).unwrap();
    let unknown_key = forge(&c2, Ed25519, &stranger.pkcs8, &[7; 8]);

    let server = ChildServer::spawn(&data);
    let mut c = Checker::new(server.addr).await;
    let cases = [
        (
            "document mismatch",
            &mismatch,
            (TotalFailed, S::DocumentMismatch),
        ),
        ("never issued", &never, (TotalFailed, S::UnknownLicence)),
        (
            "seal not filed",
            &not_filed,
            (TotalFailed, S::SealNotActive),
        ),
        (
            "another seal",
            &other_seal,
            (TotalFailed, S::SigCryptoFailure),
        ),
        (
            "unknown key",
            &unknown_key,
            (Indeterminate, S::NoCertificateChainFound),
        ),
    ];
    for (what, doc, expected) in &cases {
        let r = c.cose(doc).await;
        assert_eq!(&says(&r), expected, "{what}: {}", r.reason);
        assert!(
            r.licence.is_none(),
            "{what}: a forgery shows no licence record"
        );
    }
    // A forgery is not filed among the real licence's receipts.
    let receipts =
        c.v.list_receipts(admin(pb::ListReceiptsRequest {
            licence_id: amended.licence_id.clone(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    // Only the genuine check (by ID, an hour back) is listed.
    assert_eq!(receipts.receipts.len(), 1);
    assert_eq!(
        receipts.receipts[0].sub_indication(),
        pb::SubIndication::NotYetValid
    );

    // Offline agrees where it can know (it cannot see the stored bytes or the registry's list
    // of issued licences, so the first two pass signature and seal checks there).
    let ca = SealServiceClient::new(connect(server.addr).await)
        .get_ca_certificate(admin(pb::GetCaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner()
        .der;
    let tl = SealServiceClient::new(connect(server.addr).await)
        .get_trust_list(admin(pb::GetTrustListRequest {}))
        .await
        .unwrap()
        .into_inner()
        .signed;
    let trust_list = certseal_verify::verify_trust_list(&tl, &ca).unwrap();
    for (what, doc, expected) in &cases[2..] {
        let o = certseal_verify::verify_document_offline(doc, &trust_list, None, Timestamp::now());
        assert_eq!(
            o.sub.map(|s| s.as_str()),
            Some(expected.1.as_str_name()),
            "offline, {what}"
        );
    }
}

/// A check that fails applies the reading rule of one that passes: a stored licence whose
/// document can no longer be read (a 70 KB document from before issuing bounded it) is refused
/// to a department whose read grant is for another type, not answered with its holder.
/// Checks read the licence, its document and the seals of its key ID from one snapshot. On a
/// database a snapshot holds a connection, so checks that also read outside it would, many at
/// once, take every connection and each wait for one more (the test cluster has 2 per pool).
/// Each licence here is sealed by a seal of its own, so no check finds its seals in memory, and
/// the servers run on several threads, as `certseal serve` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_checks_at_once_on_a_cold_cache_all_pass() {
    const N: usize = 8;
    let server = TestServer::start().await;
    let addr = server.addr();
    let mut ids = Vec::new();
    for n in 0..N {
        let i = issuer(addr, 1 + n as u32, pb::SealAlgorithm::Ed25519).await;
        ids.push(issue(addr, &i, "cold", None, None).await.licence_id);
    }
    let mut checkers = Vec::new();
    for _ in 0..N {
        checkers.push(Checker::new(addr).await);
    }
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let mut checks = Vec::new();
    for (mut c, id) in checkers.into_iter().zip(ids) {
        let go = go.clone();
        checks.push(tokio::spawn(async move {
            go.wait().await;
            let started = std::time::Instant::now();
            let r = c.by_id(&id, None).await;
            (says(&r), r.reason, started.elapsed())
        }));
    }
    for c in checks {
        let (result, reason, took) = c.await.unwrap();
        assert_eq!(
            result,
            (pb::Indication::TotalPassed, pb::SubIndication::Unspecified),
            "{reason} (after {took:?})"
        );
    }
}

#[tokio::test]
async fn a_failed_check_shows_no_more_than_a_passed_one() {
    use certseal::pb::policy_service_client::PolicyServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let toml = format!("[policy]\nenforce = true\nadmin_department = \"{ADMIN_DEPT}\"\n");
    let server = start_with_config(dir.path(), &toml).await;
    let a = issuer(server.addr, 1, pb::SealAlgorithm::Ed25519).await;
    let other = issuer(server.addr, 2, pb::SealAlgorithm::Ed25519).await;
    let b = verifier();
    register(
        &mut certseal::pb::department_service_client::DepartmentServiceClient::new(
            connect(server.addr).await,
        ),
        &b,
        "某局",
    )
    .await;
    let mut p = PolicyServiceClient::new(connect(server.addr).await);
    p.set_department_policy(admin(pb::SetDepartmentPolicyRequest {
        department: a.dept.clone(),
        roles: vec![pb::Role::Issuer as i32],
        issue: vec![pb::IssueGrant {
            type_code: a.type_code.clone(),
            seal_ids: Vec::new(),
            collect_regions: vec![],
        }],
        ..Default::default()
    }))
    .await
    .unwrap();
    p.set_department_policy(admin(pb::SetDepartmentPolicyRequest {
        department: b.clone(),
        roles: vec![pb::Role::Verifier as i32],
        read: vec![pb::ReadGrant {
            type_code: other.type_code.clone(),
            all_fields: true,
            ..Default::default()
        }],
        ..Default::default()
    }))
    .await
    .unwrap();
    let issued = LicenceServiceClient::new(connect(server.addr).await)
        .issue_licence(as_actor(&a.dept, "issuer", request(&a, "big")))
        .await
        .unwrap()
        .into_inner();
    let check = |dept: String, role: &'static str, addr: SocketAddr| {
        let id = issued.licence_id.clone();
        async move {
            VerificationServiceClient::new(connect(addr).await)
                .verify_licence(as_actor(
                    &dept,
                    role,
                    pb::VerifyLicenceRequest {
                        licence_id: id,
                        purpose: purpose(),
                        at: None,
                        use_code: String::new(),
                    },
                ))
                .await
        }
    };
    // B's grant is for another type: a check that passes is refused.
    let e = check(b.clone(), "verifier", server.addr).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    server.stop().await.unwrap();

    // The stored document becomes one no check reads: 70 KB, beyond the 64 KiB read.
    {
        use certseal_store::KvStore;
        let store =
            certseal_store_rocks::RocksStore::open(&dir.path().join("db"), &Default::default())
                .unwrap();
        let mut batch = certseal_store::Batch::new();
        let mut big = issued.document.clone();
        big.resize(70_000, 0);
        batch.put(
            certseal_store::Table::Records,
            certseal_crypto::sha256(&[&issued.document]).to_vec(),
            big,
        );
        store.write(&batch, true).unwrap();
    }
    let server = start_with_config(dir.path(), &toml).await;
    // The issuer sees its own licence fail, with its record.
    let mine = check(a.dept.clone(), "issuer", server.addr)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (mine.indication(), mine.sub_indication()),
        (
            pb::Indication::TotalFailed,
            pb::SubIndication::FormatFailure
        ),
        "{}",
        mine.reason
    );
    assert!(mine.reason.contains("65536"), "{}", mine.reason);
    assert_eq!(
        mine.licence.unwrap().holder.unwrap().id,
        crate::licences::PERSON
    );
    // B is refused as it was when the check passed: no holder, no fields, no receipt.
    let log_before = latest_size(server.addr).await;
    let e = check(b.clone(), "verifier", server.addr).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("may not verify or read"), "{e:?}");
    assert!(!e.message().contains(crate::licences::PERSON));
    assert_eq!(latest_size(server.addr).await, log_before, "no receipt");
    server.stop().await.unwrap();
}

async fn latest_size(addr: SocketAddr) -> u64 {
    AuditServiceClient::new(connect(addr).await)
        .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
        .await
        .unwrap()
        .into_inner()
        .size
}
