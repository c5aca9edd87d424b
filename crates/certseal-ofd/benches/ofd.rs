//! The cost of a licence file beside what issuing costs: signing the licence's COSE document
//! with Ed25519 and with SM2, then making one OFD file (layout, font subset, package), sealed
//! with SM2 or as an unsigned view, and checking a sealed one. Needs Debian's fonts-wqy-zenhei.
//! `cargo bench --bench ofd`.

use std::hint::black_box;
use std::path::Path;

use certseal_crypto::ses::{self, SealPicture};
use certseal_crypto::sm::Sm2Key;
use certseal_crypto::x509::{self, KeyAlgorithm, SealSubject};
use certseal_crypto::{cose, load_signer, sm_x509};
use certseal_ofd::font::{DEFAULT_FONT_INDEX, DEFAULT_FONT_PATH};
use certseal_ofd::{Face, Font, Row, Sealing, make, open_sealed};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let font = Font::load(Path::new(DEFAULT_FONT_PATH), DEFAULT_FONT_INDEX)
        .expect("fonts-wqy-zenhei is installed (scripts/ensure-deps)");
    let now = 1_790_000_000;
    let (ca, _) = Sm2Key::generate().unwrap();
    let ca_cert = sm_x509::create_ca("bench SM2 CA", &ca, now - 100, now + 1_000_000).unwrap();
    let (key, sm2_pkcs8) = Sm2Key::generate().unwrap();
    let subject = SealSubject {
        department_name: "厦门市市场监督管理局",
        credit_code: "11350200MB0000000X",
        seal_name: "厦门市市场监督管理局行政审批专用章",
    };
    let cert = sm_x509::issue_seal_certificate(
        &ca_cert,
        &ca,
        &key.public_key_der().unwrap(),
        &subject,
        now - 50,
        now + 500_000,
    )
    .unwrap();
    let seal_png = include_bytes!("../../../examples/seal.png");
    let esl = ses::make_seal(
        &ses::NewSeal {
            vid: "certseal",
            es_id: "bench",
            seal_type: 1,
            name: subject.seal_name,
            cert_list: std::slice::from_ref(&cert.der),
            created: now,
            valid_start: now - 50,
            valid_end: now + 500_000,
            picture: &SealPicture {
                kind: "PNG".into(),
                data: seal_png.to_vec(),
                width_mm: 40,
                height_mm: 40,
            },
        },
        &ca,
        &ca_cert.der,
    )
    .unwrap();
    let payload = vec![0x5a; 600]; // about a licence's claims
    let ed = x509::generate_key(KeyAlgorithm::Ed25519).unwrap();
    let ed_signer = load_signer(KeyAlgorithm::Ed25519, &ed.pkcs8).unwrap();
    let sm2_signer = load_signer(KeyAlgorithm::Sm2, &sm2_pkcs8).unwrap();
    let document = cose::sign1(
        sm2_signer.as_ref(),
        &[1; 8],
        "application/test",
        None,
        payload.clone(),
    )
    .unwrap();
    let rows: Vec<Row> = [
        ("经营者名称", "厦门某某餐饮有限公司"),
        ("经营场所", "厦门市思明区湖滨南路一百二十三号"),
        ("主体业态", "餐饮服务经营者（中型餐馆）"),
        ("经营项目", "热食类食品制售；冷食类食品制售；自制饮品制售"),
        ("法定代表人", "张三"),
        ("统一社会信用代码", "91350200MA2XYW123L"),
        ("有效期", "2026-12-02 至 2031-12-01"),
        ("证照编号", "11350200MB0123456A0010001MZ3K8Q2P0001X"),
    ]
    .iter()
    .map(|(l, v)| Row {
        label: (*l).into(),
        value: (*v).into(),
    })
    .collect();
    let custom = vec![(
        "证照标识".to_owned(),
        "11350200MB0123456A0010001MZ3K8Q2P0001X".to_owned(),
    )];
    let face = Face {
        title: "食品经营许可证",
        rows: &rows,
        issuer_name: "厦门市市场监督管理局",
        issue_date: "2026年12月02日",
        licence_id: "11350200MB0123456A0010001MZ3K8Q2P0001X",
        qr_png: seal_png,
        seal_png: Some(seal_png),
        view_note: Some("本文件为电子证照的展示件，不含电子签章。"),
        custom_data: &custom,
        doc_id: "0123456789abcdef0123456789abcdef",
        created: "2026-12-02",
        licence_document: Some(&document),
    };
    let sealing = Sealing {
        esl: &esl,
        signer: &key,
        signer_cert: &cert.der,
        at: now,
        at_text: "2026-09-21 12:00:00",
    };
    let mut g = c.benchmark_group("licence_file");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cose_sign_ed25519", |b| {
        b.iter(|| {
            cose::sign1(
                ed_signer.as_ref(),
                &[1; 8],
                "application/test",
                None,
                black_box(payload.clone()),
            )
            .unwrap()
        })
    });
    g.bench_function("cose_sign_sm2", |b| {
        b.iter(|| {
            cose::sign1(
                sm2_signer.as_ref(),
                &[1; 8],
                "application/test",
                None,
                black_box(payload.clone()),
            )
            .unwrap()
        })
    });
    g.bench_function("ofd_view", |b| {
        b.iter(|| make(black_box(&face), &font, None).unwrap())
    });
    g.bench_function("ofd_sealed_sm2", |b| {
        b.iter(|| make(black_box(&face), &font, Some(&sealing)).unwrap())
    });
    let sealed = make(&face, &font, Some(&sealing)).unwrap();
    eprintln!("a sealed OFD file: {} bytes", sealed.len());
    g.bench_function("ofd_open_and_check", |b| {
        b.iter(|| open_sealed(black_box(&sealed)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
