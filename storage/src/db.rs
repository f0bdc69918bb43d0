//! Opening RocksDB with raftmq's column families, write options and memory
//! budget; its memory and disk figures; manual compaction.
//!
//! Durability rule (docs/design.md §3): a log append or vote is reported durable only
//! after the WAL is synced. State-table writes are not synced: they carry
//! `last_applied` in the same atomic batch, and after a crash the log replays
//! whatever the last synced state missed.
//!
//! Memory budget ([`StoreOptions`]): every column family shares one LRU block
//! cache and one write buffer manager. The manager charges the memtables to
//! the cache, so data blocks, index and filter blocks and memtables stay
//! within `block_cache_bytes + write_buffer_bytes` together (RocksDB's own
//! defaults give each column family its own 8 MiB cache and up to 2 × 64 MiB
//! of memtables, unbounded in sum).

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, IteratorMode, Options, WriteBufferManager,
    WriteOptions, DB,
};

use crate::error::{Result, StorageError};
use crate::state::Table;

const MIB: usize = 1024 * 1024;

/// How much memory RocksDB may use: built once (from the node's settings, or
/// [`StoreOptions::default`]) and given to [`Store::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Data, index and filter blocks: the shared LRU block cache.
    pub block_cache_bytes: usize,
    /// Memtables of every column family together: the write buffer manager
    /// flushes the largest when their sum reaches this.
    pub write_buffer_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            block_cache_bytes: 64 * MIB,
            write_buffer_bytes: 64 * MIB,
        }
    }
}

impl StoreOptions {
    /// One column family's memtable size: a quarter of the budget (so the
    /// busy log and message tables can hold one each while others flush),
    /// between 1 MiB and RocksDB's default of 64 MiB.
    fn memtable_bytes(&self) -> usize {
        (self.write_buffer_bytes / 4).clamp(MIB, 64 * MIB)
    }

    /// The WAL kept before the column families holding its oldest entries
    /// are flushed: the memtable budget, at most 64 MiB. Without a cap
    /// RocksDB keeps up to 4 × the sum of every column family's buffers
    /// (gigabytes on disk) behind a rarely written table, and a restart
    /// after a crash replays all of it (3.9 s with 1.9 M queued items, 0.3 s
    /// with 64 MiB).
    fn max_wal_bytes(&self) -> u64 {
        self.write_buffer_bytes.min(64 * MIB) as u64
    }
}

/// What RocksDB holds in memory now, and its limits (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// The shared cache's usage: blocks, plus the memtable memory the write
    /// buffer manager reserves in it.
    pub block_cache: u64,
    /// Memtables of every column family (active, immutable and pinned).
    pub memtables: u64,
    pub block_cache_limit: u64,
    pub write_buffer_limit: u64,
}

/// What [`Store::compact_for_space`] did for one column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub cf: &'static str,
    /// SST bytes before and after.
    pub before: u64,
    pub after: u64,
    /// Not compacted: rewriting it could need more than the space left.
    pub skipped: bool,
}

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_RAFT: &str = "raft";

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<DB>,
    /// The block cache every column family shares (memtables charged to it).
    cache: Cache,
    options: StoreOptions,
}

/// Every column family: the Raft log, Raft metadata, the state tables.
fn all_cfs() -> impl Iterator<Item = &'static str> {
    [CF_LOG, CF_RAFT]
        .into_iter()
        .chain(Table::ALL.iter().map(|t| t.cf_name()))
}

/// Tables whose rows are written and deleted in bulk (a message and its
/// queue rows live until every subscriber acknowledged it): their space
/// comes back only when compaction drops the tombstones.
const CHURNING: [Table; 2] = [Table::Messages, Table::Queues];

impl Store {
    /// Opens (or creates) the database with the default memory budget.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the database within `options`' memory budget.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store> {
        let cache = Cache::new_lru_cache(options.block_cache_bytes + options.write_buffer_bytes);
        let buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            options.write_buffer_bytes,
            false,
            cache.clone(),
        );
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // The WAL is the durability boundary; keep it on so unsynced state
        // writes survive a process crash too (only an OS crash loses them).
        opts.set_manual_wal_flush(false);
        opts.set_write_buffer_manager(&buffers);
        opts.set_max_total_wal_size(options.max_wal_bytes());
        let cfs = all_cfs()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_options(name, &options, &cache)))
            .collect::<Vec<_>>();
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(StorageError::rocks("open"))?;
        Ok(Store {
            db: Arc::new(db),
            cache,
            options,
        })
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Corrupt {
                what: "column family",
                detail: format!("{name} missing"),
            })
    }

    /// Syncs the WAL to disk: everything written before this call is durable
    /// when it returns. One call covers any number of prior writes (group
    /// commit).
    pub fn sync_wal(&self) -> Result<()> {
        self.db
            .flush_wal(true)
            .map_err(StorageError::rocks("sync wal"))
    }

    /// For a clean stop: syncs the WAL (so every unsynced state write is
    /// durable) and flushes the memtables (so the next open replays little).
    pub fn sync_all(&self) -> Result<()> {
        self.sync_wal()?;
        for name in all_cfs() {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf).map_err(StorageError::rocks("flush"))?;
        }
        Ok(())
    }

    /// RocksDB's memory now, and its limits.
    pub fn memory(&self) -> MemoryUsage {
        let memtables = all_cfs()
            .filter_map(|name| self.cf(name).ok())
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(cf, rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES)
                    .ok()
                    .flatten()
            })
            .sum();
        MemoryUsage {
            block_cache: self.cache.get_usage() as u64,
            memtables,
            block_cache_limit: self.options.block_cache_bytes as u64,
            write_buffer_limit: self.options.write_buffer_bytes as u64,
        }
    }

    /// Bytes RocksDB estimates compaction still has to rewrite
    /// (`rocksdb.estimate-pending-compaction-bytes`), every column family.
    pub fn pending_compaction_bytes(&self) -> u64 {
        all_cfs()
            .filter_map(|name| self.cf(name).ok())
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(
                        cf,
                        rocksdb::properties::ESTIMATE_PENDING_COMPACTION_BYTES,
                    )
                    .ok()
                    .flatten()
            })
            .sum()
    }

    /// SST bytes of one column family.
    fn sst_bytes(&self, cf: &rocksdb::ColumnFamily) -> u64 {
        self.db
            .property_int_value_cf(cf, rocksdb::properties::TOTAL_SST_FILES_SIZE)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Compacts what holds deleted data, so its disk space comes back: the
    /// Raft log below its first live entry (purged behind a snapshot), and
    /// the tables of delivered messages and their queue rows. Those are
    /// flushed first, so their deletions reach SST files that RocksDB
    /// compacts by itself (see [`cf_options`]); a whole-table compaction
    /// follows only where it is safe: it writes its output before it removes
    /// its input, so a table whose SST files take more than half of
    /// `free_bytes` is skipped, as rewriting its live rows could fill the
    /// disk. Blocks until done; call it off the async runtime.
    pub fn compact_for_space(&self, free_bytes: u64) -> Result<Vec<Compaction>> {
        let log = self.cf(CF_LOG)?;
        let first_live = match self.db.iterator_cf(log, IteratorMode::Start).next() {
            Some(item) => Some(item.map_err(StorageError::rocks("read log"))?.0),
            None => None,
        };
        let before = self.sst_bytes(log);
        // Only purged entries lie below the first live one: the output is
        // the files that straddle it, at most.
        self.db
            .compact_range_cf(log, None::<&[u8]>, first_live.as_deref());
        let mut done = vec![Compaction {
            cf: CF_LOG,
            before,
            after: self.sst_bytes(log),
            skipped: false,
        }];
        for name in CHURNING.iter().map(|t| t.cf_name()) {
            let cf = self.cf(name)?;
            // The deletions still in the memtable reach an SST file, which
            // the deletion collector marks: RocksDB compacts it by itself,
            // rewriting only what is still live, however large the table.
            self.db.flush_cf(cf).map_err(StorageError::rocks("flush"))?;
            let before = self.sst_bytes(cf);
            let skipped = before > free_bytes / 2;
            if !skipped {
                self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            }
            done.push(Compaction {
                cf: name,
                before,
                after: self.sst_bytes(cf),
                skipped,
            });
        }
        Ok(done)
    }

    pub(crate) fn unsynced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(false);
        w
    }

    pub(crate) fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }
}

/// One column family's options: its memtable size, and its blocks in the
/// shared cache, index and filter blocks included (so they count against the
/// budget; L0's stay pinned, as they are read most). The state tables get
/// bloom filters for their point lookups (the log is only read in ranges),
/// and the churning ones a collector that marks SST files full of deletions
/// for compaction, so delivered messages give their disk space back without
/// waiting for the level above to fill.
fn cf_options(name: &str, options: &StoreOptions, cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let state_table = name != CF_LOG && name != CF_RAFT;
    if state_table {
        table.set_bloom_filter(10.0, false);
    }
    let mut o = Options::default();
    o.set_write_buffer_size(options.memtable_bytes());
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_block_based_table_factory(&table);
    if CHURNING.iter().any(|t| t.cf_name() == name) {
        // 50 deletions in any 128 consecutive entries, or half the file.
        o.add_compact_on_deletion_collector_factory(128, 50, 0.5);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateBatch;

    /// Bytes that do not compress (LZ4 would shrink repeated ones to nothing).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn sst(s: &Store, name: &'static str) -> u64 {
        s.sst_bytes(s.cf(name).unwrap())
    }

    #[test]
    fn memory_is_reported_against_the_configured_budget() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            block_cache_bytes: 8 * MIB,
            write_buffer_bytes: 4 * MIB,
        };
        let s = Store::open_with(dir.path(), options).unwrap();
        let mut b = StateBatch::default();
        b.put(Table::Messages, b"m".to_vec(), noise(100_000, 1));
        s.write_state(b).unwrap();
        let m = s.memory();
        assert_eq!(m.block_cache_limit, 8 * MIB as u64);
        assert_eq!(m.write_buffer_limit, 4 * MIB as u64);
        assert!(m.memtables >= 100_000, "{m:?}");
        // The write buffer manager reserves the memtables in the cache.
        assert!(m.block_cache > 0, "{m:?}");
    }

    #[test]
    fn delivered_messages_give_their_disk_space_back_once_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut b = StateBatch::default();
        for i in 0..64u64 {
            b.put(
                Table::Messages,
                i.to_be_bytes().to_vec(),
                noise(64 * 1024, i),
            );
        }
        s.write_state(b).unwrap();
        s.sync_all().unwrap();
        assert!(sst(&s, "messages") > 4 * MIB as u64);
        let mut b = StateBatch::default();
        for i in 0..64u64 {
            b.delete(Table::Messages, i.to_be_bytes().to_vec());
        }
        s.write_state(b).unwrap();
        let done = s.compact_for_space(u64::MAX).unwrap();
        let messages = done.iter().find(|c| c.cf == "messages").unwrap();
        assert!(!messages.skipped);
        assert!(messages.after < 64 * 1024, "{done:?}");
    }

    #[test]
    fn a_purged_log_gives_its_disk_space_back_and_keeps_its_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let entries: Vec<(u64, Vec<u8>)> = (1..=64).map(|i| (i, noise(64 * 1024, i))).collect();
        s.append_log(entries.iter().map(|(i, v)| (*i, v.as_slice())))
            .unwrap();
        s.sync_all().unwrap();
        let full = sst(&s, CF_LOG);
        s.purge_log_upto(48, b"p").unwrap();
        s.compact_for_space(0).unwrap();
        let after = sst(&s, CF_LOG);
        assert!(after < full / 2, "{after} of {full} bytes left");
        use std::ops::Bound::Unbounded;
        let rest = s.read_log(Unbounded, Unbounded).unwrap();
        assert_eq!(rest.len(), 16);
        assert_eq!(rest[0], entries[48]);
    }

    #[test]
    fn a_table_whose_rewrite_could_fill_the_disk_is_not_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut b = StateBatch::default();
        b.put(Table::Messages, b"m".to_vec(), noise(256 * 1024, 3));
        s.write_state(b).unwrap();
        s.sync_all().unwrap();
        let done = s.compact_for_space(100 * 1024).unwrap();
        let messages = done.iter().find(|c| c.cf == "messages").unwrap();
        assert!(messages.skipped, "{done:?}");
        assert_eq!(messages.before, messages.after);
    }
}
