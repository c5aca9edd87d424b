//! Who may do what. Every operation asks [`Registry::authorize`] first: the caller must act in
//! the role the operation needs and, when the sharing policy is enforced, its department must
//! hold that role in the policy. Operations on licences then ask the grants ([`Access`]).
//!
//! Also here: the client CA that issues department certificates for mutual TLS.

use std::collections::{BTreeMap, BTreeSet};

use certseal_core::policy::{DepartmentPolicy, IssueGrant, PolicyContent, ReadGrant, SyncGrant};
use certseal_core::{
    Actor, CreditCode, DepartmentStatus, FieldAccess, RegionCode, Role, SealId, Timestamp, TypeCode,
};
use certseal_crypto::x509::{self, ClientSubject, KeyAlgorithm};
use certseal_crypto::{Certificate, Kek};
use certseal_log::Extra;
use certseal_store::{Batch, Direction, KvStore, Table};

use crate::audit::append;
use crate::cache::put_cached;
use crate::codec::{decode, encode};
use crate::departments::{load_department, parse_credit_code};
use crate::paging::scan_page;
use crate::request_ids::{Change, Remembered, RequestDigest, outcome_record, request_id};
use crate::seals::load_seal;
use crate::{PageRequest, Paged, Registry, RegistryError};

pub(crate) const META_CLIENT_CA_KEY: &[u8] = b"client_ca_key";
pub(crate) const META_CLIENT_CA_CERT: &[u8] = b"client_ca_cert";
/// Associated data binding the sealed client CA key to its use.
pub(crate) const CLIENT_CA_KEY_OWNER: &[u8] = b"certseal/client-ca-key";
pub(crate) const META_CLIENT_CA_SEALED: (&[u8], &[u8]) = (META_CLIENT_CA_KEY, CLIENT_CA_KEY_OWNER);
pub(crate) const CLIENT_CA_YEARS: i64 = 20;
/// Longest validity of a department certificate, in days.
pub const MAX_CLIENT_CERT_DAYS: u32 = 825;

/// How the registry decides who may do what.
#[derive(Debug, Clone, Default)]
pub struct AccessOptions {
    /// Check every call against the sharing policy. Off only in development.
    pub enforce_policy: bool,
    /// The department that holds the admin role whatever the policy says, so the first
    /// policy can be written.
    pub admin_department: Option<CreditCode>,
}

/// What a caller may do with licences, as found by [`Registry::authorize`].
#[derive(Debug, Clone)]
pub(crate) struct Access {
    /// `None` when the policy is not enforced.
    policy: Option<std::sync::Arc<DepartmentPolicy>>,
}

/// What a department may see of a licence it does not issue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reading<'a> {
    /// The policy is not enforced: the public fields.
    Unenforced,
    /// Granted: the public fields and those the grant names.
    Granted(&'a ReadGrant),
    /// The public verification page: the public fields.
    Public,
    /// A holder's use code: the public fields and those it names.
    Opened(&'a BTreeSet<String>),
    /// A sync grant: the public fields and those it names.
    Fields(&'a FieldAccess),
}

impl Access {
    /// Whether licences of `type_code` may be signed with `seal`.
    pub fn may_issue(&self, type_code: &TypeCode, seal: &SealId) -> Result<(), String> {
        let Some(p) = &self.policy else {
            return Ok(());
        };
        match p.issue_grant(type_code) {
            None => Err(format!(
                "department {} may not issue licences of type {type_code}",
                p.department
            )),
            Some(g) if !g.allows_seal(seal) => Err(format!(
                "department {} may not sign licences of type {type_code} with seal {seal}",
                p.department
            )),
            Some(_) => Ok(()),
        }
    }

    /// What may be read of a licence of `type_code`, or why nothing may.
    pub fn reading(&self, type_code: &TypeCode) -> Result<Reading<'_>, String> {
        let Some(p) = &self.policy else {
            return Ok(Reading::Unenforced);
        };
        p.read_grant(type_code)
            .map(Reading::Granted)
            .ok_or_else(|| {
                format!(
                    "department {} may not verify or read licences of type {type_code}",
                    p.department
                )
            })
    }

    /// The caller's policy; `None` when the policy is not enforced.
    pub fn policy(&self) -> Option<&DepartmentPolicy> {
        self.policy.as_deref()
    }

    /// Whether the sharing policy applies to this caller.
    pub fn enforced(&self) -> bool {
        self.policy.is_some()
    }

    /// Whether the department may verify or read some type at all.
    pub fn reads_anything(&self) -> bool {
        self.policy.as_ref().is_none_or(|p| !p.read.is_empty())
    }
}

impl Reading<'_> {
    /// Whether a field that is not public is shown.
    pub fn shows(&self, field: &str) -> bool {
        match self {
            Reading::Unenforced | Reading::Public => false,
            Reading::Granted(g) => g.fields.shows(field),
            Reading::Opened(fields) => fields.contains(field),
            Reading::Fields(f) => f.shows(field),
        }
    }

    /// Whether a check may state `purpose_code`.
    pub fn allows_purpose(&self, purpose_code: &str) -> bool {
        match self {
            // A code's purposes are checked with the code.
            Reading::Unenforced | Reading::Public | Reading::Opened(_) | Reading::Fields(_) => true,
            Reading::Granted(g) => g.allows_purpose(purpose_code),
        }
    }
}

fn load_policy(
    store: &dyn KvStore,
    code: &CreditCode,
) -> Result<Option<DepartmentPolicy>, RegistryError> {
    store
        .get(Table::Policies, code.as_str().as_bytes())?
        .map(|b| decode("policy", &b))
        .transpose()
}

impl Registry {
    /// Whether calls are checked against the sharing policy.
    pub fn policy_enforced(&self) -> bool {
        self.access.enforce_policy
    }

    /// Checks that the caller's department may act in the role it claims: the gate of every
    /// call, before the operation checks what it needs.
    pub fn check_caller(&self, actor: &Actor) -> Result<(), RegistryError> {
        self.authorize_held(actor, "calling the registry")
            .map(|_| ())
    }

    /// Refuses, and says so in the log: every denial is visible to operators.
    pub(crate) fn deny(&self, actor: &Actor, action: &str, reason: String) -> RegistryError {
        denied(actor, action, reason)
    }

    /// Checks that the caller acts in `role` and that its department holds it.
    pub(crate) fn authorize(
        &self,
        actor: &Actor,
        role: Role,
        action: &str,
    ) -> Result<Access, RegistryError> {
        if actor.role != role {
            return Err(self.deny(
                actor,
                action,
                format!(
                    "{action} needs the {} role; the caller acts as {}",
                    role.as_str(),
                    actor.role.as_str()
                ),
            ));
        }
        self.authorize_held(actor, action)
    }

    /// Checks that the caller's department holds the role it acts in, whatever that role is.
    pub(crate) fn authorize_held(
        &self,
        actor: &Actor,
        action: &str,
    ) -> Result<Access, RegistryError> {
        if !self.access.enforce_policy {
            return Ok(Access { policy: None });
        }
        let stamp = self.records.stamp();
        let policy = self
            .records
            .policy(self.store.as_ref(), &stamp, &actor.department)?;
        let department = self
            .records
            .department(self.store.as_ref(), &stamp, &actor.department)?;
        let deactivated = department
            .as_ref()
            .is_some_and(|d| d.status != DepartmentStatus::Active);
        if deactivated {
            return Err(self.deny(
                actor,
                action,
                format!("department {} is deactivated", actor.department),
            ));
        }
        // The configured administrator may act before it is registered: it registers itself.
        let bootstrap_admin = actor.role == Role::Admin
            && self.access.admin_department.as_ref() == Some(&actor.department);
        if bootstrap_admin {
            let mut p = policy.map_or_else(|| empty_policy(actor), |p| (*p).clone());
            p.roles.insert(Role::Admin);
            return Ok(Access {
                policy: Some(p.into()),
            });
        }
        let Some(policy) = policy else {
            return Err(self.deny(
                actor,
                action,
                format!(
                    "department {} holds no role in the sharing policy",
                    actor.department
                ),
            ));
        };
        if !policy.holds(actor.role) {
            return Err(self.deny(
                actor,
                action,
                format!(
                    "department {} does not hold the {} role in the sharing policy",
                    actor.department,
                    actor.role.as_str()
                ),
            ));
        }
        if department.is_none() {
            return Err(self.deny(
                actor,
                action,
                format!("department {} is not registered", actor.department),
            ));
        }
        Ok(Access {
            policy: Some(policy),
        })
    }

    /// A department's roles and grants. Its administrators and the department itself may read
    /// them.
    pub fn department_policy(
        &self,
        actor: &Actor,
        department: &str,
    ) -> Result<DepartmentPolicy, RegistryError> {
        let code = parse_credit_code("department", department)?;
        if actor.role == Role::Admin {
            self.authorize(actor, Role::Admin, "reading the sharing policy")?;
        } else {
            self.authorize_held(actor, "reading the sharing policy")?;
            if actor.department != code {
                return Err(self.deny(
                    actor,
                    "reading the sharing policy",
                    format!("only an administrator reads the policy of department {code}"),
                ));
            }
        }
        load_policy(self.store.as_ref(), &code)?
            .ok_or_else(|| RegistryError::NotFound(format!("no policy for department {code}")))
    }

    /// Every department's policy, by credit code.
    pub fn list_policies(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Paged<DepartmentPolicy>, RegistryError> {
        self.authorize(actor, Role::Admin, "listing the sharing policy")?;
        let snap = self.store.snapshot();
        scan_page(
            &self.page_tokens,
            snap.as_ref(),
            Table::Policies,
            &[],
            Direction::Forward,
            page,
            10_000,
            |_, v| decode("policy", v).map(Some),
        )
    }

    /// Replaces a department's roles and grants. Needs the admin role. With
    /// `expected_revision`, refuses if the policy changed since that revision (0: none yet).
    pub async fn set_department_policy(
        &self,
        actor: &Actor,
        department: &str,
        content: &PolicyContent,
        expected_revision: Option<u64>,
        request_id_text: &str,
    ) -> Result<DepartmentPolicy, RegistryError> {
        const ACTION: &str = "setting the sharing policy";
        self.authorize(actor, Role::Admin, ACTION)?;
        let code = parse_credit_code("department", department)?;
        let rid = request_id(
            actor,
            request_id_text,
            RequestDigest::new(Change::SetDepartmentPolicy)
                .text(department)
                .text(&format!("{content:?}"))
                .text(&format!("{expected_revision:?}")),
        )?;
        let replayed = |outcome: &[u8]| {
            outcome_record::<DepartmentPolicy>(self.store.as_ref(), "policy", outcome)
        };
        if let Some(rid) = &rid
            && let Remembered::Done(outcome) =
                rid.lookup(self.store.as_ref(), self.request_id_retention)?
        {
            return replayed(&outcome);
        }
        let (roles, mut issue, mut read, mut sync) = content.check()?;
        self.check_grants(&code, &issue, &read, &sync)?;
        issue.sort_by(|a, b| a.type_code.cmp(&b.type_code));
        read.sort_by(|a, b| a.type_code.cmp(&b.type_code));
        sync.sort_by(|a, b| a.type_code.cmp(&b.type_code));
        let collects = issue.iter().any(|g| !g.collect_regions.is_empty());
        // One collecting authority per (type, region): the other policies are scanned before
        // the write; the writer takes it only if no policy changed since (else scan again).
        for _ in 0..3 {
            let stamp = self.records.stamp();
            if collects {
                self.check_collecting_authority(&code, &issue)?;
            }
            let read_in = self.records.still_current(&stamp);
            let outcome = self
                .write_policy(
                    actor,
                    &code,
                    (roles.clone(), issue.clone(), read.clone(), sync.clone()),
                    expected_revision,
                    rid.clone(),
                    collects.then_some(read_in),
                )
                .await?;
            match outcome {
                PolicyWrite::Done(p) => return Ok(p),
                // Err: a concurrent request with the same ID won.
                PolicyWrite::Replay(outcome) => return replayed(&outcome),
                PolicyWrite::PoliciesChanged => {}
            }
        }
        Err(RegistryError::FailedPrecondition(
            "other policies kept changing while this one was written: try again".into(),
        ))
    }

    /// Refuses grants that name this department the collecting authority of a (type,
    /// region) another department's policy already names.
    fn check_collecting_authority(
        &self,
        code: &CreditCode,
        issue: &[IssueGrant],
    ) -> Result<(), RegistryError> {
        let snap = self.store.snapshot();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = snap.scan(
                Table::Policies,
                &[],
                after.as_deref(),
                1_000,
                Direction::Forward,
            )?;
            for (k, v) in &page.items {
                let other: DepartmentPolicy = decode("policy", v)?;
                if &other.department == code {
                    continue;
                }
                for (i, g) in issue.iter().enumerate() {
                    let Some(theirs) = other.issue_grant(&g.type_code) else {
                        continue;
                    };
                    if let Some(r) = g
                        .collect_regions
                        .intersection(&theirs.collect_regions)
                        .next()
                    {
                        return Err(RegistryError::FailedPrecondition(format!(
                            "issue[{i}].collect_regions: department {} is already the collecting authority of type {} for region {r}; take it from that department's policy first",
                            other.department, g.type_code
                        )));
                    }
                }
                after = Some(k.clone());
            }
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Writes a checked policy. With `scanned_in`, the write is refused (to be retried) if a
    /// cached record changed since the other policies were scanned in that epoch.
    async fn write_policy(
        &self,
        actor: &Actor,
        code: &CreditCode,
        (roles, issue, read, sync): certseal_core::policy::CheckedContent,
        expected_revision: Option<u64>,
        rid: Option<crate::request_ids::RequestId>,
        scanned_in: Option<Option<u64>>,
    ) -> Result<PolicyWrite, RegistryError> {
        let actor = actor.clone();
        let code = code.clone();
        let retention = self.request_id_retention;
        self
            .sequencer
            .submit(move |txn| -> Result<PolicyWrite, RegistryError> {
                if let Some(rid) = &rid
                    && let Remembered::Done(outcome) = rid.lookup_txn(txn, retention)?
                {
                    return Ok(PolicyWrite::Replay(outcome));
                }
                if let Some(read_in) = scanned_in
                    && !txn.state.records.unchanged_since(read_in)
                {
                    return Ok(PolicyWrite::PoliciesChanged);
                }
                let dept = load_department(txn, &code)?.ok_or_else(|| {
                    RegistryError::NotFound(format!("department {code} is not registered"))
                })?;
                if dept.status != DepartmentStatus::Active {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "department {code} is deactivated"
                    )));
                }
                let current: Option<DepartmentPolicy> = txn
                    .get(Table::Policies, code.as_str().as_bytes())?
                    .map(|b| decode("policy", &b))
                    .transpose()?;
                let revision = current.as_ref().map_or(0, |p| p.revision);
                if let Some(expected) = expected_revision
                    && expected != revision
                {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "the policy of department {code} is at revision {revision}, not {expected}: read it again"
                    )));
                }
                let policy = DepartmentPolicy {
                    department: code.clone(),
                    roles,
                    issue,
                    read,
                    sync,
                    revision: revision + 1,
                    updated_at: Timestamp::now(),
                    updated_by: actor.clone(),
                };
                let record = encode(&policy);
                put_cached(txn, Table::Policies, code.as_str().as_bytes(), record.clone());
                append(
                    txn,
                    &actor,
                    "policy.changed",
                    code.as_str(),
                    &record,
                    BTreeMap::from([("revision".to_owned(), Extra::Uint(policy.revision))]),
                );
                if let Some(rid) = &rid {
                    rid.remember(txn, &certseal_crypto::sha256(&[&record]));
                }
                Ok(PolicyWrite::Done(policy))
            })
            .await
    }

    /// Whether the caller's department is the collecting authority of `type_code` for
    /// `region`: only then may it collect a licence whose existing ID has the region code in
    /// the issuer position. Asked of the stored policy even when the policy is not enforced:
    /// the ID alone names no department, so only the policy can.
    pub(crate) fn collecting_authority(
        &self,
        actor: &Actor,
        type_code: &TypeCode,
        region: &RegionCode,
    ) -> Result<(), RegistryError> {
        let stamp = self.records.stamp();
        let policy = self
            .records
            .policy(self.store.as_ref(), &stamp, &actor.department)?;
        if policy
            .as_ref()
            .and_then(|p| p.issue_grant(type_code))
            .is_some_and(|g| g.collects(region))
        {
            return Ok(());
        }
        Err(self.deny(
            actor,
            "collecting a licence",
            format!(
                "department {} is not the collecting authority of type {type_code} for region {region} (its policy's issue grant names the regions it collects)",
                actor.department
            ),
        ))
    }

    /// Grants name types that have a template and seals of the department itself.
    fn check_grants(
        &self,
        department: &CreditCode,
        issue: &[IssueGrant],
        read: &[ReadGrant],
        sync: &[SyncGrant],
    ) -> Result<(), RegistryError> {
        let mut v = Vec::new();
        let snap = self.store.snapshot();
        let mut known = BTreeSet::new();
        let mut check_type =
            |field: String, t: &TypeCode, v: &mut Vec<_>| -> Result<(), RegistryError> {
                if known.contains(t) {
                    return Ok(());
                }
                if snap
                    .get(Table::TemplateHeads, t.as_str().as_bytes())?
                    .is_none()
                {
                    v.push(certseal_core::FieldViolation::new(
                        field,
                        format!("no template defines type {t}"),
                    ));
                } else {
                    known.insert(t.clone());
                }
                Ok(())
            };
        for (i, g) in issue.iter().enumerate() {
            check_type(format!("issue[{i}].type_code"), &g.type_code, &mut v)?;
            for s in &g.seals {
                match load_seal(snap.as_ref(), s)? {
                    Some(seal) if &seal.lifecycle.department == department => {}
                    Some(_) => v.push(certseal_core::FieldViolation::new(
                        format!("issue[{i}].seal_ids"),
                        format!("seal {s} belongs to another department"),
                    )),
                    None => v.push(certseal_core::FieldViolation::new(
                        format!("issue[{i}].seal_ids"),
                        format!("seal {s} is not registered"),
                    )),
                }
            }
        }
        for (i, g) in read.iter().enumerate() {
            check_type(format!("read[{i}].type_code"), &g.type_code, &mut v)?;
        }
        for (i, g) in sync.iter().enumerate() {
            check_type(format!("sync[{i}].type_code"), &g.type_code, &mut v)?;
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::InvalidArgument(v))
        }
    }

    /// The CA that issues department (client) certificates and, for pilots, the server's.
    pub fn client_ca_certificate(&self) -> &Certificate {
        &self.client_cas.current
    }

    /// Issues a department's client certificate for the key of a PKCS#10 request. Needs the
    /// admin role. The department must be registered; with the policy enforced, it must hold
    /// every role the certificate names.
    pub async fn issue_client_certificate(
        &self,
        actor: &Actor,
        department: &str,
        roles: &[String],
        csr_pem: &str,
        days: u32,
    ) -> Result<Certificate, RegistryError> {
        const ACTION: &str = "issuing a department certificate";
        self.authorize(actor, Role::Admin, ACTION)?;
        let code = parse_credit_code("department", department)?;
        let mut v = Vec::new();
        let mut wanted = BTreeSet::new();
        // A node certificate: the registry operator's, for a cluster node, and nothing else.
        let node = roles.iter().any(|r| r.trim() == certseal_core::NODE_ROLE);
        if node && roles.len() > 1 {
            v.push(certseal_core::FieldViolation::new(
                "roles",
                "a node certificate names the role node alone: a node never acts itself",
            ));
        }
        for (i, r) in roles.iter().enumerate() {
            if r.trim() == certseal_core::NODE_ROLE {
                continue;
            }
            match r.trim().parse::<Role>() {
                Ok(role) => {
                    wanted.insert(role);
                }
                Err(e) => v.push(certseal_core::FieldViolation::new(format!("roles[{i}]"), e)),
            }
        }
        if roles.is_empty() {
            v.push(certseal_core::FieldViolation::new(
                "roles",
                "a department certificate grants at least one role",
            ));
        }
        if days == 0 || days > MAX_CLIENT_CERT_DAYS {
            v.push(certseal_core::FieldViolation::new(
                "validity_days",
                format!("1 to {MAX_CLIENT_CERT_DAYS} days"),
            ));
        }
        if csr_pem.len() > 16 * 1024 || !csr_pem.contains("CERTIFICATE REQUEST") {
            v.push(certseal_core::FieldViolation::new(
                "csr_pem",
                "a PEM PKCS#10 certificate request of at most 16 KiB",
            ));
        }
        if !v.is_empty() {
            return Err(RegistryError::InvalidArgument(v));
        }
        let dept = self
            .store
            .get(Table::Departments, code.as_str().as_bytes())?
            .map(|b| decode::<certseal_core::Department>("department", &b))
            .transpose()?
            .ok_or_else(|| {
                RegistryError::NotFound(format!("department {code} is not registered"))
            })?;
        if dept.status != DepartmentStatus::Active {
            return Err(RegistryError::FailedPrecondition(format!(
                "department {code} is deactivated"
            )));
        }
        if node {
            if self.access.enforce_policy && self.access.admin_department.as_ref() != Some(&code) {
                return Err(RegistryError::FailedPrecondition(format!(
                    "node certificates are the registry operator's: issue them to the administrator department ([policy] admin_department), not to {code}"
                )));
            }
        } else if self.access.enforce_policy {
            let mut held = load_policy(self.store.as_ref(), &code)?
                .map(|p| p.roles)
                .unwrap_or_default();
            if self.access.admin_department.as_ref() == Some(&code) {
                held.insert(Role::Admin);
            }
            let missing: Vec<&str> = wanted.difference(&held).map(|r| r.as_str()).collect();
            if !missing.is_empty() {
                return Err(RegistryError::FailedPrecondition(format!(
                    "department {code} does not hold the roles {missing:?} in the sharing policy: grant them first"
                )));
            }
        }
        let ca_key = crate::seal_ca::open_sealed_meta_key(
            self.store.as_ref(),
            &self.kek,
            META_CLIENT_CA_SEALED,
        )?;
        let names: Vec<&str> = if node {
            vec![certseal_core::NODE_ROLE]
        } else {
            wanted.iter().map(|r| r.as_str()).collect()
        };
        let now = Timestamp::now().0 / 1000;
        let cert = x509::issue_client_certificate_for_csr(
            &self.client_cas.current,
            &ca_key,
            csr_pem,
            &ClientSubject {
                department_name: &dept.name,
                credit_code: code.as_str(),
                roles: &names,
            },
            now - 300,
            now + i64::from(days) * 86_400,
        )
        .map_err(|e| RegistryError::invalid("csr_pem", e.to_string()))?;
        let actor = actor.clone();
        let der = cert.der.clone();
        let roles_text = names.join(",");
        let (issued, ca) = (cert.clone(), self.client_cas.current.clone());
        let roles: Vec<String> = names.iter().map(|r| (*r).to_owned()).collect();
        self.sequencer
            .submit(move |txn| {
                let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
                // Revocation and revocation lists find it by serial.
                crate::client_certs::put_record(txn, &issued, &ca, &code, &roles, &actor)?;
                append(
                    txn,
                    &actor,
                    "client_certificate.issued",
                    code.as_str(),
                    &der,
                    BTreeMap::from([("roles".to_owned(), Extra::Text(roles_text))]),
                );
                Ok::<_, RegistryError>(())
            })
            .await?;
        Ok(cert)
    }

    /// Issues the server's TLS certificate from the client CA, for `hosts`. Offline use only:
    /// whoever runs it holds the data folder and its KEK.
    pub fn issue_server_certificate(
        &self,
        key_pkcs8: &[u8],
        hosts: &[String],
        days: u32,
    ) -> Result<Certificate, RegistryError> {
        let ca_key = crate::seal_ca::open_sealed_meta_key(
            self.store.as_ref(),
            &self.kek,
            META_CLIENT_CA_SEALED,
        )?;
        let now = Timestamp::now().0 / 1000;
        x509::issue_server_certificate(
            &self.client_cas.current,
            &ca_key,
            key_pkcs8,
            hosts,
            now - 300,
            now + i64::from(days.clamp(1, MAX_CLIENT_CERT_DAYS)) * 86_400,
        )
        .map_err(|e| RegistryError::invalid("hosts", e.to_string()))
    }
}

/// A denial, logged: usable where no registry is at hand (inside a sequenced write).
/// How a sequenced policy write ended.
enum PolicyWrite {
    Done(DepartmentPolicy),
    /// A concurrent request with the same request ID won: its outcome.
    Replay(Vec<u8>),
    /// A policy changed since the others were scanned: scan again.
    PoliciesChanged,
}

pub(crate) fn denied(actor: &Actor, action: &str, reason: String) -> RegistryError {
    tracing::warn!(
        department = %actor.department,
        role = actor.role.as_str(),
        action,
        reason = %reason,
        "permission denied"
    );
    RegistryError::PermissionDenied(reason)
}

fn empty_policy(actor: &Actor) -> DepartmentPolicy {
    DepartmentPolicy {
        department: actor.department.clone(),
        roles: BTreeSet::new(),
        issue: Vec::new(),
        read: Vec::new(),
        sync: Vec::new(),
        revision: 0,
        updated_at: Timestamp(0),
        updated_by: actor.clone(),
    }
}

/// Loads the client CA, creating it (ECDSA P-256, key sealed under the KEK) on first start.
pub(crate) fn open_client_ca(
    store: &dyn KvStore,
    kek: &Kek,
    origin: &str,
) -> Result<Certificate, RegistryError> {
    let err = |e: certseal_crypto::CryptoError| RegistryError::Corrupt(format!("client CA: {e}"));
    if let (Some(der), Some(sealed)) = (
        store.get(Table::Meta, META_CLIENT_CA_CERT)?,
        store.get(Table::Meta, META_CLIENT_CA_KEY)?,
    ) {
        kek.open(CLIENT_CA_KEY_OWNER, &sealed).map_err(err)?;
        return Ok(Certificate { der });
    }
    let key = x509::generate_key(KeyAlgorithm::EcdsaP256).map_err(err)?;
    let now = Timestamp::now().0 / 1000;
    let cert = x509::create_ca(
        &format!("certseal client CA {origin}"),
        &key.pkcs8,
        now - 3600,
        now + CLIENT_CA_YEARS * 365 * 86_400,
    )
    .map_err(err)?;
    let mut b = Batch::new();
    b.put(
        Table::Meta,
        META_CLIENT_CA_KEY,
        kek.seal(CLIENT_CA_KEY_OWNER, &key.pkcs8).map_err(err)?,
    );
    b.put(Table::Meta, META_CLIENT_CA_CERT, cert.der.clone());
    store.write(&b, true)?;
    tracing::info!("created the client CA");
    Ok(cert)
}
