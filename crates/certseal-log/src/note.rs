//! C2SP signed notes with Ed25519 keys, C2SP tlog-checkpoints, and C2SP tlog-proofs.
//!
//! A note is text ending in a newline, a blank line, then signature lines
//! `— <key name> <base64(key ID ‖ signature)>`. The key ID is the first 4 bytes of
//! SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key); a verifier key is written
//! `<name>+<key ID hex>+<base64(0x01 ‖ public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certseal_crypto::{Signer, sha256, verify_ed25519};

use crate::LogError;
use crate::merkle::{Hash, parse_hash};

/// Signature type byte of Ed25519 note keys.
const ALG_ED25519: u8 = 0x01;
/// Largest note accepted for parsing.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
const EM_DASH_PREFIX: &str = "\u{2014} ";

fn bad(msg: impl Into<String>) -> LogError {
    LogError::InvalidNote(msg.into())
}

fn check_key_name(name: &str) -> Result<(), LogError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(bad(format!(
            "key name '{name}' must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let h = sha256(&[name.as_bytes(), b"\n", &[ALG_ED25519], public_key]);
    [h[0], h[1], h[2], h[3]]
}

/// A public note key: what an auditor trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    public_key: Vec<u8>,
}

impl VerifierKey {
    /// The verifier key of an Ed25519 public key under `name`.
    pub fn new(name: &str, public_key: &[u8]) -> Result<Self, LogError> {
        check_key_name(name)?;
        if public_key.len() != 32 {
            return Err(bad("an Ed25519 public key has 32 bytes"));
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, public_key),
            public_key: public_key.to_vec(),
        })
    }

    /// Parses `name+keyid+base64`.
    pub fn parse(text: &str) -> Result<Self, LogError> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("a verifier key is name+keyid+base64"));
        };
        let key = STANDARD
            .decode(key)
            .map_err(|_| bad("the verifier key's last part is not base64"))?;
        let Some((&ALG_ED25519, public_key)) = key.split_first() else {
            return Err(bad("only Ed25519 (type 0x01) verifier keys are supported"));
        };
        let vk = Self::new(name, public_key)?;
        if id != format!("{:08x}", u32::from_be_bytes(vk.id)) {
            return Err(bad("the verifier key's ID does not match its name and key"));
        }
        Ok(vk)
    }

    /// The key name (for a log, its origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same public key under another name: a restored log signs with its key under a new
    /// origin.
    pub fn renamed(&self, name: &str) -> Result<Self, LogError> {
        Self::new(name, &self.public_key)
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.public_key);
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            u32::from_be_bytes(self.id),
            STANDARD.encode(key)
        )
    }
}

/// Signs `text` (which must end in a newline) with `signer` under `name`; returns the note.
pub fn sign_note(text: &str, name: &str, signer: &dyn Signer) -> Result<String, LogError> {
    check_key_name(name)?;
    if !text.ends_with('\n') || text.contains("\n\n") || text.is_empty() {
        return Err(bad(
            "note text is one or more non-empty lines, each ending in a newline",
        ));
    }
    let sig = signer
        .sign(text.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let mut blob = key_id(name, signer.public_key()).to_vec();
    blob.extend_from_slice(&sig);
    Ok(format!(
        "{text}\n{EM_DASH_PREFIX}{name} {}\n",
        STANDARD.encode(blob)
    ))
}

/// Checks a note's signature by `key`; returns the signed text. Signatures by other keys are
/// ignored; the note is refused unless `key` signed it.
pub fn open_note<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, LogError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(bad(format!("a note has at most {MAX_NOTE_BYTES} bytes")));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    if !sigs.ends_with('\n') || text.contains("\n\n") {
        return Err(bad("malformed note"));
    }
    let mut signed = false;
    for line in sigs.lines() {
        let rest = line
            .strip_prefix(EM_DASH_PREFIX)
            .ok_or_else(|| bad("a signature line starts with '— '"))?;
        let (name, b64) = rest
            .rsplit_once(' ')
            .ok_or_else(|| bad("a signature line is '— name signature'"))?;
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| bad("a signature is not base64"))?;
        if blob.len() < 5 {
            return Err(bad("a signature is too short"));
        }
        if name != key.name || blob[..4] != key.id {
            continue;
        }
        if signed {
            return Err(bad("the key signed the note twice"));
        }
        verify_ed25519(&key.public_key, text.as_bytes(), &blob[4..])
            .map_err(|_| bad(format!("the signature of {name} does not verify")))?;
        signed = true;
    }
    if !signed {
        return Err(bad(format!("no signature by {}", key.name)));
    }
    Ok(text)
}

/// A tree head: the C2SP tlog-checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, also the name of its key.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, size, base64 root, each on its own line.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Signs the checkpoint under its origin.
    pub fn sign(&self, signer: &dyn Signer) -> Result<String, LogError> {
        sign_note(&self.text(), &self.origin, signer)
    }

    /// Parses a checkpoint's text (extension lines are allowed and ignored).
    pub fn parse_text(text: &str) -> Result<Self, LogError> {
        let mut lines = text.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("a checkpoint has an origin, a size and a root line"));
        };
        if origin.is_empty() {
            return Err(bad("empty origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|c| c.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad(format!("'{size}' is not a tree size")));
        }
        let size = size
            .parse()
            .map_err(|_| bad(format!("'{size}' is not a tree size")))?;
        let root = STANDARD
            .decode(root)
            .map_err(|_| bad("the root line is not base64"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root: parse_hash(&root)?,
        })
    }

    /// Verifies a signed checkpoint by `key`, whose name must be the checkpoint's origin.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Self, LogError> {
        let c = Self::parse_text(open_note(note, key)?)?;
        if c.origin != key.name {
            return Err(bad(format!(
                "checkpoint of '{}', expected '{}'",
                c.origin, key.name
            )));
        }
        Ok(c)
    }
}

/// A single entry's inclusion proof with the signed checkpoint it proves against
/// (C2SP tlog-proof v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Entry index.
    pub index: u64,
    /// Inclusion proof, leaf side first.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

impl TlogProof {
    /// The text form.
    pub fn to_text(&self) -> String {
        let mut s = format!("{TLOG_PROOF_HEADER}\nindex {}\n", self.index);
        for h in &self.hashes {
            s.push_str(&STANDARD.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses the text form (extra data, if any, is ignored).
    pub fn parse(text: &str) -> Result<Self, LogError> {
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("a tlog-proof has a blank line before its checkpoint"))?;
        let mut lines = head.lines();
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(bad(format!(
                "a tlog-proof starts with '{TLOG_PROOF_HEADER}'"
            )));
        }
        let mut line = lines.next().ok_or_else(|| bad("no index line"))?;
        if line.starts_with("extra ") {
            line = lines.next().ok_or_else(|| bad("no index line"))?;
        }
        let index = line
            .strip_prefix("index ")
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|c| c.is_ascii_digit())
                    && (n.len() == 1 || !n.starts_with('0'))
            })
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("the index line is 'index N'"))?;
        let hashes = lines
            .map(|l| {
                let b = STANDARD
                    .decode(l)
                    .map_err(|_| bad("a proof line is not base64"))?;
                parse_hash(&b)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use certseal_crypto::Ed25519Key;

    use super::*;

    /// The Go sumdb/note known answer.
    #[test]
    fn reproduces_the_go_note_known_answer() {
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let parts: Vec<&str> = skey.splitn(5, '+').collect();
        let raw = STANDARD.decode(parts[4]).unwrap();
        assert_eq!(raw[0], ALG_ED25519);
        let key = Ed25519Key::from_seed(&raw[1..]).unwrap();
        let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        let note = sign_note(text, "PeterNeumann", &key).unwrap();
        assert_eq!(
            note.lines().last().unwrap(),
            "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
        );
        let vk = VerifierKey::new("PeterNeumann", Signer::public_key(&key)).unwrap();
        assert!(vk.to_string().starts_with("PeterNeumann+c74f20a3+"));
        assert_eq!(VerifierKey::parse(&vk.to_string()).unwrap(), vk);
        assert_eq!(open_note(&note, &vk).unwrap(), text);
        let forged = note.replace("cryptography", "cryptographY");
        assert!(open_note(&forged, &vk).is_err());
    }

    #[test]
    fn checkpoints_round_trip_and_bind_their_origin() {
        let (key, _) = Ed25519Key::generate().unwrap();
        let c = Checkpoint {
            origin: "registry.example/log".into(),
            size: 42,
            root: [7; 32],
        };
        let note = c.sign(&key).unwrap();
        let vk = VerifierKey::new("registry.example/log", key.public_key()).unwrap();
        assert_eq!(Checkpoint::open(&note, &vk).unwrap(), c);
        let other = VerifierKey::new("other.example/log", key.public_key()).unwrap();
        assert!(Checkpoint::open(&note, &other).is_err());
        assert!(Checkpoint::parse_text("o\n042\nAAAA\n").is_err());
        let p = TlogProof {
            index: 3,
            hashes: vec![[1; 32], [2; 32]],
            checkpoint: note,
        };
        assert_eq!(TlogProof::parse(&p.to_text()).unwrap(), p);
    }
}
