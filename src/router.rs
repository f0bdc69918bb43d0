//! Best-effort routing of QoS 0 publishes outside the log (docs/design.md §1): the
//! replicated subscription trie gives the targets and the node each one is
//! connected to; local targets get the message directly, and each other node
//! gets one message listing its targets, over the inter-node transport. A
//! shared group picks one of its connected members, on any node, rotating.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raftmq_raft::rpc::RemoteTarget;
use raftmq_raft::{Delivery, Message, NodeId};

use crate::broker::Broker;

static ROTATION: AtomicU64 = AtomicU64::new(0);

/// Routes a QoS 0 message to its subscribers on every node; returns how many
/// it was sent to.
pub fn route_qos0(broker: &Broker, msg: Arc<Message>) -> u32 {
    let me = broker.node.id();
    let mut local = Vec::new();
    let mut remote: BTreeMap<NodeId, Vec<RemoteTarget>> = BTreeMap::new();
    {
        let trie = broker.node.subscriptions();
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
        for (client, t) in targets.iter() {
            let retain = msg.retain && t.retain_as_published;
            match trie.location(client) {
                Some(n) if n == me => local.push((client.clone(), retain, t.sub_ids.clone())),
                Some(n) => remote.entry(n).or_default().push(RemoteTarget {
                    client_id: client.to_string(),
                    retain,
                    sub_ids: t.sub_ids.clone(),
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
    for (node, targets) in remote {
        let k = targets.len() as u32;
        if broker
            .node
            .deliver_remote(node, Message::clone(&msg), targets)
        {
            n += k;
        }
    }
    n
}
