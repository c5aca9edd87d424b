//! Reading the audit log: checkpoints, entries, inclusion and consistency proofs, export.
//! Every proof is returned with the signed checkpoint it proves against.

use certseal_core::{Actor, Role};
use certseal_log::merkle::{self, Frontier, Hash};
use certseal_log::{Checkpoint, Entry, TlogProof, VerifierKey};
use certseal_store::{Direction, Read, Table};

use crate::HolderRef;
use crate::access::Access;
use crate::audit::{SignedCheckpoint, StoredNodes, log_err};
use crate::{Registry, RegistryError};

const READING_LOG: &str = "reading the audit log";

/// Which entry to prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofTarget {
    /// By position.
    Index(u64),
    /// By RFC 6962 leaf hash, SHA-256(0x00 ‖ entry).
    LeafHash(Hash),
}

/// An entry's inclusion proof and the checkpoint it proves against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Entry index.
    pub index: u64,
    /// The entry's bytes.
    pub entry: Vec<u8>,
    /// Proof hashes, leaf side first.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: SignedCheckpoint,
}

impl InclusionProof {
    /// The proof as C2SP tlog-proof text, checkable alone.
    pub fn tlog_proof(&self) -> String {
        TlogProof {
            index: self.index,
            hashes: self.hashes.clone(),
            checkpoint: self.checkpoint.note.clone(),
        }
        .to_text()
    }
}

/// One exported entry with the record it commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportItem {
    /// Entry index.
    pub index: u64,
    /// The entry's bytes.
    pub entry: Vec<u8>,
    /// The record whose SHA-256 is the entry's digest.
    pub record: Vec<u8>,
}

/// Up to `limit` consecutive entries from index `start`, with their indexes; a gap is
/// corruption.
pub(crate) fn log_entries(
    r: &dyn Read,
    start: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, RegistryError> {
    let after = start.checked_sub(1).map(u64::to_be_bytes);
    let page = r.scan(
        Table::LogEntries,
        b"",
        after.as_ref().map(|a| a.as_slice()),
        limit,
        Direction::Forward,
    )?;
    page.items
        .into_iter()
        .enumerate()
        .map(|(i, (k, entry))| {
            let index = start + i as u64;
            if k != index.to_be_bytes() {
                return Err(RegistryError::Corrupt(format!(
                    "log entry {index} is missing"
                )));
            }
            Ok((index, entry))
        })
        .collect()
}

/// Most entries one export page reads.
pub const MAX_EXPORT_PAGE: usize = 1024;

impl Registry {
    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> SignedCheckpoint {
        if self.following() {
            // The leader signs; a follower serves the newest checkpoint the database holds.
            self.follow_checkpoint();
        }
        self.latest.read().expect("lock").clone()
    }

    /// The log's verifier key (`name+keyid+base64`).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier_key
    }

    /// The stored checkpoint of tree size `size`.
    pub fn checkpoint_at(&self, size: u64) -> Result<SignedCheckpoint, RegistryError> {
        let note = self
            .store
            .get(Table::LogCheckpoints, &size.to_be_bytes())?
            .ok_or_else(|| RegistryError::NotFound(format!("no checkpoint of size {size}")))?;
        let note = String::from_utf8(note)
            .map_err(|_| RegistryError::Corrupt("checkpoint is not text".into()))?;
        let checkpoint = Checkpoint::open(&note, &self.verifier_key).map_err(log_err)?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// One entry's bytes. With the policy enforced, auditors read every entry and other
    /// departments the entries of their own acts and the checks of licences they issued: who
    /// checked what is not for everyone. Every read of an entry (by index, by leaf hash)
    /// applies this one rule.
    pub fn get_entry(&self, actor: &Actor, index: u64) -> Result<Vec<u8>, RegistryError> {
        self.get_entry_for(actor, index, None)
    }

    /// [`Registry::get_entry`], for a holder agent acting for `holder`: it also reads the
    /// checks of that holder's licences.
    fn get_entry_for(
        &self,
        actor: &Actor,
        index: u64,
        holder: Option<&HolderRef>,
    ) -> Result<Vec<u8>, RegistryError> {
        let access = self.authorize_held(actor, READING_LOG)?;
        let entry = self.read_entry(index)?;
        if !self.may_read_entry(actor, &access, &entry, holder)? {
            return Err(self.deny(
                actor,
                READING_LOG,
                format!(
                    "entry {index} records another department's act; only auditors read every entry"
                ),
            ));
        }
        Ok(entry)
    }

    /// The reading rule of the log: auditors read every entry, a sharing platform the entries
    /// of its feed, others those of their own acts ([`Registry::entry_concerns`]).
    fn may_read_entry(
        &self,
        actor: &Actor,
        access: &Access,
        entry: &[u8],
        holder: Option<&HolderRef>,
    ) -> Result<bool, RegistryError> {
        if !access.enforced() || actor.role == Role::Auditor {
            return Ok(true);
        }
        // A sharing platform reads the entries its feed carries, to prove them.
        if actor.role == Role::Sync
            && self.feed_shows(access, &Entry::decode(entry).map_err(log_err)?)?
        {
            return Ok(true);
        }
        self.entry_concerns(actor, entry, holder)
    }

    /// The entry with leaf hash `hash` and its index, under the reading rule. To a caller who
    /// does not read every entry, an unknown hash and another department's entry get the same
    /// refusal: the hashes in proofs must not tell it which of them are leaves of the log.
    fn entry_by_leaf_hash(
        &self,
        actor: &Actor,
        hash: &Hash,
        holder: Option<&HolderRef>,
    ) -> Result<(u64, Vec<u8>), RegistryError> {
        let access = self.authorize_held(actor, READING_LOG)?;
        let reads_all = !access.enforced() || actor.role == Role::Auditor;
        let refused = || {
            self.deny(
                actor,
                READING_LOG,
                "no entry this department may read has this leaf hash; only auditors read every entry"
                    .into(),
            )
        };
        let Some(v) = self.store.get(Table::LogLeafIndex, hash)? else {
            return Err(if reads_all {
                RegistryError::NotFound("no entry with this leaf hash".into())
            } else {
                refused()
            });
        };
        let index = u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| RegistryError::Corrupt("leaf index".into()))?,
        );
        let entry = self.read_entry(index)?;
        if merkle::leaf_hash(&entry) != *hash {
            return Err(RegistryError::Corrupt(format!(
                "the leaf index points at entry {index}, which has another leaf hash"
            )));
        }
        if !self.may_read_entry(actor, &access, &entry, holder)? {
            return Err(refused());
        }
        Ok((index, entry))
    }

    fn read_entry(&self, index: u64) -> Result<Vec<u8>, RegistryError> {
        self.store
            .get(Table::LogEntries, &index.to_be_bytes())?
            .ok_or_else(|| RegistryError::NotFound(format!("log entry {index}")))
    }

    /// Whether an entry records the caller's own act, or a check of a licence it issued; for a
    /// holder agent naming `holder`, a check of one of that holder's licences (or the use of
    /// one of their codes).
    fn entry_concerns(
        &self,
        actor: &Actor,
        bytes: &[u8],
        holder: Option<&HolderRef>,
    ) -> Result<bool, RegistryError> {
        let entry = Entry::decode(bytes).map_err(log_err)?;
        if entry.actor_department == actor.department.as_str() {
            return Ok(true);
        }
        let licence = match entry.extra.get("licence") {
            Some(certseal_log::Extra::Text(id))
                if entry.kind == "receipt.issued" || entry.kind == "use_code.used" =>
            {
                id
            }
            _ => return Ok(false),
        };
        let Ok(id) = licence.parse::<certseal_core::LicenceId>() else {
            return Ok(false);
        };
        let Some(l) = crate::licences::load_licence(self.store.snapshot().as_ref(), &id)? else {
            return Ok(false);
        };
        let holders = holder.filter(|_| actor.role == Role::HolderAgent);
        Ok(l.issuer == actor.department
            || holders.is_some_and(|h| h.kind == l.holder_kind && h.id == l.holder_id))
    }

    /// An entry's inclusion proof against the latest checkpoint.
    /// A holder agent names the holder it acts for to read the checks of their licences.
    pub fn inclusion_proof(
        &self,
        actor: &Actor,
        target: ProofTarget,
        holder: Option<&HolderRef>,
    ) -> Result<InclusionProof, RegistryError> {
        let (index, entry) = match target {
            ProofTarget::Index(i) => (i, self.get_entry_for(actor, i, holder)?),
            ProofTarget::LeafHash(h) => self.entry_by_leaf_hash(actor, &h, holder)?,
        };
        let checkpoint = self.latest_checkpoint();
        if index >= checkpoint.checkpoint.size {
            return Err(RegistryError::FailedPrecondition(format!(
                "entry {index} is not yet covered by a signed checkpoint; retry in a moment"
            )));
        }
        let hashes = merkle::inclusion_proof(
            &StoredNodes(self.store.as_ref()),
            index,
            checkpoint.checkpoint.size,
        )
        .map_err(log_err)?;
        Ok(InclusionProof {
            index,
            entry,
            hashes,
            checkpoint,
        })
    }

    /// A consistency proof from tree size `from` to `to` (0: the latest checkpoint), with the
    /// checkpoint of `to`.
    pub fn consistency_proof(
        &self,
        actor: &Actor,
        from: u64,
        to: u64,
    ) -> Result<(Vec<Hash>, SignedCheckpoint), RegistryError> {
        // Only hashes: interior ones, and leaf hashes, which open no entry the caller may not
        // read (the leaf-hash look-up applies the reading rule).
        self.authorize_held(actor, READING_LOG)?;
        let checkpoint = match to {
            0 => self.latest_checkpoint(),
            n => self.checkpoint_at(n)?,
        };
        let to = checkpoint.checkpoint.size;
        if from == 0 || from > to {
            return Err(RegistryError::invalid(
                "from_size",
                format!("must be between 1 and {to}"),
            ));
        }
        let proof = merkle::consistency_proof(&StoredNodes(self.store.as_ref()), from, to)
            .map_err(log_err)?;
        Ok((proof, checkpoint))
    }

    /// The compact range of `[0, size)`: the hashes an export starting at `size` carries so an
    /// auditor can link it to the checkpoint of `size`. Needs the auditor role.
    pub fn compact_range(&self, actor: &Actor, size: u64) -> Result<Vec<Hash>, RegistryError> {
        self.authorize(actor, Role::Auditor, "exporting the audit log")?;
        let frontier = Frontier::load(&StoredNodes(self.store.as_ref()), size).map_err(log_err)?;
        Ok(frontier.hashes().to_vec())
    }

    /// Up to `max` stored signed checkpoints with sizes spread inside `(start, end)`, ascending.
    pub fn anchors(&self, start: u64, end: u64, max: u64) -> Result<Vec<String>, RegistryError> {
        let mut out: Vec<(u64, String)> = Vec::new();
        let span = end.saturating_sub(start);
        for k in 1..=max {
            let target = start + span * k / (max + 1);
            if target <= start {
                continue;
            }
            // The latest checkpoint at or below the target.
            let page = self.store.scan(
                Table::LogCheckpoints,
                b"",
                Some(&(target + 1).to_be_bytes()),
                1,
                Direction::Reverse,
            )?;
            if let Some((k, note)) = page.items.into_iter().next() {
                let size = u64::from_be_bytes(
                    k.as_slice()
                        .try_into()
                        .map_err(|_| RegistryError::Corrupt("checkpoint key".into()))?,
                );
                if size > start && size < end && out.last().is_none_or(|(s, _)| *s < size) {
                    let note = String::from_utf8(note)
                        .map_err(|_| RegistryError::Corrupt("checkpoint is not text".into()))?;
                    out.push((size, note));
                }
            }
        }
        Ok(out.into_iter().map(|(_, n)| n).collect())
    }

    /// Up to `limit` entries from `start` (below `end`), each with its record. Needs the
    /// auditor role.
    pub fn export_page(
        &self,
        actor: &Actor,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<ExportItem>, RegistryError> {
        self.authorize(actor, Role::Auditor, "exporting the audit log")?;
        let snap = self.store.snapshot();
        let limit = limit
            .clamp(1, MAX_EXPORT_PAGE)
            .min((end.saturating_sub(start)) as usize);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries = log_entries(snap.as_ref(), start, limit)?;
        let mut out = Vec::with_capacity(entries.len());
        for (index, entry) in entries {
            let digest = Entry::decode(&entry).map_err(log_err)?.digest;
            let record = snap.get(Table::Records, &digest)?.ok_or_else(|| {
                RegistryError::Corrupt(format!("record of entry {index} is missing"))
            })?;
            out.push(ExportItem {
                index,
                entry,
                record,
            });
        }
        Ok(out)
    }
}
