//! Request IDs (Google AIP-155): a change a client may retry carries an optional request ID,
//! remembered with a digest of the request and its outcome, in the same batch as the change,
//! for a bounded time. A retry with the same ID and request gets the first outcome back and
//! changes nothing; the same ID with another request is refused.
//!
//! IDs are scoped to the calling department: the stored key starts with its credit code, so
//! two departments' IDs never meet. What is remembered is small: the outcome is the digest of
//! the record version the change's log entry commits to (it is kept in the record table for
//! good), or the ID of the licence an amendment or renewal made.
//!
//! The writer forgets IDs older than the retention in bounded batches after a group commit,
//! at most once a minute while nothing is due, never by a scan per operation.

use std::time::Duration;

use certseal_core::{Actor, Timestamp};
use certseal_crypto::sha256;
use certseal_store::{Batch, Direction, KvStore, Read, Table};

use crate::RegistryError;
use crate::audit::RegTxn;

/// Longest request ID, in characters (a UUID in text form has 36).
pub const MAX_REQUEST_ID: usize = 64;
/// How long a request ID is remembered unless configured otherwise: 7 days.
pub const DEFAULT_REQUEST_ID_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Most request IDs forgotten in one pruning write.
const PRUNE_BATCH: usize = 512;
/// Pause between two prunings that found nothing more due.
const PRUNE_INTERVAL_MS: i64 = 60_000;

/// The changes that take a request ID; the value is part of the request digest, so one ID
/// cannot be replayed as another kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Change {
    AmendLicence = 1,
    RenewLicence = 2,
    SuspendLicence = 3,
    ReinstateLicence = 4,
    RevokeLicence = 5,
    RegisterSeal = 6,
    ImportSealCertificate = 7,
    ActivateSeal = 8,
    SuspendSeal = 9,
    ReinstateSeal = 10,
    RevokeSeal = 11,
    SetDepartmentPolicy = 12,
    RevokeDepartmentCertificate = 13,
}

/// Builds the digest of a request from its parts, each length-prefixed so that no two
/// different requests run together into the same bytes.
#[derive(Debug)]
pub(crate) struct RequestDigest(Vec<u8>);

impl RequestDigest {
    pub(crate) fn new(change: Change) -> Self {
        Self(vec![b'R', b'1', change as u8])
    }

    pub(crate) fn bytes(mut self, part: &[u8]) -> Self {
        self.0.extend_from_slice(&(part.len() as u64).to_be_bytes());
        self.0.extend_from_slice(part);
        self
    }

    pub(crate) fn text(self, part: &str) -> Self {
        self.bytes(part.as_bytes())
    }

    pub(crate) fn time(self, t: Option<Timestamp>) -> Self {
        match t {
            None => self.bytes(b""),
            Some(t) => self.bytes(&t.0.to_be_bytes()),
        }
    }

    fn finish(self) -> [u8; 32] {
        sha256(&[&self.0])
    }
}

/// A change's request ID, checked, with the digest of the request it came with.
#[derive(Debug, Clone)]
pub(crate) struct RequestId {
    /// Credit code ‖ request ID.
    key: Vec<u8>,
    digest: [u8; 32],
    text: String,
}

/// What a lookup found.
pub(crate) enum Remembered {
    /// Nothing (or only an ID past its retention): the change is new.
    New,
    /// The same request ran already; its outcome.
    Done(Vec<u8>),
}

/// Checks a request ID: empty means none (no retry protection); otherwise 1 to
/// [`MAX_REQUEST_ID`] characters of `A-Z a-z 0-9 - _ .`, compared exactly.
pub(crate) fn request_id(
    actor: &Actor,
    id: &str,
    digest: RequestDigest,
) -> Result<Option<RequestId>, RegistryError> {
    if id.is_empty() {
        return Ok(None);
    }
    if id.len() > MAX_REQUEST_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(RegistryError::invalid(
            "request_id",
            format!(
                "1 to {MAX_REQUEST_ID} characters of A-Z, a-z, 0-9, '-', '_' and '.' (a UUID is recommended), or empty for none"
            ),
        ));
    }
    Ok(Some(RequestId {
        key: [actor.department.as_str().as_bytes(), id.as_bytes()].concat(),
        digest: digest.finish(),
        text: id.to_owned(),
    }))
}

impl RequestId {
    /// What [`RequestId::lookup_txn`] reads, to declare to the writer ahead.
    pub(crate) fn read(&self) -> (Table, Vec<u8>) {
        (Table::RequestIds, self.key.clone())
    }

    /// The remembered outcome of this request, from the committed state.
    pub(crate) fn lookup(
        &self,
        store: &dyn Read,
        retention: Duration,
    ) -> Result<Remembered, RegistryError> {
        self.check(store.get(Table::RequestIds, &self.key)?, retention)
    }

    /// The same, on the writer: a concurrent request with the same ID may have won.
    pub(crate) fn lookup_txn(
        &self,
        txn: &RegTxn<'_>,
        retention: Duration,
    ) -> Result<Remembered, RegistryError> {
        self.check(txn.get(Table::RequestIds, &self.key)?, retention)
    }

    fn check(
        &self,
        stored: Option<Vec<u8>>,
        retention: Duration,
    ) -> Result<Remembered, RegistryError> {
        let Some(stored) = stored else {
            return Ok(Remembered::New);
        };
        if stored.len() < 40 {
            return Err(RegistryError::Corrupt("request ID record".into()));
        }
        let at = i64::from_be_bytes(stored[32..40].try_into().expect("8 bytes"));
        if Timestamp::now().0.saturating_sub(at) >= retention_ms(retention) {
            return Ok(Remembered::New);
        }
        if stored[..32] != self.digest {
            return Err(RegistryError::RequestIdReused(format!(
                "request ID '{}' was used for another request (another change, or other arguments); a new request needs a new request ID",
                self.text
            )));
        }
        Ok(Remembered::Done(stored[40..].to_vec()))
    }

    /// Remembers the outcome, in the operation's batch: the change and its request ID are
    /// written together or not at all.
    pub(crate) fn remember(&self, txn: &mut RegTxn<'_>, outcome: &[u8]) {
        let at = Timestamp::now().0.max(0);
        for (table, key, value) in rows(&self.key, &self.digest, at, outcome) {
            txn.put(table, key, value);
        }
    }
}

/// The record of one use of a request ID and its entry in the time index.
fn rows(key: &[u8], digest: &[u8; 32], at: i64, outcome: &[u8]) -> [(Table, Vec<u8>, Vec<u8>); 2] {
    [
        (
            Table::RequestIds,
            key.to_vec(),
            [&digest[..], &at.to_be_bytes(), outcome].concat(),
        ),
        (
            Table::RequestIdsByTime,
            [&at.to_be_bytes()[..], key].concat(),
            Vec::new(),
        ),
    ]
}

fn retention_ms(retention: Duration) -> i64 {
    i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)
}

/// The writer's pruning of request IDs past their retention.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pruner {
    retention: Duration,
    /// Not before this time (ms).
    next_at: i64,
}

impl Pruner {
    pub(crate) fn new(retention: Duration) -> Self {
        Self {
            retention,
            next_at: 0,
        }
    }

    /// Forgets up to [`PRUNE_BATCH`] request IDs past their retention, when due. The write is
    /// not synced: one a crash loses is made again later.
    pub(crate) fn prune(&mut self, store: &dyn KvStore) -> Result<usize, RegistryError> {
        let now = Timestamp::now().0;
        if now < self.next_at {
            return Ok(0);
        }
        let cutoff = now.saturating_sub(retention_ms(self.retention));
        let page = store.scan(
            Table::RequestIdsByTime,
            b"",
            None,
            PRUNE_BATCH,
            Direction::Forward,
        )?;
        let mut batch = Batch::new();
        let mut pruned = 0;
        for (index_key, _) in &page.items {
            let Some(at) = index_key.get(..8) else {
                return Err(RegistryError::Corrupt("request ID time index key".into()));
            };
            let at = i64::from_be_bytes(at.try_into().expect("8 bytes"));
            if at > cutoff {
                break;
            }
            let key = &index_key[8..];
            // The ID may have been used again after it expired: forget only this use.
            if let Some(stored) = store.get(Table::RequestIds, key)?
                && stored.get(32..40) == Some(&at.to_be_bytes()[..])
            {
                batch.delete(Table::RequestIds, key.to_vec());
            }
            batch.delete(Table::RequestIdsByTime, index_key.clone());
            pruned += 1;
        }
        if !batch.is_empty() {
            store.write(&batch, false)?;
        }
        // A full batch may leave more due: go on after the next group.
        self.next_at = if pruned == PRUNE_BATCH {
            now
        } else {
            now + PRUNE_INTERVAL_MS
        };
        Ok(pruned)
    }
}

/// A licence ID as remembered (its text).
pub(crate) fn outcome_text(outcome: &[u8]) -> Result<&str, RegistryError> {
    std::str::from_utf8(outcome).map_err(|_| RegistryError::Corrupt("request ID outcome".into()))
}

/// The record version a remembered outcome names by digest, decoded.
pub(crate) fn outcome_record<T: serde::de::DeserializeOwned>(
    store: &dyn Read,
    what: &str,
    outcome: &[u8],
) -> Result<T, RegistryError> {
    let record = store
        .get(Table::Records, outcome)?
        .ok_or_else(|| RegistryError::Corrupt(format!("{what} named by a request ID")))?;
    crate::codec::decode(what, &record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use certseal_core::Role;

    fn actor(code: &str) -> Actor {
        Actor {
            department: code.parse().unwrap(),
            role: Role::Admin,
        }
    }

    #[test]
    fn request_ids_are_bounded_and_scoped_to_the_caller() {
        let a = actor("11100000000013338W");
        let d = || RequestDigest::new(Change::SuspendLicence).text("x");
        assert!(request_id(&a, "", d()).unwrap().is_none());
        let uuid = "0190c6a8-7b2e-7c3d-9f00-123456789abc";
        let id = request_id(&a, uuid, d()).unwrap().unwrap();
        assert_eq!(&id.key[..18], b"11100000000013338W");
        assert!(request_id(&a, &"a".repeat(MAX_REQUEST_ID), d()).is_ok());
        for bad in [
            "a".repeat(MAX_REQUEST_ID + 1),
            "with space".into(),
            "é".into(),
            "a/b".into(),
        ] {
            let e = request_id(&a, &bad, d()).unwrap_err();
            assert!(
                matches!(&e, RegistryError::InvalidArgument(v) if v[0].field == "request_id"),
                "{bad}: {e}"
            );
        }
        // Other arguments, or another change with the same arguments, give another digest.
        let other = request_id(
            &a,
            uuid,
            RequestDigest::new(Change::SuspendLicence).text("y"),
        );
        assert_ne!(other.unwrap().unwrap().digest, id.digest);
        let other = request_id(
            &a,
            uuid,
            RequestDigest::new(Change::RevokeLicence).text("x"),
        );
        assert_ne!(other.unwrap().unwrap().digest, id.digest);
        // Parts do not run together.
        let ab = RequestDigest::new(Change::RevokeSeal).text("ab").text("");
        let a_b = RequestDigest::new(Change::RevokeSeal).text("a").text("b");
        assert_ne!(ab.finish(), a_b.finish());
    }

    #[test]
    fn the_writer_forgets_expired_request_ids_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = certseal_store_rocks::RocksStore::open(
            dir.path(),
            &certseal_store_rocks::RocksOptions::default(),
        )
        .unwrap();
        let now = Timestamp::now().0;
        let hour = 3_600_000;
        let mut b = Batch::new();
        let mut put = |key: &[u8], at: i64| {
            for (t, k, v) in rows(key, &[7; 32], at, b"outcome") {
                b.put(t, k, v);
            }
        };
        // More expired IDs than one batch takes, one recent, and one used again after it
        // expired (its old index entry goes, its new use stays).
        let expired = PRUNE_BATCH + 10;
        for n in 0..expired {
            put(format!("old-{n:04}").as_bytes(), now - 3 * hour + n as i64);
        }
        put(b"recent", now - hour / 2);
        put(b"again", now - 2 * hour);
        put(b"again", now - hour / 4);
        store.write(&b, true).unwrap();
        let count = |t: Table| {
            store
                .scan(t, b"", None, 10_000, Direction::Forward)
                .unwrap()
                .items
                .len()
        };
        assert_eq!(count(Table::RequestIds), expired + 2);

        let mut pruner = Pruner::new(Duration::from_secs(3600));
        assert_eq!(pruner.prune(&store).unwrap(), PRUNE_BATCH);
        assert_eq!(count(Table::RequestIds), expired + 2 - PRUNE_BATCH);
        // A full batch: the next group goes on at once, and finds the rest.
        assert_eq!(pruner.prune(&store).unwrap(), 11);
        let left: Vec<_> = store
            .scan(Table::RequestIds, b"", None, 10, Direction::Forward)
            .unwrap()
            .items
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left, vec![b"again".to_vec(), b"recent".to_vec()]);
        assert_eq!(count(Table::RequestIdsByTime), 2);
        // Nothing more is due: the next pruning waits.
        assert_eq!(pruner.prune(&store).unwrap(), 0);
        assert!(pruner.next_at > now + PRUNE_INTERVAL_MS / 2);
    }
}
