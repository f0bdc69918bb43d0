//! `cargo run -- <dir>`: writes one file per (protocol, packet) seed, plus a
//! few multi-packet streams, named by content so reruns are idempotent.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};

#[allow(dead_code, clippy::enum_variant_names)]
#[path = "../../../src/codec/mod.rs"]
mod codec;

use codec::*;

fn s(v: &str) -> String {
    v.to_owned()
}

fn user_props() -> UserProperties {
    vec![(s("k"), s("v")), (s("k"), s("w"))]
}

fn ack_props() -> AckProperties {
    AckProperties {
        reason_string: Some(s("why")),
        user_properties: user_props(),
    }
}

fn sub_options(qos: QoS, v5: bool) -> SubOptions {
    SubOptions {
        qos,
        no_local: v5,
        retain_as_published: v5,
        retain_handling: if v5 { 2 } else { 0 },
    }
}

fn packets(proto: Protocol) -> Vec<Packet> {
    let v5 = proto.is_v5();
    let mut out = vec![
        Packet::Connect(Box::new(Connect {
            protocol: Some(proto),
            clean_start: true,
            keep_alive: 60,
            client_id: s("client-1"),
            ..Connect::default()
        })),
        Packet::Connect(Box::new(Connect {
            protocol: Some(proto),
            clean_start: false,
            keep_alive: 0,
            client_id: s(""),
            will: Some(LastWill {
                topic: s("will/topic"),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: if v5 {
                    WillProperties {
                        delay_interval: Some(5),
                        payload_format_indicator: Some(1),
                        message_expiry_interval: Some(60),
                        content_type: Some(s("text/plain")),
                        response_topic: Some(s("re/sp")),
                        correlation_data: Some(Bytes::from_static(b"cd")),
                        user_properties: user_props(),
                    }
                } else {
                    WillProperties::default()
                },
            }),
            username: Some(s("user")),
            password: Some(Bytes::from_static(b"secret")),
            properties: if v5 {
                ConnectProperties {
                    session_expiry_interval: Some(3600),
                    receive_maximum: Some(10),
                    maximum_packet_size: Some(65536),
                    topic_alias_maximum: Some(8),
                    request_response_information: Some(1),
                    request_problem_information: Some(0),
                    user_properties: user_props(),
                    authentication_method: Some(s("SCRAM-SHA-1")),
                    authentication_data: Some(Bytes::from_static(b"\x00\x01")),
                }
            } else {
                ConnectProperties::default()
            },
        })),
        Packet::ConnAck(ConnAck {
            session_present: proto != Protocol::V31,
            code: 0,
            properties: if v5 {
                ConnAckProperties {
                    session_expiry_interval: Some(10),
                    receive_maximum: Some(20),
                    maximum_qos: Some(1),
                    retain_available: Some(1),
                    maximum_packet_size: Some(1 << 20),
                    assigned_client_identifier: Some(s("auto-1")),
                    topic_alias_maximum: Some(16),
                    reason_string: Some(s("ok")),
                    user_properties: user_props(),
                    wildcard_subscription_available: Some(1),
                    subscription_identifiers_available: Some(1),
                    shared_subscription_available: Some(0),
                    server_keep_alive: Some(30),
                    response_information: Some(s("resp")),
                    server_reference: Some(s("other:1883")),
                    authentication_method: Some(s("m")),
                    authentication_data: Some(Bytes::from_static(b"d")),
                }
            } else {
                ConnAckProperties::default()
            },
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: codec::reason::NOT_AUTHORIZED,
            properties: ConnAckProperties::default(),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: s("a/b"),
            packet_id: 0,
            payload: Bytes::from_static(b"hello"),
            properties: PublishProperties::default(),
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: s("sensors/\u{e9}t\u{e9}/temp"),
            packet_id: 65535,
            payload: Bytes::from(vec![0x55u8; 200]),
            properties: if v5 {
                PublishProperties {
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(120),
                    topic_alias: Some(3),
                    response_topic: Some(s("reply/here")),
                    correlation_data: Some(Bytes::from_static(b"corr")),
                    user_properties: user_props(),
                    subscription_identifiers: vec![1, 200, 268_435_455],
                    content_type: Some(s("application/json")),
                }
            } else {
                PublishProperties::default()
            },
        }),
        Packet::PubAck(PubResp {
            packet_id: 1,
            ..PubResp::default()
        }),
        Packet::PubRec(PubResp {
            packet_id: 2,
            reason: if v5 { 0x10 } else { 0 },
            ..PubResp::default()
        }),
        Packet::PubRel(PubResp {
            packet_id: 3,
            reason: if v5 { 0x92 } else { 0 },
            properties: if v5 {
                ack_props()
            } else {
                AckProperties::default()
            },
        }),
        Packet::PubComp(PubResp {
            packet_id: 4,
            ..PubResp::default()
        }),
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![
                SubscribeFilter {
                    filter: s("a/+/c"),
                    options: sub_options(QoS::AtLeastOnce, v5),
                },
                SubscribeFilter {
                    filter: s("#"),
                    options: sub_options(QoS::ExactlyOnce, false),
                },
            ],
            properties: if v5 {
                SubscribeProperties {
                    subscription_identifier: Some(7),
                    user_properties: user_props(),
                }
            } else {
                SubscribeProperties::default()
            },
        }),
        Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes: vec![1, 0x80],
            properties: if v5 {
                ack_props()
            } else {
                AckProperties::default()
            },
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 11,
            filters: vec![s("a/+/c"), s("#")],
            user_properties: if v5 { user_props() } else { Vec::new() },
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 11,
            reason_codes: if v5 { vec![0, 0x11] } else { Vec::new() },
            properties: if v5 {
                ack_props()
            } else {
                AckProperties::default()
            },
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    if v5 {
        out.push(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: s(""),
            packet_id: 9,
            payload: Bytes::from_static(b"aliased"),
            properties: PublishProperties {
                topic_alias: Some(3),
                ..PublishProperties::default()
            },
        }));
        out.push(Packet::Disconnect(Disconnect {
            reason: 0x8E,
            ..Disconnect::default()
        }));
        out.push(Packet::Disconnect(Disconnect {
            reason: 0x04,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("bye")),
                user_properties: user_props(),
                server_reference: Some(s("elsewhere")),
            },
        }));
        out.push(Packet::Auth(Auth::default()));
        out.push(Packet::Auth(Auth {
            reason: 0x18,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"challenge")),
                reason_string: Some(s("continue")),
                user_properties: user_props(),
            },
        }));
    }
    out
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: seedgen <corpus dir>"),
    );
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    let mut written = 0;
    let mut write = |bytes: &[u8]| {
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        let path = dir.join(format!("seed-{:016x}", h.finish()));
        std::fs::write(path, bytes).expect("write seed");
        written += 1;
    };
    for proto in [Protocol::V31, Protocol::V311, Protocol::V5] {
        let packets = packets(proto);
        let mut stream = BytesMut::new();
        for p in &packets {
            let mut out = BytesMut::new();
            encode(p, proto, &mut out).expect("encode seed");
            write(&out);
            // A CONNECT followed by the others, as a connection would send them.
            encode(p, proto, &mut stream).expect("encode seed");
        }
        write(&stream);
    }
    println!("wrote {written} seeds to {}", dir.display());
}
