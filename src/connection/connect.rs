//! Admission: a CONNECT and the node's settings decide, without any I/O,
//! either the registration to commit (client id, will, session expiry,
//! keepalive and the limits of the outbound window) or the refusal with its
//! reason code. Also the CONNACK properties an accepted client is told.
//! The credentials are checked after admission, by `access::login`
//! (argon2 is too slow for a pure step on the async runtime).

use raftmq_raft::command as cmd;
use raftmq_raft::trie::valid_topic;
use raftmq_raft::{Command, NodeId, Will};

use super::convert;
use crate::codec::{reason, ConnAckProperties, Connect, Protocol};
use crate::config::live::LiveValues;
use crate::config::Settings;
use raftmq_raft::ClusterConfig;

/// Why a CONNECT is refused: the CONNACK reason code and a reason string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: u8,
    pub why: &'static str,
}

impl Refusal {
    fn new(code: u8, why: &'static str) -> Refusal {
        Refusal { code, why }
    }
}

/// Limits of what the broker sends this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundLimits {
    /// QoS 1/2 messages in flight at once.
    pub window: usize,
    /// Topic aliases the broker may set towards the client.
    pub alias_max: u16,
    /// The client's maximum packet size.
    pub max_packet: usize,
}

/// An accepted CONNECT: what to register and how to run the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub client_id: String,
    /// MQTT 5: the client id the broker chose for an empty one.
    pub assigned_id: Option<String>,
    pub clean_start: bool,
    /// Session expiry in seconds (0 = ends with the connection).
    pub expiry_s: u32,
    pub will: Option<Will>,
    /// Seconds; 0 = no keepalive.
    pub keep_alive: u16,
    pub outbound: OutboundLimits,
}

impl Admission {
    /// The registration command this admission commits.
    pub fn register(&self, node: NodeId, now_ms: u64) -> Command {
        Command::Register(self.registration(node, now_ms))
    }

    /// The registration accepted during a netsplit, with the epoch this
    /// node chose for it.
    pub fn register_held(&self, node: NodeId, now_ms: u64, epoch: u64) -> Command {
        Command::RegisterHeld(cmd::RegisterHeld {
            reg: self.registration(node, now_ms),
            epoch,
        })
    }

    fn registration(&self, node: NodeId, now_ms: u64) -> cmd::Register {
        cmd::Register {
            client_id: self.client_id.clone(),
            node,
            clean_start: self.clean_start,
            expiry_s: self.expiry_s,
            will: self.will.clone().map(Box::new),
            now_ms,
        }
    }
}

/// Decides a CONNECT by the node's settings `s`, the cluster-wide settings
/// in effect `cluster` (the replicated ones) and the node's live values
/// `live`. `fresh_id` makes a client id for a client that sent an empty one
/// and may have one assigned.
pub fn admit(
    c: &Connect,
    s: &Settings,
    cluster: &ClusterConfig,
    live: &LiveValues,
    now_ms: u64,
    fresh_id: impl FnOnce() -> String,
) -> Result<Admission, Refusal> {
    let proto = c.protocol.unwrap_or(Protocol::V311);
    let v5 = proto.is_v5();
    let mut assigned_id = None;
    let client_id = if !c.client_id.is_empty() {
        c.client_id.clone()
    } else if v5 || (proto == Protocol::V311 && c.clean_start) {
        let id = fresh_id();
        assigned_id = v5.then(|| id.clone());
        id
    } else {
        return Err(Refusal::new(
            reason::CLIENT_IDENTIFIER_NOT_VALID,
            "empty client id needs a clean session",
        ));
    };
    if client_id.len() > live.max_client_id_size {
        return Err(Refusal::new(
            reason::CLIENT_IDENTIFIER_NOT_VALID,
            "client id too long",
        ));
    }
    no_enhanced_authentication(c)?;
    let will = match &c.will {
        Some(w) if !valid_topic(&w.topic) => {
            return Err(Refusal::new(
                reason::TOPIC_NAME_INVALID,
                "invalid will topic",
            ));
        }
        Some(w) => Some(convert::will(w, &client_id, now_ms)),
        None => None,
    };
    let expiry_s = if v5 {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        cluster.persistent_client_expiration
    };
    let keep_alive = if v5 && s.server_keep_alive > 0 {
        s.server_keep_alive
    } else {
        c.keep_alive
    };
    let receive_max = c.properties.receive_maximum.unwrap_or(65535) as usize;
    let window = match cluster.max_inflight_messages {
        0 => receive_max,
        m => (m as usize).min(receive_max),
    };
    let alias_max = if v5 {
        c.properties
            .topic_alias_maximum
            .unwrap_or(0)
            .min(s.topic_alias_max_client)
    } else {
        0
    };
    let max_packet = c
        .properties
        .maximum_packet_size
        .map_or(usize::MAX, |m| m as usize);
    Ok(Admission {
        client_id,
        assigned_id,
        clean_start: c.clean_start,
        expiry_s,
        will,
        keep_alive,
        outbound: OutboundLimits {
            window,
            alias_max,
            max_packet,
        },
    })
}

fn no_enhanced_authentication(c: &Connect) -> Result<(), Refusal> {
    if c.properties.authentication_method.is_some() {
        return Err(Refusal::new(
            reason::BAD_AUTHENTICATION_METHOD,
            "enhanced authentication is not supported",
        ));
    }
    Ok(())
}

/// The CONNACK properties of an accepted MQTT 5 client.
pub fn connack_properties(s: &Settings, assigned_id: Option<String>) -> ConnAckProperties {
    ConnAckProperties {
        assigned_client_identifier: assigned_id,
        receive_maximum: Some(s.receive_max_broker),
        topic_alias_maximum: Some(s.topic_alias_max_broker),
        retain_available: Some(1),
        wildcard_subscription_available: Some(1),
        subscription_identifiers_available: Some(1),
        shared_subscription_available: Some(1),
        maximum_packet_size: (s.max_packet_size < 268_435_460).then_some(s.max_packet_size as u32),
        server_keep_alive: (s.server_keep_alive > 0).then_some(s.server_keep_alive),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{ConnectProperties, LastWill, QoS, WillProperties};

    fn connect(proto: Protocol, client_id: &str, clean: bool) -> Connect {
        Connect {
            protocol: Some(proto),
            clean_start: clean,
            keep_alive: 30,
            client_id: client_id.into(),
            ..Default::default()
        }
    }

    /// Admits by `s` alone: its config-file cluster values stand for the
    /// replicated ones and its live values for the node's.
    fn admit(
        c: &Connect,
        s: &Settings,
        now_ms: u64,
        fresh_id: impl FnOnce() -> String,
    ) -> Result<Admission, Refusal> {
        super::admit(c, s, &s.cluster, &LiveValues::of(s), now_ms, fresh_id)
    }

    fn admit_default(c: &Connect) -> Result<Admission, Refusal> {
        admit(c, &Settings::default(), 1_000, || "fresh".into())
    }

    #[test]
    fn v311_empty_client_id_with_clean_session_gets_a_fresh_id_not_told_to_the_client() {
        let a = admit_default(&connect(Protocol::V311, "", true)).expect("admitted");
        assert_eq!(a.client_id, "fresh");
        assert_eq!(a.assigned_id, None);
    }

    #[test]
    fn v311_empty_client_id_without_clean_session_is_refused_as_client_identifier_not_valid() {
        let r = admit_default(&connect(Protocol::V311, "", false)).expect_err("refused");
        assert_eq!(r.code, reason::CLIENT_IDENTIFIER_NOT_VALID);
    }

    #[test]
    fn v31_empty_client_id_is_refused_even_with_clean_session() {
        let r = admit_default(&connect(Protocol::V31, "", true)).expect_err("refused");
        assert_eq!(r.code, reason::CLIENT_IDENTIFIER_NOT_VALID);
    }

    #[test]
    fn v5_empty_client_id_is_assigned_and_told_to_the_client() {
        let a = admit_default(&connect(Protocol::V5, "", false)).expect("admitted");
        assert_eq!(a.client_id, "fresh");
        assert_eq!(a.assigned_id.as_deref(), Some("fresh"));
    }

    #[test]
    fn client_id_longer_than_max_client_id_size_is_refused() {
        let long = "x".repeat(Settings::default().max_client_id_size + 1);
        let r = admit_default(&connect(Protocol::V5, &long, true)).expect_err("refused");
        assert_eq!(r.code, reason::CLIENT_IDENTIFIER_NOT_VALID);
    }

    #[test]
    fn enhanced_authentication_is_refused_as_bad_authentication_method() {
        let mut c = connect(Protocol::V5, "c", true);
        c.properties.authentication_method = Some("SCRAM-SHA-1".into());
        let r = admit_default(&c).expect_err("refused");
        assert_eq!(r.code, reason::BAD_AUTHENTICATION_METHOD);
    }

    #[test]
    fn credentials_are_not_judged_by_admission() {
        let mut c = connect(Protocol::V5, "c", true);
        c.username = Some("alice".into());
        c.password = Some(Bytes::from_static(b"wrong"));
        let s = Settings {
            allow_anonymous: false,
            ..Settings::default()
        };
        assert!(admit(&c, &s, 0, String::new).is_ok());
    }

    fn will_on(topic: &str) -> LastWill {
        LastWill {
            topic: topic.into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                delay_interval: Some(5),
                message_expiry_interval: Some(60),
                ..Default::default()
            },
        }
    }

    #[test]
    fn will_with_a_wildcard_topic_is_refused_as_topic_name_invalid() {
        let mut c = connect(Protocol::V5, "c", true);
        c.will = Some(will_on("a/+"));
        let r = admit_default(&c).expect_err("refused");
        assert_eq!(r.code, reason::TOPIC_NAME_INVALID);
    }

    #[test]
    fn will_is_registered_with_its_publisher_delay_and_expiry() {
        let mut c = connect(Protocol::V5, "c", true);
        c.will = Some(will_on("a/b"));
        let w = admit_default(&c).expect("admitted").will.expect("will");
        assert_eq!(w.msg.topic, "a/b");
        assert_eq!(&*w.msg.publisher, "c");
        assert_eq!((w.msg.qos, w.msg.retain), (1, true));
        assert_eq!(w.msg.created_ms, 1_000);
        assert_eq!((w.delay_s, w.expiry_s), (5, Some(60)));
    }

    #[test]
    fn v311_persistent_session_expires_after_persistent_client_expiration() {
        let s = Settings {
            cluster: ClusterConfig {
                persistent_client_expiration: 3600,
                ..ClusterConfig::default()
            },
            ..Settings::default()
        };
        let a = admit(&connect(Protocol::V311, "c", false), &s, 0, String::new).expect("admitted");
        assert_eq!(a.expiry_s, 3600);
        let a = admit(&connect(Protocol::V311, "c", true), &s, 0, String::new).expect("admitted");
        assert_eq!(a.expiry_s, 0);
    }

    #[test]
    fn v5_session_expiry_comes_from_the_connect_property() {
        let mut c = connect(Protocol::V5, "c", false);
        c.properties = ConnectProperties {
            session_expiry_interval: Some(120),
            ..Default::default()
        };
        assert_eq!(admit_default(&c).expect("admitted").expiry_s, 120);
    }

    #[test]
    fn server_keep_alive_overrides_a_v5_clients_keepalive_only() {
        let s = Settings {
            server_keep_alive: 10,
            ..Settings::default()
        };
        let v5 = admit(&connect(Protocol::V5, "c", true), &s, 0, String::new).expect("admitted");
        let v3 = admit(&connect(Protocol::V311, "c", true), &s, 0, String::new).expect("admitted");
        assert_eq!((v5.keep_alive, v3.keep_alive), (10, 30));
    }

    #[test]
    fn outbound_window_is_the_smaller_of_max_inflight_and_the_clients_receive_maximum() {
        let s = Settings {
            cluster: ClusterConfig {
                max_inflight_messages: 20,
                ..ClusterConfig::default()
            },
            ..Settings::default()
        };
        let mut c = connect(Protocol::V5, "c", true);
        c.properties.receive_maximum = Some(5);
        assert_eq!(
            admit(&c, &s, 0, String::new)
                .expect("admitted")
                .outbound
                .window,
            5
        );
        c.properties.receive_maximum = None;
        assert_eq!(
            admit(&c, &s, 0, String::new)
                .expect("admitted")
                .outbound
                .window,
            20
        );
    }
}
