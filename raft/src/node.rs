//! Starting a Raft node on a data directory: storage, state machine, openraft,
//! the proposer, and the leader's ticker that turns time into `Tick` commands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use parking_lot::{Mutex, RwLock};
use raftmq_storage::Store;

use crate::command::Command;
use crate::error::RaftError;
use crate::log_store::LogStore;
use crate::network::Network;
use crate::proposer::Proposer;
use crate::state::{EventSink, MqttState};
use crate::state_machine::StateMachine;
use crate::trie::Trie;
use crate::types::{NodeId, Raft};

pub struct RaftNodeConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// This node's inter-node address, as recorded in the membership.
    pub addr: String,
    pub sink: Arc<dyn EventSink>,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_logs: u64,
}

#[derive(Clone)]
pub struct RaftNode {
    pub node_id: NodeId,
    pub raft: Raft,
    pub proposer: Proposer,
    pub state: Arc<Mutex<MqttState>>,
    pub trie: Arc<RwLock<Trie>>,
    pub store: Store,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RaftNode {
    pub async fn start(cfg: RaftNodeConfig) -> Result<RaftNode, RaftError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| RaftError::Raft(format!("create {}: {e}", cfg.data_dir.display())))?;
        let store = Store::open(&cfg.data_dir.join("db"))?;
        let state = MqttState::open(store.clone(), cfg.sink)?;
        let trie = state.trie();
        let state = Arc::new(Mutex::new(state));
        let sm = StateMachine::new(state.clone(), cfg.data_dir.join("snapshot.bin"));
        let log = LogStore::new(store.clone())?;
        let config = Config {
            cluster_name: "raftmq".into(),
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
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
        let raft = Raft::new(cfg.node_id, Arc::new(config), Network, log, sm)
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        if !raft
            .is_initialized()
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?
        {
            let mut members = BTreeMap::new();
            members.insert(
                cfg.node_id,
                BasicNode {
                    addr: cfg.addr.clone(),
                },
            );
            raft.initialize(members)
                .await
                .map_err(|e| RaftError::Raft(e.to_string()))?;
        }
        raft.wait(Some(Duration::from_secs(30)))
            .state(ServerState::Leader, "single voter becomes leader")
            .await
            .map_err(|e| RaftError::Unavailable(e.to_string()))?;
        let proposer = Proposer::start(raft.clone(), cfg.node_id);
        let node = RaftNode {
            node_id: cfg.node_id,
            raft,
            proposer,
            state,
            trie,
            store,
        };
        tokio::spawn(ticker(node.clone()));
        Ok(node)
    }

    /// Is this node the leader right now?
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// Do we have a quorum (a known leader)?
    pub fn in_quorum(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
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
            if let Err(e) = node.proposer.propose(Command::Tick { now_ms: now }).await {
                tracing::warn!(error = %e, "tick not applied");
            }
        }
    }
}
