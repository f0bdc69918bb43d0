//! Best-effort routing of QoS 0 publishes outside the log (DESIGN §1): the
//! replicated subscription trie gives the targets; messages go straight to the
//! local connections that hold them. A shared group picks one of its members
//! that is connected here, rotating.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raftmq_raft::{Delivery, Message};

use crate::broker::Broker;

static ROTATION: AtomicU64 = AtomicU64::new(0);

/// Routes a QoS 0 message to local subscribers; returns how many got it.
pub fn route_qos0(broker: &Broker, msg: Arc<Message>) -> u32 {
    let targets = {
        let trie = broker.node.trie.read();
        trie.targets(&msg.topic, &msg.publisher, |members| {
            let local: Vec<_> = members
                .keys()
                .filter(|c| broker.registry.is_local(c))
                .collect();
            if local.is_empty() {
                return None;
            }
            let i = ROTATION.fetch_add(1, Ordering::Relaxed) as usize % local.len();
            Some(local[i].clone())
        })
    };
    let mut n = 0;
    for (client, t) in targets {
        let d = Delivery {
            seq: None,
            msg: msg.clone(),
            qos: 0,
            retain: msg.retain && t.retain_as_published,
            sub_ids: t.sub_ids,
            received: false,
        };
        if broker.registry.deliver_local(&client, d) {
            n += 1;
        }
    }
    n
}
