//! Seals: registration (the key pair is generated here; the certificate comes from the seal CA,
//! or a CSR goes to an external CA and its certificate is imported), lifecycle transitions,
//! reads, "was seal S usable at T?", the signed trust list, and re-wrapping every sealed key
//! under a new key-encryption key.
//!
//! Keys: `Seals`, `SealKeys` by seal ID (16 bytes); `SealImages` by SHA-256; the indexes
//! `SealsByDepartment` (credit code ‖ seal ID) and `SealsByKid` (kid ‖ seal ID). Private keys
//! are sealed under the KEK with the seal ID as associated data and opened only to sign; a
//! revoked seal's key is destroyed.

use std::collections::BTreeMap;
use std::path::Path;

use certseal_core::seal::{check_seal_image, check_seal_naming};
use certseal_core::trust_list::{TRUST_LIST_CONTENT_TYPE, TRUST_LIST_VERSION, serde_bytes_vec};
use certseal_core::{
    Actor, CertificateSource, CreditCode, Department, DepartmentStatus, FieldViolation,
    RevocationReason, Role, Seal, SealAction, SealAlgorithm, SealId, SealLifecycle, SealStatus,
    SealType, Timestamp, TrustList, TrustListEvent, TrustedSeal, Usability,
};
use certseal_crypto::sm::Sm2Key;
use certseal_crypto::x509::{self, KeyAlgorithm, SealCertificateCheck, SealSubject};
use certseal_crypto::{Certificate, CryptoError, Kek, cose, sha256, sm_x509};
use certseal_log::Extra;
use certseal_store::{Batch, Direction, KvStore, Read, Table};

use crate::audit::{RegTxn, append};
use crate::cache::put_cached;
use crate::codec::{decode, encode};
use crate::departments::{load_department, parse_credit_code};
use crate::esl;
use crate::paging::scan_page;
use crate::request_ids::{Change, Remembered, RequestDigest, outcome_record, request_id};
use crate::seal_ca::{open_ca_key, open_sm2_ca_key, open_trust_list_key};
use crate::{PageRequest, Paged, Registry, RegistryError};

/// Most seal keys kept open at once.
const MAX_OPEN_SEAL_KEYS: usize = 4096;

/// Validity of a seal when the request gives no end.
const DEFAULT_SEAL_YEARS: i64 = 10;
/// Longest validity window of a seal.
const MAX_SEAL_YEARS: i64 = 20;
const YEAR_MS: i64 = 365 * 86_400_000;
/// How far a requested start of validity may lie in the past (clock differences).
const MAX_CLOCK_SKEW_MS: i64 = 300_000;
/// Most stored seals one list call reads before it returns a short page.
const MAX_SCANNED_PER_LIST: usize = 10_000;

/// Where a new seal's certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateRequest {
    /// Issued now by the registry's seal CA.
    SealCa,
    /// A PKCS#10 request is returned; an external CA signs it and the certificate is imported.
    Csr,
}

/// A seal to register.
#[derive(Debug, Clone)]
pub struct NewSeal {
    /// Owning department (credit code).
    pub department: String,
    /// Seal name.
    pub name: String,
    /// Kind of seal.
    pub seal_type: SealType,
    /// PNG or SVG image.
    pub image: Vec<u8>,
    /// Key algorithm.
    pub algorithm: SealAlgorithm,
    /// Start of validity; `None` means now.
    pub not_before: Option<Timestamp>,
    /// End of validity; `None` means ten years after the start.
    pub not_after: Option<Timestamp>,
    /// National seal code, empty if none.
    pub national_code: String,
    /// Where the certificate comes from.
    pub certificate: CertificateRequest,
    /// Makes retries safe (AIP-155): empty for none; the same ID with the same request returns
    /// the seal the first one registered.
    pub request_id: String,
}

/// A seal with its image, and its CSR when one was just made.
#[derive(Debug, Clone)]
pub struct SealView {
    /// The record.
    pub seal: Seal,
    /// The image bytes.
    pub image: Vec<u8>,
    /// PKCS#10 request (PEM) for an external CA.
    pub csr: Option<String>,
}

/// What to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct SealFilter {
    /// Only this department's seals.
    pub department: Option<String>,
    /// Only seals in this status.
    pub status: Option<SealStatus>,
}

/// The answer to "was seal S usable at T?".
#[derive(Debug, Clone)]
pub struct SealUsabilityAnswer {
    /// The seal.
    pub seal_id: SealId,
    /// The instant asked about.
    pub at: Timestamp,
    /// Usable, or why not.
    pub usability: Usability,
}

/// A trust list with its signed form.
#[derive(Debug, Clone)]
pub struct SignedTrustList {
    /// The COSE_Sign1 bytes.
    pub signed: Vec<u8>,
    /// What it says.
    pub list: TrustList,
}

pub(crate) fn parse_seal_id(value: &str) -> Result<SealId, RegistryError> {
    value
        .parse()
        .map_err(|e: certseal_core::IdError| RegistryError::invalid("seal_id", e.0))
}

/// Associated data binding a sealed seal key to its seal.
pub(crate) fn key_owner(id: &SealId) -> Vec<u8> {
    format!("certseal/seal-key/{id}").into_bytes()
}

pub(crate) fn key_algorithm(a: SealAlgorithm) -> KeyAlgorithm {
    match a {
        SealAlgorithm::Ed25519 => KeyAlgorithm::Ed25519,
        SealAlgorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        SealAlgorithm::Sm2 => KeyAlgorithm::Sm2,
    }
}

fn internal(e: CryptoError) -> RegistryError {
    RegistryError::Corrupt(format!("seal key: {e}"))
}

fn dept_key(code: &CreditCode, id: &SealId) -> Vec<u8> {
    [code.as_str().as_bytes(), id.as_bytes()].concat()
}

fn kid_key(kid: &[u8], id: &SealId) -> Vec<u8> {
    [kid, id.as_bytes()].concat()
}

/// Seconds inside a window given in milliseconds: the start rounds up, the end down.
fn window_seconds(l: &SealLifecycle) -> (i64, i64) {
    (
        l.not_before.0.div_euclid(1000) + i64::from(l.not_before.0.rem_euclid(1000) != 0),
        l.not_after.0.div_euclid(1000),
    )
}

pub(crate) fn load_seal(r: &dyn Read, id: &SealId) -> Result<Option<Seal>, RegistryError> {
    r.get(Table::Seals, id.as_bytes())?
        .map(|b| decode("seal", &b))
        .transpose()
}

pub(crate) fn load_seal_txn(txn: &RegTxn<'_>, id: &SealId) -> Result<Seal, RegistryError> {
    txn.get(Table::Seals, id.as_bytes())?
        .map(|b| decode("seal", &b))
        .transpose()?
        .ok_or_else(|| RegistryError::NotFound(format!("seal {id}")))
}

fn active_department(
    dept: Option<Department>,
    code: &CreditCode,
) -> Result<Department, RegistryError> {
    // The department is what the request refers to, not what it asks for: a precondition.
    let dept = dept.ok_or_else(|| {
        RegistryError::FailedPrecondition(format!("department {code} is not registered"))
    })?;
    if dept.status == DepartmentStatus::Deactivated {
        return Err(RegistryError::FailedPrecondition(format!(
            "department {code} is deactivated"
        )));
    }
    Ok(dept)
}

fn seal_fields(seal: &Seal) -> BTreeMap<String, Extra> {
    let mut m = BTreeMap::from([
        (
            "department".to_owned(),
            Extra::Text(seal.lifecycle.department.to_string()),
        ),
        (
            "status".to_owned(),
            Extra::Text(seal.status().as_str().to_owned()),
        ),
    ]);
    if let Some(r) = seal.lifecycle.history.last().and_then(|e| e.revocation) {
        let reason = match r {
            RevocationReason::KeyCompromise { compromised_at } => {
                m.insert(
                    "compromised_at".to_owned(),
                    Extra::Uint(compromised_at.0.max(0) as u64),
                );
                "key_compromise"
            }
            RevocationReason::Superseded => "superseded",
            RevocationReason::Retired => "retired",
        };
        m.insert("reason".to_owned(), Extra::Text(reason.to_owned()));
    }
    m
}

/// Input checks that need no stored state, all reported together.
struct CheckedSeal {
    department: CreditCode,
    name: String,
    national_code: Option<String>,
    image_format: certseal_core::ImageFormat,
    not_before: Timestamp,
    not_after: Timestamp,
}

fn check_new_seal(s: &NewSeal, now: Timestamp) -> Result<CheckedSeal, RegistryError> {
    let mut v: Vec<FieldViolation> = Vec::new();
    let department = parse_credit_code("department", &s.department)
        .map_err(|e| {
            if let RegistryError::InvalidArgument(x) = e {
                v.extend(x);
            }
        })
        .ok();
    let naming = check_seal_naming(&s.name, &s.national_code)
        .map_err(|e| {
            if let certseal_core::Error::InvalidArgument(x) = e {
                v.extend(x);
            }
        })
        .ok();
    let image_format = check_seal_image(&s.image).map_err(|e| v.push(e)).ok();
    // Whole seconds, so the certificate (which counts seconds) covers the window exactly.
    let whole = |t: Timestamp| Timestamp(t.0.div_euclid(1000) * 1000);
    let not_before = whole(s.not_before.unwrap_or(now));
    let not_after = whole(
        s.not_after
            .unwrap_or(Timestamp(not_before.0 + DEFAULT_SEAL_YEARS * YEAR_MS)),
    );
    // A certificate dated before its key existed would vouch for back-dated documents.
    if not_before.0 < now.0 - MAX_CLOCK_SKEW_MS {
        v.push(FieldViolation::new(
            "not_before",
            "cannot be in the past: a seal's key is valid from its registration on",
        ));
    }
    if not_after <= not_before {
        v.push(FieldViolation::new(
            "not_after",
            "must be later than not_before",
        ));
    } else if not_after.0 - not_before.0 > MAX_SEAL_YEARS * YEAR_MS {
        v.push(FieldViolation::new(
            "not_after",
            format!("a seal is valid for at most {MAX_SEAL_YEARS} years"),
        ));
    } else if not_after <= now {
        v.push(FieldViolation::new("not_after", "must be in the future"));
    }
    match (department, naming, image_format) {
        (Some(department), Some((name, national_code)), Some(image_format)) if v.is_empty() => {
            Ok(CheckedSeal {
                department,
                name,
                national_code,
                image_format,
                not_before,
                not_after,
            })
        }
        _ => Err(RegistryError::InvalidArgument(v)),
    }
}

impl Registry {
    /// Registers a seal: generates its key pair, seals the private key under the KEK, and
    /// either issues its certificate from the seal CA or returns a CSR. The seal starts
    /// `PENDING`. Needs the admin role.
    pub async fn register_seal(
        &self,
        actor: &Actor,
        new: NewSeal,
    ) -> Result<SealView, RegistryError> {
        self.authorize(actor, Role::Admin, "registering a seal")?;
        let rid = request_id(
            actor,
            &new.request_id,
            RequestDigest::new(Change::RegisterSeal)
                .text(&new.department)
                .text(&new.name)
                .text(&format!("{:?}", new.seal_type))
                .bytes(&sha256(&[&new.image]))
                .text(&format!("{:?}", new.algorithm))
                .time(new.not_before)
                .time(new.not_after)
                .text(&new.national_code)
                .text(&format!("{:?}", new.certificate)),
        )?;
        if let Some(rid) = &rid
            && let Remembered::Done(outcome) =
                rid.lookup(self.store.as_ref(), self.request_id_retention)?
        {
            return self.registered(actor, &outcome);
        }
        let now = Timestamp::now();
        if new.image.len() > self.input.max_seal_image_bytes {
            return Err(RegistryError::invalid(
                "image",
                format!(
                    "{} bytes, at most {} are allowed here ([limits] max_seal_image_kib)",
                    new.image.len(),
                    self.input.max_seal_image_bytes
                ),
            ));
        }
        let mut c = check_new_seal(&new, now)?;
        // The default end never outlives the seal CA; an explicit one is refused below if it does.
        let ca_cert = match new.algorithm {
            SealAlgorithm::Sm2 => &self.seal_ca.sm2_cert,
            _ => &self.seal_ca.cert,
        };
        if new.not_after.is_none() && new.certificate == CertificateRequest::SealCa {
            let (_, ca_end) = x509::validity(&ca_cert.der).map_err(internal)?;
            c.not_after = c.not_after.min(Timestamp(ca_end * 1000));
            if c.not_after <= c.not_before {
                return Err(RegistryError::FailedPrecondition(
                    "the seal CA's certificate has ended; configure a new seal CA".into(),
                ));
            }
        }
        let dept = active_department(
            self.store
                .get(Table::Departments, c.department.as_str().as_bytes())?
                .map(|b| decode("department", &b))
                .transpose()?,
            &c.department,
        )?;
        let mut random = [0u8; 10];
        certseal_crypto::random(&mut random).map_err(internal)?;
        let id = SealId::new(now.0.max(0) as u64, &random);
        let key = x509::generate_key(key_algorithm(new.algorithm)).map_err(internal)?;
        let subject = SealSubject {
            department_name: &dept.name,
            credit_code: c.department.as_str(),
            seal_name: &c.name,
        };
        let lifecycle = SealLifecycle::new(
            c.department.clone(),
            c.not_before,
            c.not_after,
            actor.clone(),
            now,
        )?;
        let (nb, na) = window_seconds(&lifecycle);
        let (certificate, csr) = match new.certificate {
            CertificateRequest::SealCa => {
                let (_, ca_end) = x509::validity(&ca_cert.der).map_err(internal)?;
                if na > ca_end {
                    return Err(RegistryError::invalid(
                        "not_after",
                        format!(
                            "the seal CA's certificate ends at {ca_end} s; a seal it certifies cannot outlive it"
                        ),
                    ));
                }
                let cert = if new.algorithm == SealAlgorithm::Sm2 {
                    let ca = open_sm2_ca_key(self.store.as_ref(), &self.kek)?;
                    let spki = Sm2Key::from_pkcs8(&key.pkcs8)
                        .and_then(|k| k.public_key_der())
                        .map_err(internal)?;
                    sm_x509::issue_seal_certificate(ca_cert, &ca, &spki, &subject, nb, na)
                } else {
                    let ca_pkcs8 = open_ca_key(self.store.as_ref(), &self.kek)?;
                    x509::issue_seal_certificate(ca_cert, &ca_pkcs8, &key.pkcs8, &subject, nb, na)
                }
                .map_err(internal)?;
                (Some(cert), None)
            }
            CertificateRequest::Csr => (
                None,
                Some(x509::seal_csr(&key.pkcs8, &subject, nb, na).map_err(internal)?),
            ),
        };
        let sealed_key = self
            .kek
            .seal(&key_owner(&id), &key.pkcs8)
            .map_err(internal)?;
        drop(key.pkcs8);
        let image_digest = sha256(&[&new.image]);
        let mut seal = Seal {
            id,
            name: c.name,
            seal_type: new.seal_type,
            national_code: c.national_code,
            image_digest: image_digest.to_vec(),
            image_format: c.image_format,
            algorithm: new.algorithm,
            public_key: key.public_key,
            certificate_source: certificate.as_ref().map(|_| CertificateSource::RegistryCa),
            intermediates: Vec::new(),
            certificate: certificate.map(|c| c.der),
            lifecycle,
            esl: None,
        };
        if seal.algorithm == SealAlgorithm::Sm2 && seal.certificate.is_some() {
            let maker = open_sm2_ca_key(self.store.as_ref(), &self.kek)?;
            seal.esl = Some(esl::make_esl(
                &seal,
                &new.image,
                &maker,
                &self.seal_ca.sm2_cert.der,
                now,
            )?);
        }
        let image = new.image;
        let dept_name = dept.name;
        let caller = actor;
        let actor = actor.clone();
        let retention = self.request_id_retention;
        let seal = self
            .sequencer
            .submit(move |txn| -> Result<Result<Seal, Vec<u8>>, RegistryError> {
                if let Some(rid) = &rid
                    && let Remembered::Done(outcome) = rid.lookup_txn(txn, retention)?
                {
                    return Ok(Err(outcome));
                }
                // The certificate names the department as read above; it must still be so.
                let dept = active_department(
                    load_department(txn, &seal.lifecycle.department)?,
                    &seal.lifecycle.department,
                )?;
                if dept.name != dept_name {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "department {} was renamed while the seal was registered; try again",
                        dept.credit_code
                    )));
                }
                if txn.get(Table::SealImages, &image_digest)?.is_none() {
                    txn.put(Table::SealImages, image_digest.to_vec(), image);
                }
                let record = encode(&seal);
                put_cached(
                    txn,
                    Table::Seals,
                    seal.id.as_bytes().to_vec(),
                    record.clone(),
                );
                txn.put(Table::SealKeys, seal.id.as_bytes().to_vec(), sealed_key);
                txn.put(
                    Table::SealsByDepartment,
                    dept_key(&seal.lifecycle.department, &seal.id),
                    Vec::new(),
                );
                if let Some(der) = &seal.certificate {
                    let kid = Certificate { der: der.clone() }.kid();
                    txn.put(Table::SealsByKid, kid_key(&kid, &seal.id), Vec::new());
                }
                append(
                    txn,
                    &actor,
                    "seal.registered",
                    &seal.id.to_string(),
                    &record,
                    seal_fields(&seal),
                );
                if let Some(rid) = &rid {
                    rid.remember(txn, &sha256(&[&record]));
                }
                Ok(Ok(seal))
            })
            .await?;
        // Err: a concurrent request with the same ID won.
        let seal = match seal {
            Ok(seal) => seal,
            Err(outcome) => return self.registered(caller, &outcome),
        };
        tracing::info!(seal = %seal.id, department = %seal.lifecycle.department, "registered a seal");
        let image = self.seal_image(&seal)?;
        Ok(SealView { seal, image, csr })
    }

    /// The seal a remembered registration made, as it was then. Its CSR is made again while
    /// the seal still waits for its certificate (a CSR is any signed request for the key).
    fn registered(&self, actor: &Actor, outcome: &[u8]) -> Result<SealView, RegistryError> {
        let seal: Seal = outcome_record(self.store.as_ref(), "seal", outcome)?;
        let image = self.seal_image(&seal)?;
        let csr = if seal.certificate.is_none() {
            match self.seal_csr(actor, &seal.id.to_string()) {
                Ok(csr) => Some(csr),
                // Its certificate was imported since, or it was revoked: no CSR to give.
                Err(RegistryError::FailedPrecondition(_)) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        Ok(SealView { seal, image, csr })
    }

    /// A new CSR for a seal that is waiting for its external certificate. Needs the admin role.
    pub fn seal_csr(&self, actor: &Actor, seal_id: &str) -> Result<String, RegistryError> {
        self.authorize(actor, Role::Admin, "making a seal CSR")?;
        let id = parse_seal_id(seal_id)?;
        let seal = load_seal(self.store.as_ref(), &id)?
            .ok_or_else(|| RegistryError::NotFound(format!("seal {id}")))?;
        if seal.certificate.is_some() {
            return Err(RegistryError::FailedPrecondition(format!(
                "seal {id} has its certificate already"
            )));
        }
        if seal.status() == SealStatus::Revoked {
            return Err(RegistryError::FailedPrecondition(format!(
                "seal {id} is revoked"
            )));
        }
        let code = &seal.lifecycle.department;
        let dept: Department = self
            .store
            .get(Table::Departments, code.as_str().as_bytes())?
            .map(|b| decode("department", &b))
            .transpose()?
            .ok_or_else(|| RegistryError::Corrupt(format!("department {code} missing")))?;
        let pkcs8 = self.open_seal_key(&id)?;
        let (nb, na) = window_seconds(&seal.lifecycle);
        x509::seal_csr(
            &pkcs8,
            &SealSubject {
                department_name: &dept.name,
                credit_code: code.as_str(),
                seal_name: &seal.name,
            },
            nb,
            na,
        )
        .map_err(internal)
    }

    /// Takes in a certificate an external CA signed from the seal's CSR, after checking it
    /// shows the seal's public key, the profile, the owning department, a validity inside the
    /// seal's and valid now, and a signature by a configured trust anchor. Needs the admin role.
    pub async fn import_seal_certificate(
        &self,
        actor: &Actor,
        seal_id: &str,
        certificate: &[u8],
        request_id_text: &str,
    ) -> Result<Seal, RegistryError> {
        self.authorize(actor, Role::Admin, "importing a seal certificate")?;
        let id = parse_seal_id(seal_id)?;
        let rid = request_id(
            actor,
            request_id_text,
            RequestDigest::new(Change::ImportSealCertificate)
                .text(seal_id)
                .bytes(&sha256(&[certificate])),
        )?;
        let replayed =
            |outcome: &[u8]| outcome_record::<Seal>(self.store.as_ref(), "seal", outcome);
        if let Some(rid) = &rid
            && let Remembered::Done(outcome) =
                rid.lookup(self.store.as_ref(), self.request_id_retention)?
        {
            return replayed(&outcome);
        }
        if certificate.is_empty() {
            return Err(RegistryError::invalid(
                "certificate",
                "no certificate given",
            ));
        }
        // PEM may carry the seal's certificate and then its intermediates.
        let mut chain = x509::certificates_from_pem_or_der(certificate)
            .map_err(|e| RegistryError::invalid("certificate", e.to_string()))?;
        let cert = chain.remove(0);
        let mut anchors = self.trust_anchors.clone();
        anchors.extend(self.own_cas().into_iter().cloned());
        // An SM2 seal gets its GB/T 38540 seal with its certificate: the maker's key is
        // opened here, outside the write.
        let maker = match load_seal(self.store.as_ref(), &id)? {
            Some(s) if s.algorithm == SealAlgorithm::Sm2 => Some((
                open_sm2_ca_key(self.store.as_ref(), &self.kek)?,
                self.seal_image(&s)?,
            )),
            _ => None,
        };
        let maker_cert = self.seal_ca.sm2_cert.der.clone();
        let actor = actor.clone();
        let retention = self.request_id_retention;
        let outcome = self
            .sequencer
            .submit(move |txn| -> Result<Result<Seal, Vec<u8>>, RegistryError> {
                if let Some(rid) = &rid
                    && let Remembered::Done(outcome) = rid.lookup_txn(txn, retention)?
                {
                    return Ok(Err(outcome));
                }
                let mut seal = load_seal_txn(txn, &id)?;
                if seal.certificate.is_some() {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "seal {id} has its certificate already; register a new seal to change keys"
                    )));
                }
                if seal.status() == SealStatus::Revoked {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "seal {id} is revoked"
                    )));
                }
                let (nb, na) = window_seconds(&seal.lifecycle);
                x509::check_seal_certificate(
                    &cert,
                    &SealCertificateCheck {
                        public_key: &seal.public_key,
                        credit_code: seal.lifecycle.department.as_str(),
                        not_before: nb,
                        not_after: na,
                        algorithm: key_algorithm(seal.algorithm),
                        anchors: &anchors,
                        intermediates: &chain,
                        at: Timestamp::now().0.div_euclid(1000),
                    },
                )
                .map_err(|e| RegistryError::invalid("certificate", e.to_string()))?;
                // The seal is usable only while its certificate is valid: the window narrows
                // to the certificate's, so usability and the trust list say so.
                let (cert_nb, cert_na) = x509::validity(&cert.der).map_err(internal)?;
                seal.lifecycle.not_before =
                    Timestamp(cert_nb * 1000).max(seal.lifecycle.not_before);
                seal.lifecycle.not_after = Timestamp(cert_na * 1000).min(seal.lifecycle.not_after);
                txn.put(
                    Table::SealsByKid,
                    kid_key(&cert.kid(), &seal.id),
                    Vec::new(),
                );
                seal.certificate = Some(cert.der);
                seal.certificate_source = Some(CertificateSource::External);
                if seal.algorithm == SealAlgorithm::Sm2 {
                    let (key, image) = maker.as_ref().ok_or_else(|| {
                        RegistryError::Corrupt(format!("seal {id} changed its algorithm"))
                    })?;
                    seal.esl = Some(esl::make_esl(
                        &seal,
                        image,
                        key,
                        &maker_cert,
                        Timestamp::now(),
                    )?);
                }
                // Kept so that every later check (and the trust list) can rebuild the chain.
                seal.intermediates = chain
                    .iter()
                    .map(|c| certseal_core::trust_list::serde_bytes_vec::Der(c.der.clone()))
                    .collect();
                let record = encode(&seal);
                put_cached(
                    txn,
                    Table::Seals,
                    seal.id.as_bytes().to_vec(),
                    record.clone(),
                );
                append(
                    txn,
                    &actor,
                    "seal.certificate_imported",
                    &seal.id.to_string(),
                    &record,
                    seal_fields(&seal),
                );
                if let Some(rid) = &rid {
                    rid.remember(txn, &sha256(&[&record]));
                }
                Ok(Ok(seal))
            })
            .await?;
        // Err: a concurrent request with the same ID won.
        outcome.or_else(|outcome| replayed(&outcome))
    }

    /// Moves a seal along its lifecycle: activate (filing; needs a certificate valid now and an
    /// active department), suspend, reinstate (the same needs as activation), or revoke for good
    /// (its private key is destroyed). Needs the admin role.
    pub async fn change_seal_status(
        &self,
        actor: &Actor,
        seal_id: &str,
        action: SealAction,
        note: &str,
        request_id_text: &str,
    ) -> Result<Seal, RegistryError> {
        self.authorize(actor, Role::Admin, "changing a seal's status")?;
        let id = parse_seal_id(seal_id)?;
        let (change, reason) = match action {
            SealAction::Activate => (Change::ActivateSeal, None),
            SealAction::Suspend => (Change::SuspendSeal, None),
            SealAction::Reinstate => (Change::ReinstateSeal, None),
            SealAction::Revoke(r) => (Change::RevokeSeal, Some(r)),
        };
        let rid = request_id(
            actor,
            request_id_text,
            RequestDigest::new(change)
                .text(seal_id)
                .bytes(&certseal_core::cbor::to_canonical(&reason).map_err(RegistryError::Corrupt)?)
                .text(note),
        )?;
        let replayed =
            |outcome: &[u8]| outcome_record::<Seal>(self.store.as_ref(), "seal", outcome);
        if let Some(rid) = &rid
            && let Remembered::Done(outcome) =
                rid.lookup(self.store.as_ref(), self.request_id_retention)?
        {
            return replayed(&outcome);
        }
        let actor = actor.clone();
        let note = note.to_owned();
        let retention = self.request_id_retention;
        let result = self.sequencer
            .submit(move |txn| -> Result<Result<Seal, Vec<u8>>, RegistryError> {
                if let Some(rid) = &rid
                    && let Remembered::Done(outcome) = rid.lookup_txn(txn, retention)?
                {
                    return Ok(Err(outcome));
                }
                let mut seal = load_seal_txn(txn, &id)?;
                let now = Timestamp::now();
                if matches!(action, SealAction::Activate | SealAction::Reinstate) {
                    let Some(der) = &seal.certificate else {
                        return Err(RegistryError::FailedPrecondition(format!(
                            "seal {id} has no certificate yet: import the one signed from its CSR first"
                        )));
                    };
                    let (nb, na) = x509::validity(der).map_err(internal)?;
                    let s = now.0.div_euclid(1000);
                    if s < nb || s >= na {
                        return Err(RegistryError::FailedPrecondition(format!(
                            "seal {id}'s certificate is not valid now (valid {nb}..{na} s)"
                        )));
                    }
                    active_department(
                        load_department(txn, &seal.lifecycle.department)?,
                        &seal.lifecycle.department,
                    )?;
                }
                // History never goes backwards, even if the clock does.
                let at = seal
                    .lifecycle
                    .history
                    .last()
                    .map_or(now, |e| e.at.max(now));
                let to = seal
                    .lifecycle
                    .apply(action, actor.clone(), at, &note)
                    .map_err(|e| match RegistryError::from(e) {
                        RegistryError::FailedPrecondition(m) => {
                            RegistryError::FailedPrecondition(format!("seal {id}: {m}"))
                        }
                        other => other,
                    })?;
                let record = encode(&seal);
                put_cached(txn, Table::Seals, seal.id.as_bytes().to_vec(), record.clone());
                if to == SealStatus::Revoked {
                    // Never usable again: the key has no further use.
                    txn.delete(Table::SealKeys, seal.id.as_bytes().to_vec());
                }
                let kind = match action {
                    SealAction::Activate => "seal.activated",
                    SealAction::Suspend => "seal.suspended",
                    SealAction::Reinstate => "seal.reinstated",
                    SealAction::Revoke(_) => "seal.revoked",
                };
                append(
                    txn,
                    &actor,
                    kind,
                    &seal.id.to_string(),
                    &record,
                    seal_fields(&seal),
                );
                if let Some(rid) = &rid {
                    rid.remember(txn, &sha256(&[&record]));
                }
                Ok(Ok(seal))
            })
            .await;
        // Whatever the change, the next signature opens the key again (a revoked seal's key
        // is gone, so it cannot).
        self.forget_signer(&id);
        // Err: a concurrent request with the same ID won.
        result?.or_else(|outcome| replayed(&outcome))
    }

    /// The signing key of a seal, opened once and kept while the seal signs: opening it
    /// (AES-GCM, PKCS#8, deriving the public key) costs as much as a signature. Callers check
    /// the seal's usability on its current record first.
    pub(crate) fn seal_signer(
        &self,
        seal: &Seal,
    ) -> Result<std::sync::Arc<dyn certseal_crypto::Signer>, RegistryError> {
        let mut cache = self.signers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(&seal.id) {
            return Ok(s.clone());
        }
        let pkcs8 = self.open_seal_key(&seal.id)?;
        let signer: std::sync::Arc<dyn certseal_crypto::Signer> =
            certseal_crypto::load_signer(key_algorithm(seal.algorithm), &pkcs8)
                .map_err(|e| RegistryError::Corrupt(format!("seal key: {e}")))?
                .into();
        // A bound, not an LRU: a registry signs with far fewer seals than this.
        if cache.len() >= MAX_OPEN_SEAL_KEYS {
            cache.clear();
        }
        cache.insert(seal.id, signer.clone());
        Ok(signer)
    }

    fn forget_signer(&self, id: &SealId) {
        self.signers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    pub(crate) fn seal_image(&self, seal: &Seal) -> Result<Vec<u8>, RegistryError> {
        self.store
            .get(Table::SealImages, &seal.image_digest)?
            .ok_or_else(|| RegistryError::Corrupt(format!("image of seal {}", seal.id)))
    }

    /// The sealed private key of a seal, opened for one use.
    pub(crate) fn open_seal_key(
        &self,
        id: &SealId,
    ) -> Result<certseal_crypto::SecretBytes, RegistryError> {
        let sealed = self
            .store
            .get(Table::SealKeys, id.as_bytes())?
            .ok_or_else(|| {
                RegistryError::FailedPrecondition(format!("seal {id} has no key (revoked)"))
            })?;
        self.kek.open(&key_owner(id), &sealed).map_err(internal)
    }

    /// A seal with its image.
    pub fn get_seal(&self, actor: &Actor, seal_id: &str) -> Result<SealView, RegistryError> {
        self.authorize_held(actor, "reading seals")?;
        let id = parse_seal_id(seal_id)?;
        let snap = self.store.snapshot();
        let seal = load_seal(snap.as_ref(), &id)?
            .ok_or_else(|| RegistryError::NotFound(format!("seal {id}")))?;
        let image = snap
            .get(Table::SealImages, &seal.image_digest)?
            .ok_or_else(|| RegistryError::Corrupt(format!("image of seal {id}")))?;
        Ok(SealView {
            seal,
            image,
            csr: None,
        })
    }

    /// Lists seals in seal-ID (registration) order, optionally one department's, optionally
    /// in one status.
    pub fn list_seals(
        &self,
        actor: &Actor,
        filter: &SealFilter,
        page: &PageRequest,
    ) -> Result<Paged<Seal>, RegistryError> {
        self.authorize_held(actor, "reading seals")?;
        let (table, prefix) = match &filter.department {
            Some(code) => (
                Table::SealsByDepartment,
                parse_credit_code("department", code)?
                    .as_str()
                    .as_bytes()
                    .to_vec(),
            ),
            None => (Table::Seals, Vec::new()),
        };
        let snap = self.store.snapshot();
        scan_page(
            &self.page_tokens,
            snap.as_ref(),
            table,
            &prefix,
            Direction::Forward,
            page,
            MAX_SCANNED_PER_LIST,
            |k, v| {
                let seal: Seal = if table == Table::Seals {
                    decode("seal", v)?
                } else {
                    let id: [u8; 16] = k[prefix.len()..]
                        .try_into()
                        .map_err(|_| RegistryError::Corrupt("seal department index key".into()))?;
                    load_seal(snap.as_ref(), &SealId::from_bytes(id))?.ok_or_else(|| {
                        RegistryError::Corrupt("seal index names a missing seal".into())
                    })?
                };
                Ok(filter
                    .status
                    .is_none_or(|s| s == seal.status())
                    .then_some(seal))
            },
        )
    }

    /// Whether a seal was usable at `at`: inside its window, active then, and not at or after
    /// a recorded key compromise.
    pub fn seal_usability(
        &self,
        actor: &Actor,
        seal_id: &str,
        at: Timestamp,
    ) -> Result<SealUsabilityAnswer, RegistryError> {
        self.authorize_held(actor, "reading seals")?;
        let id = parse_seal_id(seal_id)?;
        let seal = load_seal(self.store.as_ref(), &id)?
            .ok_or_else(|| RegistryError::NotFound(format!("seal {id}")))?;
        Ok(SealUsabilityAnswer {
            seal_id: id,
            at,
            usability: seal.lifecycle.usability_at(at),
        })
    }

    /// Every seal certificate with its status history, signed by the trust-list key.
    pub fn trust_list(&self, actor: &Actor) -> Result<SignedTrustList, RegistryError> {
        self.authorize_held(actor, "reading seals")?;
        let log_size = self.latest_checkpoint().checkpoint.size;
        let snap = self.store.snapshot();
        let mut seals = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = snap.scan(
                Table::Seals,
                b"",
                after.as_deref(),
                1000,
                Direction::Forward,
            )?;
            for (_, v) in &page.items {
                let seal: Seal = decode("seal", v)?;
                let Some(cert) = seal.certificate else {
                    continue;
                };
                seals.push(TrustedSeal {
                    id: seal.id,
                    department: seal.lifecycle.department,
                    name: seal.name,
                    seal_type: seal.seal_type,
                    alg: seal.algorithm,
                    kid: Certificate { der: cert.clone() }.kid().to_vec(),
                    cert,
                    chain: seal.intermediates,
                    not_before: seal.lifecycle.not_before,
                    not_after: seal.lifecycle.not_after,
                    history: seal
                        .lifecycle
                        .history
                        .iter()
                        .map(|e| TrustListEvent {
                            at: e.at,
                            status: e.status,
                            revocation: e.revocation,
                        })
                        .collect(),
                });
            }
            match (page.more, page.items.last()) {
                (true, Some((k, _))) => after = Some(k.clone()),
                _ => break,
            }
        }
        let mut cas: Vec<serde_bytes_vec::Der> = self
            .own_cas()
            .into_iter()
            .map(|c| serde_bytes_vec::Der(c.der.clone()))
            .collect();
        cas.extend(
            self.trust_anchors
                .iter()
                .map(|c| serde_bytes_vec::Der(c.der.clone())),
        );
        let list = TrustList {
            v: TRUST_LIST_VERSION,
            issuer: self.origin.clone(),
            issued_at: Timestamp::now(),
            log_size,
            cas,
            seals,
        };
        let pkcs8 = open_trust_list_key(self.store.as_ref(), &self.kek)?;
        let signer =
            certseal_crypto::load_signer(KeyAlgorithm::Ed25519, &pkcs8).map_err(internal)?;
        drop(pkcs8);
        let cert = &self.seal_ca.trust_list_cert;
        let signed = cose::sign1(
            signer.as_ref(),
            &cert.kid(),
            TRUST_LIST_CONTENT_TYPE,
            Some(&cert.der),
            list.encode(),
        )
        .map_err(internal)?;
        Ok(SignedTrustList { signed, list })
    }
}

/// Re-seals every private key in `store` (the log key, the seal CA key, the trust-list key and
/// every seal key), sealed under the key-encryption key in `old_file`, under the one in
/// `new_kek_file` (created, mode 0600, if absent), in one atomic durable write. The server must
/// be stopped. Returns how many keys were re-sealed.
pub fn rewrap_keys(
    store: &dyn KvStore,
    old_file: &Path,
    new_kek_file: &Path,
) -> Result<usize, RegistryError> {
    if old_file == new_kek_file {
        return Err(RegistryError::invalid(
            "new_kek",
            "the new key-encryption key file must differ from the current one",
        ));
    }
    if !old_file.exists() {
        return Err(RegistryError::FailedPrecondition(format!(
            "the current key-encryption key {} does not exist",
            old_file.display()
        )));
    }
    if store.get(Table::Meta, crate::META_FORMAT_KEY)?.is_none() {
        return Err(RegistryError::FailedPrecondition(
            "the store holds no certseal data folder".into(),
        ));
    }
    let key_err = |e: CryptoError| RegistryError::FailedPrecondition(e.to_string());
    let old = Kek::load_or_create(old_file).map_err(key_err)?;
    let new = Kek::load_or_create(new_kek_file).map_err(key_err)?;
    let mut batch = Batch::new();
    let mut count = 0;
    for (table, key, owner, sealed) in crate::backup::sealed_keys(store)? {
        let plain = old.open(&owner, &sealed).map_err(|e| {
            RegistryError::FailedPrecondition(format!(
                "cannot open a key with {}: {e}",
                old_file.display()
            ))
        })?;
        batch.put(table, key, new.seal(&owner, &plain).map_err(internal)?);
        count += 1;
    }
    store.write(&batch, true)?;
    tracing::info!(count, new = %new_kek_file.display(), "re-sealed every key under the new key-encryption key");
    Ok(count)
}
