//! raftmq-raft: the replicated state of an MQTT broker, kept by openraft.
//!
//! # Layout
//! - [`types`]: the openraft type configuration (node ids, entries, snapshots).
//! - [`command`]: every state change as a log command, the values they carry
//!   (messages, wills, subscription options) and their results.
//! - [`trie`]: the subscription index: topic filters to subscribers, including
//!   shared subscription groups; matching for routing.
//! - [`retain`]: the retained-message index, a trie matched by filter.
//! - [`state`]: the deterministic MQTT state: sessions, subscriptions,
//!   retained messages, queues and QoS 2 ids; applying a command updates
//!   RocksDB (through one batch) and emits delivery events.
//! - [`state_machine`]: openraft's `RaftStateMachine` over [`state`], with
//!   snapshots.
//! - [`log_store`]: openraft's `RaftLogStorage` over RocksDB, with group commit
//!   (one WAL sync per batch of appends).
//! - [`network`]: the inter-node transport (none for a single voter yet).
//! - [`proposer`]: batches client commands into log entries and fans the
//!   results back out, keeping proposal order.
//! - [`node`]: starts a Raft node on a data directory and exposes its handles.
//! - [`error`]: typed errors.

// openraft's `StorageError` is large and its trait signatures fix it as the
// error type of storage callbacks; boxing it is not ours to choose.
#![allow(clippy::result_large_err)]

pub mod command;
pub mod error;
pub mod log_store;
pub mod network;
pub mod node;
pub mod proposer;
pub mod retain;
pub mod state;
pub mod state_machine;
pub mod trie;
pub mod types;

pub use command::*;
pub use error::RaftError;
pub use node::{RaftNode, RaftNodeConfig};
pub use proposer::Proposer;
pub use state::{ApplyEvent, EventSink, MqttState};
pub use types::TypeConfig;
