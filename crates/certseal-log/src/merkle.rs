//! RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.
//!
//! Stored nodes are the complete subtrees: node `(level, index)` is the hash of leaves
//! `[index·2^level, (index+1)·2^level)`. Appending writes the leaf and the subtrees it
//! completes (two per append on average); any proof for any tree size reads O(log n) of them.

use certseal_crypto::sha256;

use crate::LogError;

/// A node or leaf hash.
pub type Hash = [u8; 32];

/// Hash of an entry as a leaf: SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    sha256(&[&[0x00], entry])
}

/// Hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// Root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// Reads stored complete-subtree hashes.
pub trait NodeReader {
    /// The hash of complete subtree `(level, index)`; an error if it is not stored.
    fn node(&self, level: u8, index: u64) -> Result<Hash, LogError>;
}

/// A complete subtree the tree gained by an append, to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    /// Height: 0 for a leaf.
    pub level: u8,
    /// Position among the subtrees of that height.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

/// The right edge of a tree: the hashes of the complete subtrees that make up its leaves, largest
/// first (one per set bit of the size). Enough to append and to compute the root; O(log n).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of the tree of `size` leaves, from stored nodes.
    pub fn load(nodes: &impl NodeReader, size: u64) -> Result<Self, LogError> {
        let hashes = subtrees(0, size)
            .map(|(level, index)| nodes.node(level, index))
            .collect::<Result<_, _>>()?;
        Ok(Self { size, hashes })
    }

    /// A frontier from its parts, as an export bundle carries them; checks the count.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, LogError> {
        if hashes.len() != size.count_ones() as usize {
            return Err(LogError::InvalidProof(format!(
                "a tree of {size} leaves has {} edge subtrees, {} were given",
                size.count_ones(),
                hashes.len()
            )));
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The edge subtree hashes, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf hash; returns the nodes to store (the leaf, then each completed subtree).
    pub fn append(&mut self, leaf: Hash) -> Vec<NewNode> {
        let n = self.size;
        let mut out = vec![NewNode {
            level: 0,
            index: n,
            hash: leaf,
        }];
        let mut hash = leaf;
        let mut level = 0u8;
        // Each trailing 1 bit of n is a subtree of that height waiting for a right sibling.
        while (n >> level) & 1 == 1 {
            let left = self.hashes.pop().expect("one edge hash per set bit");
            hash = node_hash(&left, &hash);
            level += 1;
            out.push(NewNode {
                level,
                index: n >> level,
                hash,
            });
        }
        self.hashes.push(hash);
        self.size += 1;
        out
    }

    /// The tree's root hash.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The complete aligned subtrees that cover leaves `[start, end)`, left to right, for a
/// `start` that is 0 or aligned as in the RFC's recursive split.
fn subtrees(start: u64, end: u64) -> impl Iterator<Item = (u8, u64)> {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let remaining = end - at;
        let mut level = 63 - remaining.leading_zeros();
        // The subtree must also be aligned at `at`.
        if at != 0 {
            level = level.min(at.trailing_zeros());
        }
        let item = (level as u8, at >> level);
        at += 1 << level;
        Some(item)
    })
}

/// Largest power of two smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `[start, end)`.
fn range_hash(nodes: &impl NodeReader, start: u64, end: u64) -> Result<Hash, LogError> {
    let parts: Vec<Hash> = subtrees(start, end)
        .map(|(l, i)| nodes.node(l, i))
        .collect::<Result<_, _>>()?;
    let mut it = parts.iter().rev();
    let last = *it.next().expect("a non-empty range has a subtree");
    Ok(it.fold(last, |acc, left| node_hash(left, &acc)))
}

/// Inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 PATH), leaf-side first.
pub fn inclusion_proof(
    nodes: &impl NodeReader,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, LogError> {
    if index >= size {
        return Err(LogError::OutOfRange(format!(
            "entry {index} is not in a tree of {size}"
        )));
    }
    let mut proof = Vec::new();
    let (mut m, mut start, mut n) = (index, 0u64, size);
    while n > 1 {
        let k = split(n);
        if m < k {
            proof.push(range_hash(nodes, start + k, start + n)?);
            n = k;
        } else {
            proof.push(range_hash(nodes, start, start + k)?);
            m -= k;
            start += k;
            n -= k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Consistency proof from the tree of `size1` leaves to the tree of `size2` (RFC 6962 PROOF).
pub fn consistency_proof(
    nodes: &impl NodeReader,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, LogError> {
    if size1 == 0 || size1 > size2 {
        return Err(LogError::OutOfRange(format!(
            "no consistency proof from size {size1} to size {size2}"
        )));
    }
    let mut proof = Vec::new();
    let (mut m, mut start, mut n, mut whole) = (size1, 0u64, size2, true);
    while m != n {
        let k = split(n);
        if m <= k {
            proof.push(range_hash(nodes, start + k, start + n)?);
            n = k;
        } else {
            proof.push(range_hash(nodes, start, start + k)?);
            m -= k;
            start += k;
            n -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(range_hash(nodes, start, start + m)?);
    }
    proof.reverse();
    Ok(proof)
}

fn bad(msg: impl Into<String>) -> LogError {
    LogError::InvalidProof(msg.into())
}

/// Checks that `leaf` is entry `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), LogError> {
    if index >= size {
        return Err(bad(format!("index {index} is not below size {size}")));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(bad("the proof is longer than the tree is deep"));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(bad("the proof is shorter than the tree is deep"));
    }
    if &r != root {
        return Err(bad("the proof does not lead to the root"));
    }
    Ok(())
}

/// Checks that the tree of `size1` leaves with `root1` is a prefix of the tree of `size2`
/// leaves with `root2` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), LogError> {
    if size1 > size2 {
        return Err(bad(format!("size {size1} is larger than size {size2}")));
    }
    if size1 == 0 {
        return Err(bad("consistency from the empty tree proves nothing"));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(bad("equal sizes take an empty proof"));
        }
        if root1 != root2 {
            return Err(bad("equal sizes with different roots"));
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(bad("the proof is empty"));
    }
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(root1);
    }
    path.extend(proof.iter());
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = *path[0];
    let mut sr = *path[0];
    for c in &path[1..] {
        if snode == 0 {
            return Err(bad("the proof is too long"));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(bad("the proof is too short"));
    }
    if &fr != root1 {
        return Err(bad("the proof does not lead to the first root"));
    }
    if &sr != root2 {
        return Err(bad("the proof does not lead to the second root"));
    }
    Ok(())
}

/// Parses a hash, refusing any length but 32 bytes.
pub fn parse_hash(bytes: &[u8]) -> Result<Hash, LogError> {
    bytes
        .try_into()
        .map_err(|_| bad(format!("a hash has 32 bytes, this one {}", bytes.len())))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Mem(HashMap<(u8, u64), Hash>);

    impl NodeReader for Mem {
        fn node(&self, level: u8, index: u64) -> Result<Hash, LogError> {
            self.0
                .get(&(level, index))
                .copied()
                .ok_or_else(|| LogError::Storage(format!("node {level}/{index} missing")))
        }
    }

    /// The RFC's recursive MTH, for comparison.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn appends_match_the_recursive_definition_and_every_proof_verifies() {
        let mut store = Mem::default();
        let mut f = Frontier::new();
        let mut leaves = Vec::new();
        let mut roots = vec![empty_root()];
        for i in 0..70u64 {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            for n in f.append(leaf) {
                store.0.insert((n.level, n.index), n.hash);
            }
            assert_eq!(f.root(), mth(&leaves), "root at size {}", i + 1);
            assert_eq!(Frontier::load(&store, i + 1).unwrap(), f);
            roots.push(f.root());
        }
        for size in 1..=70u64 {
            for index in 0..size {
                let p = inclusion_proof(&store, index, size).unwrap();
                verify_inclusion(
                    &leaves[index as usize],
                    index,
                    size,
                    &p,
                    &roots[size as usize],
                )
                .unwrap();
            }
            for size1 in 1..=size {
                let p = consistency_proof(&store, size1, size).unwrap();
                verify_consistency(
                    size1,
                    size,
                    &p,
                    &roots[size1 as usize],
                    &roots[size as usize],
                )
                .unwrap_or_else(|e| panic!("{size1} -> {size}: {e}"));
            }
        }
    }
}
