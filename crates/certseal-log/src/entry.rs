//! Audit log entries: what changed, who changed it, when, and the digest of the record it
//! produced, in RFC 8949 §4.2.1 core deterministic CBOR (DESIGN.md, "Audit log").
//!
//! ```text
//! { "v": 1, "seq": n, "kind": "...", "time": ms, "actor": {"role": "...", "department": "..."},
//!   "digest": h'…32 bytes…', "subject": "...", ...kind-specific fields }
//! ```
//! Keys are sorted by their encoded bytes; decoding re-encodes and refuses any other form, so an
//! entry has exactly one byte representation.

use std::collections::BTreeMap;

use ciborium::Value;

use crate::LogError;

/// Version of the entry format.
pub const ENTRY_VERSION: u64 = 1;
/// Largest entry accepted for decoding.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// A kind-specific field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    /// Text.
    Text(String),
    /// Unsigned integer.
    Uint(u64),
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// When it was appended, milliseconds since the Unix epoch; never decreases along the log.
    pub time: i64,
    /// What happened, e.g. `department.registered`.
    pub kind: String,
    /// Credit code of the department that acted.
    pub actor_department: String,
    /// Role it acted in.
    pub actor_role: String,
    /// The ID of the thing changed.
    pub subject: String,
    /// SHA-256 of the full record (or signed document) the change produced.
    pub digest: [u8; 32],
    /// Kind-specific fields (never personal data).
    pub extra: BTreeMap<String, Extra>,
}

const RESERVED: [&str; 7] = ["v", "seq", "time", "kind", "actor", "subject", "digest"];

pub(crate) fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

pub(crate) fn sorted_map(mut pairs: Vec<(Value, Value)>) -> Value {
    // Deterministic order: by the bytes of each key's own encoding.
    pairs.sort_by_cached_key(|(k, _)| encode_value(k));
    Value::Map(pairs)
}

pub(crate) fn encode_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("CBOR values encode into a Vec");
    out
}

fn bad(msg: impl Into<String>) -> LogError {
    LogError::InvalidEntry(msg.into())
}

impl Entry {
    /// The deterministic CBOR encoding: the bytes the log hashes.
    pub fn encode(&self) -> Vec<u8> {
        let mut pairs = vec![
            (text("v"), Value::Integer(ENTRY_VERSION.into())),
            (text("seq"), Value::Integer(self.seq.into())),
            (text("time"), Value::Integer(self.time.into())),
            (text("kind"), text(&self.kind)),
            (
                text("actor"),
                sorted_map(vec![
                    (text("department"), text(&self.actor_department)),
                    (text("role"), text(&self.actor_role)),
                ]),
            ),
            (text("subject"), text(&self.subject)),
            (text("digest"), Value::Bytes(self.digest.to_vec())),
        ];
        for (k, v) in &self.extra {
            debug_assert!(
                !RESERVED.contains(&k.as_str()),
                "extra field {k} is reserved"
            );
            let v = match v {
                Extra::Text(t) => text(t),
                Extra::Uint(n) => Value::Integer((*n).into()),
            };
            pairs.push((text(k), v));
        }
        encode_value(&sorted_map(pairs))
    }

    /// Decodes an entry, refusing anything that is not its one deterministic encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(bad(format!("an entry has at most {MAX_ENTRY_BYTES} bytes")));
        }
        let value: Value = ciborium::from_reader(bytes).map_err(|e| bad(e.to_string()))?;
        let Value::Map(pairs) = value else {
            return Err(bad("an entry is a CBOR map"));
        };
        let mut fields = BTreeMap::new();
        for (k, v) in pairs {
            let Value::Text(k) = k else {
                return Err(bad("entry keys are text"));
            };
            if fields.insert(k.clone(), v).is_some() {
                return Err(bad(format!("duplicate key {k}")));
            }
        }
        let mut take = |k: &str| {
            fields
                .remove(k)
                .ok_or_else(|| bad(format!("missing '{k}'")))
        };
        let uint = |v: Value, k: &str| -> Result<u64, LogError> {
            match v {
                Value::Integer(i) => {
                    u64::try_from(i).map_err(|_| bad(format!("'{k}' is not an unsigned integer")))
                }
                _ => Err(bad(format!("'{k}' is not an integer"))),
            }
        };
        let string = |v: Value, k: &str| -> Result<String, LogError> {
            match v {
                Value::Text(t) => Ok(t),
                _ => Err(bad(format!("'{k}' is not text"))),
            }
        };
        if uint(take("v")?, "v")? != ENTRY_VERSION {
            return Err(bad("unknown entry version"));
        }
        let seq = uint(take("seq")?, "seq")?;
        let time = match take("time")? {
            Value::Integer(i) => i64::try_from(i).map_err(|_| bad("'time' is out of range"))?,
            _ => return Err(bad("'time' is not an integer")),
        };
        let kind = string(take("kind")?, "kind")?;
        let subject = string(take("subject")?, "subject")?;
        let digest = match take("digest")? {
            Value::Bytes(b) => {
                <[u8; 32]>::try_from(b.as_slice()).map_err(|_| bad("'digest' is not 32 bytes"))?
            }
            _ => return Err(bad("'digest' is not a byte string")),
        };
        let Value::Map(actor) = take("actor")? else {
            return Err(bad("'actor' is not a map"));
        };
        let mut dept = None;
        let mut role = None;
        for (k, v) in actor {
            match (k, v) {
                (Value::Text(k), Value::Text(v)) if k == "department" && dept.is_none() => {
                    dept = Some(v)
                }
                (Value::Text(k), Value::Text(v)) if k == "role" && role.is_none() => role = Some(v),
                _ => return Err(bad("'actor' has exactly 'department' and 'role'")),
            }
        }
        let (Some(actor_department), Some(actor_role)) = (dept, role) else {
            return Err(bad("'actor' has exactly 'department' and 'role'"));
        };
        let mut extra = BTreeMap::new();
        for (k, v) in fields {
            let v = match v {
                Value::Text(t) => Extra::Text(t),
                Value::Integer(i) => Extra::Uint(
                    u64::try_from(i)
                        .map_err(|_| bad(format!("'{k}' is not an unsigned integer")))?,
                ),
                _ => return Err(bad(format!("'{k}' has an unsupported type"))),
            };
            extra.insert(k, v);
        }
        let entry = Self {
            seq,
            time,
            kind,
            actor_department,
            actor_role,
            subject,
            digest,
            extra,
        };
        if entry.encode() != bytes {
            return Err(bad("not in deterministic CBOR encoding"));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            seq: 7,
            time: 1_764_000_000_000,
            kind: "template.published".into(),
            actor_department: "11100000000013338W".into(),
            actor_role: "admin".into(),
            subject: "11100000000013338W032".into(),
            digest: [9; 32],
            extra: BTreeMap::from([("version".to_owned(), Extra::Uint(2))]),
        }
    }

    #[test]
    fn encoding_is_deterministic_and_round_trips() {
        let e = sample();
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        // Keys come shortest first: "v" is the first key after the map header.
        assert_eq!(&bytes[1..3], &[0x61, b'v']);
        // Map header: 8 pairs.
        assert_eq!(bytes[0], 0xa8);
    }

    #[test]
    fn other_encodings_and_damage_are_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            if let Ok(e) = Entry::decode(&b) {
                // A flip inside a text or byte value decodes, but to a different entry.
                assert_ne!(e, sample(), "byte {i}");
            }
        }
        // The same content with keys in insertion order is not deterministic CBOR.
        let unsorted = Value::Map(vec![
            (text("seq"), Value::Integer(7.into())),
            (text("v"), Value::Integer(1.into())),
        ]);
        assert!(Entry::decode(&encode_value(&unsorted)).is_err());
        assert!(Entry::decode(&[]).is_err());
    }
}
