//! The public page's picture decoders: a few threads of their own, fed from a bounded queue.
//! Reading a QR picture is CPU work that cannot be interrupted once started; a picture that
//! finds every decoder busy and the queue full is refused at once (the page answers 503), not
//! kept waiting. The threads are detached: neither the runtime's shutdown nor the process's
//! exit waits for a picture, and a picture whose requester has gone is skipped, not read.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A pool of decoder threads with a bounded queue. Dropping it lets each thread finish its
/// picture and end.
#[derive(Debug)]
pub struct Decoders {
    queue: SyncSender<Job>,
    /// Jobs in the queue, not yet taken by a decoder.
    waiting: Arc<AtomicUsize>,
    threads: usize,
    queued: usize,
}

/// Every decoder is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {threads} picture decoders are busy and {queued} pictures are waiting")]
pub struct Busy {
    /// Decoder threads.
    pub threads: usize,
    /// Pictures that may wait.
    pub queued: usize,
}

impl Decoders {
    /// Starts `threads` decoder threads taking work from a queue of `queued` (at least one of
    /// each: with no queue, a decoder between two pictures would refuse the next).
    pub fn new(threads: usize, queued: usize) -> std::io::Result<Self> {
        let (threads, queued) = (threads.max(1), queued.max(1));
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Job>(queued);
        let jobs = Arc::new(Mutex::new(jobs));
        let waiting = Arc::new(AtomicUsize::new(0));
        for n in 0..threads {
            let (jobs, waiting) = (jobs.clone(), waiting.clone());
            // Detached: the handle is dropped, so nothing joins it at shutdown.
            std::thread::Builder::new()
                .name(format!("certseal-decoder-{n}"))
                .spawn(move || work(&jobs, &waiting))?;
        }
        Ok(Self {
            queue,
            waiting,
            threads,
            queued,
        })
    }

    /// Queues `job` if a decoder or a place in the queue is free; its result arrives on the
    /// receiver. A job whose receiver is dropped before a decoder takes it is not run; one
    /// that panics drops its sender.
    pub fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return;
            }
            if let Ok(out) = std::panic::catch_unwind(AssertUnwindSafe(job)) {
                let _ = tx.send(out);
            }
        });
        // Counted before it is sent, so a decoder never takes it first and counts below zero.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(Busy {
                    threads: self.threads,
                    queued: self.queued,
                })
            }
        }
    }

    /// Pictures waiting for a decoder now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// A decoder thread: takes jobs until the pool is dropped.
fn work(jobs: &Mutex<Receiver<Job>>, waiting: &AtomicUsize) {
    loop {
        let job = match jobs.lock() {
            Ok(j) => j.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                waiting.fetch_sub(1, Ordering::SeqCst);
                job();
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// A job that says when a decoder took it and then waits for `release`.
    fn blocking(
        pool: &Decoders,
        release: Receiver<()>,
    ) -> (Receiver<()>, tokio::sync::oneshot::Receiver<u32>) {
        let (started_tx, started) = channel();
        let rx = pool
            .submit(move || {
                let _ = started_tx.send(());
                let _ = release.recv();
                7
            })
            .unwrap();
        (started, rx)
    }

    #[test]
    fn beyond_the_decoders_and_the_queue_a_job_is_refused_not_queued() {
        let pool = Decoders::new(2, 3).unwrap();
        let mut releases = Vec::new();
        let mut results = Vec::new();
        // Two running (each waits until it says it started), three waiting.
        for n in 0..5 {
            let (release, rx) = channel();
            let (started, result) = blocking(&pool, rx);
            if n < 2 {
                started.recv().unwrap();
            }
            releases.push(release);
            results.push(result);
        }
        assert_eq!(pool.waiting(), 3);
        assert_eq!(
            pool.submit(|| 0u32).unwrap_err(),
            Busy {
                threads: 2,
                queued: 3
            }
        );
        // Freed, the queue takes work again, and every accepted job was run.
        for r in &releases {
            r.send(()).unwrap();
        }
        for r in results {
            assert_eq!(r.blocking_recv().unwrap(), 7);
        }
        assert_eq!(pool.waiting(), 0);
        assert_eq!(pool.submit(|| 9u32).unwrap().blocking_recv().unwrap(), 9);
    }

    #[test]
    fn a_job_whose_requester_left_is_skipped_and_a_panic_is_an_error() {
        let pool = Decoders::new(1, 2).unwrap();
        let (release, rx) = channel();
        let (started, first) = blocking(&pool, rx);
        started.recv().unwrap();
        let (ran_tx, ran) = channel::<()>();
        drop(pool.submit(move || ran_tx.send(()).unwrap()).unwrap());
        let panics = pool
            .submit(|| -> u32 { panic!("a damaged picture") })
            .unwrap();
        release.send(()).unwrap();
        assert_eq!(first.blocking_recv().unwrap(), 7);
        assert!(panics.blocking_recv().is_err());
        // The abandoned job's sender was dropped unused: it never ran.
        assert!(ran.recv().is_err());
        // The thread survived the panic.
        assert_eq!(pool.submit(|| 3u32).unwrap().blocking_recv().unwrap(), 3);
    }

    #[test]
    fn dropping_the_pool_does_not_wait_for_a_running_job() {
        let pool = Decoders::new(1, 1).unwrap();
        let (release, rx) = channel();
        let (started, result) = blocking(&pool, rx);
        started.recv().unwrap();
        drop(pool);
        // Still running, unjoined; it ends when released.
        release.send(()).unwrap();
        assert_eq!(result.blocking_recv().unwrap(), 7);
    }
}
