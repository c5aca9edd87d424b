//! Key custody: private keys at rest are sealed with AES-256-GCM under a key-encryption key
//! (KEK) read from a file that is created, mode 0600, at first start. The owner of a key (its
//! ID) is bound as associated data, so a sealed key cannot be moved to another owner.

use std::fmt;
use std::io::Write;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{CryptoError, SecretBytes, random};

const KEK_LEN: usize = 32;
/// Marks the format of a sealed key: version 1 = nonce ‖ AES-256-GCM(ciphertext ‖ tag).
const SEALED_V1: u8 = 1;

/// The key-encryption key.
pub struct Kek {
    key: LessSafeKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// Reads the KEK file, creating it with a fresh random key (mode 0600) when absent.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let file_err = |what: &str, e: std::io::Error| {
            CryptoError::KeyFile(format!("{what} {}: {e}", path.display()))
        };
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| file_err("cannot create the folder of", e))?;
            }
            let mut bytes = zeroize::Zeroizing::new([0u8; KEK_LEN]);
            random(bytes.as_mut())?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(|e| file_err("cannot create", e))?;
            f.write_all(bytes.as_ref())
                .map_err(|e| file_err("cannot write", e))?;
            f.sync_all().map_err(|e| file_err("cannot sync", e))?;
        }
        let bytes = SecretBytes::new(std::fs::read(path).map_err(|e| file_err("cannot read", e))?);
        Self::from_bytes(&bytes)
    }

    /// A KEK from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != KEK_LEN {
            return Err(CryptoError::InvalidKey(format!(
                "a key-encryption key has {KEK_LEN} bytes, this one {}",
                bytes.len()
            )));
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| CryptoError::InvalidKey("not an AES-256 key".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `secret` for `owner`.
    pub fn seal(&self, owner: &[u8], secret: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let mut buf = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner),
                &mut buf,
            )
            .map_err(|_| CryptoError::Unseal("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens a key sealed for `owner`.
    pub fn open(&self, owner: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        let (&version, rest) = sealed
            .split_first()
            .ok_or_else(|| CryptoError::Unseal("empty".into()))?;
        if version != SEALED_V1 || rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(CryptoError::Unseal("not a sealed key of format 1".into()));
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| CryptoError::Unseal("bad nonce".into()))?;
        let mut buf = zeroize::Zeroizing::new(ct.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(owner), &mut buf)
            .map_err(|_| {
                CryptoError::Unseal("wrong key-encryption key, wrong owner, or tampered".into())
            })?;
        Ok(SecretBytes::new(plain.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_for_their_owner_and_kek() {
        // (Opened keys are SecretBytes: compared through their contents.)
        let dir = std::env::temp_dir().join(format!("certseal-kek-{}", std::process::id()));
        let path = dir.join("kek");
        let kek = Kek::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = kek.seal(b"log", b"secret key").unwrap();
        assert_eq!(
            Kek::load_or_create(&path)
                .unwrap()
                .open(b"log", &sealed)
                .unwrap()
                .as_slice(),
            b"secret key"
        );
        assert!(kek.open(b"seal-1", &sealed).is_err(), "owner is bound");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(kek.open(b"log", &tampered).is_err());
        let other = Kek::from_bytes(&[7u8; 32]).unwrap();
        assert!(other.open(b"log", &sealed).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
