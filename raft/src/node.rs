//! Starting a Raft node on a data directory: storage, state machine,
//! openraft, the inter-node transport and its listener, the proposer, and the
//! leader's ticker that turns time into `Tick` commands. Also the node's view
//! of its own health (quorum).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, ServerState, SnapshotPolicy};
use parking_lot::{Mutex, RwLock};
use raftmq_storage::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::command::{Command, Tick};
use crate::error::RaftError;
use crate::log_store::LogStore;
use crate::network::Network;
use crate::proposer::Proposer;
use crate::state::{EventSink, MqttState};
use crate::state_machine::StateMachine;
use crate::transport::Transport;
use crate::trie::Trie;
use crate::types::{NodeId, NodeInfo, Raft};

/// Election timeout bounds (ms); also what "in quorum" is measured against.
/// openraft also uses the heartbeat interval as the timeout of every
/// AppendEntries, so it must cover a loaded follower's append and fsync; the
/// election timeout keeps leader failover well under 2 s.
pub const ELECTION_TIMEOUT_MIN: u64 = 400;
pub const ELECTION_TIMEOUT_MAX: u64 = 800;
pub const HEARTBEAT: u64 = 100;

pub struct RaftNodeConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// This node's addresses, as recorded in the membership.
    pub info: NodeInfo,
    /// The bound inter-node listener (at `info.cluster`).
    pub listener: TcpListener,
    /// The cluster secret every inter-node connection proves.
    pub cookie: String,
    /// Join the cluster of this node (inter-node address) when this data
    /// directory is new. None: a new data directory bootstraps a cluster of
    /// one.
    pub join: Option<String>,
    pub sink: Arc<dyn EventSink>,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_logs: u64,
}

/// Why this node stopped serving: the cluster removed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// `cluster leave -k`: disconnect every client.
    pub kill: bool,
}

#[derive(Clone)]
pub struct RaftNode {
    pub node_id: NodeId,
    pub info: NodeInfo,
    pub raft: Raft,
    pub proposer: Proposer,
    pub transport: Arc<Transport>,
    pub state: Arc<Mutex<MqttState>>,
    pub trie: Arc<RwLock<Trie>>,
    pub store: Store,
    /// Where QoS 0 from other nodes is delivered.
    pub sink: Arc<dyn EventSink>,
    /// Serializes membership changes; holds what is in progress.
    pub(crate) changing: Arc<Mutex<Option<String>>>,
    /// Set when the cluster removed this node.
    pub removed: Arc<watch::Sender<Option<Removal>>>,
    /// Set once this node is part of a cluster (bootstrapped or joined).
    pub(crate) joined: Arc<AtomicBool>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RaftNode {
    /// Opens the node. Returns once openraft runs; use [`RaftNode::wait_ready`]
    /// to wait for a leader (a joining node first has to be added).
    pub async fn start(cfg: RaftNodeConfig) -> Result<RaftNode, RaftError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| RaftError::Raft(format!("create {}: {e}", cfg.data_dir.display())))?;
        let store = Store::open(&cfg.data_dir.join("db"))?;
        let state = MqttState::open(store.clone(), cfg.sink.clone())?;
        let trie = state.trie();
        let state = Arc::new(Mutex::new(state));
        let sm = StateMachine::new(state.clone(), cfg.data_dir.join("snapshot.bin"));
        let log = LogStore::new(store.clone())?;
        let config = Config {
            cluster_name: "raftmq".into(),
            heartbeat_interval: HEARTBEAT,
            election_timeout_min: ELECTION_TIMEOUT_MIN,
            election_timeout_max: ELECTION_TIMEOUT_MAX,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs),
            // Entries kept behind a snapshot for followers that lag a little.
            max_in_snapshot_log_to_keep: cfg.snapshot_logs.min(1000),
            // openraft purges only when this many entries can go at once.
            purge_batch_size: (cfg.snapshot_logs / 2).clamp(1, 1024),
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Raft(e.to_string()))?;
        let transport = Transport::new(cfg.node_id, &cfg.cookie);
        let network = Network {
            transport: transport.clone(),
        };
        let raft = Raft::new(cfg.node_id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        let proposer = Proposer::start(raft.clone(), transport.clone(), cfg.node_id);
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        let node = RaftNode {
            node_id: cfg.node_id,
            info: cfg.info.clone(),
            raft,
            proposer,
            transport: transport.clone(),
            state,
            trie,
            store,
            sink: cfg.sink.clone(),
            changing: Arc::new(Mutex::new(None)),
            removed: Arc::new(watch::channel(None).0),
            joined: Arc::new(AtomicBool::new(initialized)),
        };
        tokio::spawn(transport.serve(cfg.listener, Arc::new(node.clone())));
        if !initialized {
            match cfg.join {
                None => {
                    let mut members = BTreeMap::new();
                    members.insert(cfg.node_id, cfg.info.clone());
                    node.raft
                        .initialize(members)
                        .await
                        .map_err(|e| RaftError::Raft(e.to_string()))?;
                    node.joined.store(true, Ordering::Release);
                    info!(node_id = cfg.node_id, "bootstrapped a new cluster of one");
                }
                Some(addr) => {
                    let n = node.clone();
                    tokio::spawn(async move { n.join_until_done(&addr).await });
                }
            }
        }
        tokio::spawn(ticker(node.clone()));
        Ok(node)
    }

    /// Waits until this node is part of a cluster that has a leader.
    pub async fn wait_ready(&self) {
        let mut rx = self.raft.metrics();
        let mut last_log = std::time::Instant::now();
        loop {
            if self.joined.load(Ordering::Acquire) && rx.borrow().current_leader.is_some() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
            if last_log.elapsed() > Duration::from_secs(5) {
                last_log = std::time::Instant::now();
                if self.joined.load(Ordering::Acquire) {
                    warn!("waiting for a leader (no quorum yet)");
                } else {
                    info!("waiting to join a cluster");
                }
            }
        }
    }

    /// Is this node the leader right now?
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// Is this node part of a quorum right now? A leader must have heard from
    /// a majority within the election timeout; a follower must know a
    /// leader (it stops knowing one when its election timer fires).
    pub fn in_quorum(&self) -> bool {
        if self.removed.borrow().is_some() || !self.joined.load(Ordering::Acquire) {
            return false;
        }
        let m = self.raft.metrics();
        let m = m.borrow();
        let voters = m.membership_config.membership().voter_ids().count();
        match m.state {
            ServerState::Leader => {
                voters <= 1
                    || m.millis_since_quorum_ack
                        .is_some_and(|ms| ms <= ELECTION_TIMEOUT_MAX)
            }
            ServerState::Follower | ServerState::Learner => m.current_leader.is_some(),
            ServerState::Candidate | ServerState::Shutdown => false,
        }
    }

    /// Is this node a member (voter or learner) of the cluster it knows?
    pub fn is_member(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&self.node_id)
            .is_some()
    }
}

/// While leader, proposes `Tick` whenever a will or session expiry is due.
async fn ticker(node: RaftNode) {
    let mut iv = tokio::time::interval(Duration::from_millis(100));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        if !node.is_leader() {
            continue;
        }
        let now = now_ms();
        let due = node.state.lock().next_deadline().is_some_and(|d| d <= now);
        if due {
            if let Err(e) = node
                .proposer
                .propose(Command::Tick(Tick { now_ms: now }))
                .await
            {
                tracing::warn!(error = %e, "tick not applied");
            }
        }
    }
}
