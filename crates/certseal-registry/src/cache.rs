//! Records that every issue or check reads and that rarely change (seals, departments, sharing
//! policies), kept in memory.
//!
//! Every operation that writes one of them marks the [`Epoch`] on the writer thread before its
//! group is written, and the writer settles the mark once the group is durable and visible.
//! The epoch is odd while such a change is in flight. So a read made between two equal, even
//! observations of the epoch saw every sequenced change, and stays current for as long as the
//! epoch stays there. Cached entries carry the epoch they were read in and are used only in it.
//!
//! The writer uses the same fact: an issue whose seal and department were read in epoch `e`
//! need not read them again on the writer if the epoch is still `e` there.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use certseal_core::policy::DepartmentPolicy;
use certseal_core::seal::Seal;
use certseal_core::{CreditCode, Department, SealId};
use certseal_store::{KvStore, Table};

use certseal_verify::document::SealCandidate;

use crate::RegistryError;
use crate::audit::RegTxn;
use crate::codec::decode;

/// Counts changes to cached records; odd while one is sequenced but not yet durable.
#[derive(Debug, Default)]
pub(crate) struct Epoch(AtomicU64);

impl Epoch {
    fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// On the writer: the operation running writes a cached record.
    fn changing(&self) {
        let e = self.current();
        if e.is_multiple_of(2) {
            self.0.store(e + 1, Ordering::SeqCst);
        }
    }

    /// On the writer: the group just written is durable and visible to readers.
    pub(crate) fn settled(&self) {
        let e = self.current();
        if !e.is_multiple_of(2) {
            self.0.store(e + 1, Ordering::SeqCst);
        }
    }

    /// Everything cached so far is stale: another node changed records (a cluster follower
    /// learns it from the change sequence), or this one took over the writes.
    pub(crate) fn invalidate(&self) {
        self.0.fetch_add(2, Ordering::SeqCst);
    }

    /// On the writer: whether nothing cached changed since `stamp` was taken.
    pub(crate) fn unchanged_since(&self, stamp: Option<u64>) -> bool {
        stamp == Some(self.current())
    }
}

/// Puts a cached record: the writer's epoch says a change is in flight.
pub(crate) fn put_cached(
    txn: &mut RegTxn<'_>,
    table: Table,
    key: impl Into<Vec<u8>>,
    value: impl Into<Vec<u8>>,
) {
    // The seals-by-key-ID index is written only with its seal, which marks the epoch.
    debug_assert!(matches!(
        table,
        Table::Seals | Table::Departments | Table::Policies
    ));
    txn.state.records.changing();
    txn.put(table, key, value);
}

/// Far more than a registry has seals or departments; past it the map starts again.
const MAX_ENTRIES: usize = 16_384;

#[derive(Debug)]
struct Entries<K, V> {
    epoch: u64,
    map: HashMap<K, Option<Arc<V>>>,
}

#[derive(Debug)]
struct Cached<K, V>(Mutex<Entries<K, V>>);

impl<K: Eq + Hash + Clone, V> Default for Cached<K, V> {
    fn default() -> Self {
        Self(Mutex::new(Entries {
            epoch: 0,
            map: HashMap::new(),
        }))
    }
}

impl<K: Eq + Hash + Clone, V> Cached<K, V> {
    fn get_or_load(
        &self,
        epoch: &Epoch,
        stamp: &Stamp,
        key: &K,
        load: impl FnOnce() -> Result<Option<V>, RegistryError>,
    ) -> Result<Option<Arc<V>>, RegistryError> {
        let Some(began) = stamp.0 else {
            return Ok(load()?.map(Arc::new));
        };
        {
            let entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if entries.epoch == began
                && let Some(v) = entries.map.get(key)
            {
                return Ok(v.clone());
            }
        }
        let value = load()?.map(Arc::new);
        // Kept only if no change was sequenced while it was read.
        if epoch.current() == began {
            let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if entries.epoch < began {
                entries.epoch = began;
                entries.map.clear();
            }
            if entries.epoch == began {
                if entries.map.len() >= MAX_ENTRIES {
                    entries.map.clear();
                }
                entries.map.insert(key.clone(), value.clone());
            }
        }
        Ok(value)
    }
}

/// The epoch a series of reads began in; `None` if a change was in flight then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp(Option<u64>);

/// A seal as issuing needs it, with its certificate's validity (seconds) already parsed.
#[derive(Debug)]
pub(crate) struct SigningSealRecord {
    pub seal: Seal,
    pub cert_validity: Option<(i64, i64)>,
}

/// The cached records.
#[derive(Debug, Default)]
pub(crate) struct RecordCache {
    epoch: Arc<Epoch>,
    seals: Cached<SealId, SigningSealRecord>,
    departments: Cached<CreditCode, Department>,
    policies: Cached<CreditCode, DepartmentPolicy>,
    /// Seals by certificate key ID, with their chains already checked.
    candidates: Cached<Vec<u8>, Vec<SealCandidate>>,
}

impl RecordCache {
    /// The epoch the writer marks and settles.
    pub(crate) fn epoch(&self) -> Arc<Epoch> {
        self.epoch.clone()
    }

    /// Begins a series of reads.
    pub(crate) fn stamp(&self) -> Stamp {
        let e = self.epoch.current();
        Stamp(e.is_multiple_of(2).then_some(e))
    }

    /// `Some(epoch)` if everything read since `stamp` is still current: the writer may take
    /// it as read if its epoch is the same.
    pub(crate) fn still_current(&self, stamp: &Stamp) -> Option<u64> {
        stamp.0.filter(|&e| e == self.epoch.current())
    }

    pub(crate) fn seal(
        &self,
        store: &dyn KvStore,
        stamp: &Stamp,
        id: &SealId,
    ) -> Result<Option<Arc<SigningSealRecord>>, RegistryError> {
        self.seals.get_or_load(&self.epoch, stamp, id, || {
            let Some(seal) = crate::seals::load_seal(store, id)? else {
                return Ok(None);
            };
            let cert_validity = seal
                .certificate
                .as_deref()
                .map(certseal_crypto::x509::validity)
                .transpose()
                .map_err(|e| RegistryError::Corrupt(format!("seal {id}'s certificate: {e}")))?;
            Ok(Some(SigningSealRecord {
                seal,
                cert_validity,
            }))
        })
    }

    pub(crate) fn department(
        &self,
        store: &dyn KvStore,
        stamp: &Stamp,
        code: &CreditCode,
    ) -> Result<Option<Arc<Department>>, RegistryError> {
        self.departments.get_or_load(&self.epoch, stamp, code, || {
            store
                .get(Table::Departments, code.as_str().as_bytes())?
                .map(|b| decode("department", &b))
                .transpose()
        })
    }

    pub(crate) fn policy(
        &self,
        store: &dyn KvStore,
        stamp: &Stamp,
        code: &CreditCode,
    ) -> Result<Option<Arc<DepartmentPolicy>>, RegistryError> {
        self.policies.get_or_load(&self.epoch, stamp, code, || {
            store
                .get(Table::Policies, code.as_str().as_bytes())?
                .map(|b| decode("policy", &b))
                .transpose()
        })
    }

    /// The seals a document's key ID may name; `load` reads and checks them. A failed read
    /// is not kept, nor is an empty answer: key IDs come from outside, and unknown ones must
    /// not crowd out the real ones.
    pub(crate) fn seal_candidates(
        &self,
        stamp: &Stamp,
        kid: &[u8],
        load: impl FnOnce() -> Result<Vec<SealCandidate>, RegistryError>,
    ) -> Result<Arc<Vec<SealCandidate>>, RegistryError> {
        let found = self
            .candidates
            .get_or_load(&self.epoch, stamp, &kid.to_vec(), || {
                Ok(Some(load()?).filter(|v| !v.is_empty()))
            })?;
        Ok(found.unwrap_or_default())
    }
}
