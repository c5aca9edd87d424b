//! A registry node in a cluster: one node holds the write lease and sequences every write;
//! the others (followers) serve reads from the shared database and keep what they hold in
//! memory current with it.
//!
//! The writer counts every change to records nodes keep in memory in the change sequence
//! (stored in the same batch as the change). Before a follower answers a call it reads the
//! sequence from the database (a read that waits for every commit the cluster made before it),
//! and if it moved, drops its cached seals, departments, policies and templates and reloads the
//! revoked department certificates. So a follower answers from state at least as new as the
//! last change acknowledged to anyone, at the cost of one read per call.

use std::sync::atomic::Ordering;

use certseal_log::Checkpoint;
use certseal_store::{Direction, StopCause, Table};

use crate::audit::{META_CHANGE_SEQ, SignedCheckpoint, log_err, meta_u64};
use crate::{Registry, RegistryError};

/// The change sequence a node's caches reflect before it has read it once.
pub(crate) const UNKNOWN: u64 = u64::MAX;

impl Registry {
    /// Whether another node holds the write lease (this one forwards writes to it).
    pub fn following(&self) -> bool {
        self.sequencer
            .stopped()
            .is_some_and(|s| s.cause == StopCause::NotLeader)
    }

    /// Whether [`Registry::follow`] has anything to do: on a follower always, on the writer
    /// only just after it took over. Cheap: no I/O.
    pub fn must_follow(&self) -> bool {
        self.caches_stale.load(Ordering::SeqCst) || self.following()
    }

    /// Brings what this node keeps in memory up to the database's latest committed changes.
    /// A no-op on the node that writes, unless it has just taken over.
    pub fn follow(&self) -> Result<(), RegistryError> {
        let stale = self.caches_stale.swap(false, Ordering::SeqCst);
        if !stale && !self.following() {
            return Ok(());
        }
        let seq = match meta_u64(self.store.as_ref(), META_CHANGE_SEQ) {
            Ok(s) => s,
            Err(e) => {
                if stale {
                    self.caches_stale.store(true, Ordering::SeqCst);
                }
                return Err(e);
            }
        };
        if stale || seq != self.followed.load(Ordering::SeqCst) {
            self.records.epoch().invalidate();
            self.clear_published_templates();
            let revoked = crate::client_certs::load_revoked(self.store.as_ref())?;
            self.revoked_certs.take_all(&revoked);
            self.followed.store(seq, Ordering::SeqCst);
            tracing::debug!(change_seq = seq, "caught up with the cluster's changes");
        }
        Ok(())
    }

    /// On a follower: takes the newest stored checkpoint as the latest, once its signature
    /// checks. A checkpoint that does not is logged and the previous one kept.
    pub(crate) fn follow_checkpoint(&self) {
        let newest = self
            .store
            .scan(Table::LogCheckpoints, b"", None, 1, Direction::Reverse);
        let note = match newest {
            Ok(page) => match page.items.into_iter().next() {
                Some((_, note)) => note,
                None => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the latest checkpoint");
                return;
            }
        };
        if self.latest.read().expect("lock").note.as_bytes() == note.as_slice() {
            return;
        }
        let opened = String::from_utf8(note)
            .map_err(|_| RegistryError::Corrupt("checkpoint is not text".into()))
            .and_then(|note| {
                let checkpoint = Checkpoint::open(&note, &self.verifier_key).map_err(log_err)?;
                Ok(SignedCheckpoint { checkpoint, note })
            });
        match opened {
            Ok(cp) => {
                let mut latest = self.latest.write().expect("lock");
                // Never back: a stored checkpoint is never smaller than one seen before.
                if cp.checkpoint.size >= latest.checkpoint.size {
                    *latest = cp;
                }
            }
            Err(e) => tracing::error!(error = %e, "the stored latest checkpoint does not open"),
        }
    }
}
