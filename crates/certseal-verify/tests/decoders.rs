//! Property tests on every decoder of outside bytes: identifiers, template schemas and field
//! values, CBOR, licence claims, COSE
//! documents, QR strings, trust lists, status lists, receipts, certificates, log entries,
//! checkpoints, tlog-proofs and export bundles. Whatever arrives, nothing panics: bad input is
//! an error, and a valid input changed anywhere is refused or decodes to exactly what it says.

use std::collections::BTreeMap;

use certseal_core::licence::LICENCE_CONTENT_TYPE;
use certseal_core::{
    CreditCode, FieldValue, Holder, HolderKind, LicenceClaims, LicenceId, RegionCode, ResidentId,
    SealId, StatusList, Timestamp, TrustList, TypeCode, cbor, qr,
};
use certseal_crypto::x509::{self, KeyAlgorithm, SealSubject};
use certseal_crypto::{cose, load_signer};
use certseal_log::{Checkpoint, Entry, TlogProof, VerifierKey};
use certseal_verify::document::{LicenceFacts, check_document};
use proptest::prelude::*;

fn claims() -> LicenceClaims {
    let issuer: CreditCode = "11100000000013338W".parse().unwrap();
    let type_code: TypeCode = "11100000000013338W001".parse().unwrap();
    LicenceClaims {
        id: LicenceId::new(&type_code, &issuer, "0MWZKRYKK000", 1).unwrap(),
        issuer,
        exp: Some(1_950_000_000),
        nbf: 1_795_000_000,
        iat: 1_795_000_000,
        type_code,
        template_version: 1,
        seal: SealId::new(1_795_000_000_000, &[7; 10]),
        holder: Holder::new(HolderKind::Person, "11010519491231002X", "张三").unwrap(),
        fields: BTreeMap::from([
            ("a".to_owned(), FieldValue::Text("x".into())),
            ("n".to_owned(), FieldValue::Integer(3)),
        ]),
        prev: None,
    }
}

/// A signed document and the certificate that verifies it.
fn signed_document() -> (Vec<u8>, Vec<u8>) {
    let ca_key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let ca = x509::create_ca("ca", &ca_key.pkcs8, 0, 4_000_000_000).unwrap();
    let key = x509::generate_key(KeyAlgorithm::Ed25519).unwrap();
    let cert = x509::issue_seal_certificate(
        &ca,
        &ca_key.pkcs8,
        &key.pkcs8,
        &SealSubject {
            department_name: "d",
            credit_code: "11100000000013338W",
            seal_name: "s",
        },
        0,
        4_000_000_000,
    )
    .unwrap();
    let signer = load_signer(KeyAlgorithm::Ed25519, &key.pkcs8).unwrap();
    let doc = cose::sign1(
        signer.as_ref(),
        &cert.kid(),
        LICENCE_CONTENT_TYPE,
        None,
        claims().encode(),
    )
    .unwrap();
    (doc, cert.der)
}

fn mutate(bytes: &[u8], at: usize, to: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let i = at % b.len();
    b[i] = if b[i] == to { to.wrapping_add(1) } else { to };
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn identifiers_parse_or_refuse(s in "\\PC{0,80}") {
        let _ = s.parse::<CreditCode>();
        let _ = s.parse::<ResidentId>();
        let _ = s.parse::<TypeCode>();
        let _ = s.parse::<RegionCode>();
        let _ = s.parse::<SealId>();
        if let Ok(id) = s.parse::<LicenceId>() {
            // A parsed ID is canonical and its parts rebuild it.
            prop_assert_eq!(id.as_str(), s.as_str());
            let again = LicenceId::with_issuer(&id.type_code(), &id.issuer(), id.serial(), id.version()).unwrap();
            prop_assert_eq!(again, id);
        }
    }

    #[test]
    fn licence_ids_with_one_changed_character_are_refused(at in 15usize..80, c in "[0-9A-Z.]") {
        let id = claims().id.to_string();
        let i = at % id.len();
        let mut changed = id.clone();
        changed.replace_range(i..i + 1, &c);
        if changed != id {
            prop_assert!(changed.parse::<LicenceId>().is_err(), "{changed}");
        }
    }

    #[test]
    fn cbor_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(v) = cbor::decode_canonical(&bytes) {
            prop_assert_eq!(cbor::encode_value(&v), bytes.clone(), "one encoding");
        }
        let _ = LicenceClaims::decode(&bytes);
        let _ = TrustList::decode(&bytes);
        let _ = StatusList::decode(&bytes);
        let _ = certseal_core::StatusListV2::decode(&bytes);
        let _ = certseal_core::Receipt::decode(&bytes);
        let _ = Entry::decode(&bytes);
    }

    #[test]
    fn changed_claims_are_refused_or_say_what_they_are(at in any::<usize>(), to in any::<u8>()) {
        let bytes = claims().encode();
        let changed = mutate(&bytes, at, to);
        if let Ok(c) = LicenceClaims::decode(&changed) {
            prop_assert_eq!(c.encode(), changed);
        }
    }

    #[test]
    fn cose_documents_and_qr_strings_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024), s in "\\PC{0,200}") {
        let _ = cose::parse_sign1(&bytes, 64 * 1024);
        let _ = qr::decode(&s);
        let _ = qr::decode(&format!("CS1:{s}"));
        let o = check_document(&bytes, |_| Vec::new(), |_| LicenceFacts::Unknown, Timestamp(0));
        prop_assert!(o.indication != certseal_core::Indication::TotalPassed);
        let _ = certseal_verify::verify_trust_list(&bytes, &bytes);
        let _ = certseal_verify::verify_status_list(&bytes, &bytes);
        let _ = x509::certificates_from_pem_or_der(&bytes);
        let _ = x509::check_chain(&bytes, &[], &[], 0);
        // OFD files, GB/T 38540 seals and signatures: outside bytes as well.
        let _ = certseal_crypto::ses::SeSeal::from_der(&bytes);
        let _ = certseal_crypto::ses::SesSignature::from_der(&bytes);
        let _ = certseal_ofd::open_sealed(&bytes);
        let mut zipped = b"PK\x03\x04".to_vec();
        zipped.extend_from_slice(&bytes);
        let _ = certseal_ofd::open_sealed(&zipped);
        let o = certseal_verify::ofd::check_ofd(
            &zipped,
            |_| Vec::new(),
            |_, _| LicenceFacts::Unknown,
            |_| certseal_verify::ofd::FileFacts::Offline,
            |_| true,
            Timestamp(0),
        );
        prop_assert!(o.indication != certseal_core::Indication::TotalPassed);
    }

    #[test]
    fn qr_strings_of_base45_characters_never_panic(s in "[0-9A-Z $%*+\\-./:]{0,600}") {
        let _ = qr::decode(&format!("CS1:{s}"));
    }

    #[test]
    fn text_formats_of_the_log_never_panic(s in "\\PC{0,300}", lines in proptest::collection::vec("\\PC{0,60}", 0..8)) {
        let _ = VerifierKey::parse(&s);
        let _ = Checkpoint::parse_text(&s);
        let _ = TlogProof::parse(&s);
        let joined = lines.join("\n");
        let _ = Checkpoint::parse_text(&joined);
        let _ = TlogProof::parse(&format!("{joined}\n\n{joined}"));
        let key = VerifierKey::new("certseal.test/log", &[1; 32]).unwrap();
        let _ = Checkpoint::open(&joined, &key);
        let _ = certseal_verify::verify_tlog_proof(&joined, s.as_bytes(), &key);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_changed_byte_of_a_signed_document_never_passes(at in any::<usize>(), to in any::<u8>()) {
        static DOC: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
        let (doc, cert) = DOC.get_or_init(signed_document);
        let changed = mutate(doc, at, to);
        if let Ok(d) = cose::parse_sign1(&changed, 64 * 1024) {
            prop_assert!(d.verify_with_certificate(cert).is_err(), "a changed document verified");
        }
        let _ = qr::decode(&qr::encode(&changed));
    }

    #[test]
    fn export_bundles_of_random_files_are_refused(
        manifest in "\\PC{0,200}",
        entries in proptest::collection::vec(any::<u8>(), 0..300),
        records in proptest::collection::vec(any::<u8>(), 0..300),
        checkpoint in "\\PC{0,200}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(certseal_verify::MANIFEST_FILE), &manifest).unwrap();
        std::fs::write(dir.path().join(certseal_verify::ENTRIES_FILE), &entries).unwrap();
        std::fs::write(dir.path().join(certseal_verify::RECORDS_FILE), &records).unwrap();
        std::fs::write(dir.path().join(certseal_verify::CHECKPOINT_FILE), &checkpoint).unwrap();
        let key = VerifierKey::new("certseal.test/log", &[1; 32]).unwrap();
        let verified = certseal_verify::verify_bundle(dir.path(), &key, None, |_, _| {});
        prop_assert!(verified.is_err(), "random files verified");
    }
}

fn field_type() -> impl Strategy<Value = certseal_core::FieldType> {
    use certseal_core::FieldType as F;
    prop_oneof![
        Just(F::String),
        Just(F::Integer),
        Just(F::Decimal),
        Just(F::Date),
        Just(F::Boolean),
        Just(F::Enum),
        Just(F::ResidentId),
        Just(F::CreditCode),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![Just("a".to_owned()), Just("b".to_owned()), Just("c".to_owned())],
        1 => "[a-z_0-9A-Z]{0,6}",
    ]
}

/// Mostly well-formed specs of each type, sometimes anything at all.
fn field_spec() -> impl Strategy<Value = certseal_core::FieldSpec> {
    use certseal_core::FieldType as F;
    let spec = |name, label, field_type, required| certseal_core::FieldSpec {
        name,
        label,
        field_type,
        required,
        max_length: 0,
        pattern: String::new(),
        enum_values: Vec::new(),
        scale: 0,
        visibility: certseal_core::Visibility::Public,
    };
    let typed = (name(), "\\PC{1,10}", field_type(), any::<bool>()).prop_flat_map(
        move |(name, label, field_type, required)| {
            let base = spec(name, label, field_type, required);
            match field_type {
                F::String => (
                    0u32..300,
                    prop_oneof![
                        Just(String::new()),
                        Just("[0-9]{3}".to_owned()),
                        Just("JY[0-9]{2,4}".to_owned()),
                        "[a-z0-9\\[\\]\\(\\)\\*\\+\\?\\{\\},|^$.]{0,12}",
                    ],
                )
                    .prop_map(move |(max_length, pattern)| certseal_core::FieldSpec {
                        max_length,
                        pattern,
                        ..base.clone()
                    })
                    .boxed(),
                F::Decimal => (0u32..8)
                    .prop_map(move |scale| certseal_core::FieldSpec {
                        scale,
                        ..base.clone()
                    })
                    .boxed(),
                F::Enum => proptest::collection::vec("[a-z]{1,4}", 1..4)
                    .prop_map(move |enum_values| certseal_core::FieldSpec {
                        enum_values,
                        ..base.clone()
                    })
                    .boxed(),
                _ => Just(base).boxed(),
            }
        },
    );
    let anything = (
        name(),
        "\\PC{0,10}",
        field_type(),
        any::<bool>(),
        0u32..5000,
        "\\PC{0,20}",
        proptest::collection::vec("\\PC{0,8}", 0..4),
        0u32..12,
    )
        .prop_map(
            |(name, label, field_type, required, max_length, pattern, enum_values, scale)| {
                certseal_core::FieldSpec {
                    name,
                    label,
                    field_type,
                    required,
                    max_length,
                    pattern,
                    enum_values,
                    scale,
                    visibility: certseal_core::Visibility::Public,
                }
            },
        );
    prop_oneof![9 => typed, 1 => anything]
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        "\\PC{0,40}".prop_map(FieldValue::Text),
        "[0-9.\\-]{0,20}".prop_map(FieldValue::Text),
        any::<i64>().prop_map(FieldValue::Integer),
        any::<bool>().prop_map(FieldValue::Boolean),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn template_schemas_and_values_are_checked_without_panics(
        fields in proptest::collection::vec(field_spec(), 0..6),
        values in proptest::collection::btree_map("[abc]", field_value(), 0..4),
    ) {
        let content = certseal_core::TemplateContent {
            name: "证照".into(),
            category: certseal_core::TemplateCategory::Licence,
            default_validity_days: 0,
            fields,
        };
        if let Ok(content) = content.validate() {
            let actor = certseal_core::Actor {
                department: "11100000000013338W".parse().unwrap(),
                role: certseal_core::Role::Admin,
            };
            let t = certseal_core::Template {
                type_code: "11100000000013338W001".parse().unwrap(),
                version: 1,
                content,
                status: certseal_core::TemplateStatus::Published,
                created_at: Timestamp(0),
                created_by: actor.clone(),
                updated_at: Timestamp(0),
                updated_by: actor,
                published_at: None,
            };
            if let Ok(canonical) = t.validate_values(&values) {
                // Canonical values are accepted again, unchanged.
                prop_assert_eq!(t.validate_values(&canonical).unwrap(), canonical);
            }
        }
    }
}

#[test]
fn random_schemas_are_often_valid_so_values_get_checked() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = proptest::collection::vec(field_spec(), 1..4);
    let mut valid = 0;
    for _ in 0..400 {
        let fields = strategy.new_tree(&mut runner).unwrap().current();
        let content = certseal_core::TemplateContent {
            name: "证照".into(),
            category: certseal_core::TemplateCategory::Licence,
            default_validity_days: 0,
            fields,
        };
        if content.validate().is_ok() {
            valid += 1;
        }
    }
    assert!(valid >= 40, "only {valid} of 400 random schemas were valid");
}
