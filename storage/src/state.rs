//! The replicated state tables, one column family each, written only through
//! [`StateBatch`] (one atomic RocksDB `WriteBatch` per applied batch of log
//! entries) and read by point lookups and prefix scans.

use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::db::{Store, CF_RAFT};
use crate::error::{Result, StorageError};

/// The state tables. Keys are built by [`crate::keys`]; values are opaque
/// bytes (the raft crate encodes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// client id -> session record
    Sessions,
    /// client id ++ filter -> subscription options
    Subscriptions,
    /// topic -> retained message
    Retained,
    /// message id -> message body (stored once, referenced by queues)
    Messages,
    /// client id ++ seq -> queue item (message id, qos, state)
    Queues,
    /// client id ++ packet id -> inbound QoS 2 state
    Qos2In,
    /// last applied log id, membership, cluster settings
    Meta,
    /// message id -> how many queue items reference it (u32, big-endian)
    MessageRefs,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Sessions,
        Table::Subscriptions,
        Table::Retained,
        Table::Messages,
        Table::Queues,
        Table::Qos2In,
        Table::Meta,
        Table::MessageRefs,
    ];

    pub fn cf_name(self) -> &'static str {
        match self {
            Table::Sessions => "sessions",
            Table::Subscriptions => "subscriptions",
            Table::Retained => "retained",
            Table::Messages => "messages",
            Table::Queues => "queues",
            Table::Qos2In => "qos2_in",
            Table::Meta => "meta",
            Table::MessageRefs => "message_refs",
        }
    }
}

/// An atomic group of state writes, readable before it is written: the last
/// write to each key wins, and [`Store::get_through`] and
/// [`Store::scan_prefix_through`] see the batch over the database.
#[derive(Default)]
pub struct StateBatch {
    /// `None`: deleted.
    ops: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl StateBatch {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.ops.insert((table, key), Some(value));
    }
    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.ops.insert((table, key), None);
    }
    /// Keys written (or deleted).
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// This batch's write to `key`: `Some(None)` if it deletes it, `None` if
    /// it does not touch it.
    pub fn pending(&self, table: Table, key: &[u8]) -> Option<Option<&[u8]>> {
        self.ops.get(&(table, key.to_vec())).map(|v| v.as_deref())
    }

    /// This batch's writes to keys under `prefix`, in key order.
    fn pending_prefix<'a>(
        &'a self,
        table: Table,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        self.ops
            .range((table, prefix.to_vec())..)
            .take_while(move |((t, k), _)| *t == table && k.starts_with(prefix))
            .map(|((_, k), v)| (k.as_slice(), v.as_deref()))
    }
}

impl Store {
    /// Writes a state batch atomically, unsynced (see the crate docs).
    pub fn write_state(&self, batch: StateBatch) -> Result<()> {
        let mut wb = WriteBatch::default();
        self.add_ops(&mut wb, batch)?;
        self.db
            .write_opt(wb, &Store::unsynced())
            .map_err(StorageError::rocks("write state"))
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.cf(table.cf_name())?;
        self.db.get_cf(cf, key).map_err(StorageError::rocks("get"))
    }

    /// A point read that sees `batch`'s writes over the database's.
    pub fn get_through(
        &self,
        batch: &StateBatch,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        match batch.pending(table, key) {
            Some(v) => Ok(v.map(<[u8]>::to_vec)),
            None => self.get(table, key),
        }
    }

    /// [`Store::scan_prefix`] with `batch`'s writes over the database's.
    pub fn scan_prefix_through(
        &self,
        batch: &StateBatch,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> =
            self.scan_prefix(table, prefix)?.into_iter().collect();
        for (k, v) in batch.pending_prefix(table, prefix) {
            match v {
                Some(v) => rows.insert(k.to_vec(), v.to_vec()),
                None => rows.remove(k),
            };
        }
        Ok(rows.into_iter().collect())
    }

    /// All (key, value) pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let cf = self.cf(table.cf_name())?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(StorageError::rocks("scan"))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Visits every (key, value) of a table, in key order.
    pub fn for_each(
        &self,
        table: Table,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let cf = self.cf(table.cf_name())?;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(StorageError::rocks("iterate"))?;
            f(&k, &v)?;
        }
        Ok(())
    }

    /// A consistent read view of the state tables: every read through it
    /// sees the same point in time, and none waits for (or blocks) a writer.
    pub fn reader(&self) -> StateReader<'_> {
        StateReader {
            store: self,
            snap: self.db.snapshot(),
        }
    }

    fn add_ops(&self, wb: &mut WriteBatch, batch: StateBatch) -> Result<()> {
        for ((table, key), value) in batch.ops {
            let cf = self.cf(table.cf_name())?;
            match value {
                Some(v) => wb.put_cf(cf, key, v),
                None => wb.delete_cf(cf, key),
            }
        }
        Ok(())
    }

    /// Starts replacing the whole content of every state table (a snapshot
    /// install) with rows given one at a time, written in batches of about
    /// `batch_bytes` so that no batch (and no copy of the state) grows with
    /// the state. The first batch deletes every row of every table. Nothing
    /// is synced before [`StateReplace::finish`]: the caller must make a crash
    /// in between detectable (see the raft crate's install marker). The
    /// caller must also keep other state writers out until `finish` returns.
    pub fn replace_state(&self, batch_bytes: usize) -> Result<StateReplace<'_>> {
        let mut batch = WriteBatch::default();
        for t in Table::ALL {
            let cf = self.cf(t.cf_name())?;
            // Exactly the rows present: [first key, last key ++ 0x00).
            let mut it = self.db.raw_iterator_cf(cf);
            it.seek_to_last();
            if let Some(last) = it.key() {
                let mut end = last.to_vec();
                end.push(0);
                batch.delete_range_cf(cf, Vec::new(), end);
            }
            it.status().map_err(StorageError::rocks("find last key"))?;
        }
        Ok(StateReplace {
            store: self,
            batch,
            batch_bytes,
            written: 0,
        })
    }
}

/// A replacement of every state table in progress (see
/// [`Store::replace_state`]).
pub struct StateReplace<'a> {
    store: &'a Store,
    batch: WriteBatch,
    batch_bytes: usize,
    written: u64,
}

impl StateReplace<'_> {
    /// Adds a row; writes the pending batch (unsynced) once it is full.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        let cf = self.store.cf(table.cf_name())?;
        self.batch.put_cf(cf, key, value);
        if self.batch.size_in_bytes() >= self.batch_bytes {
            let full = std::mem::take(&mut self.batch);
            self.written += full.size_in_bytes() as u64;
            self.store
                .db
                .write_opt(full, &Store::unsynced())
                .map_err(StorageError::rocks("replace state"))?;
        }
        Ok(())
    }

    /// Writes the rows still pending, then `last` and the deletion of the Raft
    /// metadata record `done` (the caller's in-progress marker), in one
    /// final batch, and syncs the WAL: every earlier batch is durable with
    /// it. Returns the bytes written in all.
    pub fn finish(mut self, last: StateBatch, done: &str) -> Result<u64> {
        self.store.add_ops(&mut self.batch, last)?;
        self.batch.delete_cf(self.store.cf(CF_RAFT)?, done);
        self.written += self.batch.size_in_bytes() as u64;
        self.store
            .db
            .write_opt(self.batch, &Store::synced())
            .map_err(StorageError::rocks("replace state"))?;
        Ok(self.written)
    }
}

/// Reads of the state tables at one point in time (a RocksDB snapshot).
pub struct StateReader<'a> {
    store: &'a Store,
    snap: rocksdb::SnapshotWithThreadMode<'a, rocksdb::DB>,
}

impl StateReader<'_> {
    /// Visits the rows under `prefix` from `start` (a key under `prefix`) on,
    /// in key order, while `f` returns true.
    pub fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let cf = self.store.cf(table.cf_name())?;
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_lower_bound(start.to_vec());
        for item in
            self.snap
                .iterator_cf_opt(cf, opts, IteratorMode::From(start, Direction::Forward))
        {
            let (k, v) = item.map_err(StorageError::rocks("scan"))?;
            if !k.starts_with(prefix) || !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// Visits every (key, value) of a table as of this reader's point in
    /// time, in key order, one row at a time (nothing is collected). Reads
    /// bypass the block cache: a full dump must not evict the hot blocks.
    pub fn for_each<E: From<StorageError>>(
        &self,
        table: Table,
        mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let cf = self.store.cf(table.cf_name())?;
        let mut opts = rocksdb::ReadOptions::default();
        opts.fill_cache(false);
        let mut it = self.snap.raw_iterator_cf_opt(cf, opts);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            f(k, v)?;
            it.next();
        }
        it.status().map_err(StorageError::rocks("iterate"))?;
        Ok(())
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.store.cf(table.cf_name())?;
        self.snap
            .get_cf(cf, key)
            .map_err(StorageError::rocks("get"))
    }

    /// All (key, value) pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let cf = self.store.cf(table.cf_name())?;
        for item in self
            .snap
            .iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(StorageError::rocks("scan"))?;
            if !k.starts_with(prefix) {
                break;
            }
            f(&k, &v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_batch_is_readable_after_write_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let mut b = StateBatch::default();
            b.put(Table::Retained, b"a/b".to_vec(), b"v1".to_vec());
            b.put(Table::Retained, b"a/c".to_vec(), b"v2".to_vec());
            b.put(Table::Sessions, b"x".to_vec(), b"s".to_vec());
            s.write_state(b).unwrap();
            let mut b = StateBatch::default();
            b.delete(Table::Retained, b"a/c".to_vec());
            s.write_state(b).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get(Table::Retained, b"a/b").unwrap().unwrap(), b"v1");
        assert!(s.get(Table::Retained, b"a/c").unwrap().is_none());
        assert_eq!(s.scan_prefix(Table::Retained, b"a/").unwrap().len(), 1);
    }

    #[test]
    fn a_client_prefix_scan_yields_that_clients_queue_in_seq_order() {
        use crate::keys::{client_prefix, queue_key, queue_of};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut b = StateBatch::default();
        for c in ["a/b", "a", "ab", "b"] {
            for seq in [300u64, 2, 70_000, 1] {
                b.put(Table::Queues, queue_key(c, seq), c.as_bytes().to_vec());
            }
        }
        s.write_state(b).unwrap();
        let rows = s.scan_prefix(Table::Queues, &client_prefix("a")).unwrap();
        let got: Vec<(&str, u64)> = rows.iter().filter_map(|(k, _)| queue_of(k)).collect();
        assert_eq!(got, [("a", 1), ("a", 2), ("a", 300), ("a", 70_000)]);
        assert!(rows.iter().all(|(_, v)| v == b"a"));
    }

    #[test]
    fn reads_through_a_batch_see_its_writes_over_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut b = StateBatch::default();
        for k in [b"q/1", b"q/2", b"q/3"] {
            b.put(Table::Queues, k.to_vec(), b"db".to_vec());
        }
        s.write_state(b).unwrap();
        let mut b = StateBatch::default();
        b.delete(Table::Queues, b"q/1".to_vec());
        b.put(Table::Queues, b"q/2".to_vec(), b"batch".to_vec());
        b.put(Table::Queues, b"q/4".to_vec(), b"batch".to_vec());
        b.put(Table::Retained, b"q/5".to_vec(), b"other table".to_vec());
        assert_eq!(s.get_through(&b, Table::Queues, b"q/1").unwrap(), None);
        assert_eq!(
            s.get_through(&b, Table::Queues, b"q/2").unwrap().unwrap(),
            b"batch"
        );
        assert_eq!(
            s.get_through(&b, Table::Queues, b"q/3").unwrap().unwrap(),
            b"db"
        );
        let rows = s.scan_prefix_through(&b, Table::Queues, b"q/").unwrap();
        let got: Vec<(&[u8], &[u8])> = rows
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (&b"q/2"[..], &b"batch"[..]),
                (b"q/3", b"db"),
                (b"q/4", b"batch")
            ]
        );
        // The last write to a key wins.
        b.delete(Table::Queues, b"q/4".to_vec());
        assert_eq!(s.get_through(&b, Table::Queues, b"q/4").unwrap(), None);
    }

    #[test]
    fn reader_sees_one_point_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut b = StateBatch::default();
        b.put(Table::Retained, b"a/b".to_vec(), b"v1".to_vec());
        s.write_state(b).unwrap();
        let r = s.reader();
        let mut b = StateBatch::default();
        b.put(Table::Retained, b"a/c".to_vec(), b"v2".to_vec());
        b.delete(Table::Retained, b"a/b".to_vec());
        s.write_state(b).unwrap();
        let mut seen = Vec::new();
        r.scan_prefix(Table::Retained, b"a/", |k, _| {
            seen.push(k.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![b"a/b".to_vec()]);
        assert_eq!(r.get(Table::Retained, b"a/b").unwrap().unwrap(), b"v1");
        assert!(s.reader().get(Table::Retained, b"a/b").unwrap().is_none());
    }

    #[test]
    fn reader_for_each_visits_a_whole_table_as_of_its_point_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut b = StateBatch::default();
        for i in 0..100u32 {
            b.put(Table::Messages, i.to_be_bytes().to_vec(), vec![1; 10]);
        }
        s.write_state(b).unwrap();
        let r = s.reader();
        let mut b = StateBatch::default();
        b.put(Table::Messages, 1000u32.to_be_bytes().to_vec(), vec![2]);
        b.delete(Table::Messages, 0u32.to_be_bytes().to_vec());
        s.write_state(b).unwrap();
        let mut keys = Vec::new();
        r.for_each(Table::Messages, |k, _| {
            keys.push(k.to_vec());
            Ok::<(), StorageError>(())
        })
        .unwrap();
        let want: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys, want);
    }

    #[test]
    fn replace_state_clears_every_table_fills_in_batches_and_removes_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut b = StateBatch::default();
        for t in Table::ALL {
            b.put(t, b"old".to_vec(), b"x".to_vec());
            b.put(t, vec![0xff; 80], b"long key".to_vec());
        }
        s.write_state(b).unwrap();
        s.put_raft_meta("marker", b"1", true).unwrap();
        let mut r = s.replace_state(64).unwrap();
        for i in 0..50u32 {
            r.put(Table::Retained, &i.to_be_bytes(), &[3; 20]).unwrap();
        }
        // Half-way, earlier batches are already written, the Meta rows not.
        assert!(s
            .get(Table::Retained, &0u32.to_be_bytes())
            .unwrap()
            .is_some());
        assert!(s.get(Table::Meta, b"old").unwrap().is_none());
        let mut last = StateBatch::default();
        last.put(Table::Meta, b"applied".to_vec(), b"7".to_vec());
        let written = r.finish(last, "marker").unwrap();
        assert!(written > 50 * 20);
        for t in Table::ALL {
            let mut n = 0;
            s.for_each(t, |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
            let want = match t {
                Table::Retained => 50,
                Table::Meta => 1,
                _ => 0,
            };
            assert_eq!(n, want, "{t:?}");
        }
        assert!(s.raft_meta("marker").unwrap().is_none());
    }

    #[test]
    fn log_append_read_truncate_purge() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let data: Vec<(u64, Vec<u8>)> = (1..=10).map(|i| (i, vec![i as u8; 3])).collect();
        s.append_log(data.iter().map(|(i, v)| (*i, v.as_slice())))
            .unwrap();
        s.sync_wal().unwrap();
        use std::ops::Bound::*;
        assert_eq!(s.read_log(Included(3), Excluded(6)).unwrap().len(), 3);
        assert_eq!(s.last_log().unwrap().unwrap().0, 10);
        s.truncate_log_from(8).unwrap();
        assert_eq!(s.last_log().unwrap().unwrap().0, 7);
        s.purge_log_upto(4, b"p").unwrap();
        let rest = s.read_log(Unbounded, Unbounded).unwrap();
        assert_eq!(rest.first().unwrap().0, 5);
        assert_eq!(s.raft_meta("purged").unwrap().unwrap(), b"p");
    }
}
