//! The audit log across restarts: what the log signs and what it refuses to start with.

use std::path::Path;

mod common;

use certseal_registry::{Registry, RegistryError, RegistryOptions};
use certseal_store::{Batch, Direction, KvStore, Read, Table};
use certseal_store_rocks::{RocksOptions, RocksStore};
use common::{admin, code};

async fn write(dir: &Path, from: u32, n: u32) -> Registry {
    let r = Registry::open(dir, &RocksOptions::default(), &RegistryOptions::default()).unwrap();
    for i in from..from + n {
        r.register_department(&admin(), &code(i), "部门", "350200")
            .await
            .unwrap();
    }
    r
}

fn raw(dir: &Path) -> RocksStore {
    RocksStore::open(&dir.join("db"), &RocksOptions::default()).unwrap()
}

#[tokio::test]
async fn a_lost_checkpoint_is_signed_again_identically() {
    let dir = tempfile::tempdir().unwrap();
    let r = write(dir.path(), 0, 5).await;
    let before = r.latest_checkpoint();
    assert_eq!(before.checkpoint.size, 5);
    drop(r);
    // Lose the latest checkpoint, as a crash before its unsynced write reached disk would.
    {
        let s = raw(dir.path());
        let mut b = Batch::new();
        b.delete(Table::LogCheckpoints, 5u64.to_be_bytes().to_vec());
        s.write(&b, true).unwrap();
    }
    let r = Registry::open(
        dir.path(),
        &RocksOptions::default(),
        &RegistryOptions::default(),
    )
    .unwrap();
    assert_eq!(
        r.latest_checkpoint(),
        before,
        "same size, same root, same note"
    );
    // The log goes on from there.
    r.register_department(&admin(), &code(9), "部门", "350200")
        .await
        .unwrap();
    assert_eq!(r.latest_checkpoint().checkpoint.size, 6);
}

#[tokio::test]
async fn a_checkpoint_ahead_of_the_tree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(write(dir.path(), 0, 3).await);
    {
        // Roll the tree back by one entry: the stored checkpoint (size 3) is now ahead of it.
        let s = raw(dir.path());
        let mut b = Batch::new();
        b.put(
            Table::Meta,
            b"log_size".to_vec(),
            2u64.to_be_bytes().to_vec(),
        );
        s.write(&b, true).unwrap();
    }
    let e = Registry::open(
        dir.path(),
        &RocksOptions::default(),
        &RegistryOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, RegistryError::Corrupt(m) if m.contains("larger")),
        "{e}"
    );
}

#[tokio::test]
async fn the_log_key_needs_its_kek_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    drop(write(dir.path(), 0, 1).await);
    let other_kek = dir.path().join("other-kek");
    let e = Registry::open(
        dir.path(),
        &RocksOptions::default(),
        &RegistryOptions {
            kek_file: Some(other_kek),
            ..RegistryOptions::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("key-encryption key"), "{e}");
    let e = Registry::open(
        dir.path(),
        &RocksOptions::default(),
        &RegistryOptions {
            log_origin: "another.example/log".into(),
            ..RegistryOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, RegistryError::FailedPrecondition(_)), "{e}");
    // The sealed key is not the key in the clear.
    let s = raw(dir.path());
    let sealed = s.get(Table::Meta, b"log_key").unwrap().unwrap();
    assert!(sealed.len() > 32);
    let stored = s
        .scan(Table::LogCheckpoints, b"", None, 10, Direction::Forward)
        .unwrap();
    assert_eq!(stored.items.len(), 2, "sizes 0 and 1 were signed");
}
