//! The RocksDB store: one column family per [`Table`], WAL-synced batches, snapshot reads.
//!
//! After a failed write RocksDB refuses every later write, and the crate exposes no way to
//! resume it: [`KvStore::recover`] reopens the database in the process instead, once the disk
//! has room for what reopening writes.
//!
//! Only this crate sees RocksDB; the registry reaches it through `certseal-store`'s traits.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Direction as RDir,
    IteratorMode, Options, ReadOptions, SnapshotWithThreadMode, WriteBatch, WriteOptions,
};

use certseal_store::{
    BackupCopy, BackupFile, Batch, Direction, KvStore, Op, Page, Read, StoreError, StoreOpener,
    Table,
};

/// Folder beside the store's own where online backups are staged (hard links, mostly) while
/// they stream; whatever a crash left there is removed at the next open.
pub const BACKUP_STAGING: &str = "backup-staging";

/// Tuning of the RocksDB store; the defaults suit one machine with a few GiB to spare.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Shared block cache, in bytes.
    pub block_cache_bytes: usize,
    /// Background flush and compaction threads.
    pub background_jobs: i32,
    /// Memtables of all tables together; past it the largest is flushed.
    pub memtable_bytes: usize,
    /// Write-ahead log kept on disk; past it the tables that hold the oldest log file are
    /// flushed so it can go. Without it, one rarely written table keeps every log file alive.
    pub max_wal_bytes: u64,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: 256 << 20,
            background_jobs: 2,
            memtable_bytes: 256 << 20,
            max_wal_bytes: 1 << 30,
        }
    }
}

/// The options are all an opener needs: RocksDB keeps everything in the folder it is given.
impl StoreOpener for RocksOptions {
    fn open(&self, path: &Path) -> Result<Arc<dyn KvStore>, StoreError> {
        Ok(Arc::new(RocksStore::open(path, self)?))
    }

    fn open_read_only(
        &self,
        path: &Path,
        log_dir: &Path,
    ) -> Result<Box<dyn Read + Send + Sync>, StoreError> {
        Ok(Box::new(RocksStore::open_read_only(path, log_dir)?))
    }
}

/// The embedded default store.
pub struct RocksStore {
    /// The open database; reads and snapshots hold it while they run, and a reopen waits for
    /// them. Empty only when a reopen could open it neither for writing nor for reading.
    db: RwLock<Option<Arc<DB>>>,
    /// The database a reopen is waiting to close, for the reads of threads that hold a
    /// snapshot of it (see [`HELD`]).
    draining: Mutex<Weak<DB>>,
    path: PathBuf,
    /// How to reopen it; `None` when opened read-only.
    reopen: Option<(RocksOptions, Cache)>,
}

thread_local! {
    /// Snapshots alive on this thread. A reopen waits for every snapshot to be dropped, so a
    /// thread that holds one and reads again must not wait for the reopen: both would stall.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// A database and a snapshot of it, which borrows it.
mod owned {
    use std::sync::Arc;

    use rocksdb::{DB, SnapshotWithThreadMode};

    pub(super) type Snapshot<'a> = SnapshotWithThreadMode<'a, DB>;

    self_cell::self_cell!(
        pub(super) struct OwnedSnapshot {
            owner: Arc<DB>,
            #[covariant]
            dependent: Snapshot,
        }
    );
}
use owned::OwnedSnapshot;

/// Room kept free beyond what reopening and the memtables write (the manifest, options and
/// information log).
const REOPEN_MARGIN: u64 = 4 << 20;
/// A synced write of this size shows the disk takes writes at all.
const PROBE_BYTES: usize = 64 << 10;
/// Name of that write, in the store's folder (RocksDB leaves names it does not know alone).
const PROBE_FILE: &str = "certseal-write-probe";
/// How long a reopen waits for reads in progress to let go of the database.
const READS_DRAIN: Duration = Duration::from_secs(10);

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The one place RocksDB's errors become ours.
fn from_rocks(e: rocksdb::Error) -> StoreError {
    let message = e.into_string();
    // RocksDB reports ENOSPC as an I/O error with this text (its own subcode's and strerror's).
    if message.contains("No space left on device") {
        StoreError::DiskFull(message)
    } else {
        StoreError::Backend(message)
    }
}

fn open_db(path: &Path, opts: &RocksOptions, cache: &Cache) -> Result<DB, StoreError> {
    let cf_opts = || {
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(cache);
        block.set_bloom_filter(10.0, false);
        block.set_cache_index_and_filter_blocks(true);
        let mut o = Options::default();
        o.set_block_based_table_factory(&block);
        o.set_compression_type(DBCompressionType::Lz4);
        o
    };
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(opts.background_jobs);
    db_opts.set_keep_log_file_num(10);
    db_opts.set_db_write_buffer_size(opts.memtable_bytes);
    db_opts.set_max_total_wal_size(opts.max_wal_bytes);
    let cfs = Table::ALL
        .iter()
        .map(|t| ColumnFamilyDescriptor::new(t.name(), cf_opts()));
    DB::open_cf_descriptors(&db_opts, path, cfs).map_err(from_rocks)
}

fn open_db_read_only(path: &Path, info_log_dir: Option<&Path>) -> Result<DB, StoreError> {
    let mut opts = Options::default();
    if let Some(dir) = info_log_dir {
        opts.set_db_log_dir(dir);
    }
    DB::open_cf_for_read_only(&opts, path, Table::ALL.iter().map(|t| t.name()), false)
        .map_err(from_rocks)
}

fn cf(db: &DB, table: Table) -> &rocksdb::ColumnFamily {
    db.cf_handle(table.name())
        .expect("every table's column family is created at open")
}

impl RocksStore {
    /// Opens (creating if needed) the store in `path`.
    pub fn open(path: &Path, opts: &RocksOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let db = open_db(path, opts, &cache)?;
        // A probe a crash interrupted.
        let _ = std::fs::remove_file(path.join(PROBE_FILE));
        if let Some(staging) = staging_dir(path)
            && staging.exists()
        {
            // Copies a crash left behind: nobody streams them any more.
            if let Err(e) = std::fs::remove_dir_all(&staging) {
                tracing::warn!(path = %staging.display(), error = %e, "cannot remove stale backup copies");
            }
        }
        Ok(Self {
            db: RwLock::new(Some(Arc::new(db))),
            draining: Mutex::new(Weak::new()),
            path: path.to_owned(),
            reopen: Some((opts.clone(), cache)),
        })
    }

    /// Opens the store in `path` for reading only, writing nothing there: RocksDB's own
    /// information log goes to `info_log_dir`. For checking a backup copy before it is used.
    pub fn open_read_only(path: &Path, info_log_dir: &Path) -> Result<Self, StoreError> {
        let db = open_db_read_only(path, Some(info_log_dir))?;
        Ok(Self {
            db: RwLock::new(Some(Arc::new(db))),
            draining: Mutex::new(Weak::new()),
            path: path.to_owned(),
            reopen: None,
        })
    }

    /// The folder the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, held for one read or one snapshot.
    fn db(&self) -> Result<Arc<DB>, StoreError> {
        let closed = || {
            StoreError::Backend(format!(
                "the store {} is closed: it could not be reopened after a failed write",
                self.path.display()
            ))
        };
        if HELD.get() == 0 {
            return self
                .db
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .ok_or_else(closed);
        }
        // This thread holds a snapshot: it reads the database being drained rather than wait.
        loop {
            if let Some(db) = self
                .draining
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .upgrade()
            {
                return Ok(db);
            }
            match self.db.try_read() {
                Ok(slot) => return slot.clone().ok_or_else(closed),
                Err(std::sync::TryLockError::Poisoned(slot)) => {
                    return slot.into_inner().clone().ok_or_else(closed);
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Whether the disk has room for a reopen, which writes to SST files what the write-ahead
    /// log holds, and then for a full set of memtables, so that writes do not stop again at
    /// once; and whether it takes a synced write at all.
    fn check_room(&self, opts: &RocksOptions) -> Result<(), StoreError> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::StorageFull {
                StoreError::DiskFull(format!("{what} {}: {e}", p.display()))
            } else {
                io_err(what, p, e)
            }
        };
        let mut wal = 0;
        for item in std::fs::read_dir(&self.path).map_err(|e| io("cannot list", &self.path, e))? {
            let item = item.map_err(|e| io("cannot list", &self.path, e))?;
            if item.file_name().to_string_lossy().ends_with(".log") {
                wal += item.metadata().map_or(0, |m| m.len());
            }
        }
        let needed = wal + opts.memtable_bytes as u64 + REOPEN_MARGIN;
        #[cfg(unix)]
        {
            let fs = rustix::fs::statvfs(&self.path)
                .map_err(|e| io("cannot read the free space of", &self.path, e.into()))?;
            let free = fs.f_bavail.saturating_mul(fs.f_frsize);
            if free < needed {
                return Err(StoreError::DiskFull(format!(
                    "{free} bytes are free on the disk of {}; reopening the store needs {needed}",
                    self.path.display()
                )));
            }
        }
        let probe = self.path.join(PROBE_FILE);
        let written = (|| {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&probe)?;
            f.write_all(&[0u8; PROBE_BYTES])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&probe);
        written.map_err(|e| io("cannot write", &probe, e))
    }
}

/// Scans `table` in `db` (at `snapshot` if given).
fn scan_with(
    db: &DB,
    snapshot: Option<&SnapshotWithThreadMode<'_, DB>>,
    table: Table,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    direction: Direction,
) -> Result<Page, StoreError> {
    let mut ro = ReadOptions::default();
    if let Some(s) = snapshot {
        ro.set_snapshot(s);
    }
    // Bound the iterator to the prefix so RocksDB skips the rest of the column family.
    ro.set_iterate_lower_bound(prefix.to_vec());
    if let Some(upper) = prefix_successor(prefix) {
        ro.set_iterate_upper_bound(upper);
    }
    let mode = match (direction, after) {
        (Direction::Forward, Some(k)) => IteratorMode::From(k, RDir::Forward),
        (Direction::Forward, None) => IteratorMode::Start,
        (Direction::Reverse, Some(k)) => IteratorMode::From(k, RDir::Reverse),
        (Direction::Reverse, None) => IteratorMode::End,
    };
    let iter = db.iterator_cf_opt(cf(db, table), ro, mode);
    let mut page = Page::default();
    for item in iter {
        let (k, v) = item.map_err(from_rocks)?;
        if !k.starts_with(prefix) {
            break;
        }
        if after.is_some_and(|a| *k == *a) {
            continue;
        }
        if page.items.len() == limit {
            page.more = true;
            break;
        }
        page.items.push((k.into_vec(), v.into_vec()));
    }
    Ok(page)
}

/// The smallest key greater than every key that starts with `prefix`, if there is one.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut up = prefix.to_vec();
    while let Some(last) = up.pop() {
        if last < 0xff {
            up.push(last + 1);
            return Some(up);
        }
    }
    None
}

impl Read for RocksStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        db.get_cf(cf(&db, table), key).map_err(from_rocks)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        let db = self.db()?;
        scan_with(&db, None, table, prefix, after, limit, direction)
    }
}

/// A snapshot holds its database open: a reopen waits until it is dropped.
struct RocksSnapshot(OwnedSnapshot);

impl RocksSnapshot {
    fn new(db: Arc<DB>) -> Self {
        HELD.set(HELD.get() + 1);
        Self(OwnedSnapshot::new(db, |db| db.snapshot()))
    }
}

impl Drop for RocksSnapshot {
    // Snapshots are not `Send`: dropped on the thread that took them.
    fn drop(&mut self) {
        HELD.set(HELD.get().saturating_sub(1));
    }
}

impl Read for RocksSnapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0
            .with_dependent(|db, s| s.get_cf(cf(db, table), key).map_err(from_rocks))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        self.0
            .with_dependent(|db, s| scan_with(db, Some(s), table, prefix, after, limit, direction))
    }
}

/// What a snapshot reads when the store could not be reopened at all.
struct Closed(StoreError);

impl Read for Closed {
    fn get(&self, _: Table, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Backend(self.0.to_string()))
    }

    fn scan(
        &self,
        _: Table,
        _: &[u8],
        _: Option<&[u8]>,
        _: usize,
        _: Direction,
    ) -> Result<Page, StoreError> {
        Err(StoreError::Backend(self.0.to_string()))
    }
}

fn staging_dir(db_path: &Path) -> Option<PathBuf> {
    db_path.parent().map(|p| p.join(BACKUP_STAGING))
}

/// A RocksDB checkpoint of the live store: its files (hard links to the live tables where the
/// filesystem allows, copies otherwise) and the copy opened read-only.
struct RocksBackup {
    dir: PathBuf,
    files: Vec<BackupFile>,
    copy: Option<RocksStore>,
}

impl std::fmt::Debug for RocksBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBackup")
            .field("dir", &self.dir)
            .field("files", &self.files.len())
            .finish()
    }
}

impl RocksBackup {
    fn copy(&self) -> &RocksStore {
        self.copy.as_ref().expect("open until dropped")
    }
}

impl Drop for RocksBackup {
    fn drop(&mut self) {
        self.copy.take();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(path = %self.dir.display(), error = %e, "cannot remove a backup copy");
        }
    }
}

impl Read for RocksBackup {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.copy().get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        self.copy().scan(table, prefix, after, limit, direction)
    }
}

impl BackupCopy for RocksBackup {
    fn files(&self) -> &[BackupFile] {
        &self.files
    }

    fn open_file(&self, name: &str) -> std::io::Result<std::fs::File> {
        if !self.files.iter().any(|f| f.name == name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{name} is not a file of this backup"),
            ));
        }
        std::fs::File::open(self.dir.join("db").join(name))
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{what} {}: {e}", path.display()))
}

impl KvStore for RocksStore {
    fn backup(&self) -> Result<Box<dyn BackupCopy>, StoreError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let staging = staging_dir(&self.path)
            .ok_or_else(|| StoreError::Backend("the store has no parent folder".into()))?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = staging.join(format!("{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;
        let mut backup = RocksBackup {
            dir: dir.clone(),
            files: Vec::new(),
            copy: None,
        };
        // One instant for every column family: RocksDB flushes, links the live tables and
        // copies the write-ahead log up to the same sequence number.
        let db_dir = dir.join("db");
        let db = self.db()?;
        rocksdb::checkpoint::Checkpoint::new(&*db)
            .and_then(|c| c.create_checkpoint(&db_dir))
            .map_err(from_rocks)?;
        let mut files = Vec::new();
        for item in std::fs::read_dir(&db_dir).map_err(|e| io_err("cannot list", &db_dir, e))? {
            let item = item.map_err(|e| io_err("cannot list", &db_dir, e))?;
            let meta = item
                .metadata()
                .map_err(|e| io_err("cannot read", &item.path(), e))?;
            if meta.is_file() {
                files.push(BackupFile {
                    name: item.file_name().to_string_lossy().into_owned(),
                    size: meta.len(),
                });
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        backup.files = files;
        // Opened after listing, so that RocksDB's information log (kept beside) is not a file
        // of the copy.
        backup.copy = Some(RocksStore::open_read_only(&db_dir, &dir)?);
        Ok(Box::new(backup))
    }

    fn snapshot(&self) -> Box<dyn Read + '_> {
        match self.db() {
            Ok(db) => Box::new(RocksSnapshot::new(db)),
            Err(e) => Box::new(Closed(e)),
        }
    }

    fn write(&self, batch: &Batch, durable: bool) -> Result<(), StoreError> {
        let db = self.db()?;
        let mut wb = WriteBatch::default();
        for op in batch.ops() {
            match op {
                Op::Put(t, k, v) => wb.put_cf(cf(&db, *t), k, v),
                Op::Delete(t, k) => wb.delete_cf(cf(&db, *t), k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durable);
        db.write_opt(wb, &wo).map_err(from_rocks)
    }

    fn recover(&self) -> Result<(), StoreError> {
        let Some((opts, cache)) = &self.reopen else {
            return Err(StoreError::Unsupported(
                "a store opened read-only takes no writes".into(),
            ));
        };
        self.check_room(opts)?;
        // New reads wait here; those in progress end and let go of the database.
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(mut db) = slot.take() {
            let draining = || self.draining.lock().unwrap_or_else(|e| e.into_inner());
            *draining() = Arc::downgrade(&db);
            let deadline = Instant::now() + READS_DRAIN;
            loop {
                match Arc::try_unwrap(db) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(held) if Instant::now() >= deadline => {
                        *draining() = Weak::new();
                        *slot = Some(held);
                        return Err(StoreError::Backend(
                            "reads in progress still hold the store; reopening it later".into(),
                        ));
                    }
                    Err(held) => {
                        db = held;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            *draining() = Weak::new();
        }
        match open_db(&self.path, opts, cache) {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                tracing::info!(path = %self.path.display(), "reopened the store");
                Ok(())
            }
            Err(e) => {
                // Reads go on from the database opened read-only until a reopen succeeds.
                match open_db_read_only(&self.path, None) {
                    Ok(db) => *slot = Some(Arc::new(db)),
                    Err(ro) => tracing::error!(
                        error = %ro,
                        "the store cannot be opened even for reading: reads fail until it reopens"
                    ),
                }
                Err(e)
            }
        }
    }

    fn properties(&self) -> Vec<(&'static str, u64)> {
        let Ok(db) = self.db() else {
            return Vec::new();
        };
        const SUMMED: [(&str, &str); 4] = [
            ("estimated_keys", "rocksdb.estimate-num-keys"),
            ("sst_bytes", "rocksdb.total-sst-files-size"),
            ("memtable_bytes", "rocksdb.cur-size-all-mem-tables"),
            (
                "pending_compaction_bytes",
                "rocksdb.estimate-pending-compaction-bytes",
            ),
        ];
        let mut out: Vec<(&'static str, u64)> = SUMMED
            .iter()
            .map(|(name, property)| {
                let total = Table::ALL
                    .iter()
                    .filter_map(|t| {
                        db.property_int_value_cf(cf(&db, *t), *property)
                            .ok()
                            .flatten()
                    })
                    .sum();
                (*name, total)
            })
            .collect();
        // The block cache and the compaction threads are the database's: any table reports
        // all of them, so they are read once.
        for (name, property) in [
            ("block_cache_bytes", "rocksdb.block-cache-usage"),
            ("running_compactions", "rocksdb.num-running-compactions"),
        ] {
            if let Ok(Some(v)) = db.property_int_value_cf(cf(&db, Table::Meta), property) {
                out.push((name, v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_of_prefixes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
