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
}
