use std::path::Path;
use std::process::Command;

use certseal::pb;
use certseal::pb::audit_service_client::AuditServiceClient;
use certseal::pb::seal_service_client::SealServiceClient;
use certseal_log::Entry;
use tonic::Code;
use tonic::transport::Channel;

use crate::util::*;

const DEPT_NAME: &str = "厦门市市场监督管理局";
const SEAL_NAME: &str = "厦门市市场监督管理局行政审批专用章";

fn new_seal(department: &str, alg: pb::SealAlgorithm) -> pb::RegisterSealRequest {
    pb::RegisterSealRequest {
        request_id: String::new(),
        department: department.into(),
        name: SEAL_NAME.into(),
        r#type: pb::SealType::SpecialPurpose as i32,
        image: png(1),
        algorithm: alg as i32,
        not_before: None,
        not_after: None,
        national_code: "3502000012345".into(),
        external_ca: false,
    }
}

async fn seals(addr: std::net::SocketAddr) -> SealServiceClient<Channel> {
    SealServiceClient::new(connect(addr).await)
}

fn transition(id: &str, note: &str) -> pb::SealTransitionRequest {
    pb::SealTransitionRequest {
        request_id: String::new(),
        seal_id: id.into(),
        note: note.into(),
    }
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

async fn ca_pem(s: &mut SealServiceClient<Channel>) -> String {
    s.get_ca_certificate(admin(pb::GetCaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner()
        .pem
}

/// Every entry of the log with its record, once the checkpoint covers `at_least` entries.
async fn exported(addr: std::net::SocketAddr, at_least: u64) -> Vec<(Entry, Vec<u8>)> {
    let mut a = AuditServiceClient::new(connect(addr).await);
    for _ in 0..100 {
        let size = a
            .get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
            .await
            .unwrap()
            .into_inner()
            .size;
        if size >= at_least {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut stream = a
        .export_entries(as_actor(
            ADMIN_DEPT,
            "auditor",
            pb::ExportEntriesRequest { start: 0, end: 0 },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        if let Some(pb::export_chunk::Item::Entry(e)) = chunk.item {
            out.push((Entry::decode(&e.entry).unwrap(), e.record));
        }
    }
    out
}

fn seal_record_status(record: &[u8]) -> certseal_core::SealStatus {
    let seal: certseal_core::Seal = ciborium::from_reader(record).unwrap();
    seal.status()
}

#[tokio::test]
async fn seal_lifecycle_certificates_usability_and_audit() {
    let server = TestServer::start().await;
    let dept = dept_code(1);
    register(&mut server.departments().await, &dept, DEPT_NAME).await;
    let mut s = seals(server.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_pem(&mut s).await).unwrap();

    let mut ids = Vec::new();
    for alg in [pb::SealAlgorithm::Ed25519, pb::SealAlgorithm::EcdsaP256] {
        let r = s
            .register_seal(admin(new_seal(&dept, alg)))
            .await
            .unwrap()
            .into_inner();
        assert!(r.csr_pem.is_empty());
        let seal = r.seal.unwrap();
        assert_eq!(seal.status(), pb::SealStatus::Pending);
        assert_eq!(seal.department, dept);
        assert_eq!(seal.certificate_source(), pb::CertificateSource::SealCa);
        assert_eq!(seal.history.len(), 1);
        assert_eq!(seal.history[0].by.as_ref().unwrap().department, ADMIN_DEPT);
        assert_eq!(
            seal.kid,
            certseal_crypto::sha256(&[&seal.certificate_der])[..8].to_vec(),
            "kid = SHA-256(DER)[..8]"
        );
        assert_eq!(
            seal.public_key.len(),
            if alg == pb::SealAlgorithm::Ed25519 {
                32
            } else {
                65
            }
        );
        assert_eq!(
            seal.image_sha256,
            certseal_crypto::sha256(&[&png(1)]).to_vec()
        );
        // An independent implementation accepts the certificate and shows the profile.
        let file = format!("seal-{}.pem", seal.seal_id);
        std::fs::write(dir.path().join(&file), &seal.certificate_pem).unwrap();
        let (ok, out) = openssl(dir.path(), &["verify", "-CAfile", "ca.pem", &file]);
        assert!(ok && out.contains(": OK"), "{out}");
        let (ok, text) = openssl(
            dir.path(),
            &[
                "x509",
                "-in",
                &file,
                "-noout",
                "-text",
                "-nameopt",
                "utf8,sep_comma_plus_space",
            ],
        );
        assert!(ok, "{text}");
        assert!(
            text.contains("Digital Signature, Non Repudiation"),
            "{text}"
        );
        assert!(
            text.contains("1.3.6.1.5.5.7.3.36") || text.contains("Document Signing"),
            "{text}"
        );
        assert!(text.contains(&format!("NTRCN-{dept}")), "{text}");
        assert!(text.contains(&format!("CN={SEAL_NAME}")), "{text}");
        assert!(text.contains(&format!("O={DEPT_NAME}")), "{text}");
        assert!(
            text.contains(if alg == pb::SealAlgorithm::Ed25519 {
                "ED25519"
            } else {
                "prime256v1"
            }),
            "{text}"
        );
        ids.push(seal.seal_id);
    }
    let id = ids[0].clone();
    let registered_at = ms(&s
        .get_seal(admin(pb::GetSealRequest {
            seal_id: id.clone(),
            include_image: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .seal
        .unwrap()
        .history[0]
        .at);

    // PENDING → ACTIVE → SUSPENDED → ACTIVE → REVOKED, and nothing else.
    let e = s
        .suspend_seal(admin(transition(&id, "")))
        .await
        .unwrap_err();
    assert!(e.message().contains("pending"), "{e:?}");
    expect_code(e, Code::FailedPrecondition);
    let a = s
        .activate_seal(admin(transition(&id, "filed with the PSB")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.status(), pb::SealStatus::Active);
    assert_eq!(a.history[1].note, "filed with the PSB");
    let activated_at = ms(&a.history[1].at);
    expect_code(
        s.activate_seal(admin(transition(&id, "")))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
    );
    let usable = |at: Option<i64>| pb::CheckSealUsableRequest {
        seal_id: id.clone(),
        at: at.map(ts),
    };
    let u = s
        .check_seal_usable(admin(usable(None)))
        .await
        .unwrap()
        .into_inner();
    assert!(u.usable && u.reason.is_empty(), "{u:?}");
    let u = s
        .check_seal_usable(admin(usable(Some(registered_at))))
        .await
        .unwrap()
        .into_inner();
    if registered_at < activated_at {
        assert!(!u.usable);
        assert_eq!(u.status_at(), pb::SealStatus::Pending);
    }
    let sus = s
        .suspend_seal(admin(transition(&id, "lost")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sus.status(), pb::SealStatus::Suspended);
    let u = s
        .check_seal_usable(admin(usable(None)))
        .await
        .unwrap()
        .into_inner();
    assert!(!u.usable && u.reason.contains("suspended"), "{u:?}");
    let back = s
        .reinstate_seal(admin(transition(&id, "found")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.status(), pb::SealStatus::Active);

    // Revocation for key compromise needs the time of compromise, not in the future.
    let revoke = |reason: pb::RevocationReason, at: Option<i64>| pb::RevokeSealRequest {
        request_id: String::new(),
        seal_id: id.clone(),
        reason: reason as i32,
        compromised_at: at.map(ts),
        note: "key copied".into(),
    };
    let f = expect_code(
        s.revoke_seal(admin(revoke(pb::RevocationReason::KeyCompromise, None)))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
    );
    assert_eq!(f[0].0, "compromised_at");
    let future = certseal_core::Timestamp::now().0 + 3_600_000;
    expect_code(
        s.revoke_seal(admin(revoke(
            pb::RevocationReason::KeyCompromise,
            Some(future),
        )))
        .await
        .unwrap_err(),
        Code::InvalidArgument,
    );
    expect_code(
        s.revoke_seal(admin(revoke(pb::RevocationReason::Unspecified, None)))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
    );
    let compromised_at = activated_at + 1;
    let r = s
        .revoke_seal(admin(revoke(
            pb::RevocationReason::KeyCompromise,
            Some(compromised_at),
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), pb::SealStatus::Revoked);
    let last = r.history.last().unwrap();
    assert_eq!(last.reason(), pb::RevocationReason::KeyCompromise);
    assert_eq!(ms(&last.compromised_at), compromised_at);
    // Usable just before the compromise, never from it on — even for times it was active.
    let u = s
        .check_seal_usable(admin(usable(Some(activated_at))))
        .await
        .unwrap()
        .into_inner();
    assert!(u.usable, "{u:?}");
    let u = s
        .check_seal_usable(admin(usable(Some(compromised_at))))
        .await
        .unwrap()
        .into_inner();
    assert!(!u.usable && u.reason.contains("compromised"), "{u:?}");
    for e in [
        s.activate_seal(admin(transition(&id, "")))
            .await
            .unwrap_err(),
        s.reinstate_seal(admin(transition(&id, "")))
            .await
            .unwrap_err(),
        s.revoke_seal(admin(revoke(pb::RevocationReason::Retired, None)))
            .await
            .unwrap_err(),
    ] {
        expect_code(e, Code::FailedPrecondition);
    }

    // Reads: the image, the full history, lists by department and status, paged.
    let g = s
        .get_seal(admin(pb::GetSealRequest {
            seal_id: id.clone(),
            include_image: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.image, png(1));
    let statuses: Vec<_> = g.seal.unwrap().history.iter().map(|e| e.status()).collect();
    assert_eq!(
        statuses,
        [
            pb::SealStatus::Pending,
            pb::SealStatus::Active,
            pb::SealStatus::Suspended,
            pb::SealStatus::Active,
            pb::SealStatus::Revoked
        ]
    );
    let list =
        |department: &str, status: pb::SealStatus, size: u32, token: String| pb::ListSealsRequest {
            department: department.into(),
            status: status as i32,
            page_size: size,
            page_token: token,
        };
    let all = s
        .list_seals(as_actor(
            &dept,
            "verifier",
            list(&dept, pb::SealStatus::Unspecified, 0, String::new()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.seals.iter().map(|s| &s.seal_id).collect::<Vec<_>>(),
        ids.iter().collect::<Vec<_>>()
    );
    let pending = s
        .list_seals(admin(list(
            &dept,
            pb::SealStatus::Pending,
            0,
            String::new(),
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.seals.len(), 1);
    assert_eq!(pending.seals[0].seal_id, ids[1]);
    let first = s
        .list_seals(admin(list(
            "",
            pb::SealStatus::Unspecified,
            1,
            String::new(),
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.seals.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = s
        .list_seals(admin(list(
            "",
            pb::SealStatus::Unspecified,
            1,
            first.next_page_token,
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.seals[0].seal_id, ids[1]);
    let other = s
        .list_seals(admin(list(
            &dept_code(2),
            pb::SealStatus::Unspecified,
            0,
            String::new(),
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(other.seals.is_empty());

    // Every change is an audit entry whose record shows the new status.
    let entries = exported(server.addr(), 8).await;
    let kinds: Vec<(&str, certseal_core::SealStatus)> = entries
        .iter()
        .filter(|(e, _)| e.subject == id)
        .map(|(e, r)| (e.kind.as_str(), seal_record_status(r)))
        .collect();
    use certseal_core::SealStatus as St;
    assert_eq!(
        kinds,
        [
            ("seal.registered", St::Pending),
            ("seal.activated", St::Active),
            ("seal.suspended", St::Suspended),
            ("seal.reinstated", St::Active),
            ("seal.revoked", St::Revoked),
        ]
    );
    let revoked = entries
        .iter()
        .find(|(e, _)| e.kind == "seal.revoked")
        .unwrap();
    assert_eq!(
        revoked.0.extra.get("reason"),
        Some(&certseal_log::Extra::Text("key_compromise".into()))
    );
    server.stop().await;
}

fn status_of(e: &tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

#[tokio::test]
async fn bad_seal_registrations_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let dept = dept_code(1);
    register(&mut server.departments().await, &dept, DEPT_NAME).await;
    let mut s = seals(server.addr()).await;
    let mut a = AuditServiceClient::new(server.channel().await);
    let size = |a: &mut AuditServiceClient<Channel>| {
        let mut a = a.clone();
        async move {
            a.get_latest_checkpoint(admin(pb::GetLatestCheckpointRequest {}))
                .await
                .unwrap()
                .into_inner()
                .size
        }
    };
    let before = size(&mut a).await;

    let field_cases: Vec<(pb::RegisterSealRequest, &str)> = vec![
        (
            pb::RegisterSealRequest {
                department: "11100000000013338X".into(),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "department",
        ),
        (
            pb::RegisterSealRequest {
                image: [b"\x89PNG\r\n\x1a\n".as_slice(), &vec![0u8; 300 * 1024]].concat(),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "image",
        ),
        (
            pb::RegisterSealRequest {
                image: b"GIF89a....".to_vec(),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "image",
        ),
        (
            pb::RegisterSealRequest {
                image:
                    br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#
                        .to_vec(),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "image",
        ),
        (
            pb::RegisterSealRequest {
                image: Vec::new(),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "image",
        ),
        (
            pb::RegisterSealRequest {
                r#type: 0,
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "type",
        ),
        (
            pb::RegisterSealRequest {
                algorithm: 9,
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "algorithm",
        ),
        (
            pb::RegisterSealRequest {
                name: " ".into(),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "name",
        ),
        (
            pb::RegisterSealRequest {
                national_code: "abc-1".into(),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "national_code",
        ),
        (
            pb::RegisterSealRequest {
                not_before: Some(ts(2_000_000_000_000)),
                not_after: Some(ts(1_900_000_000_000)),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "not_after",
        ),
        (
            pb::RegisterSealRequest {
                not_before: Some(ts(certseal_core::Timestamp::now().0 - 86_400_000)),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "not_before",
        ),
        (
            pb::RegisterSealRequest {
                not_after: Some(ts(4_100_000_000_000)),
                ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
            },
            "not_after",
        ),
    ];
    for (req, field) in field_cases {
        let e = s.register_seal(admin(req)).await.unwrap_err();
        let shown = status_of(&e);
        let fields = expect_code(e, Code::InvalidArgument);
        assert!(fields.iter().any(|(f, _)| f == field), "{field}: {shown}");
    }
    // A department that is not registered.
    let e = s
        .register_seal(admin(new_seal(&dept_code(7), pb::SealAlgorithm::Ed25519)))
        .await
        .unwrap_err();
    assert!(e.message().contains("not registered"), "{e:?}");
    expect_code(e, Code::FailedPrecondition);
    // Not the admin.
    expect_code(
        s.register_seal(as_actor(
            &dept,
            "issuer",
            new_seal(&dept, pb::SealAlgorithm::Ed25519),
        ))
        .await
        .unwrap_err(),
        Code::PermissionDenied,
    );
    // Unknown and malformed seal IDs.
    expect_code(
        s.activate_seal(admin(transition(
            "0190f5e4-7d3a-7c4e-8a1b-2c3d4e5f6a7b",
            "",
        )))
        .await
        .unwrap_err(),
        Code::NotFound,
    );
    let f = expect_code(
        s.get_seal(admin(pb::GetSealRequest {
            seal_id: "not-an-id".into(),
            include_image: false,
        }))
        .await
        .unwrap_err(),
        Code::InvalidArgument,
    );
    assert_eq!(f[0].0, "seal_id");

    assert_eq!(size(&mut a).await, before, "no entry was appended");
    let none = s
        .list_seals(admin(pb::ListSealsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(none.seals.is_empty(), "no seal was stored");
    server.stop().await;
}

/// An external CA run with openssl: key, self-signed CA certificate, and a signing function.
struct ExternalCa<'a> {
    dir: &'a Path,
}

impl<'a> ExternalCa<'a> {
    fn create(dir: &'a Path, name: &str) -> Self {
        let (ok, out) = openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "3650",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        assert!(ok, "{out}");
        let _ = name;
        Self { dir }
    }

    /// Signs `csr` with CA `ca`, adding `ext`; extra openssl arguments after.
    fn sign(&self, ca: &str, csr: &str, ext: &str, out: &str, extra: &[&str]) -> Vec<u8> {
        std::fs::write(self.dir.join("ext.cnf"), ext).unwrap();
        let mut args = vec!["x509", "-req", "-in", csr, "-CA"];
        let ca_pem = format!("{ca}.pem");
        let ca_key = format!("{ca}.key");
        args.extend([
            ca_pem.as_str(),
            "-CAkey",
            ca_key.as_str(),
            "-CAcreateserial",
        ]);
        args.extend(["-extfile", "ext.cnf", "-out", out]);
        args.extend(extra);
        let (ok, o) = openssl(self.dir, &args);
        assert!(ok, "{o}");
        std::fs::read(self.dir.join(out)).unwrap()
    }
}

const PROFILE: &str = "keyUsage=critical,digitalSignature,nonRepudiation\nextendedKeyUsage=1.3.6.1.5.5.7.3.36\nbasicConstraints=CA:FALSE\n";

#[tokio::test]
async fn external_ca_csr_and_certificate_import() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ExternalCa::create(d, "ext");
    ExternalCa::create(d, "untrusted");
    let config = format!(
        "[seals]\ntrust_anchors = [\"{}\"]\n",
        d.join("ext.pem").display()
    );
    let server = start_with_config(&d.join("data"), &config).await;
    let dept = dept_code(1);
    let mut depts = certseal::pb::department_service_client::DepartmentServiceClient::new(
        connect(server.addr).await,
    );
    register(&mut depts, &dept, DEPT_NAME).await;
    let mut s = seals(server.addr).await;
    let anchors = s
        .get_ca_certificate(admin(pb::GetCaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner()
        .trust_anchors_pem;
    assert_eq!(anchors.len(), 1);

    let r = s
        .register_seal(admin(pb::RegisterSealRequest {
            external_ca: true,
            ..new_seal(&dept, pb::SealAlgorithm::Ed25519)
        }))
        .await
        .unwrap()
        .into_inner();
    let seal = r.seal.unwrap();
    let id = seal.seal_id.clone();
    assert!(seal.certificate_der.is_empty());
    assert!(r.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    std::fs::write(d.join("seal.csr"), &r.csr_pem).unwrap();
    let (ok, out) = openssl(d, &["req", "-in", "seal.csr", "-noout", "-verify", "-text"]);
    assert!(ok && out.to_lowercase().contains("verify ok"), "{out}");
    assert!(out.contains(&format!("NTRCN-{dept}")), "{out}");
    // The CSR can be fetched again, signed by the same key.
    let again = s
        .get_seal_csr(admin(pb::GetSealCsrRequest {
            seal_id: id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .csr_pem;
    std::fs::write(d.join("again.csr"), &again).unwrap();
    let (ok, out2) = openssl(d, &["req", "-in", "again.csr", "-noout", "-pubkey"]);
    let (_, out1) = openssl(d, &["req", "-in", "seal.csr", "-noout", "-pubkey"]);
    assert!(ok && out1 == out2, "{out1} {out2}");

    // Without a certificate it cannot be filed.
    let e = s
        .activate_seal(admin(transition(&id, "")))
        .await
        .unwrap_err();
    assert!(e.message().contains("no certificate"), "{e:?}");
    expect_code(e, Code::FailedPrecondition);

    // Each bad certificate is refused with its reason.
    let other_key_csr = {
        let (ok, o) = openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ed25519",
                "-nodes",
                "-keyout",
                "other.key",
                "-out",
                "other.csr",
                "-subj",
                &format!("/O=x/organizationIdentifier=NTRCN-{dept}/CN=x"),
            ],
        );
        assert!(ok, "{o}");
        "other.csr"
    };
    let cases: Vec<(Vec<u8>, &str)> =
        vec![
        (
            ca.sign("ext", other_key_csr, PROFILE, "c1.pem", &["-days", "365"]),
            "another public key",
        ),
        (
            ca.sign(
                "ext",
                "seal.csr",
                "keyUsage=critical,digitalSignature,nonRepudiation\nextendedKeyUsage=codeSigning\n",
                "c2.pem",
                &["-days", "365"],
            ),
            "documentSigning",
        ),
        (
            ca.sign(
                "ext",
                "seal.csr",
                "keyUsage=critical,keyEncipherment\nextendedKeyUsage=1.3.6.1.5.5.7.3.36\n",
                "c3.pem",
                &["-days", "365"],
            ),
            "key usage",
        ),
        (
            ca.sign(
                "ext",
                "seal.csr",
                PROFILE,
                "c4.pem",
                &[
                    "-days",
                    "365",
                    "-subj",
                    &format!("/O=x/organizationIdentifier=NTRCN-{}/CN=x", dept_code(2)),
                ],
            ),
            "organizationIdentifier",
        ),
        (
            ca.sign("ext", "seal.csr", PROFILE, "c5.pem", &["-days", "4000"]),
            "outside the seal's window",
        ),
        (
            ca.sign("untrusted", "seal.csr", PROFILE, "c6.pem", &["-days", "365"]),
            "no chain to a configured trust anchor",
        ),
        (b"\x30\x03garbage".to_vec(), "not a DER"),
        (
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_vec(),
            "base64",
        ),
    ];
    for (cert, reason) in cases {
        let e = s
            .import_seal_certificate(admin(pb::ImportSealCertificateRequest {
                request_id: String::new(),
                seal_id: id.clone(),
                certificate: cert,
            }))
            .await
            .unwrap_err();
        let shown = status_of(&e);
        let fields = expect_code(e, Code::InvalidArgument);
        assert!(
            fields
                .iter()
                .any(|(f, d)| f == "certificate" && d.contains(reason)),
            "{reason}: {shown}"
        );
    }
    let still = s
        .get_seal(admin(pb::GetSealRequest {
            seal_id: id.clone(),
            include_image: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .seal
        .unwrap();
    assert!(still.certificate_der.is_empty(), "nothing changed");
    assert_eq!(still.history.len(), 1);

    // The right certificate is taken, once; then the seal can be filed.
    let good = ca.sign("ext", "seal.csr", PROFILE, "good.pem", &["-days", "365"]);
    let imported = s
        .import_seal_certificate(admin(pb::ImportSealCertificateRequest {
            request_id: String::new(),
            seal_id: id.clone(),
            certificate: good.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        imported.certificate_source(),
        pb::CertificateSource::External
    );
    assert_eq!(
        imported.certificate_pem.trim(),
        String::from_utf8(good.clone()).unwrap().trim()
    );
    expect_code(
        s.import_seal_certificate(admin(pb::ImportSealCertificateRequest {
            request_id: String::new(),
            seal_id: id.clone(),
            certificate: good,
        }))
        .await
        .unwrap_err(),
        Code::FailedPrecondition,
    );
    let active = s
        .activate_seal(admin(transition(&id, "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.status(), pb::SealStatus::Active);
    let entries = exported(server.addr, 4).await;
    assert!(
        entries
            .iter()
            .any(|(e, _)| e.kind == "seal.certificate_imported" && e.subject == id)
    );
    server.stop().await.unwrap();
}

fn cli(server: &ChildServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(args)
        .args(["--server", &server.url(), "--as-department", ADMIN_DEPT])
        .args(["--as-role", "admin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn offline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn seal_cli_and_a_trust_list_that_verifies_independently() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = ChildServer::spawn(&d.join("data"));
    let dept = dept_code(3);
    cli(
        &server,
        &[
            "department",
            "register",
            "--credit-code",
            &dept,
            "--name",
            DEPT_NAME,
            "--region",
            "350200",
        ],
    );
    std::fs::write(d.join("seal.png"), png(3)).unwrap();
    let out = cli(
        &server,
        &[
            "seal",
            "register",
            "--department",
            &dept,
            "--name",
            SEAL_NAME,
            "--type",
            "special-purpose",
            "--image",
            d.join("seal.png").to_str().unwrap(),
            "--algorithm",
            "p256",
            "--json",
        ],
    );
    let seal: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = seal["seal_id"].as_str().unwrap().to_owned();
    assert_eq!(seal["status"], "pending");
    assert_eq!(seal["type"], "special-purpose");
    assert_eq!(seal["algorithm"], "ecdsa_p256");
    let shown = cli(&server, &["seal", "activate", &id, "--note", "filed"]);
    assert!(shown.contains("active"), "{shown}");
    let ca = cli(&server, &["ca", "cert"]);
    std::fs::write(d.join("ca.pem"), &ca).unwrap();
    cli(
        &server,
        &[
            "seal",
            "get",
            &id,
            "--cert-out",
            d.join("seal.pem").to_str().unwrap(),
            "--image-out",
            d.join("got.png").to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(d.join("got.png")).unwrap(), png(3));
    let (ok, o) = openssl(d, &["verify", "-CAfile", "ca.pem", "seal.pem"]);
    assert!(ok, "{o}");
    let listed = cli(
        &server,
        &["seal", "list", "--department", &dept, "--status", "active"],
    );
    assert!(listed.contains(&id), "{listed}");
    let usable = cli(&server, &["seal", "usable", &id, "--json"]);
    assert!(usable.contains("\"usable\": true"), "{usable}");
    // A second seal, suspended, shows in the list with its status.
    let second: serde_json::Value = serde_json::from_str(&cli(
        &server,
        &[
            "seal",
            "register",
            "--department",
            &dept,
            "--name",
            "合同章",
            "--type",
            "contract",
            "--image",
            d.join("seal.png").to_str().unwrap(),
            "--json",
        ],
    ))
    .unwrap();
    let id2 = second["seal_id"].as_str().unwrap().to_owned();
    cli(&server, &["seal", "activate", &id2]);
    cli(&server, &["seal", "suspend", &id2, "--note", "audit"]);

    let tl = d.join("trust-list.cose");
    cli(&server, &["trustlist", "export", tl.to_str().unwrap()]);
    let out = offline(&[
        "trustlist",
        "verify",
        tl.to_str().unwrap(),
        "--ca",
        d.join("ca.pem").to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    let statuses: Vec<(String, String)> = v["seals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["seal_id"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (id.clone(), "active".into()),
            (id2.clone(), "suspended".into())
        ]
    );

    // Independently: the signer certificate chains to the CA (openssl verify) and the COSE
    // Sig_structure verifies with openssl's Ed25519.
    let signed = std::fs::read(&tl).unwrap();
    let ciborium::Value::Tag(18, body) = ciborium::from_reader(signed.as_slice()).unwrap() else {
        panic!("not a tagged COSE_Sign1");
    };
    let ciborium::Value::Array(parts) = *body else {
        panic!("COSE_Sign1 is an array")
    };
    let (
        ciborium::Value::Bytes(protected),
        ciborium::Value::Bytes(payload),
        ciborium::Value::Bytes(sig),
    ) = (&parts[0], &parts[2], &parts[3])
    else {
        panic!("COSE_Sign1 parts")
    };
    let header: ciborium::Value = ciborium::from_reader(protected.as_slice()).unwrap();
    let x5chain = header
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_integer() == Some(33.into()))
        .and_then(|(_, v)| v.as_bytes().cloned())
        .expect("x5chain");
    let mut tbs = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Array(vec![
            ciborium::Value::Text("Signature1".into()),
            ciborium::Value::Bytes(protected.clone()),
            ciborium::Value::Bytes(Vec::new()),
            ciborium::Value::Bytes(payload.clone()),
        ]),
        &mut tbs,
    )
    .unwrap();
    std::fs::write(d.join("tl.der"), &x5chain).unwrap();
    std::fs::write(d.join("tbs.bin"), &tbs).unwrap();
    std::fs::write(d.join("sig.bin"), sig).unwrap();
    let (ok, o) = openssl(
        d,
        &["x509", "-inform", "DER", "-in", "tl.der", "-out", "tl.pem"],
    );
    assert!(ok, "{o}");
    let (ok, o) = openssl(d, &["verify", "-CAfile", "ca.pem", "tl.pem"]);
    assert!(ok && o.contains("tl.pem: OK"), "{o}");
    let (ok, o) = openssl(
        d,
        &[
            "x509", "-in", "tl.pem", "-pubkey", "-noout", "-out", "tl.pub",
        ],
    );
    assert!(ok, "{o}");
    let (ok, o) = openssl(
        d,
        &[
            "pkeyutl", "-verify", "-pubin", "-inkey", "tl.pub", "-rawin", "-in", "tbs.bin",
            "-sigfile", "sig.bin",
        ],
    );
    assert!(ok && o.contains("Signature Verified Successfully"), "{o}");

    // A changed byte anywhere fails verification, and so does another CA.
    let at = signed.len() / 2;
    let mut tampered = signed.clone();
    tampered[at] ^= 0x01;
    std::fs::write(d.join("tampered.cose"), &tampered).unwrap();
    let out = offline(&[
        "trustlist",
        "verify",
        d.join("tampered.cose").to_str().unwrap(),
        "--ca",
        d.join("ca.pem").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let other_key =
        certseal_crypto::x509::generate_key(certseal_crypto::KeyAlgorithm::EcdsaP256).unwrap();
    let other_ca =
        certseal_crypto::x509::create_ca("other", &other_key.pkcs8, 0, 4_000_000_000).unwrap();
    std::fs::write(d.join("other.pem"), other_ca.pem()).unwrap();
    let out = offline(&[
        "trustlist",
        "verify",
        tl.to_str().unwrap(),
        "--ca",
        d.join("other.pem").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("trust list"));
}

/// Finds `needle` in any file under `dir`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(p);
            }
        }
    }
    found
}

/// The raw private key inside a ring PKCS#8 document.
fn private_key(pkcs8: &[u8], alg: &str) -> Vec<u8> {
    let marker: &[u8] = if alg == "ed25519" {
        &[0x04, 0x22, 0x04, 0x20]
    } else {
        &[0x02, 0x01, 0x01, 0x04, 0x20]
    };
    let at = pkcs8
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap()
        + marker.len();
    pkcs8[at..at + 32].to_vec()
}

#[test]
fn private_keys_never_appear_in_the_data_folder_or_logs_and_rewrap_moves_them_to_a_new_kek() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let server = ChildServer::spawn(&data);
    let dept = dept_code(4);
    cli(
        &server,
        &[
            "department",
            "register",
            "--credit-code",
            &dept,
            "--name",
            DEPT_NAME,
            "--region",
            "350200",
        ],
    );
    let image = d.join("seal.png");
    std::fs::write(&image, png(4)).unwrap();
    let mut seals = Vec::new();
    for (alg, external) in [("ed25519", false), ("p256", false), ("ed25519", true)] {
        let mut args = vec![
            "seal",
            "register",
            "--department",
            &dept,
            "--name",
            SEAL_NAME,
            "--type",
            "official",
            "--image",
            image.to_str().unwrap(),
            "--algorithm",
            alg,
            "--json",
        ];
        let csr = d.join("seal.csr");
        if external {
            args.extend(["--external-ca", "--csr-out", csr.to_str().unwrap()]);
        }
        let v: serde_json::Value = serde_json::from_str(&cli(&server, &args)).unwrap();
        seals.push((
            v["seal_id"].as_str().unwrap().to_owned(),
            alg,
            v["public_key"].as_str().unwrap().to_owned(),
        ));
    }
    cli(
        &server,
        &["trustlist", "export", d.join("tl.cose").to_str().unwrap()],
    );
    let log = std::fs::read(data.with_extension("log")).unwrap();
    server.kill9();

    // Read the sealed keys back the way the registry does, with the KEK from its file.
    let kek = certseal_crypto::Kek::load_or_create(&data.join("keys").join("kek")).unwrap();
    let store =
        certseal_store_rocks::RocksStore::open(&data.join("db"), &Default::default()).unwrap();
    use certseal_store::{Read, Table};
    let mut secrets = Vec::new();
    for (id, alg, public_hex) in &seals {
        let sid: certseal_core::SealId = id.parse().unwrap();
        let sealed = store.get(Table::SealKeys, sid.as_bytes()).unwrap().unwrap();
        let pkcs8 = kek
            .open(format!("certseal/seal-key/{id}").as_bytes(), &sealed)
            .unwrap();
        let public = hex::decode(public_hex).unwrap();
        // The search works: public keys are found in the data folder.
        assert!(
            !files_containing(&data, &public).is_empty(),
            "public key of {id} not found"
        );
        secrets.push((pkcs8.clone(), private_key(&pkcs8, alg)));
    }
    for (owner, key) in [
        (
            b"certseal/seal-ca-key".as_slice(),
            b"seal_ca_key".as_slice(),
        ),
        (b"certseal/trust-list-key", b"trust_list_key"),
        (b"certseal/log-key", b"log_key"),
        (b"certseal/receipt-key", b"receipt_key"),
    ] {
        let sealed = store.get(Table::Meta, key).unwrap().unwrap();
        let pkcs8 = kek.open(owner, &sealed).unwrap();
        let alg = if key == b"seal_ca_key" {
            "p256"
        } else {
            "ed25519"
        };
        secrets.push((pkcs8.clone(), private_key(&pkcs8, alg)));
    }
    drop(store);
    use base64::Engine;
    for (pkcs8, secret) in &secrets {
        assert!(
            files_containing(&data, secret).is_empty(),
            "a private key in plaintext"
        );
        assert!(
            files_containing(&data, pkcs8).is_empty(),
            "a PKCS#8 key in plaintext"
        );
        let hex_secret = hex::encode(secret);
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        for needle in [secret.as_slice(), hex_secret.as_bytes(), b64.as_bytes()] {
            assert!(
                !log.windows(needle.len()).any(|w| w == needle),
                "a key in the log"
            );
        }
    }

    // Re-wrap under a new KEK; the old one no longer opens the data folder.
    let new_kek = d.join("kek2");
    let out = offline(&[
        "keys",
        "rewrap",
        "--data-dir",
        data.to_str().unwrap(),
        "--new-kek",
        new_kek.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed 9 key(s)"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&new_kek).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The old KEK (still at the default path) no longer opens the keys: the server refuses
    // to start, and says why.
    let mut old = Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args([
            "serve",
            "--dev-auth",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = old.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            old.kill().unwrap();
            panic!("the server started with the old KEK");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut old.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("key"), "{err}");
    let config = d.join("certseal.toml");
    std::fs::write(
        &config,
        format!("[keys]\nkek_file = \"{}\"\n", new_kek.display()),
    )
    .unwrap();
    let server = ChildServer::spawn_with(&data, &["--config", config.to_str().unwrap()]);
    // Every key opens under the new KEK: the CA issues, the seal key signs a CSR, the
    // trust-list key signs, the log key signs checkpoints.
    cli(
        &server,
        &[
            "seal",
            "register",
            "--department",
            &dept,
            "--name",
            SEAL_NAME,
            "--type",
            "finance",
            "--image",
            d.join("seal.png").to_str().unwrap(),
        ],
    );
    let csr = cli(&server, &["seal", "csr", &seals[2].0]);
    assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
    cli(
        &server,
        &["trustlist", "export", d.join("tl2.cose").to_str().unwrap()],
    );
    let cp = cli(&server, &["audit", "checkpoint"]);
    assert!(cp.contains("certseal.local/log"), "{cp}");
}
