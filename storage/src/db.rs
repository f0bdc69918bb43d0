//! Opening RocksDB with raftmq's column families and write options.
//!
//! Durability rule (docs/design.md §3): a log append or vote is reported durable only
//! after the WAL is synced. State-table writes are not synced: they carry
//! `last_applied` in the same atomic batch, and after a crash the log replays
//! whatever the last synced state missed.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};

use crate::error::{Result, StorageError};
use crate::state::Table;

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_RAFT: &str = "raft";

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<DB>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // The WAL is the durability boundary; keep it on so unsynced state
        // writes survive a process crash too (only an OS crash loses them).
        opts.set_manual_wal_flush(false);
        opts.set_max_total_wal_size(64 << 20);
        let mut cfs = vec![
            ColumnFamilyDescriptor::new(CF_LOG, Options::default()),
            ColumnFamilyDescriptor::new(CF_RAFT, Options::default()),
        ];
        for t in Table::ALL {
            cfs.push(ColumnFamilyDescriptor::new(t.cf_name(), Options::default()));
        }
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(StorageError::rocks("open"))?;
        Ok(Store { db: Arc::new(db) })
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or(StorageError::Corrupt {
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
        let cfs = [CF_LOG, CF_RAFT]
            .into_iter()
            .chain(Table::ALL.iter().map(|t| t.cf_name()));
        for name in cfs {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf).map_err(StorageError::rocks("flush"))?;
        }
        Ok(())
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
