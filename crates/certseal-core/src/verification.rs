//! Verification results (DESIGN.md, "Verification result"), the purpose of a check, receipts and
//! the status list: what a check concluded, and the signed records that say so.

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::department::Timestamp;
use crate::error::FieldViolation;
use crate::ids::CreditCode;
use crate::licence::LicenceStatus;

/// Content type of a signed receipt (version 1: no basis).
pub const RECEIPT_CONTENT_TYPE: &str = "application/certseal-receipt+cbor; v=1";
/// Content type of a signed receipt, version 2: it names the check's basis.
pub const RECEIPT_V2_CONTENT_TYPE: &str = "application/certseal-receipt+cbor; v=2";
/// Content type of a signed status list.
pub const STATUS_LIST_CONTENT_TYPE: &str = "application/certseal-status-list+cbor; v=1";
/// COSE content type of a signed status list, version 2 (each licence's status history).
pub const STATUS_LIST_V2_CONTENT_TYPE: &str = "application/certseal-status-list+cbor; v=2";
/// Common name of the receipt signer's certificate, followed by the registry's origin.
pub const RECEIPT_SIGNER_PREFIX: &str = "certseal receipts ";

/// The main result, three-valued as in ETSI EN 319 102-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Indication {
    /// Everything checked holds.
    TotalPassed,
    /// Something checked does not hold, for good.
    TotalFailed,
    /// The check cannot conclude (now): see the sub-indication.
    Indeterminate,
}

/// Why a check did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubIndication {
    /// The signature does not verify with the seal's certificate.
    SigCryptoFailure,
    /// The document or QR string is malformed.
    FormatFailure,
    /// The licence is revoked.
    Revoked,
    /// The licence is suspended.
    Suspended,
    /// The licence was replaced by an amendment or renewal.
    Superseded,
    /// The licence's validity window has ended.
    Expired,
    /// The licence's validity window has not started.
    NotYetValid,
    /// The seal was revoked (or its key compromised) when the licence was signed.
    SealRevoked,
    /// The seal was not active (pending, suspended, outside its window) when it signed.
    SealNotActive,
    /// No trusted certificate for the document's key, or no chain to a trusted CA.
    NoCertificateChainFound,
    /// The registry holds no such licence.
    UnknownLicence,
    /// The document is well signed but is not the one the registry issued under that ID.
    DocumentMismatch,
    /// Cannot be decided without the registry (e.g. offline, a key compromise near the
    /// signing time): ask the registry.
    TryLater,
    /// A file the signature covers was changed, removed, or added uncovered (an OFD file's
    /// references and their SM3 digests).
    HashFailure,
}

impl SubIndication {
    /// The name used in receipts and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SubIndication::SigCryptoFailure => "SIG_CRYPTO_FAILURE",
            SubIndication::FormatFailure => "FORMAT_FAILURE",
            SubIndication::Revoked => "REVOKED",
            SubIndication::Suspended => "SUSPENDED",
            SubIndication::Superseded => "SUPERSEDED",
            SubIndication::Expired => "EXPIRED",
            SubIndication::NotYetValid => "NOT_YET_VALID",
            SubIndication::SealRevoked => "SEAL_REVOKED",
            SubIndication::SealNotActive => "SEAL_NOT_ACTIVE",
            SubIndication::NoCertificateChainFound => "NO_CERTIFICATE_CHAIN_FOUND",
            SubIndication::UnknownLicence => "UNKNOWN_LICENCE",
            SubIndication::DocumentMismatch => "DOCUMENT_MISMATCH",
            SubIndication::TryLater => "TRY_LATER",
            SubIndication::HashFailure => "HASH_FAILURE",
        }
    }
}

impl Indication {
    /// The name used in receipts and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Indication::TotalPassed => "TOTAL_PASSED",
            Indication::TotalFailed => "TOTAL_FAILED",
            Indication::Indeterminate => "INDETERMINATE",
        }
    }
}

/// Why a department checks a licence: a code from the registry's list and words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purpose {
    /// A purpose code, e.g. `ADMIN_APPROVAL`.
    pub code: String,
    /// Free text, e.g. "食品经营许可申请材料核验".
    pub text: String,
}

/// Longest purpose text, in characters.
pub const MAX_PURPOSE_TEXT: usize = 200;

impl Purpose {
    /// Checks a purpose against the registry's purpose codes.
    pub fn new(code: &str, text: &str, known: &[String]) -> Result<Self, Vec<FieldViolation>> {
        let mut v = Vec::new();
        let code = code.trim();
        if code.is_empty() {
            v.push(FieldViolation::new(
                "purpose.code",
                "a check states its purpose",
            ));
        } else if !known.iter().any(|k| k == code) {
            v.push(FieldViolation::new(
                "purpose.code",
                format!("unknown purpose code '{code}'; known: {}", known.join(", ")),
            ));
        }
        let text = crate::error::check_name("purpose.text", text, MAX_PURPOSE_TEXT)
            .map_err(|e| v.push(e))
            .ok();
        match text {
            Some(text) if v.is_empty() => Ok(Self {
                code: code.to_owned(),
                text,
            }),
            _ => Err(v),
        }
    }
}

/// What allowed a check: whose permission the verifier acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BasisKind {
    /// The issuing department checked its own licence.
    Issuer,
    /// A read grant of the sharing policy (the department's statutory access), or no policy
    /// enforced.
    Grant,
    /// The holder's use code.
    UseCode,
    /// The public page, showing only public fields.
    Public,
}

impl BasisKind {
    /// The name used in receipts and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            BasisKind::Issuer => "issuer",
            BasisKind::Grant => "grant",
            BasisKind::UseCode => "use_code",
            BasisKind::Public => "public",
        }
    }
}

/// The basis of a check, in a version 2 receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    /// Issuer, grant, use code or public.
    pub kind: BasisKind,
    /// With a use code: the code's ID (UUIDv7), never the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_code: Option<String>,
}

/// The payload of a signed receipt (version 1, or 2 with its basis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Format version, 1.
    pub v: u32,
    /// Receipt ID (UUIDv7).
    pub id: String,
    /// The licence checked, as asked or as the document names it (empty if unreadable).
    pub licence: String,
    /// SHA-256 of the document checked (empty when there was none).
    #[serde(with = "crate::bytes")]
    pub document: Vec<u8>,
    /// The result.
    pub result: Indication,
    /// Why, when not passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<SubIndication>,
    /// When the check was made (ms since the epoch).
    pub checked_at: Timestamp,
    /// The instant the licence was checked for.
    pub at: Timestamp,
    /// The verifying department.
    pub verifier: CreditCode,
    /// Why it checked.
    pub purpose: Purpose,
    /// What allowed the check (version 2 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<Basis>,
}

impl Receipt {
    /// The COSE content type of this receipt's version.
    pub fn content_type(&self) -> &'static str {
        if self.v == 2 {
            RECEIPT_V2_CONTENT_TYPE
        } else {
            RECEIPT_CONTENT_TYPE
        }
    }

    /// Deterministic CBOR.
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_canonical(self).expect("a receipt serialises")
    }

    /// Reads a payload, refusing other versions and encodings.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let r: Receipt = cbor::from_canonical(bytes)?;
        match (r.v, &r.basis) {
            (1, None) | (2, Some(_)) => Ok(r),
            (1, Some(_)) => Err("a version 1 receipt has no basis".into()),
            (2, None) => Err("a version 2 receipt names its basis".into()),
            (v, _) => Err(format!("receipt version {v}")),
        }
    }
}

/// One licence that is not simply active, in a status list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    /// Licence ID.
    pub id: String,
    /// Its status (never `active`).
    pub status: LicenceStatus,
    /// Since when.
    pub since: Timestamp,
}

/// The payload of a signed status list (version 1): every licence that is revoked, suspended or
/// superseded, with the time it became so. A licence not in the list is active (or unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusList {
    /// Format version, 1.
    pub v: u32,
    /// The registry (audit log origin).
    pub issuer: String,
    /// When it was made.
    pub issued_at: Timestamp,
    /// Audit log size when it was made.
    pub log_size: u64,
    /// The entries, in licence-ID order.
    pub entries: Vec<StatusEntry>,
}

impl StatusList {
    /// Deterministic CBOR.
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_canonical(self).expect("a status list serialises")
    }

    /// Reads a payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let l: StatusList = cbor::from_canonical(bytes)?;
        if l.v != 1 {
            return Err(format!("status list version {}", l.v));
        }
        Ok(l)
    }

    /// The status of `licence` at `t` by this list: `None` means active (not listed, or
    /// listed only from after `t`).
    pub fn status_at(&self, licence: &str, t: Timestamp) -> Option<LicenceStatus> {
        self.entries
            .binary_search_by(|e| e.id.as_str().cmp(licence))
            .ok()
            .map(|i| &self.entries[i])
            .filter(|e| e.since <= t)
            .map(|e| e.status)
    }
}

/// One change of a licence's status, in a status list of version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The status from then on (`active` after a reinstatement).
    pub status: LicenceStatus,
    /// Since when.
    pub since: Timestamp,
    /// Why, as a code (a revocation's reason today: `issued_in_error`, `withdrawn`,
    /// `cancelled`, `penalty`, `lapsed`, `other`). The vocabulary grows: a reader keeps codes it does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One licence whose status ever changed after issue, with every change, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusHistory {
    /// Licence ID.
    pub id: String,
    /// The changes after the issue (which is `active` from `not_before`), oldest first.
    pub history: Vec<StatusChange>,
}

/// The payload of a signed status list, version 2: every licence whose status ever changed,
/// with the whole history, so "in force at T" is right offline for any T (a licence suspended
/// and then revoked was not in force while suspended; one suspended and reinstated is listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusListV2 {
    /// Format version, 2.
    pub v: u32,
    /// The registry (audit log origin).
    pub issuer: String,
    /// When it was made.
    pub issued_at: Timestamp,
    /// Audit log size when it was made.
    pub log_size: u64,
    /// The entries, in licence-ID order.
    pub entries: Vec<StatusHistory>,
}

impl StatusListV2 {
    /// Deterministic CBOR.
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_canonical(self).expect("a status list serialises")
    }

    /// Reads a payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let l: StatusListV2 = cbor::from_canonical(bytes)?;
        if l.v != 2 {
            return Err(format!("status list version {}", l.v));
        }
        Ok(l)
    }

    /// The status of `licence` at `t` by this list: `None` means active (not listed, before its
    /// first change, or reinstated by `t`).
    pub fn status_at(&self, licence: &str, t: Timestamp) -> Option<LicenceStatus> {
        self.entries
            .binary_search_by(|e| e.id.as_str().cmp(licence))
            .ok()
            .and_then(|i| {
                self.entries[i]
                    .history
                    .iter()
                    .take_while(|c| c.since <= t)
                    .last()
            })
            .map(|c| c.status)
            .filter(|s| *s != LicenceStatus::Active)
    }
}

/// A verified status list of either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyStatusList {
    /// Version 1: current statuses.
    V1(StatusList),
    /// Version 2: status histories.
    V2(StatusListV2),
}

impl AnyStatusList {
    /// The format version.
    pub fn version(&self) -> u32 {
        match self {
            Self::V1(l) => l.v,
            Self::V2(l) => l.v,
        }
    }

    /// The registry (audit log origin).
    pub fn issuer(&self) -> &str {
        match self {
            Self::V1(l) => &l.issuer,
            Self::V2(l) => &l.issuer,
        }
    }

    /// When it was made.
    pub fn issued_at(&self) -> Timestamp {
        match self {
            Self::V1(l) => l.issued_at,
            Self::V2(l) => l.issued_at,
        }
    }

    /// Audit log size when it was made.
    pub fn log_size(&self) -> u64 {
        match self {
            Self::V1(l) => l.log_size,
            Self::V2(l) => l.log_size,
        }
    }

    /// Licences listed.
    pub fn len(&self) -> usize {
        match self {
            Self::V1(l) => l.entries.len(),
            Self::V2(l) => l.entries.len(),
        }
    }

    /// Whether no licence is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The status of `licence` at `t`; `None` means active. A version 1 list knows only each
    /// licence's current status and since when.
    pub fn status_at(&self, licence: &str, t: Timestamp) -> Option<LicenceStatus> {
        match self {
            Self::V1(l) => l.status_at(licence, t),
            Self::V2(l) => l.status_at(licence, t),
        }
    }

    /// Sorts the entries by licence ID, for lookups.
    pub fn sort(&mut self) {
        match self {
            Self::V1(l) => l.entries.sort_by(|a, b| a.id.cmp(&b.id)),
            Self::V2(l) => l.entries.sort_by(|a, b| a.id.cmp(&b.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_and_status_lists_round_trip() {
        let known = vec!["ADMIN_APPROVAL".to_owned()];
        assert!(Purpose::new("", "x", &known).is_err());
        assert!(Purpose::new("GOSSIP", "x", &known).is_err());
        assert!(Purpose::new("ADMIN_APPROVAL", " ", &known).is_err());
        let purpose = Purpose::new("ADMIN_APPROVAL", "核验", &known).unwrap();
        let r = Receipt {
            v: 1,
            id: "0190f5e4-7d3a-7c4e-8a1b-2c3d4e5f6a7b".into(),
            licence: "1.2.156".into(),
            document: vec![1; 32],
            result: Indication::TotalFailed,
            sub: Some(SubIndication::Revoked),
            checked_at: Timestamp(5),
            at: Timestamp(5),
            verifier: "11100000000013338W".parse().unwrap(),
            purpose,
            basis: None,
        };
        assert_eq!(Receipt::decode(&r.encode()).unwrap(), r);
        let mut v2 = r.clone();
        v2.v = 2;
        assert!(
            Receipt::decode(&v2.encode()).is_err(),
            "a v2 receipt names its basis"
        );
        v2.basis = Some(Basis {
            kind: BasisKind::UseCode,
            use_code: Some("0190f5e4-7d3a-7c4e-8a1b-2c3d4e5f6a7b".into()),
        });
        assert_eq!(Receipt::decode(&v2.encode()).unwrap(), v2);
        assert_eq!(v2.content_type(), RECEIPT_V2_CONTENT_TYPE);
        let l = StatusList {
            v: 1,
            issuer: "x".into(),
            issued_at: Timestamp(9),
            log_size: 3,
            entries: vec![
                StatusEntry {
                    id: "a".into(),
                    status: LicenceStatus::Revoked,
                    since: Timestamp(5),
                },
                StatusEntry {
                    id: "b".into(),
                    status: LicenceStatus::Suspended,
                    since: Timestamp(7),
                },
            ],
        };
        assert_eq!(StatusList::decode(&l.encode()).unwrap(), l);
        assert_eq!(l.status_at("a", Timestamp(5)), Some(LicenceStatus::Revoked));
        assert_eq!(l.status_at("a", Timestamp(4)), None);
        assert_eq!(l.status_at("c", Timestamp(9)), None);
    }

    #[test]
    fn a_status_list_v2_knows_every_instant() {
        let change = |status, since, reason: Option<&str>| StatusChange {
            status,
            since: Timestamp(since),
            reason: reason.map(str::to_owned),
        };
        let l = StatusListV2 {
            v: 2,
            issuer: "x".into(),
            issued_at: Timestamp(100),
            log_size: 9,
            entries: vec![
                // Suspended at 10, then revoked at 20.
                StatusHistory {
                    id: "a".into(),
                    history: vec![
                        change(LicenceStatus::Suspended, 10, None),
                        change(LicenceStatus::Revoked, 20, Some("withdrawn")),
                    ],
                },
                // Suspended at 30, reinstated at 40.
                StatusHistory {
                    id: "b".into(),
                    history: vec![
                        change(LicenceStatus::Suspended, 30, None),
                        change(LicenceStatus::Active, 40, None),
                    ],
                },
            ],
        };
        let bytes = l.encode();
        assert_eq!(StatusListV2::decode(&bytes).unwrap(), l);
        assert!(
            StatusList::decode(&bytes).is_err(),
            "a v1 reader refuses v2"
        );
        assert_eq!(l.status_at("a", Timestamp(9)), None);
        assert_eq!(
            l.status_at("a", Timestamp(15)),
            Some(LicenceStatus::Suspended)
        );
        assert_eq!(
            l.status_at("a", Timestamp(20)),
            Some(LicenceStatus::Revoked)
        );
        assert_eq!(
            l.status_at("b", Timestamp(35)),
            Some(LicenceStatus::Suspended)
        );
        assert_eq!(l.status_at("b", Timestamp(40)), None);
        assert_eq!(l.status_at("c", Timestamp(40)), None);
        // A reason code this build does not know is kept, not refused.
        let mut newer = l.clone();
        newer.entries[0].history[1].reason = Some("court_order".into());
        assert_eq!(StatusListV2::decode(&newer.encode()).unwrap(), newer);
        let any = AnyStatusList::V2(l);
        assert_eq!((any.version(), any.len(), any.log_size()), (2, 2, 9));
    }
}
