//! Domain types of certseal: identifiers, actors, departments, templates and their rules.
//!
//! No I/O happens here: the registry crate stores these types, the binary converts them to and
//! from the API, and every rule about what a valid value is lives in this crate once.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bytes;
pub mod cbor;
pub mod department;
pub mod error;
pub mod ids;
pub mod licence;
pub mod policy;
pub mod qr;
pub mod seal;
pub mod template;
pub mod trust_list;
pub mod use_code;
mod uuid_id;
pub mod verification;

pub use department::{Actor, Department, DepartmentStatus, NODE_ROLE, Role, Timestamp};
pub use error::{Error, FieldViolation};
pub use ids::{CreditCode, IdError, IdIssuer, LicenceId, RegionCode, ResidentId, TypeCode};
pub use licence::{
    Collected, Holder, HolderKind, Licence, LicenceAction, LicenceClaims, LicenceEvent,
    LicenceRevocationReason, LicenceStatus, Upstream,
};
pub use policy::{DepartmentPolicy, FieldAccess, IssueGrant, PolicyContent, ReadGrant, SyncGrant};
pub use seal::{
    CertificateSource, ImageFormat, RevocationReason, Seal, SealAction, SealAlgorithm, SealEvent,
    SealLifecycle, SealStatus, SealType, Usability,
};
pub use template::{
    FieldSpec, FieldType, FieldValue, Template, TemplateCategory, TemplateContent, TemplateStatus,
    Visibility,
};
pub use trust_list::{TrustList, TrustListEvent, TrustedSeal};
pub use use_code::{Audience, UseCode, UseCodeRefusal, UseCodeText};
pub use uuid_id::SealId;
pub use verification::{
    AnyStatusList, Basis, BasisKind, Indication, Purpose, Receipt, StatusChange, StatusHistory,
    StatusList, StatusListV2, SubIndication,
};
