//! The national algorithms: SM3 digests (GB/T 32905) and SM2 signatures (GB/T 32918.2) with
//! the default distinguishing ID, as GB/T 38540 e-seals and OFD signatures use them.
//!
//! RustCrypto's `sm2` and `sm3` do the arithmetic; keys are generated from ring's system
//! generator, so only one random source is in use.

use std::fmt;

use sm2::dsa::signature::hazmat::PrehashVerifier;
use sm2::dsa::signature::{Signer as _, Verifier as _};
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use sm3::Digest as _;

use crate::{CryptoError, SecretBytes};

/// The distinguishing ID every SM2 signature here uses (GB/T 35276, and what OFD readers and
/// OpenSSL assume when none is given).
pub const DEFAULT_DISTID: &str = "1234567812345678";

/// The SM2 curve (GM/T 0006), as certificates name it.
pub const CURVE_OID: &str = "1.2.156.10197.1.301";

/// The curve's parameters a, b, xG, yG (GB/T 32918.5), as Z_A hashes them.
const CURVE: [&str; 4] = [
    "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC",
    "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93",
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7",
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0",
];

/// SM3 of the concatenation of `parts`.
pub fn sm3(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = sm3::Sm3::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a constant in hex"))
        .collect()
}

/// Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA): what a signer's identity adds to the
/// message before it is signed. `public_key` is the uncompressed point (0x04 ‖ x ‖ y).
pub fn z_a(distid: &str, public_key: &[u8]) -> Result<[u8; 32], CryptoError> {
    let bits = u16::try_from(distid.len() * 8)
        .map_err(|_| CryptoError::InvalidKey("distinguishing ID too long".into()))?;
    let point = match public_key {
        [0x04, xy @ ..] if xy.len() == 64 => xy,
        _ => {
            return Err(CryptoError::InvalidKey(
                "an SM2 public key is an uncompressed point of 65 bytes".into(),
            ));
        }
    };
    let curve: Vec<Vec<u8>> = CURVE.iter().map(|c| unhex(c)).collect();
    let bits = bits.to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![&bits, distid.as_bytes()];
    parts.extend(curve.iter().map(Vec::as_slice));
    parts.push(point);
    Ok(sm3(&parts))
}

/// The digest e = SM3(Z_A ‖ M) that an SM2 signature of `message` signs.
pub fn e(distid: &str, public_key: &[u8], message: &[u8]) -> Result<[u8; 32], CryptoError> {
    Ok(sm3(&[&z_a(distid, public_key)?, message]))
}

/// An SM2 key held in memory, signing with [`DEFAULT_DISTID`]. Signatures are deterministic
/// (RFC 6979 nonces).
pub struct Sm2Key {
    key: SigningKey,
    public: Vec<u8>,
}

impl fmt::Debug for Sm2Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public: String = self.public.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "Sm2Key(public {public})")
    }
}

impl Sm2Key {
    /// Generates a key from the system generator; returns it with its PKCS#8 document (to be
    /// sealed before storing).
    pub fn generate() -> Result<(Self, SecretBytes), CryptoError> {
        // A random 256-bit string is a valid scalar but for about 2^-32 of them: draw again.
        for _ in 0..8 {
            let mut d = zeroize::Zeroizing::new([0u8; 32]);
            crate::random(d.as_mut())?;
            if let Ok(key) = Self::from_scalar(d.as_ref()) {
                let pkcs8 = key.to_pkcs8()?;
                return Ok((key, pkcs8));
            }
        }
        Err(CryptoError::Rng)
    }

    /// Loads a key from its private scalar d (32 bytes, big-endian).
    pub fn from_scalar(d: &[u8]) -> Result<Self, CryptoError> {
        let secret = sm2::SecretKey::from_slice(d)
            .map_err(|_| CryptoError::InvalidKey("not an SM2 private scalar".into()))?;
        Self::from_secret(&secret)
    }

    /// Loads a key from its PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let secret = sm2::SecretKey::from_pkcs8_der(pkcs8)
            .map_err(|e| CryptoError::InvalidKey(format!("SM2 PKCS#8: {e}")))?;
        Self::from_secret(&secret)
    }

    fn from_secret(secret: &sm2::SecretKey) -> Result<Self, CryptoError> {
        let key = SigningKey::new(DEFAULT_DISTID, secret)
            .map_err(|_| CryptoError::InvalidKey("not an SM2 key".into()))?;
        let public = key.verifying_key().to_sec1_bytes().to_vec();
        Ok(Self { key, public })
    }

    /// The key's PKCS#8 document.
    pub fn to_pkcs8(&self) -> Result<SecretBytes, CryptoError> {
        let secret = sm2::SecretKey::from(self.key.as_nonzero_scalar());
        secret
            .to_pkcs8_der()
            .map(|d| SecretBytes::new(d.as_bytes().to_vec()))
            .map_err(|e| CryptoError::InvalidKey(format!("SM2 PKCS#8: {e}")))
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key, uncompressed (0x04 ‖ x ‖ y).
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The public key as a DER SubjectPublicKeyInfo (id-ecPublicKey on the SM2 curve), as
    /// certificates and OpenSSL carry it.
    pub fn public_key_der(&self) -> Result<Vec<u8>, CryptoError> {
        self.key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| CryptoError::InvalidKey(format!("SM2 public key: {e}")))
    }

    /// Signs `message`: raw r ‖ s, 64 bytes.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(message);
        sig.to_bytes().to_vec()
    }

    /// Signs `message`: DER SEQUENCE { r, s }, as GB/T 38540 and X.509 carry it.
    pub fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(message);
        sig.to_der().as_bytes().to_vec()
    }
}

fn signature(sig: &[u8]) -> Result<Signature, CryptoError> {
    match sig.len() {
        64 => Signature::from_slice(sig),
        _ => Signature::from_der(sig),
    }
    .map_err(|_| CryptoError::BadSignature)
}

fn verifying_key(public_key: &[u8]) -> Result<VerifyingKey, CryptoError> {
    VerifyingKey::from_sec1_bytes(DEFAULT_DISTID, public_key)
        .map_err(|_| CryptoError::InvalidKey("not an SM2 public key".into()))
}

/// Verifies an SM2 signature (raw r ‖ s or DER) of `message` by `public_key` (a SEC1 point)
/// with [`DEFAULT_DISTID`].
pub fn verify_sm2(public_key: &[u8], message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    verifying_key(public_key)?
        .verify(message, &signature(sig)?)
        .map_err(|_| CryptoError::BadSignature)
}

/// Verifies an SM2 signature of the digest `e` (see [`e`]) by `public_key`.
pub fn verify_sm2_digest(public_key: &[u8], e: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    verifying_key(public_key)?
        .verify_prehash(e, &signature(sig)?)
        .map_err(|_| CryptoError::BadSignature)
}

impl crate::Signer for Sm2Key {
    fn algorithm(&self) -> crate::x509::KeyAlgorithm {
        crate::x509::KeyAlgorithm::Sm2
    }

    fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Raw r ‖ s, as COSE carries ECDSA-style signatures.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(Sm2Key::sign(self, message))
    }
}
