//! The single writer: operations from many concurrent requests run one at a time on one
//! thread, each against the state its predecessors left, and a whole group of them is written
//! as one batch with one WAL sync before any of them is acknowledged.
//!
//! Running check-and-write on one thread is what makes "register unless it exists" race-free
//! without locks, and it is where the audit log will take its sequence numbers.
//!
//! A group whose write fails stops the writer: what is on disk is no longer known, so nothing
//! is built on it. While stopped, every write is refused with [`StoreError::WritesStopped`]
//! and the writer asks the store to [`KvStore::recover`] now and then; once it can write
//! again, the writer's state is reloaded from it and writes resume.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::{Batch, KvStore, Op, StoreError, Table};

/// Tuning of the sequencer.
#[derive(Debug, Clone)]
pub struct SequencerOptions {
    /// Most operations written in one batch (one WAL sync).
    pub max_group: usize,
    /// Operations that may wait for the writer before submitters are slowed down.
    pub queue_depth: usize,
    /// After a failed write, how soon the store is first asked whether it can write again;
    /// the wait doubles after each refusal up to `max_recover_interval`.
    pub recover_interval: Duration,
    /// The longest wait between two such questions.
    pub max_recover_interval: Duration,
}

impl Default for SequencerOptions {
    fn default() -> Self {
        Self {
            max_group: 1024,
            queue_depth: 8192,
            recover_interval: Duration::from_secs(1),
            max_recover_interval: Duration::from_secs(8),
        }
    }
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopCause {
    /// The disk under the store is full.
    DiskFull,
    /// The store failed a write for another reason (an I/O error, a read-only disk).
    WriteFailed,
    /// Another node of the cluster holds the write lease; this one forwards writes to it.
    NotLeader,
}

impl StopCause {
    /// A stable name for metrics and scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            StopCause::DiskFull => "disk_full",
            StopCause::WriteFailed => "write_failed",
            StopCause::NotLeader => "not_leader",
        }
    }
}

/// A stopped writer: why, since when, and the store's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterStop {
    /// Why, in a word.
    pub cause: StopCause,
    /// The store's error, for operators: it names files, so it is logged and shown to
    /// administrators, not sent to every caller.
    pub error: String,
    /// When the writer stopped, in milliseconds since the Unix epoch.
    pub since_ms: i64,
}

impl WriterStop {
    fn new(error: &StoreError) -> Self {
        let cause = match error {
            StoreError::DiskFull(_) => StopCause::DiskFull,
            StoreError::NotLeader(_) => StopCause::NotLeader,
            _ => StopCause::WriteFailed,
        };
        Self {
            cause,
            error: error.to_string(),
            since_ms: now_ms(),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl std::fmt::Display for WriterStop {
    // What a caller is told: what happened and what to do, without the store's file names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cause {
            StopCause::DiskFull => f.write_str(
                "writes are stopped: the data folder's disk is full (No space left on device); \
                 writes resume by themselves once space is freed on it; retry then, with the \
                 same idempotency key",
            ),
            StopCause::WriteFailed => f.write_str(
                "writes are stopped: the data folder's disk failed a write; writes resume by \
                 themselves once it takes writes again; retry then, with the same idempotency key",
            ),
            StopCause::NotLeader => f.write_str(
                "this node does not hold the cluster's write lease (a fail-over is under way, or \
                 the call reached a follower directly); retry, with the same idempotency key or \
                 request ID",
            ),
        }
    }
}

thread_local! {
    static WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a sequencer's writer. A store whose reads are round trips
/// (a database) may keep in memory what the writer read and wrote while nothing else can
/// write (a lease), and answer the writer's reads from it.
pub fn on_writer_thread() -> bool {
    WRITER.with(std::cell::Cell::get)
}

/// What an operation hands back to the writer: a callback to run once its group's write has
/// succeeded or failed, or nothing when the operation itself failed (and wrote nothing).
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// An operation, run on the writer with its view, or refused with the reason.
type Run<W> = Box<dyn FnOnce(Result<&mut Txn<'_, W>, StoreError>) -> Option<Completion> + Send>;

/// An operation and the keys it says it will read, loaded for the whole group at once.
struct Job<W> {
    reads: Vec<(Table, Vec<u8>)>,
    run: Run<W>,
}

/// State the writer thread owns and hands to every operation (the audit log's right edge, for
/// one). An operation that fails, and a group whose write fails, leave it as it was before them.
pub trait WriterState: Clone + Send + 'static {
    /// Runs on the writer after a group's batch is durable.
    fn committed(&mut self, _store: &dyn KvStore) {}

    /// Runs on the writer after the store recovered from a failed write: the state is reloaded
    /// from what the store holds, which may include the group whose write failed.
    fn reloaded(&mut self, _store: &dyn KvStore) -> Result<(), StoreError> {
        Ok(())
    }
}

impl WriterState for () {}

/// The view of one operation: reads see everything committed plus the writes of earlier
/// operations in the same group; writes are buffered and kept only if the operation succeeds.
pub struct Txn<'a, W = ()> {
    store: &'a dyn KvStore,
    group: &'a GroupView,
    batch: Batch,
    /// The writer's state; changes are undone if the operation fails.
    pub state: &'a mut W,
}

impl<W> std::fmt::Debug for Txn<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn").field("batch", &self.batch).finish()
    }
}

impl<W> Txn<'_, W> {
    /// The current value of `key`, including writes not yet synced.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // Latest own write wins, then the group's, then the store.
        for op in self.batch.ops().iter().rev() {
            match op {
                Op::Put(t, k, v) if *t == table && k == key => return Ok(Some(v.clone())),
                Op::Delete(t, k) if *t == table && k == key => return Ok(None),
                _ => {}
            }
        }
        if let Some(&i) = self.group.latest.get(&(table, key.to_vec())) {
            return Ok(match &self.group.batch.ops()[i] {
                Op::Put(_, _, v) => Some(v.clone()),
                Op::Delete(..) => None,
            });
        }
        self.store.get(table, key)
    }

    /// The changes this operation buffered so far, in order.
    pub fn ops(&self) -> &[Op] {
        self.batch.ops()
    }

    /// Buffers a put.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.batch.put(table, key, value);
    }

    /// Buffers a delete.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.batch.delete(table, key);
    }
}

/// The writes of a group so far, and where the latest write of each key is in them.
#[derive(Default)]
struct GroupView {
    batch: Batch,
    latest: HashMap<(Table, Vec<u8>), usize>,
}

impl GroupView {
    fn extend(&mut self, batch: Batch) {
        let start = self.batch.ops().len();
        for (i, op) in batch.ops().iter().enumerate() {
            let key = match op {
                Op::Put(t, k, _) | Op::Delete(t, k) => (*t, k.clone()),
            };
            self.latest.insert(key, start + i);
        }
        self.batch.extend(batch);
    }
}

/// Group commits so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct SequencerStats {
    /// Groups written (one WAL sync each).
    pub groups: u64,
    /// Operations acknowledged in them.
    pub operations: u64,
    /// Operations in the latest group.
    pub last_group: u64,
    /// Times the writer stopped after a failed write.
    pub stops: u64,
}

/// What the writer shares with the handle.
#[derive(Debug, Default)]
struct Shared {
    groups: AtomicU64,
    operations: AtomicU64,
    last_group: AtomicU64,
    stops: AtomicU64,
    /// Set while the writer is stopped; `stop` says why.
    stopped: AtomicBool,
    stop: Mutex<Option<WriterStop>>,
}

impl Shared {
    fn stop(&self) -> Option<WriterStop> {
        if !self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_stop(&self, stop: Option<WriterStop>) {
        let stopped = stop.is_some();
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = stop;
        self.stopped.store(stopped, Ordering::SeqCst);
    }
}

/// Handle to the writer thread. Dropping it drains the queue and stops the thread.
pub struct Sequencer<W: WriterState = ()> {
    queue: Option<mpsc::Sender<Job<W>>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl<W: WriterState> std::fmt::Debug for Sequencer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("running", &self.queue.is_some())
            .finish()
    }
}

impl Sequencer<()> {
    /// Starts the writer thread over `store`, with no writer state.
    pub fn start(store: Arc<dyn KvStore>, opts: SequencerOptions) -> Self {
        Self::with_state(store, opts, ())
    }
}

impl<W: WriterState> Sequencer<W> {
    /// Starts the writer thread over `store`; `state` is handed to every operation.
    pub fn with_state(store: Arc<dyn KvStore>, opts: SequencerOptions, state: W) -> Self {
        let (queue, rx) = mpsc::channel(opts.queue_depth.max(1));
        let shared = Arc::new(Shared::default());
        // Known before the first call: a follower's writes are refused (forwarded) at once.
        if let Err(e) = store.writable() {
            shared.set_stop(Some(WriterStop::new(&e)));
        }
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("certseal-sequencer".into())
            .spawn(move || run(store, rx, &opts, state, &s))
            .expect("spawning the sequencer thread");
        Self {
            queue: Some(queue),
            writer: Some(writer),
            shared,
        }
    }

    /// Group commits so far.
    pub fn stats(&self) -> SequencerStats {
        let s = &self.shared;
        SequencerStats {
            groups: s.groups.load(Ordering::Relaxed),
            operations: s.operations.load(Ordering::Relaxed),
            last_group: s.last_group.load(Ordering::Relaxed),
            stops: s.stops.load(Ordering::Relaxed),
        }
    }

    /// Why the writer is stopped, while it is.
    pub fn stopped(&self) -> Option<WriterStop> {
        self.shared.stop()
    }

    /// What a caller whose operation never ran is told.
    fn refused(&self) -> StoreError {
        self.stopped()
            .map_or(StoreError::Closed, StoreError::WritesStopped)
    }

    /// Runs `op` on the writer and resolves once its writes are durable (or it failed).
    ///
    /// `op` must be quick and must not block: every other write waits for it. Do signing,
    /// parsing and validation before submitting.
    pub async fn submit<T, E, F>(&self, op: F) -> Result<T, E>
    where
        F: FnOnce(&mut Txn<'_, W>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.submit_reading(Vec::new(), op).await
    }

    /// Like [`Sequencer::submit`], for an operation that will read `reads` (keys it cannot
    /// know the writer holds, such as one that should be absent): the writer asks the store
    /// to [`KvStore::prefetch`] them together with the other operations' before it runs the
    /// group, so a networked store reads them in one round trip, not one per operation.
    pub async fn submit_reading<T, E, F>(&self, reads: Vec<(Table, Vec<u8>)>, op: F) -> Result<T, E>
    where
        F: FnOnce(&mut Txn<'_, W>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if let Some(stop) = self.stopped() {
            return Err(StoreError::WritesStopped(stop).into());
        }
        let (done, result) = oneshot::channel::<Result<T, E>>();
        let run: Run<W> = Box::new(move |txn| {
            let txn = match txn {
                Ok(txn) => txn,
                Err(refused) => {
                    let _ = done.send(Err(refused.into()));
                    return None;
                }
            };
            match op(txn) {
                Ok(value) => Some(Box::new(move |written: Result<(), StoreError>| {
                    let _ = done.send(written.map(|()| value).map_err(E::from));
                }) as Completion),
                Err(e) => {
                    let _ = done.send(Err(e));
                    None
                }
            }
        });
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue
            .send(Job { reads, run })
            .await
            .map_err(|_| self.refused())?;
        result.await.map_err(|_| self.refused())?
    }
}

impl<W: WriterState> Drop for Sequencer<W> {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what was queued, then exit.
        self.queue.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn run<W: WriterState>(
    store: Arc<dyn KvStore>,
    mut rx: mpsc::Receiver<Job<W>>,
    opts: &SequencerOptions,
    mut state: W,
    shared: &Shared,
) {
    WRITER.with(|w| w.set(true));
    // A cluster follower starts stopped, and takes writes once it takes the lease.
    if let Some(stop) = shared.stop()
        && !recover(store.as_ref(), &mut rx, opts, &mut state, shared, stop)
    {
        return;
    }
    while let Some(stop) = write_groups(store.as_ref(), &mut rx, opts, &mut state, shared) {
        if !recover(store.as_ref(), &mut rx, opts, &mut state, shared, stop) {
            return;
        }
    }
}

/// Writes groups until the queue closes (`None`) or a write fails (why).
fn write_groups<W: WriterState>(
    store: &dyn KvStore,
    rx: &mut mpsc::Receiver<Job<W>>,
    opts: &SequencerOptions,
    state: &mut W,
    shared: &Shared,
) -> Option<WriterStop> {
    let max_group = opts.max_group.max(1);
    let mut pending: Vec<Completion> = Vec::new();
    let mut group = GroupView::default();
    while let Some(first) = rx.blocking_recv() {
        let group_start = state.clone();
        // Every operation taken counts, failed ones too, so a flood of refusals cannot hold
        // back the acknowledgement of the operations already in the group.
        let mut taken = 0usize;
        let mut ready = vec![first];
        // Take whatever else is already waiting, and again after running it, until nothing
        // waits: that is the group. Each round's reads are loaded before it runs.
        loop {
            while taken + ready.len() < max_group {
                match rx.try_recv() {
                    Ok(job) => ready.push(job),
                    Err(_) => break,
                }
            }
            if ready.is_empty() {
                break;
            }
            prefetch(store, &group, &ready);
            for job in ready.drain(..) {
                run_one(job, store, &mut group, state, &mut pending);
                taken += 1;
            }
        }
        if pending.is_empty() {
            continue;
        }
        let written = if group.batch.is_empty() {
            Ok(())
        } else {
            store.write(&group.batch, true)
        };
        if let Err(e) = written {
            // A failed synced write may still have reached the WAL, so what is on disk is no
            // longer known: stop taking writes rather than build on a guess, until the store
            // is recovered and the state reloaded from it.
            let stop = WriterStop::new(&e);
            tracing::error!(
                error = %e,
                operations = pending.len(),
                "group commit failed: writes are stopped until the store can write again"
            );
            *state = group_start;
            shared.stops.fetch_add(1, Ordering::Relaxed);
            // Set before the callers hear, so that what they do next is refused at once.
            shared.set_stop(Some(stop.clone()));
            for c in pending.drain(..) {
                c(Err(StoreError::WritesStopped(stop.clone())));
            }
            return Some(stop);
        }
        // The hook must not take the writer down with it.
        let hook =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.committed(store)));
        if hook.is_err() {
            tracing::error!("the post-commit hook panicked");
        }
        shared.groups.fetch_add(1, Ordering::Relaxed);
        shared
            .operations
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        shared
            .last_group
            .store(pending.len() as u64, Ordering::Relaxed);
        tracing::trace!(
            operations = pending.len(),
            changes = group.batch.ops().len(),
            "group committed"
        );
        for c in pending.drain(..) {
            c(Ok(()));
        }
        group = GroupView::default();
    }
    None
}

/// Asks the store to load, in one go, the keys a round of operations will read that the group
/// has not written.
fn prefetch<W>(store: &dyn KvStore, group: &GroupView, jobs: &[Job<W>]) {
    let mut keys: Vec<(Table, Vec<u8>)> = jobs
        .iter()
        .flat_map(|j| j.reads.iter())
        .filter(|k| !group.latest.contains_key(*k))
        .cloned()
        .collect();
    if keys.is_empty() {
        return;
    }
    keys.sort();
    keys.dedup();
    store.prefetch(&keys);
}

/// Runs one operation against the group so far; keeps its writes and state if it succeeds.
fn run_one<W: WriterState>(
    job: Job<W>,
    store: &dyn KvStore,
    group: &mut GroupView,
    state: &mut W,
    pending: &mut Vec<Completion>,
) {
    let before = state.clone();
    let mut txn = Txn {
        store,
        group,
        batch: Batch::new(),
        state: &mut *state,
    };
    // A panicking operation fails alone (its caller sees the store as closed for it); the
    // writer and the rest of the group go on.
    let completion =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.run)(Ok(&mut txn)))) {
            Ok(c) => c,
            Err(_) => {
                tracing::error!("an operation panicked in the sequencer; nothing of it is written");
                txn.batch = Batch::new();
                None
            }
        };
    let batch = txn.batch;
    match completion {
        Some(c) => {
            group.extend(batch);
            pending.push(c);
        }
        None => *state = before,
    }
}

/// While stopped: refuses every operation, and asks the store to recover, waiting longer after
/// each refusal. Returns whether writes resume (false: the sequencer was dropped).
fn recover<W: WriterState>(
    store: &dyn KvStore,
    rx: &mut mpsc::Receiver<Job<W>>,
    opts: &SequencerOptions,
    state: &mut W,
    shared: &Shared,
    mut stop: WriterStop,
) -> bool {
    // Short enough that a refusal and a shutdown are prompt.
    const TICK: Duration = Duration::from_millis(50);
    let mut wait = opts.recover_interval;
    let mut next = Instant::now() + wait;
    let mut attempts = 0u64;
    loop {
        loop {
            match rx.try_recv() {
                Ok(job) => {
                    let _ = (job.run)(Err(StoreError::WritesStopped(stop.clone())));
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        let now = Instant::now();
        if now < next {
            std::thread::sleep(TICK.min(next - now));
            continue;
        }
        attempts += 1;
        let recovered = store.recover().and_then(|()| state.reloaded(store));
        match recovered {
            Ok(()) => {
                shared.set_stop(None);
                tracing::info!(
                    attempts,
                    stopped_for_s = (now_ms() - stop.since_ms) / 1000,
                    "the store takes writes again: writes resume"
                );
                return true;
            }
            Err(e) => {
                wait = (wait * 2).min(opts.max_recover_interval.max(opts.recover_interval));
                next = Instant::now() + wait;
                // A follower asks for the lease all the time; that is not news. A writer that
                // stopped for another cause and finds another node leading now follows it.
                if matches!(e, StoreError::NotLeader(_)) {
                    if stop.cause != StopCause::NotLeader {
                        tracing::info!(error = %e, "another node leads now: this one follows");
                        stop = WriterStop::new(&e);
                        shared.set_stop(Some(stop.clone()));
                    }
                    tracing::debug!(attempts, error = %e, "still a follower");
                    continue;
                }
                tracing::warn!(
                    attempts,
                    error = %e,
                    retry_in_s = wait.as_secs_f64(),
                    "writes are still stopped: the store cannot write yet"
                );
            }
        }
    }
}
