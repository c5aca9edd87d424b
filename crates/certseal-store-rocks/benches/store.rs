//! RocksDB as the registry uses it: batched puts with and without a WAL sync per batch, point
//! reads that hit and miss, and a short prefix scan. Throughputs are per key (elem/s).
//!
//! `cargo bench -p certseal-store-rocks --bench store --profile dev` (the dev profile shares the
//! RocksDB build with the binary and the tests; `release` would compile it again).

use std::hint::black_box;

use certseal_store::{Batch, Direction, KvStore, Read, Table};
use certseal_store_rocks::{RocksOptions, RocksStore};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// A licence-sized record (the state plus a document is ~1.5 KB).
fn value(n: u64) -> Vec<u8> {
    let mut v = vec![0x5a; 1500];
    v[..8].copy_from_slice(&n.to_be_bytes());
    v
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(&dir.path().join("db"), &RocksOptions::default()).unwrap();
    let mut next = 0u64;
    let mut g = c.benchmark_group("store");
    for (group, durable) in [(1usize, false), (256, false), (256, true)] {
        g.throughput(Throughput::Elements(group as u64));
        g.bench_function(
            format!(
                "put batch of {group}{}",
                if durable { ", synced" } else { "" }
            ),
            |b| {
                b.iter_batched(
                    || {
                        let mut batch = Batch::new();
                        for _ in 0..group {
                            next += 1;
                            batch.put(Table::Records, next.to_be_bytes().to_vec(), value(next));
                        }
                        batch
                    },
                    |batch| store.write(&batch, durable).unwrap(),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    let stored = next;
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("get (hit)", |b| {
        b.iter(|| {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (i % stored + 1).to_be_bytes();
            black_box(store.get(Table::Records, &key).unwrap().unwrap());
        })
    });
    g.bench_function("get (miss)", |b| {
        b.iter(|| {
            i += 1;
            let key = (stored + 1 + i).to_be_bytes();
            black_box(store.get(Table::Records, &key).unwrap());
        })
    });
    g.throughput(Throughput::Elements(16));
    g.bench_function("scan 16 from a snapshot", |b| {
        b.iter(|| {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let start = (i % stored.saturating_sub(32).max(1)).to_be_bytes();
            let snap = store.snapshot();
            black_box(
                snap.scan(Table::Records, &[], Some(&start), 16, Direction::Forward)
                    .unwrap(),
            );
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
