//! The registry's seal CA and trust-list key. At first start the CA is created (ECDSA P-256
//! key sealed under the KEK, a self-signed CA certificate), or a configured one is taken in;
//! a trust-list key (Ed25519) gets a certificate from it. Afterwards both are loaded. A second
//! CA with an SM2 key certifies SM2 seals and makes their GB/T 38540 seals: rcgen's CA cannot
//! sign SM2-with-SM3, and Chinese readers expect an SM2 chain under an SM2 seal.

use certseal_core::Timestamp;
use certseal_crypto::sm::Sm2Key;
use certseal_crypto::x509::{self, KeyAlgorithm};
use certseal_crypto::{Certificate, Kek, SecretBytes, sm_x509};
use certseal_store::{Batch, KvStore, Table};

use crate::{Registry, RegistryError};

const META_CA_KEY: &[u8] = b"seal_ca_key";
const META_CA_CERT: &[u8] = b"seal_ca_cert";
const META_TRUST_LIST_KEY: &[u8] = b"trust_list_key";
const META_TRUST_LIST_CERT: &[u8] = b"trust_list_cert";
const META_RECEIPT_KEY: &[u8] = b"receipt_key";
const META_RECEIPT_CERT: &[u8] = b"receipt_cert";
const META_SM2_CA_KEY: &[u8] = b"sm2_seal_ca_key";
const META_SM2_CA_CERT: &[u8] = b"sm2_seal_ca_cert";
/// Associated data binding the sealed SM2 CA key to its use.
pub(crate) const SM2_CA_KEY_OWNER: &[u8] = b"certseal/sm2-seal-ca-key";
/// Associated data binding the sealed receipt key to its use.
pub(crate) const RECEIPT_KEY_OWNER: &[u8] = b"certseal/receipt-key";
/// Associated data binding the sealed CA key to its use.
pub(crate) const CA_KEY_OWNER: &[u8] = b"certseal/seal-ca-key";
/// Associated data binding the sealed trust-list key to its use.
pub(crate) const TRUST_LIST_KEY_OWNER: &[u8] = b"certseal/trust-list-key";
/// Every key sealed in the meta table, with the owner it is bound to.
pub(crate) const META_SEALED_KEYS: [(&[u8], &[u8]); 7] = [
    (META_CA_KEY, CA_KEY_OWNER),
    (META_SM2_CA_KEY, SM2_CA_KEY_OWNER),
    (META_TRUST_LIST_KEY, TRUST_LIST_KEY_OWNER),
    (META_RECEIPT_KEY, RECEIPT_KEY_OWNER),
    (b"log_key", crate::audit::LOG_KEY_OWNER),
    crate::access::META_CLIENT_CA_SEALED,
    (
        crate::client_certs::META_PREVIOUS_CA_KEY,
        crate::access::CLIENT_CA_KEY_OWNER,
    ),
];
/// Validity of a new seal CA certificate.
const CA_YEARS: i64 = 20;

/// A seal CA given in the configuration instead of a generated one.
#[derive(Clone)]
pub struct ConfiguredCa {
    /// CA certificate.
    pub cert: Certificate,
    /// Its PKCS#8 private key (sealed under the KEK when taken in).
    pub pkcs8: SecretBytes,
}

impl std::fmt::Debug for ConfiguredCa {
    // The key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredCa")
            .field("cert", &self.cert.kid())
            .finish_non_exhaustive()
    }
}

/// The CA and trust-list certificates; their keys stay sealed in the store until used.
#[derive(Debug, Clone)]
pub(crate) struct SealCa {
    pub cert: Certificate,
    /// The SM2 seal CA: it certifies SM2 seals and signs their SESeal as the seal maker.
    pub sm2_cert: Certificate,
    pub trust_list_cert: Certificate,
    pub receipt_cert: Certificate,
}

fn crypto_err(e: certseal_crypto::CryptoError) -> RegistryError {
    RegistryError::Corrupt(format!("seal CA: {e}"))
}

/// Loads the seal CA, creating (or taking in) the CA and the trust-list key on first start.
pub(crate) fn open_seal_ca(
    store: &dyn KvStore,
    kek: &Kek,
    origin: &str,
    configured: Option<&ConfiguredCa>,
) -> Result<SealCa, RegistryError> {
    let cert = match (
        store.get(Table::Meta, META_CA_CERT)?,
        store.get(Table::Meta, META_CA_KEY)?,
    ) {
        (Some(der), Some(sealed)) => {
            // Opening the key checks the KEK matches before the server starts serving.
            kek.open(CA_KEY_OWNER, &sealed).map_err(crypto_err)?;
            if let Some(c) = configured
                && c.cert.der != der
            {
                return Err(RegistryError::FailedPrecondition(
                    "the configured seal CA differs from the one this data folder was created with"
                        .into(),
                ));
            }
            Certificate { der }
        }
        _ => create_ca(store, kek, origin, configured)?,
    };
    let trust_list_cert = match store.get(Table::Meta, META_TRUST_LIST_CERT)? {
        Some(der) => Certificate { der },
        None => create_service_key(
            store,
            kek,
            &cert,
            &format!(
                "{}{origin}",
                certseal_core::trust_list::TRUST_LIST_SIGNER_PREFIX
            ),
            (
                META_TRUST_LIST_KEY,
                META_TRUST_LIST_CERT,
                TRUST_LIST_KEY_OWNER,
            ),
        )?,
    };
    let receipt_cert = match store.get(Table::Meta, META_RECEIPT_CERT)? {
        Some(der) => Certificate { der },
        None => create_service_key(
            store,
            kek,
            &cert,
            &format!(
                "{}{origin}",
                certseal_core::verification::RECEIPT_SIGNER_PREFIX
            ),
            (META_RECEIPT_KEY, META_RECEIPT_CERT, RECEIPT_KEY_OWNER),
        )?,
    };
    let sm2_cert = match (
        store.get(Table::Meta, META_SM2_CA_CERT)?,
        store.get(Table::Meta, META_SM2_CA_KEY)?,
    ) {
        (Some(der), Some(sealed)) => {
            kek.open(SM2_CA_KEY_OWNER, &sealed).map_err(crypto_err)?;
            Certificate { der }
        }
        // Data folders made before SM2 seals existed get theirs on their next start; on a
        // database, from the node holding the write lease.
        _ if store.writable().is_ok() => create_sm2_ca(store, kek, origin)?,
        _ => wait_for_sm2_ca(store, kek, origin)?,
    };
    Ok(SealCa {
        cert,
        sm2_cert,
        trust_list_cert,
        receipt_cert,
    })
}

fn create_ca(
    store: &dyn KvStore,
    kek: &Kek,
    origin: &str,
    configured: Option<&ConfiguredCa>,
) -> Result<Certificate, RegistryError> {
    let (cert, pkcs8) = match configured {
        Some(c) => {
            x509::check_ca_pair(&c.cert, &c.pkcs8).map_err(|e| {
                RegistryError::FailedPrecondition(format!("configured seal CA: {e}"))
            })?;
            tracing::info!("took in the configured seal CA");
            (c.cert.clone(), c.pkcs8.clone())
        }
        None => {
            let key = x509::generate_key(KeyAlgorithm::EcdsaP256).map_err(crypto_err)?;
            let now = Timestamp::now().0 / 1000;
            let cert = x509::create_ca(
                &format!("certseal seal CA {origin}"),
                &key.pkcs8,
                now - 3600,
                now + CA_YEARS * 365 * 86400,
            )
            .map_err(crypto_err)?;
            tracing::info!("created the seal CA");
            (cert, key.pkcs8.clone())
        }
    };
    let sealed = kek.seal(CA_KEY_OWNER, &pkcs8).map_err(crypto_err)?;
    let mut b = Batch::new();
    b.put(Table::Meta, META_CA_KEY, sealed);
    b.put(Table::Meta, META_CA_CERT, cert.der.clone());
    store.write(&b, true)?;
    Ok(cert)
}

/// A cluster follower waits for the leader to make the SM2 seal CA (after an upgrade, the
/// first upgraded node to hold the lease does), or makes it if it gets the lease itself.
fn wait_for_sm2_ca(
    store: &dyn KvStore,
    kek: &Kek,
    origin: &str,
) -> Result<Certificate, RegistryError> {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);
    let started = std::time::Instant::now();
    tracing::info!("waiting for the node holding the write lease to create the SM2 seal CA");
    loop {
        if let (Some(der), Some(sealed)) = (
            store.get(Table::Meta, META_SM2_CA_CERT)?,
            store.get(Table::Meta, META_SM2_CA_KEY)?,
        ) {
            kek.open(SM2_CA_KEY_OWNER, &sealed).map_err(crypto_err)?;
            return Ok(Certificate { der });
        }
        if store.recover().is_ok() && store.writable().is_ok() {
            return create_sm2_ca(store, kek, origin);
        }
        if started.elapsed() > PATIENCE {
            return Err(RegistryError::FailedPrecondition(
                "the SM2 seal CA is not in the database yet, and another node holds the write lease: upgrade and start that node first".into(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn create_sm2_ca(
    store: &dyn KvStore,
    kek: &Kek,
    origin: &str,
) -> Result<Certificate, RegistryError> {
    let (key, pkcs8) = Sm2Key::generate().map_err(crypto_err)?;
    let now = Timestamp::now().0 / 1000;
    let cert = sm_x509::create_ca(
        &format!("certseal SM2 seal CA {origin}"),
        &key,
        now - 3600,
        now + CA_YEARS * 365 * 86400,
    )
    .map_err(crypto_err)?;
    let sealed = kek.seal(SM2_CA_KEY_OWNER, &pkcs8).map_err(crypto_err)?;
    let mut b = Batch::new();
    b.put(Table::Meta, META_SM2_CA_KEY, sealed);
    b.put(Table::Meta, META_SM2_CA_CERT, cert.der.clone());
    store.write(&b, true)?;
    tracing::info!("created the SM2 seal CA");
    Ok(cert)
}

/// A registry signing key (Ed25519) with a service certificate from the seal CA, stored under
/// `keys` = (key entry, certificate entry, owner).
fn create_service_key(
    store: &dyn KvStore,
    kek: &Kek,
    ca: &Certificate,
    common_name: &str,
    keys: (&[u8], &[u8], &[u8]),
) -> Result<Certificate, RegistryError> {
    let (key_entry, cert_entry, owner) = keys;
    let ca_pkcs8 = open_ca_key(store, kek)?;
    let key = x509::generate_key(KeyAlgorithm::Ed25519).map_err(crypto_err)?;
    let (nb, na) = x509::validity(&ca.der).map_err(crypto_err)?;
    let cert = x509::issue_service_certificate(
        ca,
        &ca_pkcs8,
        &key.pkcs8,
        common_name,
        (Timestamp::now().0 / 1000 - 3600).max(nb),
        na,
    )
    .map_err(crypto_err)?;
    let sealed = kek.seal(owner, &key.pkcs8).map_err(crypto_err)?;
    let mut b = Batch::new();
    b.put(Table::Meta, key_entry, sealed);
    b.put(Table::Meta, cert_entry, cert.der.clone());
    store.write(&b, true)?;
    tracing::info!(common_name, "created a registry signing key");
    Ok(cert)
}

/// A private key kept sealed in the meta table, opened for one use.
fn open_meta_key(
    store: &dyn KvStore,
    kek: &Kek,
    entry: &[u8],
    owner: &[u8],
) -> Result<SecretBytes, RegistryError> {
    let sealed = store.get(Table::Meta, entry)?.ok_or_else(|| {
        RegistryError::Corrupt(format!("key {} is missing", String::from_utf8_lossy(entry)))
    })?;
    kek.open(owner, &sealed).map_err(crypto_err)
}

/// A key of [`META_SEALED_KEYS`], `(entry, owner)`, opened for one use.
pub(crate) fn open_sealed_meta_key(
    store: &dyn KvStore,
    kek: &Kek,
    (entry, owner): (&[u8], &[u8]),
) -> Result<SecretBytes, RegistryError> {
    open_meta_key(store, kek, entry, owner)
}

/// The CA's private key, opened for one use.
pub(crate) fn open_ca_key(store: &dyn KvStore, kek: &Kek) -> Result<SecretBytes, RegistryError> {
    open_meta_key(store, kek, META_CA_KEY, CA_KEY_OWNER)
}

/// The SM2 CA's private key, opened for one use.
pub(crate) fn open_sm2_ca_key(store: &dyn KvStore, kek: &Kek) -> Result<Sm2Key, RegistryError> {
    let pkcs8 = open_meta_key(store, kek, META_SM2_CA_KEY, SM2_CA_KEY_OWNER)?;
    Sm2Key::from_pkcs8(&pkcs8).map_err(crypto_err)
}

/// The receipt private key, opened for one use.
pub(crate) fn open_receipt_key(
    store: &dyn KvStore,
    kek: &Kek,
) -> Result<SecretBytes, RegistryError> {
    open_meta_key(store, kek, META_RECEIPT_KEY, RECEIPT_KEY_OWNER)
}

/// The trust-list private key, opened for one use.
pub(crate) fn open_trust_list_key(
    store: &dyn KvStore,
    kek: &Kek,
) -> Result<SecretBytes, RegistryError> {
    open_meta_key(store, kek, META_TRUST_LIST_KEY, TRUST_LIST_KEY_OWNER)
}

impl Registry {
    /// The seal CA certificate that seal certificates chain to.
    pub fn seal_ca_certificate(&self) -> &Certificate {
        &self.seal_ca.cert
    }

    /// The SM2 seal CA certificate that SM2 seal certificates chain to.
    pub fn sm2_seal_ca_certificate(&self) -> &Certificate {
        &self.seal_ca.sm2_cert
    }

    /// Every CA the registry's own seal certificates chain to: the seal CA, then the SM2 one.
    pub(crate) fn own_cas(&self) -> [&Certificate; 2] {
        [&self.seal_ca.cert, &self.seal_ca.sm2_cert]
    }

    /// The certificate of the key that signs trust lists (issued by the seal CA).
    pub fn trust_list_certificate(&self) -> &Certificate {
        &self.seal_ca.trust_list_cert
    }

    /// The certificate of the key that signs receipts (issued by the seal CA).
    pub fn receipt_certificate(&self) -> &Certificate {
        &self.seal_ca.receipt_cert
    }

    /// External CA certificates trusted for imported seal certificates.
    pub fn trust_anchors(&self) -> &[Certificate] {
        &self.trust_anchors
    }
}
