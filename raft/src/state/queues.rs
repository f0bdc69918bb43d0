//! Per-session queues: what a persistent session holds for QoS 1/2 delivery,
//! within the configured limits, and the message bodies they reference.
//!
//! A queue lives only in RocksDB (`Queues`: one row per item, keyed by
//! client and sequence); memory holds its counts, in the session record.
//! A message body is stored once (`Messages`) with a reference count
//! (`MessageRefs`), whatever number of queues hold it, and is deleted with
//! its last reference. Reads during apply see the batch being built
//! ([`raftmq_storage::Store::get_through`]), so a batch that queues and acks
//! the same item is consistent. Reference counts touched by a batch are kept
//! in its [`Ctx`] and written once, at its end.

use std::sync::Arc;

use raftmq_storage::{keys, Table};

use super::reclaim::{self, Span};
use super::records::{QueueCounts, QueueRec};
use super::{ApplyEvent, Ctx, MqttState};
use crate::command::Message;
use crate::error::{decode, encode, RaftError};
use crate::settings::ClusterConfig;
use crate::trie::Target;

impl MqttState {
    /// Hands message `msg_id` to session `c` for target `t`: queued if the
    /// session is persistent and the QoS is 1 or 2, else taken live by its
    /// connection (if any) without a trace. Returns the session's epoch if
    /// it takes the message live: the caller tells its connection.
    pub(super) fn enqueue(
        &mut self,
        msg_id: u64,
        c: &Arc<str>,
        msg: &Arc<Message>,
        t: &Target,
        ctx: &mut Ctx,
    ) -> Result<Option<u64>, RaftError> {
        let Some(rec) = self.sessions.get(c) else {
            return Ok(None);
        };
        let (qos, retain) = t.grant(msg);
        if rec.persistent() && qos > 0 {
            let item = QueueRec {
                msg_id,
                qos,
                retain,
                sub_ids: t.sub_ids.clone(),
                received: false,
                bytes: msg.payload.len() as u32,
            };
            self.push(c, item, msg, ctx)?;
            return Ok(None);
        }
        Ok(rec.node.is_some().then_some(rec.epoch))
    }

    /// Whether queueing `msg` would take a session past `max_queue_bytes`:
    /// then the publish is refused before anything of it is applied.
    pub(super) fn over_quota(&self, targets: &[(Arc<str>, Target)], msg: &Message) -> bool {
        let quota = self.settings.max_queue_bytes;
        if quota < 0 || msg.qos == 0 {
            return false;
        }
        let size = msg.payload.len() as u64;
        targets.iter().any(|(c, t)| {
            self.sessions
                .get(c)
                .is_some_and(|r| r.persistent() && t.qos > 0 && r.queue.bytes + size > quota as u64)
        })
    }

    /// Appends to the session's queue (or drops and counts the item if the
    /// queue is at its limit) and delivers it if the session is connected.
    fn push(
        &mut self,
        c: &Arc<str>,
        item: QueueRec,
        msg: &Arc<Message>,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let Some(rec) = self.sessions.get_mut(c) else {
            return Ok(());
        };
        let online = rec.node.is_some();
        ctx.dirty.insert(c.clone());
        let limit = queue_limit(&self.settings, online);
        if limit >= 0 && rec.queue.items >= limit as u64 {
            if online {
                rec.queue.dropped_online += 1;
                self.stats.dropped_online_limit += 1;
            } else {
                rec.queue.dropped_offline += 1;
                self.stats.dropped_offline_limit += 1;
            }
            return Ok(());
        }
        let seq = rec.next_seq;
        rec.next_seq += 1;
        if rec.queue.items == 0 {
            rec.queue.head = seq;
        }
        rec.queue.items += 1;
        rec.queue.bytes += item.bytes as u64;
        self.queued += 1;
        let epoch = rec.epoch;
        ctx.batch
            .put(Table::Queues, keys::queue_key(c, seq), encode(&item)?);
        self.hold_msg(item.msg_id, msg, ctx)?;
        if online {
            ctx.events.push(ApplyEvent::Deliver {
                client_id: c.clone(),
                epoch,
                delivery: item.delivery(seq, msg.clone()),
            });
        }
        Ok(())
    }

    /// The stored queue item `seq` of session `c`, if it is there.
    fn queue_item(&self, c: &str, seq: u64, ctx: &Ctx) -> Result<Option<QueueRec>, RaftError> {
        self.store
            .get_through(&ctx.batch, Table::Queues, &keys::queue_key(c, seq))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// PUBREC for queue item `seq`: from now on only PUBREL is resent.
    pub(super) fn mark_received(
        &mut self,
        c: &Arc<str>,
        seq: u64,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        if let Some(mut item) = self.queue_item(c, seq, ctx)? {
            if !item.received {
                item.received = true;
                ctx.batch
                    .put(Table::Queues, keys::queue_key(c, seq), encode(&item)?);
            }
        }
        Ok(())
    }

    /// Removes queue item `seq`, if it is there.
    pub(super) fn dequeue(
        &mut self,
        c: &Arc<str>,
        seq: u64,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let Some(item) = self.delete_item(c, seq, ctx)? else {
            return Ok(());
        };
        if let Some(rec) = self.sessions.get_mut(c) {
            let q = &mut rec.queue;
            q.items = q.items.saturating_sub(1);
            q.bytes = q.bytes.saturating_sub(item.bytes as u64);
            if q.items == 0 {
                q.head = rec.next_seq;
            } else if q.head == seq {
                q.head = seq + 1;
            }
            ctx.dirty.insert(c.clone());
        }
        self.queued = self.queued.saturating_sub(1);
        Ok(())
    }

    /// Deletes queue item `seq` of `c` and releases its message; returns it
    /// if it was there.
    pub(super) fn delete_item(
        &mut self,
        c: &str,
        seq: u64,
        ctx: &mut Ctx,
    ) -> Result<Option<QueueRec>, RaftError> {
        let Some(item) = self.queue_item(c, seq, ctx)? else {
            return Ok(None);
        };
        ctx.batch.delete(Table::Queues, keys::queue_key(c, seq));
        self.release_msg(item.msg_id, ctx)?;
        Ok(Some(item))
    }

    /// Ends the queue of an ending session: deleted now if it is small,
    /// else set aside and reclaimed a bounded amount per entry (`reclaim`).
    pub(super) fn drop_queue(&mut self, c: &Arc<str>, ctx: &mut Ctx) -> Result<(), RaftError> {
        let Some(rec) = self.sessions.get_mut(c) else {
            return Ok(());
        };
        let items = rec.queue.items;
        let span = Span {
            from: rec.queue.head,
            to: rec.next_seq,
        };
        rec.queue = QueueCounts {
            head: rec.next_seq,
            ..QueueCounts::default()
        };
        ctx.dirty.insert(c.clone());
        self.queued = self.queued.saturating_sub(items);
        if items == 0 {
            return Ok(());
        }
        // Older items of this client id still being reclaimed share its key
        // prefix: then the scan below would walk them all.
        if items > reclaim::INLINE || self.reclaim.contains_key(c) {
            return self.set_aside(c, span, ctx);
        }
        let rows =
            self.store
                .scan_prefix_through(&ctx.batch, Table::Queues, &keys::client_prefix(c))?;
        for (k, v) in rows {
            if keys::queue_of(&k).is_none() {
                continue;
            }
            let item: QueueRec = decode(&v)?;
            ctx.batch.delete(Table::Queues, k);
            self.release_msg(item.msg_id, ctx)?;
        }
        Ok(())
    }

    /// One more queue item references message `id`, a message of this batch
    /// (ids are never reused): the first reference stores its body.
    fn hold_msg(&mut self, id: u64, msg: &Message, ctx: &mut Ctx) -> Result<(), RaftError> {
        let refs = ctx.refs.entry(id).or_insert(0);
        if *refs == 0 {
            ctx.batch
                .put(Table::Messages, keys::message_key(id), encode(msg)?);
        }
        *refs += 1;
        Ok(())
    }

    /// One queue item less references message `id`; with the last, the
    /// message goes (at the end of the batch, see [`Self::write_refs`]).
    fn release_msg(&mut self, id: u64, ctx: &mut Ctx) -> Result<(), RaftError> {
        let refs = match ctx.refs.get(&id) {
            Some(n) => *n,
            None => self
                .store
                .get_through(&ctx.batch, Table::MessageRefs, &keys::message_key(id))?
                .map(|v| refs_of(&v))
                .transpose()?
                .unwrap_or(1),
        };
        ctx.refs.insert(id, refs.saturating_sub(1));
        Ok(())
    }

    /// The end of every applied batch: the reference counts it changed, and
    /// the messages no queue references any more.
    pub(super) fn write_refs(&self, ctx: &mut Ctx) {
        for (id, refs) in ctx.refs.drain() {
            let k = keys::message_key(id);
            if refs == 0 {
                ctx.batch.delete(Table::Messages, k.clone());
                ctx.batch.delete(Table::MessageRefs, k);
            } else {
                ctx.batch
                    .put(Table::MessageRefs, k, refs.to_be_bytes().to_vec());
            }
        }
    }
}

/// A stored reference count.
fn refs_of(v: &[u8]) -> Result<u32, RaftError> {
    let b: [u8; 4] = v
        .try_into()
        .map_err(|_| RaftError::Encode(format!("reference count of {} bytes", v.len())))?;
    Ok(u32::from_be_bytes(b))
}

/// How many items a session's queue may hold, -1 for no limit: the online
/// limit plus the inflight window while connected, the offline limit
/// otherwise.
fn queue_limit(s: &ClusterConfig, online: bool) -> i64 {
    if !online {
        return s.max_offline_messages;
    }
    if s.max_online_messages < 0 || s.max_inflight_messages == 0 {
        -1
    } else {
        s.max_online_messages + s.max_inflight_messages as i64
    }
}
