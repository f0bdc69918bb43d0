//! [`Packet`] → wire bytes.
//!
//! Sizes are computed first (one pass over the packet, no allocation), then
//! the packet is written straight into the output buffer after a single
//! `reserve`. MQTT 5 properties that are absent are omitted, and the short
//! forms of PUBACK/PUBREC/PUBREL/PUBCOMP/DISCONNECT/AUTH are used whenever
//! they carry the same information.

use bytes::{BufMut, BytesMut};

use super::decode::MAX_VARINT;
use super::error::EncodeError;
use super::packet::*;
use super::property as prop;
use super::reason;

type Result<T> = std::result::Result<T, EncodeError>;

/// See [`super::encode`].
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<()> {
    let start = out.len();
    let result = write_packet(packet, protocol, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// See [`super::encoded_len`].
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let remaining = sizes(packet, protocol).remaining;
    1 + varint_len(remaining) + remaining
}

/// See [`super::encode_publish`].
pub fn encode_publish(p: &PublishRef, protocol: Protocol, out: &mut BytesMut) -> Result<()> {
    let start = out.len();
    let v5 = protocol.is_v5();
    let result = put_publish(out, p, &publish_sizes(p, v5), v5);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// See [`super::publish_len`].
pub fn publish_len(p: &PublishRef, protocol: Protocol) -> usize {
    let remaining = publish_sizes(p, protocol.is_v5()).remaining;
    1 + varint_len(remaining) + remaining
}

fn publish_sizes(p: &PublishRef, v5: bool) -> Sizes {
    let mut s = Sizes::default();
    let mut n = 2 + p.topic.len() + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        n += 2;
    }
    if v5 {
        s.props = publish_props_len(p.properties);
        n += prefixed_props(s.props);
    }
    s.remaining = n;
    s
}

fn put_publish(out: &mut BytesMut, p: &PublishRef, s: &Sizes, v5: bool) -> Result<()> {
    let mut first = 0x30 | ((p.qos as u8) << 1);
    if p.dup {
        first |= 0x08;
    }
    if p.retain {
        first |= 0x01;
    }
    header(out, first, s.remaining)?;
    put_str(out, p.topic, "topic name")?;
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.packet_id);
    }
    if v5 {
        put_publish_props(out, p.properties, s.props)?;
    }
    out.put_slice(p.payload);
    Ok(())
}

/// Lengths computed once and shared by `encoded_len` and `encode`.
#[derive(Default)]
struct Sizes {
    /// Remaining length of the fixed header.
    remaining: usize,
    /// Length of the (main) property block, without its own length prefix.
    props: usize,
    /// Length of the CONNECT will property block.
    will_props: usize,
}

fn varint_len(value: usize) -> usize {
    match value {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

/// A property block with its length prefix.
fn prefixed_props(len: usize) -> usize {
    varint_len(len) + len
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::V31 => "MQIsdp",
        Protocol::V311 | Protocol::V5 => "MQTT",
    }
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP 5.0 forms: 2 = packet id only (success, no
/// properties), 3 = plus reason code, otherwise plus properties.
fn pub_resp_remaining(p: &PubResp, props: usize, protocol: Protocol) -> usize {
    if !protocol.is_v5() || (p.reason == reason::SUCCESS && props == 0) {
        2
    } else if props == 0 {
        3
    } else {
        3 + prefixed_props(props)
    }
}

fn sizes(packet: &Packet, protocol: Protocol) -> Sizes {
    let v5 = protocol.is_v5();
    let mut s = Sizes::default();
    match packet {
        Packet::Connect(c) => {
            let mut n = 2 + protocol_name(protocol).len() + 1 + 1 + 2;
            if v5 {
                s.props = connect_props_len(&c.properties);
                n += prefixed_props(s.props);
            }
            n += 2 + c.client_id.len();
            if let Some(w) = &c.will {
                if v5 {
                    s.will_props = will_props_len(&w.properties);
                    n += prefixed_props(s.will_props);
                }
                n += 2 + w.topic.len() + 2 + w.payload.len();
            }
            if let Some(u) = &c.username {
                n += 2 + u.len();
            }
            if let Some(p) = &c.password {
                n += 2 + p.len();
            }
            s.remaining = n;
        }
        Packet::ConnAck(c) => {
            s.remaining = 2;
            if v5 {
                s.props = connack_props_len(&c.properties);
                s.remaining += prefixed_props(s.props);
            }
        }
        Packet::Publish(p) => s = publish_sizes(&p.borrowed(), v5),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            if v5 {
                s.props = ack_props_len(&p.properties);
            }
            s.remaining = pub_resp_remaining(p, s.props, protocol);
        }
        Packet::Subscribe(p) => {
            let mut n = 2;
            if v5 {
                s.props = subscribe_props_len(&p.properties);
                n += prefixed_props(s.props);
            }
            n += p
                .filters
                .iter()
                .map(|f| 2 + f.filter.len() + 1)
                .sum::<usize>();
            s.remaining = n;
        }
        Packet::SubAck(p) => {
            let mut n = 2 + p.reason_codes.len();
            if v5 {
                s.props = ack_props_len(&p.properties);
                n += prefixed_props(s.props);
            }
            s.remaining = n;
        }
        Packet::Unsubscribe(p) => {
            let mut n = 2;
            if v5 {
                s.props = user_props_len(&p.user_properties);
                n += prefixed_props(s.props);
            }
            n += p.filters.iter().map(|f| 2 + f.len()).sum::<usize>();
            s.remaining = n;
        }
        Packet::UnsubAck(p) => {
            s.remaining = 2;
            if v5 {
                s.props = ack_props_len(&p.properties);
                s.remaining += prefixed_props(s.props) + p.reason_codes.len();
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 {
                s.props = disconnect_props_len(&d.properties);
                s.remaining = if s.props > 0 {
                    1 + prefixed_props(s.props)
                } else if d.reason != reason::NORMAL_DISCONNECTION {
                    1
                } else {
                    0
                };
            }
        }
        Packet::Auth(a) => {
            s.props = auth_props_len(&a.properties);
            if s.props > 0 || a.reason != reason::SUCCESS {
                s.remaining = 1 + prefixed_props(s.props);
            }
        }
    }
    s
}

fn write_packet(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<()> {
    let v5 = protocol.is_v5();
    let s = sizes(packet, protocol);
    match packet {
        Packet::Connect(c) => {
            if !v5 && c.password.is_some() && c.username.is_none() {
                return Err(EncodeError::NotRepresentable {
                    what: "CONNECT with a password but no user name",
                    protocol,
                });
            }
            header(out, 0x10, s.remaining)?;
            put_str(out, protocol_name(protocol), "protocol name")?;
            out.put_u8(protocol.level());
            let mut flags = 0u8;
            if c.clean_start {
                flags |= 0x02;
            }
            if let Some(w) = &c.will {
                flags |= 0x04 | ((w.qos as u8) << 3);
                if w.retain {
                    flags |= 0x20;
                }
            }
            if c.password.is_some() {
                flags |= 0x40;
            }
            if c.username.is_some() {
                flags |= 0x80;
            }
            out.put_u8(flags);
            out.put_u16(c.keep_alive);
            if v5 {
                put_connect_props(out, &c.properties, s.props)?;
            }
            put_str(out, &c.client_id, "client identifier")?;
            if let Some(w) = &c.will {
                if v5 {
                    put_will_props(out, &w.properties, s.will_props)?;
                }
                put_str(out, &w.topic, "will topic")?;
                put_bin(out, &w.payload, "will payload")?;
            }
            if let Some(u) = &c.username {
                put_str(out, u, "user name")?;
            }
            if let Some(p) = &c.password {
                put_bin(out, p, "password")?;
            }
        }
        Packet::ConnAck(c) => {
            header(out, 0x20, s.remaining)?;
            out.put_u8(u8::from(c.session_present && protocol != Protocol::V31));
            if v5 {
                out.put_u8(c.code);
                put_connack_props(out, &c.properties, s.props)?;
            } else {
                out.put_u8(reason::connack_v3_return_code(c.code));
            }
        }
        Packet::Publish(p) => put_publish(out, &p.borrowed(), &s, v5)?,
        Packet::PubAck(p) => put_pub_resp(out, 0x40, p, &s)?,
        Packet::PubRec(p) => put_pub_resp(out, 0x50, p, &s)?,
        Packet::PubRel(p) => put_pub_resp(out, 0x62, p, &s)?,
        Packet::PubComp(p) => put_pub_resp(out, 0x70, p, &s)?,
        Packet::Subscribe(p) => {
            header(out, 0x82, s.remaining)?;
            out.put_u16(p.packet_id);
            if v5 {
                put_varint(out, s.props);
                if let Some(id) = p.properties.subscription_identifier {
                    put_varint_prop(out, prop::SUBSCRIPTION_IDENTIFIER, id)?;
                }
                put_user_props(out, &p.properties.user_properties)?;
            }
            for f in &p.filters {
                put_str(out, &f.filter, "topic filter")?;
                let o = &f.options;
                let mut byte = o.qos as u8;
                if v5 {
                    if o.no_local {
                        byte |= 0x04;
                    }
                    if o.retain_as_published {
                        byte |= 0x08;
                    }
                    byte |= (o.retain_handling & 0x03) << 4;
                }
                out.put_u8(byte);
            }
        }
        Packet::SubAck(p) => {
            header(out, 0x90, s.remaining)?;
            out.put_u16(p.packet_id);
            if v5 {
                put_ack_props(out, &p.properties, s.props)?;
                out.put_slice(&p.reason_codes);
            } else {
                for &code in &p.reason_codes {
                    out.put_u8(if code <= 2 {
                        code
                    } else {
                        reason::V3_SUBACK_FAILURE
                    });
                }
            }
        }
        Packet::Unsubscribe(p) => {
            header(out, 0xA2, s.remaining)?;
            out.put_u16(p.packet_id);
            if v5 {
                put_varint(out, s.props);
                put_user_props(out, &p.user_properties)?;
            }
            for f in &p.filters {
                put_str(out, f, "topic filter")?;
            }
        }
        Packet::UnsubAck(p) => {
            header(out, 0xB0, s.remaining)?;
            out.put_u16(p.packet_id);
            if v5 {
                put_ack_props(out, &p.properties, s.props)?;
                out.put_slice(&p.reason_codes);
            }
        }
        Packet::PingReq => header(out, 0xC0, 0)?,
        Packet::PingResp => header(out, 0xD0, 0)?,
        Packet::Disconnect(d) => {
            header(out, 0xE0, s.remaining)?;
            if s.remaining > 0 {
                out.put_u8(d.reason);
            }
            if s.remaining > 1 {
                let p = &d.properties;
                put_varint(out, s.props);
                put_opt_u32(
                    out,
                    prop::SESSION_EXPIRY_INTERVAL,
                    p.session_expiry_interval,
                );
                put_opt_str(out, prop::REASON_STRING, &p.reason_string)?;
                put_user_props(out, &p.user_properties)?;
                put_opt_str(out, prop::SERVER_REFERENCE, &p.server_reference)?;
            }
        }
        Packet::Auth(a) => {
            if !v5 {
                return Err(EncodeError::NotRepresentable {
                    what: "AUTH",
                    protocol,
                });
            }
            header(out, 0xF0, s.remaining)?;
            if s.remaining > 0 {
                let p = &a.properties;
                out.put_u8(a.reason);
                put_varint(out, s.props);
                put_opt_str(out, prop::AUTHENTICATION_METHOD, &p.authentication_method)?;
                put_opt_bin(out, prop::AUTHENTICATION_DATA, &p.authentication_data)?;
                put_opt_str(out, prop::REASON_STRING, &p.reason_string)?;
                put_user_props(out, &p.user_properties)?;
            }
        }
    }
    Ok(())
}

fn header(out: &mut BytesMut, first: u8, remaining: usize) -> Result<()> {
    if remaining > MAX_VARINT {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    out.reserve(1 + varint_len(remaining) + remaining);
    out.put_u8(first);
    put_varint(out, remaining);
    Ok(())
}

/// Writes a variable byte integer; callers ensure `value <= MAX_VARINT`.
fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn put_bin(out: &mut BytesMut, data: &[u8], field: &'static str) -> Result<()> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong {
        field,
        len: data.len(),
    })?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

fn put_str(out: &mut BytesMut, s: &str, field: &'static str) -> Result<()> {
    put_bin(out, s.as_bytes(), field)
}

fn put_pub_resp(out: &mut BytesMut, first: u8, p: &PubResp, s: &Sizes) -> Result<()> {
    header(out, first, s.remaining)?;
    out.put_u16(p.packet_id);
    if s.remaining > 2 {
        out.put_u8(p.reason);
    }
    if s.remaining > 3 {
        put_ack_props(out, &p.properties, s.props)?;
    }
    Ok(())
}

// ------------------------------------------------------------ properties

fn opt_len<T>(v: &Option<T>, value_len: impl FnOnce(&T) -> usize) -> usize {
    v.as_ref().map_or(0, |v| 1 + value_len(v))
}

/// A string or binary data value with its two-byte length prefix.
fn prefixed_len<T: AsRef<[u8]>>(v: &T) -> usize {
    2 + v.as_ref().len()
}

fn user_props_len(list: &UserProperties) -> usize {
    list.iter()
        .map(|(k, v)| 1 + 2 + k.len() + 2 + v.len())
        .sum()
}

fn ack_props_len(p: &AckProperties) -> usize {
    opt_len(&p.reason_string, prefixed_len) + user_props_len(&p.user_properties)
}

fn connect_props_len(p: &ConnectProperties) -> usize {
    opt_len(&p.session_expiry_interval, |_| 4)
        + opt_len(&p.receive_maximum, |_| 2)
        + opt_len(&p.maximum_packet_size, |_| 4)
        + opt_len(&p.topic_alias_maximum, |_| 2)
        + opt_len(&p.request_response_information, |_| 1)
        + opt_len(&p.request_problem_information, |_| 1)
        + user_props_len(&p.user_properties)
        + opt_len(&p.authentication_method, prefixed_len)
        + opt_len(&p.authentication_data, prefixed_len)
}

fn will_props_len(p: &WillProperties) -> usize {
    opt_len(&p.delay_interval, |_| 4)
        + opt_len(&p.payload_format_indicator, |_| 1)
        + opt_len(&p.message_expiry_interval, |_| 4)
        + opt_len(&p.content_type, prefixed_len)
        + opt_len(&p.response_topic, prefixed_len)
        + opt_len(&p.correlation_data, prefixed_len)
        + user_props_len(&p.user_properties)
}

fn connack_props_len(p: &ConnAckProperties) -> usize {
    opt_len(&p.session_expiry_interval, |_| 4)
        + opt_len(&p.receive_maximum, |_| 2)
        + opt_len(&p.maximum_qos, |_| 1)
        + opt_len(&p.retain_available, |_| 1)
        + opt_len(&p.maximum_packet_size, |_| 4)
        + opt_len(&p.assigned_client_identifier, prefixed_len)
        + opt_len(&p.topic_alias_maximum, |_| 2)
        + opt_len(&p.reason_string, prefixed_len)
        + user_props_len(&p.user_properties)
        + opt_len(&p.wildcard_subscription_available, |_| 1)
        + opt_len(&p.subscription_identifiers_available, |_| 1)
        + opt_len(&p.shared_subscription_available, |_| 1)
        + opt_len(&p.server_keep_alive, |_| 2)
        + opt_len(&p.response_information, prefixed_len)
        + opt_len(&p.server_reference, prefixed_len)
        + opt_len(&p.authentication_method, prefixed_len)
        + opt_len(&p.authentication_data, prefixed_len)
}

fn publish_props_len(p: &PublishProperties) -> usize {
    opt_len(&p.payload_format_indicator, |_| 1)
        + opt_len(&p.message_expiry_interval, |_| 4)
        + opt_len(&p.topic_alias, |_| 2)
        + opt_len(&p.response_topic, prefixed_len)
        + opt_len(&p.correlation_data, prefixed_len)
        + user_props_len(&p.user_properties)
        + p.subscription_identifiers
            .iter()
            .map(|&id| 1 + varint_len(id as usize))
            .sum::<usize>()
        + opt_len(&p.content_type, prefixed_len)
}

fn subscribe_props_len(p: &SubscribeProperties) -> usize {
    opt_len(&p.subscription_identifier, |&id| varint_len(id as usize))
        + user_props_len(&p.user_properties)
}

fn disconnect_props_len(p: &DisconnectProperties) -> usize {
    opt_len(&p.session_expiry_interval, |_| 4)
        + opt_len(&p.reason_string, prefixed_len)
        + user_props_len(&p.user_properties)
        + opt_len(&p.server_reference, prefixed_len)
}

fn auth_props_len(p: &AuthProperties) -> usize {
    opt_len(&p.authentication_method, prefixed_len)
        + opt_len(&p.authentication_data, prefixed_len)
        + opt_len(&p.reason_string, prefixed_len)
        + user_props_len(&p.user_properties)
}

fn put_opt_u8(out: &mut BytesMut, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u8(v);
    }
}

fn put_opt_u16(out: &mut BytesMut, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u16(v);
    }
}

fn put_opt_u32(out: &mut BytesMut, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u32(v);
    }
}

fn field_name(id: u8) -> &'static str {
    prop::name(id).unwrap_or("property")
}

fn put_opt_str(out: &mut BytesMut, id: u8, v: &Option<String>) -> Result<()> {
    if let Some(v) = v {
        out.put_u8(id);
        put_str(out, v, field_name(id))?;
    }
    Ok(())
}

fn put_opt_bin(out: &mut BytesMut, id: u8, v: &Option<bytes::Bytes>) -> Result<()> {
    if let Some(v) = v {
        out.put_u8(id);
        put_bin(out, v, field_name(id))?;
    }
    Ok(())
}

fn put_varint_prop(out: &mut BytesMut, id: u8, value: u32) -> Result<()> {
    if value as usize > MAX_VARINT {
        return Err(EncodeError::ValueTooLarge {
            field: field_name(id),
            value,
        });
    }
    out.put_u8(id);
    put_varint(out, value as usize);
    Ok(())
}

fn put_user_props(out: &mut BytesMut, list: &UserProperties) -> Result<()> {
    for (key, value) in list {
        out.put_u8(prop::USER_PROPERTY);
        put_str(out, key, "User Property name")?;
        put_str(out, value, "User Property value")?;
    }
    Ok(())
}

fn put_ack_props(out: &mut BytesMut, p: &AckProperties, len: usize) -> Result<()> {
    put_varint(out, len);
    put_opt_str(out, prop::REASON_STRING, &p.reason_string)?;
    put_user_props(out, &p.user_properties)
}

fn put_connect_props(out: &mut BytesMut, p: &ConnectProperties, len: usize) -> Result<()> {
    put_varint(out, len);
    put_opt_u32(
        out,
        prop::SESSION_EXPIRY_INTERVAL,
        p.session_expiry_interval,
    );
    put_opt_u16(out, prop::RECEIVE_MAXIMUM, p.receive_maximum);
    put_opt_u32(out, prop::MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    put_opt_u16(out, prop::TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    put_opt_u8(
        out,
        prop::REQUEST_RESPONSE_INFORMATION,
        p.request_response_information,
    );
    put_opt_u8(
        out,
        prop::REQUEST_PROBLEM_INFORMATION,
        p.request_problem_information,
    );
    put_user_props(out, &p.user_properties)?;
    put_opt_str(out, prop::AUTHENTICATION_METHOD, &p.authentication_method)?;
    put_opt_bin(out, prop::AUTHENTICATION_DATA, &p.authentication_data)
}

fn put_will_props(out: &mut BytesMut, p: &WillProperties, len: usize) -> Result<()> {
    put_varint(out, len);
    put_opt_u32(out, prop::WILL_DELAY_INTERVAL, p.delay_interval);
    put_opt_u8(
        out,
        prop::PAYLOAD_FORMAT_INDICATOR,
        p.payload_format_indicator,
    );
    put_opt_u32(
        out,
        prop::MESSAGE_EXPIRY_INTERVAL,
        p.message_expiry_interval,
    );
    put_opt_str(out, prop::CONTENT_TYPE, &p.content_type)?;
    put_opt_str(out, prop::RESPONSE_TOPIC, &p.response_topic)?;
    put_opt_bin(out, prop::CORRELATION_DATA, &p.correlation_data)?;
    put_user_props(out, &p.user_properties)
}

fn put_connack_props(out: &mut BytesMut, p: &ConnAckProperties, len: usize) -> Result<()> {
    put_varint(out, len);
    put_opt_u32(
        out,
        prop::SESSION_EXPIRY_INTERVAL,
        p.session_expiry_interval,
    );
    put_opt_u16(out, prop::RECEIVE_MAXIMUM, p.receive_maximum);
    put_opt_u8(out, prop::MAXIMUM_QOS, p.maximum_qos);
    put_opt_u8(out, prop::RETAIN_AVAILABLE, p.retain_available);
    put_opt_u32(out, prop::MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    put_opt_str(
        out,
        prop::ASSIGNED_CLIENT_IDENTIFIER,
        &p.assigned_client_identifier,
    )?;
    put_opt_u16(out, prop::TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    put_opt_str(out, prop::REASON_STRING, &p.reason_string)?;
    put_user_props(out, &p.user_properties)?;
    put_opt_u8(
        out,
        prop::WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
    );
    put_opt_u8(
        out,
        prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifiers_available,
    );
    put_opt_u8(
        out,
        prop::SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
    );
    put_opt_u16(out, prop::SERVER_KEEP_ALIVE, p.server_keep_alive);
    put_opt_str(out, prop::RESPONSE_INFORMATION, &p.response_information)?;
    put_opt_str(out, prop::SERVER_REFERENCE, &p.server_reference)?;
    put_opt_str(out, prop::AUTHENTICATION_METHOD, &p.authentication_method)?;
    put_opt_bin(out, prop::AUTHENTICATION_DATA, &p.authentication_data)
}

fn put_publish_props(out: &mut BytesMut, p: &PublishProperties, len: usize) -> Result<()> {
    put_varint(out, len);
    put_opt_u8(
        out,
        prop::PAYLOAD_FORMAT_INDICATOR,
        p.payload_format_indicator,
    );
    put_opt_u32(
        out,
        prop::MESSAGE_EXPIRY_INTERVAL,
        p.message_expiry_interval,
    );
    put_opt_u16(out, prop::TOPIC_ALIAS, p.topic_alias);
    put_opt_str(out, prop::RESPONSE_TOPIC, &p.response_topic)?;
    put_opt_bin(out, prop::CORRELATION_DATA, &p.correlation_data)?;
    put_user_props(out, &p.user_properties)?;
    for &id in &p.subscription_identifiers {
        put_varint_prop(out, prop::SUBSCRIPTION_IDENTIFIER, id)?;
    }
    put_opt_str(out, prop::CONTENT_TYPE, &p.content_type)
}
