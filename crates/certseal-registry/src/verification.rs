//! Verification: a department checks a licence by ID or by the document (or its QR string),
//! for a stated purpose, and gets a signed receipt that is itself an audit-log entry. The
//! decision is `certseal_verify::document::check_document`, the same one the offline verifier
//! runs, fed from the store: seals by key ID, the licence's logged issue time and status.

use std::collections::BTreeMap;

use certseal_core::trust_list::serde_bytes_vec::Der;
use certseal_core::use_code::Presenter;
use certseal_core::{
    Actor, Basis, BasisKind, FieldValue, Indication, Licence, LicenceClaims, LicenceId,
    LicenceStatus, Purpose, Receipt, Role, SealId, SubIndication, Timestamp, UseCode,
    UseCodeRefusal, qr,
};
use certseal_crypto::{cose, sha256, x509};
use certseal_log::Extra;
use certseal_store::{Direction, Read, Table};
use certseal_verify::document::{LicenceFacts, Outcome, SealCandidate, check_document};
use certseal_verify::ofd::FileFacts;

use crate::access::{Access, Reading};
use crate::audit::append;
use crate::cache::Stamp;
use crate::licences::{load_licence, parse_licence_id};
use crate::paging::scan_page;
use crate::seal_ca::open_receipt_key;
use crate::seals::load_seal;
use crate::{PageRequest, Paged, Registry, RegistryError};

/// Purpose codes when the configuration names none.
pub const DEFAULT_PURPOSES: [&str; 6] = [
    "ADMIN_APPROVAL",
    "PUBLIC_SERVICE",
    "LAW_ENFORCEMENT",
    "SUPERVISION",
    "HOLDER_REQUEST",
    "PUBLIC_PAGE",
];

/// Who runs a check, which decides what it may see.
#[derive(Debug)]
pub(crate) enum Checker {
    /// A department, with what the sharing policy lets it read.
    Department(Access),
    /// The public verification page: public fields only.
    Public,
}

/// What is checked: a licence ID, or a document (COSE bytes or a `CS1:` string).
#[derive(Debug, Clone)]
pub enum Subject {
    /// By licence ID.
    Id(String),
    /// The signed document's bytes.
    Document(Vec<u8>),
    /// The QR string.
    Qr(String),
    /// A sealed OFD licence file.
    Ofd(Vec<u8>),
}

/// A check's result with its receipt.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The result.
    pub indication: Indication,
    /// Why, when not passed.
    pub sub: Option<SubIndication>,
    /// Words for people.
    pub reason: String,
    /// The licence checked, when it is known.
    pub licence: Option<Licence>,
    /// The claims, when the document could be read.
    pub claims: Option<LicenceClaims>,
    /// The fields the caller may see (public ones; all of them for the issuer).
    pub visible_fields: BTreeMap<String, FieldValue>,
    /// The signed receipt (COSE_Sign1).
    pub receipt: Vec<u8>,
    /// Its payload.
    pub receipt_payload: Receipt,
    /// The receipt's audit-log entry.
    pub log_index: u64,
    /// Whether the receipt was signed and logged: always for a department's check; for the
    /// public page, only when the registry holds the licence the check is about.
    pub recorded: bool,
}

/// A stored receipt.
#[derive(Debug, Clone)]
pub struct ReceiptView {
    /// Its payload.
    pub receipt: Receipt,
    /// The signed receipt.
    pub signed: Vec<u8>,
    /// Its audit-log entry.
    pub log_index: u64,
}

/// The status a licence had at `t`: the last change at or before `t`.
fn status_at(l: &Licence, t: Timestamp) -> LicenceStatus {
    l.history
        .iter()
        .rev()
        .find(|e| e.at <= t)
        .map_or(LicenceStatus::Active, |e| e.status)
}

/// What the registry's record says of a checked document's licence (`digest`: the document's).
fn licence_facts(
    read: Result<Option<Licence>, RegistryError>,
    digest: &[u8],
    at: Timestamp,
) -> LicenceFacts {
    match read {
        Ok(Some(l)) => LicenceFacts::Registered {
            status_at: status_at(&l, at),
            issued_at: l.issued_at,
            same_document: l.document_digest == digest,
        },
        Ok(None) => LicenceFacts::Unknown,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a licence during a check");
            LicenceFacts::Unavailable
        }
    }
}

fn receipt_key(licence: &str, at: Timestamp, id: &SealId) -> Vec<u8> {
    [
        licence.as_bytes(),
        &[0],
        &(at.0.max(0) as u64).to_be_bytes(),
        id.as_bytes(),
    ]
    .concat()
}

impl Registry {
    /// The registry's purpose codes.
    pub fn purposes(&self) -> &[String] {
        &self.purposes
    }

    /// Seals whose certificate has key ID `kid`, with their chain checked against the seal CA
    /// and the trust anchors.
    /// The seals whose certificate has `kid`, from memory while no seal changes: checking a
    /// chain costs a signature verification.
    fn seal_candidates(&self, snap: &dyn Read, stamp: &Stamp, kid: &[u8]) -> Vec<SealCandidate> {
        match self
            .records
            .seal_candidates(stamp, kid, || self.load_seal_candidates(snap, kid))
        {
            Ok(candidates) => (*candidates).clone(),
            Err(e) => {
                // This check finds no seal; nothing is kept, so the next one reads again.
                tracing::error!(error = %e, "cannot read the seals of a key ID during a check");
                Vec::new()
            }
        }
    }

    fn load_seal_candidates(
        &self,
        snap: &dyn Read,
        kid: &[u8],
    ) -> Result<Vec<SealCandidate>, RegistryError> {
        let page = snap.scan(Table::SealsByKid, kid, None, 16, Direction::Forward)?;
        let mut out = Vec::new();
        for (k, _) in page.items {
            let id = <[u8; 16]>::try_from(&k[kid.len()..])
                .map_err(|_| RegistryError::Corrupt("seal key ID index key".into()))?;
            let Some(seal) = load_seal(snap, &SealId::from_bytes(id))? else {
                continue;
            };
            let Some(cert) = seal.certificate else {
                continue;
            };
            let cas: Vec<Der> = self
                .own_cas()
                .into_iter()
                .chain(self.trust_anchors.iter())
                .map(|c| Der(c.der.clone()))
                .collect();
            let chain_ok = certseal_verify::document::chain_ok(&cert, &cas, &seal.intermediates);
            out.push(SealCandidate {
                seal_id: seal.id,
                department: seal.lifecycle.department.clone(),
                cert,
                chain_ok,
                not_before: seal.lifecycle.not_before,
                not_after: seal.lifecycle.not_after,
                history: seal
                    .lifecycle
                    .history
                    .iter()
                    .map(|e| (e.at, e.status, e.revocation))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Checks that the caller may check licences at all: the verifier role, or the issuer
    /// role (a department checks its own licences), and some grant to read.
    fn authorize_checker(&self, actor: &Actor) -> Result<Access, RegistryError> {
        const ACTION: &str = "checking licences";
        if !matches!(actor.role, Role::Verifier | Role::Issuer) {
            return Err(self.deny(
                actor,
                ACTION,
                format!(
                    "checking licences needs the verifier (or issuer) role; the caller acts as {}",
                    actor.role.as_str()
                ),
            ));
        }
        let access = self.authorize_held(actor, ACTION)?;
        if actor.role == Role::Verifier && !access.reads_anything() {
            return Err(self.deny(
                actor,
                ACTION,
                format!(
                    "department {} may verify no licence type: ask the registry for a grant",
                    actor.department
                ),
            ));
        }
        Ok(access)
    }

    /// The fields shown: all to the issuing department (`reading` is `None`), otherwise the
    /// public ones and those the grant names.
    pub(crate) fn visible_fields(
        &self,
        reading: Option<Reading<'_>>,
        claims: &LicenceClaims,
    ) -> BTreeMap<String, FieldValue> {
        let Some(reading) = reading else {
            return claims.fields.clone();
        };
        let Some(public) = self.public_fields(&claims.type_code, claims.template_version) else {
            return BTreeMap::new();
        };
        claims
            .fields
            .iter()
            .filter(|(name, _)| reading.shows(name) || public.contains(*name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Checks a licence at `at` (default now) for `purpose`, and records a signed receipt.
    /// Needs the verifier (or issuer) role, and a read grant for the type unless the holder's
    /// `use_code` opens the check.
    pub async fn verify(
        &self,
        actor: &Actor,
        subject: Subject,
        purpose_code: &str,
        purpose_text: &str,
        at: Option<Timestamp>,
        use_code: Option<&str>,
    ) -> Result<Verification, RegistryError> {
        let (access, code) = match use_code.filter(|c| !c.trim().is_empty()) {
            None => (self.authorize_checker(actor)?, None),
            Some(text) => {
                if !matches!(actor.role, Role::Verifier | Role::Issuer) {
                    return Err(self.deny(
                        actor,
                        "checking a licence with a use code",
                        format!(
                            "checking licences needs the verifier (or issuer) role; the caller acts as {}",
                            actor.role.as_str()
                        ),
                    ));
                }
                let access = self.authorize_held(actor, "checking a licence with a use code")?;
                let (code, named) = self.presented_code(actor, text)?;
                if let (Subject::Id(id), Some(named)) = (&subject, named)
                    && id.trim() != named.as_str()
                {
                    return Err(RegistryError::invalid(
                        "use_code",
                        format!("the code's QR string names licence {named}, not the one checked"),
                    ));
                }
                (access, Some(code))
            }
        };
        self.record_check(
            actor,
            Checker::Department(access),
            subject,
            purpose_code,
            purpose_text,
            at,
            code,
        )
        .await
    }

    /// Runs a check and records its receipt, as `actor`; `checker` says what it may see, or
    /// the holder's `code` does.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_check(
        &self,
        actor: &Actor,
        checker: Checker,
        subject: Subject,
        purpose_code: &str,
        purpose_text: &str,
        at: Option<Timestamp>,
        code: Option<UseCode>,
    ) -> Result<Verification, RegistryError> {
        let purpose = Purpose::new(purpose_code, purpose_text, &self.purposes)
            .map_err(RegistryError::InvalidArgument)?;
        if matches!(checker, Checker::Department(_))
            && purpose.code == crate::public::PUBLIC_PAGE_PURPOSE
        {
            // Page views are anonymous; a department's look-up must not pass for one.
            return Err(RegistryError::InvalidArgument(vec![
                certseal_core::FieldViolation::new(
                    "purpose.code",
                    "PUBLIC_PAGE is kept for the public verification page's own checks",
                ),
            ]));
        }
        let presenter = match checker {
            Checker::Public => Presenter::PublicPage,
            Checker::Department(_) => Presenter::Department(&actor.department),
        };
        // A code that opens nothing now is refused before any work; which licence it opens
        // is known once the subject is read.
        if let Some(c) = &code
            && let Some(reason) = c.refusal(&c.licence, presenter, &purpose.code, self.clock.now())
        {
            return Err(crate::holders::refused(actor, reason));
        }
        let now = Timestamp::now();
        let at = at.unwrap_or(now);
        let by_id = matches!(subject, Subject::Id(_));
        let (asked, mut outcome, mut licence) = self.evaluate(subject, at)?;
        // An anonymous check of something the registry does not hold (an unknown ID, junk
        // pasted in the page) concerns no licence: it is answered but not logged, so nobody
        // can grow the log with noise.
        let record = matches!(checker, Checker::Department(_)) || licence.is_some();
        // What a document claims is shown only if the registry issued that very document: a
        // forgery must not come back dressed in the real licence's record, whatever else is
        // wrong with it (a seal revoked for compromise can sign anything).
        let genuine = by_id
            || licence
                .as_ref()
                .is_some_and(|l| l.document_digest[..] == outcome.digest[..]);
        if !genuine {
            licence = None;
            outcome.claims = None;
        }
        if let Some(c) = &code
            && c.licence.as_str() != asked
        {
            return Err(crate::holders::refused(actor, UseCodeRefusal::OtherLicence));
        }
        // The check goes into the holder's record: of the licence the registry holds, or of
        // the code, whose use is counted even when the presented document is not genuine.
        let holder = match &code {
            Some(c) => Some((c.holder_kind, c.holder_id.clone())),
            None => licence
                .as_ref()
                .map(|l| (l.holder_kind, l.holder_id.clone())),
        };
        // One rule whatever the outcome: what the caller sees follows from the licence's type
        // and issuer, in the registry's record or else in the document. A check that fails
        // (an unreadable document, say) still names the licence, so it must be no side door.
        let about = licence
            .as_ref()
            .map(|l| (l.type_code.clone(), l.issuer.clone()))
            .or_else(|| {
                outcome
                    .claims
                    .as_ref()
                    .map(|c| (c.type_code.clone(), c.issuer.clone()))
            });
        let about_issuer = about.as_ref().map(|(_, issuer)| issuer.clone());
        let visible_fields = match about {
            Some((type_code, issuer)) => {
                let reading = match (&checker, &code) {
                    (Checker::Public, _) => Some(Reading::Public),
                    (Checker::Department(_), Some(c)) => Some(Reading::Opened(&c.fields)),
                    (Checker::Department(_), None) if issuer == actor.department => None,
                    (Checker::Department(access), None) => {
                        // Refused before any receipt is written: a denial leaves no trace but the log line.
                        let action = "checking a licence";
                        let r = access
                            .reading(&type_code)
                            .map_err(|reason| self.deny(actor, action, reason))?;
                        if !r.allows_purpose(&purpose.code) {
                            return Err(self.deny(
                                actor,
                                action,
                                format!(
                                    "department {} may check licences of type {type_code} only for the purposes it was granted, not {}",
                                    actor.department, purpose.code
                                ),
                            ));
                        }
                        Some(r)
                    }
                };
                if reading.is_some()
                    && let Some(l) = licence.as_mut()
                {
                    // The issuer's notes (why it suspended, revoked…) are its own business.
                    for e in &mut l.history {
                        e.note.clear();
                    }
                }
                let visible = match &outcome.claims {
                    Some(c) => self.visible_fields(reading, c),
                    None => BTreeMap::new(),
                };
                // A code opens fields, not the person: a person holder is masked as on the
                // public page (enough to match the person presenting it, no more).
                if code.is_some() {
                    if let Some(c) = outcome.claims.as_mut()
                        && c.holder.kind == certseal_core::HolderKind::Person
                    {
                        c.holder.name = crate::public::mask_name(&c.holder.name);
                        c.holder.id = crate::public::mask_id(&c.holder.id);
                    }
                    if let Some(l) = licence.as_mut()
                        && l.holder_kind == certseal_core::HolderKind::Person
                    {
                        l.holder_id = crate::public::mask_id(&l.holder_id);
                    }
                }
                visible
            }
            None => BTreeMap::new(),
        };
        let mut random = [0u8; 10];
        certseal_crypto::random(&mut random).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let receipt_id = SealId::new(now.0.max(0) as u64, &random);
        let basis = match (&checker, &code) {
            (_, Some(c)) => Basis {
                kind: BasisKind::UseCode,
                use_code: Some(c.id.to_string()),
            },
            (Checker::Public, None) => Basis {
                kind: BasisKind::Public,
                use_code: None,
            },
            (Checker::Department(_), None) => Basis {
                kind: if about_issuer.as_ref() == Some(&actor.department) {
                    BasisKind::Issuer
                } else {
                    BasisKind::Grant
                },
                use_code: None,
            },
        };
        let receipt = Receipt {
            v: 2,
            id: receipt_id.to_string(),
            licence: asked.clone(),
            document: if outcome.digest == [0; 32] {
                Vec::new()
            } else {
                outcome.digest.to_vec()
            },
            result: outcome.indication,
            sub: outcome.sub,
            checked_at: now,
            at,
            verifier: actor.department.clone(),
            purpose,
            basis: Some(basis),
        };
        let logged = if record {
            let signed = self.sign_receipt(&receipt).await?;
            let actor_c = actor.clone();
            let signed_c = signed.clone();
            let result = receipt.result.as_str().to_owned();
            let sub = receipt.sub.map(|s| s.as_str().to_owned());
            let (public, purpose_code, clock) = (
                matches!(checker, Checker::Public),
                receipt.purpose.code.clone(),
                self.clock.clone(),
            );
            let code_key = code.as_ref().map(|c| (Table::UseCodes, c.hash.clone()));
            let log_index = self
                .sequencer
                .submit_reading(
                    code_key.into_iter().collect(),
                    move |txn| -> Result<u64, RegistryError> {
                        if let Some(c) = &code {
                            let presenter = if public {
                                Presenter::PublicPage
                            } else {
                                Presenter::Department(&actor_c.department)
                            };
                            crate::holders::use_once(
                                txn,
                                &actor_c,
                                c,
                                presenter,
                                &purpose_code,
                                clock.now(),
                            )?;
                        }
                        let index = txn.state.next_index();
                        let digest = sha256(&[&signed_c]);
                        txn.put(
                            Table::Receipts,
                            receipt_id.as_bytes().to_vec(),
                            [&digest[..], &index.to_be_bytes()].concat(),
                        );
                        if genuine && !asked.is_empty() {
                            txn.put(
                                Table::ReceiptsByLicence,
                                receipt_key(&asked, now, &receipt_id),
                                Vec::new(),
                            );
                        }
                        // The holder's record of who checked their licences.
                        if let Some((kind, id)) = &holder {
                            txn.put(
                                Table::ReceiptsByHolder,
                                crate::holders::usage_key(*kind, id, now, &receipt_id),
                                asked.as_bytes().to_vec(),
                            );
                        }
                        let mut extra = BTreeMap::from([
                            ("licence".to_owned(), Extra::Text(asked.clone())),
                            ("result".to_owned(), Extra::Text(result)),
                        ]);
                        if let Some(sub) = sub {
                            extra.insert("sub".to_owned(), Extra::Text(sub));
                        }
                        append(
                            txn,
                            &actor_c,
                            "receipt.issued",
                            &receipt_id.to_string(),
                            &signed_c,
                            extra,
                        );
                        Ok(index)
                    },
                )
                .await?;
            Some((signed, log_index))
        } else {
            None
        };
        self.checks[outcome.indication as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let recorded = logged.is_some();
        let (signed, log_index) = logged.unwrap_or_default();
        Ok(Verification {
            indication: outcome.indication,
            sub: outcome.sub,
            reason: outcome.reason,
            licence,
            claims: outcome.claims,
            visible_fields,
            receipt: signed,
            receipt_payload: receipt,
            log_index,
            recorded,
        })
    }

    /// Runs the check on one snapshot: what was asked, the outcome, the licence if known.
    fn evaluate(
        &self,
        subject: Subject,
        at: Timestamp,
    ) -> Result<(String, Outcome, Option<Licence>), RegistryError> {
        // The stamp first: what is read from the snapshot is then at least as new as it, and
        // may be cached under it. Every read of the check is from the snapshot.
        let stamp = self.records.stamp();
        let snap = self.store.snapshot();
        // A presented document's outcome, with the licence it names, as the registry holds it.
        let about = |o: Outcome| -> Result<(String, Outcome, Option<Licence>), RegistryError> {
            let licence = match &o.claims {
                Some(c) => load_licence(snap.as_ref(), &c.id)?,
                None => None,
            };
            let asked = o
                .claims
                .as_ref()
                .map(|c| c.id.to_string())
                .unwrap_or_default();
            Ok((asked, o, licence))
        };
        let (asked, outcome, licence) = match subject {
            Subject::Id(id) => {
                let id = parse_licence_id(&id)?;
                match load_licence(snap.as_ref(), &id)? {
                    None => {
                        let mut o = unknown(&id);
                        o.digest = [0; 32];
                        (id.to_string(), o, None)
                    }
                    Some(l) => {
                        let doc =
                            snap.get(Table::Records, &l.document_digest)?
                                .ok_or_else(|| {
                                    RegistryError::Corrupt(format!("document of licence {id}"))
                                })?;
                        let o = self.check(snap.as_ref(), &stamp, &doc, Some(&l), at);
                        (id.to_string(), o, Some(l))
                    }
                }
            }
            Subject::Document(bytes) => about(self.check(snap.as_ref(), &stamp, &bytes, None, at))?,
            Subject::Ofd(bytes) => about(self.check_ofd(snap.as_ref(), &stamp, &bytes, at))?,
            Subject::Qr(text) => match qr::decode(&text) {
                Ok(bytes) => about(self.check(snap.as_ref(), &stamp, &bytes, None, at))?,
                Err(e) => {
                    let mut o = unknown_format(&format!("QR string: {e}"));
                    o.digest = sha256(&[text.as_bytes()]);
                    (String::new(), o, None)
                }
            },
        };
        Ok((asked, outcome, licence))
    }

    /// Checks a sealed OFD file: its seal signature, the licence document it carries, and that
    /// it is the file this registry sealed for that licence.
    fn check_ofd(&self, snap: &dyn Read, stamp: &Stamp, file: &[u8], at: Timestamp) -> Outcome {
        certseal_verify::ofd::check_ofd(
            file,
            |kid| self.seal_candidates(snap, stamp, kid),
            |claims, digest| licence_facts(load_licence(snap, &claims.id), &digest, at),
            |id| self.file_facts(snap, id),
            |maker| maker == self.seal_ca.sm2_cert.der,
            at,
        )
    }

    /// The licence's sealed file, with when the log says it was sealed.
    fn file_facts(&self, snap: &dyn Read, id: &LicenceId) -> FileFacts {
        let entry = self.sealed_file_entry(snap, id).and_then(|e| match e {
            None => Ok(None),
            Some((sha256, index)) => {
                let bytes = snap
                    .get(Table::LogEntries, &index.to_be_bytes())?
                    .ok_or_else(|| RegistryError::Corrupt(format!("log entry {index}")))?;
                let e = certseal_log::Entry::decode(&bytes)
                    .map_err(|e| RegistryError::Corrupt(format!("log entry {index}: {e}")))?;
                Ok(Some((sha256, Timestamp(e.time))))
            }
        });
        match entry {
            Ok(Some((sha256, at))) => FileFacts::Sealed { sha256, at },
            Ok(None) => FileFacts::NoneSealed,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a sealed file during a check");
                FileFacts::Unavailable
            }
        }
    }

    /// Checks a document; `known` is its licence if already read from `snap`, taken after
    /// `stamp`.
    fn check(
        &self,
        snap: &dyn Read,
        stamp: &Stamp,
        document: &[u8],
        known: Option<&Licence>,
        at: Timestamp,
    ) -> Outcome {
        let digest = sha256(&[document]);
        let read = |id: &LicenceId| match known {
            Some(l) if l.id == *id => Ok(Some(l.clone())),
            _ => load_licence(snap, id),
        };
        check_document(
            document,
            |kid| self.seal_candidates(snap, stamp, kid),
            |claims| licence_facts(read(&claims.id), &digest, at),
            at,
        )
    }

    /// Signs a receipt on the signing pool.
    async fn sign_receipt(&self, receipt: &Receipt) -> Result<Vec<u8>, RegistryError> {
        // Every check signs a receipt: the key is opened once.
        let signer = match self.receipt_signer.get() {
            Some(s) => s.clone(),
            None => {
                let pkcs8 = open_receipt_key(self.store.as_ref(), &self.kek)?;
                let s: std::sync::Arc<dyn certseal_crypto::Signer> =
                    certseal_crypto::load_signer(x509::KeyAlgorithm::Ed25519, &pkcs8)
                        .map_err(|e| RegistryError::Corrupt(e.to_string()))?
                        .into();
                self.receipt_signer.get_or_init(|| s).clone()
            }
        };
        let cert = self.seal_ca.receipt_cert.clone();
        let payload = receipt.encode();
        let content_type = receipt.content_type();
        self.signing
            .run(move || {
                cose::sign1(
                    signer.as_ref(),
                    &cert.kid(),
                    content_type,
                    Some(&cert.der),
                    payload,
                )
                .map_err(|e| RegistryError::Corrupt(e.to_string()))
            })
            .await
    }

    /// Who checked a licence, when and why: its receipts, newest first. With the policy
    /// enforced, the issuing department and auditors see every receipt, and any other
    /// department only its own.
    pub fn list_receipts(
        &self,
        actor: &Actor,
        licence_id: &str,
        page: &PageRequest,
    ) -> Result<Paged<ReceiptView>, RegistryError> {
        let access = self.authorize_held(actor, "listing receipts")?;
        let id: LicenceId = parse_licence_id(licence_id)?;
        let prefix = [id.as_str().as_bytes(), &[0]].concat();
        let snap = self.store.snapshot();
        let sees_all = !access.enforced()
            || actor.role == Role::Auditor
            || load_licence(snap.as_ref(), &id)?.is_some_and(|l| l.issuer == actor.department);
        scan_page(
            &self.page_tokens,
            snap.as_ref(),
            Table::ReceiptsByLicence,
            &prefix,
            Direction::Reverse,
            page,
            10_000,
            |k, _| {
                let rid = <[u8; 16]>::try_from(&k[prefix.len() + 8..])
                    .map_err(|_| RegistryError::Corrupt("receipt index key".into()))?;
                let view = self.load_receipt(snap.as_ref(), &rid)?;
                if !sees_all && view.receipt.verifier != actor.department {
                    return Ok(None);
                }
                Ok(Some(view))
            },
        )
    }

    /// A stored receipt by its ID.
    pub(crate) fn load_receipt(
        &self,
        snap: &dyn Read,
        rid: &[u8; 16],
    ) -> Result<ReceiptView, RegistryError> {
        let v = snap
            .get(Table::Receipts, rid)?
            .ok_or_else(|| RegistryError::Corrupt("receipt missing".into()))?;
        if v.len() != 40 {
            return Err(RegistryError::Corrupt("receipt record".into()));
        }
        let signed = snap
            .get(Table::Records, &v[..32])?
            .ok_or_else(|| RegistryError::Corrupt("signed receipt missing".into()))?;
        let payload = cose::parse_sign1(&signed, usize::MAX)
            .map_err(|e| RegistryError::Corrupt(e.to_string()))?
            .payload;
        let receipt = Receipt::decode(&payload).map_err(RegistryError::Corrupt)?;
        Ok(ReceiptView {
            receipt,
            signed,
            log_index: u64::from_be_bytes(v[32..].try_into().expect("8 bytes")),
        })
    }
}

fn unknown(id: &LicenceId) -> Outcome {
    Outcome {
        indication: Indication::TotalFailed,
        sub: Some(SubIndication::UnknownLicence),
        reason: format!("the registry holds no licence {id}"),
        claims: None,
        seal_id: None,
        digest: [0; 32],
        status_checked: true,
    }
}

fn unknown_format(reason: &str) -> Outcome {
    Outcome {
        indication: Indication::TotalFailed,
        sub: Some(SubIndication::FormatFailure),
        reason: reason.to_owned(),
        claims: None,
        seal_id: None,
        digest: [0; 32],
        status_checked: false,
    }
}
