//! Checking a licence document: the one decision procedure the registry runs and the offline
//! verifier runs, fed by different sources (the registry's store; a trust list and a status
//! list), so that both reach the same result on the same document.

use certseal_core::licence::{LICENCE_CONTENT_TYPE, LICENCE_V2_CONTENT_TYPE};
use certseal_core::seal::usability_at;
use certseal_core::{
    CreditCode, Indication, LicenceClaims, LicenceStatus, RevocationReason, SealId, SealStatus,
    SubIndication, Timestamp, TrustList, Usability,
};
use certseal_crypto::{cose, sha256, x509};

/// Largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A seal whose certificate has the document's key ID.
#[derive(Debug, Clone)]
pub struct SealCandidate {
    /// The seal.
    pub seal_id: SealId,
    /// The department that owns it: the only one whose licences it signs.
    pub department: CreditCode,
    /// Its certificate (DER).
    pub cert: Vec<u8>,
    /// Whether the certificate chains to a CA the checker trusts.
    pub chain_ok: bool,
    /// Validity window of the seal.
    pub not_before: Timestamp,
    /// End of the window.
    pub not_after: Timestamp,
    /// Status history: (at, status, revocation), oldest first.
    pub history: Vec<(Timestamp, SealStatus, Option<RevocationReason>)>,
}

/// What the checker knows of the licence itself.
#[derive(Debug, Clone)]
pub enum LicenceFacts {
    /// The registry holds no licence with the document's ID.
    Unknown,
    /// The registry's record: the status at the instant checked, the logged issue time, and
    /// whether the presented document is byte for byte the one it issued.
    Registered {
        /// Status at the instant checked (`Active` when none other applies).
        status_at: LicenceStatus,
        /// When the audit log says it was issued.
        issued_at: Timestamp,
        /// Whether the document checked is the stored one.
        same_document: bool,
    },
    /// A status list's word (offline): `None` means not listed (active).
    Listed(Option<LicenceStatus>),
    /// No status source (offline without a status list).
    NotChecked,
    /// The registry could not read its record now.
    Unavailable,
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The main result.
    pub indication: Indication,
    /// Why, when not passed.
    pub sub: Option<SubIndication>,
    /// Words for people.
    pub reason: String,
    /// The decoded claims, when the document could be read.
    pub claims: Option<LicenceClaims>,
    /// The seal that signed, when found.
    pub seal_id: Option<SealId>,
    /// SHA-256 of the document checked.
    pub digest: [u8; 32],
    /// Whether the licence's status was checked (false offline without a status list).
    pub status_checked: bool,
}

fn out(indication: Indication, sub: Option<SubIndication>, reason: impl Into<String>) -> Outcome {
    Outcome {
        indication,
        sub,
        reason: reason.into(),
        claims: None,
        seal_id: None,
        digest: [0; 32],
        status_checked: false,
    }
}

fn failed(sub: SubIndication, reason: impl Into<String>) -> Outcome {
    out(Indication::TotalFailed, Some(sub), reason)
}

fn indeterminate(sub: SubIndication, reason: impl Into<String>) -> Outcome {
    out(Indication::Indeterminate, Some(sub), reason)
}

/// Checks `document` at instant `at`: format, signature by a seal with that key ID, the chain,
/// the seal's status when it signed, then what `facts` says of the licence and its window.
/// `facts` is asked only once the document is known to be well formed and well signed.
pub fn check_document(
    document: &[u8],
    candidates: impl FnOnce(&[u8]) -> Vec<SealCandidate>,
    facts: impl FnOnce(&LicenceClaims) -> LicenceFacts,
    at: Timestamp,
) -> Outcome {
    let digest = sha256(&[document]);
    let mut o = check_inner(document, candidates, facts, at);
    o.digest = digest;
    o
}

fn check_inner(
    document: &[u8],
    candidates: impl FnOnce(&[u8]) -> Vec<SealCandidate>,
    facts: impl FnOnce(&LicenceClaims) -> LicenceFacts,
    at: Timestamp,
) -> Outcome {
    let doc = match cose::parse_sign1(document, MAX_DOCUMENT_BYTES) {
        Ok(d) => d,
        Err(e) => return failed(SubIndication::FormatFailure, e.to_string()),
    };
    // Version 2 is version 1 signed with SM2: each version goes with its algorithms only.
    let sm2 = doc.cose_alg() == cose::SM2_ALG;
    match doc.content_type.as_str() {
        LICENCE_CONTENT_TYPE if !sm2 => {}
        LICENCE_V2_CONTENT_TYPE if sm2 => {}
        LICENCE_CONTENT_TYPE | LICENCE_V2_CONTENT_TYPE => {
            return failed(
                SubIndication::FormatFailure,
                format!(
                    "content type '{}' does not go with COSE algorithm {}",
                    doc.content_type,
                    doc.cose_alg()
                ),
            );
        }
        other => {
            return failed(
                SubIndication::FormatFailure,
                format!("content type '{other}' is not a licence's"),
            );
        }
    }
    let claims = match LicenceClaims::decode(&doc.payload) {
        Ok(c) => c,
        Err(e) => return failed(SubIndication::FormatFailure, format!("claims: {e}")),
    };
    let found = candidates(&doc.kid);
    if found.is_empty() {
        let mut o = indeterminate(
            SubIndication::NoCertificateChainFound,
            "no known seal certificate has the document's key ID",
        );
        o.claims = Some(claims);
        return o;
    }
    let Some(seal) = found
        .into_iter()
        .find(|s| doc.verify_with_certificate(&s.cert).is_ok())
    else {
        let mut o = failed(
            SubIndication::SigCryptoFailure,
            "the signature does not verify with the seal certificate",
        );
        o.claims = Some(claims);
        return o;
    };
    let mut result = decide(&seal, &claims, facts, at);
    result.seal_id = Some(seal.seal_id);
    result.claims = Some(claims);
    result
}

fn decide(
    seal: &SealCandidate,
    claims: &LicenceClaims,
    facts: impl FnOnce(&LicenceClaims) -> LicenceFacts,
    at: Timestamp,
) -> Outcome {
    if !seal.chain_ok {
        return indeterminate(
            SubIndication::NoCertificateChainFound,
            "the seal certificate does not chain to a trusted CA",
        );
    }
    if claims.seal != seal.seal_id {
        return failed(
            SubIndication::SigCryptoFailure,
            format!(
                "the document names seal {} but seal {} signed it",
                claims.seal, seal.seal_id
            ),
        );
    }
    // A seal signs its own department's licences only: with a stolen key, one department
    // could otherwise sign documents naming another as their issuer.
    if claims.issuer != seal.department {
        return failed(
            SubIndication::SigCryptoFailure,
            format!(
                "the document names department {} as its issuer but seal {} is department {}'s",
                claims.issuer, seal.seal_id, seal.department
            ),
        );
    }
    let facts = facts(claims);
    if let LicenceFacts::Unavailable = facts {
        return indeterminate(
            SubIndication::TryLater,
            "the registry cannot read the licence's record now",
        );
    }
    // The issue time the audit log proves; offline, only the document's word.
    let (issued_at, proven) = match &facts {
        LicenceFacts::Registered { issued_at, .. } => (*issued_at, true),
        // iat counts whole seconds: the document was signed within that second.
        _ => (Timestamp(claims.iat.saturating_mul(1000) + 999), false),
    };
    let compromise = seal.history.iter().find_map(|(_, _, r)| match r {
        Some(RevocationReason::KeyCompromise { compromised_at }) => Some(*compromised_at),
        _ => None,
    });
    // The registry answers for licences it never issued below, whatever their date says.
    let unknown = matches!(facts, LicenceFacts::Unknown);
    if !proven
        && !unknown
        && let Some(c) = compromise
    {
        // Offline, only the document says when it was signed, to the second. A document
        // dated from the compromise on fails; an earlier date may be a thief's back-dating,
        // and only the registry's log can say when it was really issued.
        if claims.iat.saturating_mul(1000) >= c.0 {
            return failed(
                SubIndication::SealRevoked,
                format!("signed at or after the seal's key compromise ({} ms)", c.0),
            );
        }
        return indeterminate(
            SubIndication::TryLater,
            "the seal's key was compromised; ask the registry when this document was issued",
        );
    }
    match usability_at(
        seal.not_before,
        seal.not_after,
        seal.history.iter().copied(),
        issued_at,
    ) {
        Usability::Usable => {}
        Usability::KeyCompromised(t) => {
            return failed(
                SubIndication::SealRevoked,
                format!("signed at or after the seal's key compromise ({} ms)", t.0),
            );
        }
        Usability::NotActive(Some(SealStatus::Revoked)) => {
            return failed(
                SubIndication::SealRevoked,
                "the seal was revoked when it signed",
            );
        }
        other => {
            return failed(
                SubIndication::SealNotActive,
                format!("the seal could not sign then: {}", other.describe()),
            );
        }
    }
    let (status, status_checked) = match facts {
        LicenceFacts::Unknown => {
            return failed(
                SubIndication::UnknownLicence,
                format!("the registry holds no licence {}", claims.id),
            );
        }
        LicenceFacts::Unavailable => unreachable!("decided above"),
        LicenceFacts::Registered {
            same_document: false,
            ..
        } => {
            return failed(
                SubIndication::DocumentMismatch,
                format!(
                    "well signed, but not the document the registry issued as {}",
                    claims.id
                ),
            );
        }
        LicenceFacts::Registered { issued_at, .. } if at < issued_at => {
            return indeterminate(
                SubIndication::NotYetValid,
                "the licence was issued after that instant",
            );
        }
        LicenceFacts::Registered { status_at, .. } => (status_at, true),
        LicenceFacts::Listed(s) => (s.unwrap_or(LicenceStatus::Active), true),
        LicenceFacts::NotChecked => (LicenceStatus::Active, false),
    };
    let mut o = match status {
        LicenceStatus::Revoked => failed(SubIndication::Revoked, "the licence is revoked"),
        LicenceStatus::Superseded => failed(
            SubIndication::Superseded,
            "the licence was replaced by an amendment or renewal",
        ),
        LicenceStatus::Suspended => {
            indeterminate(SubIndication::Suspended, "the licence is suspended")
        }
        LicenceStatus::Active => {
            let t = at.0.div_euclid(1000);
            if t < claims.nbf {
                indeterminate(SubIndication::NotYetValid, "the licence is not yet valid")
            } else if claims.exp.is_some_and(|exp| t >= exp) {
                failed(SubIndication::Expired, "the licence has expired")
            } else if status_checked {
                out(Indication::TotalPassed, None, "")
            } else {
                out(
                    Indication::TotalPassed,
                    None,
                    "signature, seal and validity hold; the licence's status was not checked",
                )
            }
        }
    };
    o.status_checked = status_checked;
    o
}

/// Whether `cert` chains to one of `cas` through `chain`, the CAs judged when the certificate
/// was issued (its notBefore): a seal certificate stays checkable after its CA's renewal.
pub fn chain_ok(
    cert: &[u8],
    cas: &[certseal_core::trust_list::serde_bytes_vec::Der],
    chain: &[certseal_core::trust_list::serde_bytes_vec::Der],
) -> bool {
    let to_certs = |v: &[certseal_core::trust_list::serde_bytes_vec::Der]| {
        v.iter()
            .map(|d| certseal_crypto::Certificate { der: d.0.clone() })
            .collect::<Vec<_>>()
    };
    let Ok((issued, _)) = x509::validity(cert) else {
        return false;
    };
    x509::check_chain(cert, &to_certs(cas), &to_certs(chain), issued).is_ok()
}

/// Seal candidates from a verified trust list: chain checked against the list's CAs.
pub fn trust_list_candidates(list: &TrustList, kid: &[u8]) -> Vec<SealCandidate> {
    list.seals_with_kid(kid)
        .map(|s| SealCandidate {
            seal_id: s.id,
            department: s.department.clone(),
            chain_ok: chain_ok(&s.cert, &list.cas, &s.chain),
            cert: s.cert.clone(),
            not_before: s.not_before,
            not_after: s.not_after,
            history: s
                .history
                .iter()
                .map(|e| (e.at, e.status, e.revocation))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use certseal_core::{FieldValue, Holder, HolderKind, LicenceId, TypeCode};
    use certseal_crypto::x509::{KeyAlgorithm, create_ca, generate_key};

    #[test]
    fn a_seal_signs_only_its_own_departments_licences() {
        let key = generate_key(KeyAlgorithm::Ed25519).unwrap();
        // Only the public key matters here: a self-signed certificate of the seal's key.
        let cert = create_ca("seal", &key.pkcs8, 1_700_000_000, 2_000_000_000).unwrap();
        let signer = certseal_crypto::load_signer(KeyAlgorithm::Ed25519, &key.pkcs8).unwrap();
        let issuer: CreditCode = "11100000000013338W".parse().unwrap();
        let type_code: TypeCode = "11100000000013338W001".parse().unwrap();
        let seal = SealId::new(1_700_000_000_000, &[3; 10]);
        let claims = LicenceClaims {
            id: LicenceId::new(&type_code, &issuer, "0ABC", 1).unwrap(),
            issuer: issuer.clone(),
            exp: None,
            nbf: 1_800_000_000,
            iat: 1_800_000_000,
            type_code,
            template_version: 1,
            seal,
            holder: Holder::new(HolderKind::Person, "11010519491231002X", "张三").unwrap(),
            fields: [("n".to_owned(), FieldValue::Integer(1))]
                .into_iter()
                .collect(),
            prev: None,
        };
        let document = cose::sign1(
            signer.as_ref(),
            &sha256(&[&cert.der])[..8],
            LICENCE_CONTENT_TYPE,
            None,
            claims.encode(),
        )
        .unwrap();
        let candidate = |department: &str| SealCandidate {
            seal_id: seal,
            department: department.parse().unwrap(),
            cert: cert.der.clone(),
            chain_ok: true,
            not_before: Timestamp(1_700_000_000_000),
            not_after: Timestamp(2_000_000_000_000),
            history: vec![(Timestamp(1_700_000_000_000), SealStatus::Active, None)],
        };
        let check = |department: &str| {
            check_document(
                &document,
                |_| vec![candidate(department)],
                |_| LicenceFacts::Listed(None),
                Timestamp(1_800_000_001_000),
            )
        };
        let own = check("11100000000013338W");
        assert_eq!(own.indication, Indication::TotalPassed, "{}", own.reason);
        let other = check("91350200MA2XYW123L");
        assert_eq!(
            (other.indication, other.sub),
            (
                Indication::TotalFailed,
                Some(SubIndication::SigCryptoFailure)
            ),
            "{}",
            other.reason
        );
    }
}
