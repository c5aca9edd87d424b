//! The registry's seal CA: created at first start (ECDSA P-256 key sealed under the KEK, a
//! self-signed CA certificate), then loaded. Seal certificates are issued from it.

use certseal_core::Timestamp;
use certseal_crypto::x509::{self, KeyAlgorithm};
use certseal_crypto::{Certificate, Kek};
use certseal_store::{Batch, KvStore, Table};

use crate::{Registry, RegistryError};

const META_CA_KEY: &[u8] = b"seal_ca_key";
const META_CA_CERT: &[u8] = b"seal_ca_cert";
/// Associated data binding the sealed CA key to its use.
pub(crate) const CA_KEY_OWNER: &[u8] = b"certseal/seal-ca-key";
/// Validity of a new seal CA certificate.
const CA_YEARS: i64 = 20;

fn crypto_err(e: certseal_crypto::CryptoError) -> RegistryError {
    RegistryError::Corrupt(format!("seal CA: {e}"))
}

/// Loads the seal CA certificate, creating the CA on first start. Its key stays sealed in the
/// store until a certificate is issued.
pub(crate) fn open_seal_ca(
    store: &dyn KvStore,
    kek: &Kek,
    origin: &str,
) -> Result<Certificate, RegistryError> {
    if let (Some(der), Some(sealed)) = (
        store.get(Table::Meta, META_CA_CERT)?,
        store.get(Table::Meta, META_CA_KEY)?,
    ) {
        // Opening the key checks the KEK matches before the server starts serving.
        kek.open(CA_KEY_OWNER, &sealed).map_err(crypto_err)?;
        return Ok(Certificate { der });
    }
    let key = x509::generate_key(KeyAlgorithm::EcdsaP256).map_err(crypto_err)?;
    let now = Timestamp::now().0 / 1000;
    let cert = x509::create_ca(
        &format!("certseal seal CA {origin}"),
        &key.pkcs8,
        now - 3600,
        now + CA_YEARS * 365 * 86400,
    )
    .map_err(crypto_err)?;
    let sealed = kek.seal(CA_KEY_OWNER, &key.pkcs8).map_err(crypto_err)?;
    let mut b = Batch::new();
    b.put(Table::Meta, META_CA_KEY, sealed);
    b.put(Table::Meta, META_CA_CERT, cert.der.clone());
    store.write(&b, true)?;
    tracing::info!("created the seal CA");
    Ok(cert)
}

impl Registry {
    /// The seal CA certificate that seal certificates chain to.
    pub fn seal_ca_certificate(&self) -> &Certificate {
        &self.seal_ca
    }
}
