//! The cluster-wide settings by key: which keys there are, how a value is
//! read from text (the same parser for a config file, `raftmq set` and
//! apply), the values in effect ([`ClusterConfig`]) and where each came from
//! ([`SettingSource`]).
//!
//! A change travels through the log as [`crate::command::SetSettings`]
//! (key, text pairs). The proposer checks it with [`ClusterConfig::with`]
//! before proposing; apply checks it again with the same function and
//! refuses the whole command if any pair is bad, so a stored value can never
//! make apply fail or panic, and every node decides the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{ClusterSettings, NEVER};

/// Every cluster-wide key, in the order `show` lists them.
pub const CLUSTER_KEYS: [&str; 11] = [
    "max_inflight_messages",
    "max_online_messages",
    "max_offline_messages",
    "max_queue_bytes",
    "suppress_lwt_on_session_takeover",
    "max_last_will_delay",
    "persistent_client_expiration",
    "allow_register_during_netsplit",
    "allow_publish_during_netsplit",
    "allow_subscribe_during_netsplit",
    "allow_unsubscribe_during_netsplit",
];

/// Is `key` one of [`CLUSTER_KEYS`]?
pub fn is_cluster_key(key: &str) -> bool {
    CLUSTER_KEYS.contains(&key)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("`{0}`: unknown setting")]
    Unknown(String),
    #[error("`{key}`: {message}")]
    BadValue { key: String, message: String },
}

/// Where a cluster-wide value came from. Stored (bincode) in the Meta
/// table beside the value: append variants only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettingSource {
    /// Never set: the built-in default.
    Default,
    /// A `Configure` entry (written by versions that proposed the whole
    /// settings from a node's config file at each start).
    Configure { index: u64 },
    /// Set before per-key sources were recorded (a data directory of an
    /// earlier version): its `Configure` index is unknown.
    Earlier,
    /// `raftmq set` (or `/api/v1/set`), committed at this log index.
    Set { index: u64, now_ms: u64 },
    /// The config file of the node that bootstrapped the cluster.
    Bootstrap {
        file: String,
        index: u64,
        now_ms: u64,
    },
}

impl std::fmt::Display for SettingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingSource::Default => write!(f, "default"),
            SettingSource::Configure { index } => {
                write!(f, "config file of an earlier version, log index {index}")
            }
            SettingSource::Earlier => write!(f, "config file of an earlier version"),
            SettingSource::Set { index, now_ms } => {
                write!(f, "set at log index {index}, {}", utc(*now_ms))
            }
            SettingSource::Bootstrap { file, index, .. } => {
                write!(f, "bootstrap file {file}, log index {index}")
            }
        }
    }
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms after the epoch"),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

/// The cluster-wide settings in effect: what apply decides by, the same on
/// every node at the same log index. Not stored as a whole (see
/// `state::meta`): each key is a Meta row of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Outgoing QoS 1/2 window per session (0 = unlimited).
    pub max_inflight_messages: u32,
    /// Queued for an online session beyond its window (-1 = unlimited).
    pub max_online_messages: i64,
    /// QoS 1/2 queued for an offline persistent session (-1 = unlimited).
    pub max_offline_messages: i64,
    pub suppress_lwt_on_session_takeover: bool,
    /// Upper bound on will delay in seconds (NEVER = no bound).
    pub max_last_will_delay: u32,
    /// Payload bytes a persistent session's queue may hold (-1 = unlimited).
    pub max_queue_bytes: i64,
    /// Session expiry of MQTT 3 persistent sessions (s, NEVER = never).
    pub persistent_client_expiration: u32,
    pub allow_register_during_netsplit: bool,
    pub allow_publish_during_netsplit: bool,
    pub allow_subscribe_during_netsplit: bool,
    pub allow_unsubscribe_during_netsplit: bool,
    /// Where each key's value came from; a key not here is a default.
    pub sources: BTreeMap<String, SettingSource>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let mut c = ClusterConfig {
            max_inflight_messages: 0,
            max_online_messages: 0,
            max_offline_messages: 0,
            suppress_lwt_on_session_takeover: false,
            max_last_will_delay: 0,
            max_queue_bytes: 0,
            persistent_client_expiration: NEVER,
            allow_register_during_netsplit: false,
            allow_publish_during_netsplit: false,
            allow_subscribe_during_netsplit: false,
            allow_unsubscribe_during_netsplit: false,
            sources: BTreeMap::new(),
        };
        c.configure(&ClusterSettings::default());
        c
    }
}

impl ClusterConfig {
    /// The six values a `Configure` entry carries.
    pub fn base(&self) -> ClusterSettings {
        ClusterSettings {
            max_inflight_messages: self.max_inflight_messages,
            max_online_messages: self.max_online_messages,
            max_offline_messages: self.max_offline_messages,
            suppress_lwt_on_session_takeover: self.suppress_lwt_on_session_takeover,
            max_last_will_delay: self.max_last_will_delay,
            max_queue_bytes: self.max_queue_bytes,
        }
    }

    /// Takes the six values of a `Configure` entry (sources unchanged).
    pub fn configure(&mut self, s: &ClusterSettings) {
        self.max_inflight_messages = s.max_inflight_messages;
        self.max_online_messages = s.max_online_messages;
        self.max_offline_messages = s.max_offline_messages;
        self.suppress_lwt_on_session_takeover = s.suppress_lwt_on_session_takeover;
        self.max_last_will_delay = s.max_last_will_delay;
        self.max_queue_bytes = s.max_queue_bytes;
    }

    /// Sets one key from its text. Nothing changes on an error.
    pub fn set(&mut self, key: &str, text: &str) -> Result<(), SettingError> {
        let bad = |message: String| SettingError::BadValue {
            key: key.to_string(),
            message,
        };
        let t = text.trim();
        match key {
            "max_inflight_messages" => self.max_inflight_messages = uint(t, 65_535).map_err(bad)?,
            "max_online_messages" => self.max_online_messages = limit(t).map_err(bad)?,
            "max_offline_messages" => self.max_offline_messages = limit(t).map_err(bad)?,
            "max_queue_bytes" => self.max_queue_bytes = limit(t).map_err(bad)?,
            "suppress_lwt_on_session_takeover" => {
                self.suppress_lwt_on_session_takeover = boolean(t).map_err(bad)?
            }
            "max_last_will_delay" => self.max_last_will_delay = duration(t).map_err(bad)?,
            "persistent_client_expiration" => {
                self.persistent_client_expiration = duration(t).map_err(bad)?
            }
            "allow_register_during_netsplit" => {
                self.allow_register_during_netsplit = boolean(t).map_err(bad)?
            }
            "allow_publish_during_netsplit" => {
                self.allow_publish_during_netsplit = boolean(t).map_err(bad)?
            }
            "allow_subscribe_during_netsplit" => {
                self.allow_subscribe_during_netsplit = boolean(t).map_err(bad)?
            }
            "allow_unsubscribe_during_netsplit" => {
                self.allow_unsubscribe_during_netsplit = boolean(t).map_err(bad)?
            }
            _ => return Err(SettingError::Unknown(key.to_string())),
        }
        Ok(())
    }

    /// A copy with every change made, or the first bad pair's error.
    pub fn with(&self, changes: &[(String, String)]) -> Result<ClusterConfig, SettingError> {
        let mut c = self.clone();
        for (k, v) in changes {
            c.set(k, v)?;
        }
        Ok(c)
    }

    /// A key's value as text that [`ClusterConfig::set`] reads back.
    pub fn get(&self, key: &str) -> Option<String> {
        let dur = |s: u32| {
            if s == NEVER {
                "never".to_string()
            } else {
                s.to_string()
            }
        };
        Some(match key {
            "max_inflight_messages" => self.max_inflight_messages.to_string(),
            "max_online_messages" => self.max_online_messages.to_string(),
            "max_offline_messages" => self.max_offline_messages.to_string(),
            "max_queue_bytes" => self.max_queue_bytes.to_string(),
            "suppress_lwt_on_session_takeover" => self.suppress_lwt_on_session_takeover.to_string(),
            "max_last_will_delay" => dur(self.max_last_will_delay),
            "persistent_client_expiration" => dur(self.persistent_client_expiration),
            "allow_register_during_netsplit" => self.allow_register_during_netsplit.to_string(),
            "allow_publish_during_netsplit" => self.allow_publish_during_netsplit.to_string(),
            "allow_subscribe_during_netsplit" => self.allow_subscribe_during_netsplit.to_string(),
            "allow_unsubscribe_during_netsplit" => {
                self.allow_unsubscribe_during_netsplit.to_string()
            }
            _ => return None,
        })
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: &str) -> SettingSource {
        self.sources
            .get(key)
            .cloned()
            .unwrap_or(SettingSource::Default)
    }
}

fn uint(t: &str, max: u64) -> Result<u32, String> {
    match t.parse::<u64>() {
        Ok(n) if n <= max => Ok(n as u32),
        Ok(n) => Err(format!("{n} is out of range 0..={max}")),
        Err(_) => Err(format!("expected an integer, got `{t}`")),
    }
}

fn limit(t: &str) -> Result<i64, String> {
    match t.parse::<i64>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err(format!(
            "expected an integer >= -1 (-1 = no limit), got `{t}`"
        )),
    }
}

/// `true`/`false`, or VerneMQ's `on`/`off`.
pub fn boolean(t: &str) -> Result<bool, String> {
    match t {
        "true" | "on" => Ok(true),
        "false" | "off" => Ok(false),
        _ => Err(format!("expected true/false or on/off, got `{t}`")),
    }
}

/// Seconds: an integer, a duration with VerneMQ's units or `never`.
fn duration(t: &str) -> Result<u32, String> {
    if let Ok(n) = t.parse::<u64>() {
        return u32::try_from(n).map_err(|_| format!("{n} seconds is out of range"));
    }
    parse_duration_s(t).ok_or(format!(
        "`{t}` is not a duration (seconds, or like 30s, 5min, 2h, 1d, 1w, 1m (month), 1y or never)"
    ))
}

/// Seconds from a duration in VerneMQ's units (`h`, `d`, `w`, `m` = month,
/// `y`), plus `s` and `min`, or "never" ([`NEVER`]).
pub fn parse_duration_s(s: &str) -> Option<u32> {
    if s == "never" {
        return Some(NEVER);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "min" => 60,
        // VerneMQ's units: h d w m y, where `m` is a month (30 days).
        "m" => 2_592_000,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        "y" => 31_536_000,
        _ => return None,
    };
    u32::try_from(n.checked_mul(mult)?)
        .ok()
        .filter(|v| *v != NEVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads_back_what_it_shows() {
        let c = ClusterConfig::default();
        for k in CLUSTER_KEYS {
            let text = c.get(k).expect(k);
            let back = c.with(&[(k.to_string(), text.clone())]).expect(k);
            assert_eq!(back, c, "{k} = {text}");
        }
    }

    #[test]
    fn the_defaults_are_the_configure_defaults() {
        assert_eq!(ClusterConfig::default().base(), ClusterSettings::default());
        assert_eq!(ClusterConfig::default().persistent_client_expiration, NEVER);
    }

    #[test]
    fn a_bad_pair_changes_nothing_and_is_named() {
        let c = ClusterConfig::default();
        let e = c
            .with(&[
                ("max_offline_messages".into(), "2".into()),
                ("max_inflight_messages".into(), "many".into()),
            ])
            .unwrap_err();
        assert!(e.to_string().contains("`max_inflight_messages`"), "{e}");
        assert_eq!(
            c.with(&[("nope".into(), "1".into())]).unwrap_err(),
            SettingError::Unknown("nope".into())
        );
        assert!(c
            .with(&[("max_offline_messages".into(), "-2".into())])
            .is_err());
    }

    #[test]
    fn durations_and_booleans_take_vernemq_forms() {
        let c = ClusterConfig::default()
            .with(&[
                ("persistent_client_expiration".into(), "2h".into()),
                ("allow_publish_during_netsplit".into(), "on".into()),
                ("max_last_will_delay".into(), "30".into()),
            ])
            .unwrap();
        assert_eq!(c.persistent_client_expiration, 7200);
        assert!(c.allow_publish_during_netsplit);
        assert_eq!(c.max_last_will_delay, 30);
        assert_eq!(parse_duration_s("1m"), Some(2_592_000));
        assert_eq!(parse_duration_s("5x"), None);
    }

    #[test]
    fn utc_formats_the_epoch_and_a_leap_day() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000 + 3_661_000), "2000-02-29T01:01:01Z");
    }
}
