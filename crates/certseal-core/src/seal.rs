//! Seals: a department's e-seal, its lifecycle, and the question "was seal S usable at T?".
//!
//! Lifecycle: `Pending` (collected) → `Active` (filed) → `Suspended` ⇄ `Active` → `Revoked`
//! with a reason. A revocation for key compromise carries the time of compromise: the seal is
//! unusable from that instant on, even for instants before the revocation was recorded.

use serde::{Deserialize, Serialize};

use crate::department::{Actor, Timestamp};
use crate::error::{Error, FieldViolation, check_name};
use crate::ids::CreditCode;
use crate::uuid_id::SealId;

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
        usable_at(
            self.not_before,
            self.not_after,
            self.history.iter().map(|e| (e.at, e.status, e.revocation)),
            t,
        )
    }

    /// Whether the seal was usable at `t`, and if not, why.
    pub fn usability_at(&self, t: Timestamp) -> Usability {
        usability_at(
            self.not_before,
            self.not_after,
            self.history.iter().map(|e| (e.at, e.status, e.revocation)),
            t,
        )
    }
}

/// Whether a seal was usable at an instant, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    /// Usable.
    Usable,
    /// Before the start of the validity window.
    NotYetValid,
    /// At or after the end of the validity window.
    Expired,
    /// Its key was compromised from this instant on.
    KeyCompromised(Timestamp),
    /// Not active at that instant: its status then (`None` before registration).
    NotActive(Option<SealStatus>),
}

impl Usability {
    /// Why the seal was not usable, in words; empty when it was.
    pub fn describe(&self) -> String {
        match self {
            Usability::Usable => String::new(),
            Usability::NotYetValid => "before the seal's validity window".into(),
            Usability::Expired => "after the seal's validity window".into(),
            Usability::KeyCompromised(t) => {
                format!("the seal's key is compromised since {} ms", t.0)
            }
            Usability::NotActive(None) => "before the seal was registered".into(),
            Usability::NotActive(Some(s)) => format!("the seal was {} then", s.as_str()),
        }
    }
}

/// The rule of [`SealLifecycle::usable_at`] over any history of `(at, status, revocation)`,
/// oldest first (the trust list carries the same history without who and why).
pub fn usability_at(
    not_before: Timestamp,
    not_after: Timestamp,
    history: impl Iterator<Item = (Timestamp, SealStatus, Option<RevocationReason>)> + Clone,
    t: Timestamp,
) -> Usability {
    if t < not_before {
        return Usability::NotYetValid;
    }
    if t >= not_after {
        return Usability::Expired;
    }
    for (_, _, revocation) in history.clone() {
        if let Some(RevocationReason::KeyCompromise { compromised_at }) = revocation
            && t >= compromised_at
        {
            return Usability::KeyCompromised(compromised_at);
        }
    }
    let mut status_at_t = None;
    for (at, status, _) in history {
        if at <= t {
            status_at_t = Some(status);
        }
    }
    match status_at_t {
        Some(SealStatus::Active) => Usability::Usable,
        other => Usability::NotActive(other),
    }
}

/// Whether a seal with this history was usable at `t`.
pub fn usable_at(
    not_before: Timestamp,
    not_after: Timestamp,
    history: impl Iterator<Item = (Timestamp, SealStatus, Option<RevocationReason>)> + Clone,
    t: Timestamp,
) -> bool {
    usability_at(not_before, not_after, history, t) == Usability::Usable
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
    if !text.contains("svg") {
        return Err(bad("not a PNG or SVG image"));
    }
    check_svg(text).map_err(|m| bad(&m))?;
    Ok(ImageFormat::Svg)
}

const SVG_NS: &str = "http://www.w3.org/2000/svg";
const XLINK_NS: &str = "http://www.w3.org/1999/xlink";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// SVG elements a seal image may hold: shapes, text, gradients, clips, masks and a few filters.
/// Nothing that runs, fetches, animates or embeds another document.
const SVG_ELEMENTS: &[&str] = &[
    "svg",
    "g",
    "defs",
    "title",
    "desc",
    "symbol",
    "use",
    "path",
    "rect",
    "circle",
    "ellipse",
    "line",
    "polyline",
    "polygon",
    "text",
    "tspan",
    "textPath",
    "linearGradient",
    "radialGradient",
    "stop",
    "clipPath",
    "mask",
    "pattern",
    "filter",
    "feGaussianBlur",
    "feOffset",
    "feBlend",
    "feColorMatrix",
    "feFlood",
    "feComposite",
    "feMerge",
    "feMergeNode",
    "feMorphology",
    "feTurbulence",
    "feDisplacementMap",
];

/// Attributes (without a namespace) allowed on them: geometry, paint, text and filter
/// parameters. No event handlers, no `style`, no animation targets.
const SVG_ATTRIBUTES: &[&str] = &[
    "id",
    "class",
    "version",
    "baseProfile",
    "viewBox",
    "preserveAspectRatio",
    "x",
    "y",
    "x1",
    "y1",
    "x2",
    "y2",
    "cx",
    "cy",
    "r",
    "rx",
    "ry",
    "fx",
    "fy",
    "width",
    "height",
    "d",
    "points",
    "transform",
    "href",
    "fill",
    "fill-opacity",
    "fill-rule",
    "stroke",
    "stroke-width",
    "stroke-opacity",
    "stroke-linecap",
    "stroke-linejoin",
    "stroke-miterlimit",
    "stroke-dasharray",
    "stroke-dashoffset",
    "opacity",
    "color",
    "display",
    "visibility",
    "vector-effect",
    "paint-order",
    "shape-rendering",
    "text-rendering",
    "font-family",
    "font-size",
    "font-weight",
    "font-style",
    "text-anchor",
    "dominant-baseline",
    "alignment-baseline",
    "letter-spacing",
    "word-spacing",
    "writing-mode",
    "dx",
    "dy",
    "rotate",
    "textLength",
    "lengthAdjust",
    "startOffset",
    "offset",
    "stop-color",
    "stop-opacity",
    "gradientUnits",
    "gradientTransform",
    "spreadMethod",
    "clip-path",
    "clip-rule",
    "mask",
    "clipPathUnits",
    "maskUnits",
    "maskContentUnits",
    "patternUnits",
    "patternContentUnits",
    "patternTransform",
    "filter",
    "filterUnits",
    "primitiveUnits",
    "in",
    "in2",
    "result",
    "stdDeviation",
    "mode",
    "operator",
    "k1",
    "k2",
    "k3",
    "k4",
    "values",
    "type",
    "scale",
    "xChannelSelector",
    "yChannelSelector",
    "baseFrequency",
    "numOctaves",
    "seed",
    "stitchTiles",
    "flood-color",
    "flood-opacity",
    "radius",
];

/// Parses an SVG as XML and allows only listed elements and attributes in the SVG namespace,
/// and references only inside the image (`#id`). The image is shown on public pages: nothing
/// in it may run or fetch, however it is spelled (prefixes, entities, case).
fn check_svg(text: &str) -> Result<(), String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 100_000,
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| {
        format!("an SVG seal image must be well-formed XML without a DTD or entities ({e})")
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "svg" {
        return Err("an SVG seal image has <svg> as its root element".into());
    }
    for node in doc.descendants() {
        if node.is_pi() {
            return Err("an SVG seal image must not hold processing instructions".into());
        }
        if !node.is_element() {
            continue;
        }
        let tag = node.tag_name();
        let svg = matches!(tag.namespace(), None | Some(SVG_NS));
        if !svg || !SVG_ELEMENTS.contains(&tag.name()) {
            return Err(format!(
                "an SVG seal image may hold only shapes, text, gradients, clips, masks and filters: element <{}>{} is not allowed",
                tag.name(),
                tag.namespace()
                    .map_or(String::new(), |ns| format!(" of namespace {ns}"))
            ));
        }
        for a in node.attributes() {
            let allowed = match a.namespace() {
                None => SVG_ATTRIBUTES.contains(&a.name()),
                Some(XLINK_NS) => a.name() == "href",
                Some(XML_NS) => a.name() == "space" || a.name() == "lang",
                Some(_) => false,
            };
            if !allowed {
                return Err(format!(
                    "attribute {}{} on <{}> is not allowed in an SVG seal image (no scripts, event handlers, styles or foreign attributes)",
                    a.name(),
                    a.namespace()
                        .map_or(String::new(), |ns| format!(" of namespace {ns}")),
                    tag.name()
                ));
            }
            if !references_are_local(a.name(), a.value()) {
                return Err(format!(
                    "an SVG seal image may only reference its own elements (href=\"#id\", url(#id)): {}=\"{}\"",
                    a.name(),
                    a.value().chars().take(80).collect::<String>()
                ));
            }
        }
    }
    Ok(())
}

/// Whether an attribute's references stay in the image: `href` is `#id`, and every `url(…)`
/// is `url(#id)`.
fn references_are_local(name: &str, value: &str) -> bool {
    let local = |target: &str| {
        let t = target.trim().trim_matches(['"', '\'']);
        t.starts_with('#')
            && t[1..]
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    };
    if name == "href" && !local(value) {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("url(") {
        rest = &rest[i + 4..];
        let Some(end) = rest.find(')') else {
            return false;
        };
        if !local(&rest[..end]) {
            return false;
        }
        rest = &rest[end + 1..];
    }
    true
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

/// Signature algorithm of a seal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealAlgorithm {
    /// Ed25519 (COSE alg -8). The default.
    Ed25519,
    /// ECDSA P-256 with SHA-256 (COSE alg -7).
    EcdsaP256,
    /// SM2 with SM3 (GB/T 32918, default distinguishing ID; COSE alg -65537, private use).
    Sm2,
}

impl SealAlgorithm {
    /// The COSE algorithm identifier.
    pub fn cose_alg(self) -> i64 {
        match self {
            SealAlgorithm::Ed25519 => -8,
            SealAlgorithm::EcdsaP256 => -7,
            SealAlgorithm::Sm2 => -65537,
        }
    }
}

/// Where a seal's certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// Issued by the registry's seal CA at registration.
    RegistryCa,
    /// Issued by an external CA from the seal's CSR and imported.
    External,
}

/// A registered seal. The private key is not part of the record: it is stored sealed under
/// the key-encryption key, apart from everything that is read or logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The seal's ID (UUIDv7).
    pub id: SealId,
    /// Seal name, e.g. "厦门市市场监督管理局行政审批专用章".
    pub name: String,
    /// Kind of seal.
    pub seal_type: SealType,
    /// National seal code (全国统一印章编码), when it has one.
    pub national_code: Option<String>,
    /// SHA-256 of the seal image; the image is stored once under it.
    #[serde(with = "crate::bytes")]
    pub image_digest: Vec<u8>,
    /// Image format.
    pub image_format: ImageFormat,
    /// Key algorithm.
    pub algorithm: SealAlgorithm,
    /// Raw public key (Ed25519: 32 bytes; P-256 and SM2: 65-byte uncompressed point).
    #[serde(with = "crate::bytes")]
    pub public_key: Vec<u8>,
    /// The seal certificate (DER), once issued or imported.
    #[serde(with = "crate::bytes::option")]
    pub certificate: Option<Vec<u8>>,
    /// Where the certificate came from.
    pub certificate_source: Option<CertificateSource>,
    /// Intermediate CA certificates (DER) between an imported certificate and its anchor.
    #[serde(default)]
    pub intermediates: Vec<crate::trust_list::serde_bytes_vec::Der>,
    /// Owner, validity window and status history.
    pub lifecycle: SealLifecycle,
    /// The GB/T 38540 seal (SESeal v4, DER) of an SM2 seal, made by the registry's SM2 seal
    /// CA once the seal's certificate is known.
    #[serde(
        default,
        with = "crate::bytes::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub esl: Option<Vec<u8>>,
}

impl Seal {
    /// The current status.
    pub fn status(&self) -> SealStatus {
        self.lifecycle.status()
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
        assert!(check_seal_image(br#"<svg><a href="&#106;avascript:x()">s</a></svg>"#).is_err());
        assert!(check_seal_image(br#"<svg><a xlink:href=data:text/html,x>s</a></svg>"#).is_err());
        assert!(
            check_seal_image(br#"<svg><style>@import url(https://evil/x.css);</style></svg>"#)
                .is_err()
        );
        assert!(check_seal_image(br#"<svg><rect fill="url(https://evil/p)"/></svg>"#).is_err());
        assert!(
            check_seal_image(
                br##"<svg><a href="#x"><animate attributeName="href" values="javascript:x()"/></a></svg>"##
            )
            .is_err()
        );
        assert!(check_seal_image(br#"<!DOCTYPE svg [<!ENTITY a "b">]><svg>&a;</svg>"#).is_err());
        // Prefixed elements in the SVG namespace are the same elements (seen in a review).
        for svg in [
            r#"<svg xmlns="http://www.w3.org/2000/svg"><x:script xmlns:x="http://www.w3.org/2000/svg">alert(1)</x:script></svg>"#,
            r#"<x:svg xmlns:x="http://www.w3.org/2000/svg"><x:foreignObject><div/></x:foreignObject></x:svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><h:iframe xmlns:h="http://www.w3.org/1999/xhtml" src="https://evil/"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><circle r="5" ONLOAD="x()"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><circle r="5" style="fill:url(https://evil/)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:l="http://www.w3.org/1999/xlink"><use l:href="https://evil/x.svg#a"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><use href=" #a"/><use href="data:image/svg+xml,x"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><set attributeName="href" to="javascript:x()"/></svg>"#,
            r#"<?xml-stylesheet href="https://evil/x.css"?><svg xmlns="http://www.w3.org/2000/svg"/>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect"#,
            r#"<html><svg/></html>"#,
        ] {
            let e = check_seal_image(svg.as_bytes());
            assert!(e.is_err(), "{svg}");
        }
        // An ordinary seal drawing, with a prefix and xlink, passes.
        assert_eq!(
            check_seal_image(
                r##"<?xml version="1.0" encoding="UTF-8"?>
<s:svg xmlns:s="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 200 200">
  <!-- 公章 -->
  <s:defs><s:path id="arc" d="M 30 100 A 70 70 0 1 1 170 100"/></s:defs>
  <s:circle cx="100" cy="100" r="90" fill="none" stroke="#d00" stroke-width="6"/>
  <s:text font-size="20" fill="#d00"><s:textPath xlink:href="#arc">厦门市市场监督管理局</s:textPath></s:text>
  <s:polygon points="100,70 110,95 90,95" fill="url(#arc)"/>
</s:svg>"##
                    .as_bytes()
            )
            .unwrap(),
            ImageFormat::Svg
        );
        // Local references are fine.
        assert_eq!(
            check_seal_image(
                br##"<svg><defs><path id="p"/></defs><use href="#p"/><rect fill="url(#g)"/></svg>"##
            )
            .unwrap(),
            ImageFormat::Svg
        );
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
