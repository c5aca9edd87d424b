//! UUIDv7 identifiers (seals now; receipts and requests later): time-ordered, so keys of new
//! records append at the end of their table.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::IdError;

/// The ID of a seal: a UUIDv7 in its canonical lower-case hyphenated text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SealId(Uuid);

impl SealId {
    /// A new ID for `millis` (ms since the epoch) and 10 random bytes.
    pub fn new(millis: u64, random: &[u8; 10]) -> Self {
        Self(uuid::Builder::from_unix_timestamp_millis(millis, random).into_uuid())
    }

    /// The 16 bytes, big-endian: the store key.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// From the 16 bytes of a store key.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(b))
    }
}

impl FromStr for SealId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let u = Uuid::try_parse(s)
            .map_err(|_| IdError("a seal ID is a UUID such as 0190f5e4-…".into()))?;
        // One spelling per ID: canonical text only, and only the version we issue.
        if u.hyphenated().to_string() != s {
            return Err(IdError(
                "a seal ID is written in lower-case hyphenated form".into(),
            ));
        }
        if u.get_version_num() != 7 {
            return Err(IdError("a seal ID is a version 7 UUID".into()));
        }
        Ok(Self(u))
    }
}

impl TryFrom<String> for SealId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<SealId> for String {
    fn from(id: SealId) -> String {
        id.to_string()
    }
}

impl fmt::Display for SealId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for SealId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_ids_are_canonical_v7_and_time_ordered() {
        let a = SealId::new(1_700_000_000_000, &[9; 10]);
        let b = SealId::new(1_700_000_000_001, &[0; 10]);
        assert!(a < b && a.as_bytes() < b.as_bytes());
        let text = a.to_string();
        assert_eq!(text.parse::<SealId>().unwrap(), a);
        assert!(text.to_uppercase().parse::<SealId>().is_err());
        assert!(
            "67e55044-10b1-426f-9247-bb680e5fe0c8"
                .parse::<SealId>()
                .is_err(),
            "v4"
        );
        assert!("not-a-uuid".parse::<SealId>().is_err());
        assert_eq!(SealId::from_bytes(*a.as_bytes()), a);
    }
}
