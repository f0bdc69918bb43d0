//! The Meta table: cluster settings (Configure, SetSettings), the members'
//! data-directory identities (Identify), the membership, the last applied
//! log id and the dedup sets, written in the same batch as the state they
//! describe.
//!
//! Cluster settings are stored twice: the "settings" row holds the six
//! values of [`ClusterSettings`] (as earlier versions wrote and read it),
//! and one "setting/KEY" row per key set since holds that key's value as
//! text with its [`SettingSource`]. At load the per-key rows win; a key is
//! added without a new format.

use raftmq_storage::{keys, Table};

use super::{Ctx, MqttState};
use std::collections::BTreeMap;

use crate::command::{ClusterSettings, CmdResult, Identify, SetSettings};
use crate::error::{decode, encode, RaftError};
use crate::settings::{ClusterConfig, SettingSource, CLUSTER_KEYS};
use crate::types::{LogId, Membership, NodeId, NodeInfo};

const META_APPLIED: &str = "last_applied";
const META_MEMBERSHIP: &str = "membership";
const META_SETTINGS: &str = "settings";
/// Prefix of the per-key settings rows.
const META_SETTING: &str = "setting/";
const META_DEDUP: &str = "dedup";
const META_FORMAT: &str = "format";
const META_LAST_MESSAGE: &str = "last_message";
/// Absent in directories written before identities existed: read as none
/// recorded (no format change).
const META_IDENTITIES: &str = "identities";

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
        self.settings = self.load_settings()?;
        self.dedup = self.meta(META_DEDUP)?.unwrap_or_default();
        self.identities = self.meta(META_IDENTITIES)?.unwrap_or_default();
        Ok(())
    }

    /// Identify: records (or replaces) a member's data-directory identity.
    pub(super) fn identify(&mut self, c: Identify, ctx: &mut Ctx) -> Result<CmdResult, RaftError> {
        self.identities.insert(c.node, c.identity);
        ctx.batch.put(
            Table::Meta,
            keys::meta_key(META_IDENTITIES),
            encode(&self.identities)?,
        );
        Ok(CmdResult::Done)
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, RaftError> {
        self.store
            .get(Table::Meta, &keys::meta_key(name))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// The cluster settings: the "settings" row, then the per-key rows. A
    /// per-key row this build cannot read (a key of a later version) is
    /// skipped, the same way on every node of this version.
    fn load_settings(&self) -> Result<ClusterConfig, RaftError> {
        let mut c = ClusterConfig::default();
        if let Some(base) = self.meta::<ClusterSettings>(META_SETTINGS)? {
            c.configure(&base);
            let default = ClusterConfig::default();
            for k in CLUSTER_KEYS {
                if c.get(k) != default.get(k) {
                    c.sources.insert(k.to_string(), SettingSource::Earlier);
                }
            }
        }
        let prefix = keys::meta_key(META_SETTING);
        let mut rows = Vec::new();
        self.store.for_each(Table::Meta, |k, v| {
            if let Some(key) = k.strip_prefix(prefix.as_slice()) {
                rows.push((String::from_utf8_lossy(key).into_owned(), v.to_vec()));
            }
            Ok(())
        })?;
        for (key, v) in rows {
            let Ok((text, source)) = decode::<(String, SettingSource)>(&v) else {
                tracing::warn!(key, "a stored cluster setting cannot be read; ignored");
                continue;
            };
            match c.set(&key, &text) {
                Ok(()) => {
                    c.sources.insert(key, source);
                }
                Err(e) => tracing::warn!(error = %e, "a stored cluster setting is ignored"),
            }
        }
        Ok(c)
    }

    /// Makes `c` the cluster settings: its "settings" row, and a per-key row
    /// for each of `keys`.
    fn store_settings(
        &mut self,
        c: ClusterConfig,
        keys: &[&str],
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        ctx.batch.put(
            Table::Meta,
            keys::meta_key(META_SETTINGS),
            encode(&c.base())?,
        );
        for k in keys {
            let (Some(text), source) = (c.get(k), c.source(k)) else {
                continue;
            };
            ctx.batch.put(
                Table::Meta,
                keys::meta_key(&format!("{META_SETTING}{k}")),
                encode(&(text, source))?,
            );
        }
        self.settings = c;
        Ok(())
    }

    /// Configure (entry `index`): replaces the six values it carries.
    pub(super) fn configure(
        &mut self,
        index: u64,
        s: ClusterSettings,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let mut c = self.settings.clone();
        c.configure(&s);
        let six = &CLUSTER_KEYS[..6];
        for k in six {
            c.sources
                .insert(k.to_string(), SettingSource::Configure { index });
        }
        self.store_settings(c, six, ctx)?;
        Ok(CmdResult::Done)
    }

    /// SetSettings (entry `index`): every pair, or none if one is bad.
    pub(super) fn set_settings(
        &mut self,
        index: u64,
        s: SetSettings,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let mut c = match self.settings.with(&s.changes) {
            Ok(c) => c,
            Err(e) => return Ok(CmdResult::SettingsRefused(e.to_string())),
        };
        let source = match s.bootstrap_file {
            Some(file) => SettingSource::Bootstrap {
                file,
                index,
                now_ms: s.now_ms,
            },
            None => SettingSource::Set {
                index,
                now_ms: s.now_ms,
            },
        };
        let keys: Vec<&str> = s.changes.iter().map(|(k, _)| k.as_str()).collect();
        for k in &keys {
            c.sources.insert(k.to_string(), source.clone());
        }
        self.store_settings(c, &keys, ctx)?;
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

/// The recorded identities as of the last applied batch, read from RocksDB
/// (without the apply lock).
pub(crate) fn read_identities(
    store: &raftmq_storage::Store,
) -> Result<BTreeMap<NodeId, u128>, RaftError> {
    store
        .get(Table::Meta, &keys::meta_key(META_IDENTITIES))?
        .map(|b| decode(&b))
        .transpose()
        .map(Option::unwrap_or_default)
}
