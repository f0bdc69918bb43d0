//! The openraft type configuration for raftmq.

use serde::{Deserialize, Serialize};

use crate::command::{Request, Response};

pub type NodeId = u64;

/// What the membership records about a node: its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Inter-node (Raft transport) address.
    pub cluster: String,
    /// MQTT listener address.
    pub mqtt: String,
    /// HTTP admin address.
    pub http: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.cluster)
    }
}

openraft::declare_raft_types!(
    /// raftmq's Raft types: a log entry carries a batch of commands.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        // A snapshot is a file (format: `crate::snapshot_file`): openraft's
        // chunked transfer reads and writes it in place, so no snapshot is
        // ever held in memory whole.
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageErr = openraft::StorageError<NodeId>;
pub type Membership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;

/// A committed entry (term 1, node 1) at `index` carrying `cmds` from
/// `origin`, each with its command number: how tests feed apply.
#[cfg(test)]
pub(crate) fn numbered_entry(
    index: u64,
    origin: u64,
    floor: u64,
    cmds: Vec<(u64, crate::command::Command)>,
) -> Entry {
    Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Normal(Request {
            origin,
            floor,
            cmds: std::sync::Arc::new(
                cmds.into_iter()
                    .map(|(seq, cmd)| crate::command::Envelope { seq, cmd })
                    .collect(),
            ),
        }),
    }
}

/// [`numbered_entry`] from origin 1 with unnumbered commands.
#[cfg(test)]
pub(crate) fn test_entry(index: u64, cmds: Vec<crate::command::Command>) -> Entry {
    numbered_entry(index, 1, 0, cmds.into_iter().map(|c| (0, c)).collect())
}
