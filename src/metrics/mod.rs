//! The broker's metrics: the counters every connection shares
//! ([`Metrics`]), the point-in-time values read at scrape time
//! ([`Snapshot`]), and their Prometheus text exposition for `/metrics`
//! ([`render`]), which `$SYS` ([`crate::sys`]) and `raftmq metrics show`
//! read back through [`exposition`].
//!
//! Names: every series carries the `raftmq_` prefix; where VerneMQ has a
//! metric for the same thing, the rest of the name is VerneMQ's
//! (`raftmq_mqtt_connack_sent_total{reason_code}`,
//! `raftmq_queue_message_drop_total{reason}`). Counters end in `_total`;
//! gauges are levels only. docs/metrics.md lists them all.

pub mod exposition;
pub mod mqtt;
pub mod process;
mod render;
pub mod show;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use raftmq_raft::metrics::RaftReadings;
use raftmq_raft::{NodeStats, StateSummary};
use raftmq_storage::MemoryUsage;

use crate::broker::Broker;
use crate::resources::Limit;
use mqtt::MqttCounters;

/// `reason` (the limit's setting) and `qos` of a refused publish.
type RefusedLabels = [(&'static str, &'static str); 2];
/// `reason` of a dropped message.
type DropLabels = [(&'static str, &'static str); 1];

#[derive(Default)]
pub struct Metrics {
    pub connections_total: Counter,
    pub connections_current: Gauge,
    pub messages_received: Counter,
    pub messages_sent: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub protocol_errors: Counter,
    pub commit_failures: Counter,
    /// PUBLISH/PUBREL resent (MQTT 3 retransmission).
    pub retransmits: Counter,
    /// PUBLISH packets and SUBSCRIBE filters the ACL denied.
    pub acl_denied: Counter,
    /// MQTT packets in and out, by type (the connection's framing feeds
    /// them).
    pub mqtt: Arc<MqttCounters>,
    /// Publishes refused by a resource limit before any acknowledgement
    /// (QoS 0: dropped), by limit and QoS.
    publishes_refused: Family<RefusedLabels, Counter>,
    /// Deliveries offered to this node's connections.
    queue_in: Counter,
    /// ... written to the client (first sends, and resends after a
    /// reconnect).
    queue_out: Counter,
    /// ... expired before they were sent.
    queue_expired: Counter,
    /// Messages dropped on this node's connections, by reason; apply's
    /// queue-limit drops are added at render time.
    queue_drop: Family<DropLabels, Counter>,
    /// Connections a listener closed before MQTT, by listener and reason
    /// (see [`crate::listener::Refused`]).
    listener_refused: Family<Vec<(String, String)>, Counter>,
}

impl Metrics {
    /// Counts a connection `listener` closed before MQTT for `reason`.
    pub fn listener_refused(&self, listener: &str, reason: &str) {
        self.listener_refused
            .get_or_create(&vec![
                ("listener".to_string(), listener.to_string()),
                ("reason".to_string(), reason.to_string()),
            ])
            .inc();
    }
}

/// What one connection's outbound window did since it was last counted
/// (see [`Metrics::outbound`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboundCounts {
    pub offered: u64,
    pub sent: u64,
    pub expired: u64,
    /// Not queued (QoS 0, or a non-persistent session) and the window's
    /// waiting list was at `max_online_messages`.
    pub dropped_online_limit: u64,
    /// Larger than the client's maximum packet size.
    pub dropped_too_large: u64,
}

/// The disk alarm as `/metrics` shows it.
pub struct DiskReading {
    pub raised: bool,
    pub free_bytes: Option<u64>,
    pub limit_bytes: u64,
}

/// Point-in-time values that live elsewhere (state machine, raft, the
/// process).
pub struct Snapshot {
    pub node: NodeStats,
    pub raft: RaftReadings,
    pub state: Arc<StateSummary>,
    pub disk: DiskReading,
    pub rocksdb: MemoryUsage,
    /// Clients connected to this node.
    pub connected: u64,
    pub uptime_s: u64,
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl Snapshot {
    /// Reads the node's stats, the state summary, the disk alarm, RocksDB
    /// and the process; takes no apply lock.
    pub fn of(broker: &Broker) -> Snapshot {
        Snapshot {
            node: broker.node.stats(),
            raft: broker.node.readings(),
            state: broker.node.summary(),
            disk: DiskReading {
                raised: broker.disk.raised(),
                free_bytes: broker.disk.free_bytes(),
                limit_bytes: broker.disk.limit_bytes(),
            },
            rocksdb: broker.node.storage_memory(),
            connected: broker.registry.connected() as u64,
            uptime_s: broker.started.elapsed().as_secs(),
            resident_bytes: process::resident_bytes(),
            open_fds: process::open_fds(),
            max_fds: process::max_fds(),
        }
    }
}

fn qos_label(qos: u8) -> &'static str {
    match qos {
        0 => "0",
        1 => "1",
        _ => "2",
    }
}

impl Metrics {
    /// Counts a publish a resource limit refused; a QoS 0 one is also a
    /// dropped message.
    pub fn refused(&self, limit: Limit, qos: u8) {
        self.publishes_refused
            .get_or_create(&[("reason", limit.name()), ("qos", qos_label(qos))])
            .inc();
        if qos == 0 {
            self.queue_drop
                .get_or_create(&[("reason", limit.name())])
                .inc();
        }
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

    /// Adds a connection's outbound counts and zeroes them.
    pub fn outbound(&self, c: &mut OutboundCounts) {
        let c = std::mem::take(c);
        self.queue_in.inc_by(c.offered);
        self.queue_out.inc_by(c.sent);
        self.queue_expired.inc_by(c.expired);
        for (reason, n) in [
            ("online_limit", c.dropped_online_limit),
            ("packet_too_large", c.dropped_too_large),
        ] {
            if n > 0 {
                self.queue_drop
                    .get_or_create(&[("reason", reason)])
                    .inc_by(n);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, s: &Snapshot) -> String {
        render::render(self, s)
    }
}
