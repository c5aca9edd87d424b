//! The conformance suite every [`KvStore`] implementation must pass, and the sequencer with it.
//!
//! A backend's tests call [`run`] with a function that opens its store in a folder; each case
//! gets a folder of its own under `base`, and reopening the same folder must find the data.

use std::path::Path;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{
    Batch, Direction, KvStore, Page, Read, Sequencer, SequencerOptions, StopCause, StoreError,
    Table, WriterState,
};

/// Opens (or reopens) a store in a folder.
pub type Opener<'a> = &'a dyn Fn(&Path) -> Arc<dyn KvStore>;

/// One conformance case: it gets the opener and an empty folder of its own.
pub type Case = fn(Opener<'_>, &Path);

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("put_get_delete", put_get_delete),
    ("batch_is_ordered", batch_is_ordered),
    ("scan_forward_pages", scan_forward_pages),
    ("scan_reverse_pages", scan_reverse_pages),
    ("scan_stays_in_prefix", scan_stays_in_prefix),
    ("snapshot_is_isolated", snapshot_is_isolated),
    ("data_survives_reopen", data_survives_reopen),
    (
        "sequencer_serialises_check_and_write",
        sequencer_serialises_check_and_write,
    ),
    (
        "sequencer_failed_operation_writes_nothing",
        sequencer_failed_operation_writes_nothing,
    ),
    (
        "sequencer_acknowledged_is_durable",
        sequencer_acknowledged_is_durable,
    ),
    (
        "sequencer_state_follows_success_only",
        sequencer_state_follows_success_only,
    ),
    (
        "recover_keeps_data_and_waits_for_snapshots",
        recover_keeps_data_and_waits_for_snapshots,
    ),
    (
        "sequencer_stops_on_a_failed_write_and_resumes",
        sequencer_stops_on_a_failed_write_and_resumes,
    ),
    (
        "sequencer_loads_a_groups_reads_at_once",
        sequencer_loads_a_groups_reads_at_once,
    ),
];

/// Runs every case, each in its own subfolder of `base`; panics naming the case that failed.
pub fn run(open: Opener<'_>, base: &Path) {
    for (name, case) in CASES {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).expect("creating a case folder");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(open, &dir)));
        if let Err(p) = outcome {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("store conformance case '{name}' failed: {msg}");
        }
    }
}

fn key(prefix: &[u8], n: u64) -> Vec<u8> {
    [prefix, &n.to_be_bytes()].concat()
}

fn put_get_delete(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    let mut b = Batch::new();
    b.put(Table::Departments, b"k".to_vec(), b"dept".to_vec());
    b.put(Table::Templates, b"k".to_vec(), b"tmpl".to_vec());
    s.write(&b, true).unwrap();
    assert_eq!(s.get(Table::Departments, b"k").unwrap().unwrap(), b"dept");
    assert_eq!(
        s.get(Table::Templates, b"k").unwrap().unwrap(),
        b"tmpl",
        "tables are separate"
    );
    assert_eq!(s.get(Table::Meta, b"k").unwrap(), None);
    let mut b = Batch::new();
    b.delete(Table::Departments, b"k".to_vec());
    s.write(&b, true).unwrap();
    assert_eq!(s.get(Table::Departments, b"k").unwrap(), None);
    assert!(s.get(Table::Templates, b"k").unwrap().is_some());
}

fn batch_is_ordered(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    let mut b = Batch::new();
    b.put(Table::Meta, b"a".to_vec(), b"1".to_vec());
    b.delete(Table::Meta, b"a".to_vec());
    b.put(Table::Meta, b"a".to_vec(), b"2".to_vec());
    b.put(Table::Meta, b"b".to_vec(), b"1".to_vec());
    b.delete(Table::Meta, b"b".to_vec());
    s.write(&b, false).unwrap();
    assert_eq!(s.get(Table::Meta, b"a").unwrap().unwrap(), b"2");
    assert_eq!(s.get(Table::Meta, b"b").unwrap(), None);
}

fn fill(s: &dyn KvStore, prefix: &[u8], n: u64) {
    let mut b = Batch::new();
    for i in 0..n {
        b.put(Table::Templates, key(prefix, i), i.to_be_bytes().to_vec());
    }
    s.write(&b, true).unwrap();
}

fn collect_pages(s: &dyn KvStore, prefix: &[u8], limit: usize, dir: Direction) -> Vec<u64> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = s
            .scan(Table::Templates, prefix, after.as_deref(), limit, dir)
            .unwrap();
        assert!(page.items.len() <= limit);
        for (k, v) in &page.items {
            assert!(k.starts_with(prefix));
            out.push(u64::from_be_bytes(v.as_slice().try_into().unwrap()));
        }
        if !page.more {
            return out;
        }
        assert_eq!(page.items.len(), limit, "a page with more after it is full");
        after = page.items.last().map(|(k, _)| k.clone());
    }
}

fn scan_forward_pages(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    fill(s.as_ref(), b"p", 10);
    assert_eq!(
        collect_pages(s.as_ref(), b"p", 3, Direction::Forward),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        collect_pages(s.as_ref(), b"p", 10, Direction::Forward).len(),
        10
    );
    let page = s
        .scan(Table::Templates, b"p", None, 10, Direction::Forward)
        .unwrap();
    assert!(!page.more, "an exactly full last page says no more");
    let empty = s
        .scan(Table::Templates, b"q", None, 10, Direction::Forward)
        .unwrap();
    assert!(empty.items.is_empty() && !empty.more);
}

fn scan_reverse_pages(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    fill(s.as_ref(), b"p", 10);
    fill(s.as_ref(), b"q", 3);
    assert_eq!(
        collect_pages(s.as_ref(), b"p", 4, Direction::Reverse),
        (0..10).rev().collect::<Vec<_>>()
    );
}

fn scan_stays_in_prefix(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    fill(s.as_ref(), &[0x01, 0xff], 3);
    fill(s.as_ref(), &[0x02], 3);
    fill(s.as_ref(), &[0x01, 0xfe], 3);
    for d in [Direction::Forward, Direction::Reverse] {
        assert_eq!(collect_pages(s.as_ref(), &[0x01, 0xff], 2, d).len(), 3);
        assert_eq!(collect_pages(s.as_ref(), &[0x01], 2, d).len(), 6);
        assert_eq!(collect_pages(s.as_ref(), &[], 5, d).len(), 9);
    }
}

fn snapshot_is_isolated(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    fill(s.as_ref(), b"p", 2);
    let snap = s.snapshot();
    fill(s.as_ref(), b"p", 5);
    let mut b = Batch::new();
    b.delete(Table::Templates, key(b"p", 0));
    s.write(&b, true).unwrap();
    assert!(snap.get(Table::Templates, &key(b"p", 0)).unwrap().is_some());
    assert!(snap.get(Table::Templates, &key(b"p", 3)).unwrap().is_none());
    let page = snap
        .scan(Table::Templates, b"p", None, 100, Direction::Forward)
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        s.scan(Table::Templates, b"p", None, 100, Direction::Forward)
            .unwrap()
            .items
            .len(),
        4
    );
}

fn data_survives_reopen(open: Opener<'_>, dir: &Path) {
    {
        let s = open(dir);
        fill(s.as_ref(), b"p", 100);
    }
    let s = open(dir);
    assert_eq!(
        collect_pages(s.as_ref(), b"p", 7, Direction::Forward),
        (0..100).collect::<Vec<_>>()
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[derive(Debug)]
enum CaseError {
    Exists,
    Refused,
    Store(StoreError),
}

impl From<StoreError> for CaseError {
    fn from(e: StoreError) -> Self {
        CaseError::Store(e)
    }
}

fn sequencer_serialises_check_and_write(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    let seq = Arc::new(Sequencer::start(s.clone(), SequencerOptions::default()));
    runtime().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let seq = seq.clone();
            tasks.push(tokio::spawn(async move {
                // Register-if-absent on one key, and a read-modify-write counter.
                seq.submit(move |txn| {
                    let n = txn
                        .get(Table::Meta, b"counter")?
                        .map(|v| u64::from_be_bytes(v.try_into().unwrap()))
                        .unwrap_or(0);
                    txn.put(
                        Table::Meta,
                        b"counter".to_vec(),
                        (n + 1).to_be_bytes().to_vec(),
                    );
                    Ok::<_, CaseError>(())
                })
                .await
                .unwrap();
                seq.submit(move |txn| {
                    if txn.get(Table::Departments, b"only-once")?.is_some() {
                        return Err(CaseError::Exists);
                    }
                    txn.put(
                        Table::Departments,
                        b"only-once".to_vec(),
                        i.to_be_bytes().to_vec(),
                    );
                    Ok(())
                })
                .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => won += 1,
                Err(CaseError::Exists) => {}
                Err(CaseError::Store(e)) => panic!("store failed: {e}"),
                Err(CaseError::Refused) => panic!("unexpected refusal"),
            }
        }
        assert_eq!(won, 1, "exactly one register-if-absent succeeds");
    });
    let n = s.get(Table::Meta, b"counter").unwrap().unwrap();
    assert_eq!(u64::from_be_bytes(n.try_into().unwrap()), 200);
}

fn sequencer_failed_operation_writes_nothing(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    let seq = Sequencer::start(s.clone(), SequencerOptions::default());
    runtime().block_on(async {
        let r = seq
            .submit(|txn| {
                txn.put(Table::Meta, b"half".to_vec(), b"done".to_vec());
                Err::<(), _>(CaseError::Refused)
            })
            .await;
        assert!(matches!(r, Err(CaseError::Refused)));
        seq.submit(|txn| {
            assert_eq!(
                txn.get(Table::Meta, b"half")?,
                None,
                "a failed op leaves no trace"
            );
            txn.put(Table::Meta, b"next".to_vec(), b"ok".to_vec());
            Ok::<_, CaseError>(())
        })
        .await
        .unwrap();
    });
    assert_eq!(s.get(Table::Meta, b"half").unwrap(), None);
    assert_eq!(s.get(Table::Meta, b"next").unwrap().unwrap(), b"ok");
}

fn sequencer_acknowledged_is_durable(open: Opener<'_>, dir: &Path) {
    {
        let s = open(dir);
        let seq = Sequencer::start(s, SequencerOptions::default());
        runtime().block_on(async {
            for i in 0..50u64 {
                seq.submit(move |txn| {
                    txn.put(Table::Departments, key(b"d", i), b"x".to_vec());
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
            }
        });
    }
    let s = open(dir);
    assert_eq!(collect_departments(s.as_ref()), 50);
}

fn collect_departments(s: &dyn KvStore) -> usize {
    s.scan(Table::Departments, b"d", None, 1000, Direction::Forward)
        .unwrap()
        .items
        .len()
}

#[derive(Clone, Default)]
struct Counter {
    n: u64,
    committed: Arc<AtomicU64>,
}

impl WriterState for Counter {
    fn committed(&mut self, _store: &dyn KvStore) {
        self.committed.store(self.n, Ordering::SeqCst);
    }
}

fn sequencer_state_follows_success_only(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    let counter = Counter::default();
    let committed = counter.committed.clone();
    let seq = Arc::new(Sequencer::with_state(
        s,
        SequencerOptions::default(),
        counter,
    ));
    runtime().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..100u64 {
            let seq = seq.clone();
            tasks.push(tokio::spawn(async move {
                seq.submit(move |txn| {
                    // Every third operation changes the state, then fails: the change is undone.
                    txn.state.n += 1;
                    txn.put(Table::Meta, key(b"n", i), b"x".to_vec());
                    if i % 3 == 0 {
                        return Err(CaseError::Refused);
                    }
                    Ok(txn.state.n)
                })
                .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 66);
        // One more, to read the state after every group has committed.
        let n = seq
            .submit(|txn| Ok::<_, CaseError>(txn.state.n))
            .await
            .unwrap();
        assert_eq!(n, 66, "failed operations left no trace in the state");
    });
    assert_eq!(
        committed.load(Ordering::SeqCst),
        66,
        "the hook saw each durable group"
    );
}

fn recover_keeps_data_and_waits_for_snapshots(open: Opener<'_>, dir: &Path) {
    let s = open(dir);
    fill(s.as_ref(), b"r", 10);
    s.recover().expect("a store that can write recovers");
    assert_eq!(
        collect_pages(s.as_ref(), b"r", 3, Direction::Forward),
        (0..10).collect::<Vec<_>>()
    );
    // A snapshot held elsewhere while the store recovers, whose thread also reads the store
    // itself (as a check reads seals beside its snapshot): neither waits for the other, and
    // the store is whole afterwards.
    let (taken, take) = std::sync::mpsc::channel();
    let s = s.as_ref();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let snap = s.snapshot();
            taken.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let direct = s.get(Table::Templates, &key(b"r", 4)).unwrap();
            (snap.get(Table::Templates, &key(b"r", 3)).unwrap(), direct)
        });
        take.recv().unwrap();
        // A reopen that waited for the reader would give up, and say so.
        s.recover().expect("recovers once the snapshot is dropped");
        let (seen, direct) = reader.join().unwrap();
        assert!(seen.is_some() && direct.is_some());
    });
    fill(s, b"s", 5);
    assert_eq!(collect_pages(s, b"s", 10, Direction::Forward).len(), 5);
}

type Keys = Vec<(Table, Vec<u8>)>;

/// A store around another whose writes fail with a full disk while `full` is set, and which
/// records what the writer asks it to prefetch.
#[derive(Debug)]
struct FillingStore {
    inner: Arc<dyn KvStore>,
    full: AtomicBool,
    recoveries: AtomicU64,
    prefetched: std::sync::Mutex<Vec<Keys>>,
}

impl FillingStore {
    fn new(inner: Arc<dyn KvStore>) -> Self {
        Self {
            inner,
            full: AtomicBool::new(false),
            recoveries: AtomicU64::new(0),
            prefetched: Default::default(),
        }
    }
}

impl FillingStore {
    fn full(&self) -> Result<(), StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StoreError::DiskFull("No space left on device".into()));
        }
        Ok(())
    }
}

impl Read for FillingStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        self.inner.scan(table, prefix, after, limit, direction)
    }
}

impl KvStore for FillingStore {
    fn snapshot(&self) -> Box<dyn Read + '_> {
        self.inner.snapshot()
    }

    fn write(&self, batch: &Batch, durable: bool) -> Result<(), StoreError> {
        self.full()?;
        self.inner.write(batch, durable)
    }

    fn recover(&self) -> Result<(), StoreError> {
        self.full()?;
        self.recoveries.fetch_add(1, Ordering::SeqCst);
        self.inner.recover()
    }

    fn writable(&self) -> Result<(), StoreError> {
        self.inner.writable()
    }

    fn prefetch(&self, keys: &[(Table, Vec<u8>)]) {
        self.prefetched.lock().unwrap().push(keys.to_vec());
        self.inner.prefetch(keys);
    }
}

/// A state the writer reloads from the store: the number of stored items.
#[derive(Clone, Default)]
struct Stored {
    n: u64,
    reloads: Arc<AtomicU64>,
}

impl WriterState for Stored {
    fn reloaded(&mut self, store: &dyn KvStore) -> Result<(), StoreError> {
        self.n = store
            .scan(Table::Departments, b"d", None, 1000, Direction::Forward)?
            .items
            .len() as u64;
        self.reloads.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn sequencer_stops_on_a_failed_write_and_resumes(open: Opener<'_>, dir: &Path) {
    let store = Arc::new(FillingStore::new(open(dir)));
    let state = Stored::default();
    let reloads = state.reloads.clone();
    let opts = SequencerOptions {
        recover_interval: Duration::from_millis(20),
        max_recover_interval: Duration::from_millis(40),
        ..SequencerOptions::default()
    };
    let seq = Sequencer::with_state(store.clone(), opts, state);
    async fn add(seq: &Sequencer<Stored>) -> Result<u64, StoreError> {
        seq.submit(|txn| {
            let n = txn.state.n;
            txn.put(Table::Departments, key(b"d", n), b"x".to_vec());
            txn.state.n += 1;
            Ok::<_, StoreError>(n)
        })
        .await
    }
    runtime().block_on(async {
        for i in 0..3 {
            assert_eq!(add(&seq).await.unwrap(), i);
        }
        store.full.store(true, Ordering::SeqCst);
        let refused = add(&seq).await.unwrap_err();
        let StoreError::WritesStopped(stop) = &refused else {
            panic!("{refused:?}");
        };
        assert_eq!(stop.cause, StopCause::DiskFull);
        assert!(refused.to_string().contains("disk is full"), "{refused}");
        assert_eq!(seq.stopped().as_ref(), Some(stop));
        assert_eq!(seq.stats().stops, 1);
        // Refused at once while the store cannot write, and asked again and again.
        assert!(matches!(add(&seq).await, Err(StoreError::WritesStopped(_))));
        store.full.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        while seq.stopped().is_some() {
            assert!(Instant::now() < deadline, "writes did not resume");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.recoveries.load(Ordering::SeqCst), 1);
        assert_eq!(reloads.load(Ordering::SeqCst), 1);
        // The state was reloaded from the store: the failed write is not counted.
        assert_eq!(add(&seq).await.unwrap(), 3);
    });
    assert_eq!(collect_departments(store.as_ref()), 4);
}

/// The reads that operations declare are asked of the store once for all the operations
/// waiting together, and what the operations then read is what is stored, or what an earlier
/// operation of the same group wrote.
fn sequencer_loads_a_groups_reads_at_once(open: Opener<'_>, dir: &Path) {
    let store = Arc::new(FillingStore::new(open(dir)));
    fill(store.as_ref(), b"p", 5);
    let seq = Arc::new(Sequencer::start(store.clone(), SequencerOptions::default()));
    let rt = runtime();
    // Hold the writer in one operation while the others queue behind it.
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let held = {
        let seq = seq.clone();
        rt.spawn(async move {
            seq.submit(move |_txn| {
                started_tx.send(()).unwrap();
                gate.recv().unwrap();
                Ok::<_, StoreError>(())
            })
            .await
        })
    };
    started.recv().unwrap();
    let (queued_tx, queued) = std::sync::mpsc::channel::<()>();
    let mut ops = Vec::new();
    // Operation i reads p<i> (stored for i < 5, absent after) and writes q<i>; operation 9
    // also reads q0, which operation 0 writes in the same group.
    for i in 0..10u64 {
        let seq = seq.clone();
        let queued_tx = queued_tx.clone();
        let mut reads = vec![(Table::Templates, key(b"p", i))];
        if i == 9 {
            reads.push((Table::Templates, key(b"q", 0)));
        }
        ops.push(rt.spawn(async move {
            let op = seq.submit_reading(reads, move |txn| {
                let p = txn.get(Table::Templates, &key(b"p", i))?;
                let q0 = txn.get(Table::Templates, &key(b"q", 0))?;
                txn.put(Table::Templates, key(b"q", i), b"x".to_vec());
                Ok::<_, StoreError>((p, q0))
            });
            // Queued once the first poll returns pending.
            let mut op = std::pin::pin!(op);
            let first = futures_poll_once(op.as_mut()).await;
            queued_tx.send(()).unwrap();
            match first {
                Some(done) => done,
                None => op.await,
            }
        }));
        // One at a time, so the queue holds them in order.
        queued.recv().unwrap();
    }
    release.send(()).unwrap();
    rt.block_on(held).unwrap().unwrap();
    for (i, op) in ops.into_iter().enumerate() {
        let (p, q0) = rt.block_on(op).unwrap().unwrap();
        let i = i as u64;
        let expected = (i < 5).then(|| i.to_be_bytes().to_vec());
        assert_eq!(p, expected, "operation {i} reads p{i} as stored");
        if i > 0 {
            assert_eq!(q0.as_deref(), Some(&b"x"[..]), "operation {i} sees q0");
        }
    }
    let asked = store.prefetched.lock().unwrap().clone();
    assert_eq!(
        asked.len(),
        1,
        "one request for the whole group's reads: {asked:?}"
    );
    assert_eq!(asked[0].len(), 11, "every declared key once: {asked:?}");
    drop(seq);
    assert_eq!(
        store
            .scan(Table::Templates, b"q", None, 100, Direction::Forward)
            .unwrap()
            .items
            .len(),
        10
    );
}

/// Polls `f` once: its output if it is ready, or `None` (it may be polled again later).
async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
    let mut f = f;
    std::future::poll_fn(move |cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
