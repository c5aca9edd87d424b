//! Storage of the registry: small key-value traits, the sequencer that turns many concurrent
//! operations into group-committed, durable batches, and the conformance suite every backend
//! runs.
//!
//! No backend's crate is seen here: each backend is a crate of its own that implements
//! [`KvStore`] (`certseal-store-rocks` for the embedded RocksDB store). Callers name a
//! [`Table`] (one column family per kind of record), encode keys big-endian so iteration is
//! ordered, and change state only through the [`Sequencer`]: one operation is one atomic batch, acknowledged once its WAL is synced.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod sequencer;
pub mod testing;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use sequencer::{
    Sequencer, SequencerOptions, SequencerStats, StopCause, Txn, WriterState, WriterStop,
    on_writer_thread,
};

/// A kind of record; each is its own column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    /// Facts about the data folder itself (format version, creation time).
    Meta,
    /// Departments by credit code.
    Departments,
    /// Template versions by type code + big-endian version.
    Templates,
    /// Per licence type: its latest version number.
    TemplateHeads,
    /// Audit log entries by sequence number (u64 BE).
    LogEntries,
    /// Audit log tree: complete subtree hashes by level (u8) ‖ index (u64 BE).
    LogNodes,
    /// Signed checkpoints by tree size (u64 BE).
    LogCheckpoints,
    /// Audit log entry sequence numbers by leaf hash.
    LogLeafIndex,
    /// Every version of every record the log commits to, by SHA-256 digest.
    Records,
    /// Seals by seal ID (16 bytes).
    Seals,
    /// Seal private keys, sealed under the key-encryption key, by seal ID.
    SealKeys,
    /// Seal images by SHA-256: each image stored once.
    SealImages,
    /// Index: credit code (18 bytes) ‖ seal ID → empty.
    SealsByDepartment,
    /// Index: certificate key ID (8 bytes) ‖ seal ID → empty.
    SealsByKid,
    /// Licence states by licence ID (its text).
    Licences,
    /// Index: holder kind (1 byte) ‖ holder ID (18) ‖ issued-at ms (u64 BE) ‖ licence ID.
    LicencesByHolder,
    /// Index: issuer credit code (18) ‖ issued-at ms (u64 BE) ‖ licence ID.
    LicencesByIssuer,
    /// Index: type code (21) ‖ issued-at ms (u64 BE) ‖ licence ID.
    LicencesByType,
    /// Idempotency keys: issuer credit code (18) ‖ key → request digest (32) ‖ licence ID.
    LicenceIdempotency,
    /// Licences that are not active: licence ID → status and since when (the status list).
    LicenceStatusIndex,
    /// Receipts by receipt ID (16 bytes) → receipt digest (32) ‖ log index (u64 BE).
    Receipts,
    /// Index: licence ID ‖ 0x00 ‖ checked-at ms (u64 BE) ‖ receipt ID → empty.
    ReceiptsByLicence,
    /// Sharing policy: department credit code (18) → its roles and grants.
    Policies,
    /// Request IDs of changes (AIP-155): caller's credit code (18) ‖ request ID → request
    /// digest (32) ‖ remembered-at ms (u64 BE) ‖ outcome (what rebuilds the first answer).
    RequestIds,
    /// Index for pruning request IDs: remembered-at ms (u64 BE) ‖ caller's credit code (18) ‖
    /// request ID → empty.
    RequestIdsByTime,
    /// Sealed licence files: licence ID ‖ 0x00 ‖ format (1 byte) → SHA-256 of the file (its
    /// bytes are in `Records`) ‖ log index (u64 BE) of its `licence.ofd_sealed` entry.
    LicenceFiles,
    /// Use codes by the SHA-256 of the code (32 bytes) → the code's state.
    UseCodes,
    /// Index: use code ID (16 bytes) → SHA-256 of the code.
    UseCodeIds,
    /// Index: holder kind (1 byte) ‖ holder ID (18) ‖ created-at ms (u64 BE) ‖ code ID → empty.
    UseCodesByHolder,
    /// Index: holder kind (1 byte) ‖ holder ID (18) ‖ checked-at ms (u64 BE) ‖ receipt ID →
    /// licence ID: every check of a holder's licences.
    ReceiptsByHolder,
    /// Changes decided upstream, applied once: applying department's credit code (18) ‖
    /// SHA-256(source ‖ 0x0A ‖ reference) → request digest (32) ‖ log index (u64 BE) ‖
    /// licence ID.
    UpstreamChanges,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 31] = [
        Table::Meta,
        Table::Departments,
        Table::Templates,
        Table::TemplateHeads,
        Table::LogEntries,
        Table::LogNodes,
        Table::LogCheckpoints,
        Table::LogLeafIndex,
        Table::Records,
        Table::Seals,
        Table::SealKeys,
        Table::SealImages,
        Table::SealsByDepartment,
        Table::SealsByKid,
        Table::Licences,
        Table::LicencesByHolder,
        Table::LicencesByIssuer,
        Table::LicencesByType,
        Table::LicenceIdempotency,
        Table::LicenceStatusIndex,
        Table::Receipts,
        Table::ReceiptsByLicence,
        Table::Policies,
        Table::RequestIds,
        Table::RequestIdsByTime,
        Table::LicenceFiles,
        Table::UseCodes,
        Table::UseCodeIds,
        Table::UseCodesByHolder,
        Table::ReceiptsByHolder,
        Table::UpstreamChanges,
    ];

    /// The column family's name, fixed forever once data exists.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Departments => "departments",
            Table::Templates => "templates",
            Table::TemplateHeads => "template_heads",
            Table::LogEntries => "log_entries",
            Table::LogNodes => "log_nodes",
            Table::LogCheckpoints => "log_checkpoints",
            Table::LogLeafIndex => "log_leaf_index",
            Table::Records => "records",
            Table::Seals => "seals",
            Table::SealKeys => "seal_keys",
            Table::SealImages => "seal_images",
            Table::SealsByDepartment => "seals_by_department",
            Table::SealsByKid => "seals_by_kid",
            Table::Licences => "licences",
            Table::LicencesByHolder => "licences_by_holder",
            Table::LicencesByIssuer => "licences_by_issuer",
            Table::LicencesByType => "licences_by_type",
            Table::LicenceIdempotency => "licence_idempotency",
            Table::LicenceStatusIndex => "licence_status_index",
            Table::Receipts => "receipts",
            Table::ReceiptsByLicence => "receipts_by_licence",
            Table::Policies => "policies",
            Table::RequestIds => "request_ids",
            Table::RequestIdsByTime => "request_ids_by_time",
            Table::LicenceFiles => "licence_files",
            Table::UseCodes => "use_codes",
            Table::UseCodeIds => "use_code_ids",
            Table::UseCodesByHolder => "use_codes_by_holder",
            Table::ReceiptsByHolder => "receipts_by_holder",
            Table::UpstreamChanges => "upstream_changes",
        }
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, corruption detected by the engine, a held lock).
    #[error("storage backend: {0}")]
    Backend(String),
    /// The data folder was written by an incompatible version or is not a certseal folder.
    #[error("data folder: {0}")]
    Incompatible(String),
    /// The sequencer has stopped; nothing was written.
    #[error("the store is shutting down")]
    Closed,
    /// The disk under the store is full; the write did not happen, or is not known to have.
    #[error("the disk is full: {0}")]
    DiskFull(String),
    /// The writer stopped after a write the store could not make; it resumes by itself once
    /// the store can write again. Nothing was written.
    #[error("{0}")]
    WritesStopped(WriterStop),
    /// This node of a cluster does not hold the write lease: another node sequences writes.
    /// Nothing was written.
    #[error("not the writer: {0}")]
    NotLeader(String),
    /// This backend does not do what was asked (backups of a database backend are taken on
    /// the database).
    #[error("{0}")]
    Unsupported(String),
}

/// One change inside a [`Batch`].
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Table, Vec<u8>),
}

impl fmt::Debug for Op {
    // Values can be large; a debug line shows their size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put(t, k, v) => write!(f, "Put({}, {}, {} bytes)", t.name(), hex(k), v.len()),
            Op::Delete(t, k) => write!(f, "Delete({}, {})", t.name(), hex(k)),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Changes written together: after a crash either all of them are there or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(table, key.into(), value.into()));
    }
    /// Adds a delete.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(table, key.into()));
    }
    /// The changes in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
    /// Whether there are no changes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// Appends another batch's changes after this one's.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

/// Order of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending keys.
    Forward,
    /// Descending keys (newest first for time-ordered keys).
    Reverse,
}

/// One page of a prefix scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Keys and values in scan order.
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether more keys with the prefix follow the last item.
    pub more: bool,
}

/// Reads, from the latest committed state or from a snapshot.
pub trait Read {
    /// The value of `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` keys that start with `prefix`, in `direction`, strictly after `after`
    /// (in scan order) when it is given.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError>;
}

/// A key-value store the registry can run on. Implementations must make [`KvStore::write`]
/// atomic, and durable before it returns when `durable` is set.
pub trait KvStore: Read + Send + Sync + fmt::Debug + 'static {
    /// A consistent view of the committed state at this instant.
    fn snapshot(&self) -> Box<dyn Read + '_>;

    /// Writes all of `batch` or none of it.
    fn write(&self, batch: &Batch, durable: bool) -> Result<(), StoreError>;

    /// The writer is about to read `keys`: a store whose reads are network round trips loads
    /// them now, in as few as it can, so that the reads that follow are answered from memory.
    /// A hint only: a store may ignore it, and a failed load leaves the reads to fail or
    /// succeed on their own.
    fn prefetch(&self, _keys: &[(Table, Vec<u8>)]) {}

    /// Figures for monitoring (name, value); none by default.
    fn properties(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// After a failed write: checks that the store can write again and makes it take writes
    /// (the RocksDB store reopens its database, since RocksDB refuses every write after a
    /// failed one until then). An error says why not yet; the caller tries again later.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether this store takes writes now. A cluster node that does not hold the write lease
    /// answers [`StoreError::NotLeader`]: its sequencer starts stopped, and [`KvStore::recover`]
    /// is how it takes the lease.
    fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes a consistent copy of the whole store at one instant while it keeps serving.
    /// Backends whose backups are taken on the database itself answer
    /// [`StoreError::Unsupported`].
    fn backup(&self) -> Result<Box<dyn BackupCopy>, StoreError> {
        Err(StoreError::Unsupported(
            "this store takes no backups itself: back up the database it runs on".into(),
        ))
    }
}

/// Opens a backend's store kept in a folder: how the registry opens a data folder's store, a
/// backup copy and the store it restores into, without naming the backend.
pub trait StoreOpener: fmt::Debug + Send + Sync {
    /// Opens (creating if needed) the store in `path`.
    fn open(&self, path: &Path) -> Result<Arc<dyn KvStore>, StoreError>;

    /// Opens the store in `path` for reading only, writing nothing there: the backend's own
    /// logs go to `log_dir`. For checking a backup copy before it is used.
    fn open_read_only(
        &self,
        path: &Path,
        log_dir: &Path,
    ) -> Result<Box<dyn Read + Send + Sync>, StoreError>;
}

/// One file of a [`BackupCopy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// The file's name inside the copy (no folders).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A consistent copy of a store taken at one instant: files to stream to an operator, and
/// readable like the store itself, to learn what the copy holds. Dropping it deletes the copy.
pub trait BackupCopy: Read + Send + Sync + fmt::Debug {
    /// The copy's files, in a fixed order.
    fn files(&self) -> &[BackupFile];

    /// Opens one of [`BackupCopy::files`] for reading.
    fn open_file(&self, name: &str) -> std::io::Result<std::fs::File>;
}
