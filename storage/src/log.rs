//! The Raft log and Raft metadata as opaque byte records.
//!
//! Appends are written unsynced and made durable by [`Store::sync_wal`], so a
//! caller can group many appends under one fsync. Metadata writes (vote,
//! purge point) are synced individually: they are rare.

use std::ops::Bound;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::db::{Store, CF_LOG, CF_RAFT};
use crate::error::{Result, StorageError};
use crate::keys::{index_key, index_of};

impl Store {
    /// Writes entries (index, bytes) in one atomic batch, without syncing.
    pub fn append_log<'a>(&self, entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<()> {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(cf, index_key(index), bytes);
        }
        self.db
            .write_opt(batch, &Store::unsynced())
            .map_err(StorageError::rocks("append log"))
    }

    /// Entries with index in `[start, end)`, in order, stopping at the first gap.
    pub fn read_log(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<(u64, Vec<u8>)>> {
        let cf = self.cf(CF_LOG)?;
        let from = match start {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator_cf(cf, IteratorMode::From(&index_key(from), Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(StorageError::rocks("read log"))?;
            let Some(index) = index_of(&k) else { break };
            let past_end = match end {
                Bound::Included(e) => index > e,
                Bound::Excluded(e) => index >= e,
                Bound::Unbounded => false,
            };
            if past_end {
                break;
            }
            out.push((index, v.to_vec()));
        }
        Ok(out)
    }

    /// The last entry of the log, if any.
    pub fn last_log(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let cf = self.cf(CF_LOG)?;
        let mut iter = self.db.iterator_cf(cf, IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (k, v) = item.map_err(StorageError::rocks("last log"))?;
                let index = index_of(&k).ok_or(StorageError::Corrupt {
                    what: "log key",
                    detail: format!("{k:?}"),
                })?;
                Ok(Some((index, v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Deletes entries with index >= `from` (conflict truncation), synced.
    pub fn truncate_log_from(&self, from: u64) -> Result<()> {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(from), index_key(u64::MAX));
        self.db
            .write_opt(batch, &Store::synced())
            .map_err(StorageError::rocks("truncate log"))
    }

    /// Deletes entries with index <= `upto` and records the purge point in the
    /// same synced batch.
    pub fn purge_log_upto(&self, upto: u64, purge_record: &[u8]) -> Result<()> {
        let cf = self.cf(CF_LOG)?;
        let meta = self.cf(CF_RAFT)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, b"purged", purge_record);
        batch.delete_range_cf(cf, index_key(0), index_key(upto.saturating_add(1)));
        self.db
            .write_opt(batch, &Store::synced())
            .map_err(StorageError::rocks("purge log"))
    }

    /// Reads a Raft metadata record (`vote`, `committed`, `purged`).
    pub fn raft_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let cf = self.cf(CF_RAFT)?;
        self.db
            .get_cf(cf, name)
            .map_err(StorageError::rocks("read raft meta"))
    }

    /// Writes a Raft metadata record; `sync` makes it durable before return.
    pub fn put_raft_meta(&self, name: &str, value: &[u8], sync: bool) -> Result<()> {
        let cf = self.cf(CF_RAFT)?;
        let opts = if sync {
            Store::synced()
        } else {
            Store::unsynced()
        };
        self.db
            .put_cf_opt(cf, name, value, &opts)
            .map_err(StorageError::rocks("write raft meta"))
    }

    /// Deletes a Raft metadata record, synced.
    pub fn delete_raft_meta(&self, name: &str) -> Result<()> {
        let cf = self.cf(CF_RAFT)?;
        self.db
            .delete_cf_opt(cf, name, &Store::synced())
            .map_err(StorageError::rocks("delete raft meta"))
    }
}
