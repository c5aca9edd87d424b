//! Seals: a department's e-seal, its lifecycle, and the question "was seal S usable at T?".
//!
//! Lifecycle: `Pending` (collected) → `Active` (filed) → `Suspended` ⇄ `Active` → `Revoked`
//! with a reason. A revocation for key compromise carries the time of compromise: the seal is
//! unusable from that instant on, even for instants before the revocation was recorded.

use serde::{Deserialize, Serialize};

use crate::department::{Actor, Timestamp};
use crate::error::{Error, FieldViolation, check_name};
use crate::ids::CreditCode;

/// Longest seal name, in characters.
pub const MAX_SEAL_NAME: usize = 100;
/// Largest seal image, in bytes.
pub const MAX_SEAL_IMAGE: usize = 256 * 1024;

/// Kind of seal (印章类型).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealType {
    /// 公章.
    Official,
    /// 专用章, e.g. 行政审批专用章.
    SpecialPurpose,
    /// 合同章.
    Contract,
    /// 财务章.
    Finance,
    /// 个人名章.
    PersonalName,
}

/// Where a seal is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealStatus {
    /// Collected, not yet usable.
    Pending,
    /// Filed: usable within its validity window.
    Active,
    /// Temporarily unusable.
    Suspended,
    /// Never usable again.
    Revoked,
}

impl SealStatus {
    /// Lower-case name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SealStatus::Pending => "pending",
            SealStatus::Active => "active",
            SealStatus::Suspended => "suspended",
            SealStatus::Revoked => "revoked",
        }
    }
}

/// Why a seal was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// The private key may be known to others since `compromised_at`.
    KeyCompromise {
        /// From when the key is not trusted.
        compromised_at: Timestamp,
    },
    /// Replaced by another seal.
    Superseded,
    /// No longer used.
    Retired,
}

/// A change of a seal's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealAction {
    /// Pending → Active (filing).
    Activate,
    /// Active → Suspended.
    Suspend,
    /// Suspended → Active.
    Reinstate,
    /// Any but Revoked → Revoked.
    Revoke(RevocationReason),
}

/// One entry of a seal's history: who changed its status, when, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealEvent {
    /// When the change took effect.
    pub at: Timestamp,
    /// Who made it.
    pub by: Actor,
    /// The status from then on.
    pub status: SealStatus,
    /// For a revocation, why.
    pub revocation: Option<RevocationReason>,
    /// Free-text note of the actor.
    pub note: String,
}

/// The lifecycle part of a seal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealLifecycle {
    /// The owning department.
    pub department: CreditCode,
    /// Start of the validity window (ms since the epoch).
    pub not_before: Timestamp,
    /// End of the validity window (exclusive).
    pub not_after: Timestamp,
    /// Every status change, oldest first; the first is the registration (`Pending`).
    pub history: Vec<SealEvent>,
}

impl SealLifecycle {
    /// A newly registered seal.
    pub fn new(
        department: CreditCode,
        not_before: Timestamp,
        not_after: Timestamp,
        by: Actor,
        at: Timestamp,
    ) -> Result<Self, Error> {
        if not_after <= not_before {
            return Err(Error::invalid(
                "validity",
                "not_after must be later than not_before",
            ));
        }
        Ok(Self {
            department,
            not_before,
            not_after,
            history: vec![SealEvent {
                at,
                by,
                status: SealStatus::Pending,
                revocation: None,
                note: String::new(),
            }],
        })
    }

    /// The current status.
    pub fn status(&self) -> SealStatus {
        self.history
            .last()
            .map(|e| e.status)
            .unwrap_or(SealStatus::Pending)
    }

    /// Applies `action` at `at`; refuses a transition the current status does not allow, and a
    /// time earlier than the last change.
    pub fn apply(
        &mut self,
        action: SealAction,
        by: Actor,
        at: Timestamp,
        note: &str,
    ) -> Result<SealStatus, Error> {
        use SealStatus::{Active, Pending, Revoked, Suspended};
        let from = self.status();
        let (to, revocation) = match (from, action) {
            (Pending, SealAction::Activate) => (Active, None),
            (Active, SealAction::Suspend) => (Suspended, None),
            (Suspended, SealAction::Reinstate) => (Active, None),
            (Pending | Active | Suspended, SealAction::Revoke(r)) => (Revoked, Some(r)),
            (from, action) => {
                return Err(Error::Transition(format!(
                    "a {} seal cannot be {}",
                    from.as_str(),
                    match action {
                        SealAction::Activate => "activated",
                        SealAction::Suspend => "suspended",
                        SealAction::Reinstate => "reinstated",
                        SealAction::Revoke(_) => "revoked",
                    }
                )));
            }
        };
        if let Some(RevocationReason::KeyCompromise { compromised_at }) = revocation
            && compromised_at > at
        {
            return Err(Error::invalid(
                "compromised_at",
                "the time of compromise cannot be in the future of the revocation",
            ));
        }
        if self.history.last().is_some_and(|e| e.at > at) {
            return Err(Error::Transition(
                "a change cannot be dated before the seal's last change".into(),
            ));
        }
        let note = note.trim();
        if note.chars().count() > 500 {
            return Err(Error::invalid("note", "at most 500 characters"));
        }
        self.history.push(SealEvent {
            at,
            by,
            status: to,
            revocation,
            note: note.to_owned(),
        });
        Ok(to)
    }

    /// Whether a document signed at `t` was signed by a usable seal: inside the validity
    /// window, `Active` at `t`, and not at or after a recorded key compromise.
    pub fn usable_at(&self, t: Timestamp) -> bool {
        if t < self.not_before || t >= self.not_after {
            return false;
        }
        for e in &self.history {
            if let Some(RevocationReason::KeyCompromise { compromised_at }) = e.revocation
                && t >= compromised_at
            {
                return false;
            }
        }
        self.history
            .iter()
            .rev()
            .find(|e| e.at <= t)
            .is_some_and(|e| e.status == SealStatus::Active)
    }
}

/// The format of a seal image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// SVG without scripts.
    Svg,
}

/// Checks a seal image: PNG, or SVG without scripts or external references, at most
/// [`MAX_SEAL_IMAGE`] bytes.
pub fn check_seal_image(bytes: &[u8]) -> Result<ImageFormat, FieldViolation> {
    let bad = |m: &str| FieldViolation::new("image", m);
    if bytes.is_empty() {
        return Err(bad("a seal has an image"));
    }
    if bytes.len() > MAX_SEAL_IMAGE {
        return Err(bad(&format!(
            "{} bytes, at most {MAX_SEAL_IMAGE} are allowed",
            bytes.len()
        )));
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not a PNG or SVG image"))?;
    if !text.to_ascii_lowercase().contains("<svg") {
        return Err(bad("not a PNG or SVG image"));
    }
    // The image is shown on public pages: nothing in it may run or fetch.
    let active = regex::Regex::new(
        r#"(?i)<script|javascript:|<foreignobject|\son[a-z]+\s*=|href\s*=\s*["']?(https?:|//|data:)"#,
    )
    .expect("a valid pattern");
    if active.is_match(text) {
        return Err(bad(
            "an SVG seal image must not contain scripts, event handlers or external references",
        ));
    }
    Ok(ImageFormat::Svg)
}

/// Checks a seal's name and optional national seal code (1 to 32 of `0-9A-Z`).
pub fn check_seal_naming(
    name: &str,
    national_code: &str,
) -> Result<(String, Option<String>), Error> {
    let mut v = Vec::new();
    let name = check_name("name", name, MAX_SEAL_NAME)
        .map_err(|e| v.push(e))
        .ok();
    let code = national_code.trim();
    let code = if code.is_empty() {
        None
    } else if code.len() <= 32
        && code
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        Some(code.to_owned())
    } else {
        v.push(FieldViolation::new(
            "national_code",
            "1 to 32 characters of 0-9 and A-Z",
        ));
        None
    };
    match name {
        Some(n) if v.is_empty() => Ok((n, code)),
        _ => Err(Error::InvalidArgument(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::department::Role;

    fn actor() -> Actor {
        Actor {
            department: "11100000000013338W".parse().unwrap(),
            role: Role::Admin,
        }
    }

    fn seal() -> SealLifecycle {
        SealLifecycle::new(
            "11100000000013338W".parse().unwrap(),
            Timestamp(1_000),
            Timestamp(100_000),
            actor(),
            Timestamp(500),
        )
        .unwrap()
    }

    #[test]
    fn lifecycle_allows_only_its_transitions() {
        let mut s = seal();
        assert!(
            s.apply(SealAction::Suspend, actor(), Timestamp(600), "")
                .is_err()
        );
        assert_eq!(
            s.apply(SealAction::Activate, actor(), Timestamp(2_000), "filed")
                .unwrap(),
            SealStatus::Active
        );
        assert!(
            s.apply(SealAction::Activate, actor(), Timestamp(2_100), "")
                .is_err()
        );
        s.apply(SealAction::Suspend, actor(), Timestamp(3_000), "")
            .unwrap();
        assert!(
            s.apply(SealAction::Suspend, actor(), Timestamp(3_100), "")
                .is_err()
        );
        s.apply(SealAction::Reinstate, actor(), Timestamp(4_000), "")
            .unwrap();
        assert!(
            s.apply(SealAction::Suspend, actor(), Timestamp(3_500), "")
                .is_err(),
            "no back-dating"
        );
        s.apply(
            SealAction::Revoke(RevocationReason::Retired),
            actor(),
            Timestamp(5_000),
            "",
        )
        .unwrap();
        for a in [
            SealAction::Activate,
            SealAction::Reinstate,
            SealAction::Suspend,
        ] {
            assert!(
                s.apply(a, actor(), Timestamp(6_000), "").is_err(),
                "revoked is final"
            );
        }
        assert_eq!(s.history.len(), 5);
    }

    #[test]
    fn usable_at_follows_history_window_and_compromise() {
        let mut s = seal();
        s.apply(SealAction::Activate, actor(), Timestamp(2_000), "")
            .unwrap();
        s.apply(SealAction::Suspend, actor(), Timestamp(3_000), "")
            .unwrap();
        s.apply(SealAction::Reinstate, actor(), Timestamp(4_000), "")
            .unwrap();
        assert!(!s.usable_at(Timestamp(1_500)), "pending");
        assert!(s.usable_at(Timestamp(2_500)));
        assert!(!s.usable_at(Timestamp(3_500)), "suspended");
        assert!(s.usable_at(Timestamp(4_500)));
        assert!(!s.usable_at(Timestamp(100_000)), "window end is exclusive");
        s.apply(
            SealAction::Revoke(RevocationReason::KeyCompromise {
                compromised_at: Timestamp(4_200),
            }),
            actor(),
            Timestamp(9_000),
            "key leaked",
        )
        .unwrap();
        assert!(s.usable_at(Timestamp(4_100)), "before the compromise");
        assert!(!s.usable_at(Timestamp(4_200)), "from the compromise on");
        assert!(
            !s.usable_at(Timestamp(8_000)),
            "even before the revocation was recorded"
        );
        let mut future = seal();
        future
            .apply(SealAction::Activate, actor(), Timestamp(2_000), "")
            .unwrap();
        let e = future.apply(
            SealAction::Revoke(RevocationReason::KeyCompromise {
                compromised_at: Timestamp(9_999),
            }),
            actor(),
            Timestamp(3_000),
            "",
        );
        assert!(e.is_err());
    }

    #[test]
    fn images_are_png_or_harmless_svg() {
        assert_eq!(
            check_seal_image(b"\x89PNG\r\n\x1a\n....").unwrap(),
            ImageFormat::Png
        );
        assert_eq!(
            check_seal_image(br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><circle r="5"/></svg>"#).unwrap(),
            ImageFormat::Svg
        );
        assert!(check_seal_image(b"<svg><script>alert(1)</script></svg>").is_err());
        assert!(check_seal_image(br#"<svg onload="x()"></svg>"#).is_err());
        assert!(check_seal_image(br#"<svg><image href="http://evil/x.png"/></svg>"#).is_err());
        assert!(check_seal_image(b"GIF89a").is_err());
        assert!(check_seal_image(&vec![b' '; MAX_SEAL_IMAGE + 1]).is_err());
        assert!(check_seal_image(b"").is_err());
    }

    #[test]
    fn names_and_codes() {
        let (n, c) =
            check_seal_naming(" 厦门市市场监督管理局行政审批专用章 ", "3502000012345").unwrap();
        assert_eq!(n, "厦门市市场监督管理局行政审批专用章");
        assert_eq!(c.as_deref(), Some("3502000012345"));
        assert_eq!(check_seal_naming("章", "").unwrap().1, None);
        match check_seal_naming("", "x-1") {
            Err(Error::InvalidArgument(v)) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
