//! The RFC 6962 inclusion and consistency vectors of transparency-dev/merkle (tests/data/):
//! positive ones verify, negative ones are rejected.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certseal_log::LogError;
use certseal_log::merkle::{Hash, parse_hash, verify_consistency, verify_inclusion};
use serde_json::Value;

fn files(dir: &str) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    // Cargo names the package's folder when it runs the test; the one compiled in may be
    // another clone's, when a shared target folder reuses this unchanged test binary.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    walk(&root.join("tests/data").join(dir), &mut out);
    out.sort();
    out
}

fn hash(v: &Value) -> Result<Hash, LogError> {
    let bytes = match v {
        Value::Null => Vec::new(),
        v => STANDARD.decode(v.as_str().unwrap()).unwrap(),
    };
    parse_hash(&bytes)
}

fn hashes(v: &Value) -> Result<Vec<Hash>, LogError> {
    match v {
        Value::Null => Ok(Vec::new()),
        v => v.as_array().unwrap().iter().map(hash).collect(),
    }
}

fn load(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn inclusion_vectors() {
    let all = files("inclusion");
    assert!(all.len() > 50, "vectors are present");
    for p in &all {
        let v = load(p);
        let result = (|| {
            verify_inclusion(
                &hash(&v["leafHash"])?,
                v["leafIdx"].as_u64().unwrap(),
                v["treeSize"].as_u64().unwrap(),
                &hashes(&v["proof"])?,
                &hash(&v["root"])?,
            )
        })();
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(result.is_err(), want_err, "{}: {result:?}", p.display());
    }
}

#[test]
fn consistency_vectors() {
    let all = files("consistency");
    assert!(all.len() > 50, "vectors are present");
    for p in &all {
        let v = load(p);
        let result = (|| {
            verify_consistency(
                v["size1"].as_u64().unwrap(),
                v["size2"].as_u64().unwrap(),
                &hashes(&v["proof"])?,
                &hash(&v["root1"])?,
                &hash(&v["root2"])?,
            )
        })();
        let mut want_err = v["wantErr"].as_bool().unwrap();
        if p.ends_with("additional/sizes-are-equal-one-and-proof-is-empty.json") {
            // The one positive vector whose roots are 12-byte placeholders. A hash that is not
            // 32 bytes is never a root of this log, so it is refused before any comparison.
            assert!(matches!(&result, Err(LogError::InvalidProof(m)) if m.contains("32 bytes")));
            want_err = true;
        }
        assert_eq!(result.is_err(), want_err, "{}: {result:?}", p.display());
    }
}

#[test]
fn all_196_vectors_are_checked() {
    assert_eq!(files("inclusion").len() + files("consistency").len(), 196);
}
