//! Who is calling: every RPC runs for an [`Actor`].
//!
//! Until mutual TLS exists, the only source of identity is the development mode, which trusts
//! the `x-certseal-department` and `x-certseal-role` request metadata. It is off unless the
//! server is started with `--dev-auth`; without it every RPC is refused as unauthenticated.

use certseal_core::{Actor, CreditCode, Role};
use tonic::{Request, Status};

/// Metadata key carrying the caller's credit code in development mode.
pub const DEPARTMENT_HEADER: &str = "x-certseal-department";
/// Metadata key carrying the caller's role in development mode.
pub const ROLE_HEADER: &str = "x-certseal-role";

/// How the server learns who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticator {
    /// Trust request metadata. For development only.
    DevMetadata,
    /// No identity source is configured: every call is unauthenticated.
    Refuse,
}

impl Authenticator {
    /// The actor of `request`, or `UNAUTHENTICATED` saying what is missing.
    pub fn actor<T>(&self, request: &Request<T>) -> Result<Actor, Status> {
        match self {
            Authenticator::Refuse => Err(Status::unauthenticated(
                "no caller identity: this server has no authentication configured (start it with --dev-auth for development)",
            )),
            Authenticator::DevMetadata => {
                let department: CreditCode = header(request, DEPARTMENT_HEADER)?.parse().map_err(
                    |e: certseal_core::IdError| {
                        Status::unauthenticated(format!("metadata '{DEPARTMENT_HEADER}': {e}"))
                    },
                )?;
                let role: Role = header(request, ROLE_HEADER)?.parse().map_err(|e: String| {
                    Status::unauthenticated(format!("metadata '{ROLE_HEADER}': {e}"))
                })?;
                Ok(Actor { department, role })
            }
        }
    }
}

fn header<'r, T>(request: &'r Request<T>, name: &str) -> Result<&'r str, Status> {
    request
        .metadata()
        .get(name)
        .ok_or_else(|| Status::unauthenticated(format!("missing metadata '{name}'")))?
        .to_str()
        .map_err(|_| Status::unauthenticated(format!("metadata '{name}' is not text")))
}
