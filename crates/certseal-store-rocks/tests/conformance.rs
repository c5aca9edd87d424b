//! The RocksDB store runs the store conformance suite.

use std::sync::Arc;

use certseal_store::{KvStore, testing};
use certseal_store_rocks::{RocksOptions, RocksStore};

#[test]
fn rocksdb_store_conforms() {
    let base = tempfile::tempdir().unwrap();
    let open = |dir: &std::path::Path| -> Arc<dyn KvStore> {
        Arc::new(RocksStore::open(dir, &RocksOptions::default()).unwrap())
    };
    testing::run(&open, base.path());
}

#[test]
fn second_open_of_a_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    let second = RocksStore::open(dir.path(), &RocksOptions::default());
    assert!(second.is_err(), "RocksDB's lock keeps a second server out");
}
