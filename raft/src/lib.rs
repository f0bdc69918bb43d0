//! raftmq-raft: the replicated state of an MQTT broker, kept by openraft.
//!
//! # Layout
//! - [`types`]: the openraft type configuration (node ids, entries, snapshots).
//! - [`command`]: every state change as a log command (one named struct per
//!   command, wrapped by its [`Command`] variant), the values they carry
//!   (messages, wills, subscription options) and their results.
//! - [`trie`]: the subscription index: topic filters to subscribers, including
//!   shared subscription groups; matching for routing.
//! - [`routes`]: the targets of recently published topics, kept by the trie
//!   while the subscriptions do not change.
//! - [`retain`]: the retained-message index, a trie matched by filter.
//! - [`state`]: the deterministic MQTT state: sessions, subscriptions,
//!   retained messages, queues and QoS 2 ids; applying a command updates
//!   RocksDB (through one batch) and emits delivery events. `state/mod.rs`
//!   holds [`MqttState`] and the one dispatcher; each group of commands has
//!   its file (`sessions`, `subscriptions`, `publish`, `queues`, `acks`,
//!   `meta`), beside `guard` (the live-session epoch check), `records`,
//!   `load`, `snapshot` and `tests`. Keys come from `raftmq_storage::keys`.
//! - [`state_machine`]: openraft's `RaftStateMachine` over [`state`], with
//!   snapshots as files in the data directory: built from a RocksDB snapshot
//!   without holding the apply lock, sent and received in chunks, installed
//!   in bounded batches, an interrupted install redone at start.
//! - [`snapshot_file`]: the snapshot file format (header with the snapshot
//!   meta, length-prefixed rows, row count and CRC), written and read as a
//!   stream.
//! - `snapshot_policy`: when to build a snapshot: after so many entries, and
//!   once the log holds half the last snapshot's bytes.
//! - [`log_store`]: openraft's `RaftLogStorage` over RocksDB, with group commit
//!   (one WAL sync per batch of appends).
//! - [`log_cache`]: the newest log entries, decoded, for apply and
//!   replication.
//! - [`dedup`]: command-id sets per origin, so a retried proposal applies once.
//! - [`rpc`]: the messages nodes exchange (Raft RPCs, forwarded batches,
//!   membership, status, QoS 0 deliveries).
//! - [`transport`]: persistent, authenticated (cluster cookie), pipelined TCP
//!   connections between nodes carrying bincode frames; reconnects with
//!   backoff.
//! - [`network`]: openraft's network traits over the transport.
//! - [`service`]: serves peers' requests on this node.
//! - [`netsplit`]: whether this node is in netsplit (DESIGN §2), assessed
//!   from the Raft state, published on a watch, logged on change.
//! - [`election`]: elections with a pre-vote, so that a node returning from
//!   a partition does not depose the sitting leader.
//! - [`proposer`]: batches client commands into log entries, on the leader or
//!   forwarded to it, resends what a leader change left unresolved, and fans
//!   the results back out; holds them while in netsplit and gives each
//!   client command a final answer by its deadline.
//! - [`membership`]: join, leave and the cluster view; changes run in tasks
//!   the leader owns, a driver finishes joint configurations left behind,
//!   and data-directory identities keep a node id to one directory.
//! - [`node`]: starts a Raft node on a data directory; its API: proposals,
//!   addresses, stats, health, membership, read-only views, a clean stop.
//! - [`view`]: read-only views of the state that never take the apply lock
//!   (a summary published per applied batch; listings from RocksDB).
//! - [`settings`]: the cluster-wide settings by key: their parser (shared by
//!   config files, `raftmq set` and apply), values and sources.
//! - [`metrics`]: what the Raft side measures (commit, fsync, apply, forward
//!   and snapshot timings; leader changes; per-peer replication lag).
//! - [`error`]: typed errors.

// openraft's `StorageError` is large and its trait signatures fix it as the
// error type of storage callbacks; boxing it is not ours to choose.
#![allow(clippy::result_large_err)]

pub mod command;
pub mod dedup;
pub mod election;
pub mod error;
pub mod log_cache;
pub mod log_store;
pub mod membership;
pub mod metrics;
pub mod netsplit;
pub mod network;
pub mod node;
pub mod proposer;
pub mod retain;
pub mod routes;
pub mod rpc;
pub mod service;
pub mod settings;
pub mod snapshot_file;
mod snapshot_policy;
pub mod state;
pub mod state_machine;
pub mod transport;
pub mod trie;
pub mod types;
pub mod view;

pub use command::*;
pub use error::RaftError;
pub use node::{NodeStats, RaftNode, RaftNodeConfig, Removal};
pub use proposer::Proposer;
pub use settings::{ClusterConfig, SettingError, SettingSource};
pub use state::{ApplyEvent, EventSink, Fanout, KickReason, MqttState};
pub use types::{NodeId, NodeInfo, TypeConfig};
pub use view::{QueuePage, SessionPage, SessionQuery, StateSummary};
