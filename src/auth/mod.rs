//! Access control: who may connect (users and `allow_anonymous`), what a
//! client may publish and subscribe to (the ACL, `$SYS`), and who may use
//! the admin API (API keys). The users, rules and keys are replicated
//! ([`raftmq_raft::state::AuthTable`], read without waiting for apply);
//! this module decides by them and the node's settings.
//!
//! - [`password`]: argon2id hashes.
//! - [`users`]: the node's own users (`[users]`, `password_file`).
//! - [`acl`]: rule lines and the publish/subscribe decision.
//! - [`api_key`]: API keys, their digests, the `Authorization` header.
//! - [`rate`]: the per-connection message rate (`max_message_rate`).
//! - this file: [`Auth`], the node's decisions, and [`Identity`].

pub mod acl;
pub mod api_key;
pub mod password;
pub mod rate;
pub mod users;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use raftmq_raft::state::AuthTable;

use crate::config::auth::{ApiAuth, AuthSettings};
use crate::config::Settings;
use acl::{Access, Acl};

/// Who a connected client is, as the ACL sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated user name (`None`: anonymous).
    pub user: Option<String>,
    /// Shared with the connection, which holds the same id.
    pub client_id: std::sync::Arc<str>,
    pub addr: Option<IpAddr>,
}

/// Why a login is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// A user name with a wrong or missing password, or an unknown user
    /// (the same answer, after the same work).
    BadCredentials,
    /// No credentials, and anonymous clients are not allowed.
    NotAuthorized,
}

/// The credentials of a CONNECT.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// The TLS client certificate's identity, when the listener takes it
    /// as the user name (`use_identity_as_username`): accepted as is.
    pub cert_identity: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Users(#[from] users::UsersError),
    #[error("hashing the dummy password: {0}")]
    Hash(#[from] password::HashError),
    #[error("api_key_file {path}: {message}")]
    KeyFile { path: String, message: String },
}

/// The digests of the keys in an `api_key_file` (one key per line, `#`
/// comments).
fn key_file_digests(path: &std::path::Path) -> Result<Vec<String>, AuthError> {
    let err = |message: String| AuthError::KeyFile {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|k| {
            api_key::check_format(k).map_err(|e| err(e.to_string()))?;
            Ok(api_key::digest(k))
        })
        .collect()
}

/// The node's access-control decisions.
pub struct Auth {
    settings: AuthSettings,
    allow_anonymous: bool,
    /// The node's own users (config file, password file): name to hash.
    local_users: BTreeMap<String, String>,
    /// A hash of a random password with the default parameters: an unknown
    /// user's password is verified against it, so that the answer takes as
    /// long as for a known user.
    dummy: String,
    /// Digest of the cluster-internal API key.
    internal_digest: String,
    /// Digests of the keys of this node's `api_key_file`.
    file_key_digests: Vec<String>,
    /// The last rule text parsed, and its rules.
    acl: Mutex<(String, Arc<Acl>)>,
}

impl Auth {
    /// Reads the node's users (hashing plain passwords) and settings.
    pub fn new(s: &Settings) -> Result<Auth, AuthError> {
        let mut local_users = users::from_table(&s.users)?;
        if let Some(path) = &s.auth.password_file {
            local_users.extend(users::from_file(path)?);
        }
        let dummy = password::hash(&rand::random::<[u8; 16]>())?;
        let file_key_digests = match &s.auth.api_key_file {
            Some(p) => key_file_digests(p)?,
            None => Vec::new(),
        };
        Ok(Auth {
            settings: s.auth.clone(),
            allow_anonymous: s.allow_anonymous,
            local_users,
            dummy,
            internal_digest: api_key::digest(&api_key::internal_key(&s.distributed_cookie)),
            file_key_digests,
            acl: Mutex::new((String::new(), Arc::new(Acl::default()))),
        })
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Decides a login (argon2: run it off the async runtime). `Ok(None)`:
    /// admitted as anonymous.
    pub fn login(&self, table: &AuthTable, c: &Credentials) -> Result<Option<String>, LoginError> {
        if let Some(cn) = &c.cert_identity {
            return Ok(Some(cn.clone()));
        }
        match (&c.username, &c.password) {
            (Some(u), Some(p)) => {
                let hash = table
                    .users
                    .get(u)
                    .map(|r| r.hash.as_str())
                    .or_else(|| self.local_users.get(u).map(String::as_str));
                // Verified either way, so that an unknown user costs the
                // same as a wrong password.
                let ok = password::verify(hash.unwrap_or(&self.dummy), p);
                if ok && hash.is_some() {
                    Ok(Some(u.clone()))
                } else {
                    Err(LoginError::BadCredentials)
                }
            }
            _ if self.allow_anonymous => Ok(None),
            (Some(_), None) | (None, Some(_)) => Err(LoginError::BadCredentials),
            (None, None) => Err(LoginError::NotAuthorized),
        }
    }

    /// The rules of `table`, parsed once per change. Rules that do not
    /// parse (written by a later version) deny everything. A connection
    /// keeps what this returns until the table's generation changes, so
    /// this runs once per change per connection, not per PUBLISH.
    pub fn acl(&self, table: &AuthTable) -> Arc<Acl> {
        let mut held = self.acl.lock();
        if held.0 != table.acl.rules {
            let acl = Acl::parse(&table.acl.rules).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the replicated ACL cannot be read; every publish and subscribe is denied until it is replaced");
                Acl::parse("deny all both #").unwrap_or_default()
            });
            *held = (table.acl.rules.clone(), Arc::new(acl));
        }
        held.1.clone()
    }

    /// May `who` publish to `topic`, by the rules `acl`?
    pub fn may_publish(&self, acl: &Acl, who: &Identity, topic: &str) -> bool {
        acl.decide(who, Access::Publish, topic)
            .unwrap_or(self.settings.acl_nomatch_allow)
    }

    /// May `who` subscribe to `filter` (a shared subscription's filter
    /// without its `$share/GROUP/`), by the rules `acl`? A `$SYS` filter needs a user in
    /// `sys_users` or an ACL rule that allows it: `acl_nomatch` does not
    /// open `$SYS`.
    pub fn may_subscribe(&self, acl: &Acl, who: &Identity, filter: &str) -> bool {
        let sys = filter.starts_with("$SYS");
        if sys
            && who
                .user
                .as_ref()
                .is_some_and(|u| self.settings.sys_users.contains(u))
        {
            return true;
        }
        acl.decide(who, Access::Subscribe, filter)
            .unwrap_or(!sys && self.settings.acl_nomatch_allow)
    }

    /// Does a request to the admin API need a key?
    pub fn api_key_required(&self, table: &AuthTable, path: &str) -> bool {
        let wanted = match self.settings.api_auth {
            ApiAuth::Off => false,
            ApiAuth::On => true,
            ApiAuth::Auto => !table.api_keys.is_empty(),
        };
        wanted
            && match path {
                "/health" => self.settings.health_auth,
                "/metrics" => self.settings.metrics_auth,
                _ => true,
            }
    }

    /// Is `key` one of the cluster's API keys, one of this node's
    /// `api_key_file`, or the internal key?
    pub fn api_key_ok(&self, table: &AuthTable, key: &str) -> bool {
        let d = api_key::digest(key);
        d == self.internal_digest
            || table.api_keys.contains_key(&d)
            || self.file_key_digests.contains(&d)
    }

    /// Users of this node's config and password file, by name.
    pub fn local_users(&self) -> impl Iterator<Item = &str> {
        self.local_users.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests;
