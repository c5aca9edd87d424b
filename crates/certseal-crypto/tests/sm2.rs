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
