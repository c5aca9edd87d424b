//! Who is calling: every RPC runs for an [`Actor`].
//!
//! With mutual TLS the department and its roles come from the client certificate. The
//! development mode trusts the `x-certseal-department` and `x-certseal-role` request metadata;
//! it is off unless the server is started with `--dev-auth`, and refused with TLS. With neither,
//! every RPC is refused as unauthenticated.

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
    /// Mutual TLS: the department and its roles come from the client certificate; the
    /// `x-certseal-role` metadata may pick one of the certificate's roles.
    ClientCert,
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
            Authenticator::ClientCert => {
                // A write a node forwarded runs for the caller whose certificate came with it
                // (the cluster layer checked the node and the certificate).
                let forwarded = request
                    .extensions()
                    .get::<crate::cluster::ForwardedCaller>()
                    .map(|f| f.0.clone());
                let certs = request.peer_certs();
                let der: &[u8] = match (&forwarded, &certs) {
                    (Some(f), _) => f.as_slice(),
                    (None, Some(c)) => c
                        .first()
                        .ok_or_else(|| Status::unauthenticated("no client certificate"))?
                        .as_ref(),
                    (None, None) => {
                        return Err(Status::unauthenticated(
                            "no client certificate: present your department's",
                        ));
                    }
                };
                let (code, roles) = certseal_crypto::x509::client_identity(der)
                    .map_err(|e| Status::unauthenticated(format!("client certificate: {e}")))?;
                if roles.iter().any(|r| r == certseal_core::NODE_ROLE) {
                    return Err(Status::permission_denied(
                        "a node certificate acts only for the callers whose writes it forwards, never itself",
                    ));
                }
                let department: CreditCode =
                    code.parse().map_err(|e: certseal_core::IdError| {
                        Status::unauthenticated(format!("client certificate: {e}"))
                    })?;
                let asked = request
                    .metadata()
                    .get(ROLE_HEADER)
                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                let role = match (asked, roles.as_slice()) {
                    (Some(r), _) if roles.contains(&r) => r,
                    (Some(r), _) => {
                        let reason = format!(
                            "the certificate of {department} grants the roles {roles:?}, not '{r}'"
                        );
                        tracing::warn!(%department, role = %r, reason = %reason, "permission denied");
                        return Err(Status::permission_denied(reason));
                    }
                    (None, [only]) => only.clone(),
                    (None, _) => {
                        return Err(Status::unauthenticated(format!(
                            "the certificate grants the roles {roles:?}: choose one with metadata '{ROLE_HEADER}'"
                        )));
                    }
                };
                let role: Role = role.parse().map_err(|e: String| {
                    Status::unauthenticated(format!("client certificate: {e}"))
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
