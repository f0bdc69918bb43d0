//! The broker context shared by every task of a node: settings, the Raft node
//! (proposer, state, trie), the local connection registry, metrics, and the
//! node-local `$SYS` values.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
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
    /// Latest `$SYS/<node>/...` values, sent to new `$SYS` subscribers.
    pub sys: RwLock<BTreeMap<String, String>>,
}

impl Broker {
    pub fn sys_prefix(&self) -> String {
        format!("$SYS/{}/", self.settings.node_id)
    }
}
