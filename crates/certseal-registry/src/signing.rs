//! The signing pool: signatures are the CPU-heavy part of a write, so they run here, one
//! thread per core, in parallel and off the async runtime's threads, before the sequencer
//! takes the signed result.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use certseal_store::StoreError;

use crate::RegistryError;

type Job = Box<dyn FnOnce() + Send>;

/// Worker threads fed from one queue. Dropping the pool lets queued jobs finish.
#[derive(Debug)]
pub(crate) struct SigningPool {
    queue: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl SigningPool {
    /// One worker per core the process may use.
    pub(crate) fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let workers = (0..threads)
            .map(|i| {
                let jobs = jobs.clone();
                std::thread::Builder::new()
                    .name(format!("certseal-sign-{i}"))
                    .spawn(move || {
                        loop {
                            // The lock is held only while waiting for the next job.
                            let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            match job {
                                Ok(job) => job(),
                                Err(_) => return,
                            }
                        }
                    })
                    .expect("spawning a signing thread")
            })
            .collect();
        Self {
            queue: Some(queue),
            workers,
        }
    }

    /// Runs `f` on the pool and waits for its result without blocking the runtime.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, RegistryError>
    where
        F: FnOnce() -> Result<T, RegistryError> + Send + 'static,
        T: Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = done.send(r);
        });
        self.queue
            .as_ref()
            .and_then(|q| q.send(job).ok())
            .ok_or(RegistryError::Store(StoreError::Closed))?;
        match result.await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => {
                tracing::error!("a signing job panicked");
                Err(RegistryError::Corrupt("signing failed".into()))
            }
            Err(_) => Err(RegistryError::Store(StoreError::Closed)),
        }
    }
}

impl Drop for SigningPool {
    fn drop(&mut self) {
        self.queue.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_off_the_calling_thread_and_a_panic_fails_alone() {
        let pool = SigningPool::new();
        let caller = std::thread::current().id();
        let ran_on = pool.run(|| Ok(std::thread::current().id())).await.unwrap();
        assert_ne!(ran_on, caller);
        let e = pool
            .run(|| -> Result<(), RegistryError> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Corrupt(_)), "{e}");
        let results = futures(&pool).await;
        assert_eq!(results, (0..64).collect::<Vec<u64>>());
    }

    async fn futures(pool: &SigningPool) -> Vec<u64> {
        let mut out = Vec::new();
        for i in 0..64u64 {
            out.push(pool.run(move || Ok(i)).await.unwrap());
        }
        out
    }
}
