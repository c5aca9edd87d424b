//! The licence as a file (OFD, GB/T 33190). A licence of an SM2 seal gets its sealed file:
//! made on first request while the seal can sign, its bytes recorded and its digest appended
//! to the log (`licence.ofd_sealed`), and the same bytes returned ever after. A licence of
//! another seal gets an unsigned view of the same layout, made on each request (it proves
//! nothing; the COSE document does). Both stay off the issue path.
//!
//! Keys: `LicenceFiles` by licence ID ‖ 0x00 ‖ format → SHA-256 ‖ log index (u64 BE).

use std::collections::BTreeMap;
use std::sync::Arc;

use certseal_core::template::FieldValue;
use certseal_core::{
    Actor, Department, HolderKind, LicenceClaims, LicenceId, LicenceStatus, Role, SealAlgorithm,
    SealStatus, Timestamp, Usability,
};
use certseal_crypto::sha256;
use certseal_crypto::sm::Sm2Key;
use certseal_log::Extra;
use certseal_ofd::{Face, Font, Row, Sealing};
use certseal_store::Table;

use crate::audit::append;
use crate::codec::decode;
use crate::licences::{LicenceView, load_licence_txn};
use crate::seals::{load_seal, load_seal_txn};
use crate::templates::TemplateSelector;
use crate::{Registry, RegistryError};

/// Custom data names (GB/T 36903's licence metadata) in every licence file, and the verifier
/// reads the first to find the licence.
pub const OFD_LICENCE_ID: &str = "证照标识";
/// Custom data: SHA-256 (hex) of the licence's COSE document, which the file shows.
pub const OFD_DOCUMENT_SHA256: &str = "certseal.document_sha256";
/// Custom data: "sealed" or "view".
pub const OFD_KIND: &str = "certseal.kind";
/// The note at the foot of an unsigned view.
pub const VIEW_NOTE: &str = "本文件为电子证照的展示件，不含电子签章，不作凭证；凭证为其 COSE 签名文件（证照二维码），可在发证平台核验。";

/// How the registry makes licence files.
#[derive(Debug, Clone)]
pub struct OfdOptions {
    /// The CJK TrueType file (or collection) whose subset the text is drawn with, read on
    /// the first licence file.
    pub font_file: std::path::PathBuf,
    /// The face in it.
    pub font_index: usize,
    /// Draws a licence's QR string as a PNG.
    pub qr_png: fn(&str) -> Result<Vec<u8>, String>,
    /// Seal the file of a licence of an SM2 seal right after it is issued, in the background
    /// (off the issue path), rather than on its first request.
    pub seal_at_issue: bool,
}

impl Default for OfdOptions {
    fn default() -> Self {
        Self {
            font_file: certseal_ofd::font::DEFAULT_FONT_PATH.into(),
            font_index: certseal_ofd::font::DEFAULT_FONT_INDEX,
            qr_png: |_| Err("no QR renderer configured".into()),
            seal_at_issue: false,
        }
    }
}

/// The font, read once on first use.
#[derive(Debug, Default)]
pub(crate) struct FontCell(std::sync::OnceLock<Result<Arc<Font>, String>>);

/// A licence file.
#[derive(Debug, Clone)]
pub struct LicenceFile {
    /// The file.
    pub bytes: Vec<u8>,
    /// Sealed with the licence's SM2 seal (else an unsigned view).
    pub sealed: bool,
    /// The `licence.ofd_sealed` log entry of a sealed file.
    pub log_index: Option<u64>,
}

/// The only format so far.
const FORMAT_OFD: u8 = 1;

pub(crate) fn file_key(id: &LicenceId) -> Vec<u8> {
    [id.as_str().as_bytes(), &[0, FORMAT_OFD]].concat()
}

/// `YYYY-MM-DD` of an instant (UTC+8: the date printed on a Chinese licence).
fn date(t: Timestamp) -> (i32, u8, u8) {
    let d = time::OffsetDateTime::from_unix_timestamp(t.0.div_euclid(1000) + 8 * 3600)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (d.year(), u8::from(d.month()), d.day())
}

fn iso_date(t: Timestamp) -> String {
    let (y, m, d) = date(t);
    format!("{y:04}-{m:02}-{d:02}")
}

fn chinese_date(t: Timestamp) -> String {
    let (y, m, d) = date(t);
    format!("{y:04}年{m:02}月{d:02}日")
}

fn shown(v: &FieldValue) -> String {
    match v {
        FieldValue::Text(t) => t.clone(),
        FieldValue::Integer(i) => i.to_string(),
        FieldValue::Boolean(b) => if *b { "是" } else { "否" }.to_owned(),
    }
}

fn ofd_err(e: certseal_ofd::OfdError) -> RegistryError {
    match e {
        certseal_ofd::OfdError::Font(m) => {
            RegistryError::FailedPrecondition(format!("the licence file cannot be drawn: {m}"))
        }
        other => RegistryError::Corrupt(format!("making the licence file: {other}")),
    }
}

/// What a file of this licence shows and says.
struct Drawn {
    rows: Vec<Row>,
    custom: Vec<(String, String)>,
    title: String,
    issuer_name: String,
    qr_png: Vec<u8>,
}

impl Registry {
    fn draw(&self, view: &LicenceView, issuer: &Department) -> Result<Drawn, RegistryError> {
        let l = &view.licence;
        let c: &LicenceClaims = &view.claims;
        let template =
            self.read_template(&l.type_code, TemplateSelector::Version(l.template_version))?;
        let mut rows: Vec<Row> = template
            .content
            .fields
            .iter()
            .filter_map(|f| {
                c.fields.get(&f.name).map(|v| Row {
                    label: f.label.clone(),
                    value: shown(v),
                })
            })
            .collect();
        let (holder_label, id_label, id_kind) = match c.holder.kind {
            HolderKind::Person => ("持证人", "身份证件号码", "居民身份证"),
            HolderKind::Organisation => ("持证主体", "统一社会信用代码", "统一社会信用代码"),
        };
        let valid_to = l.not_after.map(iso_date).unwrap_or_else(|| "长期".into());
        rows.extend([
            Row {
                label: holder_label.into(),
                value: c.holder.name.clone(),
            },
            Row {
                label: id_label.into(),
                value: c.holder.id.clone(),
            },
            Row {
                label: "有效期".into(),
                value: format!("{} 至 {valid_to}", iso_date(l.not_before)),
            },
            Row {
                label: "证照编号".into(),
                value: l.id.to_string(),
            },
        ]);
        let custom: Vec<(String, String)> = [
            (OFD_LICENCE_ID, l.id.to_string()),
            ("证照类型代码", l.type_code.to_string()),
            ("证照类型名称", template.content.name.clone()),
            ("证照颁发机构", issuer.name.clone()),
            ("证照颁发机构代码", l.issuer.to_string()),
            ("持证主体", c.holder.name.clone()),
            ("持证主体代码", c.holder.id.clone()),
            ("持证主体代码类型", id_kind.into()),
            ("颁证日期", iso_date(l.issued_at)),
            ("有效期起始日期", iso_date(l.not_before)),
            ("有效期截止日期", valid_to),
            (OFD_DOCUMENT_SHA256, hex(&sha256(&[&view.document]))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let qr_png = (self.ofd.qr_png)(&view.qr)
            .map_err(|e| RegistryError::Corrupt(format!("drawing the QR code: {e}")))?;
        Ok(Drawn {
            rows,
            custom,
            title: template.content.name,
            issuer_name: issuer.name.clone(),
            qr_png,
        })
    }

    /// The licence as an OFD file, for those who may read the whole licence (as
    /// [`Registry::get_licence`]). See the module for sealed files and views.
    pub async fn licence_file(
        &self,
        actor: &Actor,
        licence_id: &str,
    ) -> Result<LicenceFile, RegistryError> {
        let view = self.get_licence(actor, licence_id)?;
        let id = view.licence.id.clone();
        if let Some(found) = self.stored_file(&id)? {
            return Ok(found);
        }
        // Sealing makes the department's seal sign and is logged in the caller's name: only
        // the issuing department's issuer does it; others (auditors) read a file once made.
        let seals = self.ofd_seals(&view);
        if seals && (actor.role != Role::Issuer || actor.department != view.licence.issuer) {
            return Err(RegistryError::FailedPrecondition(format!(
                "licence {id} has no sealed file yet: the issuing department (role issuer) makes it on its first request"
            )));
        }
        let font = self
            .ofd_font
            .0
            .get_or_init(|| {
                Font::load(&self.ofd.font_file, self.ofd.font_index)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| {
                RegistryError::FailedPrecondition(format!(
                    "licence files cannot be drawn: {e} ([ofd] font_file; Debian's fonts-wqy-zenhei)"
                ))
            })?;
        let seal = load_seal(self.store.as_ref(), &view.licence.seal)?
            .ok_or_else(|| RegistryError::Corrupt(format!("seal of licence {id}")))?;
        let issuer: Department = self
            .store
            .get(Table::Departments, view.licence.issuer.as_str().as_bytes())?
            .map(|b| decode("department", &b))
            .transpose()?
            .ok_or_else(|| RegistryError::Corrupt(format!("issuer of licence {id}")))?;
        let drawn = self.draw(&view, &issuer)?;
        let image = self.seal_image(&seal)?;
        let now = Timestamp::now();
        let doc_id = hex(&sha256(&[b"certseal licence file ", id.as_str().as_bytes()])[..16]);
        let created = iso_date(view.licence.issued_at);
        let issue_date = chinese_date(view.licence.issued_at);
        if seal.algorithm != SealAlgorithm::Sm2 {
            let mut custom = drawn.custom;
            custom.push((OFD_KIND.into(), "view".into()));
            let png = (seal.image_format == certseal_core::ImageFormat::Png).then_some(&image[..]);
            let bytes = certseal_ofd::make(
                &Face {
                    title: &drawn.title,
                    rows: &drawn.rows,
                    issuer_name: &drawn.issuer_name,
                    issue_date: &issue_date,
                    licence_id: id.as_str(),
                    qr_png: &drawn.qr_png,
                    seal_png: png,
                    view_note: Some(VIEW_NOTE),
                    custom_data: &custom,
                    doc_id: &doc_id,
                    created: &created,
                    licence_document: Some(&view.document),
                },
                &font,
                None,
            )
            .map_err(ofd_err)?;
            return Ok(LicenceFile {
                bytes,
                sealed: false,
                log_index: None,
            });
        }
        // The sealed file is the licence itself: made only while both can stand behind it.
        let status = view.licence.status();
        if matches!(status, LicenceStatus::Revoked | LicenceStatus::Superseded) {
            return Err(RegistryError::FailedPrecondition(format!(
                "licence {id} is {} and has no sealed file; none is made for it now",
                status.as_str()
            )));
        }
        let usable = seal.lifecycle.usability_at(now);
        if usable != Usability::Usable || seal.status() != SealStatus::Active {
            return Err(RegistryError::FailedPrecondition(format!(
                "seal {} can no longer sign ({usable:?}), and licence {id} has no sealed file yet: its COSE document remains the proof",
                seal.id
            )));
        }
        let esl = seal
            .esl
            .clone()
            .ok_or_else(|| RegistryError::Corrupt(format!("SM2 seal {} has no SESeal", seal.id)))?;
        let cert = seal.certificate.clone().ok_or_else(|| {
            RegistryError::Corrupt(format!("seal {} has no certificate", seal.id))
        })?;
        let pkcs8 = self.open_seal_key(&seal.id)?;
        let key = Sm2Key::from_pkcs8(&pkcs8)
            .map_err(|e| RegistryError::Corrupt(format!("seal key: {e}")))?;
        drop(pkcs8);
        let mut custom = drawn.custom;
        custom.push((OFD_KIND.into(), "sealed".into()));
        let at = now.0.div_euclid(1000);
        let at_text = {
            let t = time::OffsetDateTime::from_unix_timestamp(at)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        };
        let rows = drawn.rows;
        let title = drawn.title;
        let issuer_name = drawn.issuer_name;
        let qr = drawn.qr_png;
        let licence = id.as_str().to_owned();
        let document = view.document.clone();
        let bytes = self
            .signing
            .run(move || {
                certseal_ofd::make(
                    &Face {
                        title: &title,
                        rows: &rows,
                        issuer_name: &issuer_name,
                        issue_date: &issue_date,
                        licence_id: &licence,
                        qr_png: &qr,
                        seal_png: None,
                        view_note: None,
                        custom_data: &custom,
                        doc_id: &doc_id,
                        created: &created,
                        licence_document: Some(&document),
                    },
                    &font,
                    Some(&Sealing {
                        esl: &esl,
                        signer: &key,
                        signer_cert: &cert,
                        at,
                        at_text: &at_text,
                    }),
                )
                .map_err(ofd_err)
            })
            .await?;
        let actor = actor.clone();
        let key = file_key(&id);
        let seal_id = seal.id;
        let (bytes, log_index) = self
            .sequencer
            .submit(move |txn| -> Result<(Vec<u8>, u64), RegistryError> {
                // Two first requests at once: the first written wins, and both return it.
                if let Some(v) = txn.get(Table::LicenceFiles, &key)? {
                    let (digest, index) = split_entry(&v)?;
                    let stored = txn
                        .get(Table::Records, digest)?
                        .ok_or_else(|| RegistryError::Corrupt(format!("file of licence {id}")))?;
                    return Ok((stored, index));
                }
                // What was checked before signing must still hold when the file is logged:
                // a seal suspended or a licence revoked meanwhile gets no file.
                let now = Timestamp::now();
                let seal = load_seal_txn(txn, &seal_id)?;
                if seal.lifecycle.usability_at(now) != Usability::Usable
                    || seal.status() != SealStatus::Active
                {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "seal {seal_id} stopped being able to sign while licence {id}'s file was made; its COSE document remains the proof"
                    )));
                }
                let status = load_licence_txn(txn, &id)?.status();
                if matches!(status, LicenceStatus::Revoked | LicenceStatus::Superseded) {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "licence {id} became {} while its file was made",
                        status.as_str()
                    )));
                }
                let index = txn.state.next_index();
                let digest = sha256(&[&bytes]);
                txn.put(
                    Table::LicenceFiles,
                    key,
                    [&digest[..], &index.to_be_bytes()].concat(),
                );
                append(
                    txn,
                    &actor,
                    "licence.ofd_sealed",
                    id.as_str(),
                    &bytes,
                    BTreeMap::from([
                        ("format".to_owned(), Extra::Text("ofd".into())),
                        ("seal".to_owned(), Extra::Text(seal_id.to_string())),
                    ]),
                );
                Ok((bytes, index))
            })
            .await?;
        tracing::info!(licence = licence_id, log_index, "sealed a licence file");
        Ok(LicenceFile {
            bytes,
            sealed: true,
            log_index: Some(log_index),
        })
    }

    /// With [`OfdOptions::seal_at_issue`]: seals the file of `view`, a licence just issued
    /// with an SM2 seal, on a task of its own. A failure is logged: the file is then made on
    /// its first request, as without the option.
    pub fn seal_file_in_background(self: &Arc<Self>, actor: &Actor, view: &LicenceView) {
        if !self.ofd.seal_at_issue {
            return;
        }
        if !self.ofd_seals(view) {
            return;
        }
        let (registry, actor, id) = (self.clone(), actor.clone(), view.licence.id.to_string());
        tokio::spawn(async move {
            if let Err(e) = registry.licence_file(&actor, &id).await {
                tracing::warn!(licence = %id, error = %e, "could not seal the licence file at issue; it is made on its first request");
            }
        });
    }

    /// Whether a licence's file is sealed (its document is signed with an SM2 seal).
    fn ofd_seals(&self, view: &LicenceView) -> bool {
        certseal_crypto::cose::parse_sign1(&view.document, usize::MAX)
            .is_ok_and(|d| d.cose_alg() == certseal_crypto::cose::SM2_ALG)
    }

    /// The sealed file already made for a licence.
    fn stored_file(&self, id: &LicenceId) -> Result<Option<LicenceFile>, RegistryError> {
        let Some(v) = self.store.get(Table::LicenceFiles, &file_key(id))? else {
            return Ok(None);
        };
        let (digest, index) = split_entry(&v)?;
        let bytes = self
            .store
            .get(Table::Records, digest)?
            .ok_or_else(|| RegistryError::Corrupt(format!("file of licence {id}")))?;
        Ok(Some(LicenceFile {
            bytes,
            sealed: true,
            log_index: Some(index),
        }))
    }

    /// The SHA-256 and log index of a licence's sealed file, if it has one.
    pub(crate) fn sealed_file_entry(
        &self,
        r: &dyn certseal_store::Read,
        id: &LicenceId,
    ) -> Result<Option<([u8; 32], u64)>, RegistryError> {
        r.get(Table::LicenceFiles, &file_key(id))?
            .map(|v| split_entry(&v).map(|(d, i)| (d.try_into().expect("32 bytes"), i)))
            .transpose()
    }
}

fn split_entry(v: &[u8]) -> Result<(&[u8], u64), RegistryError> {
    if v.len() != 40 {
        return Err(RegistryError::Corrupt("licence file entry".into()));
    }
    Ok((
        &v[..32],
        u64::from_be_bytes(v[32..].try_into().expect("8 bytes")),
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
