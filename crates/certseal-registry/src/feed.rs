//! The change feed (归集): the log's entries about licences, seals, templates and departments,
//! in log order, for a sharing platform (role `sync`) that follows the types its sync grants
//! name. A consumer's position is a log index under the log's origin, so it resumes exactly
//! where it stopped; each change carries its entry, which an inclusion proof by index ties to a
//! signed checkpoint.
//!
//! The feed reads the store, never a queue the writer fills: a consumer however slow holds
//! nothing the writer waits for.

use certseal_core::{
    Actor, FieldAccess, Licence, LicenceClaims, LicenceRevocationReason, Role, Timestamp, TypeCode,
    Upstream,
};
use certseal_crypto::cose;
use certseal_log::{Entry, Extra};
use certseal_store::{Read, Table};

use crate::access::{Access, Reading};
use crate::audit::log_err;
use crate::codec::decode;
use crate::licences::load_licence;
use crate::{Registry, RegistryError};

const WATCHING: &str = "following the change feed";

/// Longest log origin a position names.
const MAX_ORIGIN: usize = 255;

/// Most entries one page of the feed reads.
pub const MAX_FEED_PAGE: usize = 256;

/// Extra fields of an entry whose change was decided upstream.
pub(crate) const UPSTREAM_SOURCE: &str = "upstream_source";
pub(crate) const UPSTREAM_REF: &str = "upstream_ref";
pub(crate) const UPSTREAM_TIME: &str = "upstream_time";

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSubject {
    /// A licence (subject: its ID).
    Licence,
    /// A seal (its ID).
    Seal,
    /// A licence type's template (its type code).
    Template,
    /// A department (its credit code).
    Department,
}

/// A licence as a change shows it to the caller.
#[derive(Debug, Clone)]
pub struct ChangedLicence {
    /// The stored state as of the change (notes cleared unless every field is granted).
    pub licence: Licence,
    /// What its document says, with the fields the caller may see (and a person holder masked
    /// unless every field is granted).
    pub claims: LicenceClaims,
    /// The signed document, for an issue, amendment or renewal when every field is granted.
    pub document: Option<Vec<u8>>,
}

/// One change of the feed.
#[derive(Debug, Clone)]
pub struct FeedChange {
    /// The entry's index.
    pub index: u64,
    /// The entry.
    pub entry: Entry,
    /// Its bytes, as the log hashes them.
    pub entry_bytes: Vec<u8>,
    /// What it is about.
    pub subject: ChangeSubject,
    /// For a licence.
    pub licence: Option<ChangedLicence>,
    /// The national platforms' term for it (empty when it has none) and, for a revocation, the
    /// reason code.
    pub national: (&'static str, Option<&'static str>),
    /// Set when it was decided upstream.
    pub upstream: Option<Upstream>,
}

/// A page of the feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    /// The changes the caller follows among the entries read.
    pub changes: Vec<FeedChange>,
    /// The first index not read yet.
    pub next: u64,
}

/// The subject of an entry kind the feed carries.
fn subject_of(kind: &str) -> Option<ChangeSubject> {
    let (what, _) = kind.split_once('.')?;
    match what {
        // A sealed file is another form of the same licence, not a change of it.
        "licence" if kind != "licence.ofd_sealed" => Some(ChangeSubject::Licence),
        "seal" => Some(ChangeSubject::Seal),
        "template" => Some(ChangeSubject::Template),
        "department" => Some(ChangeSubject::Department),
        _ => None,
    }
}

fn text<'a>(entry: &'a Entry, key: &str) -> Option<&'a str> {
    match entry.extra.get(key) {
        Some(Extra::Text(t)) => Some(t),
        _ => None,
    }
}

/// The upstream decision an entry records, if any.
fn upstream_of(entry: &Entry) -> Option<Upstream> {
    let source = text(entry, UPSTREAM_SOURCE)?;
    let reference = text(entry, UPSTREAM_REF)?;
    let decided_at = match entry.extra.get(UPSTREAM_TIME) {
        Some(Extra::Uint(ms)) => Timestamp(*ms as i64),
        _ => return None,
    };
    Some(Upstream {
        source: source.to_owned(),
        reference: reference.to_owned(),
        decided_at,
    })
}

/// The national term of a licence change (docs/formats.md, "The national status vocabulary").
/// A supersession takes the term of its successor's entry, written just before it.
pub fn national_term(
    kind: &str,
    reason: Option<LicenceRevocationReason>,
    successor_kind: Option<&str>,
) -> &'static str {
    match (kind, reason) {
        ("licence.suspended", _) => "暂扣",
        ("licence.reinstated", _) => "恢复",
        ("licence.revoked", Some(r)) => r.national_term(),
        ("licence.amended", _) => "变更",
        ("licence.renewed", _) => "补发/换发",
        ("licence.superseded", _) => match successor_kind {
            Some("licence.amended") => "变更",
            Some("licence.renewed") => "补发/换发",
            _ => "",
        },
        _ => "",
    }
}

fn reason_of(entry: &Entry) -> Option<LicenceRevocationReason> {
    text(entry, "reason").and_then(LicenceRevocationReason::from_code)
}

/// What the caller sees of the changes: `None` when the policy is not enforced (every type,
/// public fields), else per followed type.
struct Following<'a>(Option<&'a certseal_core::DepartmentPolicy>);

impl Following<'_> {
    fn fields(&self, type_code: &TypeCode) -> Option<Reading<'_>> {
        match self.0 {
            None => Some(Reading::Unenforced),
            Some(p) => p.sync_grant(type_code).map(|g| Reading::Fields(&g.fields)),
        }
    }

    fn follows_template(&self, type_code: &str) -> bool {
        match self.0 {
            None => true,
            Some(p) => p.sync.iter().any(|g| g.type_code.as_str() == type_code),
        }
    }
}

impl Registry {
    /// Changes whenever this node signs a new checkpoint. A cluster follower signs nothing: its
    /// consumers also look at the database's latest checkpoint now and then.
    pub fn watch_signed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signed.subscribe()
    }

    /// Checks a consumer's position and returns the first index it is to get. `after` is the
    /// last index it holds (`None`: it holds nothing), read from the log `origin`.
    pub fn feed_start(
        &self,
        actor: &Actor,
        after: Option<u64>,
        origin: &str,
    ) -> Result<u64, RegistryError> {
        self.authorize(actor, Role::Sync, WATCHING)?;
        let latest = self.latest_checkpoint().checkpoint;
        let origin = origin.trim();
        if after.is_some() && origin.is_empty() {
            return Err(RegistryError::invalid(
                "origin",
                "required with `after`: the origin the changes you hold came from",
            ));
        }
        if origin.chars().count() > MAX_ORIGIN || origin.chars().any(char::is_control) {
            return Err(RegistryError::invalid(
                "origin",
                format!("a log origin: at most {MAX_ORIGIN} characters, no control characters"),
            ));
        }
        if !origin.is_empty() && origin != latest.origin {
            return Err(RegistryError::FailedPrecondition(
                match (self.restore_state(), after) {
                    (Some(r), Some(a)) if r.old_origin == origin => {
                        let b = r.backup_size;
                        let keep = match b.checked_sub(1) {
                            Some(last) => {
                                let resume = a.min(last);
                                format!(
                                    "keep the changes you hold up to index {resume}, drop any later one, and resume with after = {resume}"
                                )
                            }
                            None => "drop every change you hold and start again without `after`"
                                .to_owned(),
                        };
                        format!(
                            "the log you followed was restored from a backup at index {b}: entry {b} starts log '{}', which shares the entries before {b} and no later one; {keep} and origin '{}'",
                            r.new_origin, r.new_origin
                        )
                    }
                    _ => format!(
                        "this registry's log is '{}', not the one given: the changes you hold come from another log",
                        latest.origin
                    ),
                },
            ));
        }
        match after {
            None => Ok(0),
            Some(a) if a >= latest.size => Err(RegistryError::FailedPrecondition(format!(
                "after = {a} is beyond the log '{}': its latest signed checkpoint has {} entries{}",
                latest.origin,
                latest.size,
                match latest.size.checked_sub(1) {
                    Some(last) => format!(", the last at index {last}"),
                    None => String::new(),
                }
            ))),
            Some(a) => Ok(a + 1),
        }
    }

    /// The changes the caller follows among the entries `[from, to)`, at most
    /// [`MAX_FEED_PAGE`] entries read. Needs the sync role (checked again on every page, so a
    /// withdrawn grant or role ends a long-running feed).
    pub fn feed_page(&self, actor: &Actor, from: u64, to: u64) -> Result<FeedPage, RegistryError> {
        let access = self.authorize(actor, Role::Sync, WATCHING)?;
        let snap = self.store.snapshot();
        let limit = (to.saturating_sub(from) as usize).min(MAX_FEED_PAGE);
        if limit == 0 {
            return Ok(FeedPage {
                changes: Vec::new(),
                next: from,
            });
        }
        let following = Following(access.policy());
        let mut changes = Vec::new();
        let mut previous_kind: Option<String> = None;
        let mut next = from;
        for (index, bytes) in crate::audit_read::log_entries(snap.as_ref(), from, limit)? {
            next = index + 1;
            let entry = Entry::decode(&bytes).map_err(log_err)?;
            let kind = entry.kind.clone();
            if let Some(change) = self.change_of(
                snap.as_ref(),
                &following,
                index,
                entry,
                &bytes,
                &previous_kind,
            )? {
                changes.push(change);
            }
            previous_kind = Some(kind);
        }
        Ok(FeedPage { changes, next })
    }

    /// Whether the feed shows the caller `entry` (for its reading of the log by index).
    pub(crate) fn feed_shows(&self, access: &Access, entry: &Entry) -> Result<bool, RegistryError> {
        let following = Following(access.policy());
        Ok(match subject_of(&entry.kind) {
            None => false,
            Some(ChangeSubject::Seal | ChangeSubject::Department) => true,
            Some(ChangeSubject::Template) => following.follows_template(&entry.subject),
            Some(ChangeSubject::Licence) => {
                let snap = self.store.snapshot();
                self.licence_type(snap.as_ref(), entry)?
                    .is_some_and(|t| following.fields(&t).is_some())
            }
        })
    }

    /// The type of the licence an entry is about.
    fn licence_type(&self, r: &dyn Read, entry: &Entry) -> Result<Option<TypeCode>, RegistryError> {
        if let Some(t) = text(entry, "type").and_then(|t| t.parse().ok()) {
            return Ok(Some(t));
        }
        let Ok(id) = entry.subject.parse() else {
            return Ok(None);
        };
        Ok(load_licence(r, &id)?.map(|l| l.type_code))
    }

    fn change_of(
        &self,
        r: &dyn Read,
        following: &Following<'_>,
        index: u64,
        entry: Entry,
        bytes: &[u8],
        previous_kind: &Option<String>,
    ) -> Result<Option<FeedChange>, RegistryError> {
        let Some(subject) = subject_of(&entry.kind) else {
            return Ok(None);
        };
        let mut licence = None;
        let mut national = ("", None);
        match subject {
            ChangeSubject::Seal | ChangeSubject::Department => {}
            ChangeSubject::Template => {
                if !following.follows_template(&entry.subject) {
                    return Ok(None);
                }
            }
            ChangeSubject::Licence => {
                let Some(type_code) = self.licence_type(r, &entry)? else {
                    return Ok(None);
                };
                let Some(reading) = following.fields(&type_code) else {
                    return Ok(None);
                };
                let successor = match previous_kind {
                    // The previous page's last entry: read it again.
                    None if entry.kind == "licence.superseded" && index > 0 => r
                        .get(Table::LogEntries, &(index - 1).to_be_bytes())?
                        .map(|b| Entry::decode(&b).map_err(log_err))
                        .transpose()?
                        .map(|e| e.kind),
                    other => other.clone(),
                };
                let reason = reason_of(&entry);
                national = (
                    national_term(&entry.kind, reason, successor.as_deref()),
                    reason.map(LicenceRevocationReason::code),
                );
                licence = Some(self.changed_licence(r, &entry, reading)?);
            }
        }
        Ok(Some(FeedChange {
            index,
            upstream: upstream_of(&entry),
            entry_bytes: bytes.to_vec(),
            entry,
            subject,
            licence,
            national,
        }))
    }

    /// The licence as of `entry`, as `reading` shows it.
    fn changed_licence(
        &self,
        r: &dyn Read,
        entry: &Entry,
        reading: Reading<'_>,
    ) -> Result<ChangedLicence, RegistryError> {
        let id = entry
            .subject
            .parse()
            .map_err(|_| RegistryError::Corrupt(format!("entry subject {}", entry.subject)))?;
        let current = load_licence(r, &id)?
            .ok_or_else(|| RegistryError::Corrupt(format!("licence {id} of a log entry")))?;
        // An issue commits to the signed document; every other change to the licence's state.
        let issue = entry.digest.as_slice() == current.document_digest.as_slice();
        let (mut licence, document) = if issue {
            let document = current_document(r, &current)?;
            let mut l = current;
            l.history.truncate(1);
            l.next = None;
            (l, document)
        } else {
            let record = r
                .get(Table::Records, &entry.digest)?
                .ok_or_else(|| RegistryError::Corrupt(format!("record of licence {id}'s entry")))?;
            let l: Licence = decode("licence", &record)?;
            let document = current_document(r, &l)?;
            (l, document)
        };
        let sign1 = cose::parse_sign1(&document, usize::MAX)
            .map_err(|e| RegistryError::Corrupt(format!("document of licence {id}: {e}")))?;
        let mut claims = LicenceClaims::decode(&sign1.payload)
            .map_err(|e| RegistryError::Corrupt(format!("claims of licence {id}: {e}")))?;
        let all = matches!(reading, Reading::Fields(FieldAccess::All));
        claims.fields = self.visible_fields(Some(reading), &claims);
        if !all {
            for e in &mut licence.history {
                e.note.clear();
            }
            if claims.holder.kind == certseal_core::HolderKind::Person {
                claims.holder.name = crate::public::mask_name(&claims.holder.name);
                claims.holder.id = crate::public::mask_id(&claims.holder.id);
                licence.holder_id = crate::public::mask_id(&licence.holder_id);
            }
        }
        Ok(ChangedLicence {
            licence,
            claims,
            document: (all && issue).then_some(document),
        })
    }
}

/// A licence's signed document.
fn current_document(r: &dyn Read, l: &Licence) -> Result<Vec<u8>, RegistryError> {
    r.get(Table::Records, &l.document_digest)?
        .ok_or_else(|| RegistryError::Corrupt(format!("document of licence {}", l.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_licence_change_has_its_national_term() {
        use LicenceRevocationReason as R;
        assert_eq!(national_term("licence.suspended", None, None), "暂扣");
        assert_eq!(national_term("licence.reinstated", None, None), "恢复");
        assert_eq!(
            national_term("licence.revoked", Some(R::Penalty), None),
            "吊销"
        );
        assert_eq!(
            national_term("licence.revoked", Some(R::Cancelled), None),
            "注销"
        );
        assert_eq!(
            national_term("licence.revoked", Some(R::Withdrawn), None),
            "撤销"
        );
        assert_eq!(
            national_term("licence.revoked", Some(R::Lapsed), None),
            "失效"
        );
        assert_eq!(national_term("licence.amended", None, None), "变更");
        assert_eq!(national_term("licence.renewed", None, None), "补发/换发");
        assert_eq!(
            national_term("licence.superseded", None, Some("licence.amended")),
            "变更"
        );
        assert_eq!(
            national_term("licence.superseded", None, Some("licence.renewed")),
            "补发/换发"
        );
        assert_eq!(national_term("licence.issued", None, None), "");
        assert_eq!(subject_of("licence.ofd_sealed"), None);
        assert_eq!(subject_of("receipt.issued"), None);
        assert_eq!(subject_of("seal.revoked"), Some(ChangeSubject::Seal));
    }
}
