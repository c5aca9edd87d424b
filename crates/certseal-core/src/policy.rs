//! The sharing policy: what each department may do beyond what its role names.
//!
//! A department holds roles, and grants: which licence types it may issue (and with which of
//! its own seals), and which types it may verify or read, for which purposes, seeing which
//! fields. Nothing is allowed that is not granted; the registry checks it on every call.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldViolation};
use crate::ids::{CreditCode, RegionCode, TypeCode};
use crate::template::check_field_name;
use crate::uuid_id::SealId;
use crate::{Actor, Role, Timestamp};

/// Most grants of each kind one department holds.
pub const MAX_GRANTS: usize = 1_000;
/// Most seals, purposes or fields one grant names.
pub const MAX_GRANT_ITEMS: usize = 256;
/// Longest purpose code, in characters.
pub const MAX_PURPOSE_CODE: usize = 64;

/// Permission to issue licences of one type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueGrant {
    /// The licence type.
    pub type_code: TypeCode,
    /// The department's seals that may sign it; empty means any of its own seals.
    pub seals: BTreeSet<SealId>,
    /// Regions for which the department is the collecting authority of this type: it alone
    /// may collect licences whose existing ID has one of these region codes in the issuer
    /// position (docs/formats.md, "Licence ID, addition 1.1"). Absent from policies written
    /// before collection existed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub collect_regions: BTreeSet<RegionCode>,
}

/// Permission to verify and read licences of one type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadGrant {
    /// The licence type.
    pub type_code: TypeCode,
    /// Purpose codes a check may state; empty means any configured purpose.
    pub purposes: BTreeSet<String>,
    /// Fields shown beyond those the template marks public.
    pub fields: FieldAccess,
}

/// Which fields of a licence a reader sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAccess {
    /// The public fields and these.
    Named(BTreeSet<String>),
    /// Every field.
    All,
}

impl FieldAccess {
    /// Whether a field that is not public is shown.
    pub fn shows(&self, field: &str) -> bool {
        match self {
            FieldAccess::All => true,
            FieldAccess::Named(names) => names.contains(field),
        }
    }
}

impl ReadGrant {
    /// Whether a check may state `purpose_code`.
    pub fn allows_purpose(&self, purpose_code: &str) -> bool {
        self.purposes.is_empty() || self.purposes.contains(purpose_code)
    }
}

impl IssueGrant {
    /// Whether `seal` may sign licences of this type.
    pub fn allows_seal(&self, seal: &SealId) -> bool {
        self.seals.is_empty() || self.seals.contains(seal)
    }

    /// Whether the department is the collecting authority of this type for `region`.
    pub fn collects(&self, region: &RegionCode) -> bool {
        self.collect_regions.contains(region)
    }
}

/// Permission to follow the changes of one type and to apply changes decided upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGrant {
    /// The licence type.
    pub type_code: TypeCode,
    /// Fields the change feed shows beyond those the template marks public.
    pub fields: FieldAccess,
    /// Issuing departments whose licences of this type it may change from upstream; empty
    /// means none: it only follows.
    pub apply_issuers: BTreeSet<CreditCode>,
}

impl SyncGrant {
    /// Whether it may apply upstream changes to licences `issuer` issued.
    pub fn may_apply(&self, issuer: &CreditCode) -> bool {
        self.apply_issuers.contains(issuer)
    }
}

/// What one department may do: its roles and grants, as set by an administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentPolicy {
    /// The department.
    pub department: CreditCode,
    /// Roles its systems may act in.
    pub roles: BTreeSet<Role>,
    /// Types it may issue, one grant per type.
    pub issue: Vec<IssueGrant>,
    /// Types it may verify and read, one grant per type.
    pub read: Vec<ReadGrant>,
    /// Types it may follow in the change feed and change from upstream, one grant per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync: Vec<SyncGrant>,
    /// 1 for the first version, one more for each change.
    pub revision: u64,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Who changed it last.
    pub updated_by: Actor,
}

/// The parts of a department's policy an administrator sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyContent {
    /// Roles, by name.
    pub roles: Vec<String>,
    /// (type code, seal IDs, region codes collected).
    pub issue: Vec<(String, Vec<String>, Vec<String>)>,
    /// (type code, purpose codes, field names, all fields).
    pub read: Vec<(String, Vec<String>, Vec<String>, bool)>,
    /// (type code, field names, all fields, issuers whose licences it may change from upstream).
    pub sync: Vec<(String, Vec<String>, bool, Vec<String>)>,
}

/// Checked roles and grants.
pub type CheckedContent = (
    BTreeSet<Role>,
    Vec<IssueGrant>,
    Vec<ReadGrant>,
    Vec<SyncGrant>,
);

impl PolicyContent {
    /// Checks every part, reporting every problem at once. Grants keep the request's order.
    pub fn check(&self) -> Result<CheckedContent, Error> {
        let mut v = Vec::new();
        let mut roles = BTreeSet::new();
        for (i, r) in self.roles.iter().enumerate() {
            match r.trim().parse::<Role>() {
                Ok(role) if roles.insert(role) => {}
                Ok(_) => v.push(FieldViolation::new(
                    format!("roles[{i}]"),
                    format!("'{r}' is listed twice"),
                )),
                Err(e) => v.push(FieldViolation::new(format!("roles[{i}]"), e)),
            }
        }
        let too_many = |v: &mut Vec<FieldViolation>, field: &str, n: usize, max: usize| {
            if n > max {
                v.push(FieldViolation::new(field, format!("at most {max} entries")));
            }
        };
        too_many(&mut v, "issue", self.issue.len(), MAX_GRANTS);
        too_many(&mut v, "read", self.read.len(), MAX_GRANTS);
        too_many(&mut v, "sync", self.sync.len(), MAX_GRANTS);
        let mut issue = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, (t, seals, regions)) in self.issue.iter().enumerate().take(MAX_GRANTS) {
            let field = format!("issue[{i}]");
            let ty = type_code(&field, t, &mut seen, &mut v);
            too_many(
                &mut v,
                &format!("{field}.seal_ids"),
                seals.len(),
                MAX_GRANT_ITEMS,
            );
            let mut set = BTreeSet::new();
            for (j, s) in seals.iter().enumerate().take(MAX_GRANT_ITEMS) {
                match s.trim().parse::<SealId>() {
                    Ok(id) => {
                        set.insert(id);
                    }
                    Err(e) => v.push(FieldViolation::new(format!("{field}.seal_ids[{j}]"), e.0)),
                }
            }
            too_many(
                &mut v,
                &format!("{field}.collect_regions"),
                regions.len(),
                MAX_GRANT_ITEMS,
            );
            let mut collect_regions = BTreeSet::new();
            for (j, r) in regions.iter().enumerate().take(MAX_GRANT_ITEMS) {
                match r.trim().parse::<RegionCode>() {
                    Ok(code) if collect_regions.insert(code.clone()) => {}
                    Ok(code) => v.push(FieldViolation::new(
                        format!("{field}.collect_regions[{j}]"),
                        format!("region {code} is listed twice"),
                    )),
                    Err(e) => v.push(FieldViolation::new(
                        format!("{field}.collect_regions[{j}]"),
                        e.0,
                    )),
                }
            }
            if let Some(type_code) = ty {
                issue.push(IssueGrant {
                    type_code,
                    seals: set,
                    collect_regions,
                });
            }
        }
        let mut read = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, (t, purposes, fields, all)) in self.read.iter().enumerate().take(MAX_GRANTS) {
            let field = format!("read[{i}]");
            let ty = type_code(&field, t, &mut seen, &mut v);
            too_many(
                &mut v,
                &format!("{field}.purposes"),
                purposes.len(),
                MAX_GRANT_ITEMS,
            );
            let mut p = BTreeSet::new();
            for (j, code) in purposes.iter().enumerate().take(MAX_GRANT_ITEMS) {
                let code = code.trim();
                if code.is_empty()
                    || code.chars().count() > MAX_PURPOSE_CODE
                    || !code
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    v.push(FieldViolation::new(
                        format!("{field}.purposes[{j}]"),
                        format!(
                            "'{code}' is not a purpose code: 1 to {MAX_PURPOSE_CODE} letters, digits, '_' or '-'"
                        ),
                    ));
                } else {
                    p.insert(code.to_owned());
                }
            }
            let fields = field_names(&field, fields, *all, &mut v);
            if let Some(type_code) = ty {
                read.push(ReadGrant {
                    type_code,
                    purposes: p,
                    fields,
                });
            }
        }
        let mut sync = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, (t, fields, all, issuers)) in self.sync.iter().enumerate().take(MAX_GRANTS) {
            let field = format!("sync[{i}]");
            let ty = type_code(&field, t, &mut seen, &mut v);
            let names = field_names(&field, fields, *all, &mut v);
            too_many(
                &mut v,
                &format!("{field}.apply_issuers"),
                issuers.len(),
                MAX_GRANT_ITEMS,
            );
            let mut apply = BTreeSet::new();
            for (j, code) in issuers.iter().enumerate().take(MAX_GRANT_ITEMS) {
                match code.trim().parse::<CreditCode>() {
                    Ok(c) => {
                        apply.insert(c);
                    }
                    Err(e) => v.push(FieldViolation::new(
                        format!("{field}.apply_issuers[{j}]"),
                        e.0,
                    )),
                }
            }
            if let Some(type_code) = ty {
                sync.push(SyncGrant {
                    type_code,
                    fields: names,
                    apply_issuers: apply,
                });
            }
        }
        if !v.is_empty() {
            return Err(Error::InvalidArgument(v));
        }
        Ok((roles, issue, read, sync))
    }
}

/// The fields a grant shows: named (checked) or all, not both.
fn field_names(
    field: &str,
    fields: &[String],
    all: bool,
    v: &mut Vec<FieldViolation>,
) -> FieldAccess {
    if fields.len() > MAX_GRANT_ITEMS {
        v.push(FieldViolation::new(
            format!("{field}.fields"),
            format!("at most {MAX_GRANT_ITEMS} entries"),
        ));
    }
    let mut names = BTreeSet::new();
    for (j, name) in fields.iter().enumerate().take(MAX_GRANT_ITEMS) {
        match check_field_name(name.trim()) {
            Ok(()) => {
                names.insert(name.trim().to_owned());
            }
            Err(e) => v.push(FieldViolation::new(format!("{field}.fields[{j}]"), e)),
        }
    }
    if all && !fields.is_empty() {
        v.push(FieldViolation::new(
            format!("{field}.fields"),
            "name fields or grant all fields, not both",
        ));
    }
    if all {
        FieldAccess::All
    } else {
        FieldAccess::Named(names)
    }
}

fn type_code(
    field: &str,
    value: &str,
    seen: &mut BTreeSet<TypeCode>,
    v: &mut Vec<FieldViolation>,
) -> Option<TypeCode> {
    match value.trim().parse::<TypeCode>() {
        Ok(t) if seen.insert(t.clone()) => Some(t),
        Ok(t) => {
            v.push(FieldViolation::new(
                format!("{field}.type_code"),
                format!("type {t} has two grants; merge them"),
            ));
            None
        }
        Err(e) => {
            v.push(FieldViolation::new(format!("{field}.type_code"), e.0));
            None
        }
    }
}

impl DepartmentPolicy {
    /// Whether the department's systems may act in `role`.
    pub fn holds(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The grant to issue `type_code`, if any.
    pub fn issue_grant(&self, type_code: &TypeCode) -> Option<&IssueGrant> {
        self.issue.iter().find(|g| &g.type_code == type_code)
    }

    /// The grant to verify and read `type_code`, if any.
    pub fn read_grant(&self, type_code: &TypeCode) -> Option<&ReadGrant> {
        self.read.iter().find(|g| &g.type_code == type_code)
    }

    /// The grant to follow `type_code` and change it from upstream, if any.
    pub fn sync_grant(&self, type_code: &TypeCode) -> Option<&SyncGrant> {
        self.sync.iter().find(|g| &g.type_code == type_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> PolicyContent {
        PolicyContent {
            roles: vec!["issuer".into(), "verifier".into()],
            issue: vec![(
                "11100000000013338W001".into(),
                vec![],
                vec!["350500".into()],
            )],
            read: vec![(
                "11100000000013338W001".into(),
                vec!["ADMIN_APPROVAL".into()],
                vec!["address".into()],
                false,
            )],
            sync: vec![(
                "11100000000013338W001".into(),
                vec![],
                true,
                vec!["11100000000013338W".into()],
            )],
        }
    }

    #[test]
    fn a_good_policy_is_taken_and_read_back_by_its_grants() {
        let (roles, issue, read, sync) = content().check().unwrap();
        let issuer: CreditCode = "11100000000013338W".parse().unwrap();
        assert!(sync[0].may_apply(&issuer) && sync[0].fields.shows("any"));
        assert!(roles.contains(&Role::Issuer) && !roles.contains(&Role::Admin));
        assert!(issue[0].allows_seal(&SealId::new(1, &[0; 10])));
        assert!(issue[0].collects(&"350500".parse().unwrap()));
        assert!(!issue[0].collects(&"350600".parse().unwrap()));
        assert!(read[0].allows_purpose("ADMIN_APPROVAL"));
        assert!(!read[0].allows_purpose("OTHER"));
        assert!(read[0].fields.shows("address") && !read[0].fields.shows("id_number"));
    }

    #[test]
    fn every_problem_is_reported_together() {
        let mut c = content();
        c.roles.push("root".into());
        c.roles.push("issuer".into());
        c.issue.push((
            "11100000000013338W001".into(),
            vec!["not-a-seal".into()],
            vec!["990000".into()],
        ));
        c.read[0].1.push("bad code!".into());
        c.read[0].2.push("Bad".into());
        c.read[0].3 = true;
        c.sync[0].1.push("name".into());
        c.sync[0].3.push("not-a-credit-code".into());
        let Err(Error::InvalidArgument(v)) = c.check() else {
            panic!("bad policy taken");
        };
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        for want in [
            "roles[2]",
            "roles[3]",
            "issue[1].type_code",
            "issue[1].seal_ids[0]",
            "issue[1].collect_regions[0]",
            "read[0].purposes[1]",
            "read[0].fields[1]",
            "read[0].fields",
            "sync[0].fields",
            "sync[0].apply_issuers[1]",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn limits_hold() {
        let mut c = content();
        c.issue = (0..=MAX_GRANTS)
            .map(|i| (format!("11100000000013338W{:03}", i % 1000), vec![], vec![]))
            .collect();
        assert!(c.check().is_err());
    }
}
