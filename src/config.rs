//! Broker settings: defaults, the TOML config file (VerneMQ's key names), and
//! validation. A bad key or value is an error that names the key and its line,
//! and the node does not start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use raftmq_raft::{ClusterSettings, NEVER};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("config file {path}, line {line}: `{key}`: {message}")]
    Key {
        path: String,
        line: usize,
        key: String,
        message: String,
    },
}

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub mqtt_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Inter-node (Raft transport) address.
    pub cluster_addr: SocketAddr,
    /// The cluster secret every inter-node connection proves.
    pub distributed_cookie: String,
    /// Join the cluster of this member (its inter-node address) when the data
    /// directory is new.
    pub join: Option<String>,
    pub allow_anonymous: bool,
    pub users: BTreeMap<String, String>,
    pub max_client_id_size: usize,
    /// Largest payload accepted (0 = any).
    pub max_message_size: usize,
    /// Largest packet accepted from a client.
    pub max_packet_size: usize,
    pub max_inflight_messages: u32,
    pub max_online_messages: i64,
    pub max_offline_messages: i64,
    /// Per-session queue byte quota (-1 = unlimited).
    pub max_queue_bytes: i64,
    pub retry_interval_s: u64,
    /// Session expiry for MQTT 3 persistent sessions (seconds, NEVER = never).
    pub persistent_client_expiration_s: u32,
    pub topic_alias_max_broker: u16,
    pub topic_alias_max_client: u16,
    pub receive_max_broker: u16,
    pub server_keep_alive: u16,
    pub suppress_lwt_on_session_takeover: bool,
    pub max_last_will_delay_s: u32,
    pub systree_enabled: bool,
    pub systree_interval_ms: u64,
    pub allow_register_during_netsplit: bool,
    pub allow_publish_during_netsplit: bool,
    pub allow_subscribe_during_netsplit: bool,
    pub allow_unsubscribe_during_netsplit: bool,
    /// Build a snapshot after this many log entries.
    pub snapshot_interval_entries: u64,
    /// How long a client operation waits for its commit before it is refused.
    pub commit_timeout_ms: u64,
}

/// The cookie a node uses when none is configured; fine on one machine, a
/// warning is logged when a node runs with it.
pub const DEFAULT_COOKIE: &str = "raftmq-default-cookie";

impl Default for Settings {
    fn default() -> Self {
        // The cluster-wide values have one default, the log's own.
        let cluster = ClusterSettings::default();
        Settings {
            node_id: 1,
            data_dir: PathBuf::from("./raftmq-data"),
            mqtt_addr: "127.0.0.1:1883".parse().expect("literal address"),
            http_addr: "127.0.0.1:8888".parse().expect("literal address"),
            cluster_addr: "127.0.0.1:44053".parse().expect("literal address"),
            distributed_cookie: DEFAULT_COOKIE.into(),
            join: None,
            allow_anonymous: true,
            users: BTreeMap::new(),
            max_client_id_size: 100,
            max_message_size: 0,
            max_packet_size: 268_435_460,
            max_inflight_messages: cluster.max_inflight_messages,
            max_online_messages: cluster.max_online_messages,
            max_offline_messages: cluster.max_offline_messages,
            max_queue_bytes: cluster.max_queue_bytes,
            retry_interval_s: 20,
            persistent_client_expiration_s: NEVER,
            topic_alias_max_broker: 16,
            topic_alias_max_client: 16,
            receive_max_broker: 100,
            server_keep_alive: 0,
            suppress_lwt_on_session_takeover: cluster.suppress_lwt_on_session_takeover,
            max_last_will_delay_s: cluster.max_last_will_delay,
            systree_enabled: true,
            systree_interval_ms: 20_000,
            allow_register_during_netsplit: false,
            allow_publish_during_netsplit: false,
            allow_subscribe_during_netsplit: false,
            allow_unsubscribe_during_netsplit: false,
            snapshot_interval_entries: 20_000,
            commit_timeout_ms: 10_000,
        }
    }
}

impl Settings {
    /// The part of the settings that apply must agree on, cluster-wide.
    pub fn cluster(&self) -> ClusterSettings {
        ClusterSettings {
            max_inflight_messages: self.max_inflight_messages,
            max_online_messages: self.max_online_messages,
            max_offline_messages: self.max_offline_messages,
            suppress_lwt_on_session_takeover: self.suppress_lwt_on_session_takeover,
            max_last_will_delay: self.max_last_will_delay_s,
            max_queue_bytes: self.max_queue_bytes,
        }
    }

    /// Loads a TOML config file over the defaults.
    pub fn load_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        self.apply_toml(&text, &p)
    }

    /// Applies TOML text over the current settings.
    pub fn apply_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.into(),
                    message: e.to_string(),
                })?;
        for (key, value) in table {
            let line = line_of(text, &key);
            let err = |message: String| ConfigError::Key {
                path: path.into(),
                line,
                key: key.clone(),
                message,
            };
            self.set(&key, &value).map_err(err)?;
        }
        Ok(())
    }

    /// Sets one key. The error says what was expected.
    pub fn set(&mut self, key: &str, v: &toml::Value) -> Result<(), String> {
        match key {
            "node_id" => self.node_id = uint(v, 1, u64::MAX)?,
            "data_dir" => self.data_dir = PathBuf::from(string(v)?),
            "mqtt" | "listener.tcp.default" => self.mqtt_addr = addr(v)?,
            "http" | "listener.http.default" => self.http_addr = addr(v)?,
            "cluster" | "listener.vmq.clustering" => self.cluster_addr = addr(v)?,
            "distributed_cookie" => {
                let c = string(v)?;
                if c.is_empty() {
                    return Err("the cookie must not be empty".into());
                }
                self.distributed_cookie = c;
            }
            "join" => self.join = Some(string(v)?),
            "allow_anonymous" => self.allow_anonymous = boolean(v)?,
            "users" => {
                let t = v
                    .as_table()
                    .ok_or("expected a table of user = \"password\"")?;
                for (u, p) in t {
                    let p = p
                        .as_str()
                        .ok_or(format!("password of user `{u}` must be a string"))?;
                    self.users.insert(u.clone(), p.to_string());
                }
            }
            "max_client_id_size" => self.max_client_id_size = uint(v, 1, 65535)? as usize,
            "max_message_size" => self.max_message_size = uint(v, 0, 268_435_455)? as usize,
            "max_packet_size" => self.max_packet_size = uint(v, 64, 268_435_460)? as usize,
            "max_inflight_messages" => self.max_inflight_messages = uint(v, 0, 65535)? as u32,
            "max_online_messages" => self.max_online_messages = int_or_unlimited(v)?,
            "max_offline_messages" => self.max_offline_messages = int_or_unlimited(v)?,
            "max_queue_bytes" => self.max_queue_bytes = int_or_unlimited(v)?,
            "retry_interval" => self.retry_interval_s = uint(v, 1, 86_400)?,
            "persistent_client_expiration" => self.persistent_client_expiration_s = duration_s(v)?,
            "topic_alias_max_broker" => self.topic_alias_max_broker = uint(v, 0, 65535)? as u16,
            "topic_alias_max_client" => self.topic_alias_max_client = uint(v, 0, 65535)? as u16,
            "receive_max_broker" => self.receive_max_broker = uint(v, 1, 65535)? as u16,
            "server_keep_alive" => self.server_keep_alive = uint(v, 0, 65535)? as u16,
            "suppress_lwt_on_session_takeover" => {
                self.suppress_lwt_on_session_takeover = boolean(v)?
            }
            "max_last_will_delay" => self.max_last_will_delay_s = duration_s(v)?,
            "systree_enabled" => self.systree_enabled = boolean(v)?,
            "systree_interval" => self.systree_interval_ms = uint(v, 100, 86_400_000)?,
            "allow_register_during_netsplit" => self.allow_register_during_netsplit = boolean(v)?,
            "allow_publish_during_netsplit" => self.allow_publish_during_netsplit = boolean(v)?,
            "allow_subscribe_during_netsplit" => self.allow_subscribe_during_netsplit = boolean(v)?,
            "allow_unsubscribe_during_netsplit" => {
                self.allow_unsubscribe_during_netsplit = boolean(v)?
            }
            "snapshot_interval_entries" => self.snapshot_interval_entries = uint(v, 100, u64::MAX)?,
            "commit_timeout" => self.commit_timeout_ms = uint(v, 100, 600_000)?,
            _ => return Err("unknown setting".into()),
        }
        Ok(())
    }
}

fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
                || l.trim_start_matches('[').starts_with(key) && l.starts_with('[')
        })
        .map_or(0, |i| i + 1)
}

fn boolean(v: &toml::Value) -> Result<bool, String> {
    match v {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::String(s) if s == "on" => Ok(true),
        toml::Value::String(s) if s == "off" => Ok(false),
        other => Err(format!(
            "expected true/false or \"on\"/\"off\", got {other}"
        )),
    }
}

fn uint(v: &toml::Value, min: u64, max: u64) -> Result<u64, String> {
    match v.as_integer() {
        Some(i) if i >= 0 && (i as u64) >= min && (i as u64) <= max => Ok(i as u64),
        Some(i) => Err(format!("{i} is out of range {min}..={max}")),
        None => Err(format!("expected an integer, got {v}")),
    }
}

fn int_or_unlimited(v: &toml::Value) -> Result<i64, String> {
    match v.as_integer() {
        Some(i) if i >= -1 => Ok(i),
        _ => Err(format!(
            "expected an integer >= -1 (-1 = no limit), got {v}"
        )),
    }
}

fn string(v: &toml::Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or(format!("expected a string, got {v}"))
}

fn addr(v: &toml::Value) -> Result<SocketAddr, String> {
    let s = string(v)?;
    s.parse()
        .map_err(|e| format!("`{s}` is not an address (ip:port): {e}"))
}

/// Seconds from an integer or a duration string in VerneMQ's units (`h`,
/// `d`, `w`, `m` = month, `y`), plus `s` and `min`, or "never".
pub fn duration_s(v: &toml::Value) -> Result<u32, String> {
    if let Some(i) = v.as_integer() {
        return u32::try_from(i).map_err(|_| format!("{i} seconds is out of range"));
    }
    let s = string(v)?;
    parse_duration_s(&s).ok_or(format!(
        "`{s}` is not a duration (like 30s, 5min, 2h, 1d, 1w, 1m (month), 1y or never)"
    ))
}

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
    fn unknown_key_is_named_with_its_line() {
        let mut s = Settings::default();
        let e = s
            .apply_toml(
                "allow_anonymous = true\nmax_inflite_messages = 3\n",
                "x.toml",
            )
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("max_inflite_messages"),
            "{msg}"
        );
    }

    #[test]
    fn bad_value_is_named() {
        let mut s = Settings::default();
        let e = s
            .apply_toml("max_inflight_messages = \"many\"\n", "x.toml")
            .unwrap_err();
        assert!(e.to_string().contains("max_inflight_messages"), "{e}");
    }

    #[test]
    fn durations_parse_in_vernemq_units() {
        assert_eq!(parse_duration_s("1w"), Some(604_800));
        assert_eq!(parse_duration_s("1m"), Some(2_592_000));
        assert_eq!(parse_duration_s("5min"), Some(300));
        assert_eq!(parse_duration_s("never"), Some(NEVER));
        assert_eq!(parse_duration_s("5x"), None);
        let mut s = Settings::default();
        s.apply_toml(
            "persistent_client_expiration = \"2h\"\nmax_online_messages = -1",
            "x",
        )
        .unwrap();
        assert_eq!(s.persistent_client_expiration_s, 7200);
        assert_eq!(s.max_online_messages, -1);
    }
}
