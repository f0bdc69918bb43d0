//! State rows out of and into a snapshot file: every row of every table in
//! `Table::ALL`, dumped from one RocksDB point in time and installed in
//! bounded batches. The file format is [`crate::snapshot_file`]'s; when and
//! under which lock this runs is [`crate::state_machine`]'s.

use std::io::{Read, Write};

use raftmq_storage::{StateBatch, StateReader, Store, Table};

use super::MqttState;
use crate::error::RaftError;
use crate::snapshot_file::{SnapshotReader, SnapshotWriter};

/// One state row: (table index in `Table::ALL`, key, value).
pub type Row = (u8, Vec<u8>, Vec<u8>);

/// Rows are written to RocksDB in batches of about this size.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

impl MqttState {
    /// The Raft metadata record (not a state row, so clearing the state
    /// tables leaves it) that marks an install in progress; its value is
    /// the snapshot id. See [`MqttState::fill`].
    pub(crate) const INSTALLING: &'static str = "snapshot_installing";

    /// Every state row, in memory: for tests that compare whole states.
    #[cfg(test)]
    pub fn snapshot_rows(&self) -> Result<Vec<Row>, RaftError> {
        let mut rows = Vec::new();
        for (i, t) in Table::ALL.iter().enumerate() {
            self.store.for_each(*t, |k, v| {
                rows.push((i as u8, k.to_vec(), v.to_vec()));
                Ok(())
            })?;
        }
        Ok(rows)
    }

    /// Replaces all state with a snapshot file's rows ([`MqttState::fill`])
    /// and rebuilds the indexes. Returns the rows written.
    pub(crate) fn install_snapshot<R: Read>(
        &mut self,
        rows: &mut SnapshotReader<R>,
    ) -> Result<u64, RaftError> {
        let n = MqttState::fill(&self.store, rows)?;
        self.load()?;
        Ok(n)
    }

    /// Writes every row of every state table as `reader` sees them, table by
    /// table in `Table::ALL` order, each in key order. Nothing is collected: a
    /// row goes from the RocksDB iterator to `out`. `after_row` runs after
    /// each row (tests use it to act in the middle of a dump).
    pub(crate) fn dump<W: Write>(
        reader: &StateReader<'_>,
        out: &mut SnapshotWriter<W>,
        mut after_row: impl FnMut(),
    ) -> Result<(), RaftError> {
        for t in Table::ALL {
            reader.for_each(t, |k, v| {
                out.row(t, k, v)?;
                after_row();
                Ok::<(), RaftError>(())
            })?;
        }
        Ok(())
    }

    /// Replaces the content of every state table with the rows of a snapshot
    /// file, streaming: the first batch deletes every row of every table, then
    /// rows go to RocksDB in batches of [`INSTALL_BATCH_BYTES`], unsynced, and
    /// the final batch is synced. The caller has already checked the whole file
    /// ([`crate::snapshot_file::verify`]) and holds the state lock.
    ///
    /// A crash part-way leaves the tables half replaced. Two things keep such a
    /// node from believing it applied the snapshot, or anything:
    /// - The Meta table's rows (`last_applied`, the membership, the settings,
    ///   the dedup sets) are held back and written only in the final batch, so
    ///   a half-filled state has no `last_applied` of the snapshot (it has none
    ///   at all: the first batch deleted the old one).
    /// - The caller wrote the [`MqttState::INSTALLING`] marker (synced)
    ///   before this, and the final batch deletes it, atomically with the
    ///   Meta rows. At start, a node that finds the marker installs the
    ///   snapshot again before it loads anything
    ///   (`state_machine::recover_install`).
    pub(crate) fn fill<R: Read>(
        store: &Store,
        rows: &mut SnapshotReader<R>,
    ) -> Result<u64, RaftError> {
        let mut replace = store.replace_state(INSTALL_BATCH_BYTES)?;
        let mut meta = StateBatch::default();
        let mut n = 0;
        while let Some((table, k, v)) = rows.next_row()? {
            if table == Table::Meta {
                meta.put(table, k.to_vec(), v.to_vec());
            } else {
                replace.put(table, k, v)?;
            }
            n += 1;
        }
        replace.finish(meta, MqttState::INSTALLING)?;
        Ok(n)
    }
}
