//! The per-node keys `raftmq set` changes while the node runs
//! ([`super::keys::NODE_LIVE_KEYS`]), held where connections read them: at
//! CONNECT (`max_client_id_size`) and when a connection starts
//! (`max_message_size`, `retry_interval`), so a change applies to the
//! connections that start after it; `$SYS` reads `systree_enabled` and
//! `systree_interval` before each publication. A change is this node's only and lasts
//! until it restarts (the config file is not rewritten).

use std::collections::BTreeMap;

use parking_lot::RwLock;

use super::Settings;

/// The values in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveValues {
    pub max_client_id_size: usize,
    pub max_message_size: usize,
    pub retry_interval_s: u64,
    pub systree_enabled: bool,
    pub systree_interval_ms: u64,
}

impl LiveValues {
    /// The values a node starts with.
    pub fn of(s: &Settings) -> LiveValues {
        LiveValues {
            max_client_id_size: s.max_client_id_size,
            max_message_size: s.max_message_size,
            retry_interval_s: s.retry_interval_s,
            systree_enabled: s.systree_enabled,
            systree_interval_ms: s.systree_interval_ms,
        }
    }
}

/// The live values and, per key changed by `set`, when (ms).
pub struct Live {
    values: RwLock<(LiveValues, BTreeMap<String, u64>)>,
}

impl Live {
    pub fn new(s: &Settings) -> Live {
        Live {
            values: RwLock::new((LiveValues::of(s), BTreeMap::new())),
        }
    }

    pub fn get(&self) -> LiveValues {
        self.values.read().0.clone()
    }

    /// When `set` last changed `key` (ms), if it did.
    pub fn set_at(&self, key: &str) -> Option<u64> {
        self.values.read().1.get(key).copied()
    }

    /// Sets every pair, or none: the error names the first bad key. Values
    /// are read as the config file reads them.
    pub fn set(&self, changes: &[(String, String)], now_ms: u64) -> Result<(), String> {
        let mut scratch = Settings::default();
        let mut next = self.get();
        for (k, text) in changes {
            let value = value_of_text(text);
            scratch.set(k, &value).map_err(|m| format!("`{k}`: {m}"))?;
            match k.as_str() {
                "max_client_id_size" => next.max_client_id_size = scratch.max_client_id_size,
                "max_message_size" => next.max_message_size = scratch.max_message_size,
                "retry_interval" => next.retry_interval_s = scratch.retry_interval_s,
                "systree_enabled" => next.systree_enabled = scratch.systree_enabled,
                "systree_interval" => next.systree_interval_ms = scratch.systree_interval_ms,
                _ => return Err(format!("`{k}` is not a per-node key `set` changes live")),
            }
        }
        let mut held = self.values.write();
        held.0 = next;
        for (k, _) in changes {
            held.1.insert(k.clone(), now_ms);
        }
        Ok(())
    }
}

/// A value given on the command line as the TOML value it would be in the
/// config file: `5`, `true`, `"2h"`; a bare word that is not TOML (`2h`,
/// `1GB`) is a string.
pub fn value_of_text(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_set_changes_all_pairs_or_none() {
        let live = Live::new(&Settings::default());
        let before = live.get();
        let e = live
            .set(
                &[
                    ("max_message_size".into(), "10".into()),
                    ("retry_interval".into(), "0".into()),
                ],
                5,
            )
            .unwrap_err();
        assert!(e.contains("`retry_interval`"), "{e}");
        assert_eq!(live.get(), before);
        live.set(&[("max_message_size".into(), "10".into())], 5)
            .unwrap();
        assert_eq!(live.get().max_message_size, 10);
        assert_eq!(live.set_at("max_message_size"), Some(5));
    }

    #[test]
    fn command_line_values_read_as_toml_or_as_a_bare_string() {
        assert_eq!(value_of_text("5"), toml::Value::Integer(5));
        assert_eq!(value_of_text("on"), toml::Value::String("on".into()));
        assert_eq!(value_of_text("1GB"), toml::Value::String("1GB".into()));
    }
}
