//! Making the OFD package: one A4 page laid out from the licence's face, and, with an SM2 seal,
//! the GB/T 38540 seal signature over every file of the package.

use std::io::{Cursor, Write};

use base64::Engine;
use certseal_crypto::ses;
use certseal_crypto::sm::{Sm2Key, sm3};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::OfdError;
use crate::font::{Font, advance_em};

/// The namespace of GB/T 33190.
pub const NS: &str = "http://www.ofdspec.org/2016";
/// SM3 (1.2.156.10197.1.401), the digest of every reference.
pub const SM3_OID: &str = "1.2.156.10197.1.401";
/// The path of the one signature's description, which its SES_Signature covers.
pub const SIGNATURE_XML: &str = "/Doc_0/Signs/Sign_0/Signature.xml";

const PAGE_W: f64 = 210.0;
const PAGE_H: f64 = 297.0;
const MARGIN: f64 = 25.0;
const TITLE_SIZE: f64 = 10.0;
const TEXT_SIZE: f64 = 4.8;
const SMALL_SIZE: f64 = 3.2;
const LABEL_X: f64 = MARGIN + 4.0;
const VALUE_X: f64 = 78.0;
const SEAL_MM: f64 = 40.0;
const QR_MM: f64 = 32.0;

/// One line of the face: a label and its value.
#[derive(Debug, Clone)]
pub struct Row {
    /// E.g. "经营者名称".
    pub label: String,
    /// The value as people read it.
    pub value: String,
}

/// What the page shows and what the file's metadata says.
#[derive(Debug, Clone)]
pub struct Face<'a> {
    /// The licence type's name, e.g. "食品经营许可证".
    pub title: &'a str,
    /// The template's fields, then holder, validity and licence ID.
    pub rows: &'a [Row],
    /// The issuing department's name, printed under the seal.
    pub issuer_name: &'a str,
    /// The issue date as printed, e.g. "2026年12月02日".
    pub issue_date: &'a str,
    /// The licence ID, printed under the QR code.
    pub licence_id: &'a str,
    /// The licence's QR code (PNG).
    pub qr_png: &'a [u8],
    /// The seal image (PNG) drawn on an unsigned view; a sealed file shows the seal of its
    /// signature instead.
    pub seal_png: Option<&'a [u8]>,
    /// Printed at the foot of an unsigned view.
    pub view_note: Option<&'a str>,
    /// GB/T 36903-style metadata: `CustomData` name and value.
    pub custom_data: &'a [(String, String)],
    /// The document's ID (DocID), 32 hex digits.
    pub doc_id: &'a str,
    /// Creation date, `YYYY-MM-DD`.
    pub created: &'a str,
    /// The licence's signed document (COSE_Sign1), attached as [`LICENCE_ATTACHMENT`]: a
    /// verifier checks the licence itself from it, and the seal signature covers it.
    pub licence_document: Option<&'a [u8]>,
}

/// Where the licence's COSE document is attached in the package.
pub const LICENCE_ATTACHMENT: &str = "Doc_0/Attachs/licence.cose";

/// An SM2 seal signing the file.
#[derive(Debug)]
pub struct Sealing<'a> {
    /// The seal (SESeal v4, DER).
    pub esl: &'a [u8],
    /// The seal's key.
    pub signer: &'a Sm2Key,
    /// The seal's certificate (DER).
    pub signer_cert: &'a [u8],
    /// When it signs (Unix seconds).
    pub at: i64,
    /// Signature.xml's SignatureDateTime, `YYYY-MM-DD HH:MM:SS` (UTC).
    pub at_text: &'a str,
}

/// Escapes text for XML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Millimetres with at most three decimals, as OFD writes them.
fn mm(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn width(text: &str, size: f64) -> f64 {
    text.chars().map(|c| advance_em(c) * size).sum()
}

/// Splits `text` into lines no wider than `max` at `size`.
fn wrap(text: &str, size: f64, max: f64) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut w = 0.0;
    for c in text.chars().filter(|c| !c.is_control()) {
        let a = advance_em(c) * size;
        if w + a > max && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
            w = 0.0;
        }
        line.push(c);
        w += a;
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The page's objects, numbered from `next_id`.
struct Page {
    objects: String,
    text: String,
    next_id: u32,
}

impl Page {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// A line of text whose top-left corner is (x, y).
    fn text(&mut self, x: f64, y: f64, size: f64, s: &str, font_id: u32) {
        if s.is_empty() {
            return;
        }
        let id = self.id();
        let advances: Vec<String> = s
            .chars()
            .take(s.chars().count().saturating_sub(1))
            .map(|c| mm(advance_em(c) * size))
            .collect();
        self.objects.push_str(&format!(
            "<ofd:TextObject ID=\"{id}\" Boundary=\"{} {} {} {}\" Font=\"{font_id}\" Size=\"{}\">\
             <ofd:FillColor Value=\"0 0 0\"/>\
             <ofd:TextCode X=\"0\" Y=\"{}\" DeltaX=\"{}\">{}</ofd:TextCode></ofd:TextObject>",
            mm(x),
            mm(y),
            mm(width(s, size) + 1.0),
            mm(size * 1.25),
            mm(size),
            mm(size * 0.88),
            advances.join(" "),
            esc(s),
        ));
        self.text.push_str(s);
    }

    fn image(&mut self, resource: u32, x: f64, y: f64, w: f64, h: f64) {
        let id = self.id();
        self.objects.push_str(&format!(
            "<ofd:ImageObject ID=\"{id}\" ResourceID=\"{resource}\" Boundary=\"{} {} {} {}\" CTM=\"{} 0 0 {} 0 0\"/>",
            mm(x),
            mm(y),
            mm(w),
            mm(h),
            mm(w),
            mm(h)
        ));
    }
}

/// The embedded font's file name. easyofd (a reader in use) draws all text with a font
/// registered under the name 宋体, which it takes from an embedded file's stem; other readers
/// go by the Font element's FontName, which names the face truly.
pub const FONT_FILE: &str = "宋体.ttf";
const FONT_ID: u32 = 1;
const QR_ID: u32 = 2;
const SEAL_IMAGE_ID: u32 = 3;
const PAGE_ID: u32 = 4;
const LAYER_ID: u32 = 5;

/// Where the seal sits on the page: centred on the issuer's name (x, y, width, height).
fn seal_box(face: &Face<'_>) -> (f64, f64) {
    let right = PAGE_W - MARGIN - 4.0;
    let w = width(face.issuer_name, TEXT_SIZE).max(width(face.issue_date, TEXT_SIZE));
    let centre = right - w / 2.0;
    (centre - SEAL_MM / 2.0, 236.0 - SEAL_MM / 2.0)
}

/// Lays out the page; returns its content, every character it draws, and the largest ID.
fn layout(face: &Face<'_>) -> (String, String, u32) {
    let mut p = Page {
        objects: String::new(),
        text: String::new(),
        next_id: LAYER_ID,
    };
    let title_w = width(face.title, TITLE_SIZE);
    p.text(
        (PAGE_W - title_w) / 2.0,
        30.0,
        TITLE_SIZE,
        face.title,
        FONT_ID,
    );
    let mut y = 58.0;
    let value_w = PAGE_W - MARGIN - 4.0 - VALUE_X;
    for row in face.rows {
        if y > 205.0 {
            break; // the rest is in the COSE document and the registry; the page keeps its foot
        }
        // A long label is set smaller rather than run into its value.
        let label_size =
            ((VALUE_X - LABEL_X - 3.0) / width(&row.label, 1.0).max(1.0)).min(TEXT_SIZE);
        p.text(LABEL_X, y, label_size, &row.label, FONT_ID);
        for (i, line) in wrap(&row.value, TEXT_SIZE, value_w).iter().enumerate() {
            if i > 0 {
                y += TEXT_SIZE * 1.4;
            }
            p.text(VALUE_X, y, TEXT_SIZE, line, FONT_ID);
        }
        y += TEXT_SIZE * 2.0;
    }
    // The foot: issuer and date on the right under the seal, the QR code and ID on the left.
    let right = PAGE_W - MARGIN - 4.0;
    p.text(
        right - width(face.issuer_name, TEXT_SIZE),
        230.0,
        TEXT_SIZE,
        face.issuer_name,
        FONT_ID,
    );
    p.text(
        right - width(face.issue_date, TEXT_SIZE),
        238.0,
        TEXT_SIZE,
        face.issue_date,
        FONT_ID,
    );
    p.image(QR_ID, LABEL_X, 218.0, QR_MM, QR_MM);
    // Under the QR code on one line, clear of the seal: small enough for an ID of 80
    // characters (GB/T 36904 IDs have about 78).
    let id_size = (95.0 / width(face.licence_id, 1.0).max(1.0)).min(SMALL_SIZE);
    p.text(LABEL_X, 252.0, id_size, face.licence_id, FONT_ID);
    if let Some(note) = face.view_note {
        let mut y = 266.0;
        for line in wrap(note, SMALL_SIZE, PAGE_W - 2.0 * LABEL_X) {
            p.text(LABEL_X, y, SMALL_SIZE, &line, FONT_ID);
            y += SMALL_SIZE * 1.4;
        }
    }
    let content = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:Page xmlns:ofd=\"{NS}\"><ofd:Content><ofd:Layer ID=\"{LAYER_ID}\">{}</ofd:Layer></ofd:Content></ofd:Page>",
        p.objects
    );
    (content, p.text, p.next_id)
}

fn ofd_xml(face: &Face<'_>, signed: bool) -> String {
    let custom: String = face
        .custom_data
        .iter()
        .map(|(k, v)| {
            format!(
                "<ofd:CustomData Name=\"{}\">{}</ofd:CustomData>",
                esc(k),
                esc(v)
            )
        })
        .collect();
    let signatures = if signed {
        "<ofd:Signatures>/Doc_0/Signs/Signatures.xml</ofd:Signatures>"
    } else {
        ""
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:OFD xmlns:ofd=\"{NS}\" Version=\"1.1\" DocType=\"OFD\"><ofd:DocBody><ofd:DocInfo>\
         <ofd:DocID>{}</ofd:DocID><ofd:Title>{}</ofd:Title><ofd:CreationDate>{}</ofd:CreationDate>\
         <ofd:Creator>certseal</ofd:Creator><ofd:CreatorVersion>{}</ofd:CreatorVersion>\
         <ofd:CustomDatas>{custom}</ofd:CustomDatas></ofd:DocInfo>\
         <ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot>{signatures}</ofd:DocBody></ofd:OFD>",
        esc(face.doc_id),
        esc(face.title),
        esc(face.created),
        env!("CARGO_PKG_VERSION"),
    )
}

/// The seal image of an unsigned view as a stamp annotation: readers draw annotations above
/// the page's text, as a seal is pressed onto paper.
fn annotation_xml(face: &Face<'_>, annot_id: u32, image_id: u32) -> String {
    let (x, y) = seal_box(face);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:PageAnnot xmlns:ofd=\"{NS}\">\
         <ofd:Annot ID=\"{annot_id}\" Type=\"Stamp\" Creator=\"certseal\"><ofd:Appearance Boundary=\"{} {} {} {}\">\
         <ofd:ImageObject ID=\"{image_id}\" ResourceID=\"{SEAL_IMAGE_ID}\" Boundary=\"0 0 {} {}\" CTM=\"{} 0 0 {} 0 0\"/>\
         </ofd:Appearance></ofd:Annot></ofd:PageAnnot>",
        mm(x),
        mm(y),
        mm(SEAL_MM),
        mm(SEAL_MM),
        mm(SEAL_MM),
        mm(SEAL_MM),
        mm(SEAL_MM),
        mm(SEAL_MM),
    )
}

fn document_xml(max_id: u32, annotations: bool, attachments: bool) -> String {
    let annotations = if annotations {
        "<ofd:Annotations>Annots/Annotations.xml</ofd:Annotations>"
    } else {
        ""
    };
    let attachments = if attachments {
        "<ofd:Attachments>Attachs/Attachments.xml</ofd:Attachments>"
    } else {
        ""
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:Document xmlns:ofd=\"{NS}\"><ofd:CommonData>\
         <ofd:MaxUnitID>{max_id}</ofd:MaxUnitID><ofd:PageArea><ofd:PhysicalBox>0 0 {} {}</ofd:PhysicalBox></ofd:PageArea>\
         <ofd:PublicRes>PublicRes.xml</ofd:PublicRes><ofd:DocumentRes>DocumentRes.xml</ofd:DocumentRes></ofd:CommonData>\
         <ofd:Pages><ofd:Page ID=\"{PAGE_ID}\" BaseLoc=\"Pages/Page_0/Content.xml\"/></ofd:Pages>{annotations}{attachments}</ofd:Document>",
        mm(PAGE_W),
        mm(PAGE_H)
    )
}

fn public_res_xml(family: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:Res xmlns:ofd=\"{NS}\" BaseLoc=\"Res\"><ofd:Fonts>\
         <ofd:Font ID=\"{FONT_ID}\" FontName=\"{0}\" FamilyName=\"{0}\"><ofd:FontFile>{FONT_FILE}</ofd:FontFile></ofd:Font>\
         </ofd:Fonts></ofd:Res>",
        esc(family)
    )
}

fn document_res_xml(with_seal_image: bool) -> String {
    let seal = if with_seal_image {
        format!(
            "<ofd:MultiMedia ID=\"{SEAL_IMAGE_ID}\" Type=\"Image\" Format=\"PNG\"><ofd:MediaFile>seal.png</ofd:MediaFile></ofd:MultiMedia>"
        )
    } else {
        String::new()
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:Res xmlns:ofd=\"{NS}\" BaseLoc=\"Res\"><ofd:MultiMedias>\
         <ofd:MultiMedia ID=\"{QR_ID}\" Type=\"Image\" Format=\"PNG\"><ofd:MediaFile>qr.png</ofd:MediaFile></ofd:MultiMedia>{seal}\
         </ofd:MultiMedias></ofd:Res>"
    )
}

fn signature_xml(references: &[(String, [u8; 32])], stamp: (f64, f64), at_text: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let refs: String = references
        .iter()
        .map(|(path, digest)| {
            format!(
                "<ofd:Reference FileRef=\"{}\"><ofd:CheckValue>{}</ofd:CheckValue></ofd:Reference>",
                esc(path),
                b64.encode(digest)
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:Signature xmlns:ofd=\"{NS}\"><ofd:SignedInfo>\
         <ofd:Provider ProviderName=\"certseal\" Company=\"certseal\" Version=\"{}\"/>\
         <ofd:SignatureMethod>{}</ofd:SignatureMethod><ofd:SignatureDateTime>{}</ofd:SignatureDateTime>\
         <ofd:References CheckMethod=\"{SM3_OID}\">{refs}</ofd:References>\
         <ofd:StampAnnot ID=\"1\" PageRef=\"{PAGE_ID}\" Boundary=\"{} {} {} {}\"/>\
         <ofd:Seal><ofd:BaseLoc>/Doc_0/Signs/Sign_0/Seal.esl</ofd:BaseLoc></ofd:Seal>\
         </ofd:SignedInfo><ofd:SignedValue>/Doc_0/Signs/Sign_0/SignedValue.dat</ofd:SignedValue></ofd:Signature>",
        env!("CARGO_PKG_VERSION"),
        ses::SM2_WITH_SM3_OID,
        esc(at_text),
        mm(stamp.0),
        mm(stamp.1),
        mm(SEAL_MM),
        mm(SEAL_MM),
    )
}

/// Makes the OFD file of `face`, its text in a subset of `font`; sealed when `sealing` is
/// given, else an unsigned view (with `face.seal_png` drawn on the page, if any).
pub fn make(
    face: &Face<'_>,
    font: &Font,
    sealing: Option<&Sealing<'_>>,
) -> Result<Vec<u8>, OfdError> {
    let seal_image = sealing.is_none() && face.seal_png.is_some();
    let (content, drawn, mut max_id) = layout(face);
    let font_file = font.subset(&drawn)?;
    let annotation = seal_image.then(|| {
        max_id += 2;
        annotation_xml(face, max_id - 1, max_id)
    });
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "OFD.xml".into(),
            ofd_xml(face, sealing.is_some()).into_bytes(),
        ),
        (
            "Doc_0/Document.xml".into(),
            document_xml(
                max_id,
                annotation.is_some(),
                face.licence_document.is_some(),
            )
            .into_bytes(),
        ),
        (
            "Doc_0/PublicRes.xml".into(),
            public_res_xml(&font.family).into_bytes(),
        ),
        (
            "Doc_0/DocumentRes.xml".into(),
            document_res_xml(seal_image).into_bytes(),
        ),
        (
            "Doc_0/Pages/Page_0/Content.xml".into(),
            content.into_bytes(),
        ),
        (format!("Doc_0/Res/{FONT_FILE}"), font_file),
        ("Doc_0/Res/qr.png".into(), face.qr_png.to_vec()),
    ];
    if let (Some(annotation), Some(png)) = (annotation, face.seal_png) {
        files.push(("Doc_0/Res/seal.png".into(), png.to_vec()));
        files.push((
            "Doc_0/Annots/Annotations.xml".into(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:Annotations xmlns:ofd=\"{NS}\"><ofd:Page PageID=\"{PAGE_ID}\">\
                 <ofd:FileLoc>Page_0/Annotation.xml</ofd:FileLoc></ofd:Page></ofd:Annotations>"
            )
            .into_bytes(),
        ));
        files.push((
            "Doc_0/Annots/Page_0/Annotation.xml".into(),
            annotation.into_bytes(),
        ));
    }
    if let Some(doc) = face.licence_document {
        max_id += 1;
        files.push((
            "Doc_0/Attachs/Attachments.xml".into(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:Attachments xmlns:ofd=\"{NS}\">\
                 <ofd:Attachment ID=\"{max_id}\" Name=\"licence\" Format=\"cose\" CreationDate=\"{}\" Size=\"{}\" Visible=\"false\" Usage=\"none\">\
                 <ofd:FileLoc>licence.cose</ofd:FileLoc></ofd:Attachment></ofd:Attachments>",
                esc(face.created),
                mm(doc.len() as f64 / 1024.0),
            )
            .into_bytes(),
        ));
        files.push((LICENCE_ATTACHMENT.into(), doc.to_vec()));
    }
    if let Some(s) = sealing {
        files.push(("Doc_0/Signs/Sign_0/Seal.esl".into(), s.esl.to_vec()));
        let references: Vec<(String, [u8; 32])> = files
            .iter()
            .map(|(path, bytes)| (format!("/{path}"), sm3(&[bytes])))
            .collect();
        let signature = signature_xml(&references, seal_box(face), s.at_text).into_bytes();
        let signed_value = ses::sign(
            s.esl,
            s.at,
            &sm3(&[&signature]),
            SIGNATURE_XML,
            s.signer,
            s.signer_cert,
        )?;
        files.push((
            "Doc_0/Signs/Signatures.xml".into(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ofd:Signatures xmlns:ofd=\"{NS}\"><ofd:MaxSignId>1</ofd:MaxSignId>\
                 <ofd:Signature ID=\"1\" Type=\"Seal\" BaseLoc=\"/Doc_0/Signs/Sign_0/Signature.xml\"/></ofd:Signatures>"
            )
            .into_bytes(),
        ));
        files.push(("Doc_0/Signs/Sign_0/Signature.xml".into(), signature));
        files.push(("Doc_0/Signs/Sign_0/SignedValue.dat".into(), signed_value));
    }
    zip_files(&files)
}

fn zip_files(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, OfdError> {
    let fail = |e: &dyn std::fmt::Display| OfdError::Format(format!("writing the package: {e}"));
    let mut z = ZipWriter::new(Cursor::new(Vec::new()));
    for (path, bytes) in files {
        // PNGs are compressed already.
        let method = if path.ends_with(".png") {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        z.start_file(
            path.as_str(),
            SimpleFileOptions::default().compression_method(method),
        )
        .map_err(|e| fail(&e))?;
        z.write_all(bytes).map_err(|e| fail(&e))?;
    }
    Ok(z.finish().map_err(|e| fail(&e))?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_wrapped_by_width() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(wrap("证照证照", 5.0, 10.0), ["证照", "证照"]);
        assert_eq!(wrap("abcd", 5.0, 10.0), ["abcd"]);
        assert_eq!(mm(1.5), "1.5");
        assert_eq!(mm(2.0), "2");
    }
}
