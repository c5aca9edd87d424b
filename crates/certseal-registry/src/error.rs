//! The registry's error: what went wrong, in terms a transport can map to a status.

use certseal_core::FieldViolation;
use certseal_store::StoreError;

/// Errors of registry operations. Every variant but `Store` and `Corrupt` means nothing was
/// changed because the request itself cannot be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The request breaks input rules; every broken rule is listed.
    #[error("invalid argument: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<FieldViolation>),
    /// What the request names does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// What the request creates exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request is valid but the state of the record does not allow it.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The request ID was used before, within its retention, for another request; nothing
    /// was changed.
    #[error("request ID reused: {0}")]
    RequestIdReused(String),
    /// The caller may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A check presented a use code that does not open it.
    #[error("permission denied: {}", .0.words())]
    UseCodeRefused(certseal_core::UseCodeRefusal),
    /// The caller's client certificate was revoked.
    #[error("certificate revoked: {0}")]
    CertificateRevoked(String),
    /// The store failed; the operation may or may not be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be read back: a bug or a damaged data folder.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<certseal_core::Error> for RegistryError {
    fn from(e: certseal_core::Error) -> Self {
        match e {
            certseal_core::Error::InvalidArgument(v) => RegistryError::InvalidArgument(v),
            certseal_core::Error::Transition(m) => RegistryError::FailedPrecondition(m),
            // The core error is non-exhaustive; a new rule is still the caller's input.
            other => RegistryError::InvalidArgument(vec![FieldViolation::new(
                "request",
                other.to_string(),
            )]),
        }
    }
}

impl RegistryError {
    /// An invalid-argument error about one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        RegistryError::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}
