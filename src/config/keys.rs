//! Every settings key by its scope: cluster-wide (changed through the log,
//! see [`raftmq_raft::settings`]) or per node, and for a node key whether
//! `raftmq set` changes it live ([`super::live`]) or only a restart with a
//! new config file does. Also a node key's value as `show` prints it.

use raftmq_raft::settings::is_cluster_key;

use super::live::LiveValues;
use super::{DiskFreeLimit, Settings};

/// Per-node keys `set` changes on a running node (see [`super::live`]).
pub const NODE_LIVE_KEYS: [&str; 5] = [
    "max_client_id_size",
    "max_message_size",
    "retry_interval",
    "systree_enabled",
    "systree_interval",
];

/// Per-node keys read once at start: only a restart with a new config
/// file (or flag) changes them.
pub const NODE_RESTART_KEYS: [&str; 23] = [
    "node_id",
    "data_dir",
    "listener.tcp.default",
    "listener.http.default",
    "listener.vmq.clustering",
    "distributed_cookie",
    "join",
    "join_timeout",
    "allow_anonymous",
    "users",
    "max_packet_size",
    "topic_alias_max_broker",
    "topic_alias_max_client",
    "receive_max_broker",
    "server_keep_alive",
    "snapshot_interval_entries",
    "snapshot_chunk_bytes",
    "commit_timeout",
    "netsplit_wait",
    "disk_free_limit",
    "rocksdb_block_cache_size",
    "rocksdb_write_buffer_size",
    "connect_timeout",
];

/// What `set` may do with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Changed through the log: every node switches at the same index.
    Cluster,
    /// Changed on the target node(s) at once; lost at restart.
    NodeLive,
    /// Read at start only.
    NodeRestart,
    Unknown,
}

/// The key's canonical name (`mqtt`, `http` and `cluster` are short names
/// of the listener keys).
pub fn canonical(key: &str) -> &str {
    match key {
        "mqtt" => "listener.tcp.default",
        "http" => "listener.http.default",
        "cluster" => "listener.vmq.clustering",
        k => k,
    }
}

pub fn kind(key: &str) -> Kind {
    let key = canonical(key);
    if is_cluster_key(key) {
        Kind::Cluster
    } else if listener_override(key).is_some() {
        Kind::NodeRestart
    } else if NODE_LIVE_KEYS.contains(&key) {
        Kind::NodeLive
    } else if NODE_RESTART_KEYS.contains(&key)
        || super::auth::AUTH_KEYS.contains(&key)
        || super::listeners::is_listener_key(key)
    {
        Kind::NodeRestart
    } else {
        Kind::Unknown
    }
}

/// The override name of a `listener.tcp.default.allow_*_during_netsplit`
/// key.
fn listener_override(key: &str) -> Option<&str> {
    key.strip_prefix("listener.tcp.default.")
        .filter(|k| crate::connection::NETSPLIT_OVERRIDE_KEYS.contains(k))
}

/// A node key's value as `show` prints it (the cookie is not printed).
pub fn node_value(s: &Settings, live: &LiveValues, key: &str) -> Option<String> {
    if let Some(name) = listener_override(canonical(key)) {
        return s.listener_netsplit.value(name);
    }
    Some(match canonical(key) {
        "max_client_id_size" => live.max_client_id_size.to_string(),
        "max_message_size" => live.max_message_size.to_string(),
        "retry_interval" => live.retry_interval_s.to_string(),
        "systree_enabled" => live.systree_enabled.to_string(),
        "systree_interval" => live.systree_interval_ms.to_string(),
        "node_id" => s.node_id.to_string(),
        "data_dir" => s.data_dir.display().to_string(),
        "listener.tcp.default" => s.mqtt_addr.to_string(),
        "listener.http.default" => s.http_addr.to_string(),
        "listener.vmq.clustering" => s.cluster_addr.to_string(),
        "distributed_cookie" => "(not shown)".into(),
        "join" => s.join.clone().unwrap_or_else(|| "none".into()),
        "join_timeout" => format!("{}s", s.join_timeout_s),
        "allow_anonymous" => s.allow_anonymous.to_string(),
        "users" => format!("{} user(s)", s.users.len()),
        "max_packet_size" => s.max_packet_size.to_string(),
        "topic_alias_max_broker" => s.topic_alias_max_broker.to_string(),
        "topic_alias_max_client" => s.topic_alias_max_client.to_string(),
        "receive_max_broker" => s.receive_max_broker.to_string(),
        "server_keep_alive" => s.server_keep_alive.to_string(),
        "snapshot_interval_entries" => s.snapshot_interval_entries.to_string(),
        "snapshot_chunk_bytes" => s.snapshot_chunk_bytes.to_string(),
        "commit_timeout" => s.commit_timeout_ms.to_string(),
        "netsplit_wait" => s.netsplit_wait_ms.to_string(),
        "disk_free_limit" => match s.disk_free_limit {
            DiskFreeLimit::Default => "default".into(),
            DiskFreeLimit::Bytes(b) => b.to_string(),
        },
        "rocksdb_block_cache_size" => s.rocksdb_block_cache_bytes.to_string(),
        "rocksdb_write_buffer_size" => s.rocksdb_write_buffer_bytes.to_string(),
        "connect_timeout" => s.connect_timeout_ms.to_string(),
        k => return s.auth.value(k),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_key_is_accepted_by_the_config_file_and_shown() {
        let s = Settings::default();
        let live = LiveValues::of(&s);
        for k in NODE_LIVE_KEYS
            .iter()
            .chain(&NODE_RESTART_KEYS)
            .chain(&super::super::auth::AUTH_KEYS)
        {
            assert!(node_value(&s, &live, k).is_some(), "{k}");
            let mut scratch = Settings::default();
            if let Err(e) = scratch.set(k, &toml::Value::Boolean(true)) {
                assert_ne!(e, "unknown setting", "{k}");
            }
        }
    }
}
