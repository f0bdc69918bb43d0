//! Subscribe and Unsubscribe: the subscription table, the trie that routes
//! by it, and the retained messages a new subscription receives.

use std::sync::Arc;

use raftmq_storage::{keys, Table};

use super::{Ctx, MqttState};
use crate::command::{CmdResult, Delivery, SubOpts, Subscribe, Unsubscribe};
use crate::error::{encode, RaftError};
use crate::trie::split_shared;

impl MqttState {
    /// SUBSCRIBE: grants every filter at its requested QoS and collects the
    /// retained messages to send after the SUBACK.
    pub(super) fn subscribe(
        &mut self,
        cmd: Subscribe,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let Some(c) = self.live_session(&cmd.client_id, cmd.epoch) else {
            return Ok(CmdResult::Stale);
        };
        let mut codes = Vec::with_capacity(cmd.filters.len());
        let mut retained = Vec::new();
        for (f, opts) in cmd.filters {
            let existed = self.trie.write().insert(&f, &c, opts);
            self.subs_by_client
                .entry(c.clone())
                .or_default()
                .insert(f.clone(), opts);
            ctx.batch.put(
                Table::Subscriptions,
                keys::subscription_key(&c, &f),
                encode(&opts)?,
            );
            codes.push(opts.qos);
            retained.extend(self.retained_for(&f, opts, existed));
        }
        Ok(CmdResult::Subscribed { codes, retained })
    }

    /// The retained messages a subscription to `filter` receives: none for a
    /// shared subscription, and per its retain handling (0: always, 1: only
    /// if it is new, 2: never).
    fn retained_for(&self, filter: &str, opts: SubOpts, existed: bool) -> Vec<Delivery> {
        let (group, plain) = split_shared(filter);
        let send = group.is_none()
            && (opts.retain_handling == 0 || (opts.retain_handling == 1 && !existed));
        if !send {
            return Vec::new();
        }
        self.retained
            .matching(plain)
            .into_iter()
            .map(|m| {
                let qos = m.qos.min(opts.qos);
                Delivery::live(m, qos, true, opts.sub_id.into_iter().collect())
            })
            .collect()
    }

    /// UNSUBSCRIBE: 0x00 per filter that was subscribed, 0x11 otherwise.
    pub(super) fn unsubscribe(
        &mut self,
        cmd: Unsubscribe,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let Some(c) = self.live_session(&cmd.client_id, cmd.epoch) else {
            return Ok(CmdResult::Stale);
        };
        let mut codes = Vec::with_capacity(cmd.filters.len());
        for f in cmd.filters {
            let existed = self.trie.write().remove(&f, &c);
            if let Some(m) = self.subs_by_client.get_mut(&c) {
                m.remove(&f);
            }
            ctx.batch
                .delete(Table::Subscriptions, keys::subscription_key(&c, &f));
            codes.push(if existed { 0x00 } else { 0x11 });
        }
        Ok(CmdResult::Unsubscribed { codes })
    }

    /// Removes every subscription of an ending session.
    pub(super) fn drop_subscriptions(&mut self, c: &Arc<str>, ctx: &mut Ctx) {
        if let Some(subs) = self.subs_by_client.remove(c) {
            let mut trie = self.trie.write();
            for f in subs.keys() {
                trie.remove(f, c);
                ctx.batch
                    .delete(Table::Subscriptions, keys::subscription_key(c, f));
            }
        }
    }
}
