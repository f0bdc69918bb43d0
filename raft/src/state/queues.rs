//! Per-session queues: what a persistent session holds for QoS 1/2 delivery,
//! within the configured limits, and the message bodies they reference
//! (stored once, counted per queue item).

use std::sync::Arc;

use raftmq_storage::{keys, Table};

use super::records::QItem;
use super::{ApplyEvent, Ctx, MqttState};
use crate::command::{Delivery, Message};
use crate::error::{encode, RaftError};
use crate::trie::Target;

impl MqttState {
    /// Hands message `id` to session `c` for target `t`: queued if the
    /// session is persistent and the QoS is 1 or 2, else delivered to its
    /// connection (if any) without a trace.
    pub(super) fn enqueue(
        &mut self,
        id: u64,
        c: &Arc<str>,
        msg: &Arc<Message>,
        t: Target,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let Some(rec) = self.sessions.get(c) else {
            return Ok(());
        };
        let qos = msg.qos.min(t.qos);
        let retain = msg.retain && t.retain_as_published;
        if rec.persistent() && qos > 0 {
            let item = QItem {
                msg_id: id,
                msg: msg.clone(),
                qos,
                retain,
                sub_ids: t.sub_ids,
                received: false,
            };
            return self.push(c, item, ctx);
        }
        if rec.node.is_some() {
            self.sink.emit(ApplyEvent::Deliver {
                client_id: c.clone(),
                epoch: rec.epoch,
                delivery: Delivery::live(msg.clone(), qos, retain, t.sub_ids),
            });
        }
        Ok(())
    }

    /// Appends to the session's queue (or drops and counts the item if the
    /// queue is full) and delivers it if the session is connected.
    fn push(&mut self, c: &Arc<str>, item: QItem, ctx: &mut Ctx) -> Result<(), RaftError> {
        let qlen = self.queues.get(c).map_or(0, |q| q.len()) as i64;
        let Some(rec) = self.sessions.get_mut(c) else {
            return Ok(());
        };
        let online = rec.node.is_some();
        let limit = queue_limit(&self.settings, online);
        if limit >= 0 && qlen >= limit {
            self.stats.dropped_queue_full += 1;
            return Ok(());
        }
        let seq = rec.next_seq;
        rec.next_seq += 1;
        let epoch = rec.epoch;
        ctx.dirty.insert(c.clone());
        ctx.batch
            .put(Table::Queues, keys::queue_key(c, seq), encode(&item.rec())?);
        self.hold_msg(item.msg_id, &item.msg, ctx)?;
        let d = item.delivery(seq);
        if self
            .queues
            .entry(c.clone())
            .or_default()
            .insert(seq, item)
            .is_none()
        {
            self.queued += 1;
        }
        if online {
            self.sink.emit(ApplyEvent::Deliver {
                client_id: c.clone(),
                epoch,
                delivery: d,
            });
        }
        Ok(())
    }

    /// PUBREC for queue item `seq`: from now on only PUBREL is resent.
    pub(super) fn mark_received(
        &mut self,
        c: &Arc<str>,
        seq: u64,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        if let Some(item) = self.queues.get_mut(c).and_then(|q| q.get_mut(&seq)) {
            item.received = true;
            ctx.batch
                .put(Table::Queues, keys::queue_key(c, seq), encode(&item.rec())?);
        }
        Ok(())
    }

    /// Removes queue item `seq`, if it is there.
    pub(super) fn dequeue(&mut self, c: &Arc<str>, seq: u64, ctx: &mut Ctx) {
        let Some(q) = self.queues.get_mut(c) else {
            return;
        };
        let Some(item) = q.remove(&seq) else { return };
        self.queued -= 1;
        if q.is_empty() {
            self.queues.remove(c);
        }
        ctx.batch.delete(Table::Queues, keys::queue_key(c, seq));
        self.release_msg(item.msg_id, ctx);
    }

    /// Removes the whole queue of an ending session.
    pub(super) fn drop_queue(&mut self, c: &Arc<str>, ctx: &mut Ctx) {
        if let Some(q) = self.queues.remove(c) {
            self.queued -= q.len();
            for (seq, item) in q {
                ctx.batch.delete(Table::Queues, keys::queue_key(c, seq));
                self.release_msg(item.msg_id, ctx);
            }
        }
    }

    /// One more queue item references message `id`; the first stores it.
    fn hold_msg(&mut self, id: u64, msg: &Message, ctx: &mut Ctx) -> Result<(), RaftError> {
        let refs = self.msg_refs.entry(id).or_default();
        if *refs == 0 {
            ctx.batch
                .put(Table::Messages, keys::message_key(id), encode(msg)?);
        }
        *refs += 1;
        Ok(())
    }

    /// One queue item less references message `id`; the last deletes it.
    fn release_msg(&mut self, msg_id: u64, ctx: &mut Ctx) {
        if let Some(n) = self.msg_refs.get_mut(&msg_id) {
            *n -= 1;
            if *n == 0 {
                self.msg_refs.remove(&msg_id);
                ctx.batch.delete(Table::Messages, keys::message_key(msg_id));
            }
        }
    }
}

/// How many items a session's queue may hold, -1 for no limit: the online
/// limit plus the inflight window while connected, the offline limit
/// otherwise.
fn queue_limit(s: &crate::command::ClusterSettings, online: bool) -> i64 {
    if !online {
        return s.max_offline_messages;
    }
    if s.max_online_messages < 0 || s.max_inflight_messages == 0 {
        -1
    } else {
        s.max_online_messages + s.max_inflight_messages as i64
    }
}
