//! The Meta table: cluster settings (Configure), the membership, the last
//! applied log id and the dedup sets, written in the same batch as the state
//! they describe.

use raftmq_storage::{keys, Table};

use super::{Ctx, MqttState};
use crate::command::{ClusterSettings, CmdResult};
use crate::error::{decode, encode, RaftError};
use crate::types::{LogId, Membership, NodeId, NodeInfo};

const META_APPLIED: &str = "last_applied";
const META_MEMBERSHIP: &str = "membership";
const META_SETTINGS: &str = "settings";
const META_DEDUP: &str = "dedup";
const META_FORMAT: &str = "format";
const META_LAST_MESSAGE: &str = "last_message";

/// The layout of the state tables this build reads and writes. Format 1 (no
/// `format` row) held queue items in memory; format 2 keeps queues on disk
/// only, their counts in the session records, and message reference counts
/// in `MessageRefs`.
pub(crate) const FORMAT: u32 = 2;

impl MqttState {
    /// Reads every Meta row; an absent row is its default.
    pub(super) fn load_meta(&mut self) -> Result<(), RaftError> {
        // Stored as the `Option<LogId>` it is (see `write_progress`);
        // decoding it as a bare `LogId` would misread every field.
        self.last_applied = self.meta::<Option<LogId>>(META_APPLIED)?.flatten();
        match self.meta::<u32>(META_FORMAT)? {
            Some(FORMAT) => {}
            // Nothing applied yet: a new data directory.
            None if self.last_applied.is_none() => {}
            found => {
                return Err(RaftError::Format {
                    found: found.unwrap_or(1),
                    wants: FORMAT,
                })
            }
        }
        self.last_message_id = self.meta(META_LAST_MESSAGE)?.unwrap_or_default();
        self.membership = self.meta(META_MEMBERSHIP)?.unwrap_or_default();
        self.settings = self.meta(META_SETTINGS)?.unwrap_or_default();
        self.dedup = self.meta(META_DEDUP)?.unwrap_or_default();
        Ok(())
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, RaftError> {
        self.store
            .get(Table::Meta, &keys::meta_key(name))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Configure: replaces the cluster settings.
    pub(super) fn configure(
        &mut self,
        s: ClusterSettings,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        ctx.batch
            .put(Table::Meta, keys::meta_key(META_SETTINGS), encode(&s)?);
        self.settings = s;
        Ok(CmdResult::Done)
    }

    /// A membership entry: becomes the stored membership.
    pub(super) fn apply_membership(
        &mut self,
        log_id: LogId,
        m: openraft::Membership<NodeId, NodeInfo>,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        self.membership = Membership::new(Some(log_id), m);
        ctx.batch.put(
            Table::Meta,
            keys::meta_key(META_MEMBERSHIP),
            encode(&self.membership)?,
        );
        Ok(())
    }

    /// The end of every applied batch: how far it got, the command ids it
    /// applied, the last message id it gave, and the format it wrote.
    pub(super) fn write_progress(&self, ctx: &mut Ctx) -> Result<(), RaftError> {
        ctx.batch
            .put(Table::Meta, keys::meta_key(META_FORMAT), encode(&FORMAT)?);
        ctx.batch.put(
            Table::Meta,
            keys::meta_key(META_LAST_MESSAGE),
            encode(&self.last_message_id)?,
        );
        ctx.batch.put(
            Table::Meta,
            keys::meta_key(META_APPLIED),
            encode(&self.last_applied)?,
        );
        ctx.batch.put(
            Table::Meta,
            keys::meta_key(META_DEDUP),
            encode(&self.dedup)?,
        );
        Ok(())
    }
}
