//! How records are written in the store: CBOR of the domain types.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RegistryError;

pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    ciborium::into_writer(record, &mut out).expect("records serialise to a Vec infallibly");
    out
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, RegistryError> {
    ciborium::from_reader(bytes).map_err(|e| RegistryError::Corrupt(format!("{what}: {e}")))
}
