//! certseal's storage on a database that speaks the MySQL protocol: MariaDB Galera (tested
//! here), TiDB and OceanBase. Several certseal nodes share one database; one of them at a time
//! holds the write lease and sequences every write.
//!
//! Only this crate sees the MySQL client. Each [`Table`] is one SQL table of (key, value) rows
//! with a binary primary key, so that ranges scan in the same byte order as RocksDB's. One
//! [`Batch`] is one transaction, and it carries the fence: the first statement bumps the lease
//! row *only if* its epoch is still the one this node took, so a deposed or paused leader can
//! never commit, whatever it believes.
//!
//! What is used is what all three engines have: REPEATABLE READ with consistent snapshots,
//! row locks, compare-and-set updates checked by their affected rows, primary keys; never
//! SERIALIZABLE, `GET_LOCK`, `LOCK TABLES`, XA or AUTO_INCREMENT. The client is blocking (the
//! store traits are synchronous): a read on an async runtime's worker is run with
//! `block_in_place`, so the runtime moves its other tasks to another thread meanwhile.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod lease;
mod sql;

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use certseal_store::{Batch, Direction, KvStore, Op, Page, Read, StoreError, Table};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, PooledConn};

pub use lease::{Leader, LeaseState};

/// The schema this build creates and reads. A database with another is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest key, in bytes (the primary key column's width).
pub const MAX_KEY: usize = 1024;

/// How to reach the database and take part in the cluster.
#[derive(Debug, Clone)]
pub struct MysqlOptions {
    /// `mysql://user:password@host:port/database`: the write node first, then the fail-over
    /// order. Every certseal node lists them in the same order, so all send writes to one node.
    pub urls: Vec<String>,
    /// This certseal node's name in the lease row (unique in the cluster).
    pub node: String,
    /// Where other nodes reach this one to forward writes (host:port).
    pub advertise: String,
    /// How long a taken lease lasts without renewal; another node takes it after that.
    pub lease: Duration,
    /// Connections per database node.
    pub pool_size: usize,
    /// Longest wait for a connection to a database node.
    pub connect_timeout: Duration,
}

impl Default for MysqlOptions {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            node: "certseal".into(),
            advertise: String::new(),
            lease: Duration::from_secs(3),
            pool_size: 16,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// One database node: its address (without the password, for messages) and its pools: one
/// for reads, one for snapshots, and a small one of the writer's own (its batches, its reads,
/// the lease), so that a flood of reads never holds up a commit or a lease renewal. A snapshot
/// holds its connection until dropped, and its holder may read the latest state meanwhile: from
/// one pool, enough such holders would take every connection and each wait for one more.
struct Node {
    shown: String,
    opts: Opts,
    pool: Mutex<Option<Pool>>,
    snapshots: Mutex<Option<Pool>>,
    writer: Mutex<Option<Pool>>,
}

/// Connections of the writer's pool on each node: the sequencer's, the renewal's, and one spare.
const WRITER_POOL: usize = 3;

/// Which pool a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Read,
    Snapshot,
    Write,
}

impl Node {
    fn pool(&self, use_: Use, size: usize, timeout: Duration) -> Result<Pool, mysql::Error> {
        let (slot, size) = match use_ {
            Use::Read => (&self.pool, size),
            Use::Snapshot => (&self.snapshots, size),
            Use::Write => (&self.writer, WRITER_POOL),
        };
        let mut p = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = p.as_ref() {
            return Ok(pool.clone());
        }
        let opts = OptsBuilder::from_opts(self.opts.clone())
            .tcp_connect_timeout(Some(timeout))
            .tcp_nodelay(true)
            // Reads that follow the cluster: a Galera node answers only once it has applied
            // every commit the cluster made before the read (wsrep_sync_wait); elsewhere the
            // statement is a comment.
            .init(vec![sql::SYNC_WAIT])
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(PoolConstraints::new(1, size.max(2)).expect("min <= max"))
                    .with_reset_connection(false),
            );
        let pool = Pool::new(opts)?;
        *p = Some(pool.clone());
        Ok(pool)
    }

    fn forget(&self) {
        *self.pool.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.snapshots.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The store on a MySQL-protocol database.
pub struct MysqlStore {
    nodes: Vec<Node>,
    /// The database node in use: every read and write goes to it until it fails.
    current: AtomicUsize,
    opts: MysqlOptions,
    lease: lease::Lease,
    /// What the writer read and wrote while it held the lease.
    cache: Mutex<WriterCache>,
}

/// The leader is the only writer while it holds the lease (every commit is fenced on its
/// epoch), so what its writer read and committed at one epoch stays true until it writes it
/// again: the writer reads it here, not over the network. Only the writer's thread uses it;
/// it is emptied at another epoch and after any failed write.
#[derive(Debug, Default)]
struct WriterCache {
    epoch: u64,
    map: std::collections::HashMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    bytes: usize,
    hits: u64,
    misses: u64,
    /// Keys loaded ahead of the reads, and the round trips that loaded them.
    prefetched: u64,
    prefetches: u64,
}

/// The writer cache's bound; past it the cache starts again empty (the hot state, templates,
/// seals, policies and the log's right edge, comes back within a group).
const WRITER_CACHE_BYTES: usize = 64 << 20;

impl WriterCache {
    fn at(&mut self, epoch: u64) -> &mut Self {
        if self.epoch != epoch {
            self.clear();
            self.epoch = epoch;
        }
        self
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    fn put(&mut self, table: Table, key: &[u8], value: Option<&[u8]>) {
        let size = |k: &[u8], v: Option<&[u8]>| k.len() + v.map_or(0, <[u8]>::len) + 64;
        if self.bytes + size(key, value) > WRITER_CACHE_BYTES {
            self.clear();
        }
        self.bytes += size(key, value);
        if let Some(old) = self
            .map
            .insert((table, key.to_vec()), value.map(<[u8]>::to_vec))
        {
            self.bytes -= size(key, old.as_deref());
        }
    }
}

impl fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlStore")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.shown).collect::<Vec<_>>(),
            )
            .field("current", &self.current.load(Ordering::Relaxed))
            .field("node", &self.opts.node)
            .finish()
    }
}

/// Errors opening the store, each naming its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A URL is not a MySQL URL.
    #[error("database URL {url}: {reason}")]
    BadUrl {
        /// The URL without its password.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No database node answered.
    #[error("no database node answers: {0}")]
    Unreachable(String),
    /// The database holds another schema version.
    #[error(
        "the database's certseal schema is version {found}; this build reads version {SCHEMA_VERSION}: upgrade the nodes (see docs/operations.md)"
    )]
    SchemaVersion {
        /// The version found.
        found: u32,
    },
    /// The database answered with an error.
    #[error("database: {0}")]
    Database(String),
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::SchemaVersion { .. } => StoreError::Incompatible(e.to_string()),
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// Whether an error means the node is gone (try the next one) rather than a refusal.
fn is_connection_error(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) | mysql::Error::DriverError(_) => {
            true
        }
        // 1047: WSREP has not yet prepared node for application use (a Galera node out of the
        // primary component); 2006/2013: gone away, lost connection.
        mysql::Error::MySqlError(m) => matches!(m.code, 1047 | 1053 | 2006 | 2013 | 1927),
        _ => false,
    }
}

/// Galera's certification failure and InnoDB's deadlock and lock wait: the transaction did not
/// commit and may be run again.
fn is_retryable(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(m) if matches!(m.code, 1213 | 1205))
}

fn backend(e: mysql::Error) -> StoreError {
    StoreError::Backend(format!("database: {e}"))
}

/// Runs `f`, which blocks on the network, without holding up the async runtime's worker.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn shown_url(url: &str) -> String {
    // mysql://user:password@host → mysql://user@host
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl MysqlStore {
    /// Connects to the first database node that answers, creates or checks the schema, and
    /// tries once to take the write lease (a node that does not get it is a follower until
    /// [`KvStore::recover`] gets it).
    pub fn open(opts: &MysqlOptions) -> Result<Self, OpenError> {
        if opts.urls.is_empty() {
            return Err(OpenError::BadUrl {
                url: String::new(),
                reason: "no database URL is configured ([storage] urls)".into(),
            });
        }
        let mut nodes = Vec::new();
        for url in &opts.urls {
            let shown = shown_url(url);
            let o = Opts::from_url(url).map_err(|e| OpenError::BadUrl {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
            if o.get_db_name().is_none() {
                return Err(OpenError::BadUrl {
                    url: shown,
                    reason: "it names no database (mysql://user:password@host:port/DATABASE)"
                        .into(),
                });
            }
            nodes.push(Node {
                shown,
                opts: o,
                pool: Mutex::new(None),
                snapshots: Mutex::new(None),
                writer: Mutex::new(None),
            });
        }
        let store = Self {
            nodes,
            current: AtomicUsize::new(0),
            opts: opts.clone(),
            lease: lease::Lease::new(opts),
            cache: Mutex::new(WriterCache::default()),
        };
        let mut conn = store.conn(Use::Write).map_err(|e| match e {
            StoreError::Backend(m) => OpenError::Unreachable(m),
            other => OpenError::Database(other.to_string()),
        })?;
        sql::create_schema(&mut conn)?;
        drop(conn);
        // One attempt: a leader that restarts takes its lease back at once.
        let _ = store.try_lead();
        Ok(store)
    }

    /// A connection to the current database node, failing over in the configured order.
    fn conn(&self, use_: Use) -> Result<PooledConn, StoreError> {
        let n = self.nodes.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (start + i) % n;
            let node = &self.nodes[at];
            let mut busy = 0;
            let got = loop {
                let got = node
                    .pool(use_, self.opts.pool_size, self.opts.connect_timeout)
                    .and_then(|p| p.try_get_conn(self.opts.connect_timeout));
                // Every connection busy is load, not a dead node: wait on, without failing over.
                match got {
                    Err(mysql::Error::DriverError(mysql::DriverError::Timeout)) if busy < 10 => {
                        busy += 1;
                        tracing::debug!(node = %node.shown, busy, "every pooled connection is busy");
                    }
                    Err(mysql::Error::DriverError(mysql::DriverError::Timeout)) => {
                        return Err(StoreError::Backend(format!(
                            "every connection to {} stayed busy for {} s ([storage] pool_size = {})",
                            node.shown,
                            busy * self.opts.connect_timeout.as_secs(),
                            self.opts.pool_size
                        )));
                    }
                    other => break other,
                }
            };
            match got {
                Ok(c) => {
                    if at != start
                        && self
                            .current
                            .compare_exchange(start, at, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                    {
                        tracing::warn!(from = %self.nodes[start].shown, to = %node.shown, "database fail-over");
                    }
                    return Ok(c);
                }
                Err(e) => {
                    node.forget();
                    errors.push(format!("{}: {e}", node.shown));
                }
            }
        }
        Err(StoreError::Backend(format!(
            "no database node answers: {}",
            errors.join("; ")
        )))
    }

    /// Runs `f` on a connection; a connection error moves to the next database node and
    /// runs it again there (reads only: they change nothing).
    fn read<T>(
        &self,
        f: impl Fn(&mut PooledConn) -> Result<T, mysql::Error>,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut last = None;
            let use_ = if certseal_store::on_writer_thread() {
                Use::Write
            } else {
                Use::Read
            };
            for _ in 0..self.nodes.len() {
                let mut c = self.conn(use_)?;
                match f(&mut c) {
                    Ok(v) => return Ok(v),
                    Err(e) if is_connection_error(&e) => {
                        self.failed(&e);
                        last = Some(e);
                    }
                    Err(e) => return Err(backend(e)),
                }
            }
            Err(backend(last.expect("at least one node")))
        })
    }

    /// The current node failed: the next call starts at the next one.
    fn failed(&self, e: &mysql::Error) {
        let n = self.nodes.len();
        let at = self.current.load(Ordering::Relaxed);
        self.nodes[at].forget();
        if n > 1
            && self
                .current
                .compare_exchange(at, (at + 1) % n, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            tracing::warn!(from = %self.nodes[at].shown, to = %self.nodes[(at + 1) % n].shown, error = %e, "database fail-over");
        }
    }

    /// The database node in use, without its password.
    pub fn current_node(&self) -> &str {
        &self.nodes[self.current.load(Ordering::Relaxed) % self.nodes.len()].shown
    }

    /// What this node knows of the lease: whether it holds it, and its epoch.
    pub fn lease_state(&self) -> LeaseState {
        self.lease.state()
    }

    /// The node holding the lease, as the database says now.
    pub fn leader(&self) -> Result<Option<Leader>, StoreError> {
        self.read(lease::read_leader)
    }

    /// Tries to take (or keep) the lease; the node holds it afterwards if this answers Ok.
    fn try_lead(&self) -> Result<(), StoreError> {
        off_runtime(|| {
            let mut c = self.conn(Use::Write)?;
            match self.lease.acquire(&mut c) {
                Ok(r) => r,
                Err(e) => {
                    if is_connection_error(&e) {
                        self.failed(&e);
                    }
                    Err(backend(e))
                }
            }
        })
    }

    /// Renews the lease while it is held; run every third of the lease by the server. Answers
    /// whether this node still holds it.
    pub fn renew(&self) -> bool {
        let r = off_runtime(|| {
            let mut c = self.conn(Use::Write)?;
            self.lease.renew(&mut c).map_err(|e| {
                if is_connection_error(&e) {
                    self.failed(&e);
                }
                backend(e)
            })
        });
        match r {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the write lease");
                self.lease.state().held
            }
        }
    }

    /// Gives the lease up (a clean shutdown), so another node takes it at once.
    pub fn release(&self) {
        let r = off_runtime(|| -> Result<(), StoreError> {
            let mut c = self.conn(Use::Write)?;
            self.lease.release(&mut c).map_err(backend)
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot release the write lease; it expires by itself");
        }
    }

    /// The registry's identity in the database, created with the schema.
    pub fn registry_id(&self) -> Result<String, StoreError> {
        self.read(sql::registry_id)
    }

    fn write_once(&self, batch: &Batch) -> Result<(), WriteError> {
        let Some(epoch) = self.lease.fence_epoch() else {
            return Err(WriteError::Fenced);
        };
        let mut c = self.conn(Use::Write).map_err(WriteError::NoConnection)?;
        c.query_drop("BEGIN /*T! PESSIMISTIC */")?;
        let run = |c: &mut PooledConn| -> Result<bool, mysql::Error> {
            c.query_drop(lease::fence_sql(epoch))?;
            if c.affected_rows() != 1 {
                return Ok(false);
            }
            for stmt in sql::batch_statements(&collapse(batch)) {
                c.query_drop(stmt)?;
            }
            c.query_drop("COMMIT")?;
            Ok(true)
        };
        match run(&mut c) {
            Ok(true) => Ok(()),
            Ok(false) => {
                c.query_drop("ROLLBACK")?;
                Err(WriteError::Fenced)
            }
            Err(e) => {
                let _ = c.query_drop("ROLLBACK");
                Err(WriteError::Database(e))
            }
        }
    }
}

/// Why a batch did not commit.
enum WriteError {
    /// The lease's epoch is no longer this node's (or it never took it).
    Fenced,
    /// No database node gave a connection.
    NoConnection(StoreError),
    /// The database refused or the connection broke.
    Database(mysql::Error),
}

impl From<mysql::Error> for WriteError {
    fn from(e: mysql::Error) -> Self {
        WriteError::Database(e)
    }
}

/// The last change of each key, per table: a batch's order matters only within one key.
fn collapse(batch: &Batch) -> Vec<sql::Change<'_>> {
    let mut latest: std::collections::HashMap<(Table, &[u8]), usize> = Default::default();
    let mut out: Vec<sql::Change<'_>> = Vec::new();
    for op in batch.ops() {
        let (t, k, v) = match op {
            Op::Put(t, k, v) => (*t, k.as_slice(), Some(v.as_slice())),
            Op::Delete(t, k) => (*t, k.as_slice(), None),
        };
        match latest.get(&(t, k)) {
            Some(&i) => out[i].2 = v,
            None => {
                latest.insert((t, k), out.len());
                out.push((t, k.to_vec(), v));
            }
        }
    }
    out
}

impl MysqlStore {
    fn cache(&self) -> std::sync::MutexGuard<'_, WriterCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch whose cache the calling thread may use: the writer's, while the lease holds.
    fn cache_epoch(&self) -> Option<u64> {
        if !certseal_store::on_writer_thread() || !self.lease.state().held {
            return None;
        }
        self.lease.fence_epoch()
    }
}

impl Read for MysqlStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(epoch) = self.cache_epoch() else {
            return self.read(|c| sql::get(c, table, key));
        };
        {
            let mut c = self.cache();
            let c = c.at(epoch);
            if let Some(v) = c.map.get(&(table, key.to_vec())) {
                let v = v.clone();
                c.hits += 1;
                return Ok(v);
            }
            c.misses += 1;
        }
        let v = self.read(|c| sql::get(c, table, key))?;
        self.cache().at(epoch).put(table, key, v.as_deref());
        Ok(v)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        self.read(|c| sql::scan(c, table, prefix, after, limit, direction))
    }
}

/// A consistent snapshot: one read-only transaction on one connection, held until dropped.
struct Snapshot {
    conn: Mutex<Option<PooledConn>>,
    error: Option<String>,
}

impl Snapshot {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut PooledConn) -> Result<T, mysql::Error>,
    ) -> Result<T, StoreError> {
        if let Some(e) = &self.error {
            return Err(StoreError::Backend(e.clone()));
        }
        off_runtime(|| {
            let mut g = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            let c = g
                .as_mut()
                .ok_or_else(|| StoreError::Backend("the snapshot's connection is gone".into()))?;
            f(c).map_err(backend)
        })
    }
}

impl Read for Snapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|c| sql::get(c, table, key))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        self.with(|c| sql::scan(c, table, prefix, after, limit, direction))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(mut c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Back to the pool without the open transaction.
            let _ = off_runtime(|| c.query_drop("ROLLBACK"));
        }
    }
}

impl KvStore for MysqlStore {
    fn snapshot(&self) -> Box<dyn Read + '_> {
        let opened = off_runtime(|| -> Result<PooledConn, StoreError> {
            let mut c = self.conn(Use::Snapshot)?;
            c.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .map_err(backend)?;
            Ok(c)
        });
        match opened {
            Ok(c) => Box::new(Snapshot {
                conn: Mutex::new(Some(c)),
                error: None,
            }),
            Err(e) => Box::new(Snapshot {
                conn: Mutex::new(None),
                error: Some(e.to_string()),
            }),
        }
    }

    fn write(&self, batch: &Batch, _durable: bool) -> Result<(), StoreError> {
        // Every commit is durable here: Galera certifies it on every node before it answers.
        for (t, k, _) in collapse(batch) {
            if k.len() > MAX_KEY {
                return Err(StoreError::Backend(format!(
                    "a key of {} bytes in {} is longer than {MAX_KEY}",
                    k.len(),
                    t.name()
                )));
            }
        }
        let epoch = self.lease.fence_epoch();
        let written = off_runtime(|| {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.write_once(batch) {
                    Ok(()) => return Ok(()),
                    Err(WriteError::Fenced) => {
                        self.lease.lost();
                        return Err(StoreError::NotLeader(
                            "this node does not hold the write lease; nothing was written".into(),
                        ));
                    }
                    Err(WriteError::NoConnection(e)) => return Err(e),
                    // Not committed: a conflict, run again (a takeover attempt by another node
                    // touches the lease row too).
                    Err(WriteError::Database(e)) if is_retryable(&e) && attempts < 5 => {
                        tracing::debug!(error = %e, attempts, "write conflict, retrying");
                    }
                    Err(WriteError::Database(e)) => {
                        if is_connection_error(&e) {
                            self.failed(&e);
                        }
                        // A connection lost during COMMIT leaves the outcome unknown: the
                        // writer stops, and reloads what the database holds.
                        return Err(backend(e));
                    }
                }
            }
        });
        let mut cache = self.cache();
        match (&written, epoch) {
            (Ok(()), Some(e)) => {
                let cache = cache.at(e);
                for (t, k, v) in collapse(batch) {
                    cache.put(t, &k, v);
                }
            }
            _ => cache.clear(),
        }
        written
    }

    fn prefetch(&self, keys: &[(Table, Vec<u8>)]) {
        let Some(epoch) = self.cache_epoch() else {
            return;
        };
        let missing: Vec<(Table, Vec<u8>)> = {
            let mut c = self.cache();
            let c = c.at(epoch);
            keys.iter()
                .filter(|k| !c.map.contains_key(*k))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let (tables, statements) = sql::get_many_statements(&missing);
        let mut found: Vec<(Table, Vec<u8>, Vec<u8>)> = Vec::with_capacity(missing.len());
        for q in &statements {
            let rows = self.read(|c| c.query::<(usize, Vec<u8>, Vec<u8>), _>(q.as_str()));
            match rows {
                Ok(rows) => found.extend(
                    rows.into_iter()
                        .filter_map(|(tag, k, v)| tables.get(tag).map(|&t| (t, k, v))),
                ),
                Err(e) => {
                    // The reads themselves go to the database, and fail there if they must.
                    tracing::debug!(error = %e, "prefetch failed");
                    return;
                }
            }
        }
        let mut c = self.cache();
        let c = c.at(epoch);
        c.prefetches += statements.len() as u64;
        c.prefetched += missing.len() as u64;
        let found: std::collections::HashMap<(Table, Vec<u8>), Vec<u8>> =
            found.into_iter().map(|(t, k, v)| ((t, k), v)).collect();
        for key in missing {
            let v = found.get(&key).map(Vec::as_slice);
            c.put(key.0, &key.1, v);
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.lease.state().held {
            Ok(())
        } else {
            Err(StoreError::NotLeader(
                "another node holds the write lease".into(),
            ))
        }
    }

    fn recover(&self) -> Result<(), StoreError> {
        self.try_lead()
    }

    fn properties(&self) -> Vec<(&'static str, u64)> {
        let (hits, misses, bytes, prefetched, prefetches) = {
            let c = self.cache();
            (c.hits, c.misses, c.bytes as u64, c.prefetched, c.prefetches)
        };
        vec![
            (
                "mysql.current_node",
                self.current.load(Ordering::Relaxed) as u64,
            ),
            ("mysql.lease_epoch", self.lease.state().epoch),
            ("mysql.writer_cache_hits", hits),
            ("mysql.writer_cache_misses", misses),
            ("mysql.writer_cache_bytes", bytes),
            ("mysql.writer_prefetched_keys", prefetched),
            ("mysql.writer_prefetch_round_trips", prefetches),
        ]
    }
}

/// Connects once to `url` without a pool (for tools and tests): creates the database named in
/// it when missing.
pub fn create_database(url: &str) -> Result<(), OpenError> {
    let shown = shown_url(url);
    let opts = Opts::from_url(url).map_err(|e| OpenError::BadUrl {
        url: shown.clone(),
        reason: e.to_string(),
    })?;
    let db = opts
        .get_db_name()
        .map(str::to_owned)
        .ok_or(OpenError::BadUrl {
            url: shown.clone(),
            reason: "it names no database".into(),
        })?;
    let mut c = Conn::new(OptsBuilder::from_opts(opts).db_name(None::<String>))
        .map_err(|e| OpenError::Unreachable(format!("{shown}: {e}")))?;
    c.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{}`",
        db.replace('`', "")
    ))
    .map_err(|e| OpenError::Database(e.to_string()))
}
