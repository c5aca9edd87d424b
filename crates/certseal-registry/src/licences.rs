//! Licences: issue (validate against the template, check the seal, assign the ID, sign the
//! COSE document with the seal key), read, list, amend and renew (a new licence whose `prev` is
//! the old one), suspend, reinstate, revoke.
//!
//! Everything that can be done before the write (validation, signing) is; the sequenced
//! operation re-checks what may have changed meanwhile (the seal's status, the old licence's
//! status, the idempotency key) and writes the state, the indexes and the audit entry in one
//! batch. The signed document is the record its `licence.issued` entry commits to: it is stored
//! once, under its SHA-256, in the log's record table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use certseal_core::licence::{LICENCE_CONTENT_TYPE, MAX_NOTE, licence_content_type};
use certseal_core::{
    Actor, Collected, CreditCode, DepartmentStatus, FieldValue, FieldViolation, Holder, HolderKind,
    IdIssuer, Licence, LicenceAction, LicenceClaims, LicenceEvent, LicenceId, LicenceStatus, Role,
    SealId, SealStatus, Template, TemplateStatus, Timestamp, TypeCode, Usability, qr,
};
use certseal_crypto::{Certificate, cose, sha256};
use certseal_log::Extra;
use certseal_store::{Direction, Read, Table};
use certseal_verify::document::MAX_DOCUMENT_BYTES;
use serde::Serialize;

use crate::audit::{RegTxn, append};
use crate::cache::{SigningSealRecord, Stamp};
use crate::codec::{decode, encode};
use crate::departments::{load_department, parse_credit_code};
use crate::paging::scan_page;
use crate::request_ids::{
    Change, Remembered, RequestDigest, RequestId, outcome_record, outcome_text, request_id,
};
use crate::seals::{load_seal_txn, parse_seal_id};
use crate::status_list::put_status_index;
use crate::templates::TemplateSelector;
use crate::{PageRequest, Paged, Registry, RegistryError};

/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Most fields in one licence request.
pub const MAX_FIELDS: usize = 256;
/// Most stored index entries one list call reads.
const MAX_SCANNED_PER_LIST: usize = 10_000;
const DAY_MS: i64 = 86_400_000;

/// A licence to issue.
#[derive(Debug, Clone, Serialize)]
pub struct IssueRequest {
    /// Licence type code.
    pub type_code: String,
    /// Template version; 0 means the latest published.
    pub template_version: u32,
    /// Holder kind.
    pub holder_kind: HolderKind,
    /// Resident ID or credit code.
    pub holder_id: String,
    /// Holder name.
    pub holder_name: String,
    /// Field values.
    pub fields: BTreeMap<String, FieldValue>,
    /// Start of validity; `None`: now.
    pub not_before: Option<Timestamp>,
    /// End of validity; `None`: the template's default validity (or none).
    pub not_after: Option<Timestamp>,
    /// The seal to sign with: one of the issuing department's active seals.
    pub seal_id: String,
    /// Makes retries safe: the same key and request return the same licence.
    pub idempotency_key: String,
    /// For a licence being collected (归集): the ID another platform gave it, which it keeps.
    /// Empty: the registry gives it a new ID. Left out of the request digest when empty, so
    /// keys stored before collection existed still match their requests.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub existing_id: String,
    /// Where and when a collected licence was first issued; required with `existing_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected: Option<CollectedRequest>,
}

/// Where and when a collected licence was first issued, as asked.
#[derive(Debug, Clone, Serialize)]
pub struct CollectedRequest {
    /// The platform or authority that first issued it.
    pub source: String,
    /// When; `None` is refused.
    pub first_issued_at: Option<Timestamp>,
}

/// What changes in an amendment or a renewal; the rest is taken from the licence replaced.
#[derive(Debug, Clone, Default)]
pub struct ReissueRequest {
    /// The licence replaced.
    pub licence_id: String,
    /// New field values (all of them); `None` keeps the old ones.
    pub fields: Option<BTreeMap<String, FieldValue>>,
    /// New holder name; `None` keeps it.
    pub holder_name: Option<String>,
    /// Template version; 0 means the latest published.
    pub template_version: u32,
    /// New start of validity.
    pub not_before: Option<Timestamp>,
    /// New end of validity.
    pub not_after: Option<Timestamp>,
    /// Seal; `None` keeps the old licence's seal (it must still be active).
    pub seal_id: Option<String>,
    /// Why.
    pub note: String,
    /// Makes retries safe (AIP-155): empty for none; the same ID with the same request returns
    /// the licence the first one made.
    pub request_id: String,
}

/// Amendment (fields change, same validity by default) or renewal (new validity, same fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissue {
    /// 变更.
    Amend,
    /// 延续.
    Renew,
}

/// A licence with its signed document.
#[derive(Debug, Clone)]
pub struct LicenceView {
    /// The stored state.
    pub licence: Licence,
    /// The signed COSE_Sign1 document.
    pub document: Vec<u8>,
    /// What the document says.
    pub claims: LicenceClaims,
    /// The `CS1:` QR string of the document.
    pub qr: String,
}

/// Which licences to list.
#[derive(Debug, Clone)]
pub enum LicenceFilter {
    /// A holder's licences.
    Holder(HolderKind, String),
    /// A department's issued licences.
    Issuer(String),
    /// Licences of one type.
    Type(String),
}

/// Hands out serials: 9 base-36 digits of milliseconds and 3 of a counter within the
/// millisecond, so they sort by time and never repeat within a process (the start follows the
/// audit log's last time, so a clock set back does not repeat them after a restart either),
/// then [`SERIAL_RANDOM`] random ones, so that knowing when a licence was issued is not enough
/// to name it (the public page answers anyone who names a licence).
#[derive(Debug)]
pub(crate) struct SerialAllocator(Mutex<(i64, u32)>);

const SERIAL_SEQ_MAX: u32 = 36 * 36 * 36 - 1;
/// Random base-36 characters at the end of a serial: 36^10 ≈ 2^51.
pub(crate) const SERIAL_RANDOM: usize = 10;

fn base36(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("ASCII")
}

impl SerialAllocator {
    pub(crate) fn new(after_ms: i64) -> Self {
        Self(Mutex::new((after_ms, SERIAL_SEQ_MAX)))
    }

    fn next(&self) -> String {
        let mut last = self.0.lock().expect("serial lock");
        let now = Timestamp::now().0;
        if now > last.0 {
            *last = (now, 0);
        } else if last.1 < SERIAL_SEQ_MAX {
            last.1 += 1;
        } else {
            *last = (last.0 + 1, 0);
        }
        let (ms, seq) = *last;
        drop(last);
        format!(
            "{}{}{}",
            base36(ms.max(0) as u64, 9),
            base36(u64::from(seq), 3),
            random_base36(SERIAL_RANDOM)
        )
    }
}

/// `n` uniformly random characters of `0-9A-Z`.
fn random_base36(n: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut bytes = [0u8; 16];
        certseal_crypto::random(&mut bytes).expect("the system's random source");
        // 252 = 7 × 36: bytes at or above it are dropped, so every digit is equally likely.
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < 252)
                .map(|b| char::from(DIGITS[usize::from(*b % 36)]))
                .take(n - out.len()),
        );
    }
    out
}

pub(crate) fn parse_licence_id(value: &str) -> Result<LicenceId, RegistryError> {
    value
        .parse()
        .map_err(|e: certseal_core::IdError| RegistryError::invalid("licence_id", e.0))
}

use crate::holders::holder_prefix;

fn index_key(prefix: &[u8], at: Timestamp, id: &LicenceId) -> Vec<u8> {
    [
        prefix,
        &(at.0.max(0) as u64).to_be_bytes(),
        id.as_str().as_bytes(),
    ]
    .concat()
}

fn idempotency_key(issuer: &CreditCode, key: &str) -> Vec<u8> {
    [issuer.as_str().as_bytes(), key.as_bytes()].concat()
}

pub(crate) fn load_licence(r: &dyn Read, id: &LicenceId) -> Result<Option<Licence>, RegistryError> {
    r.get(Table::Licences, id.as_str().as_bytes())?
        .map(|b| decode("licence", &b))
        .transpose()
}

pub(crate) fn load_licence_txn(txn: &RegTxn<'_>, id: &LicenceId) -> Result<Licence, RegistryError> {
    txn.get(Table::Licences, id.as_str().as_bytes())?
        .map(|b| decode("licence", &b))
        .transpose()?
        .ok_or_else(|| RegistryError::NotFound(format!("licence {id}")))
}

fn check_note(note: &str) -> Result<(), RegistryError> {
    if note.chars().count() > MAX_NOTE {
        return Err(RegistryError::invalid(
            "note",
            format!("at most {MAX_NOTE} characters"),
        ));
    }
    Ok(())
}

/// Seconds for a CWT time claim (whole seconds, rounded down).
fn secs(t: Timestamp) -> i64 {
    t.0.div_euclid(1000)
}

pub(crate) fn licence_fields(l: &Licence, extra: &[(&str, String)]) -> BTreeMap<String, Extra> {
    let mut m = BTreeMap::from([
        (
            "type".to_owned(),
            Extra::Text(l.type_code.as_str().to_owned()),
        ),
        (
            "status".to_owned(),
            Extra::Text(l.status().as_str().to_owned()),
        ),
    ]);
    for (k, v) in extra {
        m.insert((*k).to_owned(), Extra::Text(v.clone()));
    }
    // A collected licence's issue entry says where and when it was first issued.
    if let Some(c) = &l.collected {
        m.insert("collected_from".to_owned(), Extra::Text(c.source.clone()));
        m.insert(
            "first_issued_at".to_owned(),
            Extra::Uint(c.first_issued_at.0.max(0) as u64),
        );
    }
    m
}

/// A licence ready to be written: its state and signed document.
struct Prepared {
    licence: Licence,
    document: Vec<u8>,
    claims: LicenceClaims,
    /// The QR string, made on the signing pool too.
    qr: String,
}

/// What a new document says, before its seal and ID are settled.
struct Draft {
    template: Template,
    holder: Holder,
    fields: BTreeMap<String, FieldValue>,
    not_before: Timestamp,
    not_after: Option<Timestamp>,
    seal: SealId,
    prev: Option<LicenceId>,
    /// Set for a licence collected under its existing ID.
    collected: Option<Collected>,
}

fn prefixed_fields(e: certseal_core::Error) -> RegistryError {
    RegistryError::from(e)
}

fn merge(results: Vec<Result<(), RegistryError>>) -> Result<(), RegistryError> {
    let mut v: Vec<FieldViolation> = Vec::new();
    for r in results {
        match r {
            Ok(()) => {}
            Err(RegistryError::InvalidArgument(x)) => v.extend(x),
            Err(other) => return Err(other),
        }
    }
    if v.is_empty() {
        Ok(())
    } else {
        Err(RegistryError::InvalidArgument(v))
    }
}

/// Refuses a signed licence larger than verification reads: it would be issued and then fail
/// every check. This bounds versions published before [`largest_licence`] was checked at publish.
fn check_issuable(document: &[u8]) -> Result<(), RegistryError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(RegistryError::invalid(
            "fields",
            format!(
                "the signed licence would have {} bytes; verification reads at most {MAX_DOCUMENT_BYTES}: shorten the field values or the holder name",
                document.len()
            ),
        ));
    }
    Ok(())
}

/// Signs nothing: 64 zero bytes, the length of every signature a seal makes (Ed25519, and
/// ES256 as raw r‖s), so that a document's size can be known without a key.
#[derive(Debug)]
struct SizingSigner;

impl certseal_crypto::Signer for SizingSigner {
    fn algorithm(&self) -> certseal_crypto::x509::KeyAlgorithm {
        certseal_crypto::x509::KeyAlgorithm::Ed25519
    }

    fn public_key(&self) -> &[u8] {
        &[]
    }

    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, certseal_crypto::CryptoError> {
        Ok(vec![0; 64])
    }
}

/// A character of 4 bytes in UTF-8, the most any character takes.
const WIDEST_CHAR: char = '\u{20000}';

/// The largest licence `template` can issue, encoded as the registry signs it: every field
/// present at its longest (text at 4 bytes a character), the longest holder name, the longest
/// times, the longest serial the ID format allows, an expiry and a previous licence. Returns
/// the signed document's length.
pub(crate) fn largest_licence(template: &Template) -> Result<usize, RegistryError> {
    use certseal_core::template::FieldType;
    let issuer = template.defining_department();
    let serial = "Z".repeat(certseal_core::ids::MAX_SERIAL_CHARS);
    let id = LicenceId::new(&template.type_code, &issuer, &serial, 999)
        .map_err(|e| RegistryError::Corrupt(format!("licence ID: {e}")))?;
    let fields = template
        .content
        .fields
        .iter()
        .map(|f| {
            let value = match f.field_type {
                FieldType::String => {
                    FieldValue::Text(WIDEST_CHAR.to_string().repeat(f.max_length as usize))
                }
                FieldType::Integer => FieldValue::Integer(i64::MIN),
                // At most 30 integer digits (canonical_decimal), a sign and the fraction.
                FieldType::Decimal => FieldValue::Text(format!(
                    "-{}.{}",
                    "9".repeat(30),
                    "9".repeat(f.scale as usize)
                )),
                FieldType::Date => FieldValue::Text("9999-12-31".into()),
                FieldType::Boolean => FieldValue::Boolean(false),
                FieldType::Enum => FieldValue::Text(
                    f.enum_values
                        .iter()
                        .max_by_key(|v| v.len())
                        .cloned()
                        .unwrap_or_default(),
                ),
                FieldType::ResidentId | FieldType::CreditCode => FieldValue::Text("0".repeat(18)),
            };
            (f.name.clone(), value)
        })
        .collect();
    let claims = LicenceClaims {
        exp: Some(i64::MAX),
        nbf: i64::MAX,
        iat: i64::MAX,
        type_code: template.type_code.clone(),
        template_version: template.version,
        seal: SealId::from_bytes([0xFF; 16]),
        holder: Holder {
            kind: HolderKind::Organisation,
            id: issuer.to_string(),
            name: WIDEST_CHAR
                .to_string()
                .repeat(certseal_core::licence::MAX_HOLDER_NAME),
        },
        fields,
        prev: Some(id.clone()),
        issuer,
        id,
    };
    let document = cose::sign1(
        &SizingSigner,
        &[0; 8],
        LICENCE_CONTENT_TYPE,
        None,
        claims.encode(),
    )
    .map_err(|e| RegistryError::Corrupt(format!("sizing a licence: {e}")))?;
    Ok(document.len())
}

impl Registry {
    fn published_template(
        &self,
        type_code: &TypeCode,
        version: u32,
    ) -> Result<Template, RegistryError> {
        let selector = match version {
            0 => TemplateSelector::LatestPublished,
            v => TemplateSelector::Version(v),
        };
        let t = self
            .read_template(type_code, selector)
            .map_err(|e| match e {
                RegistryError::NotFound(m) => RegistryError::FailedPrecondition(format!(
                    "{m}: licences are issued only from a published template"
                )),
                other => other,
            })?;
        if t.status != TemplateStatus::Published {
            return Err(RegistryError::FailedPrecondition(format!(
                "template {} version {} is {}; licences are issued only from a published version",
                t.type_code,
                t.version,
                t.status.as_str()
            )));
        }
        Ok(t)
    }

    /// The seal to sign with: the issuer's own, usable now, with a certificate that covers
    /// the licence's validity.
    fn signing_seal(
        &self,
        stamp: &Stamp,
        actor: &Actor,
        seal_id: &SealId,
        now: Timestamp,
        not_before: Option<Timestamp>,
        not_after: Option<Timestamp>,
    ) -> Result<Arc<SigningSealRecord>, RegistryError> {
        let record = self
            .records
            .seal(self.store.as_ref(), stamp, seal_id)?
            .ok_or_else(|| {
                RegistryError::FailedPrecondition(format!("seal {seal_id} is not registered"))
            })?;
        let seal = &record.seal;
        if seal.lifecycle.department != actor.department {
            return Err(self.deny(
                actor,
                "signing a licence",
                format!(
                    "seal {seal_id} belongs to department {}, not to {}",
                    seal.lifecycle.department, actor.department
                ),
            ));
        }
        match seal.lifecycle.usability_at(now) {
            Usability::Usable => {}
            Usability::NotActive(Some(s)) => {
                return Err(RegistryError::FailedPrecondition(format!(
                    "seal {seal_id} is {}; only an active seal can sign",
                    s.as_str()
                )));
            }
            other => {
                return Err(RegistryError::FailedPrecondition(format!(
                    "seal {seal_id} cannot sign now: {}",
                    other.describe()
                )));
            }
        }
        // The latest status too, not only the status now: after the clock steps back, a
        // change can be dated later than `now`, and the writer may skip its own re-check.
        if seal.status() != SealStatus::Active {
            return Err(RegistryError::FailedPrecondition(format!(
                "seal {seal_id} is {}; only an active seal can sign",
                seal.status().as_str()
            )));
        }
        let (cert_start, cert_end) = record.cert_validity.ok_or_else(|| {
            RegistryError::FailedPrecondition(format!("seal {seal_id} has no certificate"))
        })?;
        let now_s = secs(now);
        if now_s < cert_start || now_s >= cert_end {
            return Err(RegistryError::FailedPrecondition(format!(
                "seal {seal_id}'s certificate is not valid now"
            )));
        }
        if let Some(start) = not_before
            && secs(start) >= cert_end
        {
            return Err(RegistryError::invalid(
                "not_before",
                format!(
                    "the licence would start after the certificate of seal {seal_id} ends ({cert_end} s)"
                ),
            ));
        }
        if let Some(end) = not_after
            && secs(end) > cert_end
        {
            return Err(RegistryError::invalid(
                "not_after",
                format!(
                    "the licence would outlive the certificate of seal {seal_id}, which ends at {cert_end} s"
                ),
            ));
        }
        Ok(record)
    }

    /// Checks the fields, the seal and the issuer, assigns `id`, and signs the document on
    /// the signing pool. The seal and the issuer are read in `stamp`'s epoch.
    async fn prepare(
        &self,
        stamp: &Stamp,
        actor: &Actor,
        draft: Draft,
        id: LicenceId,
    ) -> Result<Prepared, RegistryError> {
        let now = Timestamp::now();
        let fields = draft
            .template
            .validate_values(&draft.fields)
            .map_err(prefixed_fields)?;
        let record = self.signing_seal(
            stamp,
            actor,
            &draft.seal,
            now,
            Some(draft.not_before),
            draft.not_after,
        )?;
        let seal = &record.seal;
        let issuer = self
            .records
            .department(self.store.as_ref(), stamp, &actor.department)?
            .ok_or_else(|| {
                RegistryError::FailedPrecondition(format!(
                    "department {} is not registered",
                    actor.department
                ))
            })?;
        if issuer.status != DepartmentStatus::Active {
            return Err(RegistryError::FailedPrecondition(format!(
                "department {} is deactivated",
                actor.department
            )));
        }
        // The document counts whole seconds; the state says the same.
        let whole = |t: Timestamp| Timestamp(secs(t) * 1000);
        let (not_before, not_after) = (whole(draft.not_before), draft.not_after.map(whole));
        let claims = LicenceClaims {
            issuer: actor.department.clone(),
            exp: draft.not_after.map(secs),
            nbf: secs(draft.not_before),
            iat: secs(now),
            id: id.clone(),
            type_code: draft.template.type_code.clone(),
            template_version: draft.template.version,
            seal: seal.id,
            holder: draft.holder.clone(),
            fields,
            prev: draft.prev.clone(),
        };
        let kid = Certificate {
            der: seal.certificate.clone().unwrap_or_default(),
        }
        .kid();
        let signer = self.seal_signer(seal)?;
        let content_type = licence_content_type(seal.algorithm);
        let mut licence = Licence {
            id,
            type_code: draft.template.type_code,
            template_version: draft.template.version,
            issuer: actor.department.clone(),
            seal: seal.id,
            holder_kind: draft.holder.kind,
            holder_id: draft.holder.id,
            issued_at: now,
            not_before,
            not_after,
            document_digest: Vec::new(),
            prev: draft.prev,
            next: None,
            history: vec![LicenceEvent {
                at: now,
                by: actor.clone(),
                status: LicenceStatus::Active,
                reason: None,
                note: String::new(),
                upstream: None,
            }],
            collected: draft.collected,
        };
        self.signing
            .run(move || {
                let document =
                    cose::sign1(signer.as_ref(), &kid, content_type, None, claims.encode())
                        .map_err(|e| RegistryError::Corrupt(format!("signing: {e}")))?;
                check_issuable(&document)?;
                let qr = qr::encode(&document);
                licence.document_digest = sha256(&[&document]).to_vec();
                Ok(Prepared {
                    licence,
                    document,
                    claims,
                    qr,
                })
            })
            .await
    }

    fn view(&self, p: Prepared) -> LicenceView {
        LicenceView {
            qr: p.qr,
            licence: p.licence,
            document: p.document,
            claims: p.claims,
        }
    }

    /// Issues a licence signed with one of the issuer's active seals. Needs the issuer role;
    /// the issuing department is the caller's. The same idempotency key with the same request
    /// returns the licence issued first; with another request, `AlreadyExists`.
    pub async fn issue_licence(
        &self,
        actor: &Actor,
        mut req: IssueRequest,
    ) -> Result<LicenceView, RegistryError> {
        let access = self.authorize(actor, Role::Issuer, "issuing a licence")?;
        req.idempotency_key = req.idempotency_key.trim().to_owned();
        let request_digest =
            sha256(&[&certseal_core::cbor::to_canonical(&req).map_err(RegistryError::Corrupt)?]);
        // Every problem of the request at once: syntax, then the fields against the template.
        let key = req.idempotency_key.clone();
        let mut type_code = None;
        let mut holder = None;
        let mut seal_id = None;
        let mut existing = None;
        let syntax = merge(vec![
            self.existing_id(&req).map(|e| existing = e),
            if key.is_empty()
                || key.chars().count() > MAX_IDEMPOTENCY_KEY
                || key.chars().any(char::is_control)
            {
                Err(RegistryError::invalid(
                    "idempotency_key",
                    format!("1 to {MAX_IDEMPOTENCY_KEY} characters without control characters"),
                ))
            } else {
                Ok(())
            },
            req.type_code
                .parse::<TypeCode>()
                .map(|t| type_code = Some(t))
                .map_err(|e| RegistryError::invalid("type_code", e.0)),
            Holder::new(req.holder_kind, &req.holder_id, &req.holder_name)
                .map(|h| holder = Some(h))
                .map_err(RegistryError::from),
            parse_seal_id(&req.seal_id).map(|s| seal_id = Some(s)),
            if req.fields.len() > self.input.max_licence_fields {
                Err(RegistryError::invalid(
                    "fields",
                    format!("at most {} fields", self.input.max_licence_fields),
                ))
            } else {
                Ok(())
            },
            match (req.not_before, req.not_after) {
                (Some(nb), Some(na)) if na <= nb => Err(RegistryError::invalid(
                    "not_after",
                    "must be later than not_before",
                )),
                _ => Ok(()),
            },
        ]);
        let template = match &type_code {
            Some(t) if req.fields.len() <= self.input.max_licence_fields => {
                Some(self.published_template(t, req.template_version))
            }
            _ => None,
        };
        if let Err(syntax) = syntax {
            let mut all = vec![Err(syntax)];
            if let Some(Ok(t)) = &template {
                all.push(
                    t.validate_values(&req.fields)
                        .map(|_| ())
                        .map_err(RegistryError::from),
                );
            }
            return merge(all).and(Err(RegistryError::Corrupt("unreachable".into())));
        }
        let (Some(type_code), Some(holder), Some(seal_id), Some(template)) =
            (type_code, holder, seal_id, template)
        else {
            unreachable!("the syntax check passed only if every part parsed");
        };
        access
            .may_issue(&type_code, &seal_id)
            .map_err(|r| self.deny(actor, "issuing a licence", r))?;
        let idem = idempotency_key(&actor.department, &key);
        if let Some(found) = self.replay(&idem, &request_digest)? {
            return Ok(found);
        }
        if let Some((id, _)) = &existing {
            self.may_collect(actor, &type_code, id)?;
            // Refused before signing; the writer checks again.
            if load_licence(self.store.as_ref(), id)?.is_some() {
                return Err(already_collected(id));
            }
        }
        let template = template?;
        let now = Timestamp::now();
        let not_before = req.not_before.unwrap_or(now);
        let not_after = req.not_after.or_else(|| {
            (template.content.default_validity_days > 0).then(|| {
                Timestamp(not_before.0 + i64::from(template.content.default_validity_days) * DAY_MS)
            })
        });
        if let Some(na) = not_after
            && na <= not_before
        {
            return Err(RegistryError::invalid(
                "not_after",
                "must be later than not_before",
            ));
        }
        let stamp = self.records.stamp();
        // A serial can repeat only if the clock was set back across a restart: then take
        // another one.
        for _ in 0..3 {
            let id = match &existing {
                Some((id, _)) => id.clone(),
                None => LicenceId::new(&type_code, &actor.department, &self.serials.next(), 1)
                    .map_err(|e| RegistryError::Corrupt(format!("licence ID: {e}")))?,
            };
            let prepared = self
                .prepare(
                    &stamp,
                    actor,
                    Draft {
                        template: template.clone(),
                        holder: holder.clone(),
                        fields: req.fields.clone(),
                        not_before,
                        not_after,
                        seal: seal_id,
                        prev: None,
                        collected: existing.as_ref().map(|(_, c)| c.clone()),
                    },
                    id,
                )
                .await?;
            // Read before signing; the writer reads them again only if they may have changed.
            let read_in = self.records.still_current(&stamp);
            let actor = actor.clone();
            let licence = prepared.licence.clone();
            let document = prepared.document.clone();
            let idem = idem.clone();
            // Both should be absent: nothing the writer holds can tell it so.
            let reads = vec![
                (Table::LicenceIdempotency, idem.clone()),
                (Table::Licences, licence.id.as_str().as_bytes().to_vec()),
            ];
            let outcome = self
                .sequencer
                .submit_reading(reads, move |txn| -> Result<Issued, RegistryError> {
                    if let Some(stored) = txn.get(Table::LicenceIdempotency, &idem)? {
                        return Ok(Issued::Replay(stored));
                    }
                    if !txn.state.records.unchanged_since(read_in) {
                        check_still_issuable(txn, &licence)?;
                    }
                    if txn
                        .get(Table::Licences, licence.id.as_str().as_bytes())?
                        .is_some()
                    {
                        return Ok(Issued::SerialTaken);
                    }
                    write_new(txn, &licence);
                    txn.put(
                        Table::LicenceIdempotency,
                        idem,
                        [&request_digest[..], licence.id.as_str().as_bytes()].concat(),
                    );
                    append(
                        txn,
                        &actor,
                        "licence.issued",
                        licence.id.as_str(),
                        &document,
                        licence_fields(
                            &licence,
                            &[
                                ("seal", licence.seal.to_string()),
                                ("tv", licence.template_version.to_string()),
                            ],
                        ),
                    );
                    Ok(Issued::New)
                })
                .await?;
            match outcome {
                Issued::New => {
                    self.issued
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(self.view(prepared));
                }
                // A concurrent request with the same key won: answer as a retry would.
                Issued::Replay(stored) => {
                    return self
                        .replay_stored(&stored, &request_digest)
                        .map(|v| v.expect("stored"));
                }
                // Collected twice (concurrently: the first check passed for both).
                Issued::SerialTaken if existing.is_some() => {
                    return Err(already_collected(&prepared.licence.id));
                }
                Issued::SerialTaken => {
                    tracing::warn!(
                        "a licence serial was taken already (clock set back?); retrying"
                    );
                }
            }
        }
        Err(RegistryError::Corrupt(
            "no free licence serial after three tries".into(),
        ))
    }

    /// The existing ID of a licence being collected, checked for its shape and check
    /// character, its type, and with where and when it was first issued; `None` for a new
    /// licence.
    fn existing_id(
        &self,
        req: &IssueRequest,
    ) -> Result<Option<(LicenceId, Collected)>, RegistryError> {
        let text = req.existing_id.trim();
        if text.is_empty() {
            return match req.collected {
                Some(_) => Err(RegistryError::invalid(
                    "collected",
                    "only a licence collected under its existing ID (existing_id) says where it was first issued",
                )),
                None => Ok(None),
            };
        }
        let mut v = Vec::new();
        let id = match text.parse::<LicenceId>() {
            Ok(id) => {
                if id.type_code().as_str() != req.type_code.trim() {
                    v.push(FieldViolation::new(
                        "existing_id",
                        format!(
                            "the ID is of type {}, the request of type {}",
                            id.type_code(),
                            req.type_code.trim()
                        ),
                    ));
                }
                Some(id)
            }
            Err(e) => {
                v.push(FieldViolation::new("existing_id", e.0));
                None
            }
        };
        let collected = match &req.collected {
            None => {
                v.push(FieldViolation::new(
                    "collected",
                    "required with existing_id: where (source) and when (first_issued_at) it was first issued",
                ));
                None
            }
            Some(CollectedRequest {
                first_issued_at: None,
                ..
            }) => {
                v.push(FieldViolation::new(
                    "collected.first_issued_at",
                    "required with existing_id",
                ));
                None
            }
            Some(CollectedRequest {
                source,
                first_issued_at: Some(at),
            }) => match Collected::new(source, *at, Timestamp::now()) {
                Ok(c) => Some(c),
                Err(certseal_core::Error::InvalidArgument(x)) => {
                    v.extend(x);
                    None
                }
                Err(e) => return Err(e.into()),
            },
        };
        match (id, collected) {
            (Some(id), Some(c)) if v.is_empty() => Ok(Some((id, c))),
            _ => Err(RegistryError::InvalidArgument(v)),
        }
    }

    /// Whether the caller may collect a licence under `id`: its own credit code in the
    /// issuer position, or a region it is the collecting authority of for the type.
    fn may_collect(
        &self,
        actor: &Actor,
        type_code: &TypeCode,
        id: &LicenceId,
    ) -> Result<(), RegistryError> {
        match id.issuer() {
            IdIssuer::Department(code) if code == actor.department => Ok(()),
            IdIssuer::Department(code) => Err(self.deny(
                actor,
                "collecting a licence",
                format!(
                    "existing_id names department {code} as issuer; department {} collects only IDs with its own credit code or a region it is the collecting authority of",
                    actor.department
                ),
            )),
            IdIssuer::Region(region) => self.collecting_authority(actor, type_code, &region),
        }
    }

    /// The licence an idempotency key already issued, if any; `AlreadyExists` if the key was
    /// used for another request.
    fn replay(
        &self,
        idem: &[u8],
        request_digest: &[u8; 32],
    ) -> Result<Option<LicenceView>, RegistryError> {
        match self.store.get(Table::LicenceIdempotency, idem)? {
            None => Ok(None),
            Some(stored) => self.replay_stored(&stored, request_digest),
        }
    }

    fn replay_stored(
        &self,
        stored: &[u8],
        request_digest: &[u8; 32],
    ) -> Result<Option<LicenceView>, RegistryError> {
        if stored.len() < 32 {
            return Err(RegistryError::Corrupt("idempotency record".into()));
        }
        let id = std::str::from_utf8(&stored[32..])
            .ok()
            .and_then(|s| s.parse::<LicenceId>().ok())
            .ok_or_else(|| RegistryError::Corrupt("idempotency record".into()))?;
        if &stored[..32] != request_digest {
            return Err(RegistryError::AlreadyExists(format!(
                "the idempotency key was used for another request, which issued licence {id}"
            )));
        }
        self.read_licence(&id).map(Some)
    }

    fn read_licence(&self, id: &LicenceId) -> Result<LicenceView, RegistryError> {
        let snap = self.store.snapshot();
        let licence = load_licence(snap.as_ref(), id)?
            .ok_or_else(|| RegistryError::NotFound(format!("licence {id}")))?;
        let document = snap
            .get(Table::Records, &licence.document_digest)?
            .ok_or_else(|| RegistryError::Corrupt(format!("document of licence {id}")))?;
        let sign1 = cose::parse_sign1(&document, usize::MAX)
            .map_err(|e| RegistryError::Corrupt(format!("document of licence {id}: {e}")))?;
        let claims = LicenceClaims::decode(&sign1.payload)
            .map_err(|e| RegistryError::Corrupt(format!("claims of licence {id}: {e}")))?;
        Ok(LicenceView {
            qr: qr::encode(&document),
            licence,
            document,
            claims,
        })
    }

    /// A licence with its document, decoded claims and QR string. With the policy enforced,
    /// only the issuing department and auditors read the whole record; other departments
    /// verify it, which shows what their grant allows and leaves a receipt.
    pub fn get_licence(
        &self,
        actor: &Actor,
        licence_id: &str,
    ) -> Result<LicenceView, RegistryError> {
        const ACTION: &str = "reading a licence";
        let access = self.authorize_held(actor, ACTION)?;
        let view = self.read_licence(&parse_licence_id(licence_id)?)?;
        if access.enforced()
            && view.licence.issuer != actor.department
            && actor.role != Role::Auditor
        {
            return Err(self.deny(
                actor,
                ACTION,
                format!(
                    "licence {} was issued by department {}: other departments verify it (VerifyLicence) to see what their grant allows",
                    view.licence.id, view.licence.issuer
                ),
            ));
        }
        Ok(view)
    }

    /// Lists licences by holder, issuer or type, newest first. With the policy enforced, a
    /// department lists only the licences it issued (others check a licence by verifying it,
    /// which states a purpose and leaves a receipt); auditors list all.
    pub fn list_licences(
        &self,
        actor: &Actor,
        filter: &LicenceFilter,
        page: &PageRequest,
    ) -> Result<Paged<Licence>, RegistryError> {
        let (table, prefix) = match filter {
            LicenceFilter::Holder(kind, id) => {
                let h = Holder::new(*kind, id, "-").map_err(RegistryError::from)?;
                (Table::LicencesByHolder, holder_prefix(h.kind, &h.id))
            }
            LicenceFilter::Issuer(code) => (
                Table::LicencesByIssuer,
                parse_credit_code("issuer", code)?
                    .as_str()
                    .as_bytes()
                    .to_vec(),
            ),
            LicenceFilter::Type(code) => (
                Table::LicencesByType,
                code.parse::<TypeCode>()
                    .map_err(|e| RegistryError::invalid("type_code", e.0))?
                    .as_str()
                    .as_bytes()
                    .to_vec(),
            ),
        };
        let access = self.authorize_held(actor, "listing licences")?;
        let sees_all = !access.enforced() || actor.role == Role::Auditor;
        let snap = self.store.snapshot();
        scan_page(
            &self.page_tokens,
            snap.as_ref(),
            table,
            &prefix,
            Direction::Reverse,
            page,
            MAX_SCANNED_PER_LIST,
            |k, _| {
                let id = k
                    .get(prefix.len() + 8..)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<LicenceId>().ok())
                    .ok_or_else(|| RegistryError::Corrupt("licence index key".into()))?;
                let l = load_licence(snap.as_ref(), &id)?.ok_or_else(|| {
                    RegistryError::Corrupt(format!("index names missing licence {id}"))
                })?;
                Ok((sees_all || l.issuer == actor.department).then_some(l))
            },
        )
    }

    /// Amends or renews a licence: a new licence (same serial, next version) whose `prev` is
    /// the old one, which becomes `Superseded`. Needs the issuer role of the issuing
    /// department; the old licence must be active.
    pub async fn reissue_licence(
        &self,
        actor: &Actor,
        how: Reissue,
        req: ReissueRequest,
    ) -> Result<LicenceView, RegistryError> {
        let access = self.authorize(actor, Role::Issuer, "amending or renewing a licence")?;
        let old_id = parse_licence_id(&req.licence_id)?;
        // The old licence's history gets "amended by <new ID>: <note>", within the note bound.
        if req.note.chars().count() > MAX_NOTE - 100 {
            return Err(RegistryError::invalid(
                "note",
                format!("at most {} characters", MAX_NOTE - 100),
            ));
        }
        let rid = request_id(actor, &req.request_id, reissue_digest(how, &req)?)?;
        if let Some(rid) = &rid
            && let Remembered::Done(outcome) =
                rid.lookup(self.store.as_ref(), self.request_id_retention)?
        {
            return self.reissued(&outcome);
        }
        // The same request racing this one (a retry on another node) may make the change
        // between the look-up above and the checks below, which then refuse it: look again.
        let again = rid.clone();
        let attempt = self
            .reissue_once(actor, how, req, access, old_id, rid)
            .await;
        if attempt.is_err()
            && let Some(rid) = &again
            && let Remembered::Done(outcome) =
                rid.lookup(self.store.as_ref(), self.request_id_retention)?
        {
            return self.reissued(&outcome);
        }
        attempt
    }

    /// One amendment or renewal, past its request ID's first look-up.
    async fn reissue_once(
        &self,
        actor: &Actor,
        how: Reissue,
        req: ReissueRequest,
        access: crate::access::Access,
        old_id: LicenceId,
        rid: Option<RequestId>,
    ) -> Result<LicenceView, RegistryError> {
        let old = self.read_licence(&old_id)?;
        if old.licence.issuer != actor.department {
            return Err(self.deny(
                actor,
                "amending or renewing a licence",
                format!(
                    "licence {old_id} was issued by department {}; only it can amend or renew it",
                    old.licence.issuer
                ),
            ));
        }
        if old.licence.status() != LicenceStatus::Active {
            return Err(RegistryError::FailedPrecondition(format!(
                "licence {old_id} is {}; only an active licence can be amended or renewed",
                old.licence.status().as_str()
            )));
        }
        if how == Reissue::Renew && req.fields.is_some() {
            return Err(RegistryError::invalid(
                "fields",
                "a renewal keeps the fields; amend to change them",
            ));
        }
        let version = old_id.version() + 1;
        if version > 999 {
            return Err(RegistryError::FailedPrecondition(format!(
                "licence {old_id} has reached version 999"
            )));
        }
        let template = self.published_template(&old.licence.type_code, req.template_version)?;
        let mut holder = old.claims.holder.clone();
        if let Some(name) = &req.holder_name {
            holder = Holder::new(holder.kind, &holder.id, name).map_err(RegistryError::from)?;
        }
        let now = Timestamp::now();
        let (not_before, not_after) = match how {
            Reissue::Amend => (
                req.not_before.unwrap_or(old.licence.not_before),
                req.not_after.or(old.licence.not_after),
            ),
            Reissue::Renew => {
                let nb = req.not_before.unwrap_or(now);
                let na = req.not_after.or_else(|| {
                    (template.content.default_validity_days > 0).then(|| {
                        Timestamp(nb.0 + i64::from(template.content.default_validity_days) * DAY_MS)
                    })
                });
                (nb, na)
            }
        };
        if let Some(na) = not_after
            && na <= not_before
        {
            return Err(RegistryError::invalid(
                "not_after",
                "must be later than not_before",
            ));
        }
        let seal = match &req.seal_id {
            Some(s) => parse_seal_id(s)?,
            None => old.licence.seal,
        };
        access
            .may_issue(&old.licence.type_code, &seal)
            .map_err(|r| self.deny(actor, "amending or renewing a licence", r))?;
        let fields = req
            .fields
            .clone()
            .unwrap_or_else(|| old.claims.fields.clone());
        if fields.len() > self.input.max_licence_fields {
            return Err(RegistryError::invalid(
                "fields",
                format!("at most {} fields", self.input.max_licence_fields),
            ));
        }
        // The successor keeps the holder's ID family: a region-code ID stays one.
        let id = LicenceId::with_issuer(
            &old.licence.type_code,
            &old_id.issuer(),
            old_id.serial(),
            version,
        )
        .map_err(|e| RegistryError::Corrupt(format!("licence ID: {e}")))?;
        let prepared = self
            .prepare(
                &self.records.stamp(),
                actor,
                Draft {
                    template,
                    holder,
                    fields,
                    not_before,
                    not_after,
                    seal,
                    prev: Some(old_id.clone()),
                    collected: None,
                },
                id,
            )
            .await?;
        let mut prepared = prepared;
        prepared.licence.history[0].note = req.note.trim().to_owned();
        let actor = actor.clone();
        let licence = prepared.licence.clone();
        let document = prepared.document.clone();
        let (kind, verb) = match how {
            Reissue::Amend => ("licence.amended", "amended"),
            Reissue::Renew => ("licence.renewed", "renewed"),
        };
        let note = req.note.clone();
        let retention = self.request_id_retention;
        let reads = [
            (Table::Licences, old_id.as_str().as_bytes().to_vec()),
            (Table::Licences, licence.id.as_str().as_bytes().to_vec()),
        ]
        .into_iter()
        .chain(rid.as_ref().map(RequestId::read))
        .collect();
        let outcome = self
            .sequencer
            .submit_reading(
                reads,
                move |txn| -> Result<Option<Vec<u8>>, RegistryError> {
                    if let Some(rid) = &rid
                        && let Remembered::Done(outcome) = rid.lookup_txn(txn, retention)?
                    {
                        return Ok(Some(outcome));
                    }
                    let mut old = load_licence_txn(txn, &old_id)?;
                    old.apply(
                        LicenceAction::Supersede,
                        actor.clone(),
                        licence.issued_at,
                        &match note.trim() {
                            "" => format!("{verb} by {}", licence.id),
                            n => format!("{verb} by {}: {n}", licence.id),
                        },
                    )?;
                    old.next = Some(licence.id.clone());
                    check_still_issuable(txn, &licence)?;
                    if txn
                        .get(Table::Licences, licence.id.as_str().as_bytes())?
                        .is_some()
                    {
                        return Err(RegistryError::FailedPrecondition(format!(
                            "licence {} exists already",
                            licence.id
                        )));
                    }
                    write_new(txn, &licence);
                    let old_record = encode(&old);
                    txn.put(
                        Table::Licences,
                        old.id.as_str().as_bytes().to_vec(),
                        old_record.clone(),
                    );
                    put_status_index(txn, &old);
                    append(
                        txn,
                        &actor,
                        kind,
                        licence.id.as_str(),
                        &document,
                        licence_fields(
                            &licence,
                            &[
                                ("prev", old.id.to_string()),
                                ("seal", licence.seal.to_string()),
                                ("tv", licence.template_version.to_string()),
                            ],
                        ),
                    );
                    append(
                        txn,
                        &actor,
                        "licence.superseded",
                        old.id.as_str(),
                        &old_record,
                        licence_fields(&old, &[("next", licence.id.to_string())]),
                    );
                    if let Some(rid) = &rid {
                        rid.remember(txn, licence.id.as_str().as_bytes());
                    }
                    Ok(None)
                },
            )
            .await?;
        match outcome {
            None => Ok(self.view(prepared)),
            // A concurrent request with the same ID won: answer as a retry would.
            Some(outcome) => self.reissued(&outcome),
        }
    }

    /// The licence an amendment or renewal made, as it was then: its first event only.
    fn reissued(&self, outcome: &[u8]) -> Result<LicenceView, RegistryError> {
        let mut view = self.read_licence(&parse_licence_id(outcome_text(outcome)?)?)?;
        view.licence.history.truncate(1);
        view.licence.next = None;
        Ok(view)
    }

    /// Suspends, reinstates or revokes a licence. Needs the issuer role of the issuing
    /// department. A revoked licence never changes again.
    pub async fn change_licence_status(
        &self,
        actor: &Actor,
        licence_id: &str,
        action: LicenceAction,
        note: &str,
        request_id_text: &str,
    ) -> Result<Licence, RegistryError> {
        let access = self.authorize(actor, Role::Issuer, "changing a licence's status")?;
        let id = parse_licence_id(licence_id)?;
        check_note(note)?;
        if action == LicenceAction::Supersede {
            return Err(RegistryError::invalid(
                "action",
                "a licence is superseded by amending or renewing it",
            ));
        }
        let (change, reason) = match action {
            LicenceAction::Suspend => (Change::SuspendLicence, None),
            LicenceAction::Reinstate => (Change::ReinstateLicence, None),
            LicenceAction::Revoke(r) => (Change::RevokeLicence, Some(r)),
            LicenceAction::Supersede => unreachable!("refused above"),
        };
        let rid = request_id(
            actor,
            request_id_text,
            RequestDigest::new(change)
                .text(licence_id)
                .bytes(&certseal_core::cbor::to_canonical(&reason).map_err(RegistryError::Corrupt)?)
                .text(note),
        )?;
        let replayed =
            |outcome: &[u8]| outcome_record::<Licence>(self.store.as_ref(), "licence", outcome);
        if let Some(rid) = &rid
            && let Remembered::Done(outcome) =
                rid.lookup(self.store.as_ref(), self.request_id_retention)?
        {
            return replayed(&outcome);
        }
        let actor = actor.clone();
        let note = note.to_owned();
        let retention = self.request_id_retention;
        let reads = std::iter::once((Table::Licences, id.as_str().as_bytes().to_vec()))
            .chain(rid.as_ref().map(RequestId::read))
            .collect();
        let outcome = self
            .sequencer
            .submit_reading(reads, move |txn| -> Result<Result<Licence, Vec<u8>>, RegistryError> {
                if let Some(rid) = &rid
                    && let Remembered::Done(outcome) = rid.lookup_txn(txn, retention)?
                {
                    return Ok(Err(outcome));
                }
                let mut l = load_licence_txn(txn, &id)?;
                if l.issuer != actor.department {
                    return Err(crate::access::denied(
                        &actor,
                        "changing a licence's status",
                        format!(
                            "licence {id} was issued by department {}; only it can change its status",
                            l.issuer
                        ),
                    ));
                }
                // Suspending and revoking stay possible after a grant is withdrawn; making a
                // licence valid again is issuing, and needs the grant.
                if action == LicenceAction::Reinstate {
                    access.may_issue(&l.type_code, &l.seal).map_err(|r| {
                        crate::access::denied(&actor, "reinstating a licence", r)
                    })?;
                }
                l.apply(action, actor.clone(), Timestamp::now(), &note)?;
                let record = write_status_change(txn, &actor, &l, action, BTreeMap::new());
                if let Some(rid) = &rid {
                    rid.remember(txn, &sha256(&[&record]));
                }
                Ok(Ok(l))
            })
            .await?;
        // Err: a concurrent request with the same ID won.
        outcome.or_else(|outcome| replayed(&outcome))
    }
}

/// Writes a licence whose status `action` just changed, its status index and its log entry
/// (with `more` fields beside the type, status and reason); returns the record.
pub(crate) fn write_status_change(
    txn: &mut RegTxn<'_>,
    actor: &Actor,
    l: &Licence,
    action: LicenceAction,
    more: BTreeMap<String, Extra>,
) -> Vec<u8> {
    let record = encode(l);
    txn.put(
        Table::Licences,
        l.id.as_str().as_bytes().to_vec(),
        record.clone(),
    );
    put_status_index(txn, l);
    let (kind, reason) = match action {
        LicenceAction::Suspend => ("licence.suspended", None),
        LicenceAction::Reinstate => ("licence.reinstated", None),
        LicenceAction::Revoke(r) => ("licence.revoked", Some(r)),
        LicenceAction::Supersede => unreachable!("a supersession is written with its successor"),
    };
    let reason = reason.map(|r| ("reason", r.code().to_owned()));
    let mut extra = licence_fields(l, reason.as_slice());
    extra.extend(more);
    append(txn, actor, kind, l.id.as_str(), &record, extra);
    record
}

/// What makes two amendments or renewals the same request.
fn reissue_digest(how: Reissue, req: &ReissueRequest) -> Result<RequestDigest, RegistryError> {
    let change = match how {
        Reissue::Amend => Change::AmendLicence,
        Reissue::Renew => Change::RenewLicence,
    };
    Ok(RequestDigest::new(change)
        .text(&req.licence_id)
        .bytes(&certseal_core::cbor::to_canonical(&req.fields).map_err(RegistryError::Corrupt)?)
        .bytes(
            &certseal_core::cbor::to_canonical(&req.holder_name).map_err(RegistryError::Corrupt)?,
        )
        .bytes(&req.template_version.to_be_bytes())
        .time(req.not_before)
        .time(req.not_after)
        .bytes(&certseal_core::cbor::to_canonical(&req.seal_id).map_err(RegistryError::Corrupt)?)
        .text(&req.note))
}

fn already_collected(id: &LicenceId) -> RegistryError {
    RegistryError::AlreadyExists(format!(
        "existing_id: licence {id} is in the registry already"
    ))
}

/// How a sequenced issue ended.
enum Issued {
    New,
    /// The idempotency key was taken meanwhile: its record.
    Replay(Vec<u8>),
    SerialTaken,
}

/// The seal and the issuing department may have changed since the document was signed.
fn check_still_issuable(txn: &RegTxn<'_>, licence: &Licence) -> Result<(), RegistryError> {
    match load_department(txn, &licence.issuer)? {
        Some(d) if d.status == DepartmentStatus::Active => {}
        _ => {
            return Err(RegistryError::FailedPrecondition(format!(
                "department {} is not an active department",
                licence.issuer
            )));
        }
    }
    check_seal_still_active(txn, &licence.seal)
}

/// The seal's status may have changed since the document was signed.
fn check_seal_still_active(txn: &RegTxn<'_>, seal: &SealId) -> Result<(), RegistryError> {
    let seal = load_seal_txn(txn, seal)?;
    if seal.status() != SealStatus::Active {
        return Err(RegistryError::FailedPrecondition(format!(
            "seal {} became {} while the licence was being signed",
            seal.id,
            seal.status().as_str()
        )));
    }
    Ok(())
}

/// The state and the indexes of a new licence.
fn write_new(txn: &mut RegTxn<'_>, l: &Licence) {
    txn.put(
        Table::Licences,
        l.id.as_str().as_bytes().to_vec(),
        encode(l),
    );
    txn.put(
        Table::LicencesByHolder,
        index_key(
            &holder_prefix(l.holder_kind, &l.holder_id),
            l.issued_at,
            &l.id,
        ),
        Vec::new(),
    );
    txn.put(
        Table::LicencesByIssuer,
        index_key(l.issuer.as_str().as_bytes(), l.issued_at, &l.id),
        Vec::new(),
    );
    txn.put(
        Table::LicencesByType,
        index_key(l.type_code.as_str().as_bytes(), l.issued_at, &l.id),
        Vec::new(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_fixed_width_time_ordered_and_unique() {
        let a = SerialAllocator::new(0);
        let mut seen = std::collections::BTreeSet::new();
        let mut last = String::new();
        for _ in 0..20_000 {
            let s = a.next();
            assert_eq!(s.len(), 12 + SERIAL_RANDOM);
            assert!(s > last, "{s} after {last}");
            assert!(seen.insert(s.clone()));
            last = s;
        }
        // After a restart with the clock behind the log, serials still move forward.
        let future = Timestamp::now().0 + 3_600_000;
        let b = SerialAllocator::new(future);
        assert!(b.next() > base36(future as u64, 9));
    }

    #[test]
    fn serials_cannot_be_named_from_the_time() {
        // Two allocators started alike give the same time and counter but other serials, and
        // the random tails spread over the whole alphabet.
        let future = Timestamp::now().0 + 3_600_000;
        let (a, b) = (SerialAllocator::new(future), SerialAllocator::new(future));
        let (x, y) = (a.next(), b.next());
        assert_eq!(x[..12], y[..12]);
        assert_ne!(x[12..], y[12..]);
        let tails: std::collections::BTreeSet<char> = (0..200)
            .flat_map(|_| a.next()[12..].chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(tails.len(), 36, "{tails:?}");
    }
}
