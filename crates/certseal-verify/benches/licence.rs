//! The sign-and-encode path of issuing a licence, and its verification: claims to deterministic
//! CBOR, COSE_Sign1 with Ed25519 or P-256, the QR string, the licence ID, and the per-request
//! cost of opening the sealed seal key, and the offline verifier's whole check of a document.
//! Throughputs are per licence (criterion's elem/s).
//!
//! `cargo bench -p certseal-verify --bench licence`

use std::collections::BTreeMap;
use std::hint::black_box;

use certseal_core::licence::LICENCE_CONTENT_TYPE;
use certseal_core::{
    CreditCode, FieldValue, Holder, HolderKind, LicenceClaims, LicenceId, SealId, TypeCode, qr,
};
use certseal_crypto::x509::{self, KeyAlgorithm, SealSubject};
use certseal_crypto::{Kek, cose, load_signer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn claims(serial: &str) -> LicenceClaims {
    let issuer: CreditCode = "11100000000013338W".parse().unwrap();
    let type_code: TypeCode = "11100000000013338W001".parse().unwrap();
    LicenceClaims {
        id: LicenceId::new(&type_code, &issuer, serial, 1).unwrap(),
        issuer,
        exp: Some(1_950_000_000),
        nbf: 1_795_000_000,
        iat: 1_795_000_000,
        type_code,
        template_version: 1,
        seal: SealId::new(1_795_000_000_000, &[7; 10]),
        holder: Holder::new(HolderKind::Person, "11010519491231002X", "张三").unwrap(),
        fields: BTreeMap::from([
            (
                "operator_name".into(),
                FieldValue::Text("厦门市思明区张三小吃店".into()),
            ),
            (
                "legal_rep_id".into(),
                FieldValue::Text("11010519491231002X".into()),
            ),
            (
                "address".into(),
                FieldValue::Text("厦门市思明区中山路100号".into()),
            ),
            ("capital".into(), FieldValue::Text("1000.50".into())),
            ("staff".into(), FieldValue::Integer(12)),
            ("chain".into(), FieldValue::Boolean(false)),
            ("opened".into(), FieldValue::Text("2026-03-01".into())),
        ]),
        prev: None,
    }
}

fn bench(c: &mut Criterion) {
    let ca_key = x509::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let ca = x509::create_ca("bench CA", &ca_key.pkcs8, 0, 4_000_000_000).unwrap();
    let kek = Kek::from_bytes(&[9; 32]).unwrap();
    let mut g = c.benchmark_group("licence");
    g.throughput(Throughput::Elements(1));
    let c0 = claims("0000000000001");
    g.bench_function("id_new", |b| {
        b.iter(|| LicenceId::new(&c0.type_code, &c0.issuer, black_box("MZ3K8Q2P0001"), 1).unwrap())
    });
    g.bench_function("claims_encode", |b| b.iter(|| black_box(&c0).encode()));
    for (alg, seal_alg, name) in [
        (
            KeyAlgorithm::Ed25519,
            certseal_core::SealAlgorithm::Ed25519,
            "ed25519",
        ),
        (
            KeyAlgorithm::EcdsaP256,
            certseal_core::SealAlgorithm::EcdsaP256,
            "p256",
        ),
    ] {
        let key = x509::generate_key(alg).unwrap();
        let subject = SealSubject {
            department_name: "某局",
            credit_code: "11100000000013338W",
            seal_name: "行政审批专用章",
        };
        let cert = x509::issue_seal_certificate(
            &ca,
            &ca_key.pkcs8,
            &key.pkcs8,
            &subject,
            0,
            4_000_000_000,
        )
        .unwrap();
        let kid = cert.kid();
        let signer = load_signer(alg, &key.pkcs8).unwrap();
        g.bench_function(format!("encode_and_sign_{name}"), |b| {
            b.iter(|| {
                cose::sign1(
                    signer.as_ref(),
                    &kid,
                    LICENCE_CONTENT_TYPE,
                    None,
                    black_box(&c0).encode(),
                )
                .unwrap()
            })
        });
        // What issuing does today: open the sealed key for each licence, then sign.
        let sealed = kek.seal(b"certseal/seal-key/x", &key.pkcs8).unwrap();
        g.bench_function(format!("open_key_encode_and_sign_{name}"), |b| {
            b.iter(|| {
                let pkcs8 = kek.open(b"certseal/seal-key/x", &sealed).unwrap();
                let signer = load_signer(alg, &pkcs8).unwrap();
                cose::sign1(
                    signer.as_ref(),
                    &kid,
                    LICENCE_CONTENT_TYPE,
                    None,
                    black_box(&c0).encode(),
                )
                .unwrap()
            })
        });
        let doc = cose::sign1(
            signer.as_ref(),
            &kid,
            LICENCE_CONTENT_TYPE,
            None,
            c0.encode(),
        )
        .unwrap();
        g.bench_function(format!("parse_verify_decode_{name}"), |b| {
            b.iter(|| {
                let d = cose::parse_sign1(black_box(&doc), 1 << 16).unwrap();
                d.verify_with_certificate(&cert.der).unwrap();
                LicenceClaims::decode(&d.payload).unwrap()
            })
        });
        // The offline verifier's whole check: trust-list lookup by kid, chain, seal status,
        // signature, claims, window.
        let list = certseal_core::TrustList {
            v: 1,
            issuer: "bench".into(),
            issued_at: certseal_core::Timestamp(1_795_000_000_000),
            log_size: 1,
            cas: vec![certseal_core::trust_list::serde_bytes_vec::Der(
                ca.der.clone(),
            )],
            seals: vec![certseal_core::TrustedSeal {
                id: c0.seal,
                department: c0.issuer.clone(),
                name: "行政审批专用章".into(),
                seal_type: certseal_core::SealType::SpecialPurpose,
                alg: seal_alg,
                kid: kid.to_vec(),
                cert: cert.der.clone(),
                chain: Vec::new(),
                not_before: certseal_core::Timestamp(0),
                not_after: certseal_core::Timestamp(4_000_000_000_000),
                history: vec![certseal_core::TrustListEvent {
                    at: certseal_core::Timestamp(1),
                    status: certseal_core::SealStatus::Active,
                    revocation: None,
                }],
            }],
        };
        let at = certseal_core::Timestamp(1_800_000_000_000);
        g.bench_function(format!("verify_document_offline_{name}"), |b| {
            b.iter(|| {
                let o = certseal_verify::verify_document_offline(black_box(&doc), &list, None, at);
                assert_eq!(
                    o.indication,
                    certseal_core::Indication::TotalPassed,
                    "{}",
                    o.reason
                );
            })
        });
        if alg == KeyAlgorithm::Ed25519 {
            g.bench_function("qr_encode", |b| b.iter(|| qr::encode(black_box(&doc))));
            let q = qr::encode(&doc);
            g.bench_function("qr_decode", |b| {
                b.iter(|| qr::decode(black_box(&q)).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
