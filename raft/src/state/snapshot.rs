//! State rows out of and into a snapshot: every row of every state table,
//! tagged with its table.

use raftmq_storage::Table;

use super::MqttState;
use crate::error::RaftError;

/// One state row in a snapshot: (table index in `Table::ALL`, key, value).
pub type Row = (u8, Vec<u8>, Vec<u8>);

impl MqttState {
    /// Every state row, for a snapshot.
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

    /// Replaces all state with a snapshot's rows and rebuilds the indexes.
    pub fn install_rows(&mut self, rows: Vec<Row>) -> Result<(), RaftError> {
        let rows = rows
            .into_iter()
            .filter_map(|(t, k, v)| Table::ALL.get(t as usize).map(|t| (*t, k, v)))
            .collect();
        self.store.replace_state(rows)?;
        self.load()
    }
}
