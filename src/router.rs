//! Best-effort routing of QoS 0 publishes outside the log (docs/design.md §1): the
//! replicated subscription trie gives the targets and the node each one is
//! connected to; local targets get the message directly, and each other node
//! gets one message listing its targets, over the inter-node transport. A
//! shared group picks one of its connected members, on any node, rotating.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raftmq_raft::rpc::{RemoteTarget, Rpc};
use raftmq_raft::{Delivery, Message, NodeId};

use crate::broker::Broker;

static ROTATION: AtomicU64 = AtomicU64::new(0);

/// Routes a QoS 0 message to its subscribers on every node; returns how many
/// it was sent to.
pub fn route_qos0(broker: &Broker, msg: Arc<Message>) -> u32 {
    let me = broker.node.node_id;
    let mut local = Vec::new();
    let mut remote: BTreeMap<NodeId, Vec<RemoteTarget>> = BTreeMap::new();
    {
        let trie = broker.node.trie.read();
        let targets = trie.targets(&msg.topic, &msg.publisher, |members| {
            let online: Vec<_> = members
                .keys()
                .filter(|c| trie.location(c).is_some())
                .collect();
            if online.is_empty() {
                return None;
            }
            let i = ROTATION.fetch_add(1, Ordering::Relaxed) as usize % online.len();
            Some(online[i].clone())
        });
        for (client, t) in targets {
            let retain = msg.retain && t.retain_as_published;
            match trie.location(&client) {
                Some(n) if n == me => local.push((client, retain, t.sub_ids)),
                Some(n) => remote.entry(n).or_default().push(RemoteTarget {
                    client_id: client.to_string(),
                    retain,
                    sub_ids: t.sub_ids,
                }),
                // Offline: QoS 0 is not queued.
                None => {}
            }
        }
    }
    let mut n = 0;
    for (client, retain, sub_ids) in local {
        let d = Delivery::live(msg.clone(), 0, retain, sub_ids);
        if broker.registry.deliver_local(&client, d) {
            n += 1;
        }
    }
    if remote.is_empty() {
        return n;
    }
    let metrics = broker.node.raft.metrics();
    for (node, targets) in remote {
        let addr = metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&node)
            .map(|info| info.cluster.clone());
        let Some(addr) = addr else {
            continue;
        };
        n += targets.len() as u32;
        let transport = broker.node.transport.clone();
        let msg = Message::clone(&msg);
        tokio::spawn(async move {
            if let Err(e) = transport
                .notify(node, &addr, Rpc::Deliver { msg, targets })
                .await
            {
                tracing::debug!(node, error = %e, "QoS 0 to another node dropped");
            }
        });
    }
    n
}
