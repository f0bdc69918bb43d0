//! Builders for the packets tests send, whole ([`v3_connect`],
//! [`publish_packet`], ...) or hand-encoded in parts for malformed input
//! ([`varint`], [`mqtt_str`]), and [`payloads`] for readable asserts.

use bytes::Bytes;
use raftmq::codec::{
    AckProperties, Connect, ConnectProperties, LastWill, Protocol, PubResp, Publish,
    PublishProperties, QoS, SubOptions, Subscribe, SubscribeFilter, SubscribeProperties,
    WillProperties,
};

pub fn v3_connect(client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol: Some(Protocol::V311),
        clean_start: clean,
        keep_alive: 60,
        client_id: client_id.to_string(),
        ..Default::default()
    }
}

pub fn v5_connect(client_id: &str, clean_start: bool, session_expiry: Option<u32>) -> Connect {
    Connect {
        protocol: Some(Protocol::V5),
        clean_start,
        keep_alive: 60,
        client_id: client_id.to_string(),
        properties: ConnectProperties {
            session_expiry_interval: session_expiry,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn will(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic.to_string(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

pub fn publish_packet(topic: &str, qos: QoS, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_string(),
        packet_id: 0,
        payload: Bytes::copy_from_slice(payload),
        properties: PublishProperties::default(),
    }
}

pub fn sub_opts(qos: QoS) -> SubOptions {
    SubOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    }
}

pub fn subscribe_packet(filter: &str, qos: QoS) -> Subscribe {
    Subscribe {
        packet_id: 0,
        filters: vec![SubscribeFilter {
            filter: filter.to_string(),
            options: sub_opts(qos),
        }],
        properties: SubscribeProperties::default(),
    }
}

pub fn pubresp(packet_id: u16) -> PubResp {
    PubResp {
        packet_id,
        reason: 0,
        properties: AckProperties::default(),
    }
}

/// Hand-encodes an MQTT variable byte integer (for malformed packets).
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// Hand-encodes an MQTT UTF-8 string / binary field (for malformed packets).
pub fn mqtt_str(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// Payloads as strings, for readable asserts.
pub fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}
