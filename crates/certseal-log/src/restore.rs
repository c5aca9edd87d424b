//! A restore of the log from a backup, as the log itself records it.
//!
//! A restored registry holds entries `[0, B)` of the log it was backed up from, and must never
//! sign under that log's origin again (the old log may have signed sizes past `B` with other
//! contents). It continues under a new origin, `<base>/restore-<n>`, and its entry `B` is a
//! `log.restored` entry that commits to a [`Restoration`]: the old origin, the new one, the
//! backup's signed checkpoint (size `B`, the old origin), and the newest checkpoint of the old
//! log the operator gave. A verifier accepts a change of origin only through such an entry whose
//! backup checkpoint is signed by the log's key and has the root of the entries before it.
//!
//! The record, in RFC 8949 §4.2.1 core deterministic CBOR:
//! ```text
//! { "v": 1, "old_origin": "...", "new_origin": "...", "backup_checkpoint": "<signed note>",
//!   ? "last_checkpoint": "<signed note>", ? "replayed_to": size }
//! ```

use ciborium::Value;

use crate::LogError;
use crate::entry::{encode_value, sorted_map, text};

/// Kind of the entry that starts a restored log.
pub const RESTORED_KIND: &str = "log.restored";
/// Kind of the entry by which an operator lets a restored registry take writes again without a
/// replay of the old log.
pub const RESTORE_CONFIRMED_KIND: &str = "log.restore_confirmed";
/// Version of the record format.
pub const RESTORATION_VERSION: u64 = 1;
const SUFFIX: &str = "/restore-";
/// Largest record accepted for decoding (two notes and two origins).
const MAX_RESTORATION_BYTES: usize = 16 * 1024;

/// What a `log.restored` entry commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restoration {
    /// The origin of the log the backup was taken from.
    pub old_origin: String,
    /// The origin the restored log signs under from this entry on.
    pub new_origin: String,
    /// The backup's signed checkpoint, under `old_origin`; its size is this entry's index.
    pub backup_checkpoint: String,
    /// The newest signed checkpoint of the old log the operator gave, if any.
    pub last_checkpoint: Option<String>,
    /// The old log's size up to which its suspensions and revocations were re-applied, if the
    /// restore replayed an export of it.
    pub replayed_to: Option<u64>,
}

fn bad(msg: impl Into<String>) -> LogError {
    LogError::InvalidEntry(format!("restoration record: {}", msg.into()))
}

impl Restoration {
    /// The deterministic CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut pairs = vec![
            (text("v"), Value::Integer(RESTORATION_VERSION.into())),
            (text("old_origin"), text(&self.old_origin)),
            (text("new_origin"), text(&self.new_origin)),
            (text("backup_checkpoint"), text(&self.backup_checkpoint)),
        ];
        if let Some(c) = &self.last_checkpoint {
            pairs.push((text("last_checkpoint"), text(c)));
        }
        if let Some(n) = self.replayed_to {
            pairs.push((text("replayed_to"), Value::Integer(n.into())));
        }
        encode_value(&sorted_map(pairs))
    }

    /// Decodes a record, refusing anything that is not its one deterministic encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        if bytes.len() > MAX_RESTORATION_BYTES {
            return Err(bad("too large"));
        }
        let value: Value = ciborium::from_reader(bytes).map_err(|e| bad(e.to_string()))?;
        let Value::Map(pairs) = value else {
            return Err(bad("not a CBOR map"));
        };
        let mut r = Restoration {
            old_origin: String::new(),
            new_origin: String::new(),
            backup_checkpoint: String::new(),
            last_checkpoint: None,
            replayed_to: None,
        };
        let mut version = None;
        for (k, v) in pairs {
            match (k, v) {
                (Value::Text(k), Value::Integer(i)) if k == "v" => {
                    version = u64::try_from(i).ok();
                }
                (Value::Text(k), Value::Text(t)) if k == "old_origin" => r.old_origin = t,
                (Value::Text(k), Value::Text(t)) if k == "new_origin" => r.new_origin = t,
                (Value::Text(k), Value::Text(t)) if k == "backup_checkpoint" => {
                    r.backup_checkpoint = t
                }
                (Value::Text(k), Value::Text(t)) if k == "last_checkpoint" => {
                    r.last_checkpoint = Some(t)
                }
                (Value::Text(k), Value::Integer(i)) if k == "replayed_to" => {
                    r.replayed_to =
                        Some(u64::try_from(i).map_err(|_| bad("'replayed_to' is negative"))?)
                }
                (k, _) => return Err(bad(format!("unexpected field {k:?}"))),
            }
        }
        if version != Some(RESTORATION_VERSION) {
            return Err(bad("unknown version"));
        }
        if r.old_origin.is_empty() || r.new_origin.is_empty() || r.backup_checkpoint.is_empty() {
            return Err(bad(
                "old_origin, new_origin and backup_checkpoint are required",
            ));
        }
        if r.encode() != bytes {
            return Err(bad("not in deterministic CBOR encoding"));
        }
        Ok(r)
    }
}

/// The origin a log restored from `origin` continues under: `<base>/restore-<n+1>`, where
/// `origin` is `<base>` or `<base>/restore-<n>`.
pub fn next_origin(origin: &str) -> String {
    let (base, n) = split_origin(origin);
    format!("{base}{SUFFIX}{}", n + 1)
}

/// The origin a log was first created under, and how many restores it has been through.
pub fn split_origin(origin: &str) -> (&str, u64) {
    if let Some(at) = origin.rfind(SUFFIX) {
        let n = &origin[at + SUFFIX.len()..];
        if !n.is_empty()
            && !n.starts_with('0')
            && n.bytes().all(|c| c.is_ascii_digit())
            && let Ok(n) = n.parse()
        {
            return (&origin[..at], n);
        }
    }
    (origin, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_count_restores() {
        assert_eq!(next_origin("gov.example/log"), "gov.example/log/restore-1");
        assert_eq!(
            next_origin("gov.example/log/restore-1"),
            "gov.example/log/restore-2"
        );
        assert_eq!(
            split_origin("gov.example/log/restore-12"),
            ("gov.example/log", 12)
        );
        // Not a restore suffix: the whole origin is the base.
        assert_eq!(split_origin("a/restore-01"), ("a/restore-01", 0));
        assert_eq!(split_origin("a/restore-"), ("a/restore-", 0));
    }

    #[test]
    fn record_round_trips_and_is_strict() {
        let r = Restoration {
            old_origin: "o".into(),
            new_origin: "o/restore-1".into(),
            backup_checkpoint: "o\n3\nAAAA\n\n— o x\n".into(),
            last_checkpoint: None,
            replayed_to: Some(9),
        };
        let bytes = r.encode();
        assert_eq!(Restoration::decode(&bytes).unwrap(), r);
        assert!(Restoration::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Restoration::decode(b"\xa0").is_err());
    }
}
