//! The openraft type configuration for raftmq.

use std::io::Cursor;

use crate::command::{Request, Response};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// raftmq's Raft types: a log entry carries a batch of commands.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageErr = openraft::StorageError<NodeId>;
