//! OFD files: another implementation's sealed file verifies; ours round-trips, and every
//! tamper (a changed byte, a removed reference, an added file, a forged signature value) is
//! caught; the embedded font is a real subset with a Unicode cmap.

use std::io::{Read, Write};
use std::path::Path;

use certseal_crypto::ses::{self, SealPicture};
use certseal_crypto::sm::Sm2Key;
use certseal_crypto::sm_x509;
use certseal_crypto::x509::{Certificate, SealSubject};
use certseal_ofd::font::{DEFAULT_FONT_INDEX, DEFAULT_FONT_PATH};
use certseal_ofd::{Face, Font, OfdError, Row, Sealing, make, open_sealed};

/// A 2×2 PNG.
const PNG: &str = "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a730000001049444154789c63f8cfc000446002880021ed03fdbd90a8df0000000049454e44ae426082";

fn font() -> Font {
    Font::load(Path::new(DEFAULT_FONT_PATH), DEFAULT_FONT_INDEX)
        .expect("fonts-wqy-zenhei is installed (scripts/ensure-deps)")
}

struct Signer {
    key: Sm2Key,
    cert: Certificate,
    esl: Vec<u8>,
}

/// An SM2 seal certified by a fresh SM2 CA, which also makes its SESeal.
fn signer(name: &str) -> Signer {
    let now = 1_790_000_000;
    let (ca, _) = Sm2Key::generate().unwrap();
    let ca_cert = sm_x509::create_ca("test SM2 CA", &ca, now - 100, now + 100_000).unwrap();
    let (key, _) = Sm2Key::generate().unwrap();
    let cert = sm_x509::issue_seal_certificate(
        &ca_cert,
        &ca,
        &key.public_key_der().unwrap(),
        &SealSubject {
            department_name: "厦门市市场监督管理局",
            credit_code: "11350200MB0000000X",
            seal_name: name,
        },
        now - 50,
        now + 50_000,
    )
    .unwrap();
    let esl = ses::make_seal(
        &ses::NewSeal {
            vid: "certseal",
            es_id: "test-seal",
            seal_type: 1,
            name,
            cert_list: std::slice::from_ref(&cert.der),
            created: now,
            valid_start: now - 50,
            valid_end: now + 50_000,
            picture: &SealPicture {
                kind: "PNG".into(),
                data: hex::decode(PNG).unwrap(),
                width_mm: 40,
                height_mm: 40,
            },
        },
        &ca,
        &ca_cert.der,
    )
    .unwrap();
    Signer { key, cert, esl }
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            label: "经营者名称".into(),
            value: "张三小吃店 & Co. <厦门>".into(),
        },
        Row {
            label: "经营场所".into(),
            value: "厦门市思明区某某路一百二十三号之四，一个很长很长很长很长很长很长的地址，需要折行显示".into(),
        },
        Row {
            label: "证照编号".into(),
            value: "11350200MB0000000X0010001ABCDEFGHJK0".into(),
        },
    ]
}

fn custom() -> Vec<(String, String)> {
    vec![
        ("证照标识".into(), "LIC-1".into()),
        ("持证主体".into(), "张三".into()),
    ]
}

fn face<'a>(rows: &'a [Row], custom: &'a [(String, String)], qr: &'a [u8]) -> Face<'a> {
    Face {
        title: "食品经营许可证",
        rows,
        issuer_name: "厦门市市场监督管理局",
        issue_date: "2026年12月02日",
        licence_id: "11350200MB0000000X0010001ABCDEFGHJK0",
        qr_png: qr,
        seal_png: Some(qr),
        view_note: None,
        custom_data: custom,
        doc_id: "0123456789abcdef0123456789abcdef",
        created: "2026-12-02",
        licence_document: Some(b"\xd2\x84 a COSE document"),
    }
}

fn sealed(s: &Signer) -> Vec<u8> {
    let rows = rows();
    let custom = custom();
    let qr = hex::decode(PNG).unwrap();
    make(
        &face(&rows, &custom, &qr),
        &font(),
        Some(&Sealing {
            esl: &s.esl,
            signer: &s.key,
            signer_cert: &s.cert.der,
            at: 1_790_000_500,
            at_text: "2026-09-21 12:21:40",
        }),
    )
    .unwrap()
}

/// The package's files, each changed by `change`, packed again.
fn repack(ofd: &[u8], change: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(ofd)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if let Some(data) = change(&name, data) {
            out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(&data).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

fn file(ofd: &[u8], path: &str) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(ofd)).unwrap();
    let mut f = z.by_name(path).unwrap();
    let mut data = Vec::new();
    f.read_to_end(&mut data).unwrap();
    data
}

#[test]
fn a_file_sealed_by_another_implementation_verifies() {
    let bytes = include_bytes!("data/SESV4SignDoc.ofd");
    let f = open_sealed(bytes).unwrap();
    let key = certseal_crypto::x509::subject_public_key(&f.signature.cert).unwrap();
    assert_eq!(key.len(), 65, "an SM2 point");
    assert_eq!(
        f.signature.property_info,
        "/Doc_0/Signs/Sign_0/Signature.xml"
    );
    assert_eq!(f.seal().version, 4);
    assert!(
        f.covered
            .contains(&"Doc_0/Pages/Page_0/Content.xml".to_owned())
    );
    // The same one-byte change to its page fails there too.
    let t = repack(bytes, |name, mut d| {
        if name.ends_with("Content.xml") {
            d[60] ^= 1;
        }
        Some(d)
    });
    assert!(matches!(open_sealed(&t), Err(OfdError::Digest(_))));
}

#[test]
fn our_sealed_file_round_trips_and_every_tamper_is_caught() {
    let s = signer("厦门市市场监督管理局行政审批专用章");
    let ofd = sealed(&s);
    let f = open_sealed(&ofd).unwrap();
    assert_eq!(f.custom("证照标识"), Some("LIC-1"));
    assert_eq!(f.custom("持证主体"), Some("张三"));
    assert_eq!(f.signature.cert, s.cert.der);
    assert_eq!(f.signed_at, 1_790_000_500);
    assert_eq!(f.seal().name, "厦门市市场监督管理局行政审批专用章");
    assert_eq!(
        f.file(certseal_ofd::LICENCE_ATTACHMENT),
        Some(&b"\xd2\x84 a COSE document"[..])
    );
    for p in [
        "OFD.xml",
        "Doc_0/Document.xml",
        "Doc_0/Pages/Page_0/Content.xml",
        "Doc_0/Res/宋体.ttf",
        "Doc_0/Res/qr.png",
        "Doc_0/Signs/Sign_0/Seal.esl",
        "Doc_0/Attachs/licence.cose",
    ] {
        assert!(f.covered.contains(&p.to_owned()), "{p}");
    }
    // The text is in the page as written, escaped.
    let content = String::from_utf8(file(&ofd, "Doc_0/Pages/Page_0/Content.xml")).unwrap();
    assert!(
        content.contains("张三小吃店 &amp; Co. &lt;厦门&gt;"),
        "{content}"
    );
    assert!(content.contains("食品经营许可证"));

    // One byte of page content.
    let t = repack(&ofd, |name, mut d| {
        if name.ends_with("Content.xml") {
            let at = d.len() / 2;
            d[at] ^= 1;
        }
        Some(d)
    });
    let e = open_sealed(&t).unwrap_err();
    assert!(
        matches!(&e, OfdError::Digest(m) if m.contains("Content.xml")),
        "{e}"
    );
    // A reference removed from Signature.xml: the signature no longer covers it.
    let t = repack(&ofd, |name, d| {
        if name.ends_with("Sign_0/Signature.xml") {
            let x = String::from_utf8(d).unwrap();
            let start = x
                .find("<ofd:Reference FileRef=\"/Doc_0/Res/qr.png\"")
                .unwrap();
            let end = start + x[start..].find("</ofd:Reference>").unwrap() + 16;
            return Some(format!("{}{}", &x[..start], &x[end..]).into_bytes());
        }
        Some(d)
    });
    let e = open_sealed(&t).unwrap_err();
    assert!(
        matches!(&e, OfdError::Digest(m) if m.contains("qr.png")),
        "{e}"
    );
    // A file added after signing.
    let mut t = repack(&ofd, |_, d| Some(d));
    {
        let mut z = zip::ZipWriter::new_append(std::io::Cursor::new(&mut t)).unwrap();
        z.start_file(
            "Doc_0/Res/extra.png",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(b"x").unwrap();
        z.finish().unwrap();
    }
    let e = open_sealed(&t).unwrap_err();
    assert!(
        matches!(&e, OfdError::Digest(m) if m.contains("extra.png")),
        "{e}"
    );
    // Signature bytes changed.
    let t = repack(&ofd, |name, mut d| {
        if name.ends_with("SignedValue.dat") {
            let at = d.len() - 5;
            d[at] ^= 1;
        }
        Some(d)
    });
    assert!(matches!(open_sealed(&t), Err(OfdError::Signature(_))));
    // Another seal's valid signature over the same Signature.xml verifies as a signature, but
    // by the other certificate: whose seal that is, the caller checks.
    let other = signer("另一枚章");
    let xml = file(&ofd, "Doc_0/Signs/Sign_0/Signature.xml");
    let forged = ses::sign(
        &other.esl,
        1_790_000_600,
        &certseal_crypto::sm::sm3(&[&xml]),
        "/Doc_0/Signs/Sign_0/Signature.xml",
        &other.key,
        &other.cert.der,
    )
    .unwrap();
    let t = repack(&ofd, |name, d| {
        Some(if name.ends_with("SignedValue.dat") {
            forged.clone()
        } else {
            d
        })
    });
    let f = open_sealed(&t).unwrap();
    assert_eq!(f.signature.cert, other.cert.der);
    assert_ne!(f.signature.cert, s.cert.der);
    // Not a package at all.
    assert!(matches!(
        open_sealed(b"PK\x03\x04junk"),
        Err(OfdError::Format(_))
    ));
}

#[test]
fn an_unsigned_view_has_no_signature_and_draws_the_seal_as_a_stamp_annotation() {
    let rows = rows();
    let custom = custom();
    let qr = hex::decode(PNG).unwrap();
    let mut f = face(&rows, &custom, &qr);
    f.view_note = Some("本文件为电子证照的展示件，不含电子签章；其凭证为 COSE 签名文件。");
    let ofd = make(&f, &font(), None).unwrap();
    let e = open_sealed(&ofd).unwrap_err();
    assert!(e.to_string().contains("not sealed"), "{e}");
    assert_eq!(certseal_ofd::read::custom_data(&ofd).unwrap(), custom);
    let annot = String::from_utf8(file(&ofd, "Doc_0/Annots/Page_0/Annotation.xml")).unwrap();
    assert!(annot.contains("Type=\"Stamp\""));
    assert_eq!(file(&ofd, "Doc_0/Res/seal.png"), qr);
}

#[test]
fn the_embedded_font_is_a_subset_with_every_character_drawn() {
    let font = font();
    let text = "食品经营许可证张三ABC123";
    let sub = font.subset(text).unwrap();
    assert!(sub.len() < 64 * 1024, "{} bytes", sub.len());
    let again = Font::from_bytes(sub, 0).unwrap_err();
    // The subset lacks what it was not asked for ("证照" is checked on loading)...
    assert!(again.to_string().contains("no glyph for '照'"), "{again}");
    // ...and has what it was.
    let sub = font.subset(&format!("{text}证照")).unwrap();
    let reloaded = Font::from_bytes(sub, 0).unwrap();
    reloaded.subset(text).unwrap();
    assert!(
        font.subset("证照\u{10FFFD}")
            .unwrap_err()
            .to_string()
            .contains("no glyph")
    );
}
