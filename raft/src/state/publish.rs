//! Publish: inbound QoS 2 duplicate detection, retained changes, and routing
//! a message to one target per matching session (wills are routed the same
//! way).

use std::sync::Arc;

use raftmq_storage::{keys, Table};

use super::{ApplyEvent, Ctx, Fanout, MqttState};
use crate::command::{CmdResult, Message, Publish};
use crate::error::{encode, RaftError};
use crate::routes::Targets;

/// splitmix64: spreads message ids (log index << 16 | position, so their low
/// bits are often all zero) evenly over shared group members, the same way
/// on every replica.
fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MqttState {
    /// PUBLISH (QoS 1/2 or retained) as message `id`. A QoS 2 packet id the
    /// publisher already used, and has not released, is a resend: reported
    /// as a duplicate and not routed again.
    pub(super) fn publish(
        &mut self,
        id: u64,
        cmd: &Publish,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let c = self.intern(&cmd.client_id);
        let tracks_id = cmd.msg.qos == 2 && cmd.packet_id != 0;
        if tracks_id
            && self
                .qos2_in
                .get(&c)
                .is_some_and(|ids| ids.contains(&cmd.packet_id))
        {
            return Ok(CmdResult::Published {
                duplicate: true,
                matched: 0,
            });
        }
        let targets = self.targets(id, &cmd.msg);
        if self.over_quota(&targets, &cmd.msg) {
            self.stats.refused_quota += 1;
            return Ok(CmdResult::QuotaExceeded);
        }
        if tracks_id {
            self.qos2_in
                .entry(c.clone())
                .or_default()
                .insert(cmd.packet_id);
            ctx.batch
                .put(Table::Qos2In, keys::qos2_key(&c, cmd.packet_id), Vec::new());
        }
        let matched = self.route(cmd.msg.clone(), targets, ctx)?;
        Ok(CmdResult::Published {
            duplicate: false,
            matched,
        })
    }

    /// Stores a retained change and routes the message to every matching
    /// subscription (wills). Returns the number of sessions it was routed
    /// to. `id` (the command's) picks shared subscription members.
    pub(super) fn publish_message(
        &mut self,
        id: u64,
        msg: Message,
        ctx: &mut Ctx,
    ) -> Result<u32, RaftError> {
        let targets = self.targets(id, &msg);
        self.route(Arc::new(msg), targets, ctx)
    }

    /// Stores a retained change and hands the message to `targets`; queued
    /// copies reference it by a fresh message id, and the sessions that take
    /// it live get it in one [`Fanout`] (one session: a `Deliver`).
    fn route(
        &mut self,
        msg: Arc<Message>,
        targets: Targets,
        ctx: &mut Ctx,
    ) -> Result<u32, RaftError> {
        if msg.retain {
            self.set_retained(&msg, ctx)?;
        }
        let n = targets.len() as u32;
        if n > 0 {
            let msg_id = self.new_message_id();
            ctx.live.clear();
            for (i, (c, t)) in targets.iter().enumerate() {
                if let Some(epoch) = self.enqueue(msg_id, c, &msg, t, ctx)? {
                    ctx.live.push((i as u32, epoch));
                }
            }
            match *ctx.live.as_slice() {
                [] => {}
                // One session: a delivery of its own, no list to allocate.
                [(i, epoch)] => {
                    if let Some((c, t)) = targets.get(i as usize) {
                        ctx.events.push(ApplyEvent::Deliver {
                            client_id: c.clone(),
                            epoch,
                            delivery: t.live_delivery(&msg),
                        });
                    }
                }
                _ => {
                    let live = ctx.live.clone();
                    ctx.events
                        .push(ApplyEvent::Fanout(Fanout::new(msg, targets, live)));
                }
            }
        }
        Ok(n)
    }

    /// A retained publish replaces the topic's retained message; an empty
    /// payload deletes it.
    fn set_retained(&mut self, msg: &Arc<Message>, ctx: &mut Ctx) -> Result<(), RaftError> {
        if msg.payload.is_empty() {
            if self.retained.remove(&msg.topic) {
                ctx.batch
                    .delete(Table::Retained, keys::retained_key(&msg.topic));
            }
        } else {
            self.retained.insert(msg.clone());
            ctx.batch.put(
                Table::Retained,
                keys::retained_key(&msg.topic),
                encode(&**msg)?,
            );
        }
        Ok(())
    }

    /// Resolves matching subscriptions to one target per session. A shared
    /// group delivers to one member chosen by the message id, among its
    /// connected members if it has any.
    fn targets(&self, id: u64, msg: &Message) -> Targets {
        let sessions = &self.sessions;
        let trie = self.trie.read();
        trie.targets(&msg.topic, &msg.publisher, |members| {
            let online: Vec<&Arc<str>> = members
                .keys()
                .filter(|c| sessions.get(*c).is_some_and(|r| r.node.is_some()))
                .collect();
            let pool: Vec<&Arc<str>> = if online.is_empty() {
                members.keys().collect()
            } else {
                online
            };
            pool.get((mix(id) % pool.len().max(1) as u64) as usize)
                .map(|c| (*c).clone())
        })
    }
}
