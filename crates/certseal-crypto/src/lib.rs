//! Cryptography of certseal: the only crate that uses `ring`.
//!
//! Hashing, Ed25519 keys behind the narrow [`Signer`] trait, signature verification, and key
//! custody: private keys at rest are PKCS#8 sealed with AES-256-GCM under a key-encryption key.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cose;
mod custody;
pub mod ses;
pub mod sm;
pub mod sm_x509;
pub mod x509;

use std::fmt;

use ring::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};

pub use custody::Kek;
pub use x509::{Certificate, KeyAlgorithm, NewKey, SealCertificateCheck, SealSubject};

/// Secret bytes (a private key's PKCS#8, an opened sealed key): wiped from memory when dropped,
/// and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(zeroize::Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(zeroize::Zeroizing::new(bytes))
    }
}

impl std::ops::Deref for SecretBytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// SHA-256 over the concatenation of `parts`, without copying them together.
pub fn sha256(parts: &[&[u8]]) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 digests are 32 bytes")
}

/// SHA-256 of data that arrives in pieces (a file streamed in chunks).
pub struct Sha256(ring::digest::Context);

impl Sha256 {
    /// An empty hash.
    pub fn new() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }
    /// Adds the next piece.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest of every piece added.
    pub fn finish(self) -> Digest {
        self.0
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 digests are 32 bytes")
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sha256")
    }
}

/// Errors of the cryptography layer. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A key is malformed or of the wrong kind.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A sealed key could not be opened: wrong key-encryption key, wrong owner, or tampering.
    #[error("cannot unseal key: {0}")]
    Unseal(String),
    /// Reading or writing a key file failed.
    #[error("key file: {0}")]
    KeyFile(String),
    /// A certificate is malformed or breaks a rule of the seal profile or trust.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A signed document or list is malformed.
    #[error("malformed: {0}")]
    Format(String),
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Rng,
}

/// Something that signs: a software key today, an HSM key later; callers cannot tell.
pub trait Signer: fmt::Debug + Send + Sync {
    /// The signature algorithm.
    fn algorithm(&self) -> KeyAlgorithm;
    /// The raw public key.
    fn public_key(&self) -> &[u8];
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// An Ed25519 key held in memory.
pub struct Ed25519Key {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for Ed25519Key {
    // Never print key material; the public key identifies the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Key(public {})", hex(self.public_key()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Ed25519Key {
    /// Generates a key; returns it with its PKCS#8 document (to be sealed before storing).
    pub fn generate() -> Result<(Self, SecretBytes), CryptoError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CryptoError::Rng)?;
        let key = Self::from_pkcs8(doc.as_ref())?;
        Ok((key, SecretBytes::new(doc.as_ref().to_vec())))
    }

    /// Loads a key from its PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, CryptoError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(|pair| Self { pair })
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))
    }

    /// Loads a key from its 32-byte seed (the form signed-note keys are written in).
    pub fn from_seed(seed: &[u8]) -> Result<Self, CryptoError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|pair| Self { pair })
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))
    }
}

impl Signer for Ed25519Key {
    fn algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::Ed25519
    }

    fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.pair.sign(message).as_ref().to_vec())
    }
}

/// An ECDSA P-256 key held in memory; signatures are raw r ‖ s (as COSE ES256 wants).
pub struct EcdsaP256Key {
    pair: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl fmt::Debug for EcdsaP256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcdsaP256Key(public {})", hex(self.public_key()))
    }
}

impl EcdsaP256Key {
    /// Loads a key from its PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let rng = ring::rand::SystemRandom::new();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map(|pair| Self { pair, rng })
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))
    }
}

impl Signer for EcdsaP256Key {
    fn algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::EcdsaP256
    }

    fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| CryptoError::Rng)
    }
}

/// Loads a PKCS#8 key of `alg` as a [`Signer`].
pub fn load_signer(alg: KeyAlgorithm, pkcs8: &[u8]) -> Result<Box<dyn Signer>, CryptoError> {
    Ok(match alg {
        KeyAlgorithm::Ed25519 => Box::new(Ed25519Key::from_pkcs8(pkcs8)?),
        KeyAlgorithm::EcdsaP256 => Box::new(EcdsaP256Key::from_pkcs8(pkcs8)?),
        KeyAlgorithm::Sm2 => Box::new(sm::Sm2Key::from_pkcs8(pkcs8)?),
    })
}

/// Verifies an Ed25519 signature.
pub fn verify_ed25519(public_key: &[u8], message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(message, sig)
        .map_err(|_| CryptoError::BadSignature)
}

/// Fills `out` with random bytes from the system generator.
pub fn random(out: &mut [u8]) -> Result<(), CryptoError> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(out)
        .map_err(|_| CryptoError::Rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 example "abc", split to show parts are concatenated.
        let d = sha256(&[b"a", b"bc"]);
        assert_eq!(
            hex(&d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ed25519_signs_and_verifies() {
        let (key, pkcs8) = Ed25519Key::generate().unwrap();
        let sig = key.sign(b"licence").unwrap();
        verify_ed25519(key.public_key(), b"licence", &sig).unwrap();
        assert_eq!(
            verify_ed25519(key.public_key(), b"licencE", &sig),
            Err(CryptoError::BadSignature)
        );
        let again = Ed25519Key::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert!(!format!("{key:?}").contains(&hex(&pkcs8)));
        assert_eq!(
            format!("{pkcs8:?}"),
            format!("SecretBytes({} bytes)", pkcs8.len())
        );
    }
}
