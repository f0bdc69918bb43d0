//! The broker context shared by every task of a node: settings, the Raft node
//! (proposer, state, trie), the local connection registry and metrics.

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
}

impl Broker {
    pub fn sys_prefix(&self) -> String {
        format!("$SYS/{}/", self.settings.node_id)
    }
}
