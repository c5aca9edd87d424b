//! Departments, the actors that call the registry, and the time stamps records carry.

use serde::{Deserialize, Serialize};

use crate::ids::{CreditCode, RegionCode};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// What an actor may do; the sharing policy refines it per department.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Registry operator: departments, templates, seals, policy.
    Admin,
    /// A department system that issues licences.
    Issuer,
    /// A department system that checks licences.
    Verifier,
    /// Reads and exports the audit log.
    Auditor,
    /// A platform that authenticated a holder (the provincial app, a service hall's counter)
    /// and acts for them, naming them in each call.
    HolderAgent,
    /// A sharing platform (the province's, the nation's) that follows the registry's changes
    /// and applies the changes decided upstream, for the types its sync grants name.
    Sync,
}

impl Role {
    /// The role's name as used in request metadata and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Issuer => "issuer",
            Role::Verifier => "verifier",
            Role::Auditor => "auditor",
            Role::HolderAgent => "holder_agent",
            Role::Sync => "sync",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "issuer" => Ok(Role::Issuer),
            "verifier" => Ok(Role::Verifier),
            "auditor" => Ok(Role::Auditor),
            "holder_agent" => Ok(Role::HolderAgent),
            "sync" => Ok(Role::Sync),
            _ => Err(format!(
                "unknown role '{s}': expected admin, issuer, verifier, auditor, holder_agent or sync"
            )),
        }
    }
}

/// The role in a department certificate that makes it a cluster node's: a node forwards other
/// callers' writes to the leader with their certificates and never acts itself, so it is no
/// [`Role`] and no policy grants it.
pub const NODE_ROLE: &str = "node";

/// Who performs a call: a department acting in one role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The calling department.
    pub department: CreditCode,
    /// The role it acts in.
    pub role: Role,
}

/// Whether a department may still act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepartmentStatus {
    /// Registered and in service.
    Active,
    /// Deactivated: kept for history, may no longer define templates or issue.
    Deactivated,
}

/// A government department registered with the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    /// Unified social credit code; the department's identity.
    pub credit_code: CreditCode,
    /// Official name.
    pub name: String,
    /// Administrative region.
    pub region: RegionCode,
    /// Active or deactivated.
    pub status: DepartmentStatus,
    /// When it was registered.
    pub created_at: Timestamp,
    /// Who registered it.
    pub created_by: Actor,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Who changed it last.
    pub updated_by: Actor,
}

/// Longest department name accepted, in characters.
pub const MAX_DEPARTMENT_NAME: usize = 200;
