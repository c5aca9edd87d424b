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
    /// For keys derived from this one, each for one purpose.
    prk: ring::hkdf::Prk,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// Reads the KEK file, creating it with a fresh random key (mode 0600, in a folder of mode
    /// 0700) when absent. An existing file that its group or others may read is refused: the
    /// KEK opens every private key in the data folder.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let file_err = |what: &str, e: std::io::Error| {
            CryptoError::KeyFile(format!("{what} {}: {e}", path.display()))
        };
        if !path.exists() {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|e| file_err("cannot create the folder of", e))?;
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
            // The file's name is in its folder: without this, a power cut can keep keys sealed
            // under the new KEK and lose the file itself.
            sync_dir(dir).map_err(|e| file_err("cannot sync the folder of", e))?;
        }
        check_private(path)?;
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
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"certseal kek").extract(bytes);
        Ok(Self {
            key: LessSafeKey::new(key),
            prk,
        })
    }

    /// A key for one purpose (`label`), derived from this one with HKDF-SHA256: what it seals
    /// cannot be opened with the KEK, nor with a key for another purpose.
    pub fn derive(&self, label: &str) -> Self {
        let info = [label.as_bytes()];
        let mut bytes = zeroize::Zeroizing::new([0u8; KEK_LEN]);
        self.prk
            .expand(&info, ring::hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(bytes.as_mut()))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self::from_bytes(bytes.as_ref()).expect("32 bytes")
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

/// Flushes a folder's entries (new or renamed files) to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Refuses a key file that its group or others may read or write.
fn check_private(path: &Path) -> Result<(), CryptoError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| CryptoError::KeyFile(format!("cannot read {}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFile(format!(
                "the key-encryption key {} has mode {:04o}: its group or others may read it, and it opens every private key; make it private with `chmod 600 {}` (and check who could have read it)",
                path.display(),
                mode & 0o7777,
                path.display()
            )));
        }
    }
    Ok(())
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
        let tokens = kek.derive("tokens");
        assert!(
            tokens.open(b"log", &sealed).is_err(),
            "a derived key is another key"
        );
        let t = tokens.seal(b"list", b"key").unwrap();
        assert_eq!(
            kek.derive("tokens").open(b"list", &t).unwrap().as_slice(),
            b"key"
        );
        assert!(kek.derive("other").open(b"list", &t).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_kek_others_may_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("keys");
        let path = folder.join("kek");
        Kek::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the keys folder is private");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Kek::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Kek::load_or_create(&path).unwrap();
    }
}
