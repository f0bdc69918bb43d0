//! MQTT packet counters, VerneMQ's names: every packet a connection decodes
//! or writes is counted once, by type, with the reason code (by name) of
//! CONNACK and DISCONNECT and the QoS of PUBLISH as labels. Fed by the
//! connection's framing ([`crate::connection`]), rendered by
//! [`super::render`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::codec::{reason, Packet, Protocol, QoS};

type Labels = [(&'static str, &'static str); 1];

/// A family labelled by QoS with its three counters looked up once: a
/// lookup in a family takes its lock and hashes the labels, and PUBLISH is
/// counted twice per message. The three series show from the start, at 0.
struct ByQos {
    family: Family<Labels, Counter>,
    counters: [Counter; 3],
}

impl Default for ByQos {
    fn default() -> ByQos {
        let family = Family::<Labels, Counter>::default();
        let counters = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .map(|q| family.get_or_create(&qos(q)).clone());
        ByQos { family, counters }
    }
}

/// Slots of a [`Tally`]: PUBLISH by QoS, and its acknowledgements, each way.
const PUBLISH_RECEIVED: usize = 0;
const PUBLISH_SENT: usize = 3;
const PUBACK_RECEIVED: usize = 6;
const PUBACK_SENT: usize = 7;
const PUBREC_RECEIVED: usize = 8;
const PUBREC_SENT: usize = 9;
const PUBREL_RECEIVED: usize = 10;
const PUBREL_SENT: usize = 11;
const PUBCOMP_RECEIVED: usize = 12;
const PUBCOMP_SENT: usize = 13;
const SLOTS: usize = 14;

/// One connection's count of the packets it read of the kinds a message
/// costs (PUBLISH and its acknowledgements) and of every packet it encoded
/// for writing, not yet added to the node's counters: it adds them once per
/// write ([`MqttCounters::add`]). Two shared counters touched from both
/// cores for every delivery cost more than handling the delivery's PUBACK.
/// Other packets read are counted at once.
#[derive(Debug, Default)]
pub struct Tally {
    n: [u32; SLOTS],
    /// Packets encoded of the kinds without a slot, in order.
    other_sent: Vec<OtherSent>,
}

/// A packet written of a kind counted by its reason code, or rarely.
#[derive(Debug, Clone, Copy)]
enum OtherSent {
    ConnAck(&'static str),
    Disconnect(&'static str),
    SubAck,
    UnsubAck,
    PingResp,
}

impl Tally {
    /// Counts a packet encoded for a client speaking `proto`.
    pub fn sent(&mut self, p: &Packet, proto: Protocol) {
        let other = match p {
            Packet::ConnAck(c) => OtherSent::ConnAck(connack_name(c.code, proto)),
            Packet::Publish(p) => return self.sent_publish(p.qos),
            Packet::PubAck(_) => return self.n[PUBACK_SENT] += 1,
            Packet::PubRec(_) => return self.n[PUBREC_SENT] += 1,
            Packet::PubRel(_) => return self.n[PUBREL_SENT] += 1,
            Packet::PubComp(_) => return self.n[PUBCOMP_SENT] += 1,
            Packet::SubAck(_) => OtherSent::SubAck,
            Packet::UnsubAck(_) => OtherSent::UnsubAck,
            Packet::PingResp => OtherSent::PingResp,
            Packet::Disconnect(d) => OtherSent::Disconnect(disconnect_name(d.reason)),
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Auth(_) => return,
        };
        self.other_sent.push(other);
    }

    /// Counts a PUBLISH encoded at `qos`.
    pub fn sent_publish(&mut self, qos: QoS) {
        self.n[PUBLISH_SENT + qos as usize] += 1;
    }

    /// Forgets what was encoded and will not be written.
    pub fn forget_sent(&mut self) {
        for slot in [PUBLISH_SENT, PUBLISH_SENT + 1, PUBLISH_SENT + 2]
            .into_iter()
            .chain([PUBACK_SENT, PUBREC_SENT, PUBREL_SENT, PUBCOMP_SENT])
        {
            self.n[slot] = 0;
        }
        self.other_sent.clear();
    }
}

/// Counters of MQTT packets in and out of this node's connections.
#[derive(Default)]
pub struct MqttCounters {
    connect_received: Counter,
    connack_sent: Family<Labels, Counter>,
    publish_received: ByQos,
    publish_sent: ByQos,
    puback_received: Counter,
    puback_sent: Counter,
    pubrec_received: Counter,
    pubrec_sent: Counter,
    pubrel_received: Counter,
    pubrel_sent: Counter,
    pubcomp_received: Counter,
    pubcomp_sent: Counter,
    subscribe_received: Counter,
    suback_sent: Counter,
    unsubscribe_received: Counter,
    unsuback_sent: Counter,
    pingreq_received: Counter,
    pingresp_sent: Counter,
    disconnect_received: Family<Labels, Counter>,
    disconnect_sent: Family<Labels, Counter>,
    auth_received: Counter,
}

fn qos(q: QoS) -> Labels {
    [(
        "qos",
        match q {
            QoS::AtMostOnce => "0",
            QoS::AtLeastOnce => "1",
            QoS::ExactlyOnce => "2",
        },
    )]
}

fn one(c: &Counter) {
    c.inc();
}

fn labelled(f: &Family<Labels, Counter>, labels: Labels) {
    f.get_or_create(&labels).inc();
}

fn code(name: &'static str) -> Labels {
    [("reason_code", name)]
}

impl MqttCounters {
    /// Counts a packet decoded from a client: in `tally` if it is of a
    /// message's kinds, else at once.
    pub fn received(&self, p: &Packet, tally: &mut Tally) {
        match p {
            Packet::Connect(_) => one(&self.connect_received),
            Packet::Publish(p) => tally.n[PUBLISH_RECEIVED + p.qos as usize] += 1,
            Packet::PubAck(_) => tally.n[PUBACK_RECEIVED] += 1,
            Packet::PubRec(_) => tally.n[PUBREC_RECEIVED] += 1,
            Packet::PubRel(_) => tally.n[PUBREL_RECEIVED] += 1,
            Packet::PubComp(_) => tally.n[PUBCOMP_RECEIVED] += 1,
            Packet::Subscribe(_) => one(&self.subscribe_received),
            Packet::Unsubscribe(_) => one(&self.unsubscribe_received),
            Packet::PingReq => one(&self.pingreq_received),
            Packet::Disconnect(d) => {
                labelled(&self.disconnect_received, code(disconnect_name(d.reason)))
            }
            Packet::Auth(_) => one(&self.auth_received),
            // Server-to-client packets: a client sending one is a protocol
            // error, counted there.
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {}
        }
    }

    /// Adds a connection's tally to these counters and empties it.
    pub fn add(&self, tally: &mut Tally) {
        let [r0, r1, r2] = &self.publish_received.counters;
        let [s0, s1, s2] = &self.publish_sent.counters;
        let slots: [&Counter; SLOTS] = [
            r0,
            r1,
            r2,
            s0,
            s1,
            s2,
            &self.puback_received,
            &self.puback_sent,
            &self.pubrec_received,
            &self.pubrec_sent,
            &self.pubrel_received,
            &self.pubrel_sent,
            &self.pubcomp_received,
            &self.pubcomp_sent,
        ];
        for (c, n) in slots.into_iter().zip(&mut tally.n) {
            if *n > 0 {
                c.inc_by(u64::from(std::mem::take(n)));
            }
        }
        for other in tally.other_sent.drain(..) {
            match other {
                OtherSent::ConnAck(name) => labelled(&self.connack_sent, code(name)),
                OtherSent::Disconnect(name) => labelled(&self.disconnect_sent, code(name)),
                OtherSent::SubAck => one(&self.suback_sent),
                OtherSent::UnsubAck => one(&self.unsuback_sent),
                OtherSent::PingResp => one(&self.pingresp_sent),
            }
        }
    }

    /// Registers every counter in `r` under VerneMQ's names.
    pub fn register(&self, r: &mut Registry) {
        let plain = [
            (
                "mqtt_connect_received",
                "CONNECT packets received",
                &self.connect_received,
            ),
            (
                "mqtt_puback_received",
                "PUBACK packets received",
                &self.puback_received,
            ),
            ("mqtt_puback_sent", "PUBACK packets sent", &self.puback_sent),
            (
                "mqtt_pubrec_received",
                "PUBREC packets received",
                &self.pubrec_received,
            ),
            ("mqtt_pubrec_sent", "PUBREC packets sent", &self.pubrec_sent),
            (
                "mqtt_pubrel_received",
                "PUBREL packets received",
                &self.pubrel_received,
            ),
            ("mqtt_pubrel_sent", "PUBREL packets sent", &self.pubrel_sent),
            (
                "mqtt_pubcomp_received",
                "PUBCOMP packets received",
                &self.pubcomp_received,
            ),
            (
                "mqtt_pubcomp_sent",
                "PUBCOMP packets sent",
                &self.pubcomp_sent,
            ),
            (
                "mqtt_subscribe_received",
                "SUBSCRIBE packets received",
                &self.subscribe_received,
            ),
            ("mqtt_suback_sent", "SUBACK packets sent", &self.suback_sent),
            (
                "mqtt_unsubscribe_received",
                "UNSUBSCRIBE packets received",
                &self.unsubscribe_received,
            ),
            (
                "mqtt_unsuback_sent",
                "UNSUBACK packets sent",
                &self.unsuback_sent,
            ),
            (
                "mqtt_pingreq_received",
                "PINGREQ packets received",
                &self.pingreq_received,
            ),
            (
                "mqtt_pingresp_sent",
                "PINGRESP packets sent",
                &self.pingresp_sent,
            ),
            (
                "mqtt_auth_received",
                "AUTH packets received",
                &self.auth_received,
            ),
        ];
        for (name, help, c) in plain {
            r.register(name, help, c.clone());
        }
        let labelled = [
            (
                "mqtt_connack_sent",
                "CONNACK packets sent, by reason code (MQTT 3 return codes by the name of the MQTT 5 code they stand for)",
                &self.connack_sent,
            ),
            (
                "mqtt_publish_received",
                "PUBLISH packets received (resent ones included), by QoS",
                &self.publish_received.family,
            ),
            (
                "mqtt_publish_sent",
                "PUBLISH packets sent (resent ones included), by QoS",
                &self.publish_sent.family,
            ),
            (
                "mqtt_disconnect_received",
                "DISCONNECT packets received, by reason code (MQTT 3: normal_disconnection)",
                &self.disconnect_received,
            ),
            (
                "mqtt_disconnect_sent",
                "DISCONNECT packets sent (MQTT 5 only), by reason code",
                &self.disconnect_sent,
            ),
        ];
        for (name, help, f) in labelled {
            r.register(name, help, f.clone());
        }
    }
}

/// The name of the CONNACK code a client speaking `proto` reads: MQTT 3
/// return codes by the MQTT 5 code they stand for (return code 5 is
/// `not_authorized`, and an MQTT 5 code with no MQTT 3 return code of its
/// own is sent, and counted, as `server_unavailable`).
pub fn connack_name(code: u8, proto: Protocol) -> &'static str {
    let sent = if proto.is_v5() {
        code
    } else {
        let rc = reason::connack_v3_return_code(code);
        reason::connack_reason_from_v3(rc).unwrap_or(reason::SERVER_UNAVAILABLE)
    };
    reason_name(sent)
}

/// A DISCONNECT's reason code by name (0 is `normal_disconnection` there).
pub fn disconnect_name(code: u8) -> &'static str {
    match code {
        reason::NORMAL_DISCONNECTION => "normal_disconnection",
        other => reason_name(other),
    }
}

/// An MQTT 5 reason code by its name in the specification, snake case (0 is
/// `success`; see [`disconnect_name`]).
pub fn reason_name(code: u8) -> &'static str {
    match code {
        reason::SUCCESS => "success",
        reason::GRANTED_QOS_1 => "granted_qos_1",
        reason::GRANTED_QOS_2 => "granted_qos_2",
        reason::DISCONNECT_WITH_WILL_MESSAGE => "disconnect_with_will_message",
        reason::NO_MATCHING_SUBSCRIBERS => "no_matching_subscribers",
        reason::NO_SUBSCRIPTION_EXISTED => "no_subscription_existed",
        reason::CONTINUE_AUTHENTICATION => "continue_authentication",
        reason::RE_AUTHENTICATE => "re_authenticate",
        reason::UNSPECIFIED_ERROR => "unspecified_error",
        reason::MALFORMED_PACKET => "malformed_packet",
        reason::PROTOCOL_ERROR => "protocol_error",
        reason::IMPLEMENTATION_SPECIFIC_ERROR => "implementation_specific_error",
        reason::UNSUPPORTED_PROTOCOL_VERSION => "unsupported_protocol_version",
        reason::CLIENT_IDENTIFIER_NOT_VALID => "client_identifier_not_valid",
        reason::BAD_USER_NAME_OR_PASSWORD => "bad_user_name_or_password",
        reason::NOT_AUTHORIZED => "not_authorized",
        reason::SERVER_UNAVAILABLE => "server_unavailable",
        reason::SERVER_BUSY => "server_busy",
        reason::BANNED => "banned",
        reason::SERVER_SHUTTING_DOWN => "server_shutting_down",
        reason::BAD_AUTHENTICATION_METHOD => "bad_authentication_method",
        reason::KEEP_ALIVE_TIMEOUT => "keep_alive_timeout",
        reason::SESSION_TAKEN_OVER => "session_taken_over",
        reason::TOPIC_FILTER_INVALID => "topic_filter_invalid",
        reason::TOPIC_NAME_INVALID => "topic_name_invalid",
        reason::PACKET_IDENTIFIER_IN_USE => "packet_identifier_in_use",
        reason::PACKET_IDENTIFIER_NOT_FOUND => "packet_identifier_not_found",
        reason::RECEIVE_MAXIMUM_EXCEEDED => "receive_maximum_exceeded",
        reason::TOPIC_ALIAS_INVALID => "topic_alias_invalid",
        reason::PACKET_TOO_LARGE => "packet_too_large",
        reason::MESSAGE_RATE_TOO_HIGH => "message_rate_too_high",
        reason::QUOTA_EXCEEDED => "quota_exceeded",
        reason::ADMINISTRATIVE_ACTION => "administrative_action",
        reason::PAYLOAD_FORMAT_INVALID => "payload_format_invalid",
        reason::RETAIN_NOT_SUPPORTED => "retain_not_supported",
        reason::QOS_NOT_SUPPORTED => "qos_not_supported",
        reason::USE_ANOTHER_SERVER => "use_another_server",
        reason::SERVER_MOVED => "server_moved",
        reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED => "shared_subscriptions_not_supported",
        reason::CONNECTION_RATE_EXCEEDED => "connection_rate_exceeded",
        reason::MAXIMUM_CONNECT_TIME => "maximum_connect_time",
        reason::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED => "subscription_identifiers_not_supported",
        reason::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED => "wildcard_subscriptions_not_supported",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{PubResp, Publish};

    #[test]
    fn a_v311_wrong_password_is_named_by_the_return_code_the_client_reads() {
        assert_eq!(
            connack_name(reason::BAD_USER_NAME_OR_PASSWORD, Protocol::V311),
            "bad_user_name_or_password"
        );
        assert_eq!(
            connack_name(reason::NOT_AUTHORIZED, Protocol::V311),
            "not_authorized"
        );
    }

    #[test]
    fn a_v5_code_without_a_v3_return_code_counts_as_server_unavailable_for_v3_clients() {
        assert_eq!(
            connack_name(reason::QUOTA_EXCEEDED, Protocol::V5),
            "quota_exceeded"
        );
        assert_eq!(
            connack_name(reason::QUOTA_EXCEEDED, Protocol::V311),
            "server_unavailable"
        );
    }

    #[test]
    fn code_zero_is_success_in_a_connack_and_normal_disconnection_in_a_disconnect() {
        assert_eq!(connack_name(reason::SUCCESS, Protocol::V5), "success");
        assert_eq!(disconnect_name(0), "normal_disconnection");
        assert_eq!(
            disconnect_name(reason::SESSION_TAKEN_OVER),
            "session_taken_over"
        );
    }

    fn render(c: &MqttCounters) -> String {
        let mut r = Registry::default();
        c.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
        text
    }

    #[test]
    fn a_tallied_packet_reaches_the_shared_counter_when_added_and_once() {
        let c = MqttCounters::default();
        let mut tally = Tally::default();
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            packet_id: 1,
            payload: Default::default(),
            properties: Default::default(),
        });
        c.received(&publish, &mut tally);
        tally.sent(&Packet::PubAck(PubResp::default()), Protocol::V311);
        tally.sent(&Packet::PingResp, Protocol::V311);
        let received = "mqtt_publish_received_total{qos=\"1\"}";
        assert!(render(&c).contains(&format!("{received} 0")));
        c.add(&mut tally);
        c.add(&mut tally);
        let text = render(&c);
        assert!(text.contains(&format!("{received} 1")), "{text}");
        assert!(text.contains("mqtt_puback_sent_total 1"), "{text}");
        assert!(text.contains("mqtt_pingresp_sent_total 1"), "{text}");
    }

    #[test]
    fn packets_encoded_and_then_discarded_are_not_counted_as_sent() {
        let c = MqttCounters::default();
        let mut tally = Tally::default();
        tally.sent(&Packet::PubAck(PubResp::default()), Protocol::V311);
        tally.sent(&Packet::PingResp, Protocol::V311);
        c.received(&Packet::PubAck(PubResp::default()), &mut tally);
        tally.forget_sent();
        c.add(&mut tally);
        let text = render(&c);
        assert!(text.contains("mqtt_puback_sent_total 0"), "{text}");
        assert!(text.contains("mqtt_pingresp_sent_total 0"), "{text}");
        assert!(text.contains("mqtt_puback_received_total 1"), "{text}");
    }

    #[test]
    fn every_connack_and_disconnect_code_has_a_name() {
        for &c in reason::CONNACK_CODES.iter().chain(reason::DISCONNECT_CODES) {
            assert_ne!(reason_name(c), "unknown", "code {c:#04x}");
        }
    }
}
