//! The audit log inside the write path: every state change appends one entry in the same batch
//! as the change, the writer thread keeps the tree's right edge, and after each durable group
//! the log signs a checkpoint of the new size.
//!
//! Checkpoints are signed only after the entries they cover are durable, so a signed root can
//! never be lost. The checkpoint itself is stored without a sync: if a crash loses it, the next
//! start signs the same size and root again, and Ed25519 is deterministic, so the note is the
//! same note. The log thus never signs two roots for one size, nor a smaller tree.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use certseal_core::{Actor, Timestamp};
use certseal_crypto::{Ed25519Key, Kek, Signer, sha256};
use certseal_log::merkle::{self, Frontier, NodeReader, leaf_hash};
use certseal_log::{Checkpoint, Entry, Extra, LogError, VerifierKey};
use certseal_store::{Batch, Direction, KvStore, Read, StoreError, Table, Txn, WriterState};

use crate::RegistryError;

pub(crate) const META_LOG_SIZE: &[u8] = b"log_size";
/// Counts the changes to records other nodes keep in memory (seals, departments, policies,
/// templates, certificates): a cluster follower compares it to decide whether its caches are
/// current.
pub(crate) const META_CHANGE_SEQ: &[u8] = b"change_seq";
const META_LOG_KEY: &[u8] = b"log_key";
pub(crate) const META_LOG_ORIGIN: &[u8] = b"log_origin";
/// Associated data that binds the sealed log key to its use.
pub(crate) const LOG_KEY_OWNER: &[u8] = b"certseal/log-key";

/// A checkpoint with its signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree head.
    pub checkpoint: Checkpoint,
    /// The C2SP signed note.
    pub note: String,
}

/// The latest signed checkpoint, shared between the writer and readers.
pub(crate) type Latest = Arc<RwLock<SignedCheckpoint>>;

/// The writer thread's log state.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    frontier: Frontier,
    last_time: i64,
    signer: Arc<Ed25519Key>,
    origin: Arc<str>,
    latest: Latest,
    /// Marked by operations that change cached records, settled here after each group.
    pub(crate) records: Arc<crate::cache::Epoch>,
    /// When the latest checkpoint was signed (ms), for its age in the metrics.
    pub(crate) signed_at: Arc<std::sync::atomic::AtomicI64>,
    /// The change sequence as this writer last wrote it.
    change_seq: u64,
    /// Set when the writer reloaded its state from the store: what is cached may be stale.
    pub(crate) caches_stale: Arc<std::sync::atomic::AtomicBool>,
    /// Forgets request IDs past their retention.
    request_ids: crate::request_ids::Pruner,
    /// Tells change-feed consumers the size of each new checkpoint.
    pub(crate) signed: Arc<tokio::sync::watch::Sender<u64>>,
}

pub(crate) type RegTxn<'a> = Txn<'a, AuditWriter>;

impl AuditWriter {
    /// The index the next entry gets.
    pub(crate) fn next_index(&self) -> u64 {
        self.frontier.size()
    }

    /// Time of the last entry (ms): no later entry is dated before it.
    pub(crate) fn last_time(&self) -> i64 {
        self.last_time
    }

    /// Signs every later checkpoint under `origin` (a restore's new origin).
    pub(crate) fn set_origin(&mut self, origin: &str) {
        self.origin = origin.into();
    }
}

impl WriterState for AuditWriter {
    fn committed(&mut self, store: &dyn KvStore) {
        self.records.settled();
        let signed = self.latest.read().expect("lock").checkpoint.size;
        if self.frontier.size() != signed {
            match sign_and_store(store, &self.origin, &self.frontier, self.signer.as_ref()) {
                Ok(cp) => {
                    let size = cp.checkpoint.size;
                    *self.latest.write().expect("lock") = cp;
                    self.signed.send_replace(size);
                    self.signed_at
                        .store(Timestamp::now().0, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "cannot sign or store a checkpoint"),
            }
        }
        // After the checkpoint: the group's callers wait for both.
        if let Err(e) = self.request_ids.prune(store) {
            tracing::error!(error = %e, "cannot forget expired request IDs");
        }
    }

    fn reloaded(&mut self, store: &dyn KvStore) -> Result<(), StoreError> {
        // The group whose write failed may be on disk after all: the right edge is what the
        // store holds, never less than what was acknowledged.
        let reload = |w: &mut Self| -> Result<(), RegistryError> {
            let size = meta_u64(store, META_LOG_SIZE)?;
            w.frontier = Frontier::load(&StoredNodes(store), size).map_err(log_err)?;
            w.last_time = w.last_time.max(last_entry_time(store, size)?);
            w.change_seq = meta_u64(store, META_CHANGE_SEQ)?;
            if let Some(o) = store.get(Table::Meta, META_LOG_ORIGIN)? {
                w.origin = String::from_utf8_lossy(&o).as_ref().into();
            }
            Ok(())
        };
        reload(self).map_err(|e| {
            StoreError::Backend(format!("reloading the audit log's right edge: {e}"))
        })?;
        // A node that starts leading may be the first upgraded one to (a rolling upgrade):
        // the holders' record of earlier checks is built here if no leader built it yet.
        if let Err(e) = crate::holders::migrate_usage_index(store) {
            tracing::error!(error = %e, "cannot index earlier checks in the holders' record; retried when this node next takes the lease");
        }
        tracing::info!(
            size = self.frontier.size(),
            "reloaded the audit log's right edge"
        );
        // Cached records are read again (another node may have written them while this one
        // followed), and the new size signed.
        self.records.invalidate();
        self.caches_stale
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.committed(store);
        Ok(())
    }
}

/// The time of the last of `size` entries (0 for none), checked against the tree's last leaf.
fn last_entry_time(store: &dyn Read, size: u64) -> Result<i64, RegistryError> {
    let Some(last) = size.checked_sub(1) else {
        return Ok(0);
    };
    let bytes = store
        .get(Table::LogEntries, &last.to_be_bytes())?
        .ok_or_else(|| RegistryError::Corrupt(format!("log entry {last} missing")))?;
    if StoredNodes(store).node(0, last).map_err(log_err)? != leaf_hash(&bytes) {
        return Err(RegistryError::Corrupt(format!(
            "log entry {last} does not match the tree's last leaf"
        )));
    }
    Ok(Entry::decode(&bytes).map_err(log_err)?.time)
}

fn sign_and_store(
    store: &dyn KvStore,
    origin: &str,
    frontier: &Frontier,
    signer: &dyn Signer,
) -> Result<SignedCheckpoint, RegistryError> {
    let checkpoint = Checkpoint {
        origin: origin.to_owned(),
        size: frontier.size(),
        root: frontier.root(),
    };
    let note = checkpoint.sign(signer).map_err(log_err)?;
    let mut b = Batch::new();
    b.put(
        Table::LogCheckpoints,
        checkpoint.size.to_be_bytes().to_vec(),
        note.clone(),
    );
    store.write(&b, false)?;
    Ok(SignedCheckpoint { checkpoint, note })
}

pub(crate) fn log_err(e: LogError) -> RegistryError {
    match e {
        LogError::OutOfRange(m) => RegistryError::NotFound(m),
        other => RegistryError::Corrupt(format!("audit log: {other}")),
    }
}

fn node_key(level: u8, index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(level);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Stored tree nodes, read from the store or a snapshot of it.
pub(crate) struct StoredNodes<'a>(pub &'a dyn Read);

impl NodeReader for StoredNodes<'_> {
    fn node(&self, level: u8, index: u64) -> Result<merkle::Hash, LogError> {
        let v = self
            .0
            .get(Table::LogNodes, &node_key(level, index))
            .map_err(|e| LogError::Storage(e.to_string()))?
            .ok_or_else(|| LogError::Storage(format!("tree node {level}/{index} is missing")))?;
        merkle::parse_hash(&v)
    }
}

/// Appends the entry for one change: the record version is stored under its digest, the entry
/// and the tree nodes it completes go into the same batch. Call it last in an operation.
pub(crate) fn append(
    txn: &mut RegTxn<'_>,
    actor: &Actor,
    kind: &str,
    subject: &str,
    record: &[u8],
    extra: BTreeMap<String, Extra>,
) {
    let digest = sha256(&[record]);
    let followed = txn.ops().iter().any(changes_followed_state);
    let w = &mut *txn.state;
    if followed {
        w.change_seq += 1;
        let seq = w.change_seq;
        txn.put(Table::Meta, META_CHANGE_SEQ, seq.to_be_bytes().to_vec());
    }
    let w = &mut *txn.state;
    // Time never goes backwards along the log, even if the clock does.
    let time = Timestamp::now().0.max(w.last_time);
    let entry = Entry {
        seq: w.frontier.size(),
        time,
        kind: kind.to_owned(),
        actor_department: actor.department.to_string(),
        actor_role: actor.role.as_str().to_owned(),
        subject: subject.to_owned(),
        digest,
        extra,
    };
    let bytes = entry.encode();
    let leaf = leaf_hash(&bytes);
    let nodes = w.frontier.append(leaf);
    w.last_time = time;
    let size = w.frontier.size();
    txn.put(Table::Records, digest.to_vec(), record.to_vec());
    txn.put(Table::LogEntries, entry.seq.to_be_bytes().to_vec(), bytes);
    txn.put(
        Table::LogLeafIndex,
        leaf.to_vec(),
        entry.seq.to_be_bytes().to_vec(),
    );
    for n in nodes {
        txn.put(Table::LogNodes, node_key(n.level, n.index), n.hash.to_vec());
    }
    txn.put(Table::Meta, META_LOG_SIZE, size.to_be_bytes().to_vec());
}

/// Whether a change touches what nodes keep in memory: everything but licences, receipts,
/// the log itself and the bookkeeping beside them.
fn changes_followed_state(op: &certseal_store::Op) -> bool {
    let (certseal_store::Op::Put(table, key, _) | certseal_store::Op::Delete(table, key)) = op;
    match table {
        Table::Departments
        | Table::Templates
        | Table::TemplateHeads
        | Table::Seals
        | Table::SealsByKid
        | Table::SealsByDepartment
        | Table::Policies => true,
        Table::Meta => key.as_slice() != META_LOG_SIZE && key.as_slice() != META_CHANGE_SEQ,
        _ => false,
    }
}

/// What opening the log yields.
pub(crate) struct OpenedLog {
    pub writer: AuditWriter,
    pub latest: Latest,
    pub verifier_key: VerifierKey,
}

pub(crate) fn meta_u64(store: &dyn Read, key: &[u8]) -> Result<u64, RegistryError> {
    match store.get(Table::Meta, key)? {
        None => Ok(0),
        Some(v) => Ok(u64::from_be_bytes(v.as_slice().try_into().map_err(
            |_| RegistryError::Corrupt(format!("meta {}", String::from_utf8_lossy(key))),
        )?)),
    }
}

/// Loads (or on first start creates) the log key, the tree's right edge and the latest
/// checkpoint, checks that they agree, and signs the current size if no checkpoint covers it.
pub(crate) fn open_log(
    store: &dyn KvStore,
    kek: &Kek,
    kek_file: &Path,
    origin: &str,
    records: Arc<crate::cache::Epoch>,
    request_id_retention: std::time::Duration,
) -> Result<OpenedLog, RegistryError> {
    let mut origin = origin.to_owned();
    let key = match store.get(Table::Meta, META_LOG_KEY)? {
        Some(_) => {
            let stored_origin = store
                .get(Table::Meta, META_LOG_ORIGIN)?
                .map(|o| String::from_utf8_lossy(&o).into_owned())
                .unwrap_or_default();
            // A restored log signs under `<origin>/restore-<n>`: still the configured log.
            if certseal_log::restore::split_origin(&stored_origin).0 != origin {
                return Err(RegistryError::FailedPrecondition(format!(
                    "this data folder's log is '{stored_origin}'; the configuration names '{origin}'"
                )));
            }
            origin = stored_origin;
            open_log_key(store, kek, kek_file)?
        }
        None => {
            // First start: a new log key, sealed at rest, stored with the origin it signs for.
            let (key, pkcs8) =
                Ed25519Key::generate().map_err(|e| RegistryError::Corrupt(e.to_string()))?;
            let sealed = kek
                .seal(LOG_KEY_OWNER, &pkcs8)
                .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
            let mut b = Batch::new();
            b.put(Table::Meta, META_LOG_KEY, sealed);
            b.put(Table::Meta, META_LOG_ORIGIN, origin.as_str());
            store.write(&b, true)?;
            tracing::info!(origin = %origin, "created the audit log key");
            key
        }
    };
    let origin = origin.as_str();
    let verifier_key = VerifierKey::new(origin, key.public_key())
        .map_err(|e| RegistryError::invalid("log.origin", e.to_string()))?;
    // One snapshot: in a cluster the leader appends while a follower opens, and the size,
    // the tree and the latest checkpoint must be read as of one commit.
    let snapshot = store.snapshot();
    let view = snapshot.as_ref();
    let size = meta_u64(view, META_LOG_SIZE)?;
    let frontier = Frontier::load(&StoredNodes(view), size).map_err(log_err)?;
    let last_time = last_entry_time(view, size)?;
    let change_seq = meta_u64(view, META_CHANGE_SEQ)?;
    let stored = view.scan(Table::LogCheckpoints, b"", None, 1, Direction::Reverse)?;
    let latest = match stored.items.first() {
        Some((_, note)) => {
            let note = String::from_utf8(note.clone())
                .map_err(|_| RegistryError::Corrupt("checkpoint is not text".into()))?;
            let checkpoint = Checkpoint::open(&note, &verifier_key).map_err(log_err)?;
            check_agrees(view, &checkpoint, &frontier)?;
            Some(SignedCheckpoint { checkpoint, note })
        }
        None => None,
    };
    drop(snapshot);
    let latest = match latest {
        Some(cp) if cp.checkpoint.size == size => cp,
        // A cluster follower signs nothing: the leader signs the size it committed.
        Some(cp) if store.writable().is_err() => cp,
        _ => sign_and_store(store, origin, &frontier, &key)?,
    };
    tracing::info!(size, origin, "audit log open");
    let signed = Arc::new(tokio::sync::watch::Sender::new(latest.checkpoint.size));
    let latest = Arc::new(RwLock::new(latest));
    Ok(OpenedLog {
        writer: AuditWriter {
            frontier,
            last_time,
            signer: Arc::new(key),
            origin: origin.into(),
            latest: latest.clone(),
            records,
            signed_at: Arc::new(std::sync::atomic::AtomicI64::new(Timestamp::now().0)),
            change_seq,
            caches_stale: Arc::default(),
            request_ids: crate::request_ids::Pruner::new(request_id_retention),
            signed,
        },
        latest,
        verifier_key,
    })
}

/// The log's signing key, opened with the KEK.
pub(crate) fn open_log_key(
    store: &dyn Read,
    kek: &Kek,
    kek_file: &Path,
) -> Result<Ed25519Key, RegistryError> {
    let sealed = store
        .get(Table::Meta, META_LOG_KEY)?
        .ok_or_else(|| RegistryError::Corrupt("the log key is missing".into()))?;
    let pkcs8 = kek.open(LOG_KEY_OWNER, &sealed).map_err(|e| {
        RegistryError::Corrupt(format!(
            "the log key cannot be opened with the key-encryption key {}: {e}; this store's keys are sealed under another KEK (every node of a cluster needs a copy of the registry's one KEK file)",
            kek_file.display()
        ))
    })?;
    Ed25519Key::from_pkcs8(&pkcs8).map_err(|e| RegistryError::Corrupt(e.to_string()))
}

/// A stored checkpoint must be a prefix of the stored tree: the same root at its size.
fn check_agrees(
    store: &dyn Read,
    cp: &Checkpoint,
    frontier: &Frontier,
) -> Result<(), RegistryError> {
    let corrupt = |why: String| {
        RegistryError::Corrupt(format!(
            "the latest checkpoint (size {}) disagrees with the stored tree (size {}): {why}",
            cp.size,
            frontier.size()
        ))
    };
    if cp.size > frontier.size() {
        return Err(corrupt("the checkpoint is larger".into()));
    }
    if cp.size == frontier.size() {
        return if cp.root == frontier.root() {
            Ok(())
        } else {
            Err(corrupt("different roots".into()))
        };
    }
    if cp.size == 0 {
        return Ok(());
    }
    let proof = merkle::consistency_proof(&StoredNodes(store), cp.size, frontier.size())
        .map_err(log_err)?;
    merkle::verify_consistency(cp.size, frontier.size(), &proof, &cp.root, &frontier.root())
        .map_err(|e| corrupt(e.to_string()))
}
