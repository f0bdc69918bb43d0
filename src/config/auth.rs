//! The per-node access-control keys (read at start): the password file,
//! what the ACL does when no rule matches or a rule denies, who may read
//! `$SYS`, admin API authentication, and the per-client message rate. The
//! users, rules and API keys themselves are replicated (see
//! [`crate::auth`]); `allow_anonymous` and the `[users]` table are older keys
//! kept in [`super::Settings`].

use std::path::PathBuf;

use super::values::{boolean, string, uint};

/// Every key of this file, as `show` and the config file name them.
pub const AUTH_KEYS: [&str; 9] = [
    "password_file",
    "acl_nomatch",
    "acl_deny_action",
    "sys_users",
    "api_auth",
    "api_key_file",
    "health_auth",
    "metrics_auth",
    "max_message_rate",
];

/// What a PUBLISH that the ACL denies gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyAction {
    /// MQTT 3: a positive acknowledgement and the message dropped; MQTT 5:
    /// PUBACK/PUBREC 0x87 (not authorized). The connection stays.
    Ignore,
    /// MQTT 5: DISCONNECT 0x87; MQTT 3: the connection is closed.
    Disconnect,
}

/// When the admin API (`/api/v1`) wants a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAuth {
    /// Once the cluster has at least one API key (the default).
    Auto,
    /// Always (with no key yet, only the cluster-internal key works).
    On,
    /// Never.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Users read at start: `user:$argon2…` or `user:plaintext` lines.
    pub password_file: Option<PathBuf>,
    /// A topic no ACL rule matches is allowed (true, the default) or denied.
    pub acl_nomatch_allow: bool,
    pub acl_deny_action: DenyAction,
    /// Users who may subscribe to `$SYS` (besides an ACL rule allowing it).
    pub sys_users: Vec<String>,
    pub api_auth: ApiAuth,
    /// API keys this node accepts besides the cluster's (one per line),
    /// read at start: how an operator gets in with `api_auth = on`.
    pub api_key_file: Option<PathBuf>,
    /// `/health` and `/metrics` want a key too (when the API does).
    pub health_auth: bool,
    pub metrics_auth: bool,
    /// PUBLISH packets a client may send per second (0 = unlimited).
    pub max_message_rate: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            password_file: None,
            acl_nomatch_allow: true,
            acl_deny_action: DenyAction::Ignore,
            sys_users: Vec::new(),
            api_auth: ApiAuth::Auto,
            api_key_file: None,
            health_auth: false,
            metrics_auth: false,
            max_message_rate: 0,
        }
    }
}

impl AuthSettings {
    /// Sets one key of [`AUTH_KEYS`]; the error says what was expected.
    pub fn set(&mut self, key: &str, v: &toml::Value) -> Result<(), String> {
        match key {
            "password_file" => self.password_file = Some(PathBuf::from(string(v)?)),
            "acl_nomatch" => {
                self.acl_nomatch_allow = match string(v)?.as_str() {
                    "allow" => true,
                    "deny" => false,
                    o => return Err(format!("expected \"allow\" or \"deny\", got `{o}`")),
                }
            }
            "acl_deny_action" => {
                self.acl_deny_action = match string(v)?.as_str() {
                    "ignore" => DenyAction::Ignore,
                    "disconnect" => DenyAction::Disconnect,
                    o => return Err(format!("expected \"ignore\" or \"disconnect\", got `{o}`")),
                }
            }
            "sys_users" => {
                self.sys_users = match v {
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|u| u.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or("expected a list of user names")?,
                    toml::Value::String(s) => s
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    other => return Err(format!("expected a list of user names, got {other}")),
                }
            }
            "api_auth" => {
                self.api_auth = match v {
                    toml::Value::String(s) if s == "auto" => ApiAuth::Auto,
                    v => {
                        if boolean(v).map_err(|e| format!("{e}, or \"auto\""))? {
                            ApiAuth::On
                        } else {
                            ApiAuth::Off
                        }
                    }
                }
            }
            "api_key_file" => self.api_key_file = Some(PathBuf::from(string(v)?)),
            "health_auth" => self.health_auth = boolean(v)?,
            "metrics_auth" => self.metrics_auth = boolean(v)?,
            "max_message_rate" => self.max_message_rate = uint(v, 0, 1_000_000)? as u32,
            _ => return Err("unknown setting".into()),
        }
        Ok(())
    }

    /// A key's value as `show` prints it.
    pub fn value(&self, key: &str) -> Option<String> {
        Some(match key {
            "password_file" => self
                .password_file
                .as_ref()
                .map_or_else(|| "none".into(), |p| p.display().to_string()),
            "acl_nomatch" => if self.acl_nomatch_allow {
                "allow"
            } else {
                "deny"
            }
            .into(),
            "acl_deny_action" => match self.acl_deny_action {
                DenyAction::Ignore => "ignore".into(),
                DenyAction::Disconnect => "disconnect".into(),
            },
            "sys_users" => self.sys_users.join(","),
            "api_auth" => match self.api_auth {
                ApiAuth::Auto => "auto".into(),
                ApiAuth::On => "on".into(),
                ApiAuth::Off => "off".into(),
            },
            "api_key_file" => self
                .api_key_file
                .as_ref()
                .map_or_else(|| "none".into(), |p| p.display().to_string()),
            "health_auth" => self.health_auth.to_string(),
            "metrics_auth" => self.metrics_auth.to_string(),
            "max_message_rate" => self.max_message_rate.to_string(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_auth_key_is_read_and_shown() {
        let mut s = AuthSettings::default();
        let text = r#"
password_file = "/etc/raftmq/passwd"
acl_nomatch = "deny"
acl_deny_action = "disconnect"
sys_users = ["admin", "ops"]
api_auth = "on"
api_key_file = "/etc/raftmq/api_key"
health_auth = true
metrics_auth = "on"
max_message_rate = 50
"#;
        let t: toml::Table = text.parse().unwrap();
        for (k, v) in &t {
            s.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        assert!(!s.acl_nomatch_allow);
        assert_eq!(s.acl_deny_action, DenyAction::Disconnect);
        assert_eq!(s.sys_users, ["admin", "ops"]);
        assert_eq!(s.api_auth, ApiAuth::On);
        assert!(s.health_auth && s.metrics_auth);
        assert_eq!(s.max_message_rate, 50);
        for k in AUTH_KEYS {
            assert!(s.value(k).is_some(), "{k}");
        }
    }

    #[test]
    fn a_bad_value_names_what_was_expected() {
        let mut s = AuthSettings::default();
        let e = s
            .set("acl_nomatch", &toml::Value::String("maybe".into()))
            .unwrap_err();
        assert!(e.contains("\"allow\" or \"deny\""), "{e}");
        let e = s
            .set("api_auth", &toml::Value::String("sometimes".into()))
            .unwrap_err();
        assert!(e.contains("\"auto\""), "{e}");
    }
}
