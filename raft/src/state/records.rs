//! The rows apply stores: a session record (with its queue's counts) and a
//! queue item (referencing its message by id).

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
    /// Boxed: most sessions have no will, and inline it would make every
    /// record (and every empty slot of the sessions map) ~250 B larger.
    /// serde encodes a `Box<T>` as the `T`: the stored format is unchanged.
    pub will: Option<Box<Will>>,
    pub connected_ms: u64,
    pub disconnected_ms: Option<u64>,
    /// When a delayed will fires.
    pub will_at_ms: Option<u64>,
    /// Next queue sequence number.
    pub next_seq: u64,
    /// The session's queue, in counts: the queue itself is only on disk.
    pub queue: QueueCounts,
}

/// What a session's queue holds and has lost, kept in its record so that
/// nothing has to read the queue to know its size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// No item has a lower sequence (exact while acks come in order; a
    /// lower bound otherwise). Readers start here, not at the first key
    /// ever written, so they do not walk the deleted items.
    pub head: u64,
    /// Items queued.
    pub items: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// QoS 1/2 messages not queued because the session was offline at
    /// `max_offline_messages`.
    pub dropped_offline: u64,
    /// ... or online at `max_online_messages` (plus its window).
    pub dropped_online: u64,
}

impl SessionRec {
    /// Outlives its connection (queues QoS 1/2 while offline).
    pub(crate) fn persistent(&self) -> bool {
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

/// A queue item as stored: the message is referenced by id (its body is
/// stored once in `Messages`, however many queues hold it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueueRec {
    pub(crate) msg_id: u64,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) sub_ids: Vec<u32>,
    pub(crate) received: bool,
    /// The message's payload size, counted against the session's quota.
    pub(crate) bytes: u32,
}

impl QueueRec {
    /// The item joined with its message, as a connection sends it.
    pub(crate) fn delivery(&self, seq: u64, msg: Arc<Message>) -> Delivery {
        Delivery {
            seq: Some(seq),
            msg,
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            received: self.received,
        }
    }
}
