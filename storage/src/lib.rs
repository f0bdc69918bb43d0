//! raftmq-storage: everything raftmq keeps on disk, in one RocksDB instance.
//!
//! # Layout
//! - [`db`]: opening the database, its column families and options; the one
//!   place that decides which writes are synced.
//! - [`log`]: the Raft log (entries by index) and Raft metadata (vote,
//!   committed, purge point), stored as opaque bytes: this crate knows nothing
//!   about openraft's types.
//! - [`state`]: the replicated state tables (sessions, subscriptions, retained
//!   messages, message bodies, per-session queues, inbound QoS 2 ids, meta),
//!   written in atomic batches by the state machine and never synced on their
//!   own (the log is the source of truth; see docs/design.md §5); read at one
//!   point in time through a RocksDB snapshot ([`StateReader`]), and replaced
//!   wholesale, in bounded batches, when a Raft snapshot is installed
//!   ([`StateReplace`]).
//! - [`held`]: commands this node accepted during a netsplit and has not
//!   committed yet, kept locally (synced) until they are.
//! - [`keys`]: the byte layout of every key (log indexes and the rows of each
//!   state table) and its inverse. Every key starts with the id of the Raft
//!   group it belongs to (always 0 today), so that a later split into many
//!   groups needs no change of format.
//! - [`error`]: the typed error every function here returns.

pub mod db;
pub mod error;
pub mod held;
pub mod keys;
pub mod log;
pub mod state;

pub use db::{Compaction, MemoryUsage, Store, StoreOptions};
pub use error::StorageError;
pub use state::{StateBatch, StateReader, StateReplace, Table};
