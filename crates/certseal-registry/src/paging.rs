//! Paged listing: page sizes and opaque page tokens.

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

    /// The key to continue after. Tokens are the hex of the last key, checked to lie under
    /// `prefix` so a token cannot steer a scan into another record kind.
    pub(crate) fn after(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        if self.token.is_empty() {
            return Ok(None);
        }
        let bad = || RegistryError::invalid("page_token", "not a token this list returned");
        if self.token.len() > 512 || !self.token.len().is_multiple_of(2) {
            return Err(bad());
        }
        let key = (0..self.token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&self.token[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        if !key.starts_with(prefix) {
            return Err(bad());
        }
        Ok(Some(key))
    }
}

pub(crate) fn token_for(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
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
pub(crate) fn scan_page<T>(
    snap: &dyn Read,
    table: Table,
    prefix: &[u8],
    direction: Direction,
    page: &PageRequest,
    max_scanned: usize,
    mut pick: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, RegistryError>,
) -> Result<Paged<T>, RegistryError> {
    let limit = page.limit();
    let mut after = page.after(prefix)?;
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
            let next_token = after.as_deref().map(token_for).unwrap_or_default();
            return Ok(Paged { items, next_token });
        }
    }
}
