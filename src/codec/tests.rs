//! Codec tests: property-based round trips for every packet type and
//! protocol, and hand-written vectors for the wire rules and every error.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::reason;
use super::*;

const ALL: [Protocol; 3] = [Protocol::V31, Protocol::V311, Protocol::V5];
const MAX_SUB_ID: u32 = 268_435_455;

// ------------------------------------------------------------ strategies

fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,12}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[^\\x00+#]{1,12}"
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn user_props() -> impl Strategy<Value = UserProperties> {
    vec((text(), text()), 0..3)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..=1)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1u16..
}

fn ack_props(v5: bool) -> BoxedStrategy<AckProperties> {
    if !v5 {
        return Just(AckProperties::default()).boxed();
    }
    (option::of(text()), user_props())
        .prop_map(|(reason_string, user_properties)| AckProperties {
            reason_string,
            user_properties,
        })
        .boxed()
}

fn connect_props(v5: bool) -> BoxedStrategy<ConnectProperties> {
    if !v5 {
        return Just(ConnectProperties::default()).boxed();
    }
    (
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(1u32..),
        option::of(any::<u16>()),
        flag(),
        flag(),
        user_props(),
        option::of(text()),
        option::of(bin()),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, up, method, data)| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: up,
                // Authentication Data requires an Authentication Method.
                authentication_data: method.as_ref().and(data),
                authentication_method: method,
            },
        )
        .boxed()
}

fn will(v5: bool) -> impl Strategy<Value = LastWill> {
    let props = if v5 {
        (
            option::of(any::<u32>()),
            flag(),
            option::of(any::<u32>()),
            option::of(text()),
            option::of(topic_name()),
            option::of(bin()),
            user_props(),
        )
            .prop_map(|(d, pfi, mei, ct, rt, cd, up)| WillProperties {
                delay_interval: d,
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                content_type: ct,
                response_topic: rt,
                correlation_data: cd,
                user_properties: up,
            })
            .boxed()
    } else {
        Just(WillProperties::default()).boxed()
    };
    (topic_name(), bin(), qos(), any::<bool>(), props).prop_map(
        |(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    )
}

fn connect(proto: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = proto.is_v5();
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will(v5)),
        option::of(text()),
        option::of(bin()),
        connect_props(v5),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.x cannot send a password without a user name.
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: Some(proto),
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack_props() -> impl Strategy<Value = ConnAckProperties> {
    let a = (
        option::of(any::<u32>()),
        option::of(1u16..),
        flag(),
        flag(),
        option::of(1u32..),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        user_props(),
    );
    let b = (
        flag(),
        flag(),
        flag(),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(bin()),
    );
    (a, b).prop_map(
        |((sei, rm, mq, ra, mps, aci, tam, rs, up), (wsa, sia, ssa, ska, ri, sr, am, ad))| {
            ConnAckProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_qos: mq,
                retain_available: ra,
                maximum_packet_size: mps,
                assigned_client_identifier: aci,
                topic_alias_maximum: tam,
                reason_string: rs,
                user_properties: up,
                wildcard_subscription_available: wsa,
                subscription_identifiers_available: sia,
                shared_subscription_available: ssa,
                server_keep_alive: ska,
                response_information: ri,
                server_reference: sr,
                authentication_method: am,
                authentication_data: ad,
            }
        },
    )
}

fn connack(proto: Protocol) -> BoxedStrategy<Packet> {
    match proto {
        Protocol::V5 => (
            any::<bool>(),
            select(reason::CONNACK_CODES),
            connack_props(),
        )
            .prop_map(|(session_present, code, properties)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    code,
                    properties,
                })
            })
            .boxed(),
        _ => {
            // The 5.0 codes that 3.x return codes 0..=5 stand for.
            let codes: &'static [u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
            (any::<bool>(), select(codes))
                .prop_map(move |(session_present, code)| {
                    Packet::ConnAck(ConnAck {
                        // 3.1 has no session present flag.
                        session_present: session_present && proto == Protocol::V311,
                        code,
                        properties: ConnAckProperties::default(),
                    })
                })
                .boxed()
        }
    }
}

fn publish_props(v5: bool) -> BoxedStrategy<PublishProperties> {
    if !v5 {
        return Just(PublishProperties::default()).boxed();
    }
    (
        flag(),
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(topic_name()),
        option::of(bin()),
        user_props(),
        vec(1..=MAX_SUB_ID, 0..3),
        option::of(text()),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, up, ids, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            subscription_identifiers: ids,
            content_type: ct,
        })
        .boxed()
}

fn publish(proto: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = proto.is_v5();
    // 5.0 may send an empty topic together with a topic alias.
    let topic = if v5 {
        "[^\\x00+#]{0,12}".boxed()
    } else {
        topic_name().boxed()
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic,
        packet_id(),
        vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        publish_props(v5),
    )
        .prop_map(|(qos, dup, retain, topic, pid, payload, mut properties)| {
            let at_most_once = qos == QoS::AtMostOnce;
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = Some(1);
            }
            Packet::Publish(Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: if at_most_once { 0 } else { pid },
                payload,
                properties,
            })
        })
}

fn pub_resp(proto: Protocol, codes: &'static [u8]) -> BoxedStrategy<PubResp> {
    if !proto.is_v5() {
        return packet_id()
            .prop_map(|packet_id| PubResp {
                packet_id,
                ..PubResp::default()
            })
            .boxed();
    }
    (packet_id(), select(codes), ack_props(true))
        .prop_map(|(packet_id, reason, properties)| PubResp {
            packet_id,
            reason,
            properties,
        })
        .boxed()
}

fn sub_options(v5: bool) -> BoxedStrategy<SubOptions> {
    if !v5 {
        return qos()
            .prop_map(|qos| SubOptions {
                qos,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            })
            .boxed();
    }
    (qos(), any::<bool>(), any::<bool>(), 0u8..=2)
        .prop_map(
            |(qos, no_local, retain_as_published, retain_handling)| SubOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            },
        )
        .boxed()
}

fn subscribe(proto: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = proto.is_v5();
    let props = if v5 {
        (option::of(1..=MAX_SUB_ID), user_props())
            .prop_map(
                |(subscription_identifier, user_properties)| SubscribeProperties {
                    subscription_identifier,
                    user_properties,
                },
            )
            .boxed()
    } else {
        Just(SubscribeProperties::default()).boxed()
    };
    let filter =
        (text(), sub_options(v5)).prop_map(|(filter, options)| SubscribeFilter { filter, options });
    (packet_id(), vec(filter, 1..4), props).prop_map(|(packet_id, filters, properties)| {
        Packet::Subscribe(Subscribe {
            packet_id,
            filters,
            properties,
        })
    })
}

fn suback(proto: Protocol) -> impl Strategy<Value = Packet> {
    let codes = if proto.is_v5() {
        reason::SUBACK_CODES
    } else {
        reason::SUBACK_V3_CODES
    };
    (
        packet_id(),
        vec(select(codes), 0..4),
        ack_props(proto.is_v5()),
    )
        .prop_map(|(packet_id, reason_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties,
            })
        })
}

fn unsubscribe(proto: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = proto.is_v5();
    let props = if v5 {
        user_props().boxed()
    } else {
        Just(UserProperties::new()).boxed()
    };
    (packet_id(), vec(text(), 1..4), props).prop_map(|(packet_id, filters, user_properties)| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters,
            user_properties,
        })
    })
}

fn unsuback(proto: Protocol) -> BoxedStrategy<Packet> {
    if !proto.is_v5() {
        return packet_id()
            .prop_map(|packet_id| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    ..UnsubAck::default()
                })
            })
            .boxed();
    }
    (
        packet_id(),
        vec(select(reason::UNSUBACK_CODES), 0..4),
        ack_props(true),
    )
        .prop_map(|(packet_id, reason_codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes,
                properties,
            })
        })
        .boxed()
}

fn disconnect(proto: Protocol) -> BoxedStrategy<Packet> {
    if !proto.is_v5() {
        return Just(Packet::Disconnect(Disconnect::default())).boxed();
    }
    (
        select(reason::DISCONNECT_CODES),
        option::of(any::<u32>()),
        option::of(text()),
        user_props(),
        option::of(text()),
    )
        .prop_map(|(reason, sei, rs, up, sr)| {
            Packet::Disconnect(Disconnect {
                reason,
                properties: DisconnectProperties {
                    session_expiry_interval: sei,
                    reason_string: rs,
                    user_properties: up,
                    server_reference: sr,
                },
            })
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        select(reason::AUTH_CODES),
        option::of(text()),
        option::of(bin()),
        option::of(text()),
        user_props(),
    )
        .prop_map(|(reason, am, ad, rs, up)| {
            Packet::Auth(Auth {
                reason,
                properties: AuthProperties {
                    authentication_method: am,
                    authentication_data: ad,
                    reason_string: rs,
                    user_properties: up,
                },
            })
        })
}

/// Any packet whose field values are representable in `proto`.
fn packet(proto: Protocol) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(proto),
        connack(proto),
        publish(proto),
        pub_resp(proto, reason::PUBACK_PUBREC_CODES).prop_map(Packet::PubAck),
        pub_resp(proto, reason::PUBACK_PUBREC_CODES).prop_map(Packet::PubRec),
        pub_resp(proto, reason::PUBREL_PUBCOMP_CODES).prop_map(Packet::PubRel),
        pub_resp(proto, reason::PUBREL_PUBCOMP_CODES).prop_map(Packet::PubComp),
        subscribe(proto),
        suback(proto),
        unsubscribe(proto),
        unsuback(proto),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(proto),
    ];
    if proto.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn protocol_and_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    select(&ALL[..]).prop_flat_map(|proto| (Just(proto), packet(proto)))
}

// --------------------------------------------------------------- helpers

fn enc(packet: &Packet, proto: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, proto, &mut out).expect("encode");
    out.to_vec()
}

fn dec(bytes: &[u8], proto: Protocol) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode(&mut buf, proto, usize::MAX)
}

fn dec_ok(bytes: &[u8], proto: Protocol) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, proto, usize::MAX)
        .expect("decode")
        .expect("complete packet");
    assert!(buf.is_empty(), "whole packet consumed");
    packet
}

fn dec_err(bytes: &[u8], proto: Protocol) -> DecodeError {
    dec(bytes, proto).expect_err("decode should fail")
}

fn assert_malformed(bytes: &[u8], proto: Protocol) -> DecodeError {
    let err = dec_err(bytes, proto);
    assert!(
        matches!(err, DecodeError::MalformedPacket(_)),
        "expected malformed, got {err:?}"
    );
    assert_eq!(err.reason_code(), 0x81);
    err
}

fn assert_protocol_error(bytes: &[u8], proto: Protocol) -> DecodeError {
    let err = dec_err(bytes, proto);
    assert!(
        matches!(err, DecodeError::ProtocolError(_)),
        "expected protocol error, got {err:?}"
    );
    assert_eq!(err.reason_code(), 0x82);
    err
}

fn assert_topic_invalid(bytes: &[u8], proto: Protocol) -> DecodeError {
    let err = dec_err(bytes, proto);
    assert!(
        matches!(err, DecodeError::TopicNameInvalid(_)),
        "expected topic name invalid, got {err:?}"
    );
    assert_eq!(err.reason_code(), 0x90);
    err
}

/// A CONNECT with the given protocol name, level, connect flags and payload.
fn raw_connect(name: &[u8], level: u8, flags: u8, props: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if let Some(props) = props {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    let mut out = vec![0x10, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

// ------------------------------------------------------ property tests

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn round_trip_every_packet_type_v31(p in packet(Protocol::V31)) {
        let bytes = enc(&p, Protocol::V31);
        prop_assert_eq!(dec(&bytes, Protocol::V31), Ok(Some(p)));
    }

    #[test]
    fn round_trip_every_packet_type_v311(p in packet(Protocol::V311)) {
        let bytes = enc(&p, Protocol::V311);
        prop_assert_eq!(dec(&bytes, Protocol::V311), Ok(Some(p)));
    }

    #[test]
    fn round_trip_every_packet_type_v5(p in packet(Protocol::V5)) {
        let bytes = enc(&p, Protocol::V5);
        prop_assert_eq!(dec(&bytes, Protocol::V5), Ok(Some(p)));
    }
}

proptest! {
    #[test]
    fn a_publish_from_borrowed_parts_is_the_bytes_of_the_same_publish(
        p in publish(Protocol::V5),
        proto in prop_oneof![Just(Protocol::V31), Just(Protocol::V311), Just(Protocol::V5)],
    ) {
        let Packet::Publish(p) = p else { unreachable!("publish() makes PUBLISH packets") };
        let mut whole = BytesMut::new();
        let mut parts = BytesMut::new();
        encode(&Packet::Publish(p.clone()), proto, &mut whole).unwrap();
        encode_publish(&p.borrowed(), proto, &mut parts).unwrap();
        prop_assert_eq!(&whole, &parts);
        prop_assert_eq!(publish_len(&p.borrowed(), proto), parts.len());
    }

    #[test]
    fn encoded_len_equals_bytes_written((proto, p) in protocol_and_packet()) {
        let mut out = BytesMut::from(&b"prefix"[..]);
        encode(&p, proto, &mut out).unwrap();
        prop_assert_eq!(out.len() - 6, encoded_len(&p, proto));
        prop_assert_eq!(&out[..6], b"prefix");
    }

    #[test]
    fn decode_consumes_exactly_one_packet_from_a_stream(
        (proto, p) in protocol_and_packet(),
        q in any::<u16>().prop_map(|id| PubResp { packet_id: id.max(1), ..PubResp::default() }),
    ) {
        let mut buf = BytesMut::new();
        encode(&p, proto, &mut buf).unwrap();
        encode(&Packet::PubAck(q.clone()), proto, &mut buf).unwrap();
        let second_len = encoded_len(&Packet::PubAck(q.clone()), proto);
        prop_assert_eq!(decode(&mut buf, proto, usize::MAX), Ok(Some(p)));
        prop_assert_eq!(buf.len(), second_len);
        prop_assert_eq!(decode(&mut buf, proto, usize::MAX), Ok(Some(Packet::PubAck(q))));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode(&mut buf, proto, usize::MAX), Ok(None));
    }

    #[test]
    fn every_prefix_of_a_valid_encoding_needs_more_bytes((proto, p) in protocol_and_packet()) {
        let bytes = enc(&p, proto);
        for n in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..n]);
            prop_assert_eq!(decode(&mut buf, proto, usize::MAX), Ok(None), "prefix {}", n);
            prop_assert_eq!(&buf[..], &bytes[..n], "buffer untouched");
        }
    }

    #[test]
    fn max_packet_size_counts_the_whole_packet((proto, p) in protocol_and_packet()) {
        let bytes = enc(&p, proto);
        let size = bytes.len();
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode(&mut buf, proto, size), Ok(Some(p)));
        // Too large is detected from the fixed header alone.
        let header_len = bytes[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 2;
        let mut buf = BytesMut::from(&bytes[..header_len]);
        prop_assert_eq!(
            decode(&mut buf, proto, size - 1),
            Err(DecodeError::PacketTooLarge { size, max: size - 1 })
        );
    }

    #[test]
    fn connect_is_decoded_by_its_own_protocol_level(
        (proto, p) in select(&ALL[..]).prop_flat_map(|proto| (Just(proto), connect(proto))),
        other in select(&ALL[..]),
    ) {
        let bytes = enc(&p, proto);
        prop_assert_eq!(dec(&bytes, other), Ok(Some(p)));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        bytes in vec(any::<u8>(), 0..128),
        proto in select(&ALL[..]),
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, proto, usize::MAX) {}
    }

    #[test]
    fn mutated_encodings_never_panic_and_what_decodes_round_trips(
        (proto, p) in protocol_and_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = enc(&p, proto);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(decoded)) = decode(&mut buf, proto, usize::MAX) {
            let wire_proto = match &decoded {
                Packet::Connect(c) => c.protocol.unwrap(),
                _ => proto,
            };
            let again = enc(&decoded, wire_proto);
            prop_assert_eq!(again.len(), encoded_len(&decoded, wire_proto));
            prop_assert_eq!(dec(&again, wire_proto), Ok(Some(decoded)));
        }
    }
}

// ------------------------------------------------------ fixed header

#[test]
fn empty_buffer_needs_more_bytes() {
    for proto in ALL {
        assert_eq!(dec(&[], proto), Ok(None));
    }
}

#[test]
fn incomplete_packet_leaves_buffer_untouched() {
    let mut buf = BytesMut::from(&[0x30, 0x05, 0x00, 0x01, b'a'][..]);
    assert_eq!(decode(&mut buf, Protocol::V311, usize::MAX), Ok(None));
    assert_eq!(&buf[..], &[0x30, 0x05, 0x00, 0x01, b'a']);
}

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    assert_malformed(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Protocol::V311);
    // Detected as soon as the fourth byte still has its continuation bit.
    assert_malformed(&[0x30, 0x80, 0x80, 0x80, 0x80], Protocol::V5);
}

#[test]
fn remaining_length_of_four_bytes_is_read_in_full() {
    // 0xFF 0xFF 0xFF 0x7F = 268,435,455: only the header is there.
    assert_eq!(
        dec(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], Protocol::V311),
        Ok(None)
    );
}

#[test]
fn oversized_packet_is_detected_from_the_fixed_header_alone() {
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0x7F][..]); // remaining length 16383
    let err = decode(&mut buf, Protocol::V5, 1024).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 3 + 16383,
            max: 1024
        }
    );
    assert_eq!(err.reason_code(), 0x95);
}

#[test]
fn packet_type_0_is_malformed() {
    assert_malformed(&[0x00, 0x00], Protocol::V311);
}

#[test]
fn auth_packet_type_is_malformed_before_mqtt5() {
    assert_malformed(&[0xF0, 0x00], Protocol::V31);
    assert_malformed(&[0xF0, 0x00], Protocol::V311);
    assert_eq!(
        dec_ok(&[0xF0, 0x00], Protocol::V5),
        Packet::Auth(Auth::default())
    );
}

#[test]
fn pubrel_with_wrong_flags_is_malformed() {
    assert_malformed(&[0x60, 0x02, 0x00, 0x01], Protocol::V311);
    assert_malformed(&[0x60, 0x02, 0x00, 0x01], Protocol::V5);
    assert_malformed(&[0x6A, 0x02, 0x00, 0x01], Protocol::V311);
    let ok = Packet::PubRel(PubResp {
        packet_id: 1,
        ..PubResp::default()
    });
    assert_eq!(dec_ok(&[0x62, 0x02, 0x00, 0x01], Protocol::V311), ok);
}

#[test]
fn mqtt31_does_not_check_fixed_header_flags_of_acks() {
    // 3.1 sets DUP on a resent PUBREL.
    let ok = Packet::PubRel(PubResp {
        packet_id: 1,
        ..PubResp::default()
    });
    assert_eq!(dec_ok(&[0x6A, 0x02, 0x00, 0x01], Protocol::V31), ok);
}

#[test]
fn subscribe_and_unsubscribe_with_wrong_flags_are_malformed() {
    assert_malformed(&[0x80, 0x06, 0, 1, 0, 1, b'a', 0], Protocol::V311);
    assert_malformed(&[0xA0, 0x05, 0, 1, 0, 1, b'a'], Protocol::V311);
}

#[test]
fn reserved_flags_on_other_packets_are_malformed() {
    assert_malformed(&[0x41, 0x02, 0x00, 0x01], Protocol::V311); // PUBACK
    assert_malformed(&[0xC1, 0x00], Protocol::V5); // PINGREQ
    assert_malformed(&[0xE2, 0x00], Protocol::V5); // DISCONNECT
    assert_malformed(&[0x92, 0x03, 0, 1, 0], Protocol::V311); // SUBACK
}

// ------------------------------------------------------------ CONNECT

#[test]
fn connect_mqtt311_known_bytes() {
    let bytes = raw_connect(b"MQTT", 4, 0x02, None, &[0, 3, b'a', b'b', b'c']);
    let expected = Packet::Connect(Box::new(Connect {
        protocol: Some(Protocol::V311),
        clean_start: true,
        keep_alive: 60,
        client_id: "abc".into(),
        ..Connect::default()
    }));
    assert_eq!(dec_ok(&bytes, Protocol::V311), expected);
    assert_eq!(enc(&expected, Protocol::V311), bytes);
}

#[test]
fn connect_mqtt31_uses_protocol_name_mqisdp_level_3() {
    let bytes = raw_connect(b"MQIsdp", 3, 0x02, None, &[0, 1, b'c']);
    let expected = Packet::Connect(Box::new(Connect {
        protocol: Some(Protocol::V31),
        clean_start: true,
        keep_alive: 60,
        client_id: "c".into(),
        ..Connect::default()
    }));
    // Decoded by its own level even when the connection default says 5.
    assert_eq!(dec_ok(&bytes, Protocol::V5), expected);
    assert_eq!(enc(&expected, Protocol::V31), bytes);
}

#[test]
fn connect_mqtt5_with_properties_and_will() {
    let props = [0x11, 0, 0, 0, 30, 0x21, 0, 10];
    let mut payload = vec![0, 1, b'c'];
    payload.extend_from_slice(&[2, 0x18, 5]); // will properties: delay 5... (truncated u32)
    let bytes = raw_connect(b"MQTT", 5, 0x06, Some(&props), &payload);
    assert_malformed(&bytes, Protocol::V5);

    let mut payload = vec![0, 1, b'c'];
    payload.extend_from_slice(&[5, 0x18, 0, 0, 0, 5]); // will delay 5
    payload.extend_from_slice(&[0, 1, b't', 0, 2, b'h', b'i']);
    let bytes = raw_connect(b"MQTT", 5, 0x06, Some(&props), &payload);
    let expected = Packet::Connect(Box::new(Connect {
        protocol: Some(Protocol::V5),
        clean_start: true,
        keep_alive: 60,
        client_id: "c".into(),
        will: Some(LastWill {
            topic: "t".into(),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties {
                delay_interval: Some(5),
                ..WillProperties::default()
            },
        }),
        properties: ConnectProperties {
            session_expiry_interval: Some(30),
            receive_maximum: Some(10),
            ..ConnectProperties::default()
        },
        ..Connect::default()
    }));
    assert_eq!(dec_ok(&bytes, Protocol::V311), expected);
    assert_eq!(enc(&expected, Protocol::V5), bytes);
}

#[test]
fn unknown_protocol_level_is_unsupported_protocol() {
    let bytes = raw_connect(b"MQTT", 6, 0x02, None, &[0, 0]);
    let err = dec_err(&bytes, Protocol::V311);
    assert_eq!(
        err,
        DecodeError::UnsupportedProtocol {
            name: "MQTT".into(),
            level: 6
        }
    );
    assert_eq!(err.reason_code(), 0x84);
    assert_eq!(reason::connack_v3_return_code(err.reason_code()), 1);
}

#[test]
fn mismatched_protocol_name_and_level_is_unsupported_protocol() {
    for (name, level) in [
        (&b"MQTT"[..], 3),
        (&b"MQIsdp"[..], 4),
        (&b"MQIsdp"[..], 5),
        (&b"HTTP"[..], 4),
    ] {
        let err = dec_err(&raw_connect(name, level, 0x02, None, &[0, 0]), Protocol::V5);
        assert!(
            matches!(err, DecodeError::UnsupportedProtocol { .. }),
            "{err:?}"
        );
    }
}

#[test]
fn connect_reserved_flag_is_malformed() {
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x03, None, &[0, 0]),
        Protocol::V311,
    );
    assert_malformed(
        &raw_connect(b"MQTT", 5, 0x03, Some(&[]), &[0, 0]),
        Protocol::V5,
    );
}

#[test]
fn connect_fixed_header_flags_must_be_zero() {
    let mut bytes = raw_connect(b"MQTT", 4, 0x02, None, &[0, 0]);
    bytes[0] = 0x12;
    assert_malformed(&bytes, Protocol::V311);
}

#[test]
fn will_qos_or_retain_without_will_flag_is_malformed() {
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x0A, None, &[0, 0]),
        Protocol::V311,
    );
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x22, None, &[0, 0]),
        Protocol::V311,
    );
}

#[test]
fn will_qos_3_is_malformed() {
    let payload = [0, 0, 0, 1, b't', 0, 0];
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x1E, None, &payload),
        Protocol::V311,
    );
}

#[test]
fn will_topic_with_wildcard_is_topic_name_invalid() {
    let payload = [0, 0, 0, 1, b'#', 0, 0];
    assert_topic_invalid(
        &raw_connect(b"MQTT", 4, 0x06, None, &payload),
        Protocol::V311,
    );
}

#[test]
fn password_without_user_name_is_malformed_in_mqtt311_but_allowed_in_mqtt5() {
    let payload = [0, 0, 0, 2, b'p', b'w'];
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x42, None, &payload),
        Protocol::V311,
    );
    let p = dec_ok(
        &raw_connect(b"MQTT", 5, 0x42, Some(&[]), &payload),
        Protocol::V5,
    );
    let Packet::Connect(c) = p else {
        panic!("not a CONNECT")
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn password_without_user_name_cannot_be_encoded_for_mqtt311() {
    let p = Packet::Connect(Box::new(Connect {
        password: Some(Bytes::from_static(b"pw")),
        ..Connect::default()
    }));
    let mut out = BytesMut::new();
    assert!(matches!(
        encode(&p, Protocol::V311, &mut out),
        Err(EncodeError::NotRepresentable { .. })
    ));
    assert!(out.is_empty(), "nothing written on error");
}

#[test]
fn mqtt31_connect_tolerates_missing_user_name_and_password() {
    let p = dec_ok(
        &raw_connect(b"MQIsdp", 3, 0xC2, None, &[0, 1, b'c']),
        Protocol::V31,
    );
    let Packet::Connect(c) = p else {
        panic!("not a CONNECT")
    };
    assert_eq!((c.username, c.password), (None, None));
    // ...but not in 3.1.1.
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0xC2, None, &[0, 1, b'c']),
        Protocol::V311,
    );
}

#[test]
fn connect_trailing_bytes_are_malformed() {
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x02, None, &[0, 1, b'c', 0xFF]),
        Protocol::V311,
    );
}

#[test]
fn authentication_data_without_method_is_protocol_error() {
    let props = [0x16, 0, 1, b'x'];
    assert_protocol_error(
        &raw_connect(b"MQTT", 5, 0x02, Some(&props), &[0, 0]),
        Protocol::V5,
    );
}

#[test]
fn receive_maximum_zero_is_protocol_error() {
    let props = [0x21, 0, 0];
    assert_protocol_error(
        &raw_connect(b"MQTT", 5, 0x02, Some(&props), &[0, 0]),
        Protocol::V5,
    );
}

#[test]
fn request_problem_information_must_be_0_or_1() {
    let props = [0x17, 2];
    assert_protocol_error(
        &raw_connect(b"MQTT", 5, 0x02, Some(&props), &[0, 0]),
        Protocol::V5,
    );
}

#[test]
fn client_id_with_invalid_utf8_or_nul_is_malformed() {
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x02, None, &[0, 2, 0xC3, 0x28]),
        Protocol::V311,
    );
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x02, None, &[0, 2, b'a', 0]),
        Protocol::V311,
    );
    // UTF-16 surrogate halves encoded as UTF-8 (CESU) are not valid UTF-8.
    assert_malformed(
        &raw_connect(b"MQTT", 4, 0x02, None, &[0, 3, 0xED, 0xA0, 0x80]),
        Protocol::V311,
    );
}

// ------------------------------------------------------------ CONNACK

#[test]
fn connack_v3_return_code_maps_reason_codes() {
    assert_eq!(reason::connack_v3_return_code(0x00), 0);
    assert_eq!(reason::connack_v3_return_code(0x84), 1);
    assert_eq!(reason::connack_v3_return_code(0x85), 2);
    assert_eq!(reason::connack_v3_return_code(0x88), 3);
    assert_eq!(reason::connack_v3_return_code(0x89), 3);
    assert_eq!(reason::connack_v3_return_code(0x8A), 3);
    assert_eq!(reason::connack_v3_return_code(0x86), 4);
    assert_eq!(reason::connack_v3_return_code(0x87), 5);
    assert_eq!(reason::connack_v3_return_code(0x80), 3);
    assert_eq!(reason::connack_v3_return_code(0x97), 3);
}

#[test]
fn connack_encodes_return_codes_for_3x_and_reason_codes_for_5() {
    let p = Packet::ConnAck(ConnAck {
        session_present: false,
        code: reason::BAD_USER_NAME_OR_PASSWORD,
        properties: ConnAckProperties::default(),
    });
    assert_eq!(enc(&p, Protocol::V311), [0x20, 0x02, 0x00, 0x04]);
    assert_eq!(enc(&p, Protocol::V5), [0x20, 0x03, 0x00, 0x86, 0x00]);
    let banned = Packet::ConnAck(ConnAck {
        code: reason::BANNED,
        ..ConnAck::default()
    });
    assert_eq!(enc(&banned, Protocol::V311), [0x20, 0x02, 0x00, 0x03]);
}

#[test]
fn connack_3x_return_code_decodes_to_reason_code() {
    assert_eq!(
        dec_ok(&[0x20, 0x02, 0x01, 0x05], Protocol::V311),
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: reason::NOT_AUTHORIZED,
            properties: ConnAckProperties::default(),
        })
    );
    assert_protocol_error(&[0x20, 0x02, 0x00, 0x06], Protocol::V311);
    assert_malformed(&[0x20, 0x02, 0x02, 0x00], Protocol::V311);
}

#[test]
fn connack_mqtt31_has_no_session_present_flag() {
    let p = Packet::ConnAck(ConnAck {
        session_present: true,
        ..ConnAck::default()
    });
    assert_eq!(enc(&p, Protocol::V31), [0x20, 0x02, 0x00, 0x00]);
}

// ------------------------------------------------------------ PUBLISH

#[test]
fn publish_topic_with_wildcard_is_topic_name_invalid() {
    assert_topic_invalid(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+'], Protocol::V311);
    assert_topic_invalid(&[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'#', 0], Protocol::V5);
}

#[test]
fn publish_topic_with_invalid_utf8_is_malformed() {
    let err = assert_malformed(&[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28], Protocol::V311);
    let msg = err.to_string();
    assert!(
        msg.contains("PUBLISH") && msg.contains("topic name"),
        "{msg}"
    );
}

#[test]
fn publish_topic_with_nul_is_malformed() {
    assert_malformed(&[0x30, 0x04, 0x00, 0x02, b'a', 0x00], Protocol::V311);
}

#[test]
fn publish_qos_3_is_malformed() {
    assert_malformed(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01], Protocol::V311);
}

#[test]
fn publish_qos_0_with_dup_is_malformed() {
    assert_malformed(&[0x38, 0x03, 0x00, 0x01, b'a'], Protocol::V311);
}

#[test]
fn packet_id_0_on_qos_1_publish_is_protocol_error() {
    assert_protocol_error(&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00], Protocol::V311);
    assert_protocol_error(
        &[0x34, 0x06, 0x00, 0x01, b'a', 0x00, 0x00, 0x00],
        Protocol::V5,
    );
}

#[test]
fn packet_id_0_on_acks_is_protocol_error() {
    assert_protocol_error(&[0x40, 0x02, 0x00, 0x00], Protocol::V311);
    assert_protocol_error(&[0x90, 0x03, 0x00, 0x00, 0x00], Protocol::V311);
    assert_protocol_error(&[0x82, 0x06, 0, 0, 0, 1, b'a', 0], Protocol::V311);
}

#[test]
fn empty_topic_is_topic_name_invalid_in_3x() {
    assert_topic_invalid(&[0x30, 0x02, 0x00, 0x00], Protocol::V311);
    assert_topic_invalid(&[0x30, 0x02, 0x00, 0x00], Protocol::V31);
}

#[test]
fn empty_topic_needs_a_topic_alias_in_mqtt5() {
    assert_topic_invalid(&[0x30, 0x03, 0x00, 0x00, 0x00], Protocol::V5);
    let p = dec_ok(
        &[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, b'x'],
        Protocol::V5,
    );
    assert_eq!(
        p,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: String::new(),
            packet_id: 0,
            payload: Bytes::from_static(b"x"),
            properties: PublishProperties {
                topic_alias: Some(5),
                ..PublishProperties::default()
            },
        })
    );
}

#[test]
fn topic_alias_0_is_protocol_error() {
    assert_protocol_error(
        &[0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00],
        Protocol::V5,
    );
}

#[test]
fn duplicate_property_is_protocol_error() {
    let err = assert_protocol_error(
        &[
            0x30, 0x0A, 0x00, 0x01, b'a', 0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02,
        ],
        Protocol::V5,
    );
    assert!(err.to_string().contains("Topic Alias"), "{err}");
}

#[test]
fn repeated_user_properties_and_subscription_identifiers_are_allowed_in_publish() {
    let bytes = [
        0x30, 0x16, 0x00, 0x01, b'a', 0x12, // properties: 18 bytes
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'w', // same key again
        0x0B, 0x01, 0x0B, 0x02, // subscription identifiers 1, 2
    ];
    let Packet::Publish(p) = dec_ok(&bytes, Protocol::V5) else {
        panic!("not a PUBLISH")
    };
    assert_eq!(
        p.properties.user_properties,
        vec![("k".into(), "v".into()), ("k".into(), "w".into())]
    );
    assert_eq!(p.properties.subscription_identifiers, vec![1, 2]);
}

#[test]
fn property_not_allowed_on_packet_is_malformed() {
    // Session Expiry Interval in PUBLISH.
    let err = assert_malformed(
        &[0x30, 0x09, 0x00, 0x01, b'a', 0x05, 0x11, 0, 0, 0, 1],
        Protocol::V5,
    );
    assert!(err.to_string().contains("Session Expiry Interval"), "{err}");
}

#[test]
fn unknown_property_id_is_malformed() {
    assert_malformed(
        &[0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x7F, 0x00],
        Protocol::V5,
    );
}

#[test]
fn property_length_beyond_packet_is_malformed() {
    assert_malformed(&[0x30, 0x05, 0x00, 0x01, b'a', 0x09, 0x01], Protocol::V5);
}

#[test]
fn subscription_identifier_0_is_protocol_error() {
    assert_protocol_error(
        &[0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x0B, 0x00],
        Protocol::V5,
    );
    assert_protocol_error(
        &[
            0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'a', 0x00,
        ],
        Protocol::V5,
    );
}

#[test]
fn payload_is_a_zero_copy_slice_of_the_buffer() {
    let mut buf = BytesMut::from(&[0x30, 0x06, 0x00, 0x01, b'a', b'x', b'y', b'z'][..]);
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, Protocol::V311, usize::MAX).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!(&p.payload[..], b"xyz");
    assert_eq!(p.payload.as_ptr() as usize, base + 5);
}

#[test]
fn publish_properties_are_ignored_when_encoding_3x() {
    let p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "t".into(),
        packet_id: 7,
        payload: Bytes::from_static(b"p"),
        properties: PublishProperties {
            message_expiry_interval: Some(9),
            ..PublishProperties::default()
        },
    };
    assert_eq!(
        enc(&Packet::Publish(p.clone()), Protocol::V311),
        [0x33, 0x06, 0x00, 0x01, b't', 0x00, 0x07, b'p']
    );
    assert_eq!(
        enc(&Packet::Publish(p), Protocol::V5),
        [0x33, 0x0C, 0x00, 0x01, b't', 0x00, 0x07, 0x05, 0x02, 0, 0, 0, 9, b'p']
    );
}

// ---------------------------------------- PUBACK PUBREC PUBREL PUBCOMP

#[test]
fn mqtt5_ack_short_forms_decode() {
    let success = Packet::PubAck(PubResp {
        packet_id: 1,
        ..PubResp::default()
    });
    assert_eq!(dec_ok(&[0x40, 0x02, 0x00, 0x01], Protocol::V5), success);
    let no_subscribers = Packet::PubAck(PubResp {
        packet_id: 1,
        reason: reason::NO_MATCHING_SUBSCRIBERS,
        ..PubResp::default()
    });
    assert_eq!(
        dec_ok(&[0x40, 0x03, 0x00, 0x01, 0x10], Protocol::V5),
        no_subscribers
    );
    assert_eq!(
        dec_ok(&[0x40, 0x04, 0x00, 0x01, 0x10, 0x00], Protocol::V5),
        no_subscribers
    );
}

#[test]
fn mqtt5_acks_encode_in_the_shortest_form() {
    let mut p = PubResp {
        packet_id: 1,
        ..PubResp::default()
    };
    assert_eq!(
        enc(&Packet::PubAck(p.clone()), Protocol::V5),
        [0x40, 2, 0, 1]
    );
    p.reason = reason::PACKET_IDENTIFIER_NOT_FOUND;
    assert_eq!(
        enc(&Packet::PubComp(p.clone()), Protocol::V5),
        [0x70, 3, 0, 1, 0x92]
    );
    p.properties.reason_string = Some("r".into());
    assert_eq!(
        enc(&Packet::PubRel(p), Protocol::V5),
        [0x62, 8, 0, 1, 0x92, 4, 0x1F, 0, 1, b'r']
    );
}

#[test]
fn mqtt3_acks_have_only_a_packet_id() {
    let p = PubResp {
        packet_id: 258,
        reason: reason::NO_MATCHING_SUBSCRIBERS,
        properties: AckProperties::default(),
    };
    assert_eq!(enc(&Packet::PubRec(p), Protocol::V311), [0x50, 2, 1, 2]);
    assert_malformed(&[0x40, 0x03, 0x00, 0x01, 0x00], Protocol::V311);
}

#[test]
fn reason_code_not_allowed_on_packet_is_protocol_error() {
    assert_protocol_error(&[0x40, 0x03, 0x00, 0x01, 0x04], Protocol::V5);
    assert_protocol_error(&[0x62, 0x03, 0x00, 0x01, 0x10], Protocol::V5);
    assert_protocol_error(&[0xE0, 0x01, 0x03], Protocol::V5);
}

// ------------------------------------------------ SUBSCRIBE and SUBACK

#[test]
fn subscribe_with_no_filters_is_protocol_error() {
    assert_protocol_error(&[0x82, 0x02, 0x00, 0x01], Protocol::V311);
    assert_protocol_error(&[0x82, 0x03, 0x00, 0x01, 0x00], Protocol::V5);
}

#[test]
fn unsubscribe_with_no_filters_is_protocol_error() {
    assert_protocol_error(&[0xA2, 0x02, 0x00, 0x01], Protocol::V311);
    assert_protocol_error(&[0xA2, 0x03, 0x00, 0x01, 0x00], Protocol::V5);
}

#[test]
fn subscription_options_reserved_bits_are_malformed() {
    assert_malformed(&[0x82, 0x06, 0, 1, 0, 1, b'a', 0x04], Protocol::V311);
    assert_malformed(&[0x82, 0x07, 0, 1, 0, 0, 1, b'a', 0x40], Protocol::V5);
    assert_malformed(&[0x82, 0x06, 0, 1, 0, 1, b'a', 0x03], Protocol::V311);
}

#[test]
fn retain_handling_3_is_protocol_error() {
    assert_protocol_error(&[0x82, 0x07, 0, 1, 0, 0, 1, b'a', 0x30], Protocol::V5);
}

#[test]
fn subscribe_options_decode_in_mqtt5() {
    let p = dec_ok(&[0x82, 0x07, 0, 1, 0, 0, 1, b'#', 0x2E], Protocol::V5);
    assert_eq!(
        p,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: "#".into(),
                options: SubOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 2,
                },
            }],
            properties: SubscribeProperties::default(),
        })
    );
}

#[test]
fn duplicate_subscription_identifier_in_subscribe_is_protocol_error() {
    assert_protocol_error(
        &[0x82, 0x0B, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0],
        Protocol::V5,
    );
}

#[test]
fn suback_for_mqtt311_maps_failures_to_0x80() {
    let p = Packet::SubAck(SubAck {
        packet_id: 1,
        reason_codes: vec![0, 1, 2, reason::NOT_AUTHORIZED, reason::UNSPECIFIED_ERROR],
        properties: AckProperties::default(),
    });
    assert_eq!(
        enc(&p, Protocol::V311),
        [0x90, 7, 0, 1, 0, 1, 2, 0x80, 0x80]
    );
    assert_eq!(
        enc(&p, Protocol::V5),
        [0x90, 8, 0, 1, 0, 0, 1, 2, 0x87, 0x80]
    );
    assert_protocol_error(&[0x90, 0x03, 0, 1, 0x87], Protocol::V311);
}

// -------------------------------------------------------------- UNSUBACK

#[test]
fn unsuback_for_3x_has_only_the_packet_id() {
    let p = Packet::UnsubAck(UnsubAck {
        packet_id: 7,
        reason_codes: vec![reason::NO_SUBSCRIPTION_EXISTED],
        properties: AckProperties::default(),
    });
    assert_eq!(enc(&p, Protocol::V311), [0xB0, 2, 0, 7]);
    assert_eq!(enc(&p, Protocol::V5), [0xB0, 4, 0, 7, 0, 0x11]);
    assert_malformed(&[0xB0, 3, 0, 7, 0], Protocol::V311);
}

// ---------------------------------------- PINGREQ DISCONNECT AUTH

#[test]
fn pingreq_with_a_body_is_malformed() {
    assert_malformed(&[0xC0, 0x01, 0x00], Protocol::V311);
    assert_eq!(dec_ok(&[0xC0, 0x00], Protocol::V311), Packet::PingReq);
    assert_eq!(enc(&Packet::PingResp, Protocol::V5), [0xD0, 0x00]);
}

#[test]
fn mqtt3_disconnect_has_no_body() {
    assert_malformed(&[0xE0, 0x01, 0x00], Protocol::V311);
    let d = Packet::Disconnect(Disconnect {
        reason: reason::SERVER_SHUTTING_DOWN,
        ..Disconnect::default()
    });
    assert_eq!(enc(&d, Protocol::V311), [0xE0, 0x00]);
}

#[test]
fn mqtt5_disconnect_short_forms() {
    assert_eq!(
        dec_ok(&[0xE0, 0x00], Protocol::V5),
        Packet::Disconnect(Disconnect::default())
    );
    let taken_over = Packet::Disconnect(Disconnect {
        reason: reason::SESSION_TAKEN_OVER,
        ..Disconnect::default()
    });
    assert_eq!(dec_ok(&[0xE0, 0x01, 0x8E], Protocol::V5), taken_over);
    assert_eq!(enc(&taken_over, Protocol::V5), [0xE0, 0x01, 0x8E]);
    assert_eq!(
        enc(&Packet::Disconnect(Disconnect::default()), Protocol::V5),
        [0xE0, 0x00]
    );
}

#[test]
fn auth_cannot_be_encoded_for_3x() {
    let mut out = BytesMut::new();
    assert!(matches!(
        encode(&Packet::Auth(Auth::default()), Protocol::V311, &mut out),
        Err(EncodeError::NotRepresentable { .. })
    ));
    assert!(out.is_empty());
    assert_eq!(enc(&Packet::Auth(Auth::default()), Protocol::V5), [0xF0, 0]);
    let cont = Packet::Auth(Auth {
        reason: reason::CONTINUE_AUTHENTICATION,
        ..Auth::default()
    });
    assert_eq!(enc(&cont, Protocol::V5), [0xF0, 2, 0x18, 0]);
}

// ------------------------------------------------------------- encoding

#[test]
fn string_longer_than_65535_bytes_cannot_be_encoded() {
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a".repeat(65_536),
        packet_id: 0,
        payload: Bytes::new(),
        properties: PublishProperties::default(),
    });
    let mut out = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        encode(&p, Protocol::V311, &mut out),
        Err(EncodeError::FieldTooLong {
            field: "topic name",
            len: 65_536
        })
    );
    assert_eq!(&out[..], b"keep", "output unchanged on error");
}

#[test]
fn remaining_length_above_268435455_cannot_be_encoded() {
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        packet_id: 0,
        payload: Bytes::from(vec![0u8; MAX_REMAINING_LENGTH - 2]),
        properties: PublishProperties::default(),
    });
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&p, Protocol::V311, &mut out),
        Err(EncodeError::PacketTooLarge(MAX_REMAINING_LENGTH + 1))
    );
    assert!(out.is_empty());
}

#[test]
fn subscription_identifier_above_268435455_cannot_be_encoded() {
    let p = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: "a".into(),
            options: SubOptions {
                qos: QoS::AtMostOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            },
        }],
        properties: SubscribeProperties {
            subscription_identifier: Some(268_435_456),
            ..SubscribeProperties::default()
        },
    });
    let mut out = BytesMut::new();
    assert!(matches!(
        encode(&p, Protocol::V5, &mut out),
        Err(EncodeError::ValueTooLarge { .. })
    ));
}

#[test]
fn remaining_length_uses_multi_byte_encoding() {
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        packet_id: 0,
        payload: Bytes::from(vec![7u8; 200]),
        properties: PublishProperties::default(),
    });
    let bytes = enc(&p, Protocol::V311);
    // 203 = 0xCB = 0b1_1001011 → 0xCB 0x01
    assert_eq!(&bytes[..3], &[0x30, 0xCB, 0x01]);
    assert_eq!(bytes.len(), encoded_len(&p, Protocol::V311));
    assert_eq!(dec_ok(&bytes, Protocol::V311), p);
}

#[test]
fn decode_error_reason_codes() {
    use std::borrow::Cow;
    assert_eq!(
        DecodeError::MalformedPacket(Cow::Borrowed("x")).reason_code(),
        0x81
    );
    assert_eq!(
        DecodeError::ProtocolError(Cow::Borrowed("x")).reason_code(),
        0x82
    );
    assert_eq!(
        DecodeError::UnsupportedProtocol {
            name: "MQTT".into(),
            level: 9
        }
        .reason_code(),
        0x84
    );
    assert_eq!(
        DecodeError::PacketTooLarge { size: 2, max: 1 }.reason_code(),
        0x95
    );
    assert_eq!(
        DecodeError::TopicNameInvalid(Cow::Borrowed("x")).reason_code(),
        0x90
    );
}

#[test]
fn bad_fixed_header_flags_are_rejected_before_the_body_arrives() {
    // Only the first two bytes of packets announcing 100-byte bodies.
    assert_malformed(&[0x60, 100], Protocol::V311); // PUBREL flags 0
    assert_malformed(&[0x36, 100], Protocol::V5); // PUBLISH QoS 3
    assert_malformed(&[0x41, 100], Protocol::V311); // PUBACK flags 1
    let err = assert_malformed(&[0x80, 100], Protocol::V5); // SUBSCRIBE flags 0
    assert!(err.to_string().contains("SUBSCRIBE"), "{err}");
    assert_eq!(dec(&[0x62, 100], Protocol::V311), Ok(None));
}

#[test]
fn mqtt31_connect_fixed_header_flags_are_judged_by_its_own_level() {
    let mut bytes = raw_connect(b"MQIsdp", 3, 0x02, None, &[0, 1, b'c']);
    bytes[0] = 0x12;
    assert!(matches!(
        dec_ok(&bytes, Protocol::V311),
        Packet::Connect(c) if c.protocol == Some(Protocol::V31)
    ));
    let mut bytes = raw_connect(b"MQTT", 4, 0x02, None, &[0, 1, b'c']);
    bytes[0] = 0x12;
    assert_malformed(&bytes, Protocol::V31);
}
