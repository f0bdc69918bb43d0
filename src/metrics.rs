//! Broker counters, shared by every connection, and their Prometheus text
//! exposition for `/metrics`. `$SYS` reads the same counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use raftmq_raft::{NodeStats, RaftNode, StateSummary};

#[derive(Default)]
pub struct Metrics {
    pub connections_total: Counter,
    pub connections_current: Gauge,
    pub messages_received: Counter,
    pub messages_sent: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub publishes_dropped: Counter,
    pub protocol_errors: Counter,
    pub commit_failures: Counter,
    /// Not exported directly: summed into the registry on render.
    pub retransmits: AtomicU64,
}

/// Point-in-time gauges that live elsewhere (state machine, raft).
pub struct Snapshot {
    pub node: NodeStats,
    pub state: Arc<StateSummary>,
}

impl Snapshot {
    /// Reads the node's stats and the state summary; takes no apply lock.
    pub fn of(node: &RaftNode) -> Snapshot {
        Snapshot {
            node: node.stats(),
            state: node.summary(),
        }
    }
}

impl Metrics {
    pub fn render(&self, s: &Snapshot) -> String {
        let mut r = Registry::with_prefix("raftmq");
        r.register(
            "connections",
            "MQTT connections accepted",
            self.connections_total.clone(),
        );
        r.register(
            "connections_current",
            "Open MQTT connections",
            self.connections_current.clone(),
        );
        r.register(
            "messages_received",
            "PUBLISH packets received",
            self.messages_received.clone(),
        );
        r.register(
            "messages_sent",
            "PUBLISH packets sent",
            self.messages_sent.clone(),
        );
        r.register(
            "bytes_received",
            "Bytes read from MQTT sockets",
            self.bytes_received.clone(),
        );
        r.register(
            "bytes_sent",
            "Bytes written to MQTT sockets",
            self.bytes_sent.clone(),
        );
        r.register(
            "publishes_dropped",
            "Messages dropped by queue limits or size",
            self.publishes_dropped.clone(),
        );
        r.register(
            "protocol_errors",
            "Connections closed for protocol errors",
            self.protocol_errors.clone(),
        );
        r.register(
            "commit_failures",
            "Client operations refused because they could not commit",
            self.commit_failures.clone(),
        );
        let gauge = |v: u64| {
            let g: Gauge = Gauge::default();
            g.set(v as i64);
            g
        };
        r.register(
            "retransmits",
            "PUBLISH/PUBREL resent",
            gauge(self.retransmits.load(Ordering::Relaxed)),
        );
        r.register(
            "sessions",
            "Sessions in the replicated state",
            gauge(s.state.sessions),
        );
        r.register(
            "subscriptions",
            "Subscriptions in the replicated state",
            gauge(s.state.subscriptions),
        );
        r.register(
            "retained_messages",
            "Retained messages",
            gauge(s.state.retained),
        );
        r.register(
            "queued_messages",
            "Messages in persistent session queues",
            gauge(s.state.queued),
        );
        r.register(
            "queue_items_reclaiming",
            "Items of ended sessions' large queues still being deleted (a bounded amount per log entry)",
            gauge(s.state.reclaiming),
        );
        r.register(
            "raft_last_applied",
            "Index of the last applied log entry",
            gauge(s.state.last_applied),
        );
        let drops: Family<Vec<(String, String)>, Counter> = Family::default();
        for (reason, n) in [
            ("offline_limit", s.state.apply.dropped_offline_limit),
            ("online_limit", s.state.apply.dropped_online_limit),
        ] {
            drops
                .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                .inc_by(n);
        }
        r.register(
            "queue_limit_drops",
            "QoS 1/2 messages not queued for a session at max_offline_messages or max_online_messages, by limit (none unless an operator sets one)",
            drops,
        );
        let refused = Counter::<u64>::default();
        refused.inc_by(s.state.apply.refused_quota);
        r.register(
            "queue_quota_refusals",
            "QoS 1/2 publishes refused before their acknowledgement because a session they match is at max_queue_bytes",
            refused,
        );
        r.register(
            "wills_published",
            "Will messages published (apply)",
            gauge(s.state.apply.wills_published),
        );
        r.register(
            "sessions_expired",
            "Sessions removed by expiry (apply)",
            gauge(s.state.apply.sessions_expired),
        );
        r.register(
            "raft_log_entries",
            "Entries in the Raft log (after purging)",
            gauge(s.node.log_entries),
        );
        r.register(
            "raft_snapshot_index",
            "Last log index covered by the snapshot",
            gauge(s.node.snapshot_index),
        );
        r.register(
            "raft_entries_proposed",
            "Log entries proposed by this node",
            gauge(s.node.proposed_entries),
        );
        r.register(
            "raft_commands_proposed",
            "Commands proposed by this node",
            gauge(s.node.proposed_commands),
        );
        r.register(
            "raft_batches_forwarded",
            "Command batches this node forwarded to the leader",
            gauge(s.node.forwarded),
        );
        r.register(
            "raft_batches_resent",
            "Command batches sent again after a leader change or a lost reply",
            gauge(s.node.resent),
        );
        r.register(
            "raft_duplicate_commands",
            "Commands applied before and skipped (resent proposals; apply)",
            gauge(s.state.apply.duplicates),
        );
        r.register("raft_term", "Current Raft term", gauge(s.node.term));
        r.register(
            "in_quorum",
            "1 if this node is part of a quorum (what /health reports)",
            gauge(s.node.in_quorum as u64),
        );
        r.register(
            "peer_connects",
            "Inter-node connections dialled by this node",
            gauge(s.node.peer_connects),
        );
        r.register(
            "peer_refused",
            "Inter-node connections refused (wrong cookie or bad handshake), either side",
            gauge(s.node.peer_refused),
        );
        r.register(
            "raft_is_leader",
            "1 if this node is the Raft leader",
            gauge(s.node.is_leader as u64),
        );
        let mut out = String::new();
        if encode(&mut out, &r).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }
}
