//! The broker context shared by every task of a node: settings, the Raft node
//! (proposer, state, trie), the local connection registry and metrics.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use raftmq_raft::RaftNode;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::registry::Registry;

pub struct Broker {
    pub settings: Settings,
    pub node: RaftNode,
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub started: Instant,
    /// The MQTT listener is up (false while waiting for a quorum at start,
    /// and after this node was removed from the cluster).
    pub accepting: AtomicBool,
}

impl Broker {
    pub fn sys_prefix(&self) -> String {
        format!("$SYS/{}/", self.settings.node_id)
    }
}
