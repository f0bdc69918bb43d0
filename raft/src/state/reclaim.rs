//! Reclaiming the queues of ended sessions a bounded amount at a time.
//!
//! A small queue is deleted with its session, in the same batch. A large one
//! (more than [`INLINE`] items) would make that one batch as large as the
//! queue (ten million deletes, and as many reads to release the messages),
//! so instead its sequence range is set aside in `Meta` (`reclaim/<client>`)
//! and each applied log entry deletes at most [`PER_ENTRY`] of its items.
//! The work is tied to log entries, not to apply calls, so every replica
//! reaches the same state at the same index. A new session of the same client
//! id numbers its queue from the end of the range, so its items never meet
//! the ones still being reclaimed.

use std::sync::Arc;

use raftmq_storage::{keys, Table};
use serde::{Deserialize, Serialize};

use super::{Ctx, MqttState};
use crate::error::{decode, encode, RaftError};

/// Queues of at most this many items are deleted with their session.
pub(super) const INLINE: u64 = 1024;
/// Items reclaimed per applied log entry, at most.
const PER_ENTRY: u64 = 256;
const META_PREFIX: &str = "reclaim/";

/// The sequences of a client's ended queue still to delete: `from..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Span {
    pub(super) from: u64,
    pub(super) to: u64,
}

impl MqttState {
    /// Sets an ended queue aside for reclaiming, merged with what is left
    /// of an earlier one of the same client id.
    pub(super) fn set_aside(
        &mut self,
        c: &Arc<str>,
        span: Span,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let span = match self.reclaim.get(c) {
            Some(old) => Span {
                from: old.from.min(span.from),
                to: old.to.max(span.to),
            },
            None => span,
        };
        self.reclaim.insert(c.clone(), span);
        ctx.batch.put(Table::Meta, reclaim_key(c), encode(&span)?);
        Ok(())
    }

    /// Where a new queue of client `c` starts: after any of its items still
    /// being reclaimed.
    pub(super) fn first_seq(&self, c: &str) -> u64 {
        self.reclaim.get(c).map_or(0, |s| s.to)
    }

    /// Deletes up to [`PER_ENTRY`] items of the ended queues, oldest client
    /// id first; called once per applied log entry.
    pub(super) fn reclaim_some(&mut self, ctx: &mut Ctx) -> Result<(), RaftError> {
        let mut budget = PER_ENTRY;
        while budget > 0 {
            let Some((c, span)) = self.reclaim.iter().next().map(|(c, s)| (c.clone(), *s)) else {
                return Ok(());
            };
            let end = span.to.min(span.from + budget);
            for seq in span.from..end {
                self.delete_item(&c, seq, ctx)?;
            }
            budget -= end - span.from;
            if end == span.to {
                self.reclaim.remove(&c);
                ctx.batch.delete(Table::Meta, reclaim_key(&c));
            } else {
                let rest = Span {
                    from: end,
                    to: span.to,
                };
                self.reclaim.insert(c.clone(), rest);
                ctx.batch.put(Table::Meta, reclaim_key(&c), encode(&rest)?);
            }
        }
        Ok(())
    }

    /// The ended queues still being reclaimed, from `Meta`.
    pub(super) fn load_reclaim(&mut self) -> Result<(), RaftError> {
        let prefix = keys::meta_key(META_PREFIX);
        for (k, v) in self.store.scan_prefix(Table::Meta, &prefix)? {
            let c = String::from_utf8_lossy(&k[prefix.len()..]).to_string();
            let span: Span = decode(&v)?;
            let c = self.intern(&c);
            self.reclaim.insert(c, span);
        }
        Ok(())
    }

    /// Items set aside and not yet deleted, in all ended queues (at most:
    /// some in a span may have been acknowledged before).
    pub fn reclaim_pending(&self) -> u64 {
        self.reclaim.values().map(|s| s.to - s.from).sum()
    }
}

fn reclaim_key(c: &str) -> Vec<u8> {
    keys::meta_key(&format!("{META_PREFIX}{c}"))
}
