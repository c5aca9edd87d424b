//! Checking a sealed OFD licence file, online and offline alike: the package and its GB/T 38540
//! seal signature (every covered file's SM3 digest, the SES_Signature), then the licence it
//! carries (its attached COSE document, checked as [`check_document`] checks any), then that
//! the file was sealed by that licence's own seal while the seal could sign, and (online) that
//! it is the very file the registry sealed.

use certseal_core::seal::usability_at;
use certseal_core::{
    Indication, LicenceClaims, LicenceId, RevocationReason, SealStatus, SubIndication, Timestamp,
    Usability,
};
use certseal_crypto::{Certificate, sha256};
use certseal_ofd::OfdError;

use crate::document::{LicenceFacts, Outcome, SealCandidate, check_document};

/// Largest OFD file accepted.
pub const MAX_OFD_BYTES: usize = certseal_ofd::read::MAX_OFD_BYTES;
/// Custom data naming the licence (GB/T 36903's 证照标识).
pub const OFD_LICENCE_ID: &str = "证照标识";

/// What the checker knows of sealed files.
#[derive(Debug, Clone, Copy)]
pub enum FileFacts {
    /// Offline: only the file's own word on when it was sealed.
    Offline,
    /// The registry sealed no file for the licence.
    NoneSealed,
    /// The registry's sealed file: its SHA-256 and when the log says it was sealed.
    Sealed {
        /// SHA-256 of the file.
        sha256: [u8; 32],
        /// When it was logged.
        at: Timestamp,
    },
    /// The registry could not read it now.
    Unavailable,
}

fn verdict(
    indication: Indication,
    sub: SubIndication,
    reason: String,
    digest: [u8; 32],
) -> Outcome {
    Outcome {
        indication,
        sub: Some(sub),
        reason,
        claims: None,
        seal_id: None,
        digest,
        status_checked: false,
    }
}

/// Checks a sealed OFD licence file at `at`; `facts` is asked about the attached document's
/// licence (with the document's SHA-256), `file_facts` about sealed files of that licence, and
/// `trusted_maker` whether a seal maker's certificate (DER) is one the checker trusts to make
/// seals (the registry's SM2 seal CA).
pub fn check_ofd(
    file: &[u8],
    candidates: impl Fn(&[u8]) -> Vec<SealCandidate>,
    facts: impl FnOnce(&LicenceClaims, [u8; 32]) -> LicenceFacts,
    file_facts: impl FnOnce(&LicenceId) -> FileFacts,
    trusted_maker: impl FnOnce(&[u8]) -> bool,
    at: Timestamp,
) -> Outcome {
    let file_digest = sha256(&[file]);
    let fail = |sub, reason: String| verdict(Indication::TotalFailed, sub, reason, file_digest);
    let sealed = match certseal_ofd::open_sealed(file) {
        Ok(s) => s,
        Err(OfdError::Digest(m)) => return fail(SubIndication::HashFailure, m),
        Err(OfdError::Signature(m)) => return fail(SubIndication::SigCryptoFailure, m),
        Err(e) => return fail(SubIndication::FormatFailure, e.to_string()),
    };
    let Some(document) = sealed.file(certseal_ofd::LICENCE_ATTACHMENT) else {
        return fail(
            SubIndication::FormatFailure,
            format!(
                "the file carries no licence document ({})",
                certseal_ofd::LICENCE_ATTACHMENT
            ),
        );
    };
    let document_digest = sha256(&[document]);
    let mut o = check_document(document, &candidates, |c| facts(c, document_digest), at);
    let Some(claims) = o.claims.clone() else {
        return o;
    };
    // Only SM2 licences have sealed files; the rest of the file is about this licence.
    if sealed.custom(OFD_LICENCE_ID) != Some(claims.id.as_str()) {
        return Outcome {
            claims: Some(claims),
            ..fail(
                SubIndication::FormatFailure,
                "the file's metadata (证照标识) names another licence than its document".into(),
            )
        };
    }
    if o.indication != Indication::TotalPassed
        && !matches!(
            o.sub,
            Some(
                SubIndication::Revoked
                    | SubIndication::Suspended
                    | SubIndication::Superseded
                    | SubIndication::Expired
                    | SubIndication::NotYetValid
            )
        )
    {
        return o;
    }
    // Sealed by the licence's own seal, as the registry knows it.
    let signer = Certificate {
        der: sealed.signature.cert.clone(),
    };
    let Some(seal) = candidates(&signer.kid())
        .into_iter()
        .find(|s| s.cert == signer.der)
    else {
        return Outcome {
            claims: Some(claims),
            ..verdict(
                Indication::Indeterminate,
                SubIndication::NoCertificateChainFound,
                "the file's signer certificate is no known seal's".into(),
                file_digest,
            )
        };
    };
    if seal.seal_id != claims.seal {
        return Outcome {
            claims: Some(claims.clone()),
            seal_id: Some(seal.seal_id),
            ..fail(
                SubIndication::SigCryptoFailure,
                format!(
                    "sealed by seal {}, not by the licence's seal {}",
                    seal.seal_id, claims.seal
                ),
            )
        };
    }
    // The seal shown (its picture and name) is one the registry made for this seal.
    if !trusted_maker(&sealed.seal().maker_cert) {
        return Outcome {
            claims: Some(claims),
            ..verdict(
                Indication::Indeterminate,
                SubIndication::NoCertificateChainFound,
                "the seal in the file was not made by a trusted seal maker".into(),
                file_digest,
            )
        };
    }
    if !seal.chain_ok {
        return Outcome {
            claims: Some(claims),
            ..verdict(
                Indication::Indeterminate,
                SubIndication::NoCertificateChainFound,
                "the seal certificate does not chain to a trusted CA".into(),
                file_digest,
            )
        };
    }
    let facts = file_facts(&claims.id);
    let offline = matches!(facts, FileFacts::Offline);
    let sealed_at = match facts {
        // The file says it to the second: it was sealed within that second.
        FileFacts::Offline => Timestamp(sealed.signed_at.saturating_mul(1000) + 999),
        FileFacts::NoneSealed => {
            return Outcome {
                claims: Some(claims.clone()),
                ..fail(
                    SubIndication::DocumentMismatch,
                    format!("the registry sealed no file for licence {}", claims.id),
                )
            };
        }
        FileFacts::Sealed { sha256, .. } if sha256 != file_digest => {
            return Outcome {
                claims: Some(claims.clone()),
                ..fail(
                    SubIndication::DocumentMismatch,
                    format!(
                        "well sealed, but not the file the registry sealed for licence {}",
                        claims.id
                    ),
                )
            };
        }
        FileFacts::Sealed { at, .. } => at,
        FileFacts::Unavailable => {
            return Outcome {
                claims: Some(claims),
                ..verdict(
                    Indication::Indeterminate,
                    SubIndication::TryLater,
                    "the registry cannot read the licence's sealed file now".into(),
                    file_digest,
                )
            };
        }
    };
    match usability_at(
        seal.not_before,
        seal.not_after,
        seal.history.iter().copied(),
        sealed_at,
    ) {
        Usability::Usable => {}
        Usability::KeyCompromised(_) | Usability::NotActive(Some(SealStatus::Revoked)) => {
            return Outcome {
                claims: Some(claims),
                ..fail(
                    SubIndication::SealRevoked,
                    "the seal was revoked or compromised when it sealed the file".into(),
                )
            };
        }
        other => {
            return Outcome {
                claims: Some(claims),
                ..fail(
                    SubIndication::SealNotActive,
                    format!(
                        "the seal could not seal the file then: {}",
                        other.describe()
                    ),
                )
            };
        }
    }
    // Offline, a compromised key could have back-dated the file: only the registry's log
    // says when it really sealed it.
    if offline && compromised_at(&seal.history).is_some() && o.indication == Indication::TotalPassed
    {
        o.reason =
            "the seal's key was compromised after the file says it was sealed: ask the registry"
                .into();
        o.indication = Indication::Indeterminate;
        o.sub = Some(SubIndication::TryLater);
    }
    o
}

fn compromised_at(
    history: &[(Timestamp, SealStatus, Option<RevocationReason>)],
) -> Option<Timestamp> {
    history.iter().find_map(|(_, _, r)| match r {
        Some(RevocationReason::KeyCompromise { compromised_at }) => Some(*compromised_at),
        _ => None,
    })
}
