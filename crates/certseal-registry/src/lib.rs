//! The registry: the operations of certseal on stored records, independent of any transport.
//!
//! Each write is one sequenced, atomic, durable operation ([`certseal_store::Sequencer`]) that
//! checks its preconditions against the latest state and writes the record with its indexes.
//! Reads go to the store directly, listing from one snapshot. Every operation runs for an
//! [`Actor`] and checks what that actor may do.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod audit;
mod audit_read;
mod backup;
mod cache;
mod client_certs;
mod cluster;
mod codec;
mod departments;
mod error;
pub mod esl;
mod feed;
mod holders;
mod licence_files;
mod licences;
mod paging;
mod public;
mod request_ids;
mod seal_ca;
mod seals;
mod signing;
mod status_list;
mod templates;
mod upstream;
mod verification;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use certseal_core::Timestamp;
use certseal_log::VerifierKey;
use certseal_store::{Batch, KvStore, Sequencer, SequencerOptions, StoreOpener, Table};

use crate::audit::Latest;

pub use access::{AccessOptions, MAX_CLIENT_CERT_DAYS};

pub use audit::SignedCheckpoint;
pub use audit_read::{ExportItem, InclusionProof, ProofTarget};
pub use backup::{Backup, RestorePlan, RestoreReport, RestoreState, restore};
pub use client_certs::{
    CRL_VALIDITY_DAYS, CertificateRevocation, ClientCaSlot, DepartmentCertificateRecord,
    MAX_REVOCATION_REASON, RevokedCertificates,
};
pub use error::RegistryError;
pub use feed::{ChangeSubject, ChangedLicence, FeedChange, FeedPage, MAX_FEED_PAGE, national_term};
pub use holders::{Clock, CreatedUseCode, HolderRef, NewUseCode, UsageView};
pub use licence_files::{LicenceFile, OFD_DOCUMENT_SHA256, OFD_KIND, OFD_LICENCE_ID, OfdOptions};
pub use licences::{
    CollectedRequest, IssueRequest, LicenceFilter, LicenceView, MAX_FIELDS, MAX_IDEMPOTENCY_KEY,
    Reissue, ReissueRequest,
};
pub use paging::{PageRequest, Paged};
pub use public::{PUBLIC_PAGE_PURPOSE, PublicField, PublicSeal, PublicView, mask_id, mask_name};
pub use request_ids::{DEFAULT_REQUEST_ID_RETENTION, MAX_REQUEST_ID};
pub use seal_ca::ConfiguredCa;
pub use seals::{
    CertificateRequest, NewSeal, SealFilter, SealUsabilityAnswer, SealView, SignedTrustList,
    rewrap_keys,
};
pub use status_list::SignedStatusList;
pub use templates::{CatalogueEntry, MAX_CATALOGUE_TYPES, TemplateFilter, TemplateSelector};
pub use upstream::{AppliedUpstream, MAX_UPSTREAM_REFERENCE, MAX_UPSTREAM_SOURCE, UpstreamChange};
pub use verification::{DEFAULT_PURPOSES, ReceiptView, Subject, Verification};

/// Written into a new data folder; a folder with another value is refused.
pub const DATA_FORMAT: &str = "certseal-data/1";
const META_FORMAT_KEY: &[u8] = b"format";
const META_CREATED_KEY: &[u8] = b"created_at";

/// The folder of a data folder's store, when the store keeps its files there.
pub const STORE_DIR: &str = "db";

/// Default origin (and key name) of the audit log.
pub const DEFAULT_LOG_ORIGIN: &str = "certseal.local/log";

/// How to open a registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Group commit tuning.
    pub sequencer: SequencerOptions,
    /// Key-encryption key file; `None` means `<data_dir>/keys/kek`.
    pub kek_file: Option<PathBuf>,
    /// The audit log's origin line and key name, fixed at first start.
    pub log_origin: String,
    /// A seal CA to take in at first start instead of generating one.
    pub seal_ca: Option<ConfiguredCa>,
    /// External CAs whose seal certificates may be imported.
    pub trust_anchors: Vec<certseal_crypto::Certificate>,
    /// Purpose codes a verification may state.
    pub purposes: Vec<String>,
    /// Sharing-policy enforcement and the bootstrap administrator.
    pub access: AccessOptions,
    /// Bounds on request contents.
    pub input: InputLimits,
    /// How long a change's request ID is remembered with its outcome.
    pub request_id_retention: std::time::Duration,
    /// How licence files (OFD) are drawn.
    pub ofd: OfdOptions,
    /// The clock use codes are judged by (the system clock; tests move it forward).
    pub clock: Clock,
}

/// Bounds on what one request may carry, at most the built-in maxima.
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    /// Most fields in one licence (at most [`MAX_FIELDS`]).
    pub max_licence_fields: usize,
    /// Largest seal image in bytes (at most [`certseal_core::seal::MAX_SEAL_IMAGE`]).
    pub max_seal_image_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_licence_fields: MAX_FIELDS,
            max_seal_image_bytes: certseal_core::seal::MAX_SEAL_IMAGE,
        }
    }
}

impl RegistryOptions {
    /// The key-encryption key file of the data folder `data_dir`.
    pub fn kek_file(&self, data_dir: &Path) -> PathBuf {
        self.kek_file
            .clone()
            .unwrap_or_else(|| data_dir.join("keys").join("kek"))
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            sequencer: SequencerOptions::default(),
            kek_file: None,
            log_origin: DEFAULT_LOG_ORIGIN.to_owned(),
            seal_ca: None,
            trust_anchors: Vec::new(),
            purposes: verification::DEFAULT_PURPOSES
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            access: AccessOptions::default(),
            input: InputLimits::default(),
            request_id_retention: request_ids::DEFAULT_REQUEST_ID_RETENTION,
            ofd: OfdOptions::default(),
            clock: Clock::default(),
        }
    }
}

/// Figures for monitoring, read at each scrape.
#[derive(Debug, Clone)]
pub struct OperationalStats {
    /// Entries covered by the latest signed checkpoint.
    pub log_size: u64,
    /// Milliseconds since the latest checkpoint was signed (or the registry opened).
    pub checkpoint_age_ms: i64,
    /// Group commits so far.
    pub groups: certseal_store::SequencerStats,
    /// The store's own figures (name, value), summed over tables.
    pub store: Vec<(&'static str, u64)>,
    /// Licences issued since the registry opened.
    pub licences_issued: u64,
    /// Checks since the registry opened, by indication.
    pub checks: [(&'static str, u64); 3],
    /// Why writes are stopped, while they are.
    pub writer_stopped: Option<certseal_store::WriterStop>,
}

/// The registry over one store.
#[derive(Debug)]
pub struct Registry {
    store: Arc<dyn KvStore>,
    sequencer: backup::GatedSequencer,
    latest: Latest,
    verifier_key: VerifierKey,
    seal_ca: seal_ca::SealCa,
    trust_anchors: Vec<certseal_crypto::Certificate>,
    kek: Arc<certseal_crypto::Kek>,
    /// The last signed status list of each version.
    status_lists: status_list::StatusListCache,
    /// Seals page tokens (derived from the KEK, so tokens outlive a restart).
    page_tokens: certseal_crypto::Kek,
    origin: String,
    serials: licences::SerialAllocator,
    purposes: Vec<String>,
    access: AccessOptions,
    input: InputLimits,
    request_id_retention: std::time::Duration,
    ofd: OfdOptions,
    ofd_font: licence_files::FontCell,
    client_cas: client_certs::ClientCas,
    revoked_certs: Arc<client_certs::RevokedCertificates>,
    signers: std::sync::Mutex<
        std::collections::HashMap<certseal_core::SealId, Arc<dyn certseal_crypto::Signer>>,
    >,
    receipt_signer: std::sync::OnceLock<Arc<dyn certseal_crypto::Signer>>,
    published: std::sync::Mutex<templates::PublishedTemplates>,
    records: cache::RecordCache,
    signing: signing::SigningPool,
    checkpoint_signed_at: Arc<std::sync::atomic::AtomicI64>,
    /// The change sequence the caches reflect (a cluster follower's).
    followed: std::sync::atomic::AtomicU64,
    /// Set by the writer when it reloaded its state: the caches are to be read again.
    caches_stale: Arc<std::sync::atomic::AtomicBool>,
    /// Licences issued, and checks by indication (passed, failed, indeterminate).
    issued: std::sync::atomic::AtomicU64,
    checks: [std::sync::atomic::AtomicU64; 3],
    clock: Clock,
    /// The size of each new signed checkpoint, for change-feed consumers.
    signed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Registry {
    /// Opens the data folder `data_dir` with its store in `<data_dir>/db`, initialising it on
    /// first start.
    pub fn open(
        data_dir: &Path,
        store: &dyn StoreOpener,
        opts: &RegistryOptions,
    ) -> Result<Self, RegistryError> {
        create_private_dir(data_dir)?;
        let store = store.open(&data_dir.join(STORE_DIR))?;
        Self::with_store(store, opts, &opts.kek_file(data_dir))
    }

    /// Runs the registry over any conforming store.
    pub fn with_store(
        store: Arc<dyn KvStore>,
        opts: &RegistryOptions,
        kek_file: &Path,
    ) -> Result<Self, RegistryError> {
        // A cluster follower never initialises the database: the node holding the lease does.
        if store.writable().is_err() {
            wait_until_initialised(store.as_ref())?;
        }
        // An existing folder's keys are sealed under its KEK: without the file, making a new
        // one would only leave a useless key beside keys nobody can open.
        if store.get(Table::Meta, META_FORMAT_KEY)?.is_some() && !kek_file.exists() {
            return Err(RegistryError::FailedPrecondition(format!(
                "the key-encryption key {} is missing, and this data folder's keys are sealed under it: restore the file from the backup (see docs/operations.md), or point [keys] kek_file at it",
                kek_file.display()
            )));
        }
        init_meta(store.as_ref())?;
        status_list::migrate_index(store.as_ref())?;
        holders::migrate_usage_index(store.as_ref())?;
        let kek = certseal_crypto::Kek::load_or_create(kek_file)
            .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let records = cache::RecordCache::default();
        let log = audit::open_log(
            store.as_ref(),
            &kek,
            kek_file,
            &opts.log_origin,
            records.epoch(),
            opts.request_id_retention,
        )?;
        let seal_ca = seal_ca::open_seal_ca(
            store.as_ref(),
            &kek,
            &opts.log_origin,
            opts.seal_ca.as_ref(),
        )?;
        let client_cas = client_certs::open_client_cas(store.as_ref(), &kek, &opts.log_origin)?;
        let revoked_certs = Arc::new(client_certs::load_revoked(store.as_ref())?);
        let serials = licences::SerialAllocator::new(log.writer.last_time());
        let checkpoint_signed_at = log.writer.signed_at.clone();
        let caches_stale = log.writer.caches_stale.clone();
        let signed = log.writer.signed.clone();
        let restore = backup::load_restore_state(store.as_ref())?;
        if let Some(r) = restore.as_ref().and_then(backup::RestoreState::refusal) {
            tracing::warn!("{r}");
        }
        let sequencer = backup::GatedSequencer::new(
            Sequencer::with_state(store.clone(), opts.sequencer.clone(), log.writer),
            restore,
        );
        Ok(Self {
            store,
            sequencer,
            latest: log.latest,
            verifier_key: log.verifier_key,
            seal_ca,
            trust_anchors: opts.trust_anchors.clone(),
            status_lists: status_list::StatusListCache::default(),
            page_tokens: kek.derive("certseal page tokens v1"),
            kek: Arc::new(kek),
            origin: opts.log_origin.clone(),
            serials,
            purposes: opts.purposes.clone(),
            access: opts.access.clone(),
            input: opts.input,
            request_id_retention: opts.request_id_retention,
            ofd: opts.ofd.clone(),
            ofd_font: Default::default(),
            client_cas,
            revoked_certs,
            signers: Default::default(),
            receipt_signer: std::sync::OnceLock::new(),
            published: Default::default(),
            records,
            signing: signing::SigningPool::new(),
            checkpoint_signed_at,
            followed: std::sync::atomic::AtomicU64::new(cluster::UNKNOWN),
            caches_stale,
            issued: Default::default(),
            checks: Default::default(),
            clock: opts.clock.clone(),
            signed,
        })
    }

    /// What operators watch: the log's size, the latest checkpoint's age, group commits and
    /// the store's own figures.
    pub fn operational_stats(&self) -> OperationalStats {
        let signed = self
            .checkpoint_signed_at
            .load(std::sync::atomic::Ordering::Relaxed);
        OperationalStats {
            log_size: self.latest.read().expect("lock").checkpoint.size,
            checkpoint_age_ms: (Timestamp::now().0 - signed).max(0),
            groups: self.sequencer.stats(),
            store: self.store.properties(),
            licences_issued: self.issued.load(std::sync::atomic::Ordering::Relaxed),
            checks: [
                certseal_core::Indication::TotalPassed,
                certseal_core::Indication::TotalFailed,
                certseal_core::Indication::Indeterminate,
            ]
            .map(|i| {
                (
                    i.as_str(),
                    self.checks[i as usize].load(std::sync::atomic::Ordering::Relaxed),
                )
            }),
            writer_stopped: self.writer_stopped(),
        }
    }

    /// Why writes are stopped, while they are: after a write the store could not make (a full
    /// disk), until the store can write again and the writer resumes by itself.
    pub fn writer_stopped(&self) -> Option<certseal_store::WriterStop> {
        self.sequencer.stopped()
    }

    /// Times the writer stopped since the registry opened.
    pub fn writer_stops(&self) -> u64 {
        self.sequencer.stats().stops
    }

    /// Checks that the store answers; used by the health service.
    pub fn check_health(&self) -> Result<(), RegistryError> {
        self.store.get(Table::Meta, META_FORMAT_KEY)?;
        Ok(())
    }
}

/// On a node without the write lease: waits for the database to be initialised by the node
/// that holds it, or takes the lease if it is free and initialises it itself.
fn wait_until_initialised(store: &dyn KvStore) -> Result<(), RegistryError> {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);
    let started = std::time::Instant::now();
    let mut said = false;
    while store.get(Table::Meta, META_FORMAT_KEY)?.is_none() {
        if store.recover().is_ok() {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            return Err(RegistryError::FailedPrecondition(
                "the database is not initialised, and another node holds the write lease without initialising it: start one node alone first".into(),
            ));
        }
        if !said {
            tracing::info!(
                "waiting for the node holding the write lease to initialise the database"
            );
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Ok(())
}

/// Creates the data folder, when absent, readable by its owner only: it holds every licence.
pub fn create_private_dir(dir: &Path) -> Result<(), RegistryError> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| {
        RegistryError::FailedPrecondition(format!("cannot create {}: {e}", dir.display()))
    })
}

fn init_meta(store: &dyn KvStore) -> Result<(), RegistryError> {
    match store.get(Table::Meta, META_FORMAT_KEY)? {
        Some(f) if f == DATA_FORMAT.as_bytes() => Ok(()),
        Some(f) => Err(certseal_store::StoreError::Incompatible(format!(
            "written as '{}', this build reads '{DATA_FORMAT}'",
            String::from_utf8_lossy(&f)
        ))
        .into()),
        None => {
            let mut b = Batch::new();
            b.put(Table::Meta, META_FORMAT_KEY, DATA_FORMAT);
            b.put(
                Table::Meta,
                META_CREATED_KEY,
                Timestamp::now().0.to_be_bytes().to_vec(),
            );
            store.write(&b, true)?;
            tracing::info!(format = DATA_FORMAT, "initialised a new data folder");
            Ok(())
        }
    }
}
