//! Seal CA and seal certificates, checked by an independent implementation: the `openssl` CLI
//! (scripts/ensure-deps installs it). The external-CA flow signs our CSR with openssl.

use std::path::Path;
use std::process::Command;

use certseal_crypto::x509::{
    self, Certificate, KeyAlgorithm, SealCertificateCheck, SealSubject, check_seal_certificate,
};

const CODE: &str = "11350200MB0123456A";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn subject() -> SealSubject<'static> {
    SealSubject {
        department_name: "厦门市市场监督管理局",
        credit_code: CODE,
        seal_name: "厦门市市场监督管理局行政审批专用章",
    }
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/ensure-deps)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

fn check_for<'a>(
    public_key: &'a [u8],
    anchors: &'a [Certificate],
    not_before: i64,
    not_after: i64,
) -> SealCertificateCheck<'a> {
    SealCertificateCheck {
        public_key,
        credit_code: CODE,
        not_before,
        not_after,
        anchors,
        algorithm: KeyAlgorithm::Ed25519,
        intermediates: &[],
        at: now(),
    }
}

fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    )
}

#[test]
fn seal_certificates_from_our_ca_verify_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let ca_key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let ca = x509::create_ca(
        "certseal seal CA",
        &ca_key.pkcs8,
        t - 60,
        t + 10 * 365 * 86400,
    )
    .unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    for (alg, name) in [
        (KeyAlgorithm::Ed25519, "ed"),
        (KeyAlgorithm::EcdsaP256, "p256"),
    ] {
        let seal = x509::generate_key(alg).unwrap();
        let cert = x509::issue_seal_certificate(
            &ca,
            &ca_key.pkcs8,
            &seal.pkcs8,
            &subject(),
            t - 60,
            t + 2 * 365 * 86400,
        )
        .unwrap();
        let file = format!("{name}.pem");
        std::fs::write(dir.path().join(&file), cert.pem()).unwrap();
        let ok = openssl(dir.path(), &["verify", "-CAfile", "ca.pem", &file]);
        assert!(ok.contains(": OK"), "{ok}");
        let text = openssl(dir.path(), &["x509", "-in", &file, "-noout", "-text"]);
        assert!(
            text.contains("Digital Signature, Non Repudiation"),
            "{text}"
        );
        assert!(
            text.contains("1.3.6.1.5.5.7.3.36") || text.contains("Document Signing"),
            "{text}"
        );
        assert!(
            text.contains(&format!("organizationIdentifier = NTRCN-{CODE}")),
            "{text}"
        );
        assert!(text.contains("CA:FALSE"), "{text}");
        // Our own import check agrees.
        check_seal_certificate(
            &cert,
            &SealCertificateCheck {
                public_key: &seal.public_key,
                credit_code: CODE,
                not_before: t - 3600,
                not_after: t + 3 * 365 * 86400,
                anchors: std::slice::from_ref(&ca),
                algorithm: alg,
                intermediates: &[],
                at: t,
            },
        )
        .unwrap();
        assert_eq!(cert.kid().len(), 8);
    }
}

#[test]
fn imported_certificates_must_fit_the_seal_the_profile_and_a_trust_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = now();
    // An external CA, run with openssl.
    let ext_key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let ext_ca =
        x509::create_ca("external CA", &ext_key.pkcs8, t - 60, t + 10 * 365 * 86400).unwrap();
    std::fs::write(d.join("ext.pem"), ext_ca.pem()).unwrap();
    std::fs::write(d.join("ext.key"), pkcs8_pem(&ext_key.pkcs8)).unwrap();
    let seal = x509::generate_key(KeyAlgorithm::Ed25519).unwrap();
    let csr = x509::seal_csr(&seal.pkcs8, &subject(), t, t + 365 * 86400).unwrap();
    std::fs::write(d.join("seal.csr"), &csr).unwrap();
    let verified = openssl(d, &["req", "-in", "seal.csr", "-noout", "-verify"]);
    assert!(verified.to_lowercase().contains("verify ok"), "{verified}");

    let sign = |ext: &str, days: &str, out: &str| -> Certificate {
        std::fs::write(d.join("ext.cnf"), ext).unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "seal.csr",
                "-CA",
                "ext.pem",
                "-CAkey",
                "ext.key",
                "-CAcreateserial",
                "-days",
                days,
                "-extfile",
                "ext.cnf",
                "-out",
                out,
            ],
        );
        x509::certificate_from_pem_or_der(&std::fs::read(d.join(out)).unwrap()).unwrap()
    };
    let profile = "keyUsage=critical,digitalSignature,nonRepudiation\nextendedKeyUsage=1.3.6.1.5.5.7.3.36\nbasicConstraints=CA:FALSE\n";
    let good = sign(profile, "365", "good.pem");
    let anchors = [ext_ca.clone()];
    let nb = t - 86400;
    let wide = t + 5 * 365 * 86400;
    let err = |cert: &Certificate, c: &SealCertificateCheck<'_>| {
        check_seal_certificate(cert, c).unwrap_err().to_string()
    };
    check_seal_certificate(&good, &check_for(&seal.public_key, &anchors, nb, wide)).unwrap();

    let other = x509::generate_key(KeyAlgorithm::Ed25519).unwrap();
    assert!(
        err(&good, &check_for(&other.public_key, &anchors, nb, wide))
            .contains("another public key")
    );
    let wrong_eku = sign(
        "keyUsage=critical,digitalSignature,nonRepudiation\nextendedKeyUsage=codeSigning\n",
        "365",
        "eku.pem",
    );
    assert!(
        err(&wrong_eku, &check_for(&seal.public_key, &anchors, nb, wide))
            .contains("documentSigning")
    );
    let no_commitment = sign(
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=1.3.6.1.5.5.7.3.36\n",
        "365",
        "ku.pem",
    );
    assert!(
        err(
            &no_commitment,
            &check_for(&seal.public_key, &anchors, nb, wide)
        )
        .contains("key usage")
    );
    // Valid for 10 years, but the seal is for less.
    let long = sign(profile, "3650", "long.pem");
    assert!(
        err(&long, &check_for(&seal.public_key, &anchors, nb, wide))
            .contains("outside the seal's window")
    );
    // Signed by a CA the registry does not trust.
    let own_key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let own_ca = x509::create_ca("other CA", &own_key.pkcs8, t - 60, t + 86400).unwrap();
    assert!(
        err(
            &good,
            &check_for(&seal.public_key, std::slice::from_ref(&own_ca), nb, wide)
        )
        .contains("no chain")
    );
    // Valid for a year from now: expired a year and a day later, not yet valid yesterday.
    let later = SealCertificateCheck {
        at: t + 366 * 86400,
        ..check_for(&seal.public_key, &anchors, nb, wide)
    };
    assert!(err(&good, &later).contains("expired"));
    let earlier = SealCertificateCheck {
        at: t - 2 * 86400,
        ..check_for(&seal.public_key, &anchors, nb, wide)
    };
    assert!(err(&good, &earlier).contains("not yet valid"));
    // The right key bytes under another algorithm's label are refused.
    let c = SealCertificateCheck {
        algorithm: KeyAlgorithm::EcdsaP256,
        ..check_for(&seal.public_key, &anchors, nb, wide)
    };
    assert!(err(&good, &c).contains("another public key"));
    // Through an intermediate CA: accepted only with the intermediate given.
    openssl(
        d,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "inter.key",
            "-out",
            "inter.csr",
            "-subj",
            "/CN=intermediate",
        ],
    );
    std::fs::write(
        d.join("inter.cnf"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "inter.csr",
            "-CA",
            "ext.pem",
            "-CAkey",
            "ext.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "inter.cnf",
            "-out",
            "inter.pem",
        ],
    );
    std::fs::write(d.join("ext.cnf"), profile).unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "seal.csr",
            "-CA",
            "inter.pem",
            "-CAkey",
            "inter.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-out",
            "via.pem",
        ],
    );
    let bundle = [
        std::fs::read(d.join("via.pem")).unwrap(),
        std::fs::read(d.join("inter.pem")).unwrap(),
    ]
    .concat();
    let chain = x509::certificates_from_pem_or_der(&bundle).unwrap();
    assert_eq!(chain.len(), 2);
    assert!(err(&chain[0], &check_for(&seal.public_key, &anchors, nb, wide)).contains("no chain"));
    let with = SealCertificateCheck {
        intermediates: &chain[1..],
        ..check_for(&seal.public_key, &anchors, nb, wide)
    };
    check_seal_certificate(&chain[0], &with).unwrap();
    // A CA certificate with the seal's key is not a seal certificate.
    std::fs::write(
        d.join("ca-ext.cnf"),
        format!("{profile}basicConstraints=critical,CA:TRUE\n")
            .replace("basicConstraints=CA:FALSE\n", ""),
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "seal.csr",
            "-CA",
            "ext.pem",
            "-CAkey",
            "ext.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            "ca-ext.cnf",
            "-out",
            "as-ca.pem",
        ],
    );
    let as_ca =
        x509::certificate_from_pem_or_der(&std::fs::read(d.join("as-ca.pem")).unwrap()).unwrap();
    assert!(
        err(&as_ca, &check_for(&seal.public_key, &anchors, nb, wide)).contains("CA certificate")
    );
    // Another department's certificate.
    let c = SealCertificateCheck {
        credit_code: "91440300L83341734R",
        ..check_for(&seal.public_key, &anchors, nb, wide)
    };
    assert!(err(&good, &c).contains("organizationIdentifier"));
    // Garbage.
    let garbage = Certificate {
        der: b"not a certificate".to_vec(),
    };
    assert!(err(&garbage, &check_for(&seal.public_key, &anchors, nb, wide)).contains("not a DER"));
}
