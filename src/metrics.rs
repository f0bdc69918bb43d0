//! Broker counters, shared by every connection, and their Prometheus text
//! exposition for `/metrics`, with the gauges read at render time (Raft,
//! state, the disk alarm, RocksDB's memory). `$SYS` reads the same counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use raftmq_raft::{NodeStats, StateSummary};
use raftmq_storage::MemoryUsage;

use crate::broker::Broker;
use crate::resources::Limit;

/// `reason` (the limit's setting) and `qos` of a refused publish.
type RefusedLabels = [(&'static str, &'static str); 2];

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
    /// Publishes refused by a resource limit before any acknowledgement
    /// (QoS 0: dropped), by limit and QoS.
    publishes_refused: Family<RefusedLabels, Counter>,
}

/// The disk alarm as `/metrics` shows it.
pub struct DiskReading {
    pub raised: bool,
    pub free_bytes: Option<u64>,
    pub limit_bytes: u64,
}

/// Point-in-time gauges that live elsewhere (state machine, raft).
pub struct Snapshot {
    pub node: NodeStats,
    pub state: Arc<StateSummary>,
    pub disk: DiskReading,
    pub rocksdb: MemoryUsage,
}

impl Snapshot {
    /// Reads the node's stats, the state summary, the disk alarm and
    /// RocksDB's memory; takes no apply lock.
    pub fn of(broker: &Broker) -> Snapshot {
        Snapshot {
            node: broker.node.stats(),
            state: broker.node.summary(),
            disk: DiskReading {
                raised: broker.disk.raised(),
                free_bytes: broker.disk.free_bytes(),
                limit_bytes: broker.disk.limit_bytes(),
            },
            rocksdb: broker.node.storage_memory(),
        }
    }
}

impl Metrics {
    /// Counts a publish a resource limit refused (QoS 0: dropped).
    pub fn refused(&self, limit: Limit, qos: u8) {
        let qos = match qos {
            0 => "0",
            1 => "1",
            _ => "2",
        };
        self.publishes_refused
            .get_or_create(&[("reason", limit.name()), ("qos", qos)])
            .inc();
    }

    /// Publishes refused by `limit`, every QoS.
    pub fn refused_total(&self, limit: Limit) -> u64 {
        ["0", "1", "2"]
            .into_iter()
            .map(|qos| {
                self.publishes_refused
                    .get_or_create(&[("reason", limit.name()), ("qos", qos)])
                    .get()
            })
            .sum()
    }

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
        let counter = |v: u64| {
            let c: Counter = Counter::default();
            c.inc_by(v);
            c
        };
        r.register(
            "snapshot_chunks_sent",
            "Snapshot chunks this node sent to other nodes (acknowledged)",
            counter(s.node.snapshot_chunks_sent),
        );
        r.register(
            "snapshot_bytes_sent",
            "Snapshot bytes this node sent to other nodes (acknowledged chunks)",
            counter(s.node.snapshot_bytes_sent),
        );
        r.register(
            "raft_is_leader",
            "1 if this node is the Raft leader",
            gauge(s.node.is_leader as u64),
        );
        r.register(
            "publishes_refused",
            "Publishes refused before any acknowledgement by a resource limit (reason: disk_free_limit, max_queue_bytes); QoS 0 ones are dropped",
            self.publishes_refused.clone(),
        );
        let alarms: Family<[(&'static str, &'static str); 1], Gauge> = Family::default();
        alarms
            .get_or_create(&[("alarm", Limit::DiskFreeLimit.name())])
            .set(s.disk.raised as i64);
        r.register(
            "alarm",
            "1 while a resource alarm is raised (disk_free_limit: QoS 1/2 publishes refused on this node)",
            alarms,
        );
        if let Some(free) = s.disk.free_bytes {
            r.register(
                "disk_free_bytes",
                "Free bytes on the data directory's filesystem (last reading)",
                gauge(free),
            );
        }
        r.register(
            "disk_free_limit_bytes",
            "disk_free_limit: below this many free bytes publishes are refused (0: never)",
            gauge(s.disk.limit_bytes),
        );
        r.register(
            "rocksdb_block_cache_bytes",
            "RocksDB's shared block cache in use, with the memtable memory the write buffer manager reserves in it",
            gauge(s.rocksdb.block_cache),
        );
        r.register(
            "rocksdb_memtable_bytes",
            "RocksDB memtables of every column family (rocksdb.cur-size-all-mem-tables)",
            gauge(s.rocksdb.memtables),
        );
        r.register(
            "rocksdb_block_cache_limit_bytes",
            "rocksdb_block_cache_size: the block cache's share of RocksDB's memory budget",
            gauge(s.rocksdb.block_cache_limit),
        );
        r.register(
            "rocksdb_write_buffer_limit_bytes",
            "rocksdb_write_buffer_size: the memtables' share of RocksDB's memory budget",
            gauge(s.rocksdb.write_buffer_limit),
        );
        let mut out = String::new();
        if encode(&mut out, &r).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }
}
