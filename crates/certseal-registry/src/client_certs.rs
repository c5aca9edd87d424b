//! Department certificates after issue: a record of each one, revocation (kept in memory too,
//! so every connection and call is checked without a store read), certificate revocation
//! lists, and the rotation of the client CA that signs them.
//!
//! Store layout (meta table): `client_cert/` ‖ serial bytes → [`DepartmentCertificateRecord`];
//! `client_ca_cert_previous`, `client_ca_key_previous` → the client CA being retired after a
//! rotation (its key sealed like the current one's).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use certseal_core::{Actor, CreditCode, Role, Timestamp};
use certseal_crypto::x509::{self, KeyAlgorithm, RevokedSerial};
use certseal_crypto::{Certificate, Kek};
use certseal_log::Extra;
use certseal_store::{Direction, KvStore, Read, Table};
use serde::{Deserialize, Serialize};

use crate::access::{CLIENT_CA_KEY_OWNER, META_CLIENT_CA_CERT, META_CLIENT_CA_KEY};
use crate::audit::{RegTxn, append};
use crate::codec::{decode, encode};
use crate::request_ids::{Change, Remembered, RequestDigest, outcome_record, request_id};
use crate::{Registry, RegistryError};

const META_CERT_PREFIX: &[u8] = b"client_cert/";
pub(crate) const META_PREVIOUS_CA_CERT: &[u8] = b"client_ca_cert_previous";
pub(crate) const META_PREVIOUS_CA_KEY: &[u8] = b"client_ca_key_previous";
/// A CRL is valid this long; fetch a new one before.
pub const CRL_VALIDITY_DAYS: i64 = 7;
/// Longest revocation reason, in characters.
pub const MAX_REVOCATION_REASON: usize = 500;

/// A department certificate the registry's client CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentCertificateRecord {
    /// Serial number, upper-case hex (as `openssl x509 -serial` prints it).
    pub serial: String,
    /// The department it names.
    pub department: CreditCode,
    /// The roles it names.
    pub roles: Vec<String>,
    /// Validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    /// SHA-256 of the issuing client CA certificate's DER, hex.
    pub issuer_fingerprint: String,
    /// When it was issued, and by whom.
    pub issued_at: Timestamp,
    /// The administrator who issued it.
    pub issued_by: Actor,
    /// Set once it is revoked.
    pub revocation: Option<CertificateRevocation>,
}

/// When, why and by whom a department certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRevocation {
    /// When.
    pub at: Timestamp,
    /// The administrator.
    pub by: Actor,
    /// Why, as the administrator wrote it.
    pub reason: String,
}

/// The serials of revoked department certificates, with when each was revoked: loaded at
/// open, added to when a revocation commits, read by every TLS handshake and every call.
#[derive(Debug, Default)]
pub struct RevokedCertificates {
    serials: RwLock<HashMap<Vec<u8>, Timestamp>>,
}

impl RevokedCertificates {
    /// Refuses a client certificate (DER) that was revoked.
    pub fn check(&self, der: &[u8]) -> Result<(), RegistryError> {
        let serial = x509::certificate_serial(der)
            .map_err(|e| RegistryError::CertificateRevoked(format!("client certificate: {e}")))?;
        let revoked = self
            .serials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&serial)
            .copied();
        match revoked {
            None => Ok(()),
            Some(at) => Err(RegistryError::CertificateRevoked(format!(
                "the client certificate {} was revoked at {}: ask the registry's administrator for a new one",
                hex(&serial),
                utc(at)
            ))),
        }
    }

    fn insert(&self, serial: Vec<u8>, at: Timestamp) {
        self.serials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(serial, at);
    }

    /// Takes in every revocation of `other` (a follower's reload: revocations are final).
    pub(crate) fn take_all(&self, other: &RevokedCertificates) {
        let theirs = other.serials.read().unwrap_or_else(|e| e.into_inner());
        let mut ours = self.serials.write().unwrap_or_else(|e| e.into_inner());
        for (serial, at) in theirs.iter() {
            ours.insert(serial.clone(), *at);
        }
    }
}

/// The client CAs: the one that signs, and the one being retired after a rotation.
#[derive(Debug, Clone)]
pub(crate) struct ClientCas {
    pub current: Certificate,
    pub previous: Option<Certificate>,
}

pub(crate) fn open_client_cas(
    store: &dyn KvStore,
    kek: &Kek,
    origin: &str,
) -> Result<ClientCas, RegistryError> {
    let current = crate::access::open_client_ca(store, kek, origin)?;
    let previous = store
        .get(Table::Meta, META_PREVIOUS_CA_CERT)?
        .map(|der| Certificate { der });
    Ok(ClientCas { current, previous })
}

/// Every revoked serial in the store.
pub(crate) fn load_revoked(store: &dyn Read) -> Result<RevokedCertificates, RegistryError> {
    let revoked = RevokedCertificates::default();
    for r in all_records(store)? {
        if let Some(rev) = &r.revocation {
            revoked.insert(parse_serial(&r.serial)?, rev.at);
        }
    }
    Ok(revoked)
}

fn all_records(store: &dyn Read) -> Result<Vec<DepartmentCertificateRecord>, RegistryError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(
            Table::Meta,
            META_CERT_PREFIX,
            after.as_deref(),
            1000,
            Direction::Forward,
        )?;
        for (_, v) in &page.items {
            out.push(decode("department certificate", v)?);
        }
        match (page.more, page.items.last()) {
            (true, Some((k, _))) => after = Some(k.clone()),
            _ => return Ok(out),
        }
    }
}

fn record_key(serial: &[u8]) -> Vec<u8> {
    [META_CERT_PREFIX, serial].concat()
}

/// A time stamp as UTC `YYYY-MM-DDTHH:MM:SSZ`, for messages.
fn utc(t: Timestamp) -> String {
    let secs = t.0.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Upper-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A serial as an operator writes it: hex, any case, with or without colons.
fn parse_serial(text: &str) -> Result<Vec<u8>, RegistryError> {
    let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
    let bad = || {
        RegistryError::invalid(
            "serial",
            "the certificate's serial number in hex, e.g. 3A5F… (openssl x509 -serial -noout)",
        )
    };
    if digits.is_empty() || digits.len() > 40 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(x509::trim_serial(&bytes).to_vec())
}

/// Writes the record of a department certificate just issued, in the operation.
pub(crate) fn put_record(
    txn: &mut RegTxn<'_>,
    cert: &Certificate,
    ca: &Certificate,
    department: &CreditCode,
    roles: &[&str],
    actor: &Actor,
) -> Result<(), RegistryError> {
    let bad = |e: certseal_crypto::CryptoError| RegistryError::Corrupt(e.to_string());
    let serial = x509::certificate_serial(&cert.der).map_err(bad)?;
    let (not_before, not_after) = x509::validity(&cert.der).map_err(bad)?;
    let record = DepartmentCertificateRecord {
        serial: hex(&serial),
        department: department.clone(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        not_before,
        not_after,
        fingerprint: hex(&certseal_crypto::sha256(&[&cert.der])),
        issuer_fingerprint: hex(&certseal_crypto::sha256(&[&ca.der])),
        issued_at: Timestamp::now(),
        issued_by: actor.clone(),
        revocation: None,
    };
    txn.put(Table::Meta, record_key(&serial), encode(&record));
    Ok(())
}

/// Re-applies a revocation from an old log after a restore; false if the backup does not
/// hold the certificate's record.
pub(crate) fn replay_revocation(
    txn: &mut RegTxn<'_>,
    subject: &str,
    record: &[u8],
) -> Result<bool, RegistryError> {
    let r: DepartmentCertificateRecord = decode("replayed department certificate", record)?;
    if r.serial != subject || r.revocation.is_none() {
        return Err(RegistryError::Corrupt(format!(
            "a revocation of {subject} whose record is not of it"
        )));
    }
    let key = record_key(&parse_serial(&r.serial)?);
    if txn.get(Table::Meta, &key)?.is_none() {
        return Ok(false);
    }
    txn.put(Table::Meta, key, record.to_vec());
    Ok(true)
}

/// Which client CA a revocation list is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCaSlot {
    /// The CA that signs new department certificates.
    Current,
    /// The CA being retired after a rotation.
    Previous,
}

impl Registry {
    /// The client CAs trusted for department certificates: the current one, then the one
    /// being retired, if a rotation is under way.
    pub fn client_ca_certificates(&self) -> Vec<&Certificate> {
        std::iter::once(&self.client_cas.current)
            .chain(self.client_cas.previous.as_ref())
            .collect()
    }

    /// The set every TLS handshake and call checks client certificates against.
    pub fn revoked_certificates(&self) -> Arc<RevokedCertificates> {
        self.revoked_certs.clone()
    }

    /// Refuses a revoked client certificate (DER).
    pub fn check_client_certificate(&self, der: &[u8]) -> Result<(), RegistryError> {
        self.revoked_certs.check(der)
    }

    /// Revokes a department certificate by serial. Needs the admin role. From the moment this
    /// returns, every handshake and call with it is refused.
    pub async fn revoke_client_certificate(
        &self,
        actor: &Actor,
        serial: &str,
        reason: &str,
        request_id_text: &str,
    ) -> Result<DepartmentCertificateRecord, RegistryError> {
        self.authorize(actor, Role::Admin, "revoking a department certificate")?;
        let rid = request_id(
            actor,
            request_id_text,
            RequestDigest::new(Change::RevokeDepartmentCertificate)
                .text(serial)
                .text(reason),
        )?;
        let replayed = |outcome: &[u8]| {
            outcome_record::<DepartmentCertificateRecord>(
                self.store.as_ref(),
                "department certificate",
                outcome,
            )
        };
        if let Some(rid) = &rid
            && let Remembered::Done(outcome) =
                rid.lookup(self.store.as_ref(), self.request_id_retention)?
        {
            return replayed(&outcome);
        }
        let mut v = Vec::new();
        let serial = match parse_serial(serial) {
            Ok(s) => Some(s),
            Err(RegistryError::InvalidArgument(mut e)) => {
                v.append(&mut e);
                None
            }
            Err(e) => return Err(e),
        };
        let reason = reason.trim().to_owned();
        if reason.is_empty()
            || reason.chars().count() > MAX_REVOCATION_REASON
            || reason.chars().any(char::is_control)
        {
            v.push(certseal_core::FieldViolation::new(
                "reason",
                format!("why it is revoked: 1 to {MAX_REVOCATION_REASON} characters, one line"),
            ));
        }
        let Some(serial) = serial.filter(|_| v.is_empty()) else {
            return Err(RegistryError::InvalidArgument(v));
        };
        let actor = actor.clone();
        let key = record_key(&serial);
        let retention = self.request_id_retention;
        let record = self
            .sequencer
            .submit(
                move |txn| -> Result<Result<DepartmentCertificateRecord, Vec<u8>>, RegistryError> {
                    if let Some(rid) = &rid
                        && let Remembered::Done(outcome) = rid.lookup_txn(txn, retention)?
                    {
                        return Ok(Err(outcome));
                    }
                    let mut r: DepartmentCertificateRecord = txn
                        .get(Table::Meta, &key)?
                        .map(|b| decode("department certificate", &b))
                        .transpose()?
                        .ok_or_else(|| {
                            RegistryError::NotFound(format!(
                                "no department certificate with serial {}",
                                hex(&serial)
                            ))
                        })?;
                    if let Some(rev) = &r.revocation {
                        return Err(RegistryError::FailedPrecondition(format!(
                            "the certificate {} was revoked already, at {}",
                            r.serial,
                            utc(rev.at)
                        )));
                    }
                    r.revocation = Some(CertificateRevocation {
                        at: Timestamp::now(),
                        by: actor.clone(),
                        reason: reason.clone(),
                    });
                    let bytes = encode(&r);
                    txn.put(Table::Meta, key, bytes.clone());
                    append(
                        txn,
                        &actor,
                        "client_certificate.revoked",
                        &r.serial,
                        &bytes,
                        BTreeMap::from([
                            (
                                "department".to_owned(),
                                Extra::Text(r.department.to_string()),
                            ),
                            ("reason".to_owned(), Extra::Text(reason)),
                        ]),
                    );
                    if let Some(rid) = &rid {
                        rid.remember(txn, &certseal_crypto::sha256(&[&bytes]));
                    }
                    Ok(Ok(r))
                },
            )
            .await?;
        // Err: a concurrent request with the same ID won.
        let record = match record {
            Ok(record) => record,
            Err(outcome) => return replayed(&outcome),
        };
        let at = record.revocation.as_ref().map_or(Timestamp(0), |r| r.at);
        self.revoked_certs.insert(parse_serial(&record.serial)?, at);
        Ok(record)
    }

    /// The signed revocation list of a client CA (DER), with the CA certificate. Any role.
    pub fn client_crl(
        &self,
        actor: &Actor,
        slot: ClientCaSlot,
    ) -> Result<(Vec<u8>, Certificate), RegistryError> {
        self.authorize_held(actor, "reading a certificate revocation list")?;
        let (ca, key_entry) = match (slot, &self.client_cas.previous) {
            (ClientCaSlot::Current, _) => (&self.client_cas.current, META_CLIENT_CA_KEY),
            (ClientCaSlot::Previous, Some(p)) => (p, META_PREVIOUS_CA_KEY),
            (ClientCaSlot::Previous, None) => {
                return Err(RegistryError::NotFound(
                    "no previous client CA: none is being retired".into(),
                ));
            }
        };
        let ca_fingerprint = hex(&certseal_crypto::sha256(&[&ca.der]));
        let snap = self.store.snapshot();
        let mut revoked = Vec::new();
        for r in all_records(snap.as_ref())? {
            if let Some(rev) = &r.revocation
                && r.issuer_fingerprint == ca_fingerprint
            {
                revoked.push(RevokedSerial {
                    serial: parse_serial(&r.serial)?,
                    revoked_at: rev.at.0 / 1000,
                });
            }
        }
        let ca_key = crate::seal_ca::open_sealed_meta_key(
            self.store.as_ref(),
            &self.kek,
            (key_entry, CLIENT_CA_KEY_OWNER),
        )?;
        let now = Timestamp::now().0;
        // Milliseconds: each list is numbered above the one before.
        let number = u64::try_from(now).unwrap_or_default();
        let der = x509::sign_crl(
            ca,
            &ca_key,
            &revoked,
            number,
            now / 1000 - 60,
            now / 1000 + CRL_VALIDITY_DAYS * 86_400,
        )
        .map_err(|e| RegistryError::Corrupt(format!("client CA: {e}")))?;
        Ok((der, ca.clone()))
    }

    /// Makes a new client CA (ECDSA P-256, key sealed under the KEK) that signs department
    /// certificates from the next start; the current one stays trusted until it is retired.
    /// Offline, with the server stopped. Needs the admin role.
    pub async fn rotate_client_ca(&self, actor: &Actor) -> Result<Certificate, RegistryError> {
        self.authorize(actor, Role::Admin, "rotating the client CA")?;
        if self.client_cas.previous.is_some() {
            return Err(RegistryError::FailedPrecondition(
                "a rotation is under way: retire the previous client CA first (certseal ca retire-client)".into(),
            ));
        }
        let err =
            |e: certseal_crypto::CryptoError| RegistryError::Corrupt(format!("client CA: {e}"));
        let key = x509::generate_key(KeyAlgorithm::EcdsaP256).map_err(err)?;
        let now = Timestamp::now();
        // A name of its own, so that path building and CRL checks never mix the two up.
        let cert = x509::create_ca(
            &format!("certseal client CA {} {}", self.origin, utc(now)),
            &key.pkcs8,
            now.0 / 1000 - 3600,
            now.0 / 1000 + crate::access::CLIENT_CA_YEARS * 365 * 86_400,
        )
        .map_err(err)?;
        let sealed = self
            .kek
            .seal(CLIENT_CA_KEY_OWNER, &key.pkcs8)
            .map_err(err)?;
        let actor = actor.clone();
        let new = cert.clone();
        self.sequencer
            .submit(move |txn| {
                let (Some(old_cert), Some(old_key)) = (
                    txn.get(Table::Meta, META_CLIENT_CA_CERT)?,
                    txn.get(Table::Meta, META_CLIENT_CA_KEY)?,
                ) else {
                    return Err(RegistryError::Corrupt("the client CA is missing".into()));
                };
                if txn.get(Table::Meta, META_PREVIOUS_CA_CERT)?.is_some() {
                    return Err(RegistryError::FailedPrecondition(
                        "a rotation is under way: retire the previous client CA first".into(),
                    ));
                }
                txn.put(Table::Meta, META_PREVIOUS_CA_CERT, old_cert);
                txn.put(Table::Meta, META_PREVIOUS_CA_KEY, old_key);
                txn.put(Table::Meta, META_CLIENT_CA_CERT, new.der.clone());
                txn.put(Table::Meta, META_CLIENT_CA_KEY, sealed);
                append(
                    txn,
                    &actor,
                    "client_ca.rotated",
                    &hex(&certseal_crypto::sha256(&[&new.der])),
                    &new.der,
                    BTreeMap::new(),
                );
                Ok(())
            })
            .await?;
        Ok(cert)
    }

    /// Retires the previous client CA after a rotation: its key is destroyed and, from the
    /// next start, its certificates are refused. Offline. Needs the admin role.
    pub async fn retire_client_ca(&self, actor: &Actor) -> Result<Certificate, RegistryError> {
        self.authorize(actor, Role::Admin, "retiring the previous client CA")?;
        let actor = actor.clone();
        self.sequencer
            .submit(move |txn| {
                let old = txn
                    .get(Table::Meta, META_PREVIOUS_CA_CERT)?
                    .map(|der| Certificate { der })
                    .ok_or_else(|| {
                        RegistryError::FailedPrecondition(
                            "no previous client CA to retire: rotate first (certseal ca rotate-client)".into(),
                        )
                    })?;
                txn.delete(Table::Meta, META_PREVIOUS_CA_CERT.to_vec());
                txn.delete(Table::Meta, META_PREVIOUS_CA_KEY.to_vec());
                append(
                    txn,
                    &actor,
                    "client_ca.retired",
                    &hex(&certseal_crypto::sha256(&[&old.der])),
                    &old.der,
                    BTreeMap::new(),
                );
                Ok(old)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_read_as_openssl_prints_them() {
        assert_eq!(parse_serial("0A:ff").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(parse_serial("00AFF").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(hex(&parse_serial("3a5f").unwrap()), "3A5F");
        assert_eq!(utc(Timestamp(1_700_000_000_123)), "2023-11-14T22:13:20Z");
        assert_eq!(utc(Timestamp(951_782_400_000)), "2000-02-29T00:00:00Z");
        for bad in ["", "xyz", &"1".repeat(41)] {
            assert!(parse_serial(bad).is_err(), "{bad}");
        }
    }
}
