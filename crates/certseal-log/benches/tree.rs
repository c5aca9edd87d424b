//! Cost of appending to the log and of generating proofs, at 10^3, 10^5 and 10^6 entries.
//! The tree's nodes are held in a hash map standing in for the store, so the figures count
//! the algorithm's work (node reads and hashes), which must grow no faster than log n.
//!
//! `cargo bench -p certseal-log --bench tree`

use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;

use certseal_log::LogError;
use certseal_log::merkle::{
    Frontier, Hash, NodeReader, consistency_proof, inclusion_proof, leaf_hash,
};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

struct Nodes(HashMap<(u8, u64), Hash>, Cell<u64>);

impl NodeReader for Nodes {
    fn node(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        self.1.set(self.1.get() + 1);
        self.0
            .get(&(level, index))
            .copied()
            .ok_or_else(|| LogError::Storage("missing".into()))
    }
}

fn build(n: u64) -> (Nodes, Frontier) {
    let mut nodes = HashMap::with_capacity(2 * n as usize);
    let mut f = Frontier::new();
    for i in 0..n {
        for node in f.append(leaf_hash(&i.to_be_bytes())) {
            nodes.insert((node.level, node.index), node.hash);
        }
    }
    (Nodes(nodes, Cell::new(0)), f)
}

/// Node reads per operation: the storage cost, independent of the machine.
fn print_reads(trees: &[(u64, (Nodes, Frontier))]) {
    println!("node reads per operation (average over 1000), against log2(n):");
    for (n, (nodes, _)) in trees {
        let mut counts = [0u64; 2];
        for k in 0..1000u64 {
            let i = (k * 7_919) % n;
            nodes.1.set(0);
            inclusion_proof(nodes, i, *n).unwrap();
            counts[0] += nodes.1.get();
            nodes.1.set(0);
            consistency_proof(nodes, i.max(1), *n).unwrap();
            counts[1] += nodes.1.get();
        }
        println!(
            "  n = {n:>9}  log2(n) = {:>5.1}  inclusion {:>5.1}  consistency {:>5.1}  append writes (amortised) {:.2}",
            (*n as f64).log2(),
            counts[0] as f64 / 1000.0,
            counts[1] as f64 / 1000.0,
            (2 * n - n.count_ones() as u64) as f64 / *n as f64,
        );
    }
}

fn tree(c: &mut Criterion) {
    let sizes = [1_000u64, 100_000, 1_000_000];
    let trees: Vec<_> = sizes.iter().map(|&n| (n, build(n))).collect();
    print_reads(&trees);
    let mut g = c.benchmark_group("log");
    for (n, (nodes, frontier)) in &trees {
        g.bench_with_input(BenchmarkId::new("append", n), n, |b, _| {
            let leaf = leaf_hash(b"entry");
            b.iter_batched(
                || frontier.clone(),
                |mut f| black_box(f.append(leaf)),
                BatchSize::SmallInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("inclusion_proof", n), n, |b, &n| {
            let mut i = 0u64;
            b.iter(|| {
                // Walk the indexes so every depth and side is measured.
                i = (i + 7_919) % n;
                black_box(inclusion_proof(nodes, i, n).unwrap())
            })
        });
        g.bench_with_input(BenchmarkId::new("consistency_proof", n), n, |b, &n| {
            let mut m = 0u64;
            b.iter(|| {
                m = (m + 7_919) % (n - 1) + 1;
                black_box(consistency_proof(nodes, m, n).unwrap())
            })
        });
        g.bench_with_input(BenchmarkId::new("load_frontier", n), n, |b, &n| {
            b.iter(|| black_box(Frontier::load(nodes, n).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, tree);
criterion_main!(benches);
