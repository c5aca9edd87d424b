//! Checking a signed trust list offline: the COSE_Sign1 signature by the trust-list key, that
//! key's certificate issued by the seal CA the verifier trusts, and the payload's format.

use certseal_core::trust_list::{TRUST_LIST_CONTENT_TYPE, TRUST_LIST_SIGNER_PREFIX};
use certseal_core::{AnyStatusList, Timestamp, TrustList};
use certseal_crypto::{Certificate, cose, x509};

use crate::VerifyError;

/// Largest signed trust list accepted.
pub const MAX_TRUST_LIST_BYTES: usize = 64 << 20;

fn bad(reason: impl Into<String>) -> VerifyError {
    VerifyError::TrustList(reason.into())
}

/// Verifies a signed trust list against the seal CA certificate (DER) the verifier trusts,
/// and returns what it says.
pub fn verify_trust_list(signed: &[u8], seal_ca_der: &[u8]) -> Result<TrustList, VerifyError> {
    let doc = cose::parse_sign1(signed, MAX_TRUST_LIST_BYTES).map_err(|e| bad(e.to_string()))?;
    if doc.content_type != TRUST_LIST_CONTENT_TYPE {
        return Err(bad(format!(
            "content type '{}', expected '{TRUST_LIST_CONTENT_TYPE}'",
            doc.content_type
        )));
    }
    let signer = doc
        .x5chain
        .as_deref()
        .ok_or_else(|| bad("no signer certificate (x5chain) in the protected header"))?;
    let signer_kid = Certificate {
        der: signer.to_vec(),
    }
    .kid();
    if doc.kid != signer_kid {
        return Err(bad("the key ID does not match the signer certificate"));
    }
    doc.verify_with_certificate(signer)
        .map_err(|e| bad(format!("signature: {e}")))?;
    let list = TrustList::decode(&doc.payload).map_err(bad)?;
    x509::check_issued_by(signer, seal_ca_der, list.issued_at.0.div_euclid(1000))
        .map_err(|e| bad(format!("signer certificate: {e}")))?;
    // The seal CA also certifies seals: a seal's key must not pass for the trust-list key.
    x509::check_service_certificate(
        signer,
        &format!("{TRUST_LIST_SIGNER_PREFIX}{}", list.issuer),
    )
    .map_err(|e| bad(format!("signer certificate: {e}")))?;
    if !list.cas.iter().any(|c| c.0 == seal_ca_der) {
        return Err(bad("the list does not name the trusted seal CA"));
    }
    for s in &list.seals {
        let kid = Certificate {
            der: s.cert.clone(),
        }
        .kid();
        if s.kid != kid {
            return Err(bad(format!(
                "seal {}: key ID does not match its certificate",
                s.id
            )));
        }
    }
    Ok(list)
}

/// Whether a list is older than `max_age_ms` at `now`.
pub fn is_stale(list: &TrustList, now: Timestamp, max_age_ms: i64) -> bool {
    now.0 - list.issued_at.0 > max_age_ms
}

/// Verifies a signed status list of version 1 or 2 against the seal CA (signed by the same
/// trust-list key), and returns it with its entries sorted for lookups.
pub fn verify_status_list(signed: &[u8], seal_ca_der: &[u8]) -> Result<AnyStatusList, VerifyError> {
    use certseal_core::verification::{STATUS_LIST_CONTENT_TYPE, STATUS_LIST_V2_CONTENT_TYPE};
    let doc = cose::parse_sign1(signed, MAX_TRUST_LIST_BYTES).map_err(|e| bad(e.to_string()))?;
    let version = match doc.content_type.as_str() {
        STATUS_LIST_CONTENT_TYPE => 1,
        STATUS_LIST_V2_CONTENT_TYPE => 2,
        other => {
            return Err(bad(format!(
                "content type '{other}', expected '{STATUS_LIST_CONTENT_TYPE}' or '{STATUS_LIST_V2_CONTENT_TYPE}'"
            )));
        }
    };
    let signer = doc
        .x5chain
        .as_deref()
        .ok_or_else(|| bad("no signer certificate (x5chain) in the protected header"))?;
    doc.verify_with_certificate(signer)
        .map_err(|e| bad(format!("signature: {e}")))?;
    // The payload's version must be the one the signed header declares.
    let mut list = match version {
        1 => AnyStatusList::V1(certseal_core::StatusList::decode(&doc.payload).map_err(bad)?),
        _ => AnyStatusList::V2(certseal_core::StatusListV2::decode(&doc.payload).map_err(bad)?),
    };
    x509::check_issued_by(signer, seal_ca_der, list.issued_at().0.div_euclid(1000))
        .map_err(|e| bad(format!("signer certificate: {e}")))?;
    x509::check_service_certificate(
        signer,
        &format!("{TRUST_LIST_SIGNER_PREFIX}{}", list.issuer()),
    )
    .map_err(|e| bad(format!("signer certificate: {e}")))?;
    list.sort();
    Ok(list)
}

/// Checks that a status list belongs with a trust list (same registry) and is fresh enough:
/// issued no more than `max_age_ms` before `now`.
pub fn check_status_list_fits(
    status: &AnyStatusList,
    trust_list: &TrustList,
    now: Timestamp,
    max_age_ms: i64,
) -> Result<(), VerifyError> {
    if status.issuer() != trust_list.issuer {
        return Err(bad(format!(
            "the status list is from {}, the trust list from {}",
            status.issuer(),
            trust_list.issuer
        )));
    }
    if now.0 - status.issued_at().0 > max_age_ms {
        return Err(bad(format!(
            "the status list was issued {} s ago, more than the {} s allowed: fetch a new one",
            (now.0 - status.issued_at().0) / 1000,
            max_age_ms / 1000
        )));
    }
    Ok(())
}

/// Checks a licence document offline: with a verified trust list, and a verified status list
/// when there is one (without it, the result says the status was not checked). A status list
/// says nothing of instants after it was issued: check with [`check_status_list_fits`].
pub fn verify_document_offline(
    document: &[u8],
    trust_list: &TrustList,
    status: Option<&AnyStatusList>,
    at: Timestamp,
) -> crate::document::Outcome {
    crate::document::check_document(
        document,
        |kid| crate::document::trust_list_candidates(trust_list, kid),
        |claims| match status {
            Some(s) => crate::document::LicenceFacts::Listed(s.status_at(claims.id.as_str(), at)),
            None => crate::document::LicenceFacts::NotChecked,
        },
        at,
    )
}

/// Checks a sealed OFD licence file offline, as [`verify_document_offline`] checks a document:
/// its seal signature, the licence it carries, and that the licence's seal sealed it.
pub fn verify_ofd_offline(
    file: &[u8],
    trust_list: &TrustList,
    status: Option<&AnyStatusList>,
    at: Timestamp,
) -> crate::document::Outcome {
    crate::ofd::check_ofd(
        file,
        |kid| crate::document::trust_list_candidates(trust_list, kid),
        |claims, _| match status {
            Some(s) => crate::document::LicenceFacts::Listed(s.status_at(claims.id.as_str(), at)),
            None => crate::document::LicenceFacts::NotChecked,
        },
        |_| crate::ofd::FileFacts::Offline,
        |maker| trust_list.cas.iter().any(|c| c.0 == maker),
        at,
    )
}
