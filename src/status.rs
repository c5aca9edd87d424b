//! The one place registry errors become gRPC statuses. Internal causes are logged here and
//! never sent to the client; bad input carries a `google.rpc.BadRequest` naming each field.

use certseal_registry::RegistryError;
use certseal_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Maps a registry error to the status a client sees.
pub fn to_status(e: RegistryError) -> Status {
    match e {
        RegistryError::InvalidArgument(violations) => {
            let message = format!("invalid argument: {}", summary(&violations));
            let details = ErrorDetails::with_bad_request(
                violations
                    .into_iter()
                    .map(|v| FieldViolation::new(v.field, v.description))
                    .collect::<Vec<_>>(),
            );
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        RegistryError::NotFound(m) => Status::not_found(m),
        RegistryError::AlreadyExists(m) => Status::already_exists(m),
        // Like an idempotency key used for another licence: the ID exists already, naming
        // another request; the request itself may be fine, with a new ID.
        RegistryError::RequestIdReused(m) => Status::already_exists(m),
        RegistryError::FailedPrecondition(m) => Status::failed_precondition(m),
        // Logged where it was decided, with the caller and the action.
        RegistryError::PermissionDenied(m) => Status::permission_denied(m),
        RegistryError::UseCodeRefused(reason) => {
            // The reason is machine-readable: an app tells the holder what to do.
            let details = ErrorDetails::with_error_info(
                reason.as_str(),
                "certseal.registry",
                std::collections::HashMap::new(),
            );
            Status::with_error_details(
                Code::PermissionDenied,
                format!("permission denied: {}", reason.words()),
                details,
            )
        }
        RegistryError::CertificateRevoked(m) => Status::unauthenticated(m),
        RegistryError::Store(StoreError::Unsupported(m)) => Status::unimplemented(m),
        RegistryError::Store(StoreError::Closed) => {
            Status::unavailable("the server is shutting down")
        }
        // What happened and what to do; the store's own error (it names files) is logged.
        RegistryError::Store(StoreError::WritesStopped(stop)) => {
            Status::unavailable(stop.to_string())
        }
        RegistryError::Store(StoreError::DiskFull(e)) => {
            tracing::error!(error = %e, "the data folder's disk is full");
            Status::unavailable(
                "the data folder's disk is full (No space left on device); free space on it and retry",
            )
        }
        RegistryError::Store(e) => {
            tracing::error!(error = %e, "storage failure");
            Status::unavailable("storage is unavailable; the operation was not acknowledged")
        }
        RegistryError::Corrupt(m) => {
            tracing::error!(record = %m, "corrupt record");
            Status::internal("internal error reading a stored record")
        }
        other => {
            tracing::error!(error = %other, "unmapped registry error");
            Status::internal("internal error")
        }
    }
}

/// A change-feed consumer that read nothing for `stall` while changes waited: it resumes after
/// the last change it got, which the status names (in words and in its ErrorInfo).
pub fn feed_behind(
    resume_after: Option<u64>,
    origin: &str,
    waiting: u64,
    stall: std::time::Duration,
) -> Status {
    let mut metadata = std::collections::HashMap::from([("origin".to_owned(), origin.to_owned())]);
    let resume = match resume_after {
        Some(i) => {
            metadata.insert("resume_after".to_owned(), i.to_string());
            format!("resume with after = {i} and origin '{origin}'")
        }
        None => "resume from the start (no `after`)".to_owned(),
    };
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "the consumer read nothing for {} s ({waiting} log entries not yet read): {resume}",
            stall.as_secs()
        ),
        ErrorDetails::with_error_info("FEED_CONSUMER_BEHIND", "certseal.registry", metadata),
    )
}

fn summary(v: &[certseal_core::FieldViolation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
