//! `$SYS/<node-id>/...`: every `systree_interval` the node publishes every
//! metric `/metrics` has, as QoS 0 messages to local subscribers, under
//! VerneMQ's mapping of names to topics (see
//! [`crate::metrics::exposition`]: `raftmq_mqtt_publish_received_total{qos="1"}`
//! is `$SYS/<node>/mqtt/publish/received/1`), plus the topics earlier
//! versions published (`uptime`, `alarms/disk_free_limit`, `disk/free`,
//! `disk/free_limit`, `publishes/refused/<limit>`). A new `$SYS` subscriber
//! gets the current values at once.

use std::sync::Arc;
use std::time::Duration;

use raftmq_raft::node::now_ms;
use raftmq_raft::Message;

use crate::broker::Broker;
use crate::metrics::{exposition, Snapshot};
use crate::resources::Limit;
use crate::shutdown::Shutdown;

/// How often, at most, the publisher looks at `systree_enabled` and
/// `systree_interval` (both can change while the node runs).
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Publishes at once, then every `systree_interval` while `systree_enabled`,
/// until the node stops.
pub async fn run(broker: Arc<Broker>, life: Shutdown) {
    let mut last: Option<u64> = None;
    loop {
        let live = broker.live.get();
        let now = now_ms();
        let due_at = last.map_or(now, |t| t + live.systree_interval_ms);
        if live.systree_enabled && now >= due_at {
            last = Some(now);
            publish(&broker, now);
            continue;
        }
        let wait = if live.systree_enabled {
            Duration::from_millis(due_at - now).min(LOOK_EVERY)
        } else {
            LOOK_EVERY
        };
        tokio::select! {
            _ = life.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One round: every `$SYS` topic to this node's subscribers.
fn publish(broker: &Arc<Broker>, now: u64) {
    for (topic, value) in values(broker) {
        let msg = Message::system(topic, value, false, now);
        crate::router::route_qos0(broker, Arc::new(msg));
    }
}

/// The node's current `$SYS` topics and values.
pub fn values(broker: &Broker) -> Vec<(String, String)> {
    let prefix = broker.sys_prefix();
    let text = broker.metrics.render(&Snapshot::of(broker));
    let metrics = exposition::parse(&text)
        .into_iter()
        .filter_map(|s| Some((s.sys_topic()?, s.value)));
    let m = &broker.metrics;
    let earlier = [
        ("uptime", broker.started.elapsed().as_secs()),
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
    .map(|(name, v)| (name.to_string(), v.to_string()));
    metrics
        .chain(earlier)
        .map(|(name, v)| (format!("{prefix}{name}"), v))
        .collect()
}
