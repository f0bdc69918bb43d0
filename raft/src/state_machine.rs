//! openraft's state machine over [`MqttState`]: apply in batches, build and
//! install snapshots. The current snapshot is kept in memory and in a file in
//! the data directory, so a restarted node can still serve it.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::command::Response;
use crate::error::{decode, encode};
use crate::state::MqttState;
use crate::types::{Entry, LogId, NodeId, StorageErr, TypeConfig};
use crate::view::Published;

type Meta = SnapshotMeta<NodeId, crate::types::NodeInfo>;
/// The latest snapshot: its metadata and encoded data.
type Current = (Meta, Arc<Vec<u8>>);

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    rows: Vec<crate::state::Row>,
}

#[derive(Clone)]
pub struct StateMachine {
    pub state: Arc<Mutex<MqttState>>,
    snapshot_path: PathBuf,
    current: Arc<Mutex<Option<Current>>>,
    /// Counts and settings for readers that must not take the state lock;
    /// republished after every applied batch.
    summary: Published,
}

fn sm_err(e: impl std::fmt::Display) -> StorageErr {
    StorageIOError::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}

impl StateMachine {
    pub(crate) fn new(
        state: Arc<Mutex<MqttState>>,
        snapshot_path: PathBuf,
        summary: Published,
    ) -> StateMachine {
        let current = std::fs::read(&snapshot_path)
            .ok()
            .and_then(|b| decode::<SnapshotFile>(&b).ok())
            .map(|f| (f.meta, Arc::new(f.data)));
        StateMachine {
            state,
            snapshot_path,
            current: Arc::new(Mutex::new(current)),
            summary,
        }
    }

    fn save(&self, meta: &Meta, data: &Arc<Vec<u8>>) -> Result<(), StorageErr> {
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let bytes = encode(&file).map_err(sm_err)?;
        let tmp = self.snapshot_path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(sm_err)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(sm_err)?;
        std::fs::rename(&tmp, &self.snapshot_path).map_err(sm_err)?;
        *self.current.lock() = Some((meta.clone(), data.clone()));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageErr> {
        let (rows, last, membership) = {
            let st = self.state.lock();
            (
                st.snapshot_rows().map_err(sm_err)?,
                st.last_applied,
                st.membership.clone(),
            )
        };
        let data = Arc::new(encode(&SnapshotData { rows }).map_err(sm_err)?);
        let id = match last {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = Meta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: id,
        };
        self.save(&meta, &data)?;
        tracing::info!(bytes = data.len(), snapshot = %meta.snapshot_id, "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId>,
            StoredMembership<NodeId, crate::types::NodeInfo>,
        ),
        StorageErr,
    > {
        let st = self.state.lock();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageErr>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut st = self.state.lock();
        let out = st.apply_entries(entries).map_err(sm_err);
        self.summary.publish(&st);
        out
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageErr> {
        let bytes = snapshot.into_inner();
        let data: SnapshotData = decode(&bytes).map_err(sm_err)?;
        {
            let mut st = self.state.lock();
            st.install_rows(data.rows).map_err(sm_err)?;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            self.summary.publish(&st);
        }
        self.save(meta, &Arc::new(bytes))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageErr> {
        Ok(self.current.lock().as_ref().map(|(m, d)| Snapshot {
            meta: m.clone(),
            snapshot: Box::new(Cursor::new(d.to_vec())),
        }))
    }
}
