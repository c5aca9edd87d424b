//! Changes decided upstream (回流): a sharing platform (role `sync`) applies to a licence a
//! status change that another authority decided (a licence cancelled, a penalty revocation, a
//! hold), naming the source and its reference. A reference applies once: it is kept for good
//! with the request's digest, so a retry, however late, returns the first answer.

use std::collections::BTreeMap;

use certseal_core::licence::MAX_NOTE;
use certseal_core::{
    Actor, CreditCode, FieldAccess, Licence, LicenceAction, LicenceStatus, Role, Timestamp,
    Upstream,
};
use certseal_crypto::sha256;
use certseal_log::Extra;
use certseal_store::Table;

use crate::audit::RegTxn;
use crate::feed::{UPSTREAM_REF, UPSTREAM_SOURCE, UPSTREAM_TIME};
use crate::licences::{load_licence_txn, parse_licence_id, write_status_change};
use crate::{Registry, RegistryError};

const APPLYING: &str = "applying a change decided upstream";
/// Longest source name, in characters.
pub const MAX_UPSTREAM_SOURCE: usize = 200;
/// Longest upstream reference, in characters.
pub const MAX_UPSTREAM_REFERENCE: usize = 128;
/// How far ahead of this registry's clock an upstream time may be (their clocks differ).
const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// A status change decided upstream.
#[derive(Debug, Clone)]
pub struct UpstreamChange {
    /// The licence.
    pub licence_id: String,
    /// Suspend, reinstate or revoke (never supersede).
    pub action: LicenceAction,
    /// The platform or authority that decided it.
    pub source: String,
    /// Its reference of the decision.
    pub reference: String,
    /// When it was decided there.
    pub decided_at: Timestamp,
    /// Kept in the licence's history; empty: one naming the source and reference.
    pub note: String,
}

/// What applying an upstream change did.
#[derive(Debug, Clone)]
pub struct AppliedUpstream {
    /// The licence now.
    pub licence: Licence,
    /// False when the reference had been applied before: nothing changed now.
    pub applied: bool,
    /// The index of the change's log entry.
    pub log_index: u64,
}

fn check_text(field: &str, value: &str, max: usize) -> Result<String, RegistryError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(RegistryError::invalid(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(v.to_owned())
}

impl UpstreamChange {
    /// What makes two requests with one reference the same.
    fn digest(&self, source: &str, reference: &str, note: &str) -> [u8; 32] {
        let action = match self.action {
            LicenceAction::Suspend => "suspend".to_owned(),
            LicenceAction::Reinstate => "reinstate".to_owned(),
            LicenceAction::Revoke(r) => format!("revoke:{}", r.code()),
            LicenceAction::Supersede => "supersede".to_owned(),
        };
        sha256(&[
            self.licence_id.trim().as_bytes(),
            b"\n",
            action.as_bytes(),
            b"\n",
            source.as_bytes(),
            b"\n",
            reference.as_bytes(),
            b"\n",
            &self.decided_at.0.to_be_bytes(),
            note.as_bytes(),
        ])
    }
}

/// The key of a reference.
fn reference_key(department: &CreditCode, source: &str, reference: &str) -> Vec<u8> {
    [
        department.as_str().as_bytes(),
        &sha256(&[source.as_bytes(), b"\n", reference.as_bytes()]),
    ]
    .concat()
}

/// The stored outcome of a reference: request digest, log index, licence ID.
fn parse_outcome(v: &[u8]) -> Result<([u8; 32], u64, String), RegistryError> {
    if v.len() < 40 {
        return Err(RegistryError::Corrupt("upstream change record".into()));
    }
    let digest: [u8; 32] = v[..32].try_into().expect("32 bytes");
    let index = u64::from_be_bytes(v[32..40].try_into().expect("8 bytes"));
    let id = String::from_utf8(v[40..].to_vec())
        .map_err(|_| RegistryError::Corrupt("upstream change record".into()))?;
    Ok((digest, index, id))
}

/// A time for a message, RFC 3339 in UTC.
fn rfc3339(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{} ms", t.0))
}

/// Whether the caller's sync grants let it change `l` from upstream (`None`: not enforced),
/// and whether they show it every field.
fn applying_grant(
    access: &crate::access::Access,
    actor: &Actor,
    l: &Licence,
) -> Result<bool, RegistryError> {
    let Some(p) = access.policy() else {
        return Ok(false);
    };
    match p.sync_grant(&l.type_code) {
        Some(g) if g.may_apply(&l.issuer) => Ok(matches!(g.fields, FieldAccess::All)),
        _ => Err(crate::access::denied(
            actor,
            APPLYING,
            format!(
                "department {} may not apply upstream changes to licences of type {} issued by {}",
                actor.department, l.type_code, l.issuer
            ),
        )),
    }
}

/// The licence as a platform without every field sees it: no issuer's notes, a person holder
/// masked (as in the feed).
fn masked(mut l: Licence) -> Licence {
    for e in &mut l.history {
        if e.upstream.is_none() {
            e.note.clear();
        }
    }
    if l.holder_kind == certseal_core::HolderKind::Person {
        l.holder_id = crate::public::mask_id(&l.holder_id);
    }
    l
}

/// A restore's replay of an upstream change of the old log: its reference is remembered again
/// (for the entry the replay appends at `index`), so a late retry still applies once.
pub(crate) fn remember_replayed(
    txn: &mut RegTxn<'_>,
    department: &CreditCode,
    l: &Licence,
    index: u64,
) {
    let Some(e) = l.history.last() else { return };
    let Some(u) = &e.upstream else { return };
    let action = match (e.status, e.reason) {
        (LicenceStatus::Suspended, _) => LicenceAction::Suspend,
        (LicenceStatus::Active, _) => LicenceAction::Reinstate,
        (LicenceStatus::Revoked, Some(r)) => LicenceAction::Revoke(r),
        _ => return,
    };
    let change = UpstreamChange {
        licence_id: l.id.to_string(),
        action,
        source: u.source.clone(),
        reference: u.reference.clone(),
        decided_at: u.decided_at,
        note: e.note.clone(),
    };
    let digest = change.digest(&u.source, &u.reference, &e.note);
    txn.put(
        Table::UpstreamChanges,
        reference_key(department, &u.source, &u.reference),
        [&digest[..], &index.to_be_bytes(), l.id.as_str().as_bytes()].concat(),
    );
}

/// How a sequenced upstream change ended.
enum Outcome {
    Applied(Box<Licence>, u64),
    /// Applied before, at this log index.
    Before(u64),
}

impl Registry {
    /// Applies a status change decided upstream. Needs the sync role and a sync grant for the
    /// licence's type that names its issuer. Idempotent by (caller, source, reference).
    pub async fn apply_upstream_change(
        &self,
        actor: &Actor,
        change: &UpstreamChange,
    ) -> Result<AppliedUpstream, RegistryError> {
        let access = self.authorize(actor, Role::Sync, APPLYING)?;
        let id = parse_licence_id(change.licence_id.trim())?;
        let source = check_text("source", &change.source, MAX_UPSTREAM_SOURCE)?;
        let reference = check_text("reference", &change.reference, MAX_UPSTREAM_REFERENCE)?;
        if change.action == LicenceAction::Supersede {
            return Err(RegistryError::invalid(
                "action",
                "a licence is superseded by its issuer amending or renewing it",
            ));
        }
        if change.decided_at.0 <= 0 || change.decided_at.0 > Timestamp::now().0 + CLOCK_SKEW_MS {
            return Err(RegistryError::invalid(
                "decided_at",
                "when it was decided upstream: after 1970 and not in the future",
            ));
        }
        let note = change.note.trim();
        if note.chars().count() > MAX_NOTE || note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(RegistryError::invalid(
                "note",
                format!("at most {MAX_NOTE} characters, no control characters but line breaks"),
            ));
        }
        let note = match note {
            "" => format!("decided upstream by {source} ({reference})"),
            n => n.to_owned(),
        };
        let digest = change.digest(&source, &reference, &note);
        let key = reference_key(&actor.department, &source, &reference);
        let upstream = Upstream {
            source,
            reference,
            decided_at: change.decided_at,
        };
        let actor_ref = actor;
        let (actor, action, licence_id) = (actor.clone(), change.action, id.clone());
        let txn_access = access.clone();
        let reads = vec![
            (Table::Licences, id.as_str().as_bytes().to_vec()),
            (Table::UpstreamChanges, key.clone()),
        ];
        let outcome = self
            .sequencer
            .submit_reading(reads, move |txn| -> Result<Outcome, RegistryError> {
                if let Some(v) = txn.get(Table::UpstreamChanges, &key)? {
                    let (first, index, licence) = parse_outcome(&v)?;
                    if first != digest {
                        return Err(RegistryError::AlreadyExists(format!(
                            "reference '{}' of {} was applied to licence {licence} with another request (log index {index})",
                            upstream.reference, upstream.source
                        )));
                    }
                    return Ok(Outcome::Before(index));
                }
                let mut l = load_licence_txn(txn, &licence_id)?;
                applying_grant(&txn_access, &actor, &l)?;
                // Decisions apply in the order they were taken upstream, and none before the
                // licence existed: a late, older decision must not undo a newer one.
                let newest = l
                    .history
                    .iter()
                    .filter_map(|e| e.upstream.as_ref().map(|u| u.decided_at))
                    .max();
                if upstream.decided_at.0 < l.issued_at.0.div_euclid(1000) * 1000 {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "licence {} was issued at {}, after this decision was taken",
                        l.id,
                        rfc3339(l.issued_at)
                    )));
                }
                if let Some(n) = newest.filter(|n| upstream.decided_at.0 < n.0) {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "licence {} already carries an upstream decision taken at {}, later than this one",
                        l.id,
                        rfc3339(n)
                    )));
                }
                l.apply(action, actor.clone(), Timestamp::now(), &note)?;
                if let Some(e) = l.history.last_mut() {
                    e.upstream = Some(upstream.clone());
                }
                let index = txn.state.next_index();
                write_status_change(
                    txn,
                    &actor,
                    &l,
                    action,
                    BTreeMap::from([
                        (UPSTREAM_SOURCE.into(), Extra::Text(upstream.source.clone())),
                        (UPSTREAM_REF.into(), Extra::Text(upstream.reference.clone())),
                        (
                            UPSTREAM_TIME.into(),
                            Extra::Uint(upstream.decided_at.0 as u64),
                        ),
                    ]),
                );
                txn.put(
                    Table::UpstreamChanges,
                    key.clone(),
                    [&digest[..], &index.to_be_bytes(), l.id.as_str().as_bytes()].concat(),
                );
                Ok(Outcome::Applied(Box::new(l), index))
            })
            .await?;
        let (licence, applied, log_index) = match outcome {
            Outcome::Applied(licence, log_index) => (*licence, true, log_index),
            Outcome::Before(log_index) => {
                let licence = crate::licences::load_licence(self.store.as_ref(), &id)?
                    .ok_or_else(|| RegistryError::Corrupt(format!("licence {id}")))?;
                (licence, false, log_index)
            }
        };
        // A retry answers only while the grant still allows the change.
        let all = applying_grant(&access, actor_ref, &licence)?;
        Ok(AppliedUpstream {
            licence: if all || !access.enforced() {
                licence
            } else {
                masked(licence)
            },
            applied,
            log_index,
        })
    }
}
