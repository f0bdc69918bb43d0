//! Broker settings: defaults, the TOML config file (VerneMQ's key names), and
//! validation. A bad key or value is an error that names the key and its line,
//! and the node does not start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use raftmq_raft::{ClusterSettings, NEVER};
use raftmq_storage::StoreOptions;

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
    /// A snapshot is sent to a joining or lagging node in chunks of this
    /// many bytes.
    pub snapshot_chunk_bytes: u64,
    /// How long a client operation waits for its commit before it is refused.
    pub commit_timeout_ms: u64,
    /// Free space of the data directory's filesystem below which new QoS
    /// 1/2 publishes are refused (RabbitMQ's `disk_free_limit`).
    pub disk_free_limit: DiskFreeLimit,
    /// RocksDB's shared block cache (bytes).
    pub rocksdb_block_cache_bytes: u64,
    /// RocksDB's memtables, all column families together (bytes).
    pub rocksdb_write_buffer_bytes: u64,
}

/// `disk_free_limit`: below this much free space on the data directory's
/// filesystem the node refuses new QoS 1/2 publishes (see
/// [`crate::resources`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFreeLimit {
    /// [`DEFAULT_DISK_FREE_LIMIT`] or [`DEFAULT_DISK_FREE_SHARE`] of the
    /// filesystem's size, whichever is smaller (decided at start).
    Default,
    /// This many bytes; 0 never raises the alarm.
    Bytes(u64),
}

/// The default `disk_free_limit` on a large filesystem: room for a flush of
/// the memtable budget (64 MiB) and the compactions that follow, with
/// margin. RabbitMQ's 50 MB is known to be too little for a busy node.
pub const DEFAULT_DISK_FREE_LIMIT: u64 = 256 * 1024 * 1024;
/// The default `disk_free_limit` on a small filesystem, as a share of its
/// size (1/20 = 5%), so a small test or edge machine is not always in alarm.
pub const DEFAULT_DISK_FREE_SHARE: u64 = 20;

impl DiskFreeLimit {
    /// The limit in bytes on a filesystem of `fs_bytes` (None: its size is
    /// unknown).
    pub fn bytes(self, fs_bytes: Option<u64>) -> u64 {
        match self {
            DiskFreeLimit::Bytes(b) => b,
            DiskFreeLimit::Default => fs_bytes.map_or(DEFAULT_DISK_FREE_LIMIT, |fs| {
                (fs / DEFAULT_DISK_FREE_SHARE).min(DEFAULT_DISK_FREE_LIMIT)
            }),
        }
    }
}

/// The cookie a node uses when none is configured; fine on one machine, a
/// warning is logged when a node runs with it.
pub const DEFAULT_COOKIE: &str = "raftmq-default-cookie";

impl Default for Settings {
    fn default() -> Self {
        // The cluster-wide values have one default, the log's own.
        let cluster = ClusterSettings::default();
        let store = StoreOptions::default();
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
            snapshot_chunk_bytes: raftmq_raft::node::DEFAULT_SNAPSHOT_CHUNK,
            commit_timeout_ms: 10_000,
            disk_free_limit: DiskFreeLimit::Default,
            rocksdb_block_cache_bytes: store.block_cache_bytes as u64,
            rocksdb_write_buffer_bytes: store.write_buffer_bytes as u64,
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

    /// RocksDB's memory budget.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            block_cache_bytes: usize::try_from(self.rocksdb_block_cache_bytes)
                .unwrap_or(usize::MAX),
            write_buffer_bytes: usize::try_from(self.rocksdb_write_buffer_bytes)
                .unwrap_or(usize::MAX),
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
            "snapshot_chunk_bytes" => {
                use raftmq_raft::node::{MAX_SNAPSHOT_CHUNK, MIN_SNAPSHOT_CHUNK};
                self.snapshot_chunk_bytes = uint(v, MIN_SNAPSHOT_CHUNK, MAX_SNAPSHOT_CHUNK)?
            }
            "commit_timeout" => self.commit_timeout_ms = uint(v, 100, 600_000)?,
            "disk_free_limit" => self.disk_free_limit = DiskFreeLimit::Bytes(bytes(v, 0)?),
            "rocksdb_block_cache_size" => self.rocksdb_block_cache_bytes = bytes(v, MIB)?,
            "rocksdb_write_buffer_size" => self.rocksdb_write_buffer_bytes = bytes(v, 4 * MIB)?,
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

const MIB: u64 = 1024 * 1024;

/// A size in bytes, at least `min`: an integer, or a string with RabbitMQ's
/// units (see [`parse_bytes`]).
fn bytes(v: &toml::Value, min: u64) -> Result<u64, String> {
    let n = match v {
        toml::Value::Integer(i) => {
            u64::try_from(*i).map_err(|_| format!("{i} is negative; expected a size in bytes"))?
        }
        toml::Value::String(s) => parse_bytes(s).ok_or(format!(
            "`{s}` is not a size (bytes, or a number with a unit: kB, MB, GB (powers of 1000) or k, kiB, M, MiB, G, GiB (powers of 1024))"
        ))?,
        other => return Err(format!("expected a size (\"500MB\", \"1GB\" or bytes), got {other}")),
    };
    if n < min {
        return Err(format!("{n} bytes is below the minimum of {min}"));
    }
    Ok(n)
}

/// Bytes from a number and an optional unit, as RabbitMQ reads its
/// memory and disk sizes: `kB`, `MB`, `GB`, `TB` are powers of 1000; `k`,
/// `kiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB` powers of 1024; none (or `B`)
/// is bytes. Space between number and unit is allowed.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "kB" | "KB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "k" | "K" | "kiB" | "KiB" => 1024,
        "M" | "MiB" => 1024_u64.pow(2),
        "G" | "GiB" => 1024_u64.pow(3),
        "T" | "TiB" => 1024_u64.pow(4),
        _ => return None,
    };
    n.checked_mul(mult)
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
    fn snapshot_chunk_bytes_is_bounded_by_the_transport_frame() {
        let mut s = Settings::default();
        s.apply_toml("snapshot_chunk_bytes = 65536\n", "x.toml")
            .unwrap();
        assert_eq!(s.snapshot_chunk_bytes, 65536);
        let e = s
            .apply_toml("snapshot_chunk_bytes = 1073741824\n", "x.toml")
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
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

    #[test]
    fn sizes_parse_in_rabbitmq_units() {
        assert_eq!(parse_bytes("1GB"), Some(1_000_000_000));
        assert_eq!(parse_bytes("500MB"), Some(500_000_000));
        assert_eq!(parse_bytes("50kB"), Some(50_000));
        assert_eq!(parse_bytes("512MiB"), Some(512 * 1024 * 1024));
        assert_eq!(parse_bytes("2G"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("1 GiB"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("0"), Some(0));
        for bad in [
            "",
            "GB",
            "1.5GB",
            "-1",
            "10 parsecs",
            "1gb",
            "99999999999TB",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn disk_free_limit_takes_bytes_or_a_size_string() {
        let mut s = Settings::default();
        s.apply_toml("disk_free_limit = \"1GB\"\n", "x").unwrap();
        assert_eq!(s.disk_free_limit, DiskFreeLimit::Bytes(1_000_000_000));
        s.apply_toml("disk_free_limit = 0\n", "x").unwrap();
        assert_eq!(s.disk_free_limit, DiskFreeLimit::Bytes(0));
        s.apply_toml("disk_free_limit = 52428800\n", "x").unwrap();
        assert_eq!(s.disk_free_limit, DiskFreeLimit::Bytes(50 * 1024 * 1024));
    }

    #[test]
    fn a_bad_disk_free_limit_names_the_key_and_its_line() {
        let mut s = Settings::default();
        for bad in ["\"lots\"", "-5", "true", "\"1.5GB\""] {
            let text = format!("allow_anonymous = true\ndisk_free_limit = {bad}\n");
            let e = s.apply_toml(&text, "x.toml").unwrap_err().to_string();
            assert!(e.contains("line 2") && e.contains("disk_free_limit"), "{e}");
        }
    }

    #[test]
    fn the_default_disk_free_limit_is_the_smaller_of_256_mib_and_5_percent() {
        let limit = DiskFreeLimit::Default;
        assert_eq!(limit.bytes(Some(100 * 1024 * MIB)), 256 * MIB);
        assert_eq!(limit.bytes(Some(1000 * MIB)), 50 * MIB);
        assert_eq!(limit.bytes(None), 256 * MIB);
        assert_eq!(DiskFreeLimit::Bytes(7).bytes(Some(1000 * MIB)), 7);
    }

    #[test]
    fn rocksdb_budgets_reach_the_store_options() {
        let mut s = Settings::default();
        assert_eq!(s.store_options(), StoreOptions::default());
        s.apply_toml(
            "rocksdb_block_cache_size = \"16MiB\"\nrocksdb_write_buffer_size = \"8MiB\"\n",
            "x",
        )
        .unwrap();
        let o = s.store_options();
        assert_eq!(o.block_cache_bytes, 16 * 1024 * 1024);
        assert_eq!(o.write_buffer_bytes, 8 * 1024 * 1024);
        let e = s
            .apply_toml("rocksdb_write_buffer_size = \"1MiB\"\n", "x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rocksdb_write_buffer_size") && e.contains("minimum"),
            "{e}"
        );
    }
}
