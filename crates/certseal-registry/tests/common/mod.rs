//! Helpers shared by the registry's integration tests.
#![allow(dead_code)]

use certseal_core::{Actor, Role, SealAlgorithm, SealType};
use certseal_registry::{CertificateRequest, NewSeal};

/// The bootstrap administrator of a default registry.
pub const ADMIN: &str = "11100000000013338W";

pub fn actor(dept: &str, role: Role) -> Actor {
    Actor {
        department: dept.parse().unwrap(),
        role,
    }
}

pub fn admin() -> Actor {
    actor(ADMIN, Role::Admin)
}

/// The `n`th valid credit code of a fixed series.
pub fn code(n: u32) -> String {
    let body = format!("1235020000{n:07}");
    "0123456789ABCDEFGHJKLMNPQRTUWXY"
        .chars()
        .map(|c| format!("{body}{c}"))
        .find(|s| s.parse::<certseal_core::CreditCode>().is_ok())
        .unwrap()
}

/// An Ed25519 seal of `dept` certified by the registry's seal CA.
pub fn new_seal(dept: &str) -> NewSeal {
    NewSeal {
        department: dept.into(),
        name: "行政审批专用章".into(),
        seal_type: SealType::SpecialPurpose,
        image: b"\x89PNG\r\n\x1a\nimage".to_vec(),
        algorithm: SealAlgorithm::Ed25519,
        not_before: None,
        not_after: None,
        national_code: String::new(),
        certificate: CertificateRequest::SealCa,
        request_id: String::new(),
    }
}
