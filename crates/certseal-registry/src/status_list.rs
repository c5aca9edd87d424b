//! The signed status lists (versions 1 and 2), their index, and the cache that keeps one signed
//! list per version until the log grows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certseal_core::verification::{
    STATUS_LIST_CONTENT_TYPE, STATUS_LIST_V2_CONTENT_TYPE, StatusEntry,
};
use certseal_core::{
    Actor, AnyStatusList, Licence, LicenceRevocationReason, LicenceStatus, StatusChange,
    StatusHistory, StatusList, StatusListV2, Timestamp,
};
use certseal_crypto::{Certificate, cose, x509};
use certseal_store::{Batch, Direction, KvStore, Table};

use crate::audit::RegTxn;
use crate::codec::{decode, encode};
use crate::seal_ca::open_trust_list_key;
use crate::{Registry, RegistryError};

/// A signed list is rebuilt at most this often, however fast the log grows: building one reads
/// every licence whose status changed. Readers in between get the last one, whose `log_size`
/// and `issued_at` say what it covers.
pub(crate) const MIN_REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// Marks, in the `meta` table, that the status index holds histories (version 2 of the index).
const INDEX_FORMAT_KEY: &[u8] = b"status-index-format";
const INDEX_FORMAT: &[u8] = b"2";

/// One change after issue, as the index keeps it.
type IndexedChange = (LicenceStatus, Timestamp, Option<LicenceRevocationReason>);

/// A signed status list.
#[derive(Debug, Clone)]
pub struct SignedStatusList {
    /// The COSE_Sign1 bytes.
    pub signed: Vec<u8>,
    /// What it says.
    pub list: AnyStatusList,
}

struct Cached {
    list: Arc<SignedStatusList>,
    built: Instant,
}

/// The last signed list of each version, and a lock so that one caller builds while the others
/// wait for its result.
#[derive(Default)]
pub(crate) struct StatusListCache {
    lists: Mutex<[Option<Cached>; 2]>,
    building: Mutex<()>,
}

impl std::fmt::Debug for StatusListCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusListCache(..)")
    }
}

/// Keeps the status index: every licence whose status changed after issue, with every change.
pub(crate) fn put_status_index(txn: &mut RegTxn<'_>, l: &Licence) {
    let key = l.id.as_str().as_bytes().to_vec();
    match index_value(l) {
        Some(v) => txn.put(Table::LicenceStatusIndex, key, v),
        None => txn.delete(Table::LicenceStatusIndex, key),
    }
}

fn index_value(l: &Licence) -> Option<Vec<u8>> {
    let changes: Vec<IndexedChange> = l
        .history
        .iter()
        .skip(1)
        .map(|e| (e.status, e.at, e.reason))
        .collect();
    (!changes.is_empty()).then(|| encode(&changes))
}

/// Rebuilds the status index from the licences once, in a data folder whose index held only
/// current statuses (before version 2 of the status list): reinstated licences were missing.
pub(crate) fn migrate_index(store: &dyn KvStore) -> Result<(), RegistryError> {
    if store.get(Table::Meta, INDEX_FORMAT_KEY)?.as_deref() == Some(INDEX_FORMAT) {
        return Ok(());
    }
    let mut after: Option<Vec<u8>> = None;
    let mut count = 0u64;
    loop {
        let page = store.scan(
            Table::Licences,
            b"",
            after.as_deref(),
            4096,
            Direction::Forward,
        )?;
        let mut batch = Batch::new();
        for (k, v) in &page.items {
            let l: Licence = decode("licence", v)?;
            match index_value(&l) {
                Some(value) => batch.put(Table::LicenceStatusIndex, k.clone(), value),
                None => batch.delete(Table::LicenceStatusIndex, k.clone()),
            }
            count += 1;
        }
        store.write(&batch, false)?;
        match (page.more, page.items.last()) {
            (true, Some((k, _))) => after = Some(k.clone()),
            _ => break,
        }
    }
    let mut done = Batch::new();
    done.put(Table::Meta, INDEX_FORMAT_KEY, INDEX_FORMAT);
    store.write(&done, true)?;
    if count > 0 {
        tracing::info!(
            licences = count,
            "rebuilt the status index with each licence's history"
        );
    }
    Ok(())
}

impl Registry {
    /// The signed status list of `version` (0 or 1: current statuses; 2: histories), signed
    /// by the trust-list key. Served from the cache while the log has not grown, or for
    /// [`MIN_REBUILD_INTERVAL`] after the last build.
    pub fn status_list(
        &self,
        actor: &Actor,
        version: u32,
    ) -> Result<Arc<SignedStatusList>, RegistryError> {
        self.authorize_held(actor, "reading the status list")?;
        let slot = match version {
            0 | 1 => 0,
            2 => 1,
            v => {
                return Err(RegistryError::invalid(
                    "version",
                    format!("status list version {v} does not exist; versions 1 and 2 do"),
                ));
            }
        };
        let fresh = |lists: &[Option<Cached>; 2]| {
            let size = self.latest_checkpoint().checkpoint.size;
            lists[slot]
                .as_ref()
                .filter(|c| {
                    c.list.list.log_size() == size || c.built.elapsed() < MIN_REBUILD_INTERVAL
                })
                .map(|c| c.list.clone())
        };
        let cache = &self.status_lists;
        if let Some(l) = fresh(&cache.lists.lock().expect("lock")) {
            return Ok(l);
        }
        let _building = cache.building.lock().expect("lock");
        // Another caller may have built it while this one waited.
        if let Some(l) = fresh(&cache.lists.lock().expect("lock")) {
            return Ok(l);
        }
        let list = Arc::new(self.build_status_list(slot + 1)?);
        cache.lists.lock().expect("lock")[slot] = Some(Cached {
            list: list.clone(),
            built: Instant::now(),
        });
        Ok(list)
    }

    fn build_status_list(&self, version: usize) -> Result<SignedStatusList, RegistryError> {
        // The size is read before the snapshot: the list holds at least what that size covers.
        let log_size = self.latest_checkpoint().checkpoint.size;
        let snap = self.store.snapshot();
        let mut current = Vec::new();
        let mut histories = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = snap.scan(
                Table::LicenceStatusIndex,
                b"",
                after.as_deref(),
                4096,
                Direction::Forward,
            )?;
            for (k, v) in &page.items {
                let id = String::from_utf8(k.clone())
                    .map_err(|_| RegistryError::Corrupt("status index key".into()))?;
                let changes: Vec<IndexedChange> = decode("licence status history", v)?;
                if version == 1 {
                    if let Some((status, since, _)) = changes.last()
                        && *status != LicenceStatus::Active
                    {
                        current.push(StatusEntry {
                            id,
                            status: *status,
                            since: *since,
                        });
                    }
                } else {
                    histories.push(StatusHistory {
                        id,
                        history: changes
                            .into_iter()
                            .map(|(status, since, reason)| StatusChange {
                                status,
                                since,
                                reason: reason.map(|r| r.code().to_owned()),
                            })
                            .collect(),
                    });
                }
            }
            match (page.more, page.items.last()) {
                (true, Some((k, _))) => after = Some(k.clone()),
                _ => break,
            }
        }
        let issued_at = Timestamp::now();
        let (list, payload, content_type) = if version == 1 {
            let l = StatusList {
                v: 1,
                issuer: self.origin.clone(),
                issued_at,
                log_size,
                entries: current,
            };
            let payload = l.encode();
            (AnyStatusList::V1(l), payload, STATUS_LIST_CONTENT_TYPE)
        } else {
            let l = StatusListV2 {
                v: 2,
                issuer: self.origin.clone(),
                issued_at,
                log_size,
                entries: histories,
            };
            let payload = l.encode();
            (AnyStatusList::V2(l), payload, STATUS_LIST_V2_CONTENT_TYPE)
        };
        let pkcs8 = open_trust_list_key(self.store.as_ref(), &self.kek)?;
        let signer = certseal_crypto::load_signer(x509::KeyAlgorithm::Ed25519, &pkcs8)
            .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        drop(pkcs8);
        let cert: &Certificate = &self.seal_ca.trust_list_cert;
        let signed = cose::sign1(
            signer.as_ref(),
            &cert.kid(),
            content_type,
            Some(&cert.der),
            payload,
        )
        .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        Ok(SignedStatusList { signed, list })
    }
}

#[cfg(test)]
mod tests {
    use certseal_core::{
        CreditCode, HolderKind, LicenceAction, LicenceEvent, LicenceId, Role, SealId, TypeCode,
    };
    use certseal_store::Read;
    use certseal_store_rocks::{RocksOptions, RocksStore};

    use super::*;

    fn licence(serial: &str, actions: &[LicenceAction]) -> Licence {
        let issuer: CreditCode = "11100000000013338W".parse().unwrap();
        let type_code: TypeCode = "11100000000013338W001".parse().unwrap();
        let actor = Actor {
            department: issuer.clone(),
            role: Role::Issuer,
        };
        let mut l = Licence {
            id: LicenceId::new(&type_code, &issuer, serial, 1).unwrap(),
            type_code,
            template_version: 1,
            issuer,
            seal: SealId::new(1, &[0; 10]),
            holder_kind: HolderKind::Person,
            holder_id: "x".into(),
            issued_at: Timestamp(10),
            not_before: Timestamp(0),
            not_after: None,
            document_digest: vec![0; 32],
            prev: None,
            next: None,
            history: vec![LicenceEvent {
                at: Timestamp(10),
                by: actor.clone(),
                status: LicenceStatus::Active,
                reason: None,
                note: String::new(),
                upstream: None,
            }],
            collected: None,
        };
        for (n, a) in actions.iter().enumerate() {
            l.apply(*a, actor.clone(), Timestamp(20 + n as i64), "n")
                .unwrap();
        }
        l
    }

    #[test]
    fn an_index_of_current_statuses_is_rebuilt_with_histories_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let reinstated = licence("A1", &[LicenceAction::Suspend, LicenceAction::Reinstate]);
        let revoked = licence(
            "A2",
            &[
                LicenceAction::Suspend,
                LicenceAction::Revoke(LicenceRevocationReason::Withdrawn),
            ],
        );
        let plain = licence("A3", &[]);
        // As an older build left it: current statuses only, the reinstated licence missing.
        let mut b = Batch::new();
        for l in [&reinstated, &revoked, &plain] {
            b.put(
                Table::Licences,
                l.id.as_str().as_bytes().to_vec(),
                encode(l),
            );
        }
        b.put(
            Table::LicenceStatusIndex,
            revoked.id.as_str().as_bytes().to_vec(),
            encode(&(LicenceStatus::Revoked, Timestamp(21))),
        );
        store.write(&b, true).unwrap();

        migrate_index(&store).unwrap();
        let read = |l: &Licence| {
            store
                .get(Table::LicenceStatusIndex, l.id.as_str().as_bytes())
                .unwrap()
                .map(|v| decode::<Vec<IndexedChange>>("index", &v).unwrap())
        };
        assert_eq!(
            read(&reinstated).unwrap(),
            vec![
                (LicenceStatus::Suspended, Timestamp(20), None),
                (LicenceStatus::Active, Timestamp(21), None)
            ]
        );
        assert_eq!(
            read(&revoked).unwrap()[1],
            (
                LicenceStatus::Revoked,
                Timestamp(21),
                Some(LicenceRevocationReason::Withdrawn)
            )
        );
        assert_eq!(read(&plain), None);
        // Once: the marker is set, and a second start leaves the index alone.
        let mut b = Batch::new();
        b.delete(
            Table::LicenceStatusIndex,
            reinstated.id.as_str().as_bytes().to_vec(),
        );
        store.write(&b, true).unwrap();
        migrate_index(&store).unwrap();
        assert_eq!(read(&reinstated), None);
    }
}
