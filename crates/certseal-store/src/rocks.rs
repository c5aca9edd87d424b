//! The RocksDB store: one column family per [`Table`], WAL-synced batches, snapshot reads.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Direction as RDir,
    IteratorMode, Options, ReadOptions, SnapshotWithThreadMode, WriteBatch, WriteOptions,
};

use crate::{Batch, Direction, KvStore, Op, Page, Read, StoreError, Table};

/// Tuning of the RocksDB store; the defaults suit one machine with a few GiB to spare.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Shared block cache, in bytes.
    pub block_cache_bytes: usize,
    /// Background flush and compaction threads.
    pub background_jobs: i32,
    /// Memtables of all tables together; past it the largest is flushed.
    pub memtable_bytes: usize,
    /// Write-ahead log kept on disk; past it the tables that hold the oldest log file are
    /// flushed so it can go. Without it, one rarely written table keeps every log file alive.
    pub max_wal_bytes: u64,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: 256 << 20,
            background_jobs: 2,
            memtable_bytes: 256 << 20,
            max_wal_bytes: 1 << 30,
        }
    }
}

/// The embedded default store.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The one place RocksDB's errors become ours.
fn from_rocks(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(e.into_string())
}

impl RocksStore {
    /// Opens (creating if needed) the store in `path`.
    pub fn open(path: &Path, opts: &RocksOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let cf_opts = || {
            let mut block = BlockBasedOptions::default();
            block.set_block_cache(&cache);
            block.set_bloom_filter(10.0, false);
            block.set_cache_index_and_filter_blocks(true);
            let mut o = Options::default();
            o.set_block_based_table_factory(&block);
            o.set_compression_type(DBCompressionType::Lz4);
            o
        };
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(opts.background_jobs);
        db_opts.set_keep_log_file_num(10);
        db_opts.set_db_write_buffer_size(opts.memtable_bytes);
        db_opts.set_max_total_wal_size(opts.max_wal_bytes);
        let cfs = Table::ALL
            .iter()
            .map(|t| ColumnFamilyDescriptor::new(t.name(), cf_opts()));
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(from_rocks)?;
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    /// The folder the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(table.name())
            .expect("every table's column family is created at open")
    }

    fn scan_with(
        &self,
        snapshot: Option<&SnapshotWithThreadMode<'_, DB>>,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        let mut ro = ReadOptions::default();
        if let Some(s) = snapshot {
            ro.set_snapshot(s);
        }
        // Bound the iterator to the prefix so RocksDB skips the rest of the column family.
        ro.set_iterate_lower_bound(prefix.to_vec());
        if let Some(upper) = prefix_successor(prefix) {
            ro.set_iterate_upper_bound(upper);
        }
        let mode = match (direction, after) {
            (Direction::Forward, Some(k)) => IteratorMode::From(k, RDir::Forward),
            (Direction::Forward, None) => IteratorMode::Start,
            (Direction::Reverse, Some(k)) => IteratorMode::From(k, RDir::Reverse),
            (Direction::Reverse, None) => IteratorMode::End,
        };
        let iter = self.db.iterator_cf_opt(self.cf(table), ro, mode);
        let mut page = Page::default();
        for item in iter {
            let (k, v) = item.map_err(from_rocks)?;
            if !k.starts_with(prefix) {
                break;
            }
            if after.is_some_and(|a| *k == *a) {
                continue;
            }
            if page.items.len() == limit {
                page.more = true;
                break;
            }
            page.items.push((k.into_vec(), v.into_vec()));
        }
        Ok(page)
    }
}

/// The smallest key greater than every key that starts with `prefix`, if there is one.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut up = prefix.to_vec();
    while let Some(last) = up.pop() {
        if last < 0xff {
            up.push(last + 1);
            return Some(up);
        }
    }
    None
}

impl Read for RocksStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(table), key).map_err(from_rocks)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        self.scan_with(None, table, prefix, after, limit, direction)
    }
}

struct RocksSnapshot<'a> {
    store: &'a RocksStore,
    snapshot: SnapshotWithThreadMode<'a, DB>,
}

impl Read for RocksSnapshot<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.snapshot
            .get_cf(self.store.cf(table), key)
            .map_err(from_rocks)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        self.store
            .scan_with(Some(&self.snapshot), table, prefix, after, limit, direction)
    }
}

impl KvStore for RocksStore {
    fn snapshot(&self) -> Box<dyn Read + '_> {
        Box::new(RocksSnapshot {
            store: self,
            snapshot: self.db.snapshot(),
        })
    }

    fn write(&self, batch: &Batch, durable: bool) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for op in batch.ops() {
            match op {
                Op::Put(t, k, v) => wb.put_cf(self.cf(*t), k, v),
                Op::Delete(t, k) => wb.delete_cf(self.cf(*t), k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durable);
        self.db.write_opt(wb, &wo).map_err(from_rocks)
    }

    fn properties(&self) -> Vec<(&'static str, u64)> {
        const SUMMED: [(&str, &str); 4] = [
            ("estimated_keys", "rocksdb.estimate-num-keys"),
            ("sst_bytes", "rocksdb.total-sst-files-size"),
            ("memtable_bytes", "rocksdb.cur-size-all-mem-tables"),
            (
                "pending_compaction_bytes",
                "rocksdb.estimate-pending-compaction-bytes",
            ),
        ];
        let mut out: Vec<(&'static str, u64)> = SUMMED
            .iter()
            .map(|(name, property)| {
                let total = Table::ALL
                    .iter()
                    .filter_map(|t| {
                        self.db
                            .property_int_value_cf(self.cf(*t), *property)
                            .ok()
                            .flatten()
                    })
                    .sum();
                (*name, total)
            })
            .collect();
        // The block cache and the compaction threads are the database's: any table reports
        // all of them, so they are read once.
        for (name, property) in [
            ("block_cache_bytes", "rocksdb.block-cache-usage"),
            ("running_compactions", "rocksdb.num-running-compactions"),
        ] {
            if let Ok(Some(v)) = self
                .db
                .property_int_value_cf(self.cf(Table::Meta), property)
            {
                out.push((name, v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_of_prefixes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
