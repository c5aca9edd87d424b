//! The trust list (version 1): every seal certificate the registry knows with its status
//! history, and the CA certificates they chain to. The registry signs it as a COSE_Sign1 whose
//! payload is this structure in deterministic CBOR; offline verifiers decide from it whether a
//! seal was usable when a document was signed. Format: `docs/seals.md`.

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::department::Timestamp;
use crate::ids::CreditCode;
use crate::seal::{RevocationReason, SealAlgorithm, SealStatus, SealType, usable_at};
use crate::uuid_id::SealId;

/// Content type in the protected header of a signed trust list.
pub const TRUST_LIST_CONTENT_TYPE: &str = "application/certseal-trust-list+cbor; v=1";
/// Common name of the trust-list signer's certificate, followed by the list's issuer.
pub const TRUST_LIST_SIGNER_PREFIX: &str = "certseal trust list ";
/// Version of the trust-list payload.
pub const TRUST_LIST_VERSION: u32 = 1;

/// The payload of a signed trust list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustList {
    /// Format version, 1.
    pub v: u32,
    /// The registry that signed it (the audit log's origin).
    pub issuer: String,
    /// When it was made (ms since the epoch).
    pub issued_at: Timestamp,
    /// Size of the audit log when it was made: later lists have larger sizes.
    pub log_size: u64,
    /// CA certificates (DER) seal certificates chain to: the seal CA, then external anchors.
    pub cas: Vec<serde_bytes_vec::Der>,
    /// Every seal with a certificate, in seal-ID order.
    pub seals: Vec<TrustedSeal>,
}

/// One seal in the trust list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedSeal {
    /// Seal ID.
    pub id: SealId,
    /// Owning department.
    pub department: CreditCode,
    /// Seal name.
    pub name: String,
    /// Kind of seal.
    #[serde(rename = "type")]
    pub seal_type: SealType,
    /// Key algorithm.
    pub alg: SealAlgorithm,
    /// Key ID of the certificate in COSE documents (first 8 bytes of SHA-256 of the DER).
    #[serde(with = "crate::bytes")]
    pub kid: Vec<u8>,
    /// Seal certificate, DER.
    #[serde(with = "crate::bytes")]
    pub cert: Vec<u8>,
    /// Intermediate CA certificates between it and one of `cas` (usually none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<serde_bytes_vec::Der>,
    /// Start of the seal's validity window.
    pub not_before: Timestamp,
    /// End of the seal's validity window (exclusive).
    pub not_after: Timestamp,
    /// Status changes, oldest first; the first is the registration.
    pub history: Vec<TrustListEvent>,
}

/// A status change as the trust list carries it (without the actor's note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustListEvent {
    /// When it took effect.
    pub at: Timestamp,
    /// The status from then on.
    pub status: SealStatus,
    /// For a revocation, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationReason>,
}

impl TrustedSeal {
    /// Whether a document signed at `t` was signed while the seal was usable.
    pub fn usable_at(&self, t: Timestamp) -> bool {
        usable_at(
            self.not_before,
            self.not_after,
            self.history.iter().map(|e| (e.at, e.status, e.revocation)),
            t,
        )
    }

    /// The current status.
    pub fn status(&self) -> SealStatus {
        self.history
            .last()
            .map(|e| e.status)
            .unwrap_or(SealStatus::Pending)
    }
}

impl TrustList {
    /// The payload bytes: deterministic CBOR.
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_canonical(self).expect("a trust list serialises")
    }

    /// Reads a payload, refusing other versions and non-deterministic encodings.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let list: TrustList = cbor::from_canonical(bytes)?;
        if list.v != TRUST_LIST_VERSION {
            return Err(format!(
                "trust list version {}, this build reads {TRUST_LIST_VERSION}",
                list.v
            ));
        }
        Ok(list)
    }

    /// The seals whose certificate has key ID `kid`.
    pub fn seals_with_kid<'a>(&'a self, kid: &'a [u8]) -> impl Iterator<Item = &'a TrustedSeal> {
        self.seals.iter().filter(move |s| s.kid == kid)
    }
}

/// DER bytes written as a CBOR byte string.
pub mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// One DER certificate.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Der(pub Vec<u8>);

    impl Serialize for Der {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Der {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            crate::bytes::deserialize(d).map(Der)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> TrustList {
        TrustList {
            v: 1,
            issuer: "certseal.local/log".into(),
            issued_at: Timestamp(1_000),
            log_size: 7,
            cas: vec![serde_bytes_vec::Der(vec![0x30, 0x03, 1, 2, 3])],
            seals: vec![TrustedSeal {
                id: SealId::new(900, &[1; 10]),
                department: "11100000000013338W".parse().unwrap(),
                name: "行政审批专用章".into(),
                seal_type: SealType::SpecialPurpose,
                alg: SealAlgorithm::Ed25519,
                kid: vec![1; 8],
                cert: vec![0x30, 0x00],
                chain: Vec::new(),
                not_before: Timestamp(0),
                not_after: Timestamp(10_000),
                history: vec![
                    TrustListEvent {
                        at: Timestamp(100),
                        status: SealStatus::Pending,
                        revocation: None,
                    },
                    TrustListEvent {
                        at: Timestamp(200),
                        status: SealStatus::Active,
                        revocation: None,
                    },
                    TrustListEvent {
                        at: Timestamp(900),
                        status: SealStatus::Revoked,
                        revocation: Some(RevocationReason::KeyCompromise {
                            compromised_at: Timestamp(500),
                        }),
                    },
                ],
            }],
        }
    }

    #[test]
    fn trust_list_round_trips_deterministically_and_answers_usability() {
        let l = list();
        let bytes = l.encode();
        assert_eq!(TrustList::decode(&bytes).unwrap(), l);
        assert_eq!(l.encode(), bytes, "one encoding");
        let s = &l.seals[0];
        assert!(!s.usable_at(Timestamp(150)), "pending");
        assert!(s.usable_at(Timestamp(499)));
        assert!(!s.usable_at(Timestamp(500)), "compromised from 500 on");
        assert_eq!(s.status(), SealStatus::Revoked);
        assert_eq!(l.seals_with_kid(&[1; 8]).count(), 1);
        let mut other = l.clone();
        other.v = 2;
        assert!(TrustList::decode(&other.encode()).is_err());
        assert!(TrustList::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
