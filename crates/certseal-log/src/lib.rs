//! The audit log: an RFC 6962 / RFC 9162 Merkle tree over the registry's entries, its proofs,
//! and signed checkpoints. Storage-agnostic: callers provide stored nodes through
//! [`merkle::NodeReader`] and store the nodes an append returns.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod entry;
pub mod merkle;
pub mod note;
pub mod restore;

pub use entry::{Entry, Extra};
pub use merkle::{Frontier, Hash, NewNode, NodeReader};
pub use note::{Checkpoint, TlogProof, VerifierKey};
pub use restore::Restoration;

/// Errors of the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A proof, hash or compact range does not verify or is malformed.
    #[error("invalid proof: {0}")]
    InvalidProof(String),
    /// The request names entries or sizes the tree does not have.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// An entry is malformed or not in its deterministic encoding.
    #[error("invalid entry: {0}")]
    InvalidEntry(String),
    /// A signed note or checkpoint is malformed or its signature does not verify.
    #[error("invalid note: {0}")]
    InvalidNote(String),
    /// A stored node could not be read.
    #[error("log storage: {0}")]
    Storage(String),
}
