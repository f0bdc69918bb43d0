//! `$SYS/<node-id>/...`: every `systree_interval` the node publishes its
//! uptime, connected clients, message and byte counters and the disk alarm
//! (`alarms/disk_free_limit` 0/1, `disk/free`, `disk/free_limit` in bytes,
//! `publishes/refused/<limit>`) as QoS 0 messages to local subscribers; a
//! new `$SYS` subscriber gets the current values at once.

use std::sync::Arc;
use std::time::Duration;

use raftmq_raft::node::now_ms;
use raftmq_raft::Message;

use crate::broker::Broker;
use crate::resources::Limit;
use crate::shutdown::Shutdown;

/// Publishes every `systree_interval` until the node stops.
pub async fn run(broker: Arc<Broker>, life: Shutdown) {
    if !broker.settings.systree_enabled {
        return;
    }
    let mut iv = tokio::time::interval(Duration::from_millis(broker.settings.systree_interval_ms));
    loop {
        tokio::select! {
            _ = life.cancelled() => return,
            _ = iv.tick() => {}
        }
        let now = now_ms();
        for (topic, value) in values(&broker) {
            let msg = Message::system(topic, value, false, now);
            crate::router::route_qos0(&broker, Arc::new(msg));
        }
    }
}

/// The node's current `$SYS` topics and values.
pub fn values(broker: &Broker) -> Vec<(String, String)> {
    let m = &broker.metrics;
    let prefix = broker.sys_prefix();
    [
        ("uptime", broker.started.elapsed().as_secs()),
        ("clients/connected", broker.registry.connected() as u64),
        ("messages/received", m.messages_received.get()),
        ("messages/sent", m.messages_sent.get()),
        ("bytes/received", m.bytes_received.get()),
        ("bytes/sent", m.bytes_sent.get()),
        ("alarms/disk_free_limit", broker.disk.raised() as u64),
        ("disk/free", broker.disk.free_bytes().unwrap_or(0)),
        ("disk/free_limit", broker.disk.limit_bytes()),
        (
            "publishes/refused/disk_free_limit",
            m.refused_total(Limit::DiskFreeLimit),
        ),
        (
            "publishes/refused/max_queue_bytes",
            m.refused_total(Limit::MaxQueueBytes),
        ),
    ]
    .into_iter()
    .map(|(name, v)| (format!("{prefix}{name}"), v.to_string()))
    .collect()
}
