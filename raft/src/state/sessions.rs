//! Session lifecycle: Register (with takeover; RegisterHeld, a registration
//! held through a netsplit), Disconnect, AdminDisconnect,
//! NodeRestarted and Tick; wills, session expiry and the timers that drive them.

use std::sync::Arc;

use raftmq_storage::{keys, Table};

use super::records::QueueCounts;
use super::{ApplyEvent, Ctx, KickReason, MqttState, SessionRec};
use crate::command::{
    AdminDisconnect, CmdResult, Disconnect, NodeRestarted, Register, RegisterHeld, Tick, Will,
};
use crate::error::{encode, RaftError};

impl MqttState {
    /// CONNECT: ends what the client id had (kicking its connection), then
    /// starts the session epoch `id` on the client's node.
    pub(super) fn register(
        &mut self,
        id: u64,
        cmd: Register,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let c = self.intern(&cmd.client_id);
        let resumed_seq = self.take_over(id, &c, &cmd, ctx)?;
        let rec = SessionRec {
            epoch: id,
            node: Some(cmd.node),
            expiry_s: cmd.expiry_s,
            will: cmd.will,
            connected_ms: cmd.now_ms,
            disconnected_ms: None,
            will_at_ms: None,
            next_seq: resumed_seq.unwrap_or_else(|| self.first_seq(&c)),
            queue: QueueCounts::default(),
        };
        let rec = match self.sessions.get(&c) {
            // Resumed: the queue and its counts carry over.
            Some(old) if resumed_seq.is_some() => SessionRec {
                queue: old.queue.clone(),
                ..rec
            },
            _ => SessionRec {
                queue: QueueCounts {
                    head: rec.next_seq,
                    ..QueueCounts::default()
                },
                ..rec
            },
        };
        self.sessions.insert(c.clone(), Box::new(rec));
        self.trie.write().set_location(&c, Some(cmd.node));
        ctx.dirty.insert(c.clone());
        self.reschedule(&c);
        ctx.events.push(ApplyEvent::Registered {
            client_id: c.clone(),
            epoch: id,
            node: cmd.node,
        });
        Ok(CmdResult::Registered {
            epoch: id,
            session_present: resumed_seq.is_some(),
        })
    }

    /// A registration held during a netsplit: applied as a registration
    /// with its own epoch, unless the client id registered later meanwhile
    /// (the newer wins; this one's connection is closed as taken over).
    pub(super) fn register_held(
        &mut self,
        cmd: RegisterHeld,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let newer = self
            .sessions
            .get(cmd.reg.client_id.as_str())
            .is_some_and(|old| old.connected_ms > cmd.reg.now_ms);
        if newer {
            let c = self.intern(&cmd.reg.client_id);
            ctx.events.push(ApplyEvent::Kick {
                client_id: c,
                epoch: cmd.epoch,
                why: KickReason::TakenOver,
            });
            return Ok(CmdResult::Stale);
        }
        self.register(cmd.epoch, cmd.reg, ctx)
    }

    /// Ends the client id's previous connection and settles its will. Keeps
    /// the previous session's state if the registration resumes it, and then
    /// returns its next queue sequence; drops that state otherwise.
    fn take_over(
        &mut self,
        id: u64,
        c: &Arc<str>,
        cmd: &Register,
        ctx: &mut Ctx,
    ) -> Result<Option<u64>, RaftError> {
        let Some(old) = self.sessions.get(c).cloned() else {
            return Ok(None);
        };
        let expired = old.expires_at().is_some_and(|e| e <= cmd.now_ms);
        let resumes = !cmd.clean_start && !expired && old.persistent();
        if old.node.is_some() {
            ctx.events.push(ApplyEvent::Kick {
                client_id: c.clone(),
                epoch: old.epoch,
                why: KickReason::TakenOver,
            });
        }
        if let Some(w) = self.will_at_takeover(&old, resumes) {
            self.publish_will(id, c, w, cmd.now_ms, ctx)?;
        }
        if !resumes {
            self.drop_session_state(c, ctx)?;
            return Ok(None);
        }
        Ok(Some(old.next_seq))
    }

    /// The will a registration publishes for the session it replaces.
    fn will_at_takeover(&self, old: &SessionRec, resumes: bool) -> Option<Box<Will>> {
        let w = old.will.clone()?;
        let publish = if old.node.is_some() {
            // The taken-over connection's will: suppressed if configured,
            // kept back if the session continues and the will is delayed.
            let delay = w.delay_s.min(self.settings.max_last_will_delay);
            !(self.settings.suppress_lwt_on_session_takeover || (resumes && delay > 0))
        } else {
            // Disconnected with a delayed will still pending: a new
            // connection to the same session cancels it; a new session ends
            // the old one, which sends it.
            !resumes && old.will_at_ms.is_some()
        };
        publish.then_some(w)
    }

    /// DISCONNECT, or a connection's end noticed by its node.
    pub(super) fn disconnect(
        &mut self,
        id: u64,
        cmd: Disconnect,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let Some(c) = self.live_connection(&cmd.client_id, cmd.epoch) else {
            return Ok(CmdResult::Stale);
        };
        self.end_connection(id, &c, cmd.publish_will, cmd.new_expiry_s, cmd.now_ms, ctx)?;
        Ok(CmdResult::Done)
    }

    /// `session disconnect`: ends the connection wherever it is (its node
    /// closes it on this event) with its will; with `cleanup` the session
    /// ends too, connected or not. Stale: no such session, or (without
    /// `cleanup`) not connected.
    pub(super) fn admin_disconnect(
        &mut self,
        id: u64,
        cmd: AdminDisconnect,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let Some((c, rec)) = self.sessions.get_key_value(cmd.client_id.as_str()) else {
            return Ok(CmdResult::Stale);
        };
        let (c, epoch, connected) = (c.clone(), rec.epoch, rec.node.is_some());
        let new_expiry = cmd.cleanup.then_some(0);
        if connected {
            ctx.events.push(ApplyEvent::Kick {
                client_id: c.clone(),
                epoch,
                why: KickReason::Administrative,
            });
            self.end_connection(id, &c, true, new_expiry, cmd.now_ms, ctx)?;
        } else if cmd.cleanup {
            // A will still waiting for its delay fires now: the session
            // ends.
            let will = self.sessions.get_mut(&c).and_then(|r| {
                let delayed = r.will_at_ms.take().is_some();
                r.will.take().filter(|_| delayed)
            });
            if let Some(w) = will {
                self.publish_will(id, &c, w, cmd.now_ms, ctx)?;
            }
            self.remove_session(&c, ctx)?;
        } else {
            return Ok(CmdResult::Stale);
        }
        Ok(CmdResult::Done)
    }

    /// Every connection of the node ended, each with its will.
    pub(super) fn node_restarted(
        &mut self,
        id: u64,
        cmd: NodeRestarted,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let mut owned: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.node == Some(cmd.node))
            .map(|(c, _)| c.clone())
            .collect();
        // Sorted: the order of wills and queue sequences must not depend on
        // the hash map's.
        owned.sort();
        for c in owned {
            self.end_connection(id, &c, true, None, cmd.now_ms, ctx)?;
        }
        Ok(CmdResult::Done)
    }

    /// Marks the session disconnected; publishes or schedules its will
    /// (dropped if `publish_will` is false); ends it if it does not outlive
    /// its connection.
    fn end_connection(
        &mut self,
        id: u64,
        c: &Arc<str>,
        publish_will: bool,
        new_expiry_s: Option<u32>,
        now_ms: u64,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let Some(rec) = self.sessions.get_mut(c) else {
            return Ok(());
        };
        rec.node = None;
        self.trie.write().set_location(c, None);
        rec.disconnected_ms = Some(now_ms);
        if let Some(e) = new_expiry_s {
            rec.expiry_s = e;
        }
        let expiry_s = rec.expiry_s;
        let mut fire = None;
        if !publish_will {
            rec.will = None;
        } else if let Some(w) = rec.will.clone() {
            let delay = w.delay_s.min(self.settings.max_last_will_delay);
            if delay == 0 || expiry_s == 0 {
                rec.will = None;
                fire = Some(w);
            } else {
                rec.will_at_ms = Some(now_ms + delay as u64 * 1000);
            }
        }
        ctx.dirty.insert(c.clone());
        if let Some(w) = fire {
            self.publish_will(id, c, w, now_ms, ctx)?;
        }
        if expiry_s == 0 {
            self.remove_session(c, ctx)?;
        } else {
            self.reschedule(c);
        }
        Ok(())
    }

    /// Time passed: fires the wills and ends the sessions that are due.
    pub(super) fn tick(
        &mut self,
        id: u64,
        cmd: Tick,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let due: Vec<Arc<str>> = self
            .timers
            .iter()
            .take_while(|(d, _)| *d <= cmd.now_ms)
            .map(|(_, c)| c.clone())
            .collect();
        for c in due {
            self.tick_session(id, &c, cmd.now_ms, ctx)?;
        }
        Ok(CmdResult::Done)
    }

    fn tick_session(
        &mut self,
        id: u64,
        c: &Arc<str>,
        now_ms: u64,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let Some(rec) = self.sessions.get(c).cloned() else {
            self.reschedule(c);
            return Ok(());
        };
        let expired = rec.expires_at().is_some_and(|e| e <= now_ms);
        let will_due = rec.will_at_ms.is_some_and(|w| w <= now_ms) || expired;
        if will_due && rec.node.is_none() {
            if let Some(w) = rec.will.clone() {
                if let Some(r) = self.sessions.get_mut(c) {
                    r.will = None;
                    r.will_at_ms = None;
                }
                ctx.dirty.insert(c.clone());
                self.publish_will(id, c, w, now_ms, ctx)?;
            }
        }
        if expired && rec.node.is_none() {
            self.stats.sessions_expired += 1;
            self.remove_session(c, ctx)?;
        } else {
            self.reschedule(c);
        }
        Ok(())
    }

    /// Publishes a will as message `id`, stamped with `now_ms`, and clears
    /// it from the session.
    fn publish_will(
        &mut self,
        id: u64,
        c: &Arc<str>,
        w: Box<Will>,
        now_ms: u64,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let w = *w;
        if let Some(r) = self.sessions.get_mut(c) {
            r.will = None;
            r.will_at_ms = None;
            ctx.dirty.insert(c.clone());
        }
        let mut msg = w.msg;
        msg.created_ms = now_ms;
        msg.expires_ms = w.expiry_s.map(|s| now_ms + s as u64 * 1000);
        self.stats.wills_published += 1;
        self.publish_message(id, msg, ctx)?;
        Ok(())
    }

    fn remove_session(&mut self, c: &Arc<str>, ctx: &mut Ctx) -> Result<(), RaftError> {
        self.drop_session_state(c, ctx)?;
        self.sessions.remove(c);
        ctx.dirty.insert(c.clone());
        self.reschedule(c);
        Ok(())
    }

    /// Removes a session's subscriptions, queue and QoS 2 ids.
    fn drop_session_state(&mut self, c: &Arc<str>, ctx: &mut Ctx) -> Result<(), RaftError> {
        self.drop_subscriptions(c, ctx);
        self.drop_queue(c, ctx)?;
        self.drop_qos2_in(c, ctx);
        Ok(())
    }

    /// Puts the session's timer at its next deadline, or removes it.
    pub(super) fn reschedule(&mut self, c: &Arc<str>) {
        if let Some(old) = self.timer_of.remove(c) {
            self.timers.remove(&(old, c.clone()));
        }
        if let Some(d) = self.sessions.get(c).and_then(|r| r.deadline()) {
            self.timers.insert((d, c.clone()));
            self.timer_of.insert(c.clone(), d);
        }
    }

    /// Writes (or deletes) the record of every session the batch changed.
    pub(super) fn write_dirty_sessions(&self, ctx: &mut Ctx) -> Result<(), RaftError> {
        for c in ctx.dirty.drain() {
            match self.sessions.get(&c) {
                Some(r) => ctx
                    .batch
                    .put(Table::Sessions, keys::session_key(&c), encode(r)?),
                None => ctx.batch.delete(Table::Sessions, keys::session_key(&c)),
            }
        }
        Ok(())
    }
}
