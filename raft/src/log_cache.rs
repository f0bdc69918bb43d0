//! The newest log entries, kept in memory as they are appended, so that
//! apply and replication (which read an entry just after it was written)
//! take it from here instead of reading RocksDB and decoding it again.
//!
//! The cache holds a contiguous run of indexes ending at the last appended
//! entry, at most [`MAX_ENTRIES`] entries and about [`MAX_BYTES`] of encoded
//! size; older entries are dropped first. A read is served only when the
//! whole range is here; otherwise the caller reads the log. Truncating and
//! purging the log do the same here, so the cache never answers with an
//! entry the log no longer has.

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::types::Entry;

/// Most entries kept.
pub const MAX_ENTRIES: usize = 16;
/// Most encoded bytes kept (approximately: an entry's encoded size).
pub const MAX_BYTES: usize = 4 << 20;

#[derive(Default)]
pub struct LogCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Entries with consecutive indexes, oldest first, each with its
    /// encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Inner {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, size)) = self.entries.pop_back() {
            self.bytes -= size;
        }
    }
}

impl LogCache {
    /// Keeps entries just written to the log (with their encoded sizes). An
    /// append that does not continue the cached run replaces it.
    pub fn append(&self, entries: impl IntoIterator<Item = (Entry, usize)>) {
        let mut c = self.inner.lock();
        for (entry, size) in entries {
            let index = entry.log_id.index;
            if c.last_index().is_some_and(|last| index != last + 1) {
                // openraft truncates before it overwrites; be safe anyway.
                while c.last_index().is_some_and(|last| last >= index) {
                    c.pop_back();
                }
                if c.last_index().is_some_and(|last| index != last + 1) {
                    c.clear();
                }
            }
            c.entries.push_back((entry, size));
            c.bytes += size;
        }
        while c.entries.len() > MAX_ENTRIES || (c.bytes > MAX_BYTES && c.entries.len() > 1) {
            c.pop_front();
        }
    }

    /// The entries with indexes in `[start, end)`, if every one is here.
    pub fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        if start >= end {
            return Some(Vec::new());
        }
        let c = self.inner.lock();
        let first = c.first_index()?;
        let last = c.last_index()?;
        if start < first || end - 1 > last {
            return None;
        }
        let from = (start - first) as usize;
        let to = (end - first) as usize;
        Some(c.entries.range(from..to).map(|(e, _)| e.clone()).collect())
    }

    /// Forgets entries at `index` and after (the log was truncated there).
    pub fn truncate_from(&self, index: u64) {
        let mut c = self.inner.lock();
        while c.last_index().is_some_and(|last| last >= index) {
            c.pop_back();
        }
    }

    /// Forgets entries up to and including `index` (the log was purged).
    pub fn purge_upto(&self, index: u64) {
        let mut c = self.inner.lock();
        while c.first_index().is_some_and(|first| first <= index) {
            c.pop_front();
        }
    }

    /// Entries and encoded bytes held.
    pub fn len_and_bytes(&self) -> (usize, usize) {
        let c = self.inner.lock();
        (c.entries.len(), c.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Request;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64) -> (Entry, usize) {
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request {
                origin: 1,
                floor: index,
                cmds: Default::default(),
            }),
        };
        (e, 100)
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|es| es.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn a_range_of_appended_entries_is_served_from_memory() {
        let c = LogCache::default();
        c.append((1..=5).map(entry));
        assert_eq!(indexes(c.get(2, 5)), Some(vec![2, 3, 4]));
        assert_eq!(indexes(c.get(1, 6)), Some(vec![1, 2, 3, 4, 5]));
    }

    #[test]
    fn a_range_reaching_outside_the_cache_is_not_served() {
        let c = LogCache::default();
        c.append((3..=5).map(entry));
        assert_eq!(indexes(c.get(2, 4)), None);
        assert_eq!(indexes(c.get(4, 7)), None);
    }

    #[test]
    fn the_oldest_entries_go_first_past_the_entry_cap() {
        let c = LogCache::default();
        c.append((1..=(MAX_ENTRIES as u64 + 10)).map(entry));
        assert_eq!(c.len_and_bytes().0, MAX_ENTRIES);
        assert_eq!(indexes(c.get(1, 3)), None);
        let last = MAX_ENTRIES as u64 + 10;
        assert_eq!(indexes(c.get(last, last + 1)), Some(vec![last]));
    }

    #[test]
    fn the_oldest_entries_go_first_past_the_byte_cap() {
        let c = LogCache::default();
        let big = |i| (entry(i).0, MAX_BYTES / 2);
        c.append((1..=3).map(big));
        assert_eq!(c.len_and_bytes(), (2, MAX_BYTES));
        assert_eq!(indexes(c.get(2, 4)), Some(vec![2, 3]));
    }

    #[test]
    fn a_truncated_entry_is_never_served() {
        let c = LogCache::default();
        c.append((1..=5).map(entry));
        c.truncate_from(4);
        assert_eq!(indexes(c.get(3, 5)), None);
        assert_eq!(indexes(c.get(1, 4)), Some(vec![1, 2, 3]));
    }

    #[test]
    fn an_append_overwriting_cached_indexes_replaces_them() {
        let c = LogCache::default();
        c.append((1..=5).map(entry));
        c.append((3..=4).map(entry));
        assert_eq!(indexes(c.get(1, 5)), Some(vec![1, 2, 3, 4]));
        assert_eq!(indexes(c.get(5, 6)), None);
    }

    #[test]
    fn an_append_after_a_gap_starts_a_new_run() {
        let c = LogCache::default();
        c.append((1..=3).map(entry));
        c.append((10..=11).map(entry));
        assert_eq!(indexes(c.get(1, 2)), None);
        assert_eq!(indexes(c.get(10, 12)), Some(vec![10, 11]));
    }

    #[test]
    fn a_purged_entry_is_never_served() {
        let c = LogCache::default();
        c.append((1..=5).map(entry));
        c.purge_upto(2);
        assert_eq!(indexes(c.get(2, 4)), None);
        assert_eq!(indexes(c.get(3, 6)), Some(vec![3, 4, 5]));
    }
}
