//! The single writer: operations from many concurrent requests run one at a time on one
//! thread, each against the state its predecessors left, and a whole group of them is written
//! as one batch with one WAL sync before any of them is acknowledged.
//!
//! Running check-and-write on one thread is what makes "register unless it exists" race-free
//! without locks, and it is where the audit log will take its sequence numbers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::{Batch, KvStore, Op, StoreError, Table};

/// Tuning of the sequencer.
#[derive(Debug, Clone)]
pub struct SequencerOptions {
    /// Most operations written in one batch (one WAL sync).
    pub max_group: usize,
    /// Operations that may wait for the writer before submitters are slowed down.
    pub queue_depth: usize,
}

impl Default for SequencerOptions {
    fn default() -> Self {
        Self {
            max_group: 1024,
            queue_depth: 8192,
        }
    }
}

/// What an operation hands back to the writer: a callback to run once its group's write has
/// succeeded or failed, or nothing when the operation itself failed (and wrote nothing).
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job<W> = Box<dyn FnOnce(&mut Txn<'_, W>) -> Option<Completion> + Send>;

/// State the writer thread owns and hands to every operation (the audit log's right edge, for
/// one). An operation that fails, and a group whose write fails, leave it as it was before them.
pub trait WriterState: Clone + Send + 'static {
    /// Runs on the writer after a group's batch is durable.
    fn committed(&mut self, _store: &dyn KvStore) {}
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
}

#[derive(Debug, Default)]
struct Counters {
    groups: AtomicU64,
    operations: AtomicU64,
    last_group: AtomicU64,
}

/// Handle to the writer thread. Dropping it drains the queue and stops the thread.
pub struct Sequencer<W: WriterState = ()> {
    queue: Option<mpsc::Sender<Job<W>>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
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
        let max_group = opts.max_group.max(1);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let writer = std::thread::Builder::new()
            .name("certseal-sequencer".into())
            .spawn(move || run(store, rx, max_group, state, &c))
            .expect("spawning the sequencer thread");
        Self {
            queue: Some(queue),
            writer: Some(writer),
            counters,
        }
    }

    /// Group commits so far.
    pub fn stats(&self) -> SequencerStats {
        SequencerStats {
            groups: self.counters.groups.load(Ordering::Relaxed),
            operations: self.counters.operations.load(Ordering::Relaxed),
            last_group: self.counters.last_group.load(Ordering::Relaxed),
        }
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
        let (done, result) = oneshot::channel::<Result<T, E>>();
        let job: Job<W> = Box::new(move |txn: &mut Txn<'_, W>| match op(txn) {
            Ok(value) => Some(Box::new(move |written: Result<(), StoreError>| {
                let _ = done.send(written.map(|()| value).map_err(E::from));
            }) as Completion),
            Err(e) => {
                let _ = done.send(Err(e));
                None
            }
        });
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue.send(job).await.map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
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
    max_group: usize,
    mut state: W,
    counters: &Counters,
) {
    let mut pending: Vec<Completion> = Vec::new();
    let mut group = GroupView::default();
    while let Some(first) = rx.blocking_recv() {
        let group_start = state.clone();
        let mut next = Some(first);
        // Every operation taken counts, failed ones too, so a flood of refusals cannot hold
        // back the acknowledgement of the operations already in the group.
        let mut taken = 0usize;
        // Take whatever else is already waiting: that is the group.
        while let Some(job) = next.take() {
            let before = state.clone();
            let mut txn = Txn {
                store: store.as_ref(),
                group: &group,
                batch: Batch::new(),
                state: &mut state,
            };
            // A panicking operation fails alone (its caller sees the store as closed for it);
            // the writer and the rest of the group go on.
            let completion =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut txn))) {
                    Ok(c) => c,
                    Err(_) => {
                        tracing::error!(
                            "an operation panicked in the sequencer; nothing of it is written"
                        );
                        txn.batch = Batch::new();
                        None
                    }
                };
            let batch = txn.batch;
            if completion.is_none() {
                state = before;
            }
            if let Some(c) = completion {
                group.extend(batch);
                pending.push(c);
            }
            taken += 1;
            if taken < max_group {
                next = rx.try_recv().ok();
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
        let failed = written.is_err();
        if let Err(e) = &written {
            tracing::error!(error = %e, operations = pending.len(), "group commit failed");
            state = group_start;
        } else {
            // The hook must not take the writer down with it.
            let hook = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                state.committed(store.as_ref())
            }));
            if hook.is_err() {
                tracing::error!("the post-commit hook panicked");
            }
            counters.groups.fetch_add(1, Ordering::Relaxed);
            counters
                .operations
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            counters
                .last_group
                .store(pending.len() as u64, Ordering::Relaxed);
            tracing::trace!(
                operations = pending.len(),
                changes = group.batch.ops().len(),
                "group committed"
            );
        }
        let msg = written.map_err(|e| e.to_string());
        for c in pending.drain(..) {
            c(msg.clone().map_err(StoreError::Backend));
        }
        if failed {
            // A failed synced write may still have reached the WAL, so what is on disk is no
            // longer known: stop taking writes rather than build on a guess. A restart
            // recovers from the WAL and the stored log.
            tracing::error!(
                "the writer stopped after a failed write; restart the server to resume writes"
            );
            rx.close();
            while let Ok(job) = rx.try_recv() {
                drop(job); // their callers see the store as closed
            }
            return;
        }
        group = GroupView::default();
    }
}
