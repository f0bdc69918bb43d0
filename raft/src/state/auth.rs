//! The replicated access-control state: MQTT users (name and argon2 hash),
//! the ACL (its rule lines as text) and the admin API keys (SHA-256
//! digests). Applied from `SetUser`, `DeleteUser`, `SetAcl`, `AddApiKey` and
//! `DeleteApiKey`; the broker reads it through [`AuthTable`] snapshots that
//! apply swaps in (never waiting for apply, never blocking it for long).
//!
//! Storage: Meta rows, so they go into snapshots with the rest of the Meta
//! table and need no new table or format:
//! - `auth/user/NAME` -> [`UserRec`]
//! - `auth/acl` -> [`AclRec`]
//! - `auth/api_key/DIGEST` -> [`ApiKeyRec`]
//!
//! Apply never judges a hash or a rule: the broker checks them before it
//! proposes, and every node stores the same bytes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use raftmq_storage::{keys, Table};
use serde::{Deserialize, Serialize};

use super::{Ctx, MqttState};
use crate::command::{AddApiKey, CmdResult, DeleteApiKey, DeleteUser, SetAcl, SetUser};
use crate::error::{decode, encode, RaftError};

const USER_PREFIX: &str = "auth/user/";
const ACL_ROW: &str = "auth/acl";
const API_KEY_PREFIX: &str = "auth/api_key/";

/// A stored user. Stored (bincode): append fields never, add a new row kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRec {
    /// argon2 PHC string: `$argon2id$v=19$m=..,t=..,p=..$salt$hash`.
    pub hash: String,
    /// When it was set (ms), from the command.
    pub set_ms: u64,
}

/// The stored ACL: its rule lines and when they were set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRec {
    pub rules: String,
    pub set_ms: u64,
}

/// A stored admin API key (its digest is the row's key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRec {
    pub added_ms: u64,
}

/// The access-control state as of an applied batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthTable {
    pub users: BTreeMap<String, UserRec>,
    pub acl: AclRec,
    /// By hex SHA-256 digest of the key.
    pub api_keys: BTreeMap<String, ApiKeyRec>,
}

/// Where apply publishes the [`AuthTable`]; cheap to clone. A change swaps
/// in a new `Arc`; readers clone the `Arc` under a lock held only for that.
/// Each change also raises a generation number, so a reader that keeps
/// something derived from the table (a connection's parsed ACL) learns
/// with one atomic load whether it is still current.
#[derive(Clone, Default)]
pub struct AuthHandle(Arc<Published>);

#[derive(Default)]
struct Published {
    table: RwLock<Arc<AuthTable>>,
    generation: AtomicU64,
}

impl AuthHandle {
    pub fn get(&self) -> Arc<AuthTable> {
        self.0.table.read().clone()
    }

    /// Raised after every change: a reader that saw generation `g` and then
    /// read the table has a table at least as new as `g`.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    fn change(&self, f: impl FnOnce(&mut AuthTable)) {
        let mut t = (*self.get()).clone();
        f(&mut t);
        self.replace(t);
    }

    fn replace(&self, t: AuthTable) {
        *self.0.table.write() = Arc::new(t);
        self.0.generation.fetch_add(1, Ordering::Release);
    }
}

fn row(prefix: &str, name: &str) -> Vec<u8> {
    keys::meta_key(&format!("{prefix}{name}"))
}

impl MqttState {
    /// Reads every auth row into the published table.
    pub(super) fn load_auth(&mut self) -> Result<(), RaftError> {
        let user_prefix = keys::meta_key(USER_PREFIX);
        let key_prefix = keys::meta_key(API_KEY_PREFIX);
        let acl_row = keys::meta_key(ACL_ROW);
        let mut t = AuthTable::default();
        let mut bad = 0usize;
        self.store.for_each(Table::Meta, |k, v| {
            if let Some(name) = k.strip_prefix(user_prefix.as_slice()) {
                match decode::<UserRec>(v) {
                    Ok(u) => {
                        t.users
                            .insert(String::from_utf8_lossy(name).into_owned(), u);
                    }
                    Err(_) => bad += 1,
                }
            } else if let Some(digest) = k.strip_prefix(key_prefix.as_slice()) {
                match decode::<ApiKeyRec>(v) {
                    Ok(r) => {
                        t.api_keys
                            .insert(String::from_utf8_lossy(digest).into_owned(), r);
                    }
                    Err(_) => bad += 1,
                }
            } else if k == acl_row.as_slice() {
                match decode::<AclRec>(v) {
                    Ok(a) => t.acl = a,
                    Err(_) => bad += 1,
                }
            }
            Ok(())
        })?;
        if bad > 0 {
            tracing::warn!(rows = bad, "stored auth rows cannot be read; ignored");
        }
        self.auth.replace(t);
        Ok(())
    }

    /// The published access-control table, shared with the broker.
    pub fn auth(&self) -> AuthHandle {
        self.auth.clone()
    }

    pub(super) fn set_user(&mut self, c: SetUser, ctx: &mut Ctx) -> Result<CmdResult, RaftError> {
        let rec = UserRec {
            hash: c.hash,
            set_ms: c.now_ms,
        };
        ctx.batch
            .put(Table::Meta, row(USER_PREFIX, &c.name), encode(&rec)?);
        self.auth.change(|t| {
            t.users.insert(c.name, rec);
        });
        Ok(CmdResult::Done)
    }

    pub(super) fn delete_user(
        &mut self,
        c: DeleteUser,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        if !self.auth.get().users.contains_key(&c.name) {
            return Ok(CmdResult::Missing);
        }
        ctx.batch.delete(Table::Meta, row(USER_PREFIX, &c.name));
        self.auth.change(|t| {
            t.users.remove(&c.name);
        });
        Ok(CmdResult::Done)
    }

    pub(super) fn set_acl(&mut self, c: SetAcl, ctx: &mut Ctx) -> Result<CmdResult, RaftError> {
        let rec = AclRec {
            rules: c.rules,
            set_ms: c.now_ms,
        };
        ctx.batch
            .put(Table::Meta, keys::meta_key(ACL_ROW), encode(&rec)?);
        self.auth.change(|t| t.acl = rec);
        Ok(CmdResult::Done)
    }

    pub(super) fn add_api_key(
        &mut self,
        c: AddApiKey,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let rec = ApiKeyRec { added_ms: c.now_ms };
        ctx.batch
            .put(Table::Meta, row(API_KEY_PREFIX, &c.digest), encode(&rec)?);
        self.auth.change(|t| {
            t.api_keys.insert(c.digest, rec);
        });
        Ok(CmdResult::Done)
    }

    pub(super) fn delete_api_key(
        &mut self,
        c: DeleteApiKey,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        if !self.auth.get().api_keys.contains_key(&c.digest) {
            return Ok(CmdResult::Missing);
        }
        ctx.batch
            .delete(Table::Meta, row(API_KEY_PREFIX, &c.digest));
        self.auth.change(|t| {
            t.api_keys.remove(&c.digest);
        });
        Ok(CmdResult::Done)
    }
}
