//! Verification results (DESIGN.md, "Verification result"), the purpose of a check, receipts and
//! the status list: what a check concluded, and the signed records that say so.

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::department::Timestamp;
use crate::error::FieldViolation;
use crate::ids::CreditCode;
use crate::licence::LicenceStatus;

/// Content type of a signed receipt.
pub const RECEIPT_CONTENT_TYPE: &str = "application/certseal-receipt+cbor; v=1";
/// Content type of a signed status list.
pub const STATUS_LIST_CONTENT_TYPE: &str = "application/certseal-status-list+cbor; v=1";
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

/// The payload of a signed receipt (version 1).
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
}

impl Receipt {
    /// Deterministic CBOR.
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_canonical(self).expect("a receipt serialises")
    }

    /// Reads a payload, refusing other versions and encodings.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let r: Receipt = cbor::from_canonical(bytes)?;
        if r.v != 1 {
            return Err(format!("receipt version {}", r.v));
        }
        Ok(r)
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
        };
        assert_eq!(Receipt::decode(&r.encode()).unwrap(), r);
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
}
