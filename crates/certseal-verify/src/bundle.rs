//! Audit export bundles, version 1: writing and offline verification.
//!
//! A bundle is a folder:
//! - `bundle.json`: `{"format": "certseal-audit-bundle/1", "origin", "start", "end",
//!   "compact_range": [base64 …], "anchors": [signed checkpoint …]}`
//! - `checkpoint`: the signed checkpoint the bundle ends at (its size is `end`);
//! - `entries.bin`: entries `start..end` in order, each as a 4-byte big-endian length and the
//!   entry's deterministic CBOR;
//! - `records.bin`: every record the entries commit to, once each, framed the same way.
//!
//! `compact_range` holds the hashes of the complete subtrees of `[0, start)`, largest first: with
//! them and the entries an auditor recomputes the root of `end`, and checks that the root of
//! `start` is the one of a checkpoint they already trust. `anchors` are signed checkpoints
//! inside the range (a bounded number): a tampered entry is located between two of them.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certseal_crypto::sha256;
use certseal_log::merkle::{Frontier, Hash, leaf_hash, parse_hash};
use certseal_log::restore::{RESTORED_KIND, split_origin};
use certseal_log::{Checkpoint, Entry, Extra, Restoration, VerifierKey};
use serde::{Deserialize, Serialize};

use crate::VerifyError;

/// Format tag of version 1 bundles.
pub const FORMAT: &str = "certseal-audit-bundle/1";
/// The manifest.
pub const MANIFEST_FILE: &str = "bundle.json";
/// The signed checkpoint the bundle ends at.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// The entries.
pub const ENTRIES_FILE: &str = "entries.bin";
/// The records.
pub const RECORDS_FILE: &str = "records.bin";
/// Largest framed item accepted (an entry or a record).
const MAX_ITEM: usize = 16 << 20;

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The log's origin.
    pub origin: String,
    /// First entry.
    pub start: u64,
    /// End of the entries (exclusive); the checkpoint's size.
    pub end: u64,
    /// Complete subtree hashes of `[0, start)`, base64, largest first.
    pub compact_range: Vec<String>,
    /// Signed checkpoints with sizes inside `(start, end)`, ascending.
    #[serde(default)]
    pub anchors: Vec<String>,
}

fn file_err(file: &str, reason: impl ToString) -> VerifyError {
    VerifyError::File {
        file: file.to_owned(),
        reason: reason.to_string(),
    }
}

fn write_frame(w: &mut impl Write, item: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(item.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(item)
}

/// Reads the next frame; `None` at a clean end of file.
fn read_frame(r: &mut impl Read, file: &str) -> Result<Option<Vec<u8>>, VerifyError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(file_err(file, "truncated length prefix")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(file_err(file, e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ITEM {
        return Err(file_err(
            file,
            format!("an item of {len} bytes is too large"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .map_err(|_| file_err(file, "truncated item"))?;
    Ok(Some(buf))
}

/// Writes a bundle while an export streams in.
#[derive(Debug)]
pub struct Bundle {
    entries: BufWriter<std::fs::File>,
    records: BufWriter<std::fs::File>,
    seen_records: HashSet<Hash>,
    manifest: Manifest,
    next: u64,
}

impl Bundle {
    /// Starts a bundle in `dir` (created if needed) for entries `start..end`, ending at the
    /// signed `checkpoint`.
    pub fn create(
        dir: &Path,
        origin: &str,
        start: u64,
        end: u64,
        compact_range: &[Hash],
        checkpoint_note: &str,
        anchors: Vec<String>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(CHECKPOINT_FILE), checkpoint_note)?;
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            origin: origin.to_owned(),
            start,
            end,
            compact_range: compact_range.iter().map(|h| STANDARD.encode(h)).collect(),
            anchors,
        };
        std::fs::write(
            dir.join(MANIFEST_FILE),
            serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?,
        )?;
        Ok(Self {
            entries: BufWriter::new(std::fs::File::create(dir.join(ENTRIES_FILE))?),
            records: BufWriter::new(std::fs::File::create(dir.join(RECORDS_FILE))?),
            seen_records: HashSet::new(),
            manifest,
            next: start,
        })
    }

    /// Adds the next entry and its record.
    pub fn push(&mut self, index: u64, entry: &[u8], record: &[u8]) -> std::io::Result<()> {
        if index != self.next {
            return Err(std::io::Error::other(format!(
                "expected entry {}, the export sent {index}",
                self.next
            )));
        }
        write_frame(&mut self.entries, entry)?;
        if self.seen_records.insert(sha256(&[record])) {
            write_frame(&mut self.records, record)?;
        }
        self.next += 1;
        Ok(())
    }

    /// Flushes the files; fails if the export stopped short of the checkpoint.
    pub fn finish(mut self) -> std::io::Result<u64> {
        if self.next != self.manifest.end {
            return Err(std::io::Error::other(format!(
                "the export stopped at entry {} of {}",
                self.next, self.manifest.end
            )));
        }
        self.entries.flush()?;
        self.records.flush()?;
        self.entries.get_ref().sync_all()?;
        self.records.get_ref().sync_all()?;
        Ok(self.next - self.manifest.start)
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// The verified checkpoint the bundle ends at.
    pub checkpoint: Checkpoint,
    /// First entry.
    pub start: u64,
    /// Entries checked.
    pub entries: u64,
    /// Records checked.
    pub records: u64,
    /// Whether the bundle was linked to an earlier trusted checkpoint.
    pub linked_to_previous: bool,
    /// Restores of the log from a backup inside the range, in log order.
    pub restorations: Vec<RestorationReport>,
}

/// A `log.restored` entry the bundle holds, checked: the backup checkpoint it names is signed
/// by the log's key and has the root of the entries before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorationReport {
    /// The entry's index: the size of the backup the log was restored from.
    pub index: u64,
    /// The origin before the restore.
    pub old_origin: String,
    /// The origin from this entry on.
    pub new_origin: String,
    /// The size of the newest old checkpoint the operator gave at the restore, if any: past
    /// `index`, the old log's entries `index..last_size` are not in this log.
    pub last_size: Option<u64>,
    /// The old log's size through which its suspensions and revocations were re-applied.
    pub replayed_to: Option<u64>,
}

/// Reads and checks `bundle.json`'s format.
pub fn read_manifest(dir: &Path) -> Result<Manifest, VerifyError> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join(MANIFEST_FILE)).map_err(|e| file_err(MANIFEST_FILE, e))?,
    )
    .map_err(|e| file_err(MANIFEST_FILE, e))?;
    if manifest.format != FORMAT {
        return Err(file_err(
            MANIFEST_FILE,
            format!(
                "format '{}', this verifier reads '{FORMAT}'",
                manifest.format
            ),
        ));
    }
    Ok(manifest)
}

/// The checkpoint of a signed note, parsed without checking its signature (checked later,
/// with the key in force at its size).
fn unverified(note: &str) -> Result<Checkpoint, VerifyError> {
    let body = note.split("\n\n").next().unwrap_or_default();
    Checkpoint::parse_text(body).map_err(|e| VerifyError::Checkpoint(e.to_string()))
}

/// A checkpoint to compare with the tree when it reaches its size.
struct Anchor {
    checkpoint: Checkpoint,
    /// The note, checked with the key in force at its size; `None` if already checked.
    note: Option<String>,
}

/// A `log.restored` entry seen, to be checked against its record.
struct SeenRestoration {
    index: u64,
    digest: Hash,
    root_before: Hash,
    key_before: VerifierKey,
    new_origin: String,
}

/// Verifies the bundle in `dir` with the log's key. The report's `start` says where the
/// verified range begins: a bundle that starts after 0 proves nothing about entries before it
/// unless it is linked to a trusted checkpoint with `previous`. With `previous` (a signed checkpoint the
/// auditor already trusts, of size at most the bundle's end, and at least its start), also
/// checks that the log the auditor saw then is a prefix of this one. `progress` is called with
/// the number of entries checked so far.
///
/// `key` is the log's key as of the bundle's start. The log changes origin only at a
/// `log.restored` entry (a restore from a backup): from there on its checkpoints are checked
/// under the new origin with the same public key, once the entry's record shows the backup
/// checkpoint signed by that key with the root of the entries before it.
pub fn verify(
    dir: &Path,
    key: &VerifierKey,
    previous: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<BundleReport, VerifyError> {
    let manifest = read_manifest(dir)?;
    let wrong_log = || {
        file_err(
            MANIFEST_FILE,
            format!(
                "the bundle is of log '{}', the key is of '{}'",
                manifest.origin,
                key.name()
            ),
        )
    };
    // Only a restore of the same log changes the origin.
    if manifest.origin != key.name()
        && split_origin(&manifest.origin).0 != split_origin(key.name()).0
    {
        return Err(wrong_log());
    }
    let note = std::fs::read_to_string(dir.join(CHECKPOINT_FILE))
        .map_err(|e| file_err(CHECKPOINT_FILE, e))?;
    let cp = unverified(&note)?;
    if cp.size != manifest.end {
        return Err(VerifyError::Checkpoint(format!(
            "the checkpoint is of size {}, the bundle's entries end at {}",
            cp.size, manifest.end
        )));
    }
    if manifest.start > manifest.end {
        return Err(file_err(MANIFEST_FILE, "start is after end"));
    }
    let previous = previous
        .map(|n| Checkpoint::open(n, key))
        .transpose()
        .map_err(|e| VerifyError::Checkpoint(format!("previous checkpoint: {e}")))?;
    if let Some(p) = &previous
        && p.size > manifest.end
        && split_origin(&manifest.origin).1 > split_origin(&p.origin).1
    {
        return Err(VerifyError::Checkpoint(format!(
            "the previous checkpoint (size {}) is of log '{}' before it was restored from a backup; the bundle is of '{}', which ends at {}: what the old log held past the restore point is not in this log (see its log.restored entry)",
            p.size, p.origin, manifest.origin, manifest.end
        )));
    }
    if let Some(p) = &previous
        && (p.size < manifest.start || p.size > manifest.end)
    {
        return Err(VerifyError::Checkpoint(format!(
            "the previous checkpoint (size {}) is outside the bundle's range {}..{}",
            p.size, manifest.start, manifest.end
        )));
    }
    let mut anchors: Vec<Anchor> = manifest
        .anchors
        .iter()
        .map(|n| {
            Ok(Anchor {
                checkpoint: unverified(n)
                    .map_err(|e| VerifyError::Checkpoint(format!("anchor: {e}")))?,
                note: Some(n.clone()),
            })
        })
        .collect::<Result<_, VerifyError>>()?;
    anchors.extend(previous.clone().map(|checkpoint| Anchor {
        checkpoint,
        note: None,
    }));
    anchors.push(Anchor {
        checkpoint: cp.clone(),
        note: Some(note.clone()),
    });
    anchors.sort_by_key(|a| a.checkpoint.size);

    let compact = manifest
        .compact_range
        .iter()
        .map(|h| {
            let b = STANDARD
                .decode(h)
                .map_err(|_| file_err(MANIFEST_FILE, "compact_range is not base64"))?;
            parse_hash(&b).map_err(|e| file_err(MANIFEST_FILE, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut frontier =
        Frontier::from_parts(manifest.start, compact).map_err(|e| file_err(MANIFEST_FILE, e))?;

    // Records by digest; each must be committed to by some entry.
    let mut records: HashMap<Hash, bool> = HashMap::new();
    let mut rf = BufReader::new(
        std::fs::File::open(dir.join(RECORDS_FILE)).map_err(|e| file_err(RECORDS_FILE, e))?,
    );
    while let Some(r) = read_frame(&mut rf, RECORDS_FILE)? {
        records.insert(sha256(&[&r]), false);
    }

    let mut ef = BufReader::new(
        std::fs::File::open(dir.join(ENTRIES_FILE)).map_err(|e| file_err(ENTRIES_FILE, e))?,
    );
    let mut current = key.clone();
    let mut seen: Vec<SeenRestoration> = Vec::new();
    let mut anchor_at = 0usize;
    let mut range_start = manifest.start;
    let mut last_time = i64::MIN;
    let total = manifest.end - manifest.start;
    if let Some(p) = &previous
        && p.size == manifest.start
        && p.root != frontier.root()
    {
        return Err(VerifyError::Checkpoint(format!(
            "the bundle's compact range does not lead to the root of the previous checkpoint (size {}): this log does not extend the one you trusted",
            p.size
        )));
    }
    check_anchors(
        &frontier,
        &anchors,
        &current,
        &seen,
        &mut anchor_at,
        &mut range_start,
    )?;
    for index in manifest.start..manifest.end {
        let bytes = read_frame(&mut ef, ENTRIES_FILE)?.ok_or_else(|| VerifyError::Entry {
            index,
            reason: format!("missing: {ENTRIES_FILE} ends before the checkpoint's size"),
        })?;
        let entry_err = |reason: String| VerifyError::Entry { index, reason };
        let entry = Entry::decode(&bytes).map_err(|e| entry_err(e.to_string()))?;
        if entry.seq != index {
            return Err(entry_err(format!(
                "out of place: it says it is entry {}",
                entry.seq
            )));
        }
        if entry.time < last_time {
            return Err(entry_err(
                "its time is earlier than the entry before it".into(),
            ));
        }
        last_time = entry.time;
        match records.get_mut(&entry.digest) {
            Some(used) => *used = true,
            None => {
                return Err(entry_err(
                    "the record it commits to is not in the bundle, or was altered".into(),
                ));
            }
        }
        if entry.kind == RESTORED_KIND {
            let text = |k: &str| match entry.extra.get(k) {
                Some(Extra::Text(t)) => Ok(t.clone()),
                _ => Err(entry_err(format!("a {RESTORED_KIND} entry names its {k}"))),
            };
            let old_origin = text("old_origin")?;
            let new_origin = text("new_origin")?;
            if old_origin != current.name() {
                return Err(entry_err(format!(
                    "it restores log '{old_origin}', but the log here is '{}'{}",
                    current.name(),
                    if index == manifest.start {
                        ""
                    } else {
                        " (verify with the key of the log as it was at the bundle's start)"
                    }
                )));
            }
            let next = current
                .renamed(&new_origin)
                .map_err(|e| entry_err(format!("new origin: {e}")))?;
            seen.push(SeenRestoration {
                index,
                digest: entry.digest,
                root_before: frontier.root(),
                key_before: std::mem::replace(&mut current, next),
                new_origin,
            });
        }
        frontier.append(leaf_hash(&bytes));
        check_anchors(
            &frontier,
            &anchors,
            &current,
            &seen,
            &mut anchor_at,
            &mut range_start,
        )?;
        let done = index + 1 - manifest.start;
        if done.is_multiple_of(4096) || done == total {
            progress(done, total);
        }
    }
    if read_frame(&mut ef, ENTRIES_FILE)?.is_some() {
        return Err(VerifyError::Entry {
            index: manifest.end,
            reason: "extra entry after the checkpoint's size".into(),
        });
    }
    if let Some(unused) = records.iter().find(|(_, used)| !**used) {
        return Err(file_err(
            RECORDS_FILE,
            format!(
                "record with digest {} is not committed to by any entry",
                STANDARD.encode(unused.0)
            ),
        ));
    }
    if current.name() != manifest.origin {
        return Err(wrong_log());
    }
    let restorations = check_restorations(dir, &seen)?;
    Ok(BundleReport {
        checkpoint: cp,
        start: manifest.start,
        entries: total,
        records: records.len() as u64,
        linked_to_previous: previous.is_some(),
        restorations,
    })
}

/// Checks each `log.restored` entry against the record it commits to.
fn check_restorations(
    dir: &Path,
    seen: &[SeenRestoration],
) -> Result<Vec<RestorationReport>, VerifyError> {
    if seen.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: HashSet<Hash> = seen.iter().map(|s| s.digest).collect();
    let records = read_records(dir, &wanted)?;
    seen.iter()
        .map(|s| {
            let err = |reason: String| VerifyError::Entry {
                index: s.index,
                reason,
            };
            let r = Restoration::decode(&records[&s.digest]).map_err(|e| err(e.to_string()))?;
            if r.old_origin != s.key_before.name() || r.new_origin != s.new_origin {
                return Err(err("its record names other origins than the entry".into()));
            }
            let backup = Checkpoint::open(&r.backup_checkpoint, &s.key_before)
                .map_err(|e| err(format!("the backup checkpoint: {e}")))?;
            if backup.size != s.index || backup.root != s.root_before {
                return Err(err(format!(
                    "the backup checkpoint (size {}) is not the log's head before this entry: this is not a restore of this log",
                    backup.size
                )));
            }
            let last_size = r
                .last_checkpoint
                .as_deref()
                .map(|n| Checkpoint::open(n, &s.key_before).map(|c| c.size))
                .transpose()
                .map_err(|e| err(format!("the last old checkpoint: {e}")))?;
            Ok(RestorationReport {
                index: s.index,
                old_origin: r.old_origin,
                new_origin: r.new_origin,
                last_size,
                replayed_to: r.replayed_to,
            })
        })
        .collect()
}

/// Calls `f` with each entry of the bundle in `dir`, in order, with its index. For reading a
/// bundle that [`verify`] accepted.
pub fn for_each_entry(
    dir: &Path,
    mut f: impl FnMut(u64, Entry) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let manifest = read_manifest(dir)?;
    let mut ef = BufReader::new(
        std::fs::File::open(dir.join(ENTRIES_FILE)).map_err(|e| file_err(ENTRIES_FILE, e))?,
    );
    for index in manifest.start..manifest.end {
        let bytes = read_frame(&mut ef, ENTRIES_FILE)?.ok_or_else(|| VerifyError::Entry {
            index,
            reason: format!("missing: {ENTRIES_FILE} ends before the checkpoint's size"),
        })?;
        let entry = Entry::decode(&bytes).map_err(|e| VerifyError::Entry {
            index,
            reason: e.to_string(),
        })?;
        f(index, entry)?;
    }
    Ok(())
}

/// The records of the bundle in `dir` whose digests are `wanted`; every one must be there.
pub fn read_records(
    dir: &Path,
    wanted: &HashSet<Hash>,
) -> Result<HashMap<Hash, Vec<u8>>, VerifyError> {
    let mut out = HashMap::new();
    let mut rf = BufReader::new(
        std::fs::File::open(dir.join(RECORDS_FILE)).map_err(|e| file_err(RECORDS_FILE, e))?,
    );
    while let Some(r) = read_frame(&mut rf, RECORDS_FILE)? {
        let d = sha256(&[&r]);
        if wanted.contains(&d) {
            out.insert(d, r);
        }
    }
    if let Some(missing) = wanted.iter().find(|d| !out.contains_key(*d)) {
        return Err(file_err(
            RECORDS_FILE,
            format!("no record with digest {}", STANDARD.encode(missing)),
        ));
    }
    Ok(out)
}

/// Checks every anchor whose size the tree has reached, each signature with the key in force
/// at its size.
fn check_anchors(
    frontier: &Frontier,
    anchors: &[Anchor],
    key: &VerifierKey,
    seen: &[SeenRestoration],
    at: &mut usize,
    range_start: &mut u64,
) -> Result<(), VerifyError> {
    while let Some(a) = anchors.get(*at) {
        let size = a.checkpoint.size;
        if size > frontier.size() {
            break;
        }
        if size < frontier.size() {
            // Before the bundle's first entry: nothing of this bundle to compare with it.
            *at += 1;
            continue;
        }
        if let Some(note) = &a.note {
            let opened = Checkpoint::open(note, key)
                .map_err(|e| VerifyError::Checkpoint(format!("checkpoint of size {size}: {e}")))?;
            if opened != a.checkpoint {
                return Err(VerifyError::Checkpoint(format!(
                    "checkpoint of size {size} does not read as signed"
                )));
            }
        }
        if a.checkpoint.root != frontier.root() {
            let restored = seen
                .iter()
                .rev()
                .find(|s| s.index < size)
                .map(|s| {
                    format!(
                        " (the log was restored from a backup at entry {}: what '{}' held past it is not in this log)",
                        s.index,
                        s.key_before.name()
                    )
                })
                .unwrap_or_default();
            return Err(VerifyError::Range {
                start: *range_start,
                end: size,
                reason: format!(
                    "they do not produce the root of the signed checkpoint of size {size}: an entry in this range was altered, dropped or reordered{restored}"
                ),
            });
        }
        *range_start = size;
        *at += 1;
    }
    Ok(())
}
