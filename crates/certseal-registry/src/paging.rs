//! Paged listing: page sizes and opaque page tokens.

use certseal_crypto::Kek;
use certseal_store::{Direction, Read, Table};

use crate::RegistryError;

/// Page size when the caller gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page; larger requests are served this many.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which page to list.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Items wanted; 0 means the default, more than the maximum means the maximum.
    pub size: u32,
    /// Token from the previous page, empty for the first.
    pub token: String,
}

impl PageRequest {
    pub(crate) fn limit(&self) -> usize {
        match self.size {
            0 => DEFAULT_PAGE_SIZE as usize,
            n => n.min(MAX_PAGE_SIZE) as usize,
        }
    }

    /// The key to continue after. A token is the last key read, sealed (AES-256-GCM under a
    /// key derived from the KEK) and bound to the list: the key may be another department's
    /// record, which the caller must not learn, and a token cannot steer a scan elsewhere.
    pub(crate) fn after(
        &self,
        tokens: &Kek,
        table: Table,
        prefix: &[u8],
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        if self.token.is_empty() {
            return Ok(None);
        }
        let bad = || RegistryError::invalid("page_token", "not a token this list returned");
        if self.token.len() > MAX_TOKEN_CHARS || !self.token.len().is_multiple_of(2) {
            return Err(bad());
        }
        let sealed = (0..self.token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&self.token[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        let key = tokens
            .open(&token_owner(table, prefix), &sealed)
            .map_err(|_| bad())?;
        if !key.as_slice().starts_with(prefix) {
            return Err(bad());
        }
        Ok(Some(key.as_slice().to_vec()))
    }
}

/// Longest token accepted: keys are short (a holder index key is under 100 bytes).
const MAX_TOKEN_CHARS: usize = 1024;

fn token_owner(table: Table, prefix: &[u8]) -> Vec<u8> {
    [
        b"certseal page token\0",
        format!("{table:?}").as_bytes(),
        b"\0",
        prefix,
    ]
    .concat()
}

/// The token to continue after `key` in the list of `table` under `prefix`.
pub(crate) fn token_for(tokens: &Kek, table: Table, prefix: &[u8], key: &[u8]) -> String {
    tokens
        .seal(&token_owner(table, prefix), key)
        .expect("sealing with a valid key")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token for the next page; empty on the last page.
    pub next_token: String,
}

/// Lists one page of `table` under `prefix`, in key order or its reverse, keeping the items `pick` returns.
/// A page ends when it is full, or after `max_scanned` keys read (a short page with a token,
/// so a filter that matches little cannot make one call read the whole table).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_page<T>(
    tokens: &Kek,
    snap: &dyn Read,
    table: Table,
    prefix: &[u8],
    direction: Direction,
    page: &PageRequest,
    max_scanned: usize,
    mut pick: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, RegistryError>,
) -> Result<Paged<T>, RegistryError> {
    let limit = page.limit();
    let mut after = page.after(tokens, table, prefix)?;
    let mut items = Vec::new();
    let mut scanned = 0;
    loop {
        let batch = snap.scan(table, prefix, after.as_deref(), limit, direction)?;
        let mut stopped_early = false;
        for (i, (k, v)) in batch.items.iter().enumerate() {
            scanned += 1;
            after = Some(k.clone());
            if let Some(item) = pick(k, v)? {
                items.push(item);
                if items.len() == limit {
                    stopped_early = i + 1 < batch.items.len();
                    break;
                }
            }
        }
        if !batch.more && !stopped_early {
            return Ok(Paged {
                items,
                next_token: String::new(),
            });
        }
        // A full page, or one cut short to bound the work, continues after the last key read.
        if items.len() == limit || scanned >= max_scanned {
            let next_token = after
                .as_deref()
                .map(|k| token_for(tokens, table, prefix, k))
                .unwrap_or_default();
            return Ok(Paged { items, next_token });
        }
    }
}
