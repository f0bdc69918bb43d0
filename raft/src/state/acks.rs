//! Acknowledgements: Ack (PUBACK / PUBCOMP) and Received (PUBREC) from a
//! subscriber advance its queue; Release (PUBREL) from a publisher forgets an
//! inbound QoS 2 packet id.

use std::sync::Arc;

use raftmq_storage::{keys, Table};

use super::{Ctx, MqttState};
use crate::command::{Ack, CmdResult, Received, Release};
use crate::error::RaftError;

impl MqttState {
    /// PUBACK / PUBCOMP: drops these items from the session's queue.
    pub(super) fn ack(&mut self, cmd: &Ack, ctx: &mut Ctx) -> Result<CmdResult, RaftError> {
        let Some(c) = self.live_session(&cmd.client_id, cmd.epoch) else {
            return Ok(CmdResult::Stale);
        };
        for &seq in &cmd.seqs {
            self.dequeue(&c, seq, ctx)?;
        }
        Ok(CmdResult::Done)
    }

    /// PUBREC: these QoS 2 items are received.
    pub(super) fn received(
        &mut self,
        cmd: &Received,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let Some(c) = self.live_session(&cmd.client_id, cmd.epoch) else {
            return Ok(CmdResult::Stale);
        };
        for &seq in &cmd.seqs {
            self.mark_received(&c, seq, ctx)?;
        }
        Ok(CmdResult::Done)
    }

    /// PUBREL: forgets the publisher's inbound QoS 2 packet id. Not bound to
    /// a session epoch: the release may come on a later connection.
    pub(super) fn release(&mut self, cmd: &Release, ctx: &mut Ctx) -> Result<CmdResult, RaftError> {
        let c = self.intern(&cmd.client_id);
        let found = match self.qos2_in.get_mut(&c) {
            Some(ids) => {
                let found = ids.remove(&cmd.packet_id);
                if ids.is_empty() {
                    self.qos2_in.remove(&c);
                }
                found
            }
            None => false,
        };
        if found {
            ctx.batch
                .delete(Table::Qos2In, keys::qos2_key(&c, cmd.packet_id));
        }
        Ok(CmdResult::Released { found })
    }

    /// Forgets every inbound QoS 2 packet id of an ending session.
    pub(super) fn drop_qos2_in(&mut self, c: &Arc<str>, ctx: &mut Ctx) {
        for p in self.qos2_in.remove(c).unwrap_or_default() {
            ctx.batch.delete(Table::Qos2In, keys::qos2_key(c, p));
        }
    }
}
