//! Broker settings: defaults, the TOML config file (VerneMQ's key names, as
//! TOML tables or dotted keys), and validation. A bad key or value is an
//! error that names the key and its line, and the node does not start.
//!
//! - [`keys`]: every key's scope (cluster-wide or per node), whether `set`
//!   changes it live, and its value as `show` prints it.
//! - [`live`]: the per-node keys `set` changes while the node runs.
//! - `values`: the value parsers (sizes, addresses, integers).
//! - `file`: TOML to keys (dotted names, real line numbers).
//! - [`listeners`]: the MQTT listener keys (`listener.ssl.NAME…`).
//!
//! The cluster-wide keys ([`raftmq_raft::settings::CLUSTER_KEYS`]) are read
//! by the raft crate's parser, the same one apply uses; a config file's
//! values for them are kept in [`Settings::cluster`] and supply the cluster
//! only when this node bootstraps it (see [`crate::server`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use raftmq_raft::settings::is_cluster_key;
use raftmq_raft::ClusterConfig;
use raftmq_storage::StoreOptions;

pub mod auth;
mod file;
pub mod keys;
pub mod listeners;
pub mod live;
mod values;

pub use raftmq_raft::settings::parse_duration_s;
pub use values::parse_bytes;
use values::{addr, boolean, bytes, string, uint, MIB};

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
    /// How long `join` tries before the node exits (seconds).
    pub join_timeout_s: u64,
    pub allow_anonymous: bool,
    pub users: BTreeMap<String, String>,
    pub max_client_id_size: usize,
    /// Largest payload accepted (0 = any).
    pub max_message_size: usize,
    /// Largest packet accepted from a client.
    pub max_packet_size: usize,
    pub retry_interval_s: u64,
    pub topic_alias_max_broker: u16,
    pub topic_alias_max_client: u16,
    pub receive_max_broker: u16,
    pub server_keep_alive: u16,
    pub systree_enabled: bool,
    pub systree_interval_ms: u64,
    /// Build a snapshot after this many log entries.
    pub snapshot_interval_entries: u64,
    /// A snapshot is sent to a joining or lagging node in chunks of this
    /// many bytes.
    pub snapshot_chunk_bytes: u64,
    /// How long a client operation waits for its commit before it is
    /// answered (refused if it never left this node, outcome unknown if it
    /// did).
    pub commit_timeout_ms: u64,
    /// How long a client operation waits for quorum to return while this
    /// node is in netsplit before it is refused (see docs/consistency.md).
    pub netsplit_wait_ms: u64,
    /// The MQTT listener's overrides of the `allow_*_during_netsplit`
    /// switches (`listener.tcp.default.allow_publish_during_netsplit` …).
    pub listener_netsplit: crate::connection::NetsplitOverrides,
    /// Free space of the data directory's filesystem below which new QoS
    /// 1/2 publishes are refused (RabbitMQ's `disk_free_limit`).
    pub disk_free_limit: DiskFreeLimit,
    /// RocksDB's shared block cache (bytes).
    pub rocksdb_block_cache_bytes: u64,
    /// RocksDB's memtables, all column families together (bytes).
    pub rocksdb_write_buffer_bytes: u64,
    /// The cluster-wide keys as the config file gives them (defaults
    /// otherwise). They supply the cluster only when this node bootstraps
    /// it; afterwards the replicated values (the state summary's) are the
    /// ones in effect, and a difference is logged at start.
    pub cluster: ClusterConfig,
    /// The MQTT listeners besides `listener.tcp.default`'s address (which
    /// is `mqtt_addr`), by `KIND.NAME`; see [`Settings::mqtt_listeners`].
    pub listeners: BTreeMap<String, listeners::ListenerConfig>,
    /// How long a new connection has to complete its transport handshakes
    /// (PROXY header, TLS, WebSocket) and send its CONNECT (ms).
    pub connect_timeout_ms: u64,
    /// Keys the config file set (by their canonical name), with the file's
    /// path: where `show` says a value came from.
    pub from_file: BTreeMap<String, String>,
    /// Keys a command-line flag set (over the file).
    pub from_flags: BTreeSet<String>,
    /// Access control: password file, ACL behaviour, `$SYS` readers, admin
    /// API authentication, message rate.
    pub auth: auth::AuthSettings,
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
        let store = StoreOptions::default();
        Settings {
            node_id: 1,
            data_dir: PathBuf::from("./raftmq-data"),
            mqtt_addr: "127.0.0.1:1883".parse().expect("literal address"),
            http_addr: "127.0.0.1:8888".parse().expect("literal address"),
            cluster_addr: "127.0.0.1:44053".parse().expect("literal address"),
            distributed_cookie: DEFAULT_COOKIE.into(),
            join: None,
            join_timeout_s: raftmq_raft::membership::DEFAULT_JOIN_TIMEOUT.as_secs(),
            allow_anonymous: true,
            users: BTreeMap::new(),
            max_client_id_size: 100,
            max_message_size: 0,
            max_packet_size: 268_435_460,
            retry_interval_s: 20,
            topic_alias_max_broker: 16,
            topic_alias_max_client: 16,
            receive_max_broker: 100,
            server_keep_alive: 0,
            systree_enabled: true,
            systree_interval_ms: 20_000,
            snapshot_interval_entries: 20_000,
            snapshot_chunk_bytes: raftmq_raft::node::DEFAULT_SNAPSHOT_CHUNK,
            commit_timeout_ms: 10_000,
            netsplit_wait_ms: 2_000,
            listener_netsplit: Default::default(),
            disk_free_limit: DiskFreeLimit::Default,
            rocksdb_block_cache_bytes: store.block_cache_bytes as u64,
            rocksdb_write_buffer_bytes: store.write_buffer_bytes as u64,
            // The cluster-wide values have one default, the log's own.
            cluster: ClusterConfig::default(),
            listeners: BTreeMap::new(),
            connect_timeout_ms: 10_000,
            from_file: BTreeMap::new(),
            from_flags: BTreeSet::new(),
            auth: auth::AuthSettings::default(),
        }
    }
}

impl Settings {
    /// The cluster-wide keys the config file set, with its values as text
    /// (what this node proposes when it bootstraps a cluster).
    pub fn cluster_from_file(&self) -> Vec<(String, String)> {
        self.from_file
            .keys()
            .filter(|k| is_cluster_key(k))
            .filter_map(|k| Some((k.clone(), self.cluster.get(k)?)))
            .collect()
    }

    /// Records that a command-line flag set `key` (over the file).
    pub fn set_by_flag(&mut self, key: &str) {
        let key = keys::canonical(key);
        self.from_file.remove(key);
        self.from_flags.insert(key.to_string());
    }

    /// Every MQTT listener, checked: `tcp.default` on `mqtt_addr` first,
    /// then the others by `KIND.NAME`. The error names the listener.
    pub fn mqtt_listeners(&self) -> Result<Vec<listeners::ListenerConfig>, String> {
        use listeners::{ListenerConfig, ListenerKind};
        let mut default = self
            .listeners
            .get("tcp.default")
            .cloned()
            .unwrap_or_else(|| ListenerConfig::new(ListenerKind::Tcp, "default"));
        default.addr = Some(self.mqtt_addr);
        let mut all = vec![default];
        all.extend(
            self.listeners
                .iter()
                .filter(|(id, _)| *id != "tcp.default")
                .map(|(_, l)| l.clone()),
        );
        for l in &all {
            l.check().map_err(|e| format!("listener.{}: {e}", l.id()))?;
        }
        Ok(all)
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

    /// Applies TOML text over the current settings. Nested tables are
    /// dotted keys (`[listener.vmq]` `clustering = …` is
    /// `listener.vmq.clustering`), except a key whose value is a table
    /// (`users`).
    pub fn apply_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.into(),
                    message: e.to_string(),
                })?;
        for (key, value) in file::flatten(table) {
            let err = |message: String| ConfigError::Key {
                path: path.into(),
                line: file::line_of(text, &key),
                key: key.clone(),
                message,
            };
            self.set(&key, &value).map_err(err)?;
            self.from_file
                .insert(keys::canonical(&key).to_string(), path.to_string());
        }
        Ok(())
    }

    /// Sets one key. The error says what was expected.
    pub fn set(&mut self, key: &str, v: &toml::Value) -> Result<(), String> {
        if is_cluster_key(key) {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "expected a string, integer or boolean, got {other}"
                    ))
                }
            };
            return self.cluster.set(key, &text).map_err(|e| match e {
                raftmq_raft::SettingError::BadValue { message, .. } => message,
                other => other.to_string(),
            });
        }
        match key {
            "node_id" => self.node_id = uint(v, 1, u64::MAX)?,
            "data_dir" => self.data_dir = PathBuf::from(string(v)?),
            "mqtt" | "listener.tcp.default" | "listener.tcp.default.address" => {
                self.mqtt_addr = addr(v)?
            }
            k if k
                .strip_prefix("listener.tcp.default.")
                .is_some_and(|n| crate::connection::NETSPLIT_OVERRIDE_KEYS.contains(&n)) =>
            {
                let name = &k["listener.tcp.default.".len()..];
                if !self.listener_netsplit.set(name, boolean(v)?) {
                    return Err("unknown setting".into());
                }
            }
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
            "join_timeout" => self.join_timeout_s = uint(v, 1, 86_400)?,
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
            "retry_interval" => self.retry_interval_s = uint(v, 1, 86_400)?,
            "topic_alias_max_broker" => self.topic_alias_max_broker = uint(v, 0, 65535)? as u16,
            "topic_alias_max_client" => self.topic_alias_max_client = uint(v, 0, 65535)? as u16,
            "receive_max_broker" => self.receive_max_broker = uint(v, 1, 65535)? as u16,
            "server_keep_alive" => self.server_keep_alive = uint(v, 0, 65535)? as u16,
            "systree_enabled" => self.systree_enabled = boolean(v)?,
            "systree_interval" => self.systree_interval_ms = uint(v, 100, 86_400_000)?,
            "snapshot_interval_entries" => self.snapshot_interval_entries = uint(v, 100, u64::MAX)?,
            "snapshot_chunk_bytes" => {
                use raftmq_raft::node::{MAX_SNAPSHOT_CHUNK, MIN_SNAPSHOT_CHUNK};
                self.snapshot_chunk_bytes = uint(v, MIN_SNAPSHOT_CHUNK, MAX_SNAPSHOT_CHUNK)?
            }
            "commit_timeout" => self.commit_timeout_ms = uint(v, 100, 600_000)?,
            "netsplit_wait" => self.netsplit_wait_ms = uint(v, 0, 600_000)?,
            "disk_free_limit" => self.disk_free_limit = DiskFreeLimit::Bytes(bytes(v, 0)?),
            "rocksdb_block_cache_size" => self.rocksdb_block_cache_bytes = bytes(v, MIB)?,
            "rocksdb_write_buffer_size" => self.rocksdb_write_buffer_bytes = bytes(v, 4 * MIB)?,
            k if auth::AUTH_KEYS.contains(&k) => self.auth.set(k, v)?,
            "connect_timeout" => self.connect_timeout_ms = uint(v, 100, 3_600_000)?,
            k if listeners::is_listener_key(k) => listeners::set(&mut self.listeners, k, v)?,
            _ => return Err("unknown setting".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
