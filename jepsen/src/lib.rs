//! raftmq-jepsen: partition, kill and pause scenarios against a real
//! three-node raftmq cluster, treated as a black box (the `raftmq` binary,
//! its admin API and MQTT; nothing internal).
//!
//! # Layout
//! - [`history`]: the record of a run (operations, deliveries, faults, role
//!   samples) as JSON lines.
//! - [`check`]: the checkers, each a pure function of a history.
//! - [`mqtt`]: a small MQTT 3.1.1/5 client whose every outcome is explicit.
//! - [`report`]: verdicts, PNG plots and `index.html` for one run.

pub mod check;
pub mod history;
pub mod mqtt;
pub mod report;
