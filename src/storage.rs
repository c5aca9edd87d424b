//! Opens the store the configuration names: the one place the binary picks a storage backend.

use std::path::Path;
use std::sync::Arc;

use certseal_registry::{Registry, RegistryError, STORE_DIR};
use certseal_store::{KvStore, StoreError, StoreOpener};
use certseal_store_mysql::MysqlStore;

use crate::config::{Config, StorageConfig};

/// Opens the configured store of `config.data_dir`, creating the data folder (readable by its
/// owner only) on first start.
pub fn open(config: &Config) -> Result<Arc<dyn KvStore>, RegistryError> {
    Ok(open_node(config)?.0)
}

/// The store, and on a database the database store itself (for the lease and forwarding).
pub type OpenedStore = (Arc<dyn KvStore>, Option<Arc<MysqlStore>>);

/// Opens the configured store; on a database, also the store itself for the cluster's
/// lease and forwarding.
pub fn open_node(config: &Config) -> Result<OpenedStore, RegistryError> {
    certseal_registry::create_private_dir(&config.data_dir)?;
    match &config.storage {
        StorageConfig::Rocks(_) => {
            Ok((opener(config).open(&config.data_dir.join(STORE_DIR))?, None))
        }
        StorageConfig::Mysql(options) => {
            let store = MysqlStore::open(options).map_err(|e| {
                RegistryError::FailedPrecondition(format!("the database ([storage] urls): {e}"))
            })?;
            check_node_state(&config.data_dir, &store)?;
            let store = Arc::new(store);
            Ok((store.clone(), Some(store)))
        }
    }
}

/// What a node remembers of its database in its data folder: the registry it belongs to and
/// the highest lease epoch it saw. Another registry's database, or one older than what the
/// node saw (restored from an old copy, replaced), is refused before anything is served.
fn check_node_state(data_dir: &Path, store: &MysqlStore) -> Result<(), RegistryError> {
    let file = data_dir.join(NODE_STATE);
    let registry = store.registry_id()?;
    let epoch = store
        .leader()?
        .map_or(0, |l| l.epoch)
        .max(store.lease_state().epoch);
    let refuse = |why: String| RegistryError::FailedPrecondition(why);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let (known, seen) = (
            field("registry"),
            field("epoch").parse::<u64>().unwrap_or(0),
        );
        if !known.is_empty() && known != registry {
            return Err(refuse(format!(
                "the database holds registry {registry}, but this node ({}) belongs to registry {known}: another registry's database; point [storage] urls at this registry's database, or give the node a new data folder",
                file.display()
            )));
        }
        if epoch < seen {
            return Err(refuse(format!(
                "the database's write lease is at epoch {epoch}, older than epoch {seen} this node saw ({}): the database was restored from an older copy or replaced; a node must not write on it with a stale view (see docs/operations.md, 'Running a cluster')",
                file.display()
            )));
        }
    }
    std::fs::write(&file, format!("registry={registry}\nepoch={epoch}\n")).map_err(|e| {
        RegistryError::FailedPrecondition(format!("cannot write {}: {e}", file.display()))
    })
}

/// The file in a node's data folder that [`check_node_state`] keeps.
const NODE_STATE: &str = "cluster-node";

/// Opens the configured store of a data folder that must exist already, creating nothing
/// (for the offline commands that change one).
pub fn open_existing(config: &Config) -> Result<Arc<dyn KvStore>, RegistryError> {
    match &config.storage {
        StorageConfig::Rocks(_) if !config.data_dir.join(STORE_DIR).exists() => {
            Err(RegistryError::FailedPrecondition(format!(
                "{} is not a certseal data folder",
                config.data_dir.display()
            )))
        }
        StorageConfig::Rocks(_) | StorageConfig::Mysql(_) => open(config),
    }
}

/// What opens the configured backend's stores in a folder (a data folder's, a backup's).
pub fn opener(config: &Config) -> Box<dyn StoreOpener> {
    match &config.storage {
        StorageConfig::Rocks(options) => Box::new(options.clone()),
        StorageConfig::Mysql(_) => Box::new(DatabaseBackups),
    }
}

/// A database's backups and restores are the database's own.
#[derive(Debug)]
struct DatabaseBackups;

impl StoreOpener for DatabaseBackups {
    fn open(&self, _path: &Path) -> Result<Arc<dyn KvStore>, StoreError> {
        Err(unsupported())
    }

    fn open_read_only(
        &self,
        _path: &Path,
        _log_dir: &Path,
    ) -> Result<Box<dyn certseal_store::Read + Send + Sync>, StoreError> {
        Err(unsupported())
    }
}

fn unsupported() -> StoreError {
    StoreError::Unsupported(
        "a registry on a database is backed up and restored on the database (see docs/operations.md, 'Running a cluster')".into(),
    )
}

/// The registry over the configured store, with the configured keys.
pub fn open_registry(config: &Config) -> Result<Registry, RegistryError> {
    let store = open(config)?;
    Registry::with_store(
        store,
        &config.registry,
        &config.registry.kek_file(&config.data_dir),
    )
}
