//! The broker context shared by every task of a node: settings, the Raft node
//! (proposals, state views, routing index), the local connection registry,
//! metrics, the disk alarm and the lifecycle handle.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use raftmq_raft::RaftNode;

use crate::config::live::Live;
use crate::config::Settings;
use crate::listener::ListenerSet;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::resources::DiskAlarm;
use crate::shutdown::Shutdown;

pub struct Broker {
    /// As the node started (config file and flags). The cluster-wide values
    /// in effect are the replicated ones (`node.summary().settings`), and
    /// the per-node live ones are in `live`.
    pub settings: Settings,
    pub node: RaftNode,
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    /// Free space of the data directory against `disk_free_limit`; while
    /// raised, new QoS 1/2 publishes are refused.
    pub disk: DiskAlarm,
    pub started: Instant,
    /// The MQTT listener is up (false while waiting for a quorum at start,
    /// and after this node was removed from the cluster).
    pub accepting: AtomicBool,
    /// The node's lifecycle handle: tasks select on it, HTTP handlers send
    /// requests (restart to join) through it.
    pub life: Shutdown,
    /// The per-node keys `raftmq set` changes while the node runs.
    pub live: Live,
    /// Logins, the ACL and admin API keys.
    pub auth: crate::auth::Auth,
    /// The MQTT listeners (`listener show|start|stop`).
    pub listeners: ListenerSet,
}

impl Broker {
    pub fn sys_prefix(&self) -> String {
        format!("$SYS/{}/", self.settings.node_id)
    }
}
