//! The write lease: one row naming the node that sequences writes, until when, and an epoch
//! that grows with every taking. Times are the database's clock, so nodes' clocks need not
//! agree; this node also keeps a local deadline (a monotonic clock, started before it asked)
//! and stops believing it leads once that passes without a renewal.
//!
//! Every batch this node commits first runs [`fence_sql`] in the same transaction: it changes
//! the row only while the epoch is still ours, and the batch is rolled back unless exactly one
//! row changed. Galera certifies the row at commit, so a takeover through another database
//! node and a batch of the old leader cannot both commit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use certseal_store::StoreError;
use mysql::PooledConn;
use mysql::prelude::Queryable;

use crate::MysqlOptions;

/// The database's clock in milliseconds since the Unix epoch.
pub(crate) const NOW_MS: &str = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";

/// What this node believes of the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// Whether this node holds the lease now.
    pub held: bool,
    /// The epoch it took last (0: never).
    pub epoch: u64,
}

/// The lease row as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The holder's node name.
    pub node: String,
    /// Where it takes forwarded writes.
    pub address: String,
    /// The epoch it took.
    pub epoch: u64,
    /// Milliseconds until it expires unless renewed (negative: expired).
    pub expires_in_ms: i64,
}

#[derive(Debug, Default)]
struct Held {
    epoch: u64,
    /// Some while held: past this instant, without a renewal, this node no longer leads.
    until: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Lease {
    node: String,
    address: String,
    lease: Duration,
    held: Mutex<Held>,
}

impl Lease {
    pub(crate) fn new(opts: &MysqlOptions) -> Self {
        Self {
            node: opts.node.clone(),
            address: opts.advertise.clone(),
            lease: opts.lease.max(Duration::from_millis(500)),
            held: Mutex::new(Held::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn state(&self) -> LeaseState {
        let h = self.lock();
        LeaseState {
            held: h.until.is_some_and(|u| Instant::now() < u),
            epoch: h.epoch,
        }
    }

    /// The epoch a batch is fenced with: the one taken last, even past the local deadline
    /// (the fence then decides), or none if this node never took the lease.
    pub(crate) fn fence_epoch(&self) -> Option<u64> {
        let h = self.lock();
        h.until.map(|_| h.epoch)
    }

    pub(crate) fn lost(&self) {
        let mut h = self.lock();
        if h.until.take().is_some() {
            tracing::warn!(epoch = h.epoch, "lost the write lease");
        }
    }

    /// This node's deadline for a lease the database extended at `asked`: a little short of
    /// the database's, for the time the answer took.
    fn deadline(&self, asked: Instant) -> Instant {
        asked + self.lease - self.lease / 10
    }

    /// Takes the lease if it is free, expired, or this node's own (a restart); answers
    /// NotLeader naming the holder otherwise.
    pub(crate) fn acquire(
        &self,
        c: &mut PooledConn,
    ) -> Result<Result<(), StoreError>, mysql::Error> {
        let asked = Instant::now();
        let ms = self.lease.as_millis() as i64;
        c.query_drop("BEGIN /*T! PESSIMISTIC */")?;
        let run = |c: &mut PooledConn| -> Result<Option<u64>, mysql::Error> {
            c.exec_drop(
                format!(
                    "UPDATE cs_lease SET epoch = epoch + 1, holder = ?, address = ?,
                     expires_ms = {NOW_MS} + ? WHERE id = 1 AND (expires_ms < {NOW_MS} OR holder = ?)"
                ),
                (&self.node, &self.address, ms, &self.node),
            )?;
            if c.affected_rows() != 1 {
                return Ok(None);
            }
            c.query_first("SELECT epoch FROM cs_lease WHERE id = 1")
        };
        let taken = match run(c) {
            Ok(Some(e)) => {
                c.query_drop("COMMIT")?;
                e
            }
            Ok(None) => {
                c.query_drop("ROLLBACK")?;
                let holder = read_leader(c)?;
                return Ok(Err(StoreError::NotLeader(match holder {
                    Some(l) => format!(
                        "{} (at {}) holds the write lease, epoch {}, for {} ms more",
                        l.node, l.address, l.epoch, l.expires_in_ms
                    ),
                    None => "another node holds the write lease".into(),
                })));
            }
            Err(e) => {
                let _ = c.query_drop("ROLLBACK");
                return Err(e);
            }
        };
        let mut h = self.lock();
        h.epoch = taken;
        h.until = Some(self.deadline(asked));
        tracing::info!(epoch = taken, node = %self.node, "took the write lease");
        Ok(Ok(()))
    }

    /// Extends the lease while the epoch is still ours; answers whether it is.
    pub(crate) fn renew(&self, c: &mut PooledConn) -> Result<bool, mysql::Error> {
        let Some(epoch) = self.fence_epoch() else {
            return Ok(false);
        };
        let asked = Instant::now();
        c.exec_drop(
            format!(
                "UPDATE cs_lease SET expires_ms = {NOW_MS} + ? WHERE id = 1 AND epoch = ? AND holder = ?"
            ),
            (self.lease.as_millis() as i64, epoch, &self.node),
        )?;
        let still = c.affected_rows() == 1;
        let mut h = self.lock();
        // Another taking by this node meanwhile (recover) has its own deadline.
        if h.epoch == epoch && h.until.is_some() {
            if still {
                h.until = Some(self.deadline(asked));
            } else {
                h.until = None;
                tracing::warn!(epoch, "lost the write lease: another node took it");
            }
        }
        Ok(still && h.epoch == epoch)
    }

    /// Lets the lease expire now, if it is still ours.
    pub(crate) fn release(&self, c: &mut PooledConn) -> Result<(), mysql::Error> {
        let Some(epoch) = self.fence_epoch() else {
            return Ok(());
        };
        self.lock().until = None;
        c.exec_drop(
            "UPDATE cs_lease SET expires_ms = 0 WHERE id = 1 AND epoch = ? AND holder = ?",
            (epoch, &self.node),
        )
    }
}

/// The statement that fences a batch: it changes one row only while `epoch` holds the lease.
pub(crate) fn fence_sql(epoch: u64) -> String {
    format!("UPDATE cs_lease SET fence = fence + 1 WHERE id = 1 AND epoch = {epoch}")
}

pub(crate) fn read_leader<C: Queryable>(c: &mut C) -> Result<Option<Leader>, mysql::Error> {
    let row: Option<(String, String, u64, i64)> = c.query_first(format!(
        "SELECT holder, address, epoch, expires_ms - {NOW_MS} FROM cs_lease WHERE id = 1"
    ))?;
    Ok(row.filter(|(holder, ..)| !holder.is_empty()).map(
        |(node, address, epoch, expires_in_ms)| Leader {
            node,
            address,
            epoch,
            expires_in_ms,
        },
    ))
}
