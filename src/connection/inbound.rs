//! A client's PUBLISH on its way in: topic aliases it set, the QoS 1/2 flows
//! it has open against the receive maximum we advertised, and the checks that
//! turn a PUBLISH into a message to log or a reason to close the connection.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use raftmq_raft::trie::valid_topic;
use raftmq_raft::Message;

use super::{convert, Exit};
use crate::codec::{reason, Publish};

/// What the broker enforces on inbound publishes.
#[derive(Debug, Clone, Copy)]
pub struct InboundLimits {
    pub v5: bool,
    /// Topic aliases the client may use (ours, told at CONNACK).
    pub alias_max: u16,
    /// QoS 1/2 flows the client may have open (MQTT 5).
    pub receive_max: u16,
    /// Largest payload (0 = any).
    pub max_message_size: usize,
}

/// Inbound state of one connection.
pub struct Inbound {
    limits: InboundLimits,
    /// Made by the first alias (MQTT 5 clients that use them): most
    /// connections never do, and an empty map inline costs 48 B each.
    #[allow(clippy::box_collection)]
    aliases: Option<Box<HashMap<u16, String>>>,
    /// QoS 1 publishes not yet acknowledged.
    qos1: usize,
    /// QoS 2 packet ids not yet released.
    /// Made by the first QoS 2 flow, given back by [`Inbound::shrink`].
    #[allow(clippy::box_collection)]
    qos2: Option<Box<HashSet<u16>>>,
}

impl Inbound {
    pub fn new(limits: InboundLimits) -> Inbound {
        Inbound {
            limits,
            aliases: None,
            qos1: 0,
            qos2: None,
        }
    }

    /// Checks a PUBLISH from `publisher` and opens its QoS flow: the message
    /// to log, or `None` for a PUBLISH to `$SYS`, which clients may not write
    /// (refused with NOT_AUTHORIZED, its flow closed, nothing logged).
    pub fn accept(
        &mut self,
        p: Publish,
        publisher: &Arc<str>,
        now_ms: u64,
    ) -> Result<Option<Message>, Exit> {
        let topic = self.resolve_topic(&p)?;
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(Exit::error(
                reason::PROTOCOL_ERROR,
                "subscription identifier in PUBLISH from client",
            ));
        }
        let max = self.limits.max_message_size;
        if max > 0 && p.payload.len() > max {
            return Err(Exit::error(
                reason::PACKET_TOO_LARGE,
                format!(
                    "payload of {} bytes exceeds max_message_size",
                    p.payload.len()
                ),
            ));
        }
        let (qos, packet_id) = (p.qos as u8, p.packet_id);
        self.open_flow(qos, packet_id)?;
        if topic.starts_with("$SYS") {
            // Clients may not write the broker's own tree.
            self.close_flow(qos, packet_id);
            return Ok(None);
        }
        Ok(Some(convert::message(p, topic, publisher, now_ms)))
    }

    /// The topic of a PUBLISH: its own, or the one its alias stands for
    /// (which a PUBLISH with both a topic and an alias sets).
    fn resolve_topic(&mut self, p: &Publish) -> Result<String, Exit> {
        let mut topic = p.topic.clone();
        if let Some(a) = p.properties.topic_alias {
            if a == 0 || a > self.limits.alias_max {
                return Err(Exit::error(
                    reason::TOPIC_ALIAS_INVALID,
                    format!("topic alias {a} out of range"),
                ));
            }
            if topic.is_empty() {
                let known = self.aliases.as_ref().and_then(|m| m.get(&a));
                topic = known.cloned().ok_or_else(|| {
                    Exit::error(reason::PROTOCOL_ERROR, format!("unknown topic alias {a}"))
                })?;
            } else {
                let aliases = self.aliases.get_or_insert_with(Default::default);
                aliases.insert(a, topic.clone());
            }
        }
        if topic.is_empty() || !valid_topic(&topic) {
            return Err(Exit::error(
                reason::TOPIC_NAME_INVALID,
                "invalid topic name",
            ));
        }
        Ok(topic)
    }

    /// Counts a new QoS 1/2 flow against the receive maximum. A resent QoS 2
    /// PUBLISH continues its flow and is not counted again.
    fn open_flow(&mut self, qos: u8, packet_id: u16) -> Result<(), Exit> {
        let new_flow = match qos {
            0 => false,
            1 => {
                self.qos1 += 1;
                true
            }
            _ => self
                .qos2
                .get_or_insert_with(Default::default)
                .insert(packet_id),
        };
        let open = self.qos1 + self.qos2.as_ref().map_or(0, |s| s.len());
        if new_flow && self.limits.v5 && open > self.limits.receive_max as usize {
            return Err(Exit::error(
                reason::RECEIVE_MAXIMUM_EXCEEDED,
                "receive maximum exceeded",
            ));
        }
        Ok(())
    }

    pub(super) fn close_flow(&mut self, qos: u8, packet_id: u16) {
        match qos {
            1 => self.qos1_done(),
            2 => self.qos2_done(packet_id),
            _ => {}
        }
    }

    /// Whether a QoS 2 flow with this packet id is open on this connection
    /// (its PUBLISH was taken, its PUBREL not yet received).
    pub fn qos2_open(&self, packet_id: u16) -> bool {
        self.qos2.as_ref().is_some_and(|s| s.contains(&packet_id))
    }

    /// A QoS 1 flow ended (PUBACK sent, or failed).
    pub fn qos1_done(&mut self) {
        self.qos1 = self.qos1.saturating_sub(1);
    }

    /// A QoS 2 flow ended (PUBREL received, or a failure PUBREC sent).
    pub fn qos2_done(&mut self, packet_id: u16) {
        if let Some(s) = &mut self.qos2 {
            s.remove(&packet_id);
        }
    }

    /// Gives back the QoS 2 flow set when no flow is open (a quiet
    /// connection).
    pub fn shrink(&mut self) {
        if self.qos2.as_ref().is_some_and(|s| s.is_empty()) {
            self.qos2 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{PublishProperties, QoS};

    fn limits() -> InboundLimits {
        InboundLimits {
            v5: true,
            alias_max: 10,
            receive_max: 2,
            max_message_size: 8,
        }
    }

    fn publish(topic: &str, qos: QoS, packet_id: u16, alias: Option<u16>) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            packet_id,
            payload: Bytes::from_static(b"x"),
            properties: PublishProperties {
                topic_alias: alias,
                ..Default::default()
            },
        }
    }

    /// Whether a PUBLISH to "a" with this QoS and packet id is accepted.
    fn accepts(i: &mut Inbound, qos: QoS, packet_id: u16) -> bool {
        i.accept(publish("a", qos, packet_id, None), &"c".into(), 0)
            .is_ok()
    }

    fn reason_of(r: Result<Option<Message>, Exit>) -> u8 {
        match r {
            Err(Exit::Error(code, _)) => code,
            other => panic!("expected an error exit, got {other:?}"),
        }
    }

    fn topic_of(r: Result<Option<Message>, Exit>) -> String {
        match r {
            Ok(Some(msg)) => msg.topic,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn alias_set_with_a_topic_stands_for_it_in_later_publishes() {
        let mut i = Inbound::new(limits());
        assert_eq!(
            topic_of(i.accept(publish("a/b", QoS::AtMostOnce, 0, Some(3)), &"c".into(), 0)),
            "a/b"
        );
        assert_eq!(
            topic_of(i.accept(publish("", QoS::AtMostOnce, 0, Some(3)), &"c".into(), 0)),
            "a/b"
        );
    }

    #[test]
    fn unknown_alias_is_a_protocol_error() {
        let mut i = Inbound::new(limits());
        let r = i.accept(publish("", QoS::AtMostOnce, 0, Some(3)), &"c".into(), 0);
        assert_eq!(reason_of(r), reason::PROTOCOL_ERROR);
    }

    #[test]
    fn alias_above_the_maximum_is_topic_alias_invalid() {
        let mut i = Inbound::new(limits());
        let r = i.accept(publish("a", QoS::AtMostOnce, 0, Some(11)), &"c".into(), 0);
        assert_eq!(reason_of(r), reason::TOPIC_ALIAS_INVALID);
    }

    #[test]
    fn wildcard_topic_is_topic_name_invalid() {
        let mut i = Inbound::new(limits());
        let r = i.accept(publish("a/#", QoS::AtMostOnce, 0, None), &"c".into(), 0);
        assert_eq!(reason_of(r), reason::TOPIC_NAME_INVALID);
    }

    #[test]
    fn payload_over_max_message_size_is_packet_too_large() {
        let mut i = Inbound::new(limits());
        let mut p = publish("a", QoS::AtMostOnce, 0, None);
        p.payload = Bytes::from_static(b"123456789");
        assert_eq!(
            reason_of(i.accept(p, &"c".into(), 0)),
            reason::PACKET_TOO_LARGE
        );
    }

    #[test]
    fn a_flow_beyond_the_receive_maximum_is_receive_maximum_exceeded() {
        let mut i = Inbound::new(limits());
        assert!(accepts(&mut i, QoS::AtLeastOnce, 1));
        assert!(accepts(&mut i, QoS::ExactlyOnce, 2));
        let r = i.accept(publish("a", QoS::AtLeastOnce, 3, None), &"c".into(), 0);
        assert_eq!(reason_of(r), reason::RECEIVE_MAXIMUM_EXCEEDED);
    }

    #[test]
    fn a_resent_qos2_publish_is_not_counted_twice() {
        let mut i = Inbound::new(limits());
        assert!(accepts(&mut i, QoS::ExactlyOnce, 7));
        assert!(accepts(&mut i, QoS::ExactlyOnce, 7));
        assert!(accepts(&mut i, QoS::ExactlyOnce, 8));
    }

    #[test]
    fn a_qos2_flow_is_open_from_its_publish_to_its_release() {
        let mut i = Inbound::new(limits());
        assert!(!i.qos2_open(7));
        assert!(accepts(&mut i, QoS::ExactlyOnce, 7));
        assert!(i.qos2_open(7));
        i.qos2_done(7);
        assert!(!i.qos2_open(7));
    }

    #[test]
    fn ended_flows_free_the_receive_maximum() {
        let mut i = Inbound::new(limits());
        assert!(accepts(&mut i, QoS::AtLeastOnce, 1));
        assert!(accepts(&mut i, QoS::ExactlyOnce, 2));
        i.qos1_done();
        i.qos2_done(2);
        assert!(accepts(&mut i, QoS::AtLeastOnce, 3));
        assert!(accepts(&mut i, QoS::AtLeastOnce, 4));
    }

    #[test]
    fn publish_to_sys_is_forbidden_and_closes_its_flow() {
        let mut i = Inbound::new(limits());
        for pid in 1..=3 {
            match i.accept(
                publish("$SYS/x", QoS::AtLeastOnce, pid, None),
                &"c".into(),
                0,
            ) {
                Ok(None) => {}
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn message_expiry_interval_becomes_an_absolute_deadline() {
        let mut i = Inbound::new(limits());
        let mut p = publish("a", QoS::AtMostOnce, 0, None);
        p.properties.message_expiry_interval = Some(5);
        match i.accept(p, &"me".into(), 1_000) {
            Ok(Some(msg)) => {
                assert_eq!(msg.expires_ms, Some(6_000));
                assert_eq!(&*msg.publisher, "me");
                assert_eq!(msg.created_ms, 1_000);
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }
}
