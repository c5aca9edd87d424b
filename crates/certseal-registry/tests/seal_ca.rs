//! The seal CA taken in from the configuration, and the registry-level seal rules that the
//! gRPC tests do not reach.

mod common;

use certseal_core::Timestamp;
use certseal_crypto::x509;
use certseal_registry::{ConfiguredCa, Registry, RegistryError, RegistryOptions};
use certseal_store_rocks::RocksOptions;
use common::{admin, new_seal};

fn configured(name: &str) -> ConfiguredCa {
    let key = x509::generate_key(x509::KeyAlgorithm::EcdsaP256).unwrap();
    let now = Timestamp::now().0 / 1000;
    ConfiguredCa {
        cert: x509::create_ca(name, &key.pkcs8, now - 60, now + 10 * 365 * 86400).unwrap(),
        pkcs8: key.pkcs8,
    }
}

#[tokio::test]
async fn a_configured_seal_ca_is_taken_in_once_and_issues_seal_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = configured("province seal CA");
    let opts = RegistryOptions {
        seal_ca: Some(ca.clone()),
        ..RegistryOptions::default()
    };
    let r = Registry::open(dir.path(), &RocksOptions::default(), &opts).unwrap();
    assert_eq!(r.seal_ca_certificate(), &ca.cert);
    let dept = "91350200MA2XYW1234";
    let dept = (0..31)
        .map(|i| {
            format!(
                "{}{}",
                &dept[..17],
                "0123456789ABCDEFGHJKLMNPQRTUWXY".as_bytes()[i] as char
            )
        })
        .find(|c| c.parse::<certseal_core::CreditCode>().is_ok())
        .unwrap();
    r.register_department(&admin(), &dept, "某局", "350200")
        .await
        .unwrap();
    let view = r.register_seal(&admin(), new_seal(&dept)).await.unwrap();
    let der = view.seal.certificate.unwrap();
    x509::check_issued_by(&der, &ca.cert.der, Timestamp::now().0 / 1000).unwrap();
    // The trust-list key is certified by the same CA.
    x509::check_issued_by(
        &r.trust_list_certificate().der,
        &ca.cert.der,
        Timestamp::now().0 / 1000,
    )
    .unwrap();
    drop(r);

    // The same CA again: fine. Another one: refused, the folder's CA is not replaced silently.
    drop(Registry::open(dir.path(), &RocksOptions::default(), &opts).unwrap());
    let other = RegistryOptions {
        seal_ca: Some(configured("another CA")),
        ..RegistryOptions::default()
    };
    match Registry::open(dir.path(), &RocksOptions::default(), &other) {
        Err(RegistryError::FailedPrecondition(m)) => assert!(m.contains("differs"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Without configuration the stored CA is used.
    let r = Registry::open(
        dir.path(),
        &RocksOptions::default(),
        &RegistryOptions::default(),
    )
    .unwrap();
    assert_eq!(r.seal_ca_certificate(), &ca.cert);
}

#[test]
fn a_configured_ca_must_match_its_key_and_be_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = configured("mismatched");
    ca.pkcs8 = x509::generate_key(x509::KeyAlgorithm::EcdsaP256)
        .unwrap()
        .pkcs8;
    let opts = RegistryOptions {
        seal_ca: Some(ca),
        ..RegistryOptions::default()
    };
    match Registry::open(dir.path(), &RocksOptions::default(), &opts) {
        Err(RegistryError::FailedPrecondition(m)) => assert!(m.contains("does not match"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
