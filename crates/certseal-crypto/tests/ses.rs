//! GB/T 38540 structures made by another implementation (ofdrw; see tests/data/README.md):
//! read, and their SM2 signatures checked.

use std::io::Read as _;
use std::path::Path;

use certseal_crypto::ses::{SM2_WITH_SM3_OID, SeSeal, SesSignature};
use certseal_crypto::sm;
use x509_parser::prelude::*;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

/// The SM2 public key (uncompressed point) of a DER certificate.
fn public_key(cert: &[u8]) -> Vec<u8> {
    let (_, c) = X509Certificate::from_der(cert).unwrap();
    c.public_key().subject_public_key.data.to_vec()
}

#[test]
fn version_4_and_version_1_seals_are_read_and_their_makers_signatures_verify() {
    for (file, version, name, time_len) in [
        ("UserV4.esl", 4, "OFD R&W 测试用印章", 15),
        ("UserV1.esl", 1, "OFDRW测试用印章", 13),
    ] {
        let seal = SeSeal::from_der(&data(file)).unwrap();
        assert_eq!(seal.version, version, "{file}");
        assert_eq!(seal.vid, "OFDR&WTest");
        assert_eq!(seal.name, name);
        assert_eq!(seal.es_id.len(), 32);
        assert_eq!(seal.cert_list.len(), 1);
        X509Certificate::from_der(&seal.cert_list[0]).expect("the holder's certificate");
        assert_eq!(seal.created.len(), time_len, "{file}: {}", seal.created);
        assert_eq!(seal.picture.kind, "PNG");
        assert!(seal.picture.data.starts_with(b"\x89PNG"));
        assert_eq!((seal.picture.width_mm, seal.picture.height_mm), (40, 40));
        assert_eq!(seal.signature_algorithm, SM2_WITH_SM3_OID);
        let maker = public_key(&seal.maker_cert);
        sm::verify_sm2(&maker, &seal.signed_data, &seal.signature)
            .unwrap_or_else(|e| panic!("{file}: the maker's signature: {e}"));
        let mut tampered = seal.signed_data.clone();
        tampered[40] ^= 1;
        assert!(sm::verify_sm2(&maker, &tampered, &seal.signature).is_err());
    }
    // Not a seal, or cut short: a precise error, no panic.
    let der = data("UserV4.esl");
    for bad in [&der[1..], b"\x30\x03\x02\x01\x04".as_slice()] {
        assert!(SeSeal::from_der(bad).is_err());
    }
    for n in 0..der.len() {
        assert!(SeSeal::from_der(&der[..n]).is_err(), "cut at {n}");
    }
}

fn ofd_part(ofd: &[u8], path: &str) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(ofd)).unwrap();
    let mut out = Vec::new();
    zip.by_name(path).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// The signature of an OFD file sealed by ofdrw: its dataHash is SM3 of Signature.xml, and its
/// SM2 signature over TBS_Sign verifies with the signer's certificate (the recipe the testdata
/// README checked with OpenSSL).
#[test]
fn an_ofd_signature_by_another_implementation_verifies() {
    let ofd = data("SESV4SignDoc.ofd");
    let signed = ofd_part(&ofd, "Doc_0/Signs/Sign_0/SignedValue.dat");
    let sig = SesSignature::from_der(&signed).unwrap();
    let xml = ofd_part(&ofd, "Doc_0/Signs/Sign_0/Signature.xml");
    assert_eq!(
        hex::encode(&sig.data_hash),
        "50750042bf6a15552d5c0e44c4bd1dc9545b99d3cdd19bb20590143b17c1a2e8"
    );
    assert_eq!(sig.data_hash, sm::sm3(&[&xml]).to_vec());
    assert_eq!(sig.signature_algorithm, SM2_WITH_SM3_OID);
    assert_eq!(sig.cert.len(), 528);
    let signer = public_key(&sig.cert);
    sm::verify_sm2(&signer, &sig.tbs, &sig.signature).unwrap();
    let mut tampered = sig.tbs.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(sm::verify_sm2(&signer, &tampered, &sig.signature).is_err());
    // The seal inside is a version 4 seal whose maker's signature verifies too.
    assert_eq!(sig.seal.version, 4);
    sm::verify_sm2(
        &public_key(&sig.seal.maker_cert),
        &sig.seal.signed_data,
        &sig.seal.signature,
    )
    .unwrap();
}

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/ensure-deps --test installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A seal and a document signature made here read back as written, and OpenSSL verifies the
/// document signature with the testdata README's recipe.
#[test]
fn seals_and_signatures_made_here_read_back_and_verify_with_openssl() {
    use certseal_crypto::ses::{NewSeal, SealPicture, make_seal, sign};
    use certseal_crypto::sm::Sm2Key;
    use certseal_crypto::sm_x509;
    use certseal_crypto::x509::SealSubject;

    let now = 1_780_000_000;
    let (ca_key, _) = Sm2Key::generate().unwrap();
    let ca = sm_x509::create_ca("seal CA", &ca_key, now - 60, now + 86_400).unwrap();
    let (seal_key, _) = Sm2Key::generate().unwrap();
    let seal_cert = sm_x509::issue_seal_certificate(
        &ca,
        &ca_key,
        &seal_key.public_key_der().unwrap(),
        &SealSubject {
            department_name: "某局",
            credit_code: "11100000000013338W",
            seal_name: "行政审批专用章",
        },
        now - 60,
        now + 86_400,
    )
    .unwrap();
    let picture = SealPicture {
        kind: "PNG".into(),
        data: b"\x89PNG\r\n\x1a\n not really".to_vec(),
        width_mm: 40,
        height_mm: 40,
    };
    let certs = vec![seal_cert.der.clone()];
    let der = make_seal(
        &NewSeal {
            vid: "certseal",
            es_id: "11100000000013338W0001",
            seal_type: 2,
            name: "行政审批专用章",
            cert_list: &certs,
            created: now,
            valid_start: now,
            valid_end: now + 86_400,
            picture: &picture,
        },
        &ca_key,
        &ca.der,
    )
    .unwrap();
    let seal = SeSeal::from_der(&der).unwrap();
    assert_eq!(
        (seal.version, seal.seal_type, seal.name.as_str()),
        (4, 2, "行政审批专用章")
    );
    assert_eq!(seal.es_id, "11100000000013338W0001");
    assert_eq!(seal.cert_list, certs);
    assert_eq!(seal.created, "20260528202640Z");
    assert_eq!(seal.picture, picture);
    assert_eq!(seal.maker_cert, ca.der);
    sm::verify_sm2(ca_key.public_key(), &seal.signed_data, &seal.signature).unwrap();

    let xml = b"<ofd:Signature>...</ofd:Signature>";
    let hash = sm::sm3(&[xml]);
    let signed = sign(
        &der,
        now,
        &hash,
        "/Doc_0/Signs/Sign_0/Signature.xml",
        &seal_key,
        &seal_cert.der,
    )
    .unwrap();
    let sig = SesSignature::from_der(&signed).unwrap();
    assert_eq!(sig.seal, seal);
    assert_eq!(sig.data_hash, hash);
    assert_eq!(sig.property_info, "/Doc_0/Signs/Sign_0/Signature.xml");
    assert_eq!(sig.cert, seal_cert.der);
    sm::verify_sm2(seal_key.public_key(), &sig.tbs, &sig.signature).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("SignedValue.dat"), &signed).unwrap();
    std::fs::write(dir.path().join("tbs.der"), &sig.tbs).unwrap();
    std::fs::write(dir.path().join("sig.der"), &sig.signature).unwrap();
    std::fs::write(
        dir.path().join("pub.der"),
        seal_key.public_key_der().unwrap(),
    )
    .unwrap();
    let (ok, out) = openssl(
        &["asn1parse", "-inform", "DER", "-in", "SignedValue.dat"],
        dir.path(),
    );
    assert!(
        ok && out.contains("IA5STRING         :ES") && out.contains("SM2-with-SM3"),
        "{out}"
    );
    let (ok, out) = openssl(
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
            "tbs.der",
            "-sigfile",
            "sig.der",
        ],
        dir.path(),
    );
    assert!(
        ok && out.contains("Signature Verified Successfully"),
        "{out}"
    );
    // Only ASCII goes in IA5String fields.
    assert!(sign(&der, now, &hash, "/签名.xml", &seal_key, &seal_cert.der).is_err());
}
