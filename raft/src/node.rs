//! Starting a Raft node on a data directory: storage, state machine,
//! openraft, the inter-node transport and its listener, the proposer, and the
//! leader's ticker that turns time into `Tick` commands. The node's handles
//! stay private: the broker proposes, reads addresses, stats, health and the
//! read-only state views, and stops the node, through [`RaftNode`]'s methods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use raftmq_storage::{Compaction, MemoryUsage, Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::command::{CmdResult, Command, Message, Tick};
use crate::error::RaftError;
use crate::log_store::LogStore;
use crate::netsplit::{Netsplit, Quorum, RaftFacts};
use crate::network::Network;
use crate::proposer::{Deadline, Proposer, ResultRx, Timeouts};
use crate::rpc::{RemoteTarget, Reply, Rpc};
use crate::state::{EventSink, MqttState};
use crate::state_machine::StateMachine;
use crate::transport::Transport;
use crate::trie::Trie;
use crate::types::{NodeId, NodeInfo, Raft};
use crate::view::{Published, QueuePage, SessionPage, SessionQuery, StateSummary, StateView};

/// Election timeout bounds (ms); also what "in quorum" is measured against.
/// openraft also uses the heartbeat interval as the timeout of every
/// AppendEntries, so it must cover a loaded follower's append and fsync; the
/// election timeout keeps leader failover well under 2 s.
pub const ELECTION_TIMEOUT_MIN: u64 = 400;
pub const ELECTION_TIMEOUT_MAX: u64 = 800;
pub const HEARTBEAT: u64 = 100;
// A restarted peer must hear from the leader before its own election timer
// fires (see `transport::BACKOFF_MAX`).
const _: () = assert!(
    2 * crate::transport::BACKOFF_MAX.as_millis() <= ELECTION_TIMEOUT_MIN as u128,
    "the transport's reconnect backoff must stay within half the shortest election timeout"
);

/// Bounds of a snapshot chunk (`snapshot_chunk_bytes`). The largest leaves
/// room in a transport frame ([`crate::transport::MAX_FRAME`], 64 MiB) for
/// the request around it (vote, snapshot meta with the membership).
pub const MIN_SNAPSHOT_CHUNK: u64 = 4 << 10;
pub const MAX_SNAPSHOT_CHUNK: u64 = 16 << 20;
/// The default chunk: a few MiB, sent in a few ms on a LAN.
pub const DEFAULT_SNAPSHOT_CHUNK: u64 = 4 << 20;
const _: () = assert!(MAX_SNAPSHOT_CHUNK * 2 <= crate::transport::MAX_FRAME as u64);
/// How long the leader waits for the answer to a snapshot's last chunk,
/// which the receiver gives once it has checked and installed the whole
/// snapshot (1.1 GB took 11 s on a 2-core test machine; this leaves room
/// for far larger states and slower disks). A receiver that dies or whose
/// connection breaks fails the call sooner.
pub const SNAPSHOT_INSTALL_TIMEOUT_MS: u64 = 10 * 60 * 1000;

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
    /// RocksDB's memory budget.
    pub store: StoreOptions,
    /// A snapshot is sent to a follower in chunks of this many bytes
    /// (clamped to [`MIN_SNAPSHOT_CHUNK`]..=[`MAX_SNAPSHOT_CHUNK`]).
    pub snapshot_chunk_bytes: u64,
    /// How long `join` (and a restarted member's address update) may try
    /// before the node gives up.
    pub join_timeout: Duration,
    /// A client command's deadlines (see [`crate::proposer`]).
    pub timeouts: Timeouts,
}

/// Why this node stopped serving: the cluster removed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// `cluster leave -k`: disconnect every client.
    pub kill: bool,
}

/// A running Raft node. Cheap to clone; every clone is the same node. Its
/// handles stay inside this crate: the broker uses the methods below.
#[derive(Clone)]
pub struct RaftNode {
    pub(crate) node_id: NodeId,
    pub(crate) info: NodeInfo,
    pub(crate) raft: Raft,
    pub(crate) proposer: Proposer,
    pub(crate) transport: Arc<Transport>,
    pub(crate) trie: Arc<RwLock<Trie>>,
    pub(crate) store: Store,
    /// Counts and settings, published by apply once per batch.
    pub(crate) summary: Published,
    /// Session and retained listings, from RocksDB.
    pub(crate) view: StateView,
    /// Where QoS 0 from other nodes is delivered.
    pub(crate) sink: Arc<dyn EventSink>,
    /// The one membership change this node (as leader) runs, and those it
    /// finished lately.
    pub(crate) changes: Arc<crate::membership::Changes>,
    /// This data directory's identity (see `membership::identity`).
    pub(crate) identity: u128,
    /// Set when the cluster refused this node, or `--join` gave up: why.
    pub(crate) join_error: Arc<watch::Sender<Option<String>>>,
    /// Set when the cluster removed this node.
    pub(crate) removed: Arc<watch::Sender<Option<Removal>>>,
    /// Set once this node is part of a cluster (bootstrapped or joined).
    pub(crate) joined: Arc<AtomicBool>,
    /// When a leader last reached this node, and the netsplit state.
    pub(crate) quorum: Arc<Quorum>,
    /// Users, ACL and API keys as of the last applied batch.
    pub(crate) auth: crate::state::AuthHandle,
    /// Ends this node's own tasks (the ticker, a `--join` loop).
    pub(crate) stop: CancellationToken,
}

/// Point-in-time values of the node's Raft metrics, proposer and transport.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    pub in_quorum: bool,
    /// In netsplit now (DESIGN §2), and since when (wall clock ms), why.
    pub in_netsplit: bool,
    pub netsplit_since_ms: Option<u64>,
    pub netsplit_reason: String,
    /// Times this node entered and left netsplit.
    pub netsplit_detected: u64,
    pub netsplit_resolved: u64,
    /// Client commands answered `NotCommitted` and `Unknown` at their
    /// deadline.
    pub commands_not_committed: u64,
    pub commands_outcome_unknown: u64,
    pub term: u64,
    /// Entries in the log now (last index - purged index).
    pub log_entries: u64,
    /// Last log index covered by the snapshot.
    pub snapshot_index: u64,
    /// Log entries (batches) and commands this node proposed.
    pub proposed_entries: u64,
    pub proposed_commands: u64,
    /// Batches this node forwarded to the leader, and sent again.
    pub forwarded: u64,
    pub resent: u64,
    /// Inter-node connections dialled, and refused (either way).
    pub peer_connects: u64,
    pub peer_refused: u64,
    /// Snapshot chunks this node sent (and had acknowledged), and their
    /// bytes.
    pub snapshot_chunks_sent: u64,
    pub snapshot_bytes_sent: u64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The leader as this node knows it, with its addresses when it is a member
/// this node knows. The one lookup of the leader's address.
pub(crate) fn leader_of(raft: &Raft) -> (Option<NodeId>, Option<NodeInfo>) {
    let m = raft.metrics();
    let m = m.borrow();
    let l = m.current_leader;
    let info = l.and_then(|l| m.membership_config.membership().get_node(&l).cloned());
    (l, info)
}

impl RaftNode {
    /// Opens the node. Returns once openraft runs; use [`RaftNode::wait_ready`]
    /// to wait for a leader (a joining node first has to be added).
    pub async fn start(cfg: RaftNodeConfig) -> Result<RaftNode, RaftError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| RaftError::Raft(format!("create {}: {e}", cfg.data_dir.display())))?;
        let identity = crate::membership::identity::load_or_create(&cfg.data_dir)?;
        let store = Store::open_with(&cfg.data_dir.join("db"), cfg.store)?;
        crate::state_machine::recover_install(&store, &cfg.data_dir)?;
        let state = MqttState::open(store.clone(), cfg.sink.clone())?;
        let trie = state.trie();
        let auth = state.auth();
        let summary = Published::default();
        summary.publish(&state);
        let state = Arc::new(Mutex::new(state));
        let sm = StateMachine::new(state, &cfg.data_dir, summary.clone());
        let log = LogStore::new(store.clone())?;
        let appended = log.appended();
        let config = Config {
            cluster_name: "raftmq".into(),
            heartbeat_interval: HEARTBEAT,
            election_timeout_min: ELECTION_TIMEOUT_MIN,
            election_timeout_max: ELECTION_TIMEOUT_MAX,
            // Built by crate::snapshot_policy, which also weighs the
            // state's size.
            snapshot_policy: SnapshotPolicy::Never,
            // Entries kept behind a snapshot for followers that lag a little.
            max_in_snapshot_log_to_keep: cfg.snapshot_logs.min(1000),
            // openraft purges only when this many entries can go at once.
            purge_batch_size: (cfg.snapshot_logs / 2).clamp(1, 1024),
            max_payload_entries: 64,
            // A snapshot goes in chunks of this size, each one request on
            // the transport (whose frames are at most MAX_FRAME).
            snapshot_max_chunk_size: cfg
                .snapshot_chunk_bytes
                .clamp(MIN_SNAPSHOT_CHUNK, MAX_SNAPSHOT_CHUNK),
            // Bounds each chunk's RPC, and the last chunk's includes
            // installing the whole snapshot on the receiver (see
            // SNAPSHOT_INSTALL_TIMEOUT_MS). Earlier chunks get a shorter
            // deadline from the network layer.
            install_snapshot_timeout: SNAPSHOT_INSTALL_TIMEOUT_MS,
            // Elections start only after a pre-vote (crate::election).
            enable_elect: false,
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
        let quorum = Arc::new(Quorum::default());
        let proposer = Proposer::start(
            raft.clone(),
            transport.clone(),
            cfg.node_id,
            quorum.watch(),
            cfg.timeouts,
            store.clone(),
        )?;
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
            trie,
            auth,
            view: StateView::new(store.clone()),
            store,
            summary,
            sink: cfg.sink.clone(),
            changes: Arc::default(),
            identity,
            join_error: Arc::new(watch::channel(None).0),
            removed: Arc::new(watch::channel(None).0),
            joined: Arc::new(AtomicBool::new(initialized)),
            quorum,
            stop: CancellationToken::new(),
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
                    node.spawn_announce(cfg.join_timeout);
                }
                Some(addr) => {
                    let n = node.clone();
                    let limit = cfg.join_timeout;
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = n.stop.cancelled() => {}
                            r = n.join_until_done(&addr, limit) => match r {
                                Ok(msg) => info!("{msg}"),
                                Err(why) => n.refuse(why),
                            },
                        }
                    });
                }
            }
        } else {
            node.spawn_announce(cfg.join_timeout);
        }
        tokio::spawn(crate::membership::driver(node.clone()));
        tokio::spawn(ticker(node.clone()));
        tokio::spawn(crate::netsplit::monitor(node.clone()));
        tokio::spawn(crate::election::driver(node.clone()));
        tokio::spawn(crate::metrics::watch_leader(node.raft.clone()));
        let policy = crate::snapshot_policy::Inputs {
            raft: node.raft.clone(),
            entries: cfg.snapshot_logs,
            appended,
            snapshot_file: crate::state_machine::current_file(&cfg.data_dir),
        };
        tokio::spawn(crate::snapshot_policy::run(policy, node.stop.clone()));
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.node_id
    }

    // ----- proposals -------------------------------------------------------

    /// Proposes one of the node's own commands and waits until it is
    /// applied, however long that takes.
    pub async fn propose(&self, cmd: Command) -> Result<CmdResult, RaftError> {
        self.proposer.propose(cmd, Deadline::Never).await
    }

    /// Proposes an operator's command and waits for its final answer: the
    /// result, or by its deadline `NotCommitted` (never will be) or
    /// `Unknown`.
    pub async fn propose_for_client(&self, cmd: Command) -> Result<CmdResult, RaftError> {
        self.proposer.propose(cmd, Deadline::Client).await
    }

    /// Queues a client's command; the receiver yields its result once it is
    /// applied, or by its deadline `NotCommitted` (final) or `Unknown`.
    pub async fn submit(&self, cmd: Command) -> Result<ResultRx, RaftError> {
        self.proposer.submit(cmd, Deadline::Client).await
    }

    /// Queues one of the node's own commands, held until it commits however
    /// long that takes (a connection's disconnect); the receiver yields its
    /// result.
    pub async fn submit_own(&self, cmd: Command) -> Result<ResultRx, RaftError> {
        self.proposer.submit(cmd, Deadline::Never).await
    }

    /// Accepts a client's command locally while this node is in netsplit
    /// (its `allow_*_during_netsplit` switch is on): the receiver yields
    /// `Done` once it is on this node's disk; it is proposed when quorum
    /// returns, exactly once.
    pub async fn submit_local(&self, cmd: Command) -> Result<ResultRx, RaftError> {
        self.proposer.submit(cmd, Deadline::Local).await
    }

    /// Queues a command whose result nobody waits for (subscriber acks).
    pub async fn submit_forget(&self, cmd: Command) -> Result<(), RaftError> {
        self.proposer.submit_forget(cmd).await
    }

    // ----- addresses -------------------------------------------------------

    /// The addresses of member `id`, as the membership records them.
    pub fn node_info(&self, id: NodeId) -> Option<NodeInfo> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// The current leader and its addresses, if known.
    pub fn leader_info(&self) -> Option<(NodeId, NodeInfo)> {
        let (l, info) = leader_of(&self.raft);
        l.zip(info)
    }

    // ----- QoS 0 routing (outside the log) ---------------------------------

    /// The replicated subscription index, for routing. Apply writes it; hold
    /// the guard briefly.
    pub fn subscriptions(&self) -> RwLockReadGuard<'_, Trie> {
        self.trie.read()
    }

    /// Sends a QoS 0 message to its subscribers on node `to`, best effort
    /// (in the background). False if `to` is not a member this node knows.
    pub fn deliver_remote(&self, to: NodeId, msg: Message, targets: Vec<RemoteTarget>) -> bool {
        let Some(info) = self.node_info(to) else {
            return false;
        };
        let transport = self.transport.clone();
        tokio::spawn(async move {
            if let Err(e) = transport
                .notify(to, &info.cluster, Rpc::Deliver { msg, targets })
                .await
            {
                tracing::debug!(node = to, error = %e, "QoS 0 to another node dropped");
            }
        });
        true
    }

    // ----- read-only views (none takes the apply lock) ---------------------

    /// Users, ACL and API keys as of the last applied batch (never waits
    /// for apply).
    pub fn auth(&self) -> Arc<crate::state::AuthTable> {
        self.auth.get()
    }

    /// Raised by every change to [`RaftNode::auth`]'s table: what was
    /// derived from the table at an equal generation is still current.
    pub fn auth_generation(&self) -> u64 {
        self.auth.generation()
    }

    /// Counts and settings as of the last applied batch.
    pub fn summary(&self) -> Arc<StateSummary> {
        self.summary.get()
    }

    /// The sessions `q` asks for, by client id, at most `q.limit`.
    pub fn session_page(&self, q: &SessionQuery) -> Result<SessionPage, RaftError> {
        self.view.session_page(q)
    }

    /// Up to `max_items` items (and about `max_bytes` of payload) of
    /// `client`'s queue from sequence `from` on, or from the queue's head.
    /// Read from this node's RocksDB, as applied so far.
    pub fn queue_page(
        &self,
        client: &str,
        from: Option<u64>,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<QueuePage, RaftError> {
        self.view.queue_page(client, from, max_items, max_bytes)
    }

    /// Waits until this node has applied log entry `index` (so its own
    /// RocksDB holds what that entry did), at most `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), RaftError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "wait applied")
            .await
            .map(|_| ())
            .map_err(|e| RaftError::Unavailable(format!("entry {index} not applied here: {e}")))
    }

    /// Retained messages whose topic matches `filter`, by topic.
    pub fn retained(&self, filter: &str) -> Result<Vec<Message>, RaftError> {
        self.view.retained(filter)
    }

    /// Raft, proposer and transport values for metrics and status.
    pub fn stats(&self) -> NodeStats {
        let (leader, term, log_entries, snapshot_index) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let last = m.last_log_index.unwrap_or(0);
            let purged = m.purged.map_or(0, |l| l.index);
            (
                m.current_leader,
                m.current_term,
                last.saturating_sub(purged),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        let p = self.proposer.stats();
        let t = &self.transport.stats;
        let split = self.quorum.current();
        let (detected, resolved) = self.quorum.transitions();
        NodeStats {
            leader,
            is_leader: leader == Some(self.node_id),
            in_quorum: self.in_quorum(),
            in_netsplit: split.active(),
            netsplit_since_ms: split.since_ms,
            netsplit_reason: split.reason,
            netsplit_detected: detected,
            netsplit_resolved: resolved,
            commands_not_committed: p.discarded.load(Ordering::Relaxed),
            commands_outcome_unknown: p.unknown.load(Ordering::Relaxed),
            term,
            log_entries,
            snapshot_index,
            proposed_entries: p.entries.load(Ordering::Relaxed),
            proposed_commands: p.commands.load(Ordering::Relaxed),
            forwarded: p.forwarded.load(Ordering::Relaxed),
            resent: p.resent.load(Ordering::Relaxed),
            peer_connects: t.connects.load(Ordering::Relaxed),
            peer_refused: t.refused.load(Ordering::Relaxed),
            snapshot_chunks_sent: t.snapshot_chunks_sent.load(Ordering::Relaxed),
            snapshot_bytes_sent: t.snapshot_bytes_sent.load(Ordering::Relaxed),
        }
    }

    /// Whether this client's QoS 2 packet id is recorded as received and not
    /// yet released, as of the last batch this node applied: a PUBLISH
    /// resent with it stores nothing new.
    pub fn inbound_qos2_recorded(&self, client: &str, packet_id: u16) -> Result<bool, RaftError> {
        self.view.inbound_qos2_recorded(client, packet_id)
    }

    // ----- storage ---------------------------------------------------------

    /// RocksDB's memory and its limits.
    pub fn storage_memory(&self) -> MemoryUsage {
        self.store.memory()
    }

    /// Compacts the tables that hold deleted data so their disk space comes
    /// back (see [`Store::compact_for_space`]); runs on a blocking thread.
    pub async fn compact_for_space(&self, free_bytes: u64) -> Result<Vec<Compaction>, RaftError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.compact_for_space(free_bytes))
            .await
            .map_err(|e| RaftError::Raft(format!("compaction task: {e}")))?
            .map_err(RaftError::from)
    }

    // ----- health ----------------------------------------------------------

    /// Records this member's addresses and identity with the leader (see
    /// `membership::join`), in the background.
    fn spawn_announce(&self, limit: Duration) {
        let n = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = n.stop.cancelled() => {}
                r = n.announce(limit) => if let Err(why) = r { n.refuse(why) },
            }
        });
    }

    /// The cluster refused this node, or it could not join: it cannot
    /// serve, and [`RaftNode::wait_ready`] says why.
    fn refuse(&self, why: String) {
        tracing::error!("{why}");
        self.join_error.send_replace(Some(why));
    }

    /// Waits until this node is part of a cluster that has a leader; an
    /// error if the cluster refused it or `--join` gave up.
    pub async fn wait_ready(&self) -> Result<(), RaftError> {
        let mut rx = self.raft.metrics();
        let mut last_log = std::time::Instant::now();
        loop {
            if let Some(why) = self.join_error.borrow().clone() {
                return Err(RaftError::Refused(why));
            }
            if self.joined.load(Ordering::Acquire) && rx.borrow().current_leader.is_some() {
                return Ok(());
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

    /// Is this node part of a quorum right now: serving, and not in
    /// netsplit (see [`crate::netsplit`])?
    pub fn in_quorum(&self) -> bool {
        self.serving() && !self.quorum.current().active()
    }

    /// Part of a cluster (bootstrapped or joined) and not removed from it.
    pub fn serving(&self) -> bool {
        self.removed.borrow().is_none() && self.joined.load(Ordering::Acquire)
    }

    /// Is this node in netsplit now? (Cheap: no copy of the state.)
    pub fn in_netsplit(&self) -> bool {
        self.quorum.is_active()
    }

    /// This node's netsplit state now.
    pub fn netsplit(&self) -> Netsplit {
        self.quorum.current()
    }

    /// Follows this node's netsplit state.
    pub fn netsplit_watch(&self) -> watch::Receiver<Netsplit> {
        self.quorum.watch()
    }

    /// The Raft state the netsplit assessment reads.
    pub(crate) fn raft_facts(&self) -> RaftFacts {
        let m = self.raft.metrics();
        let m = m.borrow();
        RaftFacts {
            state: m.state,
            voters: m.membership_config.membership().voter_ids().count(),
            leader: m.current_leader,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
        }
    }

    /// Is this node a member (voter or learner) of the cluster it knows?
    pub fn is_member(&self) -> bool {
        self.node_info(self.node_id).is_some()
    }

    /// Set (once) when the cluster removes this node.
    pub fn removed(&self) -> watch::Receiver<Option<Removal>> {
        self.removed.subscribe()
    }

    // ----- stop ------------------------------------------------------------

    /// Stops this node cleanly within `budget`: ends its own tasks; a leader
    /// first makes sure its followers know the commit index (so what it
    /// committed last, such as the wills of its clients, applies on them
    /// without waiting for an election); then openraft shuts down, and the
    /// RocksDB WAL is synced and the memtables flushed, whatever happened
    /// before. Call it once the node's clients are gone.
    pub async fn shutdown(&self, budget: Duration) -> Result<(), RaftError> {
        let until = tokio::time::Instant::now() + budget;
        self.stop.cancel();
        let settle = budget.min(SETTLE_FOLLOWERS);
        self.settle_followers(tokio::time::Instant::now() + settle)
            .await;
        let stopped = match tokio::time::timeout_at(until, self.raft.shutdown()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RaftError::Raft(format!("shutting down: {e}"))),
            Err(_) => Err(RaftError::Raft(format!(
                "openraft did not shut down within {budget:?}"
            ))),
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.sync_all())
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))??;
        stopped
    }

    /// A leader's last commits reach its followers with the next append;
    /// send it now, and wait (until `until`) until every reachable member
    /// has applied what this leader has.
    async fn settle_followers(&self, until: tokio::time::Instant) {
        if !self.is_leader() {
            return;
        }
        let (target, mut pending) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let target = m.last_applied.map_or(0, |l| l.index);
            let peers: Vec<(NodeId, String)> = m
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.node_id && self.transport.reachable(**id))
                .map(|(id, n)| (*id, n.cluster.clone()))
                .collect();
            (target, peers)
        };
        while !pending.is_empty() && tokio::time::Instant::now() < until {
            let _ = self.raft.trigger().heartbeat().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let asks = pending.iter().map(|(id, addr)| async move {
                let r = self
                    .transport
                    .call(*id, addr, Rpc::Status, Duration::from_millis(300))
                    .await;
                matches!(r, Ok(Reply::Status(v)) if v.committed.unwrap_or(0) >= target)
            });
            let done = futures::future::join_all(asks).await;
            let mut done = done.into_iter();
            pending.retain(|_| !done.next().unwrap_or(false));
        }
        if !pending.is_empty() {
            let ids: Vec<NodeId> = pending.iter().map(|(id, _)| *id).collect();
            warn!(nodes = ?ids, index = target, "stopping before these nodes applied the last commits");
        }
    }
}

/// How long a stopping leader waits for its followers to apply its last
/// commits.
const SETTLE_FOLLOWERS: Duration = Duration::from_secs(1);

/// While leader, proposes `Tick` whenever a will or session expiry is due.
async fn ticker(node: RaftNode) {
    let mut iv = tokio::time::interval(Duration::from_millis(100));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = node.stop.cancelled() => return,
            _ = iv.tick() => {}
        }
        if !node.is_leader() {
            continue;
        }
        let now = now_ms();
        let due = node.summary().next_deadline.is_some_and(|d| d <= now);
        if due {
            if let Err(e) = node.propose(Command::Tick(Tick { now_ms: now })).await {
                tracing::warn!(error = %e, "tick not applied");
            }
        }
    }
}
