//! gRPC adapters: proto messages to domain values at the edge, registry calls, errors to
//! statuses through [`crate::status`]. No rule of the domain lives here.

mod audit;
mod convert;
mod department;
mod licence;
mod seal;
mod template;
mod verification;

use std::sync::Arc;

use certseal_registry::Registry;

use crate::auth::Authenticator;

pub use audit::AuditApi;
pub use department::DepartmentApi;
pub use licence::LicenceApi;
pub use seal::SealApi;
pub use template::TemplateApi;
pub use verification::VerificationApi;

/// What every service adapter needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The registry all calls go to.
    pub registry: Arc<Registry>,
    /// How callers are identified.
    pub auth: Authenticator,
    /// Timeouts and bounds of streams.
    pub limits: crate::config::Limits,
}

/// The next item of a client stream, within the idle timeout and the item bound; `Ok(None)` at
/// its end.
pub(crate) async fn next_item<T>(
    items: &mut tonic::Streaming<T>,
    limits: &crate::config::Limits,
    read: u64,
) -> Result<Option<T>, tonic::Status> {
    if read >= limits.stream_max_items {
        return Err(tonic::Status::resource_exhausted(format!(
            "a stream carries at most {} items",
            limits.stream_max_items
        )));
    }
    match tokio::time::timeout(limits.stream_idle, items.message()).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no item for {} s: the stream is closed",
            limits.stream_idle.as_secs()
        ))),
    }
}
