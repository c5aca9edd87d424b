//! SM2 and SM3 against known answers, and against OpenSSL 3.
//!
//! `tests/data/sm2-annex-a.json` is copied from `../shared/testdata/ofd/sm2-annex-a.json`
//! (GB/T 32918.5-2017 Annex A, its (r, s) checked with OpenSSL 3.0 by the vector's author).

use std::path::Path;
use std::process::Command;

use certseal_crypto::sm::{self, Sm2Key};

fn vector() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sm2-annex-a.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn field(v: &serde_json::Value, name: &str) -> Vec<u8> {
    hex::decode(v[name].as_str().unwrap()).unwrap()
}

#[test]
fn annex_a_z_a_e_and_signature() {
    let v = vector();
    let id = v["id"].as_str().unwrap();
    assert_eq!(id, sm::DEFAULT_DISTID);
    let msg = v["msg"].as_str().unwrap().as_bytes();
    let public = [&[4u8][..], &field(&v, "Px"), &field(&v, "Py")].concat();
    assert_eq!(sm::z_a(id, &public).unwrap().to_vec(), field(&v, "ZA"));
    let e = sm::e(id, &public, msg).unwrap();
    assert_eq!(e.to_vec(), field(&v, "e"));
    let rs = [field(&v, "r"), field(&v, "s")].concat();
    sm::verify_sm2(&public, msg, &rs).unwrap();
    sm::verify_sm2_digest(&public, &e, &rs).unwrap();
    // One bit changed in the message, or in s, fails.
    assert!(sm::verify_sm2(&public, b"message digesu", &rs).is_err());
    let mut bad = rs.clone();
    bad[63] ^= 1;
    assert!(sm::verify_sm2(&public, msg, &bad).is_err());
    // The vector's private key gives its public key.
    let key = Sm2Key::from_scalar(&field(&v, "d")).unwrap();
    assert_eq!(key.public_key(), public.as_slice());
}

#[test]
fn sm3_known_answers() {
    let v = vector();
    assert_eq!(
        hex::encode(sm::sm3(&[b"abc"])),
        v["sm3"]["abc"].as_str().unwrap()
    );
    // GB/T 32905 Annex A.2: "abcd" sixteen times.
    assert_eq!(
        hex::encode(sm::sm3(&[b"abcd".repeat(16).as_slice()])),
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    );
}

/// The crate derives k itself (RFC 6979), so the same key and message always give the same
/// signature: this one, made by this code, is kept to catch any change of it.
#[test]
fn fixed_key_regression() {
    let v = vector();
    let key = Sm2Key::from_scalar(&field(&v, "d")).unwrap();
    let sig = key.sign(b"certseal SM2 regression");
    assert_eq!(sig, key.sign(b"certseal SM2 regression"));
    assert_eq!(hex::encode(&sig), REGRESSION);
    sm::verify_sm2(key.public_key(), b"certseal SM2 regression", &sig).unwrap();
    let der = key.sign_der(b"certseal SM2 regression");
    sm::verify_sm2(key.public_key(), b"certseal SM2 regression", &der).unwrap();
    // PKCS#8 round trip.
    let again = Sm2Key::from_pkcs8(&key.to_pkcs8().unwrap()).unwrap();
    assert_eq!(again.public_key(), key.public_key());
}

const REGRESSION: &str = "ec03a02162f1c4bb05142619933074d2bb0445d35b404e2198ff9e4d6ddc50fe078fe7b7cdd05379c996890560fd820e4de3c5e8ca27fc4f1102b03cd872bf3a";

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package; scripts/ensure-deps --test installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// OpenSSL 3 verifies signatures made here, with SM3 and the default distinguishing ID, and
/// refuses one of another message; its SM3 agrees with ours.
#[test]
fn openssl_verifies_our_signatures_and_digests() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = Sm2Key::generate().unwrap();
    let msg = "电子证照 licence to be sealed".as_bytes();
    std::fs::write(dir.path().join("msg"), msg).unwrap();
    std::fs::write(dir.path().join("other"), b"another message").unwrap();
    std::fs::write(dir.path().join("sig.der"), key.sign_der(msg)).unwrap();
    std::fs::write(dir.path().join("pub.der"), key.public_key_der().unwrap()).unwrap();
    let verify = |file: &str| {
        openssl(
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-keyform",
                "DER",
                "-inkey",
                "pub.der",
                "-rawin",
                "-digest",
                "sm3",
                "-pkeyopt",
                "distid:1234567812345678",
                "-in",
                file,
                "-sigfile",
                "sig.der",
            ],
            dir.path(),
        )
    };
    let (ok, out) = verify("msg");
    assert!(
        ok && out.contains("Signature Verified Successfully"),
        "{out}"
    );
    let (ok, out) = verify("other");
    assert!(
        !ok,
        "OpenSSL accepted a signature of another message: {out}"
    );
    let (ok, out) = openssl(&["dgst", "-sm3", "-r", "msg"], dir.path());
    assert!(ok, "{out}");
    assert!(out.starts_with(&hex::encode(sm::sm3(&[msg]))), "{out}");
}

fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// An SM2 seal CA and a seal certificate it issues: the seal profile, signed with SM2-with-SM3,
/// checked by x509-parser and our SM2 verification, and by `openssl verify`.
#[test]
fn sm2_seal_certificates_in_the_seal_profile() {
    use certseal_crypto::sm_x509;
    use certseal_crypto::x509::SealSubject;
    use x509_parser::prelude::*;

    let now = 1_780_000_000;
    let (ca_key, _) = Sm2Key::generate().unwrap();
    let ca = sm_x509::create_ca(
        "certseal seal CA (SM2)",
        &ca_key,
        now - 60,
        now + 86_400 * 3650,
    )
    .unwrap();
    let (seal_key, _) = Sm2Key::generate().unwrap();
    let subject = SealSubject {
        department_name: "某市市场监督管理局, 第一分局",
        credit_code: "11100000000013338W",
        seal_name: "行政审批专用章",
    };
    let seal = sm_x509::issue_seal_certificate(
        &ca,
        &ca_key,
        &seal_key.public_key_der().unwrap(),
        &subject,
        now - 60,
        now + 86_400 * 365,
    )
    .unwrap();

    let (_, cert) = X509Certificate::from_der(&seal.der).unwrap();
    assert_eq!(
        cert.signature_algorithm.algorithm.to_id_string(),
        "1.2.156.10197.1.501"
    );
    let org_id: Vec<_> = cert
        .subject()
        .iter_attributes()
        .filter(|a| a.attr_type().to_id_string() == "2.5.4.97")
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(org_id, ["NTRCN-11100000000013338W"]);
    assert_eq!(
        cert.subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        subject.department_name
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert_eq!(eku.other.len(), 1);
    assert_eq!(eku.other[0].to_id_string(), "1.3.6.1.5.5.7.3.36");
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.non_repudiation() && !ku.key_cert_sign());
    assert!(!cert.is_ca());
    // The SM2 signature over the TBS verifies with the CA's key, and not with the seal's.
    let tbs = cert.tbs_certificate.as_ref();
    let sig = cert.signature_value.data.as_ref();
    sm::verify_sm2(ca_key.public_key(), tbs, sig).unwrap();
    assert!(sm::verify_sm2(seal_key.public_key(), tbs, sig).is_err());
    let (_, ca_parsed) = X509Certificate::from_der(&ca.der).unwrap();
    assert!(ca_parsed.is_ca());
    assert_eq!(cert.issuer(), ca_parsed.subject());

    // OpenSSL accepts the chain, and refuses it under another CA of the same name. OpenSSL 3
    // verifies SM2 certificate signatures with the default distinguishing ID only when told
    // (`-vfyopt distid:…`); without it, it fails them, ours and other implementations' alike.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pem(&ca.der)).unwrap();
    std::fs::write(dir.path().join("seal.pem"), pem(&seal.der)).unwrap();
    let (ok, out) = openssl(
        &[
            "verify",
            "-vfyopt",
            "distid:1234567812345678",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "any",
            "seal.pem",
        ],
        dir.path(),
    );
    assert!(ok && out.contains("seal.pem: OK"), "{out}");
    let (other_key, _) = Sm2Key::generate().unwrap();
    let other =
        sm_x509::create_ca("certseal seal CA (SM2)", &other_key, now - 60, now + 86_400).unwrap();
    std::fs::write(dir.path().join("other.pem"), pem(&other.der)).unwrap();
    let (ok, out) = openssl(
        &[
            "verify",
            "-vfyopt",
            "distid:1234567812345678",
            "-CAfile",
            "other.pem",
            "-purpose",
            "any",
            "seal.pem",
        ],
        dir.path(),
    );
    assert!(!ok, "OpenSSL accepted the seal under another CA: {out}");
}

/// COSE_Sign1 with an SM2 key: alg -65537 (private use), raw r ‖ s, checked against the SM2
/// seal certificate, and refused against a certificate of another kind.
#[test]
fn cose_sign1_with_sm2() {
    use certseal_crypto::x509::{self, KeyAlgorithm, SealSubject};
    use certseal_crypto::{cose, load_signer, sm_x509};

    let now = 1_780_000_000;
    let (ca_key, _) = Sm2Key::generate().unwrap();
    let ca = sm_x509::create_ca("seal CA", &ca_key, now - 60, now + 86_400).unwrap();
    let new = x509::generate_key(KeyAlgorithm::Sm2).unwrap();
    let signer = load_signer(KeyAlgorithm::Sm2, &new.pkcs8).unwrap();
    assert_eq!(signer.public_key(), new.public_key.as_slice());
    let spki = Sm2Key::from_pkcs8(&new.pkcs8)
        .unwrap()
        .public_key_der()
        .unwrap();
    let subject = SealSubject {
        department_name: "某局",
        credit_code: "11100000000013338W",
        seal_name: "章",
    };
    let cert =
        sm_x509::issue_seal_certificate(&ca, &ca_key, &spki, &subject, now - 60, now + 86_400)
            .unwrap();
    let doc = cose::sign1(
        signer.as_ref(),
        b"kid00001",
        "application/test",
        None,
        b"payload".to_vec(),
    )
    .unwrap();
    let parsed = cose::parse_sign1(&doc, 65_536).unwrap();
    assert_eq!(parsed.alg, KeyAlgorithm::Sm2);
    assert_eq!(parsed.cose_alg(), cose::SM2_ALG);
    parsed.verify_with_certificate(&cert.der).unwrap();
    // Another payload under the same signature fails.
    let at = doc.windows(7).position(|w| w == b"payload").unwrap();
    let mut tampered = doc.clone();
    tampered[at] = b'P';
    let t = cose::parse_sign1(&tampered, 65_536).unwrap();
    assert_eq!(
        t.verify_with_certificate(&cert.der),
        Err(certseal_crypto::CryptoError::BadSignature)
    );
    // An SM2 document against a P-256 certificate, and the reverse, are refused by kind.
    let p256_ca = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let p256_ca_cert = x509::create_ca("p256 CA", &p256_ca.pkcs8, now - 60, now + 86_400).unwrap();
    let p256 = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let p256_cert = x509::issue_seal_certificate(
        &p256_ca_cert,
        &p256_ca.pkcs8,
        &p256.pkcs8,
        &subject,
        now - 60,
        now + 86_400,
    )
    .unwrap();
    let err = parsed.verify_with_certificate(&p256_cert.der).unwrap_err();
    assert!(err.to_string().contains("Sm2"), "{err}");
    let p256_doc = cose::sign1(
        load_signer(KeyAlgorithm::EcdsaP256, &p256.pkcs8)
            .unwrap()
            .as_ref(),
        b"kid00002",
        "application/test",
        None,
        b"payload".to_vec(),
    )
    .unwrap();
    let p = cose::parse_sign1(&p256_doc, 65_536).unwrap();
    p.verify_with_certificate(&p256_cert.der).unwrap();
    let err = p.verify_with_certificate(&cert.der).unwrap_err();
    assert!(err.to_string().contains("1.2.156.10197.1.301"), "{err}");
}
