//! The error of the domain rules: which input field is wrong and why.

use std::fmt;

/// One input that broke a rule: `field` is a path into the request (`fields[2].pattern`),
/// `description` says why, in words a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the offending field in the request.
    pub field: String,
    /// Why it was refused.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field` for the reason `description`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Errors of the domain rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input broke one or more rules; every broken rule is listed.
    #[error("invalid argument: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The record's current state does not allow the change.
    #[error("{0}")]
    Transition(String),
}

impl Error {
    /// An invalid-argument error with a single violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

fn join(v: &[FieldViolation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks a human-readable name: trimmed, not empty, at most `max` characters, no control
/// characters. Returns the name as it will be stored.
pub fn check_name(field: &str, value: &str, max: usize) -> Result<String, FieldViolation> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldViolation::new(field, "must not be empty"));
    }
    let len = trimmed.chars().count();
    if len > max {
        return Err(FieldViolation::new(
            field,
            format!("has {len} characters, at most {max} are allowed"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}
