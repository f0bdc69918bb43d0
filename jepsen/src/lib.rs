//! raftmq-jepsen: partition, kill and pause scenarios against a real
//! three-node raftmq cluster, treated as a black box (the `raftmq` binary,
//! its admin API and MQTT; nothing internal).
//!
//! # Layout
//! - [`history`]: the record of a run (operations, deliveries, faults, role
//!   samples) as JSON lines.
//! - [`check`]: the checkers, each a pure function of a history.
//! - [`mqtt`]: a small MQTT 3.1.1/5 client whose every outcome is explicit.
//! - [`net`]: network namespaces, veth pairs, a bridge, iptables partitions.
//! - [`node`]: one raftmq process in its namespace; kill, pause, wipe.
//! - [`cluster`]: three nodes started fresh and waited on.
//! - [`admin`]: the nodes' admin HTTP API as the harness reads it.
//! - [`nemesis`]: the faults, on a seeded schedule; the role monitor.
//! - [`workload`]: the clients that drive the cluster and record the history.
//! - [`scenario`]: the bundled scenarios and negative controls.
//! - [`run`]: one run, from a fresh cluster to the report.
//! - [`report`]: verdicts, PNG plots and `index.html` for one run.
//! - [`summary`]: the table over several runs.

pub mod admin;
pub mod check;
pub mod cluster;
pub mod history;
pub mod mqtt;
pub mod nemesis;
pub mod net;
pub mod node;
pub mod report;
pub mod run;
pub mod scenario;
pub mod summary;
pub mod workload;
