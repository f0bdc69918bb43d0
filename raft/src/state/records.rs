//! The rows apply stores: a session record, and a queue item both as stored
//! (referencing its message by id) and as held in memory (with the message).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::command::{Delivery, Message, Will, NEVER};
use crate::types::NodeId;

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRec {
    pub epoch: u64,
    /// The node the client is connected to, if connected.
    pub node: Option<NodeId>,
    pub expiry_s: u32,
    pub will: Option<Will>,
    pub connected_ms: u64,
    pub disconnected_ms: Option<u64>,
    /// When a delayed will fires.
    pub will_at_ms: Option<u64>,
    /// Next queue sequence number.
    pub next_seq: u64,
}

impl SessionRec {
    /// Outlives its connection (queues QoS 1/2 while offline).
    pub(super) fn persistent(&self) -> bool {
        self.expiry_s > 0
    }

    /// When a disconnected session ends, unless it never does.
    pub(super) fn expires_at(&self) -> Option<u64> {
        match (self.disconnected_ms, self.expiry_s) {
            (Some(_), NEVER) => None,
            (Some(d), s) => Some(d + s as u64 * 1000),
            (None, _) => None,
        }
    }

    /// The earlier of its will and expiry times: when a tick must look at it.
    pub(super) fn deadline(&self) -> Option<u64> {
        match (self.will_at_ms, self.expires_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A queue item as stored: the message is referenced by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct QueueRec {
    pub(super) msg_id: u64,
    pub(super) qos: u8,
    pub(super) retain: bool,
    pub(super) sub_ids: Vec<u32>,
    pub(super) received: bool,
}

/// A queue item in memory: the stored row with its message.
#[derive(Debug, Clone)]
pub(super) struct QItem {
    pub(super) msg_id: u64,
    pub(super) msg: Arc<Message>,
    pub(super) qos: u8,
    pub(super) retain: bool,
    pub(super) sub_ids: Vec<u32>,
    pub(super) received: bool,
}

impl QItem {
    /// The stored row joined with its message.
    pub(super) fn new(rec: QueueRec, msg: Arc<Message>) -> QItem {
        QItem {
            msg_id: rec.msg_id,
            msg,
            qos: rec.qos,
            retain: rec.retain,
            sub_ids: rec.sub_ids,
            received: rec.received,
        }
    }

    pub(super) fn delivery(&self, seq: u64) -> Delivery {
        Delivery {
            seq: Some(seq),
            msg: self.msg.clone(),
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            received: self.received,
        }
    }

    pub(super) fn rec(&self) -> QueueRec {
        QueueRec {
            msg_id: self.msg_id,
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            received: self.received,
        }
    }
}
