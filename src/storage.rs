//! Opens the store the configuration names: the one place the binary picks a storage backend.

use std::sync::Arc;

use certseal_registry::{Registry, RegistryError, STORE_DIR};
use certseal_store::{KvStore, StoreOpener};

use crate::config::{Config, StorageConfig};

/// Opens the configured store of `config.data_dir`, creating the data folder (readable by its
/// owner only) on first start.
pub fn open(config: &Config) -> Result<Arc<dyn KvStore>, RegistryError> {
    certseal_registry::create_private_dir(&config.data_dir)?;
    Ok(opener(config).open(&config.data_dir.join(STORE_DIR))?)
}

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
        StorageConfig::Rocks(_) => open(config),
    }
}

/// What opens the configured backend's stores in a folder (a data folder's, a backup's).
pub fn opener(config: &Config) -> Box<dyn StoreOpener> {
    match &config.storage {
        StorageConfig::Rocks(options) => Box::new(options.clone()),
    }
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
