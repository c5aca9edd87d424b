//! A trust list verifies only when signed by the registry's trust-list key: not by a seal's
//! key, though the same CA certified both.

use certseal_core::trust_list::{TRUST_LIST_CONTENT_TYPE, TRUST_LIST_SIGNER_PREFIX};
use certseal_core::{Timestamp, TrustList, trust_list::serde_bytes_vec::Der};
use certseal_crypto::x509::{self, KeyAlgorithm, SealSubject};
use certseal_crypto::{cose, load_signer};
use certseal_verify::verify_trust_list;

const ISSUER: &str = "certseal.test/log";

#[test]
fn only_the_trust_list_key_can_sign_a_trust_list() {
    let now = Timestamp::now().0 / 1000;
    let ca_key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let ca = x509::create_ca("seal CA", &ca_key.pkcs8, now - 60, now + 86400 * 365).unwrap();
    let list = TrustList {
        v: 1,
        issuer: ISSUER.into(),
        issued_at: Timestamp::now(),
        log_size: 3,
        cas: vec![Der(ca.der.clone())],
        seals: Vec::new(),
    };
    let sign = |pkcs8: &[u8], cert: &certseal_crypto::Certificate, list: &TrustList| {
        let signer = load_signer(KeyAlgorithm::Ed25519, pkcs8).unwrap();
        cose::sign1(
            signer.as_ref(),
            &cert.kid(),
            TRUST_LIST_CONTENT_TYPE,
            Some(&cert.der),
            list.encode(),
        )
        .unwrap()
    };
    let tl_key = x509::generate_key(KeyAlgorithm::Ed25519).unwrap();
    let tl_cert = x509::issue_service_certificate(
        &ca,
        &ca_key.pkcs8,
        &tl_key.pkcs8,
        &format!("{TRUST_LIST_SIGNER_PREFIX}{ISSUER}"),
        now - 60,
        now + 86400,
    )
    .unwrap();
    assert_eq!(
        verify_trust_list(&sign(&tl_key.pkcs8, &tl_cert, &list), &ca.der).unwrap(),
        list
    );

    // A seal's key and certificate from the same CA.
    let seal_key = x509::generate_key(KeyAlgorithm::Ed25519).unwrap();
    let seal_cert = x509::issue_seal_certificate(
        &ca,
        &ca_key.pkcs8,
        &seal_key.pkcs8,
        &SealSubject {
            department_name: "某局",
            credit_code: "11100000000013338W",
            seal_name: &format!("{TRUST_LIST_SIGNER_PREFIX}{ISSUER}"),
        },
        now - 60,
        now + 86400,
    )
    .unwrap();
    let e = verify_trust_list(&sign(&seal_key.pkcs8, &seal_cert, &list), &ca.der).unwrap_err();
    assert!(e.to_string().contains("seal certificate"), "{e}");

    // The trust-list key of another registry (another issuer name).
    let mut other = list.clone();
    other.issuer = "other.test/log".into();
    let e = verify_trust_list(&sign(&tl_key.pkcs8, &tl_cert, &other), &ca.der).unwrap_err();
    assert!(e.to_string().contains("expected"), "{e}");

    // Another CA.
    let other_ca_key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let other_ca = x509::create_ca("x", &other_ca_key.pkcs8, now - 60, now + 86400).unwrap();
    assert!(verify_trust_list(&sign(&tl_key.pkcs8, &tl_cert, &list), &other_ca.der).is_err());
}
