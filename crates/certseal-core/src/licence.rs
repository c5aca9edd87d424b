//! Licences: the signed document's claims (DESIGN.md, "Signed licence document"), the stored
//! status with its history, and the lifecycle rules.
//!
//! Lifecycle: `Active` ⇄ `Suspended`; `Active`/`Suspended` → `Revoked` (final);
//! `Active` → `Superseded` when an amendment or renewal replaces it (final). Expiry is not a
//! stored status: a licence is expired at instants at or after its `exp`.

use std::collections::BTreeMap;

use ciborium::Value;
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::department::{Actor, Timestamp};
use crate::error::{Error, FieldViolation, check_name};
use crate::ids::{CreditCode, LicenceId, ResidentId, TypeCode};
use crate::template::FieldValue;
use crate::uuid_id::SealId;

/// Content type in the protected header of a licence document.
pub const LICENCE_CONTENT_TYPE: &str = "application/certseal-licence+cbor; v=1";
/// Content type of a licence document signed by an SM2 seal (COSE alg -65537, private use):
/// the same claims, but verifiers of version 1 know no such algorithm and must refuse it.
pub const LICENCE_V2_CONTENT_TYPE: &str = "application/certseal-licence+cbor; v=2";

/// The content type a licence document signed with `alg` carries.
pub fn licence_content_type(alg: crate::SealAlgorithm) -> &'static str {
    match alg {
        crate::SealAlgorithm::Sm2 => LICENCE_V2_CONTENT_TYPE,
        crate::SealAlgorithm::Ed25519 | crate::SealAlgorithm::EcdsaP256 => LICENCE_CONTENT_TYPE,
    }
}
/// CWT claim key of the licence body.
pub const BODY_CLAIM: i64 = -70001;
/// Longest holder name, in characters.
pub const MAX_HOLDER_NAME: usize = 200;
/// Longest note or reason, in characters.
pub const MAX_NOTE: usize = 500;

/// Who a licence is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderKind {
    /// A person, identified by a resident ID (GB 11643).
    Person,
    /// An organisation, identified by a unified social credit code (GB 32100).
    Organisation,
}

impl HolderKind {
    /// The name used in the licence body.
    pub fn as_str(self) -> &'static str {
        match self {
            HolderKind::Person => "person",
            HolderKind::Organisation => "organisation",
        }
    }
}

/// The holder of a licence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Person or organisation.
    pub kind: HolderKind,
    /// Resident ID or credit code, checked.
    pub id: String,
    /// Name.
    pub name: String,
}

impl Holder {
    /// Checks a holder: the ID's check character for its kind, and the name.
    pub fn new(kind: HolderKind, id: &str, name: &str) -> Result<Self, Error> {
        let mut v = Vec::new();
        let id_ok = match kind {
            HolderKind::Person => id.parse::<ResidentId>().map(|r| r.to_string()),
            HolderKind::Organisation => id.parse::<CreditCode>().map(|c| c.to_string()),
        }
        .map_err(|e| v.push(FieldViolation::new("holder.id", e.0)))
        .ok();
        let name = check_name("holder.name", name, MAX_HOLDER_NAME)
            .map_err(|e| v.push(e))
            .ok();
        match (id_ok, name) {
            (Some(id), Some(name)) => Ok(Self { kind, id, name }),
            _ => Err(Error::InvalidArgument(v)),
        }
    }
}

/// The claims of a signed licence document: a CWT (RFC 8392) in deterministic CBOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceClaims {
    /// `1` iss: the issuing department.
    pub issuer: CreditCode,
    /// `4` exp (seconds), absent for licences without expiry.
    pub exp: Option<i64>,
    /// `5` nbf (seconds).
    pub nbf: i64,
    /// `6` iat (seconds).
    pub iat: i64,
    /// `7` cti: the licence ID.
    pub id: LicenceId,
    /// Body `type`.
    pub type_code: TypeCode,
    /// Body `tv`: template version.
    pub template_version: u32,
    /// Body `seal`.
    pub seal: SealId,
    /// Body `holder`.
    pub holder: Holder,
    /// Body `fields`, canonical values.
    pub fields: BTreeMap<String, FieldValue>,
    /// Body `prev`: the licence this one amends or renews.
    pub prev: Option<LicenceId>,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn field_value(v: &FieldValue) -> Value {
    match v {
        FieldValue::Text(t) => text(t),
        FieldValue::Integer(i) => Value::Integer((*i).into()),
        FieldValue::Boolean(b) => Value::Bool(*b),
    }
}

impl LicenceClaims {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut holder = vec![
            (text("kind"), text(self.holder.kind.as_str())),
            (text("id"), text(&self.holder.id)),
            (text("name"), text(&self.holder.name)),
        ];
        holder.sort_by_cached_key(|(k, _)| cbor::encode_value(k));
        let mut body = vec![
            (text("type"), text(self.type_code.as_str())),
            (text("tv"), Value::Integer(self.template_version.into())),
            (text("seal"), text(&self.seal.to_string())),
            (text("holder"), Value::Map(holder)),
            (
                text("fields"),
                Value::Map(
                    self.fields
                        .iter()
                        .map(|(k, v)| (text(k), field_value(v)))
                        .collect(),
                ),
            ),
        ];
        if let Some(prev) = &self.prev {
            body.push((text("prev"), text(prev.as_str())));
        }
        let mut claims = vec![
            (Value::Integer(1.into()), text(self.issuer.as_str())),
            (Value::Integer(5.into()), Value::Integer(self.nbf.into())),
            (Value::Integer(6.into()), Value::Integer(self.iat.into())),
            (
                Value::Integer(7.into()),
                Value::Bytes(self.id.as_str().as_bytes().to_vec()),
            ),
            (Value::Integer(BODY_CLAIM.into()), Value::Map(body)),
        ];
        if let Some(exp) = self.exp {
            claims.push((Value::Integer(4.into()), Value::Integer(exp.into())));
        }
        cbor::encode_value(&cbor::canonicalize(Value::Map(claims)))
    }

    /// Reads a payload: deterministic CBOR with exactly the claims above, each well formed.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let v = cbor::decode_canonical(bytes)?;
        let Value::Map(claims) = v else {
            return Err("the payload is not a CBOR map".into());
        };
        let mut by_key: BTreeMap<i64, Value> = BTreeMap::new();
        for (k, v) in claims {
            let k = k
                .as_integer()
                .and_then(|i| i64::try_from(i).ok())
                .ok_or("claim keys are integers")?;
            if ![1, 4, 5, 6, 7, BODY_CLAIM].contains(&k) {
                return Err(format!("unknown claim {k}"));
            }
            by_key.insert(k, v);
        }
        let int = |k: i64| -> Result<Option<i64>, String> {
            by_key
                .get(&k)
                .map(|v| {
                    v.as_integer()
                        .and_then(|i| i64::try_from(i).ok())
                        .ok_or(format!("claim {k} is not an integer"))
                })
                .transpose()
        };
        let issuer: CreditCode = by_key
            .get(&1)
            .and_then(Value::as_text)
            .ok_or("no issuer (claim 1)")?
            .parse()
            .map_err(|e: crate::IdError| format!("issuer: {e}"))?;
        let id: LicenceId = by_key
            .get(&7)
            .and_then(Value::as_bytes)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or("no licence ID (claim 7)")?
            .parse()
            .map_err(|e: crate::IdError| format!("licence ID: {e}"))?;
        let body = by_key
            .get(&BODY_CLAIM)
            .and_then(Value::as_map)
            .ok_or("no licence body (claim -70001)")?;
        let get = |name: &str| {
            body.iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .map(|(_, v)| v)
        };
        for (k, _) in body {
            let known = ["type", "tv", "seal", "holder", "fields", "prev"];
            if !k.as_text().is_some_and(|t| known.contains(&t)) {
                return Err(format!("unknown body key {k:?}"));
            }
        }
        let body_text = |name: &str| -> Result<&str, String> {
            get(name)
                .and_then(Value::as_text)
                .ok_or(format!("body '{name}' is missing or not text"))
        };
        let holder = get("holder")
            .and_then(Value::as_map)
            .ok_or("body 'holder' is missing")?;
        let holder_text = |name: &str| -> Result<&str, String> {
            holder
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .and_then(|(_, v)| v.as_text())
                .ok_or(format!("holder '{name}' is missing"))
        };
        if holder.len() != 3 {
            return Err("the holder has exactly kind, id and name".into());
        }
        let kind = match holder_text("kind")? {
            "person" => HolderKind::Person,
            "organisation" => HolderKind::Organisation,
            other => return Err(format!("holder kind '{other}'")),
        };
        let holder = Holder::new(kind, holder_text("id")?, holder_text("name")?)
            .map_err(|e| format!("holder: {e}"))?;
        let mut fields = BTreeMap::new();
        for (k, v) in get("fields")
            .and_then(Value::as_map)
            .ok_or("body 'fields' is missing")?
        {
            let name = k.as_text().ok_or("field names are text")?;
            let value = match v {
                Value::Text(t) => FieldValue::Text(t.clone()),
                Value::Bool(b) => FieldValue::Boolean(*b),
                Value::Integer(i) => FieldValue::Integer(
                    i64::try_from(*i).map_err(|_| format!("field {name}: integer out of range"))?,
                ),
                _ => return Err(format!("field {name}: text, integer or boolean")),
            };
            fields.insert(name.to_owned(), value);
        }
        let claims = Self {
            issuer,
            exp: int(4)?,
            nbf: int(5)?.ok_or("no nbf (claim 5)")?,
            iat: int(6)?.ok_or("no iat (claim 6)")?,
            type_code: body_text("type")?
                .parse()
                .map_err(|e: crate::IdError| format!("type: {e}"))?,
            template_version: get("tv")
                .and_then(Value::as_integer)
                .and_then(|i| u32::try_from(i).ok())
                .ok_or("body 'tv' is missing or not a version")?,
            seal: body_text("seal")?
                .parse()
                .map_err(|e: crate::IdError| format!("seal: {e}"))?,
            holder,
            fields,
            prev: get("prev")
                .map(|v| {
                    v.as_text()
                        .ok_or("body 'prev' is not text".to_owned())?
                        .parse()
                        .map_err(|e: crate::IdError| format!("prev: {e}"))
                })
                .transpose()?,
            id,
        };
        // A region-code ID (formats 1.1) does not name the department: `iss` does.
        if !claims.id.admits_iss(&claims.issuer) || claims.id.type_code() != claims.type_code {
            return Err("the licence ID names another issuer or type than the claims".into());
        }
        Ok(claims)
    }
}

/// A licence's status as stored. Expiry is derived from the validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceStatus {
    /// In force within its validity window.
    Active,
    /// Temporarily not in force.
    Suspended,
    /// Withdrawn for good.
    Revoked,
    /// Replaced by an amendment or renewal (`next`).
    Superseded,
}

impl LicenceStatus {
    /// Lower-case name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            LicenceStatus::Active => "active",
            LicenceStatus::Suspended => "suspended",
            LicenceStatus::Revoked => "revoked",
            LicenceStatus::Superseded => "superseded",
        }
    }
}

/// Why a licence was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceRevocationReason {
    /// Issued in error (错误颁发).
    IssuedInError,
    /// Withdrawn by the issuer (撤销).
    Withdrawn,
    /// Cancelled at the holder's request or because the holder ceased (注销).
    Cancelled,
    /// Another reason, in the note.
    Other,
    /// Revoked as an administrative penalty (吊销), distinct from a withdrawal.
    Penalty,
    /// Lapsed: no longer valid because its conditions ended (失效).
    Lapsed,
}

impl LicenceRevocationReason {
    /// Every reason.
    pub const ALL: [Self; 6] = [
        Self::IssuedInError,
        Self::Withdrawn,
        Self::Cancelled,
        Self::Other,
        Self::Penalty,
        Self::Lapsed,
    ];

    /// The reason with this code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Its code, as serialised (and in a status list of version 2).
    pub fn code(self) -> &'static str {
        match self {
            Self::IssuedInError => "issued_in_error",
            Self::Withdrawn => "withdrawn",
            Self::Cancelled => "cancelled",
            Self::Other => "other",
            Self::Penalty => "penalty",
            Self::Lapsed => "lapsed",
        }
    }

    /// The term the national sharing platforms use for a revocation for this reason.
    pub fn national_term(self) -> &'static str {
        match self {
            Self::IssuedInError | Self::Withdrawn => "撤销",
            Self::Cancelled => "注销",
            Self::Penalty => "吊销",
            Self::Lapsed | Self::Other => "失效",
        }
    }
}

/// A change of a licence's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenceAction {
    /// Active → Suspended.
    Suspend,
    /// Suspended → Active.
    Reinstate,
    /// Active or Suspended → Revoked.
    Revoke(LicenceRevocationReason),
    /// Active → Superseded (by an amendment or renewal).
    Supersede,
}

/// One entry of a licence's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenceEvent {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub by: Actor,
    /// The status from then on.
    pub status: LicenceStatus,
    /// For a revocation, why.
    pub reason: Option<LicenceRevocationReason>,
    /// The actor's note (for a supersession: the new licence's ID).
    pub note: String,
    /// Set when the change was decided upstream and applied by a sharing platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
}

/// A change decided on an upstream platform (回流), as applied here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The platform or authority that decided it.
    pub source: String,
    /// Its reference of the decision.
    pub reference: String,
    /// When it was decided there.
    pub decided_at: Timestamp,
}

/// The stored state of a licence. The signed document is stored apart, under its SHA-256
/// (`document_digest`), as the record the audit log commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    /// Licence ID.
    pub id: LicenceId,
    /// Licence type.
    pub type_code: TypeCode,
    /// Template version it was issued from.
    pub template_version: u32,
    /// Issuing department.
    pub issuer: CreditCode,
    /// The seal that signed it.
    pub seal: SealId,
    /// Holder kind.
    pub holder_kind: HolderKind,
    /// Holder ID (resident ID or credit code), for the holder index.
    pub holder_id: String,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity (exclusive); `None`: no expiry.
    pub not_after: Option<Timestamp>,
    /// SHA-256 of the signed document.
    #[serde(with = "crate::bytes")]
    pub document_digest: Vec<u8>,
    /// The licence this one amends or renews.
    pub prev: Option<LicenceId>,
    /// The licence that amends or renews this one.
    pub next: Option<LicenceId>,
    /// Status changes, oldest first; the first is the issue.
    pub history: Vec<LicenceEvent>,
    /// For a licence collected under the ID another platform gave it: where and when it was
    /// first issued. Absent from records written before collection existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected: Option<Collected>,
}

/// Longest name of the platform or authority that first issued a collected licence.
pub const MAX_COLLECTED_SOURCE: usize = 200;

/// Where and when a collected licence was first issued (归集: it keeps its existing ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collected {
    /// The platform or authority that first issued it.
    pub source: String,
    /// When it first issued it.
    pub first_issued_at: Timestamp,
}

impl Collected {
    /// Checks the source (1 to 200 characters, no control characters) and that the first
    /// issue is not after `now`.
    pub fn new(source: &str, first_issued_at: Timestamp, now: Timestamp) -> Result<Self, Error> {
        let mut v = Vec::new();
        let source = source.trim();
        if source.is_empty()
            || source.chars().count() > MAX_COLLECTED_SOURCE
            || source.chars().any(char::is_control)
        {
            v.push(FieldViolation::new(
                "collected.source",
                format!("1 to {MAX_COLLECTED_SOURCE} characters without control characters"),
            ));
        }
        if first_issued_at > now {
            v.push(FieldViolation::new(
                "collected.first_issued_at",
                "must not be in the future",
            ));
        }
        if v.is_empty() {
            Ok(Self {
                source: source.to_owned(),
                first_issued_at,
            })
        } else {
            Err(Error::InvalidArgument(v))
        }
    }
}

impl Licence {
    /// The stored status.
    pub fn status(&self) -> LicenceStatus {
        self.history
            .last()
            .map_or(LicenceStatus::Active, |e| e.status)
    }

    /// Whether the validity window has ended at `t`.
    pub fn expired_at(&self, t: Timestamp) -> bool {
        self.not_after.is_some_and(|end| t >= end)
    }

    /// Applies `action` at `at`, refusing what the current status does not allow. A revoked
    /// or superseded licence never changes again.
    pub fn apply(
        &mut self,
        action: LicenceAction,
        by: Actor,
        at: Timestamp,
        note: &str,
    ) -> Result<LicenceStatus, Error> {
        use LicenceStatus::{Active, Revoked, Superseded, Suspended};
        let from = self.status();
        let (to, reason) = match (from, action) {
            (Active, LicenceAction::Suspend) => (Suspended, None),
            (Suspended, LicenceAction::Reinstate) => (Active, None),
            (Active | Suspended, LicenceAction::Revoke(r)) => (Revoked, Some(r)),
            (Active, LicenceAction::Supersede) => (Superseded, None),
            (from, action) => {
                return Err(Error::Transition(format!(
                    "licence {} is {} and cannot be {}",
                    self.id,
                    from.as_str(),
                    match action {
                        LicenceAction::Suspend => "suspended",
                        LicenceAction::Reinstate => "reinstated",
                        LicenceAction::Revoke(_) => "revoked",
                        LicenceAction::Supersede => "amended or renewed",
                    }
                )));
            }
        };
        let note = note.trim();
        if note.chars().count() > MAX_NOTE {
            return Err(Error::invalid("note", "at most 500 characters"));
        }
        // Who and when are recorded by the registry; why is the caller's to say.
        if note.is_empty() && action != LicenceAction::Supersede {
            return Err(Error::invalid(
                "note",
                "say why: suspensions, reinstatements and revocations keep a note",
            ));
        }
        // History never goes backwards, even if the clock does.
        let at = self.history.last().map_or(at, |e| e.at.max(at));
        self.history.push(LicenceEvent {
            at,
            by,
            status: to,
            reason,
            note: note.to_owned(),
            upstream: None,
        });
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::department::Role;

    #[test]
    fn revocation_reasons_speak_the_national_vocabulary() {
        use LicenceRevocationReason as R;
        let all = [
            (R::IssuedInError, "issued_in_error", "撤销"),
            (R::Withdrawn, "withdrawn", "撤销"),
            (R::Cancelled, "cancelled", "注销"),
            (R::Penalty, "penalty", "吊销"),
            (R::Lapsed, "lapsed", "失效"),
            (R::Other, "other", "失效"),
        ];
        for (reason, code, term) in all {
            assert_eq!((reason.code(), reason.national_term()), (code, term));
            assert_eq!(R::from_code(code), Some(reason));
            // The code is how the reason is stored and listed.
            let stored = crate::cbor::to_canonical(&reason).unwrap();
            assert_eq!(crate::cbor::from_canonical::<R>(&stored).unwrap(), reason);
        }
    }

    fn claims() -> LicenceClaims {
        let issuer: CreditCode = "11100000000013338W".parse().unwrap();
        let type_code: TypeCode = "11100000000013338W001".parse().unwrap();
        LicenceClaims {
            id: LicenceId::new(&type_code, &issuer, "0ABC", 1).unwrap(),
            issuer,
            exp: Some(2_000_000_000),
            nbf: 1_700_000_000,
            iat: 1_700_000_100,
            type_code,
            template_version: 2,
            seal: SealId::new(1_700_000_000_000, &[3; 10]),
            holder: Holder::new(HolderKind::Person, "11010519491231002X", "张三").unwrap(),
            fields: BTreeMap::from([
                ("capital".to_owned(), FieldValue::Text("12.50".into())),
                ("staff".to_owned(), FieldValue::Integer(12)),
                ("chain".to_owned(), FieldValue::Boolean(false)),
            ]),
            prev: None,
        }
    }

    #[test]
    fn claims_round_trip_in_one_encoding_with_integer_claim_keys() {
        let c = claims();
        let bytes = c.encode();
        assert_eq!(LicenceClaims::decode(&bytes).unwrap(), c);
        // A map of 6 claims (exp present), keys 1, 4, 5, 6, 7 first (shorter encodings).
        assert_eq!(bytes[0], 0xa6);
        assert_eq!(&bytes[1..3], &[0x01, 0x72]);
        let mut no_exp = c.clone();
        no_exp.exp = None;
        no_exp.prev = Some(c.id.clone());
        assert_eq!(
            LicenceClaims::decode(&no_exp.encode()).unwrap(),
            no_exp,
            "absent claims are left out"
        );
        assert!(LicenceClaims::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(LicenceClaims::decode(b"\xa0").is_err());
    }

    #[test]
    fn holders_are_checked_by_kind() {
        assert!(Holder::new(HolderKind::Person, "11010519491231002X", "张三").is_ok());
        let e = Holder::new(HolderKind::Person, "110105194912310021", " ").unwrap_err();
        let Error::InvalidArgument(v) = e else {
            panic!()
        };
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(Holder::new(HolderKind::Organisation, "11010519491231002X", "x").is_err());
    }

    #[test]
    fn lifecycle_allows_only_its_transitions() {
        let actor = Actor {
            department: "11100000000013338W".parse().unwrap(),
            role: Role::Issuer,
        };
        let c = claims();
        let mut l = Licence {
            id: c.id.clone(),
            type_code: c.type_code.clone(),
            template_version: 2,
            issuer: c.issuer.clone(),
            seal: c.seal,
            holder_kind: HolderKind::Person,
            holder_id: c.holder.id.clone(),
            issued_at: Timestamp(10),
            not_before: Timestamp(0),
            not_after: Some(Timestamp(100)),
            document_digest: vec![0; 32],
            prev: None,
            next: None,
            history: vec![LicenceEvent {
                at: Timestamp(10),
                by: actor.clone(),
                status: LicenceStatus::Active,
                reason: None,
                note: String::new(),
                upstream: None,
            }],
            collected: None,
        };
        let a = |l: &mut Licence, act| l.apply(act, actor.clone(), Timestamp(20), "n");
        assert!(a(&mut l, LicenceAction::Reinstate).is_err());
        assert_eq!(
            a(&mut l, LicenceAction::Suspend).unwrap(),
            LicenceStatus::Suspended
        );
        assert!(a(&mut l, LicenceAction::Supersede).is_err(), "suspended");
        assert_eq!(
            a(&mut l, LicenceAction::Reinstate).unwrap(),
            LicenceStatus::Active
        );
        assert!(
            l.apply(
                LicenceAction::Revoke(LicenceRevocationReason::Other),
                actor.clone(),
                Timestamp(30),
                ""
            )
            .is_err(),
            "a revocation needs a note"
        );
        assert_eq!(
            a(
                &mut l,
                LicenceAction::Revoke(LicenceRevocationReason::Withdrawn)
            )
            .unwrap(),
            LicenceStatus::Revoked
        );
        for act in [
            LicenceAction::Reinstate,
            LicenceAction::Suspend,
            LicenceAction::Supersede,
            LicenceAction::Revoke(LicenceRevocationReason::Cancelled),
        ] {
            assert!(a(&mut l, act).is_err(), "revoked is final");
        }
        assert!(l.expired_at(Timestamp(100)) && !l.expired_at(Timestamp(99)));
    }
}
