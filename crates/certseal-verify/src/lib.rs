//! Offline verification of what certseal publishes: audit export bundles and single-entry
//! proofs. It needs the log's verifier key and the files, nothing else: no server, no
//! database, no network. Another department can embed it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bundle;
pub mod document;
pub mod ofd;
pub mod trust_list;

use certseal_log::merkle::{leaf_hash, verify_inclusion};
use certseal_log::{Checkpoint, Entry, TlogProof, VerifierKey};

pub use bundle::{
    Bundle, BundleReport, CHECKPOINT_FILE, ENTRIES_FILE, MANIFEST_FILE, Manifest, RECORDS_FILE,
    RestorationReport, for_each_entry, read_manifest, read_records, verify as verify_bundle,
};
pub use trust_list::{
    check_status_list_fits, verify_document_offline, verify_ofd_offline, verify_status_list,
    verify_trust_list,
};

/// Why verification failed; each variant says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A file is missing, unreadable or malformed.
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint's signature, origin or content is wrong.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// One entry is wrong.
    #[error("entry {index}: {reason}")]
    Entry {
        /// Its index in the log.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// The entries of a range do not produce the root a signed checkpoint gives.
    #[error("entries {start}..{end}: {reason}")]
    Range {
        /// First entry of the range.
        start: u64,
        /// End of the range (exclusive), the checkpoint's size.
        end: u64,
        /// What is wrong.
        reason: String,
    },
    /// A proof does not verify.
    #[error("proof: {0}")]
    Proof(String),
    /// A trust list is malformed, or its signature or signer does not verify.
    #[error("trust list: {0}")]
    TrustList(String),
}

/// Parses a verifier key (`name+keyid+base64`).
pub fn parse_verifier_key(text: &str) -> Result<VerifierKey, VerifyError> {
    VerifierKey::parse(text).map_err(|e| VerifyError::Checkpoint(format!("verifier key: {e}")))
}

/// Checks a C2SP tlog-proof for `entry` against the log's key; returns the checkpoint it
/// proves inclusion in.
pub fn verify_tlog_proof(
    proof_text: &str,
    entry: &[u8],
    key: &VerifierKey,
) -> Result<Checkpoint, VerifyError> {
    let proof = TlogProof::parse(proof_text).map_err(|e| VerifyError::Proof(e.to_string()))?;
    let cp = Checkpoint::open(&proof.checkpoint, key)
        .map_err(|e| VerifyError::Checkpoint(e.to_string()))?;
    let decoded = Entry::decode(entry).map_err(|e| VerifyError::Entry {
        index: proof.index,
        reason: e.to_string(),
    })?;
    if decoded.seq != proof.index {
        return Err(VerifyError::Entry {
            index: proof.index,
            reason: format!("the entry says it is number {}", decoded.seq),
        });
    }
    verify_inclusion(
        &leaf_hash(entry),
        proof.index,
        cp.size,
        &proof.hashes,
        &cp.root,
    )
    .map_err(|e| VerifyError::Proof(e.to_string()))?;
    Ok(cp)
}
