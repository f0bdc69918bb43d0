//! `$SYS/<node-id>/...`: every `systree_interval` the node publishes its
//! uptime, connected clients and message and byte counters as QoS 0 messages
//! to local subscribers, and keeps the latest values for new subscribers.

use std::sync::Arc;
use std::time::Duration;

use raftmq_raft::node::now_ms;
use raftmq_raft::{Message, MsgProps};

use crate::broker::Broker;

pub async fn run(broker: Arc<Broker>) {
    if !broker.settings.systree_enabled {
        return;
    }
    let mut iv = tokio::time::interval(Duration::from_millis(broker.settings.systree_interval_ms));
    loop {
        iv.tick().await;
        let m = &broker.metrics;
        let prefix = broker.sys_prefix();
        let values = [
            ("uptime", broker.started.elapsed().as_secs()),
            ("clients/connected", broker.registry.connected() as u64),
            ("messages/received", m.messages_received.get()),
            ("messages/sent", m.messages_sent.get()),
            ("bytes/received", m.bytes_received.get()),
            ("bytes/sent", m.bytes_sent.get()),
        ];
        let now = now_ms();
        for (name, v) in values {
            let topic = format!("{prefix}{name}");
            let value = v.to_string();
            broker.sys.write().insert(topic.clone(), value.clone());
            let msg = Message {
                topic,
                payload: bytes::Bytes::from(value.into_bytes()),
                qos: 0,
                retain: false,
                publisher: String::new(),
                props: MsgProps::default(),
                created_ms: now,
                expires_ms: None,
            };
            crate::router::route_qos0(&broker, Arc::new(msg));
        }
    }
}
