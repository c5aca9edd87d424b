//! The holder in the loop: use codes (授权用证) and the holder's record of every check of
//! their licences (用证留痕), through a holder agent (role `holder_agent`), a platform the
//! sharing policy trusts to act for holders it authenticated.
//!
//! Every call for a holder is an audit-log entry naming the agent; the holder appears in it
//! only as a commitment, SHA-256(salt ‖ kind ‖ 0x0A ‖ ID) with a fresh 16-byte salt per entry,
//! the salt kept in the record the entry commits to: the log cannot link one person's acts,
//! and whoever holds the record can show whose act it was.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use certseal_core::use_code::{
    MAX_USE_CODE_ITEMS, MAX_USE_CODE_USES, MAX_USE_CODE_VALIDITY_SECS, MIN_USE_CODE_VALIDITY_SECS,
};
use certseal_core::{
    Actor, Audience, FieldViolation, Holder, HolderKind, LicenceId, LicenceStatus, Receipt, Role,
    SealId, Timestamp, UseCode, UseCodeRefusal, UseCodeText,
};
use certseal_crypto::sha256;
use certseal_log::Extra;
use certseal_store::{Batch, Direction, KvStore, Read, Table};
use serde::{Deserialize, Serialize};

use crate::audit::{RegTxn, append};
use crate::codec::{decode, encode};
use crate::departments::parse_credit_code;
use crate::licences::{load_licence, parse_licence_id};
use crate::paging::scan_page;
use crate::{PageRequest, Paged, Registry, RegistryError};

/// The registry's clock for use codes' validity: the system clock, which tests move forward.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    /// Now, as the registry sees it.
    pub fn now(&self) -> Timestamp {
        Timestamp(Timestamp::now().0 + self.0.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

/// The holder a holder agent names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderRef {
    /// Person or organisation.
    pub kind: HolderKind,
    /// Resident ID or credit code.
    pub id: String,
}

impl HolderRef {
    /// Checks the ID for its kind.
    pub fn new(kind: HolderKind, id: &str) -> Result<Self, RegistryError> {
        let h = Holder::new(kind, id.trim(), "-")?;
        Ok(Self {
            kind: h.kind,
            id: h.id,
        })
    }

    fn prefix(&self) -> Vec<u8> {
        holder_prefix(self.kind, &self.id)
    }

    fn holds(&self, kind: HolderKind, id: &str) -> bool {
        self.kind == kind && self.id == id
    }
}

/// Index prefix of a holder: kind (1 byte) ‖ ID.
pub(crate) fn holder_prefix(kind: HolderKind, id: &str) -> Vec<u8> {
    let k = match kind {
        HolderKind::Person => b'P',
        HolderKind::Organisation => b'O',
    };
    [&[k][..], id.as_bytes()].concat()
}

/// The holder commitment of one entry.
pub(crate) fn holder_commitment(salt: &[u8], kind: HolderKind, id: &str) -> [u8; 32] {
    sha256(&[salt, kind.as_str().as_bytes(), b"\n", id.as_bytes()])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The record a holder entry commits to: the salt and the holder, and the code's state after
/// the act (use code entries) or the listing (listing entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HolderAct {
    /// Format version, 1.
    pub v: u32,
    /// The commitment's salt.
    #[serde(with = "certseal_core::bytes")]
    pub salt: Vec<u8>,
    /// The holder's kind.
    pub holder_kind: HolderKind,
    /// The holder's ID.
    pub holder_id: String,
    /// The code after the act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_code: Option<UseCode>,
    /// What was listed: `usage` or `use_code`, and " (next page)" past the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<String>,
    /// Items the listing returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<u32>,
}

/// Appends the entry of one act for a holder: the record carries the salt, the entry only the
/// commitment.
pub(crate) fn append_holder_act(
    txn: &mut RegTxn<'_>,
    actor: &Actor,
    kind: &str,
    subject: &str,
    act: &HolderAct,
    mut extra: BTreeMap<String, Extra>,
) -> Result<u64, RegistryError> {
    let commitment = holder_commitment(&act.salt, act.holder_kind, &act.holder_id);
    extra.insert("holder".to_owned(), Extra::Text(hex(&commitment)));
    if let Some(c) = &act.use_code {
        extra.insert("licence".to_owned(), Extra::Text(c.licence.to_string()));
        extra.insert("code".to_owned(), Extra::Text(hex(&c.hash)));
        extra.insert("agent".to_owned(), Extra::Text(c.agent.to_string()));
    }
    let index = txn.state.next_index();
    append(txn, actor, kind, subject, &encode(act), extra);
    Ok(index)
}

fn salt() -> Result<Vec<u8>, RegistryError> {
    let mut s = vec![0u8; 16];
    certseal_crypto::random(&mut s).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    Ok(s)
}

/// What a holder agent asks for in a new use code.
#[derive(Debug, Clone, Default)]
pub struct NewUseCode {
    /// The licence.
    pub licence_id: String,
    /// Purpose codes.
    pub purposes: Vec<String>,
    /// Personal fields shown.
    pub fields: Vec<String>,
    /// A department's credit code, or `None` for anyone.
    pub audience: Option<String>,
    /// Whether the audience is anyone (`audience` must then be `None`).
    pub anyone: bool,
    /// Validity in seconds.
    pub validity_seconds: u64,
    /// Uses; 0 means 1.
    pub uses: u32,
}

/// A new use code: the code itself, shown once.
#[derive(Clone)]
pub struct CreatedUseCode {
    /// The code.
    pub code: UseCodeText,
    /// Its QR string.
    pub qr: String,
    /// Its state.
    pub info: UseCode,
    /// Its `use_code.created` entry.
    pub log_index: u64,
}

impl std::fmt::Debug for CreatedUseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The QR string holds the code: a bearer secret stays out of logs.
        f.debug_struct("CreatedUseCode")
            .field("info", &self.info)
            .field("log_index", &self.log_index)
            .finish_non_exhaustive()
    }
}

/// One check of a holder's licence.
#[derive(Debug, Clone)]
pub struct UsageView {
    /// The receipt's payload.
    pub receipt: Receipt,
    /// The signed receipt.
    pub signed: Vec<u8>,
    /// Its audit-log entry.
    pub log_index: u64,
    /// The checking department's registered name.
    pub department_name: Option<String>,
}

pub(crate) fn load_use_code(r: &dyn Read, hash: &[u8]) -> Result<Option<UseCode>, RegistryError> {
    r.get(Table::UseCodes, hash)?
        .map(|b| decode("use code", &b))
        .transpose()
}

fn use_code_txn(txn: &RegTxn<'_>, hash: &[u8]) -> Result<Option<UseCode>, RegistryError> {
    txn.get(Table::UseCodes, hash)?
        .map(|b| decode("use code", &b))
        .transpose()
}

/// The SHA-256 the registry keeps of a code.
pub(crate) fn code_hash(code: &UseCodeText) -> Vec<u8> {
    sha256(&[code.as_str().as_bytes()]).to_vec()
}

/// A refused code: PERMISSION_DENIED with its reason, logged.
pub(crate) fn refused(actor: &Actor, reason: UseCodeRefusal) -> RegistryError {
    tracing::warn!(department = %actor.department, role = actor.role.as_str(), reason = reason.as_str(), "use code refused");
    RegistryError::UseCodeRefused(reason)
}

impl Registry {
    /// The clock use codes are judged by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn authorize_agent(&self, actor: &Actor, action: &str) -> Result<(), RegistryError> {
        self.authorize(actor, Role::HolderAgent, action).map(|_| ())
    }

    /// Creates a use code for `holder`'s licence. Needs the holder_agent role.
    pub async fn create_use_code(
        &self,
        actor: &Actor,
        holder: &HolderRef,
        req: &NewUseCode,
    ) -> Result<CreatedUseCode, RegistryError> {
        const ACTION: &str = "creating a use code";
        self.authorize_agent(actor, ACTION)?;
        let mut v = Vec::new();
        let id = parse_licence_id(&req.licence_id)?;
        let purposes: BTreeSet<String> = req.purposes.iter().map(|p| p.trim().to_owned()).collect();
        if purposes.is_empty() || purposes.len() > MAX_USE_CODE_ITEMS {
            v.push(FieldViolation::new(
                "purposes",
                format!("a use code names 1 to {MAX_USE_CODE_ITEMS} purposes"),
            ));
        }
        for (i, p) in req.purposes.iter().enumerate() {
            if !self.purposes.iter().any(|k| k == p.trim()) {
                v.push(FieldViolation::new(
                    format!("purposes[{i}]"),
                    format!(
                        "unknown purpose code '{}'; known: {}",
                        p.trim(),
                        self.purposes.join(", ")
                    ),
                ));
            }
        }
        let fields: BTreeSet<String> = req.fields.iter().map(|f| f.trim().to_owned()).collect();
        if fields.len() > MAX_USE_CODE_ITEMS {
            v.push(FieldViolation::new(
                "fields",
                format!("a use code names at most {MAX_USE_CODE_ITEMS} fields"),
            ));
        }
        let audience = match (&req.audience, req.anyone) {
            (Some(d), false) => match parse_credit_code("audience.department", d) {
                Ok(code) => Some(Audience::Department(code)),
                Err(RegistryError::InvalidArgument(mut e)) => {
                    v.append(&mut e);
                    None
                }
                Err(e) => return Err(e),
            },
            (None, true) => Some(Audience::Anyone),
            _ => {
                v.push(FieldViolation::new(
                    "audience",
                    "name one department, or anyone",
                ));
                None
            }
        };
        if purposes.contains(crate::public::PUBLIC_PAGE_PURPOSE) && !req.anyone {
            v.push(FieldViolation::new(
                "purposes",
                "PUBLIC_PAGE is for codes whose audience is anyone: the page is anonymous",
            ));
        }
        if !(MIN_USE_CODE_VALIDITY_SECS..=MAX_USE_CODE_VALIDITY_SECS)
            .contains(&req.validity_seconds)
        {
            v.push(FieldViolation::new(
                "validity_seconds",
                format!(
                    "from {MIN_USE_CODE_VALIDITY_SECS} (5 minutes) to {MAX_USE_CODE_VALIDITY_SECS} (30 days)"
                ),
            ));
        }
        let uses = if req.uses == 0 { 1 } else { req.uses };
        if uses > MAX_USE_CODE_USES {
            v.push(FieldViolation::new(
                "uses",
                format!("at most {MAX_USE_CODE_USES}"),
            ));
        }
        // The licence must be the holder's: an unknown licence is refused the same way, so an
        // agent learns nothing of licences that are not its holder's.
        let licence = load_licence(self.store.snapshot().as_ref(), &id)?
            .filter(|l| holder.holds(l.holder_kind, &l.holder_id))
            .ok_or_else(|| {
                self.deny(
                    actor,
                    ACTION,
                    format!("the holder named does not hold licence {id}"),
                )
            })?;
        if licence.status() != LicenceStatus::Active {
            return Err(RegistryError::FailedPrecondition(format!(
                "licence {id} is {}: a use code opens an active licence",
                licence.status().as_str()
            )));
        }
        if licence.expired_at(self.clock.now()) {
            return Err(RegistryError::FailedPrecondition(format!(
                "licence {id} has expired: a use code opens a licence in its validity"
            )));
        }
        {
            let t = self.read_template(
                &licence.type_code,
                crate::TemplateSelector::Version(licence.template_version),
            )?;
            for (i, f) in req.fields.iter().enumerate() {
                if !t.content.fields.iter().any(|s| s.name == f.trim()) {
                    v.push(FieldViolation::new(
                        format!("fields[{i}]"),
                        format!(
                            "licences of type {} (template version {}) have no field '{}'",
                            licence.type_code,
                            licence.template_version,
                            f.trim()
                        ),
                    ));
                }
            }
        }
        if let Some(Audience::Department(d)) = &audience {
            let stamp = self.records.stamp();
            let known = self
                .records
                .department(self.store.as_ref(), &stamp, d)?
                .is_some_and(|d| d.status == certseal_core::DepartmentStatus::Active);
            // A code for a department that may not check licences would open nothing.
            let checks = !self.access.enforce_policy
                || self
                    .records
                    .policy(self.store.as_ref(), &stamp, d)?
                    .is_some_and(|p| p.holds(Role::Verifier) || p.holds(Role::Issuer));
            if !known {
                v.push(FieldViolation::new(
                    "audience.department",
                    format!("no active department {d} is registered"),
                ));
            } else if !checks {
                v.push(FieldViolation::new(
                    "audience.department",
                    format!(
                        "department {d} holds neither the verifier nor the issuer role: it could not use the code"
                    ),
                ));
            }
        }
        if !v.is_empty() {
            return Err(RegistryError::InvalidArgument(v));
        }
        let audience = audience.expect("checked above");
        let mut random = [0u8; 20];
        certseal_crypto::random(&mut random).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let code = UseCodeText::from_random(random[..10].try_into().expect("10 bytes"));
        let now = self.clock.now();
        let info = UseCode {
            v: 1,
            id: SealId::new(
                Timestamp::now().0.max(0) as u64,
                random[10..].try_into().expect("10 bytes"),
            ),
            hash: code_hash(&code),
            licence: id.clone(),
            holder_kind: holder.kind,
            holder_id: holder.id.clone(),
            agent: actor.department.clone(),
            purposes,
            fields,
            audience,
            created_at: now,
            not_after: Timestamp(now.0 + req.validity_seconds as i64 * 1000),
            uses,
            used: 0,
            revoked_at: None,
        };
        let act = HolderAct {
            v: 1,
            salt: salt()?,
            holder_kind: holder.kind,
            holder_id: holder.id.clone(),
            use_code: Some(info.clone()),
            listing: None,
            listed: None,
        };
        let (actor_c, info_c, prefix, holder_c) =
            (actor.clone(), info.clone(), holder.clone(), holder.clone());
        let prefix = prefix.prefix();
        let log_index = self
            .sequencer
            .submit(move |txn| -> Result<u64, RegistryError> {
                // Against the latest state: a licence revoked meanwhile gets no code.
                let l = crate::licences::load_licence_txn(txn, &info_c.licence)?;
                if !holder_c.holds(l.holder_kind, &l.holder_id)
                    || l.status() != LicenceStatus::Active
                {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "licence {} changed while the code was made; ask again",
                        info_c.licence
                    )));
                }
                if txn.get(Table::UseCodes, &info_c.hash)?.is_some() {
                    return Err(RegistryError::AlreadyExists(
                        "a use code with this hash exists: ask again".into(),
                    ));
                }
                txn.put(Table::UseCodes, info_c.hash.clone(), encode(&info_c));
                txn.put(
                    Table::UseCodeIds,
                    info_c.id.as_bytes().to_vec(),
                    info_c.hash.clone(),
                );
                txn.put(
                    Table::UseCodesByHolder,
                    [
                        &prefix[..],
                        &(info_c.created_at.0.max(0) as u64).to_be_bytes(),
                        info_c.id.as_bytes(),
                    ]
                    .concat(),
                    Vec::new(),
                );
                let mut extra = BTreeMap::from([
                    ("uses".to_owned(), Extra::Uint(info_c.uses.into())),
                    (
                        "not_after".to_owned(),
                        Extra::Uint(info_c.not_after.0.max(0) as u64),
                    ),
                ]);
                if let Audience::Department(d) = &info_c.audience {
                    extra.insert("audience".to_owned(), Extra::Text(d.to_string()));
                } else {
                    extra.insert("audience".to_owned(), Extra::Text("anyone".into()));
                }
                append_holder_act(
                    txn,
                    &actor_c,
                    "use_code.created",
                    &info_c.id.to_string(),
                    &act,
                    extra,
                )
            })
            .await?;
        Ok(CreatedUseCode {
            qr: code.qr_string(&id),
            code,
            info,
            log_index,
        })
    }

    /// Revokes one of `holder`'s use codes; revoking a revoked code returns it unchanged.
    pub async fn revoke_use_code(
        &self,
        actor: &Actor,
        holder: &HolderRef,
        code_id: &str,
    ) -> Result<UseCode, RegistryError> {
        self.authorize_agent(actor, "revoking a use code")?;
        let id: SealId = code_id
            .trim()
            .parse()
            .map_err(|e: certseal_core::IdError| RegistryError::invalid("code_id", e.0))?;
        let (actor_c, holder_c) = (actor.clone(), holder.clone());
        let now = self.clock.now();
        let salt = salt()?;
        self.sequencer
            .submit(move |txn| -> Result<UseCode, RegistryError> {
                // Another holder's code is as unknown as a code that does not exist.
                let not_found =
                    || RegistryError::NotFound(format!("the holder has no use code {id}"));
                let hash = txn
                    .get(Table::UseCodeIds, id.as_bytes())?
                    .ok_or_else(not_found)?;
                let mut code = use_code_txn(txn, &hash)?
                    .ok_or_else(|| RegistryError::Corrupt(format!("use code {id}")))?;
                if !holder_c.holds(code.holder_kind, &code.holder_id) {
                    return Err(not_found());
                }
                if code.revoked_at.is_some() {
                    return Ok(code);
                }
                code.revoked_at = Some(now);
                txn.put(Table::UseCodes, hash, encode(&code));
                let act = HolderAct {
                    v: 1,
                    salt,
                    holder_kind: holder_c.kind,
                    holder_id: holder_c.id.clone(),
                    use_code: Some(code.clone()),
                    listing: None,
                    listed: None,
                };
                append_holder_act(
                    txn,
                    &actor_c,
                    "use_code.revoked",
                    &id.to_string(),
                    &act,
                    BTreeMap::new(),
                )?;
                Ok(code)
            })
            .await
    }

    /// Logs that an agent listed something of `holder`'s.
    async fn log_listing(
        &self,
        actor: &Actor,
        holder: &HolderRef,
        kind: &'static str,
        page: &PageRequest,
        listed: usize,
    ) -> Result<(), RegistryError> {
        let act = HolderAct {
            v: 1,
            salt: salt()?,
            holder_kind: holder.kind,
            holder_id: holder.id.clone(),
            use_code: None,
            listing: Some(format!(
                "{}{}",
                kind.trim_end_matches(".listed"),
                if page.token.is_empty() {
                    ""
                } else {
                    " (next page)"
                }
            )),
            listed: Some(listed as u32),
        };
        let actor_c = actor.clone();
        self.sequencer
            .submit(move |txn| -> Result<u64, RegistryError> {
                append_holder_act(txn, &actor_c, kind, "", &act, BTreeMap::new())
            })
            .await
            .map(|_| ())
    }

    /// `holder`'s use codes, newest first (an audit-log entry says the agent listed them).
    pub async fn list_use_codes(
        &self,
        actor: &Actor,
        holder: &HolderRef,
        page: &PageRequest,
    ) -> Result<Paged<UseCode>, RegistryError> {
        self.authorize_agent(actor, "listing use codes")?;
        let listed = self.use_codes_page(holder, page)?;
        self.log_listing(actor, holder, "use_code.listed", page, listed.items.len())
            .await?;
        Ok(listed)
    }

    fn use_codes_page(
        &self,
        holder: &HolderRef,
        page: &PageRequest,
    ) -> Result<Paged<UseCode>, RegistryError> {
        let prefix = holder.prefix();
        let snap = self.store.snapshot();
        scan_page(
            &self.page_tokens,
            snap.as_ref(),
            Table::UseCodesByHolder,
            &prefix,
            Direction::Reverse,
            page,
            10_000,
            |k, _| {
                let id = <[u8; 16]>::try_from(&k[k.len().saturating_sub(16)..])
                    .map_err(|_| RegistryError::Corrupt("use code index key".into()))?;
                let hash = snap
                    .get(Table::UseCodeIds, &id)?
                    .ok_or_else(|| RegistryError::Corrupt("use code ID index".into()))?;
                load_use_code(snap.as_ref(), &hash)?
                    .ok_or_else(|| RegistryError::Corrupt("use code missing".into()))
                    .map(Some)
            },
        )
    }

    /// Every check of every licence of `holder`, newest first, each with its receipt and log
    /// index (an audit-log entry says the agent listed them).
    pub async fn list_usage(
        &self,
        actor: &Actor,
        holder: &HolderRef,
        page: &PageRequest,
    ) -> Result<Paged<UsageView>, RegistryError> {
        self.authorize_agent(actor, "listing a holder's usage")?;
        let listed = self.usage_page(holder, page)?;
        self.log_listing(actor, holder, "usage.listed", page, listed.items.len())
            .await?;
        Ok(listed)
    }

    fn usage_page(
        &self,
        holder: &HolderRef,
        page: &PageRequest,
    ) -> Result<Paged<UsageView>, RegistryError> {
        let prefix = holder.prefix();
        let snap = self.store.snapshot();
        let stamp = self.records.stamp();
        scan_page(
            &self.page_tokens,
            snap.as_ref(),
            Table::ReceiptsByHolder,
            &prefix,
            Direction::Reverse,
            page,
            10_000,
            |k, _| {
                let rid = <[u8; 16]>::try_from(&k[k.len().saturating_sub(16)..])
                    .map_err(|_| RegistryError::Corrupt("usage index key".into()))?;
                let view = self.load_receipt(snap.as_ref(), &rid)?;
                let department_name = self
                    .records
                    .department(self.store.as_ref(), &stamp, &view.receipt.verifier)?
                    .map(|d| d.name.clone());
                Ok(Some(UsageView {
                    receipt: view.receipt,
                    signed: view.signed,
                    log_index: view.log_index,
                    department_name,
                }))
            },
        )
    }

    /// The code a check presents, as stored, or why it opens nothing.
    pub(crate) fn presented_code(
        &self,
        actor: &Actor,
        text: &str,
    ) -> Result<(UseCode, Option<LicenceId>), RegistryError> {
        let (code, licence) = certseal_core::use_code::parse_presented(text)
            .map_err(|e| RegistryError::invalid("use_code", e))?;
        match load_use_code(self.store.as_ref(), &code_hash(&code))? {
            Some(c) => Ok((c, licence)),
            None => Err(refused(actor, UseCodeRefusal::Unknown)),
        }
    }
}

/// Counts one use of `code` in the check's transaction, against its latest state: of two
/// checks presenting a code's last use at once, one is refused here and writes nothing.
pub(crate) fn use_once(
    txn: &mut RegTxn<'_>,
    actor: &Actor,
    presented: &UseCode,
    presenter: certseal_core::use_code::Presenter<'_>,
    purpose: &str,
    now: Timestamp,
) -> Result<(), RegistryError> {
    let mut code = use_code_txn(txn, &presented.hash)?
        .ok_or_else(|| RegistryError::Corrupt(format!("use code {}", presented.id)))?;
    if let Some(reason) = code.refusal(&presented.licence, presenter, purpose, now) {
        return Err(refused(actor, reason));
    }
    code.used += 1;
    txn.put(Table::UseCodes, code.hash.clone(), encode(&code));
    let act = HolderAct {
        v: 1,
        salt: salt()?,
        holder_kind: code.holder_kind,
        holder_id: code.holder_id.clone(),
        use_code: Some(code.clone()),
        listing: None,
        listed: None,
    };
    append_holder_act(
        txn,
        actor,
        "use_code.used",
        &code.id.to_string(),
        &act,
        BTreeMap::from([("used".to_owned(), Extra::Uint(code.used.into()))]),
    )?;
    Ok(())
}

/// Index key of a check in its holder's record.
pub(crate) fn usage_key(kind: HolderKind, id: &str, at: Timestamp, receipt: &SealId) -> Vec<u8> {
    [
        &holder_prefix(kind, id)[..],
        &(at.0.max(0) as u64).to_be_bytes(),
        receipt.as_bytes(),
    ]
    .concat()
}

const META_USAGE_INDEX: &[u8] = b"usage_index";

/// Fills the holders' record with the checks made before it existed, once.
pub(crate) fn migrate_usage_index(store: &dyn KvStore) -> Result<(), RegistryError> {
    if store.writable().is_err() || store.get(Table::Meta, META_USAGE_INDEX)?.is_some() {
        return Ok(());
    }
    let mut after: Option<Vec<u8>> = None;
    // The last licence read and its holder: a licence's receipts are next to each other.
    let mut holder_of: Option<(Vec<u8>, Option<HolderRef>)> = None;
    let mut count = 0u64;
    loop {
        let page = store.scan(
            Table::ReceiptsByLicence,
            b"",
            after.as_deref(),
            4096,
            Direction::Forward,
        )?;
        let mut batch = Batch::new();
        for (k, _) in &page.items {
            let Some(sep) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            if k.len() != sep + 1 + 8 + 16 {
                continue;
            }
            let licence = &k[..sep];
            if holder_of.as_ref().is_none_or(|(l, _)| l != licence) {
                let h = match std::str::from_utf8(licence)
                    .ok()
                    .and_then(|s| s.parse::<LicenceId>().ok())
                {
                    Some(id) => load_licence(store, &id)?.map(|l| HolderRef {
                        kind: l.holder_kind,
                        id: l.holder_id,
                    }),
                    None => None,
                };
                holder_of = Some((licence.to_vec(), h));
            }
            if let Some((_, Some(holder))) = &holder_of {
                let at = u64::from_be_bytes(k[sep + 1..sep + 9].try_into().expect("8 bytes"));
                batch.put(
                    Table::ReceiptsByHolder,
                    [&holder.prefix()[..], &at.to_be_bytes(), &k[sep + 9..]].concat(),
                    licence.to_vec(),
                );
                count += 1;
            }
        }
        store.write(&batch, false)?;
        match (page.more, page.items.last()) {
            (true, Some((k, _))) => after = Some(k.clone()),
            _ => break,
        }
    }
    let mut done = Batch::new();
    done.put(Table::Meta, META_USAGE_INDEX, b"1".to_vec());
    store.write(&done, true)?;
    if count > 0 {
        tracing::info!(
            receipts = count,
            "indexed earlier checks in the holders' record"
        );
    }
    Ok(())
}
