//! What a connection does with an operation while its node is in netsplit:
//! the operation's `allow_*_during_netsplit` switch, from the cluster-wide
//! setting, the listener's override, and, on a listener that allows it, an
//! MQTT 5 user property on the request itself. `off`: the operation waits
//! `netsplit_wait` for quorum and is then refused, finally. `on`: it is
//! accepted locally (see docs/consistency.md for each operation's promise).

use raftmq_raft::ClusterConfig;

/// The operations a netsplit switch governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Register,
    Publish,
    Subscribe,
    Unsubscribe,
}

/// The MQTT 5 user property with which a request chooses for itself (`on`
/// or `off`), on a listener whose `allow_netsplit_override` is on.
pub const USER_PROPERTY: &str = "allow_during_netsplit";

/// A listener's overrides of the cluster-wide switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub register: Option<bool>,
    pub publish: Option<bool>,
    pub subscribe: Option<bool>,
    pub unsubscribe: Option<bool>,
    /// Requests may choose with [`USER_PROPERTY`].
    pub per_request: bool,
}

/// The names of a listener's override settings.
pub const OVERRIDE_KEYS: [&str; 5] = [
    "allow_register_during_netsplit",
    "allow_publish_during_netsplit",
    "allow_subscribe_during_netsplit",
    "allow_unsubscribe_during_netsplit",
    "allow_netsplit_override",
];

impl Overrides {
    /// One override's value as `show` prints it (`cluster`: not
    /// overridden).
    pub fn value(&self, name: &str) -> Option<String> {
        let v = match name {
            "allow_register_during_netsplit" => self.register,
            "allow_publish_during_netsplit" => self.publish,
            "allow_subscribe_during_netsplit" => self.subscribe,
            "allow_unsubscribe_during_netsplit" => self.unsubscribe,
            "allow_netsplit_override" => Some(self.per_request),
            _ => return None,
        };
        Some(v.map_or("cluster".to_string(), |b| {
            if b { "on" } else { "off" }.to_string()
        }))
    }

    fn get(&self, op: Op) -> Option<bool> {
        match op {
            Op::Register => self.register,
            Op::Publish => self.publish,
            Op::Subscribe => self.subscribe,
            Op::Unsubscribe => self.unsubscribe,
        }
    }

    /// Sets one switch from its setting name (`allow_publish_during_netsplit`
    /// …) or `allow_netsplit_override`; false if the name is not one.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        match name {
            "allow_register_during_netsplit" => self.register = Some(on),
            "allow_publish_during_netsplit" => self.publish = Some(on),
            "allow_subscribe_during_netsplit" => self.subscribe = Some(on),
            "allow_unsubscribe_during_netsplit" => self.unsubscribe = Some(on),
            "allow_netsplit_override" => self.per_request = on,
            _ => return false,
        }
        true
    }
}

fn cluster_switch(op: Op, c: &ClusterConfig) -> bool {
    match op {
        Op::Register => c.allow_register_during_netsplit,
        Op::Publish => c.allow_publish_during_netsplit,
        Op::Subscribe => c.allow_subscribe_during_netsplit,
        Op::Unsubscribe => c.allow_unsubscribe_during_netsplit,
    }
}

/// Is `op` accepted locally during a netsplit? The request's user property
/// (where the listener allows it), else the listener's override, else the
/// cluster's setting.
pub fn allowed(
    op: Op,
    cluster: &ClusterConfig,
    listener: &Overrides,
    user_properties: &[(String, String)],
) -> bool {
    if listener.per_request {
        let chosen = user_properties
            .iter()
            .rev()
            .find(|(k, _)| k == USER_PROPERTY)
            .and_then(|(_, v)| match v.as_str() {
                "on" | "true" => Some(true),
                "off" | "false" => Some(false),
                _ => None,
            });
        if let Some(on) = chosen {
            return on;
        }
    }
    listener
        .get(op)
        .unwrap_or_else(|| cluster_switch(op, cluster))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(v: &str) -> Vec<(String, String)> {
        vec![(USER_PROPERTY.to_string(), v.to_string())]
    }

    #[test]
    fn every_switch_is_off_by_default() {
        let c = ClusterConfig::default();
        for op in [Op::Register, Op::Publish, Op::Subscribe, Op::Unsubscribe] {
            assert!(!allowed(op, &c, &Overrides::default(), &[]));
        }
    }

    #[test]
    fn the_cluster_setting_decides_without_overrides() {
        let c = ClusterConfig {
            allow_publish_during_netsplit: true,
            ..ClusterConfig::default()
        };
        assert!(allowed(Op::Publish, &c, &Overrides::default(), &[]));
        assert!(!allowed(Op::Subscribe, &c, &Overrides::default(), &[]));
    }

    #[test]
    fn a_listener_override_beats_the_cluster_setting() {
        let c = ClusterConfig {
            allow_publish_during_netsplit: true,
            ..ClusterConfig::default()
        };
        let mut l = Overrides::default();
        assert!(l.set("allow_publish_during_netsplit", false));
        assert!(!allowed(Op::Publish, &c, &l, &[]));
    }

    #[test]
    fn a_user_property_counts_only_where_the_listener_allows_it() {
        let c = ClusterConfig::default();
        let mut l = Overrides::default();
        assert!(!allowed(Op::Subscribe, &c, &l, &prop("on")));
        l.set("allow_netsplit_override", true);
        assert!(allowed(Op::Subscribe, &c, &l, &prop("on")));
        l.set("allow_subscribe_during_netsplit", true);
        assert!(!allowed(Op::Subscribe, &c, &l, &prop("off")));
        assert!(allowed(Op::Subscribe, &c, &l, &prop("maybe")));
    }
}
