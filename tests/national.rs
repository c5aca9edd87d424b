//! National formats (issue 19): SM2 seals with an SM2 certificate chain and a GB/T 38540 seal,
//! their licence documents (COSE, SM2, content type v=2) checked by the service and offline,
//! and an external SM2 CA through the CSR path. OpenSSL 3 checks what certseal makes.

use certseal::pb;
use certseal::pb::licence_service_client::LicenceServiceClient;
use certseal::pb::seal_service_client::SealServiceClient;
use certseal::pb::verification_service_client::VerificationServiceClient;
use certseal_core::Timestamp;
use certseal_crypto::ses::SeSeal;
use certseal_crypto::{Certificate, cose, sm};
use tonic::Code;

use crate::licences::{issuer, request};
use crate::util::*;

const DISTID: &str = "distid:1234567812345678";

fn pem_to_der(pem: &str) -> Vec<u8> {
    certseal_crypto::x509::certificate_from_pem_or_der(pem.as_bytes())
        .unwrap()
        .der
}

/// The raw public key of a certificate (DER).
fn public_key(der: &[u8]) -> Vec<u8> {
    certseal_crypto::x509::subject_public_key(der).unwrap()
}

async fn check_document(addr: std::net::SocketAddr, doc: &[u8]) -> pb::VerificationResult {
    check(
        addr,
        pb::verify_document_request::Document::Cose(doc.to_vec()),
    )
    .await
}

async fn check_ofd(addr: std::net::SocketAddr, file: Vec<u8>) -> pb::VerificationResult {
    check(addr, pb::verify_document_request::Document::Ofd(file)).await
}

/// VerifyDocument by department 9 as a verifier.
async fn check(
    addr: std::net::SocketAddr,
    document: pb::verify_document_request::Document,
) -> pb::VerificationResult {
    VerificationServiceClient::new(connect(addr).await)
        .verify_document(as_actor(
            &dept_code(9),
            "verifier",
            pb::VerifyDocumentRequest {
                document: Some(document),
                purpose: Some(pb::Purpose {
                    code: "ADMIN_APPROVAL".into(),
                    text: "核验".into(),
                }),
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Registering an SM2 seal of `dept`, certified now or (`external`) through a CSR.
fn sm2_seal(
    dept: String,
    name: &str,
    seal_type: pb::SealType,
    image_seed: u8,
    external: bool,
) -> pb::RegisterSealRequest {
    pb::RegisterSealRequest {
        department: dept,
        name: name.into(),
        r#type: seal_type as i32,
        image: png(image_seed),
        algorithm: pb::SealAlgorithm::Sm2 as i32,
        external_ca: external,
        ..Default::default()
    }
}

fn says(r: &pb::VerificationResult) -> (pb::Indication, pb::SubIndication) {
    (r.indication(), r.sub_indication())
}

// Multi-threaded: the test runs the CLI against the server in this process, and waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sm2_seal_has_an_sm2_chain_and_a_gbt38540_seal_and_its_licences_verify() {
    use pb::Indication::{TotalFailed, TotalPassed};
    use pb::SubIndication as S;
    let server = TestServer::start().await;
    let addr = server.addr();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let i = issuer(addr, 1, pb::SealAlgorithm::Sm2).await;
    let mut s = SealServiceClient::new(connect(addr).await);
    let cas = s
        .get_ca_certificate(admin(pb::GetCaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(cas.sm2_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let sm2_ca = pem_to_der(&cas.sm2_pem);
    assert_ne!(sm2_ca, cas.der, "a CA of its own");

    // OpenSSL 3 accepts the chain and reads the profile.
    std::fs::write(d.join("sm2ca.pem"), &cas.sm2_pem).unwrap();
    std::fs::write(d.join("ca.pem"), &cas.pem).unwrap();
    std::fs::write(
        d.join("seal.pem"),
        Certificate {
            der: i.seal_cert.clone(),
        }
        .pem(),
    )
    .unwrap();
    let (ok, out) = openssl(
        d,
        &[
            "verify",
            "-vfyopt",
            DISTID,
            "-CAfile",
            "sm2ca.pem",
            "seal.pem",
        ],
    );
    assert!(ok && out.contains("seal.pem: OK"), "{out}");
    // Not under the other CA.
    let (ok, out) = openssl(
        d,
        &["verify", "-vfyopt", DISTID, "-CAfile", "ca.pem", "seal.pem"],
    );
    assert!(!ok, "{out}");
    let (ok, text) = openssl(
        d,
        &[
            "x509",
            "-in",
            "seal.pem",
            "-noout",
            "-text",
            "-nameopt",
            "utf8,sep_comma_plus_space",
        ],
    );
    assert!(ok, "{text}");
    for want in [
        "SM2-with-SM3",
        "ASN1 OID: SM2",
        "Digital Signature, Non Repudiation",
        &format!("NTRCN-{}", i.dept),
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    // Its GB/T 38540 seal: made and signed by the SM2 seal CA, naming the seal's certificate.
    let got = s
        .get_seal(admin(pb::GetSealRequest {
            seal_id: i.seal_id.clone(),
            include_image: true,
        }))
        .await
        .unwrap()
        .into_inner();
    let seal = got.seal.unwrap();
    assert_eq!(seal.algorithm(), pb::SealAlgorithm::Sm2);
    assert_eq!(seal.public_key.len(), 65);
    let esl = SeSeal::from_der(&got.esl).unwrap();
    assert_eq!(esl.version, 4);
    assert_eq!(esl.vid, "certseal");
    assert_eq!(esl.es_id, i.seal_id);
    assert_eq!(esl.seal_type, 1, "an organisation's seal");
    assert_eq!(esl.name, seal.name);
    assert_eq!(esl.cert_list, vec![i.seal_cert.clone()]);
    assert_eq!(esl.maker_cert, sm2_ca);
    assert_eq!(esl.picture.kind, "PNG");
    assert_eq!(esl.picture.data, got.image);
    sm::verify_sm2(&public_key(&sm2_ca), &esl.signed_data, &esl.signature)
        .expect("the maker's signature verifies");
    // OpenSSL checks the maker's signature too, from the CA certificate alone.
    std::fs::write(d.join("sealinfo.der"), &esl.signed_data).unwrap();
    std::fs::write(d.join("maker.sig"), &esl.signature).unwrap();
    let (ok, out) = openssl(d, &["x509", "-in", "sm2ca.pem", "-pubkey", "-noout"]);
    assert!(ok, "{out}");
    std::fs::write(d.join("maker.pub"), out).unwrap();
    let (ok, out) = openssl(
        d,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "maker.pub",
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            DISTID,
            "-in",
            "sealinfo.der",
            "-sigfile",
            "maker.sig",
        ],
    );
    assert!(
        ok && out.contains("Signature Verified Successfully"),
        "{out}"
    );

    // The CLI writes it as an .esl file; other seals have none.
    let esl_file = d.join("seal.esl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["seal", "get", &i.seal_id, "--esl-out"])
        .arg(&esl_file)
        .args(["--server", &format!("http://{addr}"), "--as-department"])
        .arg(ADMIN_DEPT)
        .args(["--as-role", "admin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&esl_file).unwrap(), got.esl);
    let ed = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    let none = s
        .get_seal(admin(pb::GetSealRequest {
            seal_id: ed.seal_id.clone(),
            include_image: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(none.esl.is_empty());

    // A licence sealed with SM2: COSE alg -65537, content type v=2, and every check passes.
    let lic = LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", request(&i, "sm2-1")))
        .await
        .unwrap()
        .into_inner();
    let doc = cose::parse_sign1(&lic.document, 1 << 16).unwrap();
    assert_eq!(doc.cose_alg(), cose::SM2_ALG);
    assert_eq!(
        doc.content_type,
        certseal_core::licence::LICENCE_V2_CONTENT_TYPE
    );
    doc.verify_with_certificate(&i.seal_cert).unwrap();
    let r = check_document(addr, &lic.document).await;
    assert_eq!(says(&r), (TotalPassed, S::Unspecified), "{}", r.reason);
    let r = VerificationServiceClient::new(connect(addr).await)
        .verify_licence(as_actor(
            &dept_code(9),
            "verifier",
            pb::VerifyLicenceRequest {
                licence_id: lic.licence_id.clone(),
                purpose: Some(pb::Purpose {
                    code: "ADMIN_APPROVAL".into(),
                    text: "核验".into(),
                }),
                at: None,
                use_code: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(says(&r), (TotalPassed, S::Unspecified), "{}", r.reason);
    // One changed payload byte fails the signature.
    let mut t = lic.document.clone();
    let at = t.len() - 80;
    t[at] ^= 1;
    assert_eq!(
        says(&check_document(addr, &t).await).0,
        TotalFailed,
        "tampered"
    );
    // The same signature under the content type of version 1 is not a licence of either.
    let v1 = certseal_core::licence::LICENCE_CONTENT_TYPE.as_bytes();
    let v2 = certseal_core::licence::LICENCE_V2_CONTENT_TYPE.as_bytes();
    let mut t = lic.document.clone();
    let at = t.windows(v2.len()).position(|w| w == v2).unwrap();
    t[at..at + v1.len()].copy_from_slice(v1);
    let r = check_document(addr, &t).await;
    assert_eq!(says(&r), (TotalFailed, S::FormatFailure), "{}", r.reason);
    assert!(r.reason.contains("does not go with"), "{}", r.reason);

    // Offline, from the trust list (which names the SM2 CA), as the service says.
    let tl = s
        .get_trust_list(admin(pb::GetTrustListRequest {}))
        .await
        .unwrap()
        .into_inner()
        .signed;
    let list = certseal_verify::verify_trust_list(&tl, &cas.der).unwrap();
    assert!(list.cas.iter().any(|c| c.0 == sm2_ca));
    let o = certseal_verify::verify_document_offline(&lic.document, &list, None, Timestamp::now());
    assert_eq!(
        o.indication,
        certseal_core::Indication::TotalPassed,
        "{}",
        o.reason
    );
    std::fs::write(d.join("tl.cose"), &tl).unwrap();
    std::fs::write(d.join("doc.cose"), &lic.document).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["verify", "doc.cose", "--json", "--trust-list", "tl.cose"])
        .args(["--ca", "ca.pem"])
        .current_dir(d)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["indication"], "TOTAL_PASSED", "{v}");
    server.stop().await;
}

#[tokio::test]
async fn an_sm2_seal_certified_by_an_external_sm2_ca_through_its_csr() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An SM2 CA made by OpenSSL: the registry trusts it as it trusts any configured anchor.
    for args in [
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:SM2",
            "-out",
            "ext.key",
        ][..],
        &[
            "req",
            "-x509",
            "-key",
            "ext.key",
            "-sm3",
            "-days",
            "3650",
            "-subj",
            "/CN=external SM2 CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ext.pem",
        ][..],
    ] {
        let (ok, out) = openssl(d, args);
        assert!(ok, "{out}");
    }
    let config = format!(
        "[seals]\ntrust_anchors = [\"{}\"]\n",
        d.join("ext.pem").display()
    );
    let server = start_with_config(&d.join("data"), &config).await;
    let dept = dept_code(1);
    register(
        &mut pb::department_service_client::DepartmentServiceClient::new(
            connect(server.addr).await,
        ),
        &dept,
        "厦门市市场监督管理局",
    )
    .await;
    let mut s = SealServiceClient::new(connect(server.addr).await);
    let r = s
        .register_seal(admin(sm2_seal(
            dept.clone(),
            "厦门市市场监督管理局行政审批专用章",
            pb::SealType::SpecialPurpose,
            3,
            true,
        )))
        .await
        .unwrap()
        .into_inner();
    let seal = r.seal.unwrap();
    assert!(seal.certificate_der.is_empty());
    // OpenSSL checks the request's SM2 signature (default distinguishing ID) and its subject.
    std::fs::write(d.join("seal.csr"), &r.csr_pem).unwrap();
    let (ok, out) = openssl(
        d,
        &[
            "req", "-in", "seal.csr", "-noout", "-verify", "-vfyopt", DISTID, "-text", "-nameopt",
            "utf8",
        ],
    );
    assert!(ok && out.to_lowercase().contains("verify ok"), "{out}");
    assert!(out.contains(&format!("NTRCN-{dept}")), "{out}");
    assert!(out.contains("SM2"), "{out}");
    // The external CA signs the key of the request (OpenSSL 3.0 `x509 -req` cannot check an
    // SM2 request's signature with a distinguishing ID, so the key is taken from it).
    let (ok, pubkey) = openssl(d, &["req", "-in", "seal.csr", "-noout", "-pubkey"]);
    assert!(ok, "{pubkey}");
    std::fs::write(d.join("seal.pub"), pubkey).unwrap();
    std::fs::write(
        d.join("ext.cnf"),
        "keyUsage=critical,digitalSignature,nonRepudiation\nextendedKeyUsage=1.3.6.1.5.5.7.3.36\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let subject = format!(
        "/O=厦门市市场监督管理局/organizationIdentifier=NTRCN-{dept}/CN=厦门市市场监督管理局行政审批专用章"
    );
    let (ok, out) = openssl(
        d,
        &[
            "x509",
            "-new",
            "-utf8",
            "-subj",
            &subject,
            "-force_pubkey",
            "seal.pub",
            "-CA",
            "ext.pem",
            "-CAkey",
            "ext.key",
            "-sm3",
            "-sigopt",
            DISTID,
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-out",
            "seal.pem",
        ],
    );
    assert!(ok, "{out}");
    let imported = s
        .import_seal_certificate(admin(pb::ImportSealCertificateRequest {
            request_id: String::new(),
            seal_id: seal.seal_id.clone(),
            certificate: std::fs::read(d.join("seal.pem")).unwrap(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        imported.certificate_source(),
        pb::CertificateSource::External
    );
    // It has its GB/T 38540 seal now, made by the registry's SM2 seal CA.
    let got = s
        .get_seal(admin(pb::GetSealRequest {
            seal_id: seal.seal_id.clone(),
            include_image: false,
        }))
        .await
        .unwrap()
        .into_inner();
    let esl = SeSeal::from_der(&got.esl).unwrap();
    assert_eq!(esl.cert_list, vec![imported.certificate_der.clone()]);

    // A certificate an SM2 CA signed without the distinguishing ID is refused: its signature
    // does not verify as GB/T 32918 defines it.
    let r2 = s
        .register_seal(admin(sm2_seal(
            dept.clone(),
            "厦门市市场监督管理局合同专用章",
            pb::SealType::Contract,
            4,
            true,
        )))
        .await
        .unwrap()
        .into_inner();
    std::fs::write(d.join("seal2.csr"), &r2.csr_pem).unwrap();
    let (_, pubkey) = openssl(d, &["req", "-in", "seal2.csr", "-noout", "-pubkey"]);
    std::fs::write(d.join("seal2.pub"), pubkey).unwrap();
    let (ok, out) = openssl(
        d,
        &[
            "x509",
            "-new",
            "-utf8",
            "-subj",
            &subject.replace("行政审批", "合同"),
            "-force_pubkey",
            "seal2.pub",
            "-CA",
            "ext.pem",
            "-CAkey",
            "ext.key",
            "-sm3",
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-out",
            "seal2.pem",
        ],
    );
    assert!(ok, "{out}");
    let e = s
        .import_seal_certificate(admin(pb::ImportSealCertificateRequest {
            request_id: String::new(),
            seal_id: r2.seal.unwrap().seal_id,
            certificate: std::fs::read(d.join("seal2.pem")).unwrap(),
        }))
        .await
        .unwrap_err();
    let fields = expect_code(e, Code::InvalidArgument);
    assert!(
        fields
            .iter()
            .any(|(f, m)| f == "certificate" && m.contains("no chain")),
        "{fields:?}"
    );
    server.stop().await.unwrap();
}

/// Every file of an OFD package by its path.
fn unzip(ofd: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(ofd)).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

async fn licence_file(
    addr: std::net::SocketAddr,
    dept: &str,
    id: &str,
) -> Result<pb::LicenceFile, tonic::Status> {
    LicenceServiceClient::new(connect(addr).await)
        .get_licence_file(as_actor(
            dept,
            "issuer",
            pb::GetLicenceFileRequest {
                licence_id: id.into(),
                format: pb::LicenceFileFormat::Ofd as i32,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sm2_licence_is_a_sealed_ofd_file_that_an_independent_reader_opens() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let i = issuer(addr, 1, pb::SealAlgorithm::Sm2).await;
    let lic = LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", request(&i, "ofd-1")))
        .await
        .unwrap()
        .into_inner();
    let f = licence_file(addr, &i.dept, &lic.licence_id).await.unwrap();
    assert!(f.sealed);
    assert_eq!(f.sha256, certseal_crypto::sha256(&[&f.content]).to_vec());
    // Made once: the same bytes and the same log entry afterwards.
    let again = licence_file(addr, &i.dept, &lic.licence_id).await.unwrap();
    assert_eq!(again.content, f.content);
    assert_eq!(again.log_index, f.log_index);
    let entry = certseal::pb::audit_service_client::AuditServiceClient::new(connect(addr).await)
        .get_entry(admin(pb::GetEntryRequest { index: f.log_index }))
        .await
        .unwrap()
        .into_inner();
    let entry = certseal_log::Entry::decode(&entry.entry).unwrap();
    assert_eq!(entry.kind, "licence.ofd_sealed");
    assert_eq!(entry.subject, lic.licence_id);
    assert_eq!(entry.digest.to_vec(), f.sha256);

    // certseal's own reader: every digest holds, signed by the licence's seal, whose SESeal
    // is the one the registry made; the metadata names the licence.
    let sealed = certseal_ofd::open_sealed(&f.content).unwrap();
    assert_eq!(sealed.custom("证照标识"), Some(lic.licence_id.as_str()));
    assert_eq!(sealed.custom("持证主体"), Some("张三"));
    assert_eq!(sealed.signature.cert, i.seal_cert);
    let esl = SealServiceClient::new(connect(addr).await)
        .get_seal(admin(pb::GetSealRequest {
            seal_id: i.seal_id.clone(),
            include_image: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .esl;
    assert_eq!(sealed.signature.seal, SeSeal::from_der(&esl).unwrap());

    // OpenSSL: `dgst -sm3` agrees with every reference, and the SES_Signature verifies.
    let files = unzip(&f.content);
    let xml = String::from_utf8(files["Doc_0/Signs/Sign_0/Signature.xml"].clone()).unwrap();
    let mut checked = 0;
    for part in xml.split("<ofd:Reference FileRef=\"/").skip(1) {
        let path = &part[..part.find('"').unwrap()];
        let b64 = &part[part.find("<ofd:CheckValue>").unwrap() + 16..part.find("</").unwrap()];
        std::fs::write(d.join("part"), &files[path]).unwrap();
        let (ok, out) = openssl(d, &["dgst", "-sm3", "-r", "part"]);
        assert!(ok, "{out}");
        use base64::Engine;
        let want = hex::encode(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        );
        assert!(out.starts_with(&want), "{path}: {out} vs {want}");
        checked += 1;
    }
    assert!(checked >= 7, "{checked} references");
    std::fs::write(d.join("tbs.der"), &sealed.signature.tbs).unwrap();
    std::fs::write(d.join("sig.der"), &sealed.signature.signature).unwrap();
    std::fs::write(
        d.join("seal.pem"),
        Certificate {
            der: i.seal_cert.clone(),
        }
        .pem(),
    )
    .unwrap();
    let (ok, out) = openssl(d, &["x509", "-in", "seal.pem", "-pubkey", "-noout"]);
    assert!(ok, "{out}");
    std::fs::write(d.join("seal.pub"), out).unwrap();
    let (ok, out) = openssl(
        d,
        &[
            "pkeyutl", "-verify", "-pubin", "-inkey", "seal.pub", "-rawin", "-digest", "sm3",
            "-pkeyopt", DISTID, "-in", "tbs.der", "-sigfile", "sig.der",
        ],
    );
    assert!(
        ok && out.contains("Signature Verified Successfully"),
        "{out}"
    );

    // easyofd opens it: the rendering shows the licence ID, the holder and the seal.
    std::fs::write(d.join("licence.ofd"), &f.content).unwrap();
    let stamp = xml
        .split("<ofd:StampAnnot ")
        .nth(1)
        .and_then(|s| s.split("Boundary=\"").nth(1))
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let mut args = vec![
        env!("CARGO_MANIFEST_DIR").to_owned() + "/tests/python/render_ofd.py",
        d.join("licence.ofd").display().to_string(),
        d.join("rendered").display().to_string(),
    ];
    args.extend(stamp.split(' ').map(str::to_owned));
    let out = std::process::Command::new(python())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = seen["text"].as_str().unwrap();
    assert!(text.contains(&lic.licence_id), "{text}");
    assert!(text.contains("张三"), "{text}");
    assert!(text.contains("食品经营许可证"), "{text}");
    assert!(seen["seal_pixels"].as_u64().unwrap() > 200, "{seen}");
    if let Some(keep) = std::env::var_os("CERTSEAL_KEEP_OFD_RENDERING") {
        std::fs::copy(d.join("rendered.png"), keep).unwrap();
    }

    // VerifyDocument takes the file: passed, with a receipt; each tamper gets its own answer.
    use pb::SubIndication as S;
    let r = check_ofd(addr, f.content.clone()).await;
    assert_eq!(
        (r.indication(), r.sub_indication()),
        (pb::Indication::TotalPassed, S::Unspecified),
        "{}",
        r.reason
    );
    assert!(!r.receipt.is_empty());
    assert_eq!(r.licence.as_ref().unwrap().licence_id, lic.licence_id);
    let repack = |change: &dyn Fn(&str, Vec<u8>) -> Vec<u8>| {
        use std::io::Write;
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in unzip(&f.content) {
            out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(&change(&name, data)).unwrap();
        }
        out.finish().unwrap().into_inner()
    };
    let page = repack(&|name, mut d| {
        if name.ends_with("Content.xml") {
            let at = d.len() / 2;
            d[at] ^= 1;
        }
        d
    });
    let r = check_ofd(addr, page).await;
    assert_eq!(
        (r.indication(), r.sub_indication()),
        (pb::Indication::TotalFailed, S::HashFailure),
        "{}",
        r.reason
    );
    assert!(r.licence.is_none(), "a tampered file shows no record");
    let unreferenced = repack(&|name, d| {
        if name.ends_with("Sign_0/Signature.xml") {
            let x = String::from_utf8(d).unwrap();
            let start = x
                .find("<ofd:Reference FileRef=\"/Doc_0/Res/qr.png\"")
                .unwrap();
            let end = start + x[start..].find("</ofd:Reference>").unwrap() + 16;
            return format!("{}{}", &x[..start], &x[end..]).into_bytes();
        }
        d
    });
    let r = check_ofd(addr, unreferenced).await;
    assert_eq!(r.sub_indication(), S::HashFailure, "{}", r.reason);
    let r = check_ofd(addr, b"PK\x03\x04 not a package".to_vec()).await;
    assert_eq!(r.sub_indication(), S::FormatFailure, "{}", r.reason);

    // Offline: the trust list and CA, as for a COSE document; and any sealed OFD file's seal
    // signature alone, with its signer as the anchor.
    let mut s = SealServiceClient::new(connect(addr).await);
    let cas = s
        .get_ca_certificate(admin(pb::GetCaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner();
    let tl = s
        .get_trust_list(admin(pb::GetTrustListRequest {}))
        .await
        .unwrap()
        .into_inner()
        .signed;
    std::fs::write(d.join("ca.pem"), &cas.pem).unwrap();
    std::fs::write(d.join("tl.cose"), &tl).unwrap();
    let offline = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
            .arg("verify")
            .args(args)
            .arg("--json")
            .current_dir(d)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
    };
    let v = offline(&["licence.ofd", "--trust-list", "tl.cose", "--ca", "ca.pem"]);
    assert_eq!(v["indication"], "TOTAL_PASSED", "{v}");
    assert_eq!(v["licence_id"], lic.licence_id.as_str(), "{v}");
    std::fs::write(
        d.join("other.ofd"),
        include_bytes!("../crates/certseal-ofd/tests/data/SESV4SignDoc.ofd"),
    )
    .unwrap();
    let theirs = certseal_ofd::open_sealed(include_bytes!(
        "../crates/certseal-ofd/tests/data/SESV4SignDoc.ofd"
    ))
    .unwrap();
    std::fs::write(
        d.join("their-signer.pem"),
        Certificate {
            der: theirs.signature.cert.clone(),
        }
        .pem(),
    )
    .unwrap();
    let v = offline(&["other.ofd", "--anchor", "their-signer.pem"]);
    assert_eq!(v["seal_signature"], "VALID", "{v}");
    let v = offline(&["other.ofd", "--anchor", "seal.pem"]);
    assert_eq!(v["seal_signature"], "UNTRUSTED", "{v}");
    let v = offline(&["other.ofd", "--trust-list", "tl.cose", "--ca", "ca.pem"]);
    assert_eq!(v["indication"], "TOTAL_FAILED", "{v}");

    // The CLI writes the same file.
    let out_file = d.join("cli.ofd");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certseal"))
        .args(["licence", "ofd", &lic.licence_id, "--out"])
        .arg(&out_file)
        .args(["--server", &format!("http://{addr}"), "--as-department"])
        .arg(&i.dept)
        .args(["--as-role", "issuer"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&out_file).unwrap(), f.content);

    // A licence of an Ed25519 seal gets an unsigned view that says so.
    let ed = issuer(addr, 2, pb::SealAlgorithm::Ed25519).await;
    let el = LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(&ed.dept, "issuer", request(&ed, "ofd-2")))
        .await
        .unwrap()
        .into_inner();
    let v = licence_file(addr, &ed.dept, &el.licence_id).await.unwrap();
    assert!(!v.sealed);
    assert_eq!(v.log_index, 0);
    assert!(certseal_ofd::open_sealed(&v.content).is_err());
    let custom = certseal_ofd::read::custom_data(&v.content).unwrap();
    assert!(custom.contains(&("certseal.kind".to_owned(), "view".to_owned())));
    assert!(custom.contains(&("证照标识".to_owned(), el.licence_id.clone())));

    // Once the seal cannot sign, a licence without a file gets none; one with a file keeps it.
    let second = LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", request(&i, "ofd-3")))
        .await
        .unwrap()
        .into_inner();
    SealServiceClient::new(connect(addr).await)
        .suspend_seal(admin(pb::SealTransitionRequest {
            request_id: String::new(),
            seal_id: i.seal_id.clone(),
            note: "印章保管人变更".into(),
        }))
        .await
        .unwrap();
    let e = licence_file(addr, &i.dept, &second.licence_id)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("COSE document remains the proof"),
        "{e:?}"
    );
    let kept = licence_file(addr, &i.dept, &lic.licence_id).await.unwrap();
    assert_eq!(kept.content, f.content);
    // An auditor reads a file once made, but does not make the seal sign.
    let as_auditor = |id: &str| {
        let id = id.to_owned();
        async move {
            LicenceServiceClient::new(connect(addr).await)
                .get_licence_file(as_actor(
                    ADMIN_DEPT,
                    "auditor",
                    pb::GetLicenceFileRequest {
                        licence_id: id,
                        format: pb::LicenceFileFormat::Ofd as i32,
                    },
                ))
                .await
        }
    };
    assert_eq!(
        as_auditor(&lic.licence_id)
            .await
            .unwrap()
            .into_inner()
            .content,
        f.content
    );
    let third = LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(&ed.dept, "issuer", request(&ed, "ofd-4")))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !as_auditor(&third.licence_id)
            .await
            .unwrap()
            .into_inner()
            .sealed
    );
    let e = as_auditor(&second.licence_id).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Unknown licences and bad IDs are refused as such.
    let e = licence_file(addr, &i.dept, "not-an-id").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ofd_file_sealed_with_another_seals_key_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ChildServer::spawn(&data);
    let i = issuer(server.addr, 1, pb::SealAlgorithm::Sm2).await;
    let mut s = SealServiceClient::new(connect(server.addr).await);
    let other = s
        .register_seal(admin(sm2_seal(
            i.dept.clone(),
            "厦门市市场监督管理局合同专用章",
            pb::SealType::Contract,
            5,
            false,
        )))
        .await
        .unwrap()
        .into_inner()
        .seal
        .unwrap();
    let other_esl = s
        .get_seal(admin(pb::GetSealRequest {
            seal_id: other.seal_id.clone(),
            include_image: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .esl;
    let lic = LicenceServiceClient::new(connect(server.addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", request(&i, "forged-1")))
        .await
        .unwrap()
        .into_inner();
    let f = licence_file(server.addr, &i.dept, &lic.licence_id)
        .await
        .unwrap();
    server.kill9();

    // What a thief with the registry's files could do: seal the licence's file with the key
    // of another of the department's seals.
    let kek = certseal_crypto::Kek::load_or_create(&data.join("keys").join("kek")).unwrap();
    let store =
        certseal_store_rocks::RocksStore::open(&data.join("db"), &Default::default()).unwrap();
    let sealed_key = {
        use certseal_store::Read;
        let sid: certseal_core::SealId = other.seal_id.parse().unwrap();
        store
            .get(certseal_store::Table::SealKeys, sid.as_bytes())
            .unwrap()
            .unwrap()
    };
    drop(store);
    let pkcs8 = kek
        .open(
            format!("certseal/seal-key/{}", other.seal_id).as_bytes(),
            &sealed_key,
        )
        .unwrap();
    let key = sm::Sm2Key::from_pkcs8(&pkcs8).unwrap();
    let files = unzip(&f.content);
    let xml = &files["Doc_0/Signs/Sign_0/Signature.xml"];
    let forged_value = certseal_crypto::ses::sign(
        &other_esl,
        Timestamp::now().0 / 1000,
        &sm::sm3(&[xml]),
        "/Doc_0/Signs/Sign_0/Signature.xml",
        &key,
        &other.certificate_der,
    )
    .unwrap();
    let forged = {
        use std::io::Write;
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in &files {
            out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            let bytes = if name.ends_with("SignedValue.dat") {
                &forged_value
            } else {
                bytes
            };
            out.write_all(bytes).unwrap();
        }
        out.finish().unwrap().into_inner()
    };
    // As a signature it holds (certseal's reader and OpenSSL alike would say so)...
    let opened = certseal_ofd::open_sealed(&forged).unwrap();
    assert_eq!(opened.signature.cert, other.certificate_der);
    // ...but the licence's own seal did not make it.
    let server = ChildServer::spawn(&data);
    let r = check_ofd(server.addr, forged).await;
    assert_eq!(
        says(&r),
        (
            pb::Indication::TotalFailed,
            pb::SubIndication::SigCryptoFailure
        ),
        "{}",
        r.reason
    );
    assert!(
        r.reason.contains("not by the licence's seal"),
        "{}",
        r.reason
    );
    assert!(r.licence.is_none(), "a forgery shows no record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_seal_at_issue_the_file_is_sealed_without_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_config(&dir.path().join("data"), "[ofd]\nseal_at_issue = true\n").await;
    let addr = server.addr;
    let i = issuer(addr, 1, pb::SealAlgorithm::Sm2).await;
    let lic = LicenceServiceClient::new(connect(addr).await)
        .issue_licence(as_actor(&i.dept, "issuer", request(&i, "at-issue")))
        .await
        .unwrap()
        .into_inner();
    // The log gets its licence.ofd_sealed entry with no one asking for the file.
    let mut audit =
        certseal::pb::audit_service_client::AuditServiceClient::new(connect(addr).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let sealed_at = 'found: loop {
        for index in 0..64 {
            let Ok(e) = audit.get_entry(admin(pb::GetEntryRequest { index })).await else {
                break;
            };
            let e = certseal_log::Entry::decode(&e.into_inner().entry).unwrap();
            if e.kind == "licence.ofd_sealed" && e.subject == lic.licence_id {
                break 'found index;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no licence.ofd_sealed entry"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let f = licence_file(addr, &i.dept, &lic.licence_id).await.unwrap();
    assert!(f.sealed);
    assert_eq!(
        f.log_index, sealed_at,
        "the file made at issue, not a second one"
    );
    server.stop().await.unwrap();
}
