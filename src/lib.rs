//! raftmq: a durability-first MQTT broker. Every session, subscription and
//! retained change, and every QoS 1/2 message, is committed to a Raft log on
//! RocksDB (see `raftmq-raft` and `raftmq-storage`) before the client gets
//! its acknowledgement.
//!
//! # Layout
//! - [`codec`]: MQTT 3.1 / 3.1.1 / 5.0 packets to and from bytes.
//! - [`config`]: settings, defaults and the TOML config file.
//! - [`server`]: the owner of a node's life: start (Raft, listeners, HTTP,
//!   `$SYS`), serve, stop.
//! - [`shutdown`]: the lifecycle handle every task selects on, lifecycle
//!   requests, and the node's one signal handler.
//! - [`broker`]: the context shared by a node's tasks.
//! - [`listener`]: the MQTT listeners (tcp, ssl, ws, wss, PROXY protocol),
//!   their limits, and the transport handshakes before CONNECT.
//! - [`connection`]: one connection from CONNECT to close.
//! - [`session`]: a session's outbound window, packet ids and retransmission.
//! - [`coarse_clock`]: the cheap monotonic clock the window times sends by.
//! - [`registry`]: which clients are connected here; routes apply events.
//! - [`orphans`]: ends registrations that committed after their CONNECT
//!   gave up (outcome unknown), so no session stays "connected" to nothing.
//! - [`mailbox`]: the channel each connection receives those events on.
//! - [`router`]: best-effort QoS 0 routing outside the log, to subscribers
//!   on this node and on the others.
//! - [`http`]: `/health`, `/metrics` and the `/api/v1` admin API.
//! - [`metrics`]: counters and their Prometheus exposition.
//! - [`resources`]: the disk alarm (`disk_free_limit`): the monitor task and
//!   the state connections read to refuse publishes before acknowledging.
//! - [`sys`]: the `$SYS` tree.
//! - [`cli`]: the admin commands, clients of the HTTP API.
//! - [`auth`]: users and logins, the ACL, admin API keys, the message rate.
//! - [`devcluster`]: `raftmq dev-cluster`, three local nodes in one cluster.

pub mod auth;
pub mod broker;
pub mod cli;
pub mod coarse_clock;
pub mod codec;
pub mod config;
pub mod connection;
pub mod devcluster;
pub mod http;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod orphans;
pub mod registry;
pub mod resources;
pub mod router;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod sys;
