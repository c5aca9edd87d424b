//! Online backup, offline restore, and the gate that keeps a restored registry from taking
//! writes until its operator has dealt with what the restore may have undone.
//!
//! A backup is the store's consistent copy at one instant with the log's size, root and signed
//! checkpoint at that instant. A restore checks the copy against that checkpoint and the
//! key-encryption key before it writes anything, then continues the log under a new origin
//! (see [`certseal_log::restore`]): entry `B` is `log.restored`, and nothing is ever signed
//! under the old origin again. Suspensions and revocations the old log recorded after `B` are
//! re-applied from an auditor's export of it (`replay`); without one, writes stay refused until
//! the operator confirms.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use certseal_core::{
    Actor, Department, DepartmentPolicy, Licence, Role, Seal, SealStatus, Timestamp,
};
use certseal_crypto::{Kek, Signer, sha256};
use certseal_log::merkle::{self, Frontier, Hash, leaf_hash};
use certseal_log::restore::{RESTORE_CONFIRMED_KIND, RESTORED_KIND, next_origin};
use certseal_log::{Checkpoint, Entry, Extra, Restoration, VerifierKey};
use certseal_store::{BackupCopy, Direction, Read, Sequencer, SequencerStats, StoreOpener, Table};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditWriter, META_LOG_ORIGIN, META_LOG_SIZE, RegTxn, StoredNodes, append};
use crate::cache::put_cached;
use crate::codec::{decode, encode};
use crate::{DATA_FORMAT, META_FORMAT_KEY, Registry, RegistryError, RegistryOptions};

/// Where the state of a restore is kept in the meta table.
const META_RESTORE: &[u8] = b"restore";

/// A consistent copy of the store, and what its log holds.
#[derive(Debug)]
pub struct Backup {
    /// The copy's files; dropping it deletes the copy.
    pub copy: Box<dyn BackupCopy>,
    /// The log's origin at the backup.
    pub origin: String,
    /// The log's size in the copy.
    pub log_size: u64,
    /// The root of the copy's log.
    pub root: Hash,
    /// The log's signed checkpoint of that size and root.
    pub checkpoint_note: String,
    /// The data folder format of the copy.
    pub data_format: String,
}

/// What a restored registry knows of its restore, kept in its meta table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreState {
    /// The origin of the log the backup was taken from.
    pub old_origin: String,
    /// The origin the registry signs under since the restore.
    pub new_origin: String,
    /// The log's size in the backup: the index of the `log.restored` entry.
    pub backup_size: u64,
    /// The size of the newest old checkpoint the operator gave, if any.
    pub last_size: Option<u64>,
    /// The old log's size up to which its suspensions and revocations were re-applied.
    pub replayed_to: Option<u64>,
    /// Changes re-applied from the old log.
    pub replayed: u64,
    /// When the restore was made (ms).
    pub restored_at: i64,
    /// Whether writes are refused until an operator confirms the restore.
    pub pending: bool,
}

impl RestoreState {
    /// Why writes are refused, for an operator; `None` once they are allowed.
    pub fn refusal(&self) -> Option<String> {
        self.pending.then(|| {
            format!(
                "this registry was restored from a backup of log '{}' at size {}: suspensions and revocations recorded after it may have been undone, so writes are refused until an operator re-applies them (restore again with --replay and an export of the old log) or runs `certseal restore confirm`",
                self.old_origin, self.backup_size
            )
        })
    }
}

/// The sequencer behind the restore gate: while a restore is pending, every write is refused
/// with the reason, and nothing is queued.
#[derive(Debug)]
pub(crate) struct GatedSequencer {
    inner: Sequencer<AuditWriter>,
    restore: RwLock<Option<RestoreState>>,
}

impl GatedSequencer {
    pub(crate) fn new(inner: Sequencer<AuditWriter>, restore: Option<RestoreState>) -> Self {
        Self {
            inner,
            restore: RwLock::new(restore),
        }
    }

    /// Runs `op` on the writer unless a restore is pending (see [`Sequencer::submit`]).
    pub(crate) async fn submit<T, F>(&self, op: F) -> Result<T, RegistryError>
    where
        F: FnOnce(&mut RegTxn<'_>) -> Result<T, RegistryError> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_reading(Vec::new(), op).await
    }

    /// [`GatedSequencer::submit`] for an operation that will read `reads` (see
    /// [`Sequencer::submit_reading`]).
    pub(crate) async fn submit_reading<T, F>(
        &self,
        reads: Vec<(Table, Vec<u8>)>,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: FnOnce(&mut RegTxn<'_>) -> Result<T, RegistryError> + Send + 'static,
        T: Send + 'static,
    {
        let refused = self
            .restore
            .read()
            .expect("lock")
            .as_ref()
            .and_then(RestoreState::refusal);
        if let Some(why) = refused {
            return Err(RegistryError::FailedPrecondition(why));
        }
        self.inner.submit_reading(reads, op).await
    }

    pub(crate) fn stats(&self) -> SequencerStats {
        self.inner.stats()
    }

    pub(crate) fn stopped(&self) -> Option<certseal_store::WriterStop> {
        self.inner.stopped()
    }

    fn state(&self) -> Option<RestoreState> {
        self.restore.read().expect("lock").clone()
    }
}

/// The restore state stored in a data folder, if it was restored.
pub(crate) fn load_restore_state(store: &dyn Read) -> Result<Option<RestoreState>, RegistryError> {
    store
        .get(Table::Meta, META_RESTORE)?
        .map(|b| decode("restore state", &b))
        .transpose()
}

impl Registry {
    /// Takes a consistent copy of the store while the registry keeps serving, with the log's
    /// size, root and signed checkpoint at that instant. Needs the admin role.
    pub async fn backup(&self, actor: &Actor) -> Result<Backup, RegistryError> {
        self.authorize(actor, Role::Admin, "taking a backup")?;
        let store = self.store.clone();
        let copy = tokio::task::spawn_blocking(move || store.backup())
            .await
            .map_err(|e| RegistryError::Corrupt(format!("backup task: {e}")))??;
        let data_format = copy
            .get(Table::Meta, META_FORMAT_KEY)?
            .map(|f| String::from_utf8_lossy(&f).into_owned())
            .unwrap_or_default();
        let origin = copy
            .get(Table::Meta, META_LOG_ORIGIN)?
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default();
        if origin != self.verifier_key.name() {
            return Err(RegistryError::Corrupt(format!(
                "the backup's log is '{origin}', the registry's '{}'",
                self.verifier_key.name()
            )));
        }
        let log_size = crate::audit::meta_u64(copy.as_ref(), META_LOG_SIZE)?;
        let root = Frontier::load(&StoredNodes(copy.as_ref()), log_size)
            .map_err(crate::audit::log_err)?
            .root();
        // The checkpoint of a group is signed right after the group is durable, so the copy
        // may hold the group without it: then the live store has it, or soon will.
        let key = (log_size).to_be_bytes();
        let mut note = copy.get(Table::LogCheckpoints, &key)?;
        for _ in 0..100 {
            if note.is_some() {
                break;
            }
            note = self.store.get(Table::LogCheckpoints, &key)?;
            if note.is_none() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let note = note.ok_or_else(|| {
            RegistryError::Corrupt(format!("no signed checkpoint of size {log_size}"))
        })?;
        let checkpoint_note = String::from_utf8(note)
            .map_err(|_| RegistryError::Corrupt("checkpoint is not text".into()))?;
        let cp = Checkpoint::open(&checkpoint_note, &self.verifier_key)
            .map_err(crate::audit::log_err)?;
        if cp.root != root {
            return Err(RegistryError::Corrupt(format!(
                "the checkpoint of size {log_size} does not have the backup's root"
            )));
        }
        tracing::info!(by = %actor.department, log_size, files = copy.files().len(), "backup taken");
        Ok(Backup {
            copy,
            origin,
            log_size,
            root,
            checkpoint_note,
            data_format,
        })
    }

    /// The restore this registry came from, if any, and whether writes wait for a confirmation.
    pub fn restore_state(&self) -> Option<RestoreState> {
        self.sequencer.state()
    }

    /// Lets a restored registry take writes again without a replay of the old log: the
    /// operator accepts that suspensions and revocations after the backup may be undone (and
    /// has repeated them by hand). Logged as `log.restore_confirmed`. Needs the admin role.
    pub async fn confirm_restore(&self, actor: &Actor) -> Result<RestoreState, RegistryError> {
        self.authorize(actor, Role::Admin, "confirming a restore")?;
        let by = actor.clone();
        let actor = actor.clone();
        let state = self
            .sequencer
            .inner
            .submit(move |txn| {
                let mut state = load_restore_state_txn(txn)?.ok_or_else(|| {
                    RegistryError::FailedPrecondition(
                        "this registry was not restored from a backup: nothing to confirm".into(),
                    )
                })?;
                if !state.pending {
                    return Err(RegistryError::FailedPrecondition(
                        "this restore is confirmed already: writes are allowed".into(),
                    ));
                }
                state.pending = false;
                let record = encode(&state);
                txn.put(Table::Meta, META_RESTORE, record.clone());
                append(
                    txn,
                    &actor,
                    RESTORE_CONFIRMED_KIND,
                    &state.new_origin,
                    &record,
                    BTreeMap::from([("backup_size".to_owned(), Extra::Uint(state.backup_size))]),
                );
                Ok(state)
            })
            .await?;
        *self.sequencer.restore.write().expect("lock") = Some(state.clone());
        tracing::warn!(by = %by.department, backup_size = state.backup_size, "restore confirmed: writes allowed");
        Ok(state)
    }
}

fn load_restore_state_txn(txn: &RegTxn<'_>) -> Result<Option<RestoreState>, RegistryError> {
    txn.get(Table::Meta, META_RESTORE)?
        .map(|b| decode("restore state", &b))
        .transpose()
}

/// Every key sealed under the KEK in a store: its table and key there, the owner it is bound
/// to, and the sealed bytes.
pub(crate) type SealedKey = (Table, Vec<u8>, Vec<u8>, Vec<u8>);

/// What a restore is given.
#[derive(Debug)]
pub struct RestorePlan {
    /// The backup's store folder (its files already checked against the manifest).
    pub backup_db: PathBuf,
    /// The backup's signed checkpoint, from its manifest.
    pub checkpoint_note: String,
    /// The key-encryption key the backup's keys are sealed under.
    pub kek_file: PathBuf,
    /// The data folder to create; must not exist or be empty.
    pub data_dir: PathBuf,
    /// The newest signed checkpoint of the old log the operator has, if any.
    pub last_checkpoint: Option<String>,
    /// An audit export of the old log past the backup, whose suspensions and revocations are
    /// re-applied.
    pub replay: Option<PathBuf>,
    /// The department (admin) in whose name the restore is logged.
    pub operator: Actor,
    /// How to open the registry (group commit, access).
    pub options: RegistryOptions,
    /// Opens the backup's store and the restored one: the backend the backup was taken of.
    pub store: Box<dyn StoreOpener>,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The state now stored in the data folder.
    pub state: RestoreState,
    /// Keys opened with the KEK to prove it is the right one.
    pub keys_checked: usize,
    /// The restored registry's verifier key (the new origin, the same public key).
    pub verifier_key: String,
    /// Licences, seals, departments and policies whose later state was re-applied.
    pub replayed_subjects: Vec<String>,
    /// Changes in the old log past the backup that a replay cannot bring back (issues,
    /// amendments, receipts, …), by kind.
    pub not_replayed: BTreeMap<String, u64>,
    /// Status changes about things the backup does not hold (issued after it).
    pub unknown_subjects: u64,
}

/// The kinds of change a replay re-applies: each one's record is the whole new state.
const REPLAYED_KINDS: [&str; 13] = [
    "licence.ofd_sealed",
    // A code used or revoked after the backup must not open a check again.
    "use_code.used",
    "use_code.revoked",
    "licence.suspended",
    "licence.reinstated",
    "licence.revoked",
    "seal.suspended",
    "seal.reinstated",
    "seal.revoked",
    "department.deactivated",
    "department.reactivated",
    "policy.changed",
    "client_certificate.revoked",
];

fn refused(why: impl Into<String>) -> RegistryError {
    RegistryError::FailedPrecondition(why.into())
}

/// Restores a backup into a new data folder. Everything is checked before anything is written:
/// the KEK opens every key of the backup, the backup's log has the root of its signed
/// checkpoint, the last old checkpoint and the replay export are of the same log and agree
/// with it. Then the store is copied, the log continues under a new origin from a
/// `log.restored` entry, and the replay is applied (or writes wait for a confirmation).
pub async fn restore(plan: RestorePlan) -> Result<RestoreReport, RegistryError> {
    if !plan.kek_file.is_file() {
        return Err(refused(format!(
            "the key-encryption key {} does not exist",
            plan.kek_file.display()
        )));
    }
    if plan.data_dir.exists()
        && std::fs::read_dir(&plan.data_dir)
            .map_err(|e| refused(format!("{}: {e}", plan.data_dir.display())))?
            .next()
            .is_some()
    {
        return Err(refused(format!(
            "{} exists and is not empty: restore into a new folder",
            plan.data_dir.display()
        )));
    }
    let kek = Kek::load_or_create(&plan.kek_file).map_err(|e| refused(e.to_string()))?;
    let info_logs = std::env::temp_dir().join(format!("certseal-restore-{}", std::process::id()));
    std::fs::create_dir_all(&info_logs)
        .map_err(|e| refused(format!("{}: {e}", info_logs.display())))?;
    let checked = check_backup(&plan, &kek, &info_logs);
    let _ = std::fs::remove_dir_all(&info_logs);
    let checked = checked?;

    // Nothing was written so far. From here on, a failure removes what was written.
    let db = plan.data_dir.join(crate::STORE_DIR);
    let result = write_restore(&plan, &db, checked).await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&db);
    }
    result
}

/// What the checks established.
struct CheckedBackup {
    origin: String,
    size: u64,
    keys_checked: usize,
    last_size: Option<u64>,
    replay: Option<Replay>,
}

/// The changes of the old log to re-apply, in order, with their records.
struct Replay {
    end: u64,
    changes: Vec<(Entry, Vec<u8>)>,
    not_replayed: BTreeMap<String, u64>,
}

fn check_backup(
    plan: &RestorePlan,
    kek: &Kek,
    info_logs: &Path,
) -> Result<CheckedBackup, RegistryError> {
    let opened = plan
        .store
        .open_read_only(&plan.backup_db, info_logs)
        .map_err(|e| refused(format!("the backup's store cannot be opened: {e}")))?;
    let store: &dyn Read = &*opened;
    match store.get(Table::Meta, META_FORMAT_KEY)? {
        Some(f) if f == DATA_FORMAT.as_bytes() => {}
        other => {
            return Err(refused(format!(
                "the backup is of data format '{}', this build reads '{DATA_FORMAT}'",
                String::from_utf8_lossy(&other.unwrap_or_default())
            )));
        }
    }
    // The right KEK opens every key; a wrong one none.
    let keys = sealed_keys(store)?;
    for (_, _, owner, sealed) in &keys {
        kek.open(owner, sealed).map_err(|_| {
            refused(format!(
                "the key-encryption key {} does not open this backup's keys ({}): nothing was written",
                plan.kek_file.display(),
                String::from_utf8_lossy(owner)
            ))
        })?;
    }
    let origin = store
        .get(Table::Meta, META_LOG_ORIGIN)?
        .map(|o| String::from_utf8_lossy(&o).into_owned())
        .ok_or_else(|| refused("the backup has no audit log"))?;
    let key = crate::audit::open_log_key(store, kek, &plan.kek_file)?;
    let vkey = VerifierKey::new(&origin, key.public_key())
        .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    let cp = Checkpoint::open(&plan.checkpoint_note, &vkey).map_err(|e| {
        refused(format!(
            "the manifest's checkpoint is not one of this backup's log '{origin}': {e}"
        ))
    })?;
    let size = crate::audit::meta_u64(store, META_LOG_SIZE)?;
    if cp.size != size {
        return Err(refused(format!(
            "the manifest's checkpoint is of size {}, the backup's log has {size} entries",
            cp.size
        )));
    }
    // Every entry hashed again: the root must be the signed one.
    let mut frontier = Frontier::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(
            Table::LogEntries,
            b"",
            after.as_deref(),
            4096,
            Direction::Forward,
        )?;
        for (k, v) in &page.items {
            if k.as_slice() != frontier.size().to_be_bytes() {
                return Err(refused(format!(
                    "the backup's log has no entry {}",
                    frontier.size()
                )));
            }
            frontier.append(leaf_hash(v));
        }
        match (page.more, page.items.last()) {
            (true, Some((k, _))) => after = Some(k.clone()),
            _ => break,
        }
    }
    if frontier.size() != size || frontier.root() != cp.root {
        return Err(refused(format!(
            "the backup's {} entries do not produce the root of its signed checkpoint (size {size})",
            frontier.size()
        )));
    }
    let last = plan
        .last_checkpoint
        .as_deref()
        .map(|n| {
            Checkpoint::open(n, &vkey).map_err(|e| {
                refused(format!(
                    "--last-checkpoint is not a checkpoint of log '{origin}': {e}"
                ))
            })
        })
        .transpose()?;
    if let Some(l) = &last
        && l.size <= size
    {
        let agrees = l.size == 0
            || merkle::consistency_proof(&StoredNodes(store), l.size, size)
                .and_then(|p| merkle::verify_consistency(l.size, size, &p, &l.root, &cp.root))
                .is_ok();
        if !agrees {
            return Err(refused(format!(
                "--last-checkpoint (size {}) disagrees with the backup's log: the log forked",
                l.size
            )));
        }
    }
    let replay = plan
        .replay
        .as_deref()
        .map(|dir| {
            let last = last.as_ref().zip(plan.last_checkpoint.as_deref());
            read_replay(dir, &vkey, &plan.checkpoint_note, size, last)
        })
        .transpose()?;
    Ok(CheckedBackup {
        origin,
        size,
        keys_checked: keys.len(),
        last_size: last.map(|l| l.size),
        replay,
    })
}

/// Verifies the export of the old log (it must extend the backup's checkpoint, and the last
/// checkpoint when it covers its size) and gathers the changes to re-apply.
fn read_replay(
    dir: &Path,
    vkey: &VerifierKey,
    backup_note: &str,
    size: u64,
    last: Option<(&Checkpoint, &str)>,
) -> Result<Replay, RegistryError> {
    let bad = |e: certseal_verify::VerifyError| refused(format!("--replay {}: {e}", dir.display()));
    let report =
        certseal_verify::verify_bundle(dir, vkey, Some(backup_note), |_, _| {}).map_err(bad)?;
    let end = report.checkpoint.size;
    // A last checkpoint inside the export must be of the same log too.
    if let Some((l, note)) = last
        && l.size > size
        && l.size <= end
    {
        certseal_verify::verify_bundle(dir, vkey, Some(note), |_, _| {}).map_err(bad)?;
    }
    let mut wanted = Vec::new();
    let mut not_replayed = BTreeMap::new();
    certseal_verify::for_each_entry(dir, |index, entry| {
        if index < size {
            return Ok(());
        }
        if REPLAYED_KINDS.contains(&entry.kind.as_str()) {
            wanted.push(entry);
        } else {
            *not_replayed.entry(entry.kind.clone()).or_insert(0) += 1;
        }
        Ok(())
    })
    .map_err(bad)?;
    let digests: HashSet<Hash> = wanted.iter().map(|e| e.digest).collect();
    // read_records fails unless every wanted record is there.
    let records = certseal_verify::read_records(dir, &digests).map_err(bad)?;
    let changes = wanted
        .into_iter()
        .map(|e| {
            let r = records[&e.digest].clone();
            (e, r)
        })
        .collect();
    Ok(Replay {
        end,
        changes,
        not_replayed,
    })
}

async fn write_restore(
    plan: &RestorePlan,
    db: &Path,
    checked: CheckedBackup,
) -> Result<RestoreReport, RegistryError> {
    copy_folder(&plan.backup_db, db)?;
    let store = plan.store.open(db)?;
    // The backup's checkpoint, so that opening the log finds its size signed and signs
    // nothing under the old origin.
    let mut b = certseal_store::Batch::new();
    b.put(
        Table::LogCheckpoints,
        checked.size.to_be_bytes().to_vec(),
        plan.checkpoint_note.clone(),
    );
    store.write(&b, true)?;
    let mut options = plan.options.clone();
    options.log_origin = checked.origin.clone();
    let registry = Registry::with_store(store, &options, &plan.kek_file)?;
    if registry.restore_state().is_some_and(|s| s.pending) {
        return Err(refused(
            "the backup is of a registry whose own restore was never confirmed: confirm it first",
        ));
    }
    let new_origin = next_origin(&checked.origin);
    let replayed_to = checked.replay.as_ref().map(|r| r.end);
    // Writes wait for a confirmation unless the replay reached every old checkpoint known.
    let pending = match (replayed_to, checked.last_size) {
        (None, _) => true,
        (Some(end), Some(last)) => last > end,
        (Some(_), None) => false,
    };
    let restoration = Restoration {
        old_origin: checked.origin.clone(),
        new_origin: new_origin.clone(),
        backup_checkpoint: plan.checkpoint_note.clone(),
        last_checkpoint: plan.last_checkpoint.clone(),
        replayed_to,
    };
    let mut state = RestoreState {
        old_origin: checked.origin.clone(),
        new_origin: new_origin.clone(),
        backup_size: checked.size,
        last_size: checked.last_size,
        replayed_to,
        replayed: 0,
        restored_at: Timestamp::now().0,
        pending,
    };
    let operator = plan.operator.clone();
    let first = state.clone();
    registry
        .sequencer
        .inner
        .submit(move |txn| {
            let record = restoration.encode();
            let mut extra = BTreeMap::from([
                (
                    "old_origin".to_owned(),
                    Extra::Text(restoration.old_origin.clone()),
                ),
                (
                    "new_origin".to_owned(),
                    Extra::Text(restoration.new_origin.clone()),
                ),
                ("backup_size".to_owned(), Extra::Uint(first.backup_size)),
            ]);
            if let Some(n) = first.last_size {
                extra.insert("last_size".to_owned(), Extra::Uint(n));
            }
            if let Some(n) = first.replayed_to {
                extra.insert("replayed_to".to_owned(), Extra::Uint(n));
            }
            append(txn, &operator, RESTORED_KIND, &new_origin, &record, extra);
            // From this entry on the log signs under its new origin.
            txn.state.set_origin(&new_origin);
            txn.put(Table::Meta, META_LOG_ORIGIN, new_origin.as_bytes().to_vec());
            txn.put(Table::Meta, META_RESTORE, encode(&first));
            Ok::<_, RegistryError>(())
        })
        .await?;
    let mut replayed_subjects = Vec::new();
    let mut unknown_subjects = 0;
    let mut not_replayed = BTreeMap::new();
    if let Some(replay) = checked.replay {
        not_replayed = replay.not_replayed;
        for (entry, record) in replay.changes {
            let subject = entry.subject.clone();
            let applied = registry
                .sequencer
                .inner
                .submit(move |txn| replay_change(txn, entry, record))
                .await?;
            if applied {
                replayed_subjects.push(subject);
            } else {
                unknown_subjects += 1;
            }
        }
        state.replayed = replayed_subjects.len() as u64;
        let s = state.clone();
        registry
            .sequencer
            .inner
            .submit(move |txn| {
                txn.put(Table::Meta, META_RESTORE, encode(&s));
                Ok::<_, RegistryError>(())
            })
            .await?;
    }
    let verifier_key = registry
        .verifier_key
        .renamed(&state.new_origin)
        .map_err(|e| RegistryError::Corrupt(e.to_string()))?
        .to_string();
    drop(registry);
    Ok(RestoreReport {
        state,
        keys_checked: checked.keys_checked,
        verifier_key,
        replayed_subjects,
        not_replayed,
        unknown_subjects,
    })
}

/// Re-applies one change of the old log: its record is the whole new state of its subject.
/// Returns false when the backup does not hold the subject (it was created after the backup).
fn replay_change(
    txn: &mut RegTxn<'_>,
    entry: Entry,
    record: Vec<u8>,
) -> Result<bool, RegistryError> {
    let mismatch = || {
        RegistryError::Corrupt(format!(
            "old entry {}: its record is not of {}",
            entry.seq, entry.subject
        ))
    };
    let kind = entry.kind.as_str();
    if kind == "licence.ofd_sealed" {
        // The record is the sealed file holders have: it is the licence's file again.
        let id: certseal_core::LicenceId = entry.subject.parse().map_err(|_| mismatch())?;
        if txn.get(Table::Licences, id.as_str().as_bytes())?.is_none() {
            return Ok(false);
        }
        let index = txn.state.next_index();
        txn.put(
            Table::LicenceFiles,
            crate::licence_files::file_key(&id),
            [&sha256(&[&record])[..], &index.to_be_bytes()].concat(),
        );
    } else if kind.starts_with("use_code.") {
        let act: crate::holders::HolderAct = decode("replayed use code", &record)?;
        let code = act.use_code.ok_or_else(mismatch)?;
        if code.id.to_string() != entry.subject {
            return Err(mismatch());
        }
        if txn.get(Table::UseCodes, &code.hash)?.is_none() {
            return Ok(false);
        }
        txn.put(
            Table::UseCodes,
            code.hash.clone(),
            crate::codec::encode(&code),
        );
    } else if kind.starts_with("licence.") {
        let l: Licence = decode("replayed licence", &record)?;
        if l.id.as_str() != entry.subject {
            return Err(mismatch());
        }
        let key = l.id.as_str().as_bytes().to_vec();
        if txn.get(Table::Licences, &key)?.is_none() {
            return Ok(false);
        }
        txn.put(Table::Licences, key, record.clone());
        crate::status_list::put_status_index(txn, &l);
        if entry.actor_role == "sync"
            && let Ok(department) = entry.actor_department.parse()
        {
            let index = txn.state.next_index();
            crate::upstream::remember_replayed(txn, &department, &l, index);
        }
    } else if kind.starts_with("seal.") {
        let seal: Seal = decode("replayed seal", &record)?;
        if seal.id.to_string() != entry.subject {
            return Err(mismatch());
        }
        let key = seal.id.as_bytes().to_vec();
        if txn.get(Table::Seals, &key)?.is_none() {
            return Ok(false);
        }
        if seal.status() == SealStatus::Revoked {
            // Revoking destroyed the key; the backup brought it back.
            txn.delete(Table::SealKeys, key.clone());
        }
        put_cached(txn, Table::Seals, key, record.clone());
    } else if kind == "client_certificate.revoked" {
        if !crate::client_certs::replay_revocation(txn, &entry.subject, &record)? {
            return Ok(false);
        }
    } else if kind == "department.deactivated" || kind == "department.reactivated" {
        let d: Department = decode("replayed department", &record)?;
        if d.credit_code.as_str() != entry.subject {
            return Err(mismatch());
        }
        let key = d.credit_code.as_str().as_bytes().to_vec();
        if txn.get(Table::Departments, &key)?.is_none() {
            return Ok(false);
        }
        put_cached(txn, Table::Departments, key, record.clone());
    } else {
        let p: DepartmentPolicy = decode("replayed policy", &record)?;
        if p.department.as_str() != entry.subject {
            return Err(mismatch());
        }
        put_cached(
            txn,
            Table::Policies,
            p.department.as_str().as_bytes().to_vec(),
            record.clone(),
        );
    }
    let actor = Actor {
        department: entry
            .actor_department
            .parse()
            .map_err(|_| RegistryError::Corrupt(format!("old entry {}: actor", entry.seq)))?,
        role: entry
            .actor_role
            .parse()
            .map_err(|_| RegistryError::Corrupt(format!("old entry {}: role", entry.seq)))?,
    };
    let mut extra = entry.extra.clone();
    extra.insert("replayed_from".to_owned(), Extra::Uint(entry.seq));
    append(txn, &actor, kind, &entry.subject, &record, extra);
    Ok(true)
}

/// Every key sealed under the KEK in `store`.
pub(crate) fn sealed_keys(store: &dyn Read) -> Result<Vec<SealedKey>, RegistryError> {
    let mut out = Vec::new();
    for (key, owner) in crate::seal_ca::META_SEALED_KEYS {
        if let Some(sealed) = store.get(Table::Meta, key)? {
            out.push((Table::Meta, key.to_vec(), owner.to_vec(), sealed));
        }
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(
            Table::SealKeys,
            b"",
            after.as_deref(),
            1000,
            Direction::Forward,
        )?;
        for (k, v) in &page.items {
            let id: [u8; 16] = k
                .as_slice()
                .try_into()
                .map_err(|_| RegistryError::Corrupt("seal key id".into()))?;
            let owner = crate::seals::key_owner(&certseal_core::SealId::from_bytes(id));
            out.push((Table::SealKeys, k.clone(), owner, v.clone()));
        }
        match (page.more, page.items.last()) {
            (true, Some((k, _))) => after = Some(k.clone()),
            _ => break,
        }
    }
    Ok(out)
}

/// Copies the files of a store folder, each synced, then the folder itself.
fn copy_folder(from: &Path, to: &Path) -> Result<(), RegistryError> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        RegistryError::Store(certseal_store::StoreError::Backend(format!(
            "{what} {}: {e}",
            p.display()
        )))
    };
    std::fs::create_dir_all(to).map_err(|e| io("cannot create", to, e))?;
    for item in std::fs::read_dir(from).map_err(|e| io("cannot list", from, e))? {
        let item = item.map_err(|e| io("cannot list", from, e))?;
        let target = to.join(item.file_name());
        std::fs::copy(item.path(), &target).map_err(|e| io("cannot copy", &item.path(), e))?;
        std::fs::File::open(&target)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("cannot sync", &target, e))?;
    }
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("cannot sync", to, e))
}
