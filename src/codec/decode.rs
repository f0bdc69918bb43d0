//! Wire bytes → [`Packet`].
//!
//! `decode` reads the fixed header straight from the connection buffer. Once
//! the whole packet is there, packets with binary fields (CONNECT, CONNACK,
//! PUBLISH, AUTH) are split off as a frozen `Bytes`, so payloads, passwords
//! and other binary data are zero-copy slices of it; the others are parsed in
//! place. Strings are validated in place and copied once into the `String`s
//! the packet types hold.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

use super::error::DecodeError;
use super::packet::*;
use super::property as prop;
use super::reason;

type Result<T> = std::result::Result<T, DecodeError>;

/// Largest value of a variable byte integer (and so of a remaining length).
pub(super) const MAX_VARINT: usize = 268_435_455;

#[cold]
fn malformed(msg: impl Into<Cow<'static, str>>) -> DecodeError {
    DecodeError::MalformedPacket(msg.into())
}

#[cold]
fn protocol_error(msg: impl Into<Cow<'static, str>>) -> DecodeError {
    DecodeError::ProtocolError(msg.into())
}

#[cold]
fn topic_invalid(msg: impl Into<Cow<'static, str>>) -> DecodeError {
    DecodeError::TopicNameInvalid(msg.into())
}

const PACKET_NAMES: [&str; 16] = [
    "reserved packet type 0",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
];

/// Prefixes the packet name to an error's message (error path only).
#[cold]
fn in_packet(packet_type: u8, err: DecodeError) -> DecodeError {
    let packet = PACKET_NAMES[usize::from(packet_type & 0x0F)];
    let prefix = |msg: Cow<'static, str>| Cow::Owned(format!("{packet}: {msg}"));
    match err {
        DecodeError::MalformedPacket(m) => DecodeError::MalformedPacket(prefix(m)),
        DecodeError::ProtocolError(m) => DecodeError::ProtocolError(prefix(m)),
        DecodeError::TopicNameInvalid(m) => DecodeError::TopicNameInvalid(prefix(m)),
        other => other,
    }
}

/// See [`super::decode`].
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    max_packet_size: usize,
) -> Result<Option<Packet>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    match first >> 4 {
        0 => return Err(malformed("packet type 0 is reserved")),
        15 if !protocol.is_v5() => {
            return Err(malformed("packet type 15 (AUTH) exists only in MQTT 5"))
        }
        _ => {}
    }
    // Reject a bad first byte at once, before waiting for a body it announces
    // (so a stray non-MQTT peer, e.g. an HTTP request, is closed promptly).
    // CONNECT's flags are checked once its own protocol level is known.
    let flags = first & 0x0F;
    let first_byte = match first >> 4 {
        1 => Ok(()),
        3 if flags & 0x06 == 0x06 => Err(malformed("QoS is 3")),
        3 => Ok(()),
        6 | 8 | 10 => check_flags(flags, 0b0010, protocol),
        _ => check_flags(flags, 0, protocol),
    };
    first_byte.map_err(|e| in_packet(first >> 4, e))?;

    // Remaining length: a variable byte integer of at most four bytes.
    let mut remaining = 0usize;
    let mut header_len = 0usize;
    for i in 1..=4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            header_len = i + 1;
            break;
        }
    }
    if header_len == 0 {
        return Err(malformed("remaining length is longer than 4 bytes"));
    }

    let size = header_len + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    // CONNECT, CONNACK, PUBLISH and AUTH carry binary data: split the packet
    // off as shared `Bytes` so those fields can be zero-copy slices of it.
    // The others are parsed in place, which saves the reference counting.
    if matches!(first >> 4, 1 | 2 | 3 | 15) {
        buf.advance(header_len);
        let body = buf.split_to(remaining).freeze();
        decode_body(first, Reader::new(&body, Some(&body)), protocol).map(Some)
    } else {
        let result = decode_body(first, Reader::new(&buf[header_len..size], None), protocol);
        buf.advance(size);
        result.map(Some)
    }
}

fn decode_body(first: u8, mut r: Reader<'_>, protocol: Protocol) -> Result<Packet> {
    let flags = first & 0x0F;
    let packet_type = first >> 4;
    let r = &mut r;
    let result =
        match packet_type {
            1 => decode_connect(r, flags),
            2 => decode_connack(r, flags, protocol),
            3 => decode_publish(r, flags, protocol),
            4 => decode_pub_resp(r, flags, 0, protocol, reason::PUBACK_PUBREC_CODES)
                .map(Packet::PubAck),
            5 => decode_pub_resp(r, flags, 0, protocol, reason::PUBACK_PUBREC_CODES)
                .map(Packet::PubRec),
            6 => decode_pub_resp(r, flags, 0b0010, protocol, reason::PUBREL_PUBCOMP_CODES)
                .map(Packet::PubRel),
            7 => decode_pub_resp(r, flags, 0, protocol, reason::PUBREL_PUBCOMP_CODES)
                .map(Packet::PubComp),
            8 => decode_subscribe(r, flags, protocol),
            9 => decode_suback(r, flags, protocol),
            10 => decode_unsubscribe(r, flags, protocol),
            11 => decode_unsuback(r, flags, protocol),
            12 => check_flags(flags, 0, protocol).map(|()| Packet::PingReq),
            13 => check_flags(flags, 0, protocol).map(|()| Packet::PingResp),
            14 => decode_disconnect(r, flags, protocol),
            15 => decode_auth(r, flags),
            _ => Err(malformed("packet type 0 is reserved")),
        };
    match result {
        Ok(packet) if r.is_empty() => Ok(packet),
        Ok(_) => Err(in_packet(packet_type, r.trailing())),
        Err(e) => Err(in_packet(packet_type, e)),
    }
}

/// Fixed-header flags of every packet but PUBLISH. MQTT 3.1 did not require
/// them to hold fixed values (a resent PUBREL/SUBSCRIBE/UNSUBSCRIBE carried
/// DUP), so, like other brokers, they are not checked for 3.1.
fn check_flags(flags: u8, expected: u8, protocol: Protocol) -> Result<()> {
    if flags != expected && protocol != Protocol::V31 {
        return Err(malformed(format!(
            "fixed header flags are {flags:#06b}, must be {expected:#06b}"
        )));
    }
    Ok(())
}

fn check_reason(code: u8, allowed: &[u8]) -> Result<u8> {
    if allowed.contains(&code) {
        Ok(code)
    } else {
        Err(protocol_error(format!(
            "reason code {code:#04x} is not allowed"
        )))
    }
}

/// A cursor over (part of) one packet's body.
struct Reader<'a> {
    data: &'a [u8],
    /// `data` as a shared buffer, for zero-copy binary fields; `None` for
    /// packet types without any (which then never ask for one).
    shared: Option<&'a Bytes>,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], shared: Option<&'a Bytes>) -> Self {
        Reader {
            data,
            shared,
            pos: 0,
            end: data.len(),
        }
    }

    /// `data[start..end]` as `Bytes`: a slice of the shared buffer.
    fn bytes(&self, start: usize, end: usize) -> Bytes {
        match self.shared {
            Some(shared) => shared.slice(start..end),
            None => Bytes::copy_from_slice(&self.data[start..end]),
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// The error for bytes left over after a complete packet.
    #[cold]
    fn trailing(&self) -> DecodeError {
        malformed(format!("{} unexpected bytes at the end", self.remaining()))
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(truncated(what));
        }
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        if self.is_empty() {
            return Err(truncated(what));
        }
        let b = self.data[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn varint(&mut self, what: &'static str) -> Result<u32> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8(what)?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed(format!(
            "{what}: variable byte integer longer than 4 bytes"
        )))
    }

    /// Two-byte length followed by that many bytes, as a borrowed slice.
    fn prefixed(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = usize::from(self.u16(what)?);
        self.take(len, what)
    }

    /// Binary data: zero-copy slice of the packet.
    fn binary(&mut self, what: &'static str) -> Result<Bytes> {
        let len = usize::from(self.u16(what)?);
        if len > self.remaining() {
            return Err(truncated(what));
        }
        let b = self.bytes(self.pos, self.pos + len);
        self.pos += len;
        Ok(b)
    }

    /// UTF-8 encoded string, validated, borrowed from the packet.
    fn str(&mut self, what: &'static str) -> Result<&'a str> {
        let raw = self.prefixed(what)?;
        let s = std::str::from_utf8(raw)
            .map_err(|_| malformed(format!("{what} is not valid UTF-8")))?;
        if raw.contains(&0) {
            return Err(malformed(format!("{what} contains U+0000")));
        }
        Ok(s)
    }

    fn string(&mut self, what: &'static str) -> Result<String> {
        self.str(what).map(str::to_owned)
    }

    /// The rest of the packet as a zero-copy slice (PUBLISH payload).
    fn rest(&mut self) -> Bytes {
        let b = self.bytes(self.pos, self.end);
        self.pos = self.end;
        b
    }

    /// A reader over the next `len` bytes, which this reader skips.
    fn sub(&mut self, len: usize, what: &'static str) -> Result<Reader<'a>> {
        if len > self.remaining() {
            return Err(truncated(what));
        }
        let sub = Reader {
            data: self.data,
            shared: self.shared,
            pos: self.pos,
            end: self.pos + len,
        };
        self.pos += len;
        Ok(sub)
    }

    fn packet_id(&mut self) -> Result<u16> {
        match self.u16("packet identifier")? {
            0 => Err(protocol_error("packet identifier is 0")),
            id => Ok(id),
        }
    }

    /// Property length and the reader over the properties.
    fn properties(&mut self) -> Result<Props<'a>> {
        let len = self.varint("property length")? as usize;
        Ok(Props {
            r: self.sub(len, "properties")?,
        })
    }
}

#[cold]
fn truncated(what: &'static str) -> DecodeError {
    malformed(format!("{what} is truncated"))
}

fn prop_name(id: u8) -> &'static str {
    prop::name(id).unwrap_or("property")
}

/// Reads the properties of one packet, one identifier at a time.
struct Props<'a> {
    r: Reader<'a>,
}

impl<'a> Props<'a> {
    fn next(&mut self) -> Result<Option<u8>> {
        if self.r.is_empty() {
            Ok(None)
        } else {
            self.r.u8("property identifier").map(Some)
        }
    }

    fn u8(&mut self, id: u8) -> Result<u8> {
        self.r.u8(prop_name(id))
    }

    /// A byte property whose only values are 0 and 1.
    fn flag(&mut self, id: u8) -> Result<u8> {
        match self.u8(id)? {
            v @ (0 | 1) => Ok(v),
            v => Err(protocol_error(format!(
                "{} is {v}, must be 0 or 1",
                prop_name(id)
            ))),
        }
    }

    fn u16(&mut self, id: u8) -> Result<u16> {
        self.r.u16(prop_name(id))
    }

    fn nonzero_u16(&mut self, id: u8) -> Result<u16> {
        match self.u16(id)? {
            0 => Err(protocol_error(format!("{} is 0", prop_name(id)))),
            v => Ok(v),
        }
    }

    fn u32(&mut self, id: u8) -> Result<u32> {
        self.r.u32(prop_name(id))
    }

    fn nonzero_u32(&mut self, id: u8) -> Result<u32> {
        match self.u32(id)? {
            0 => Err(protocol_error(format!("{} is 0", prop_name(id)))),
            v => Ok(v),
        }
    }

    fn nonzero_varint(&mut self, id: u8) -> Result<u32> {
        match self.r.varint(prop_name(id))? {
            0 => Err(protocol_error(format!("{} is 0", prop_name(id)))),
            v => Ok(v),
        }
    }

    fn string(&mut self, id: u8) -> Result<String> {
        self.r.string(prop_name(id))
    }

    fn binary(&mut self, id: u8) -> Result<Bytes> {
        self.r.binary(prop_name(id))
    }

    fn user_property(&mut self, list: &mut UserProperties) -> Result<()> {
        let key = self.r.string("User Property name")?;
        let value = self.r.string("User Property value")?;
        list.push((key, value));
        Ok(())
    }
}

/// Stores a property that may appear at most once.
fn once<T>(slot: &mut Option<T>, value: T, id: u8) -> Result<()> {
    if slot.is_some() {
        return Err(protocol_error(format!(
            "duplicate property {} ({id:#04x})",
            prop_name(id)
        )));
    }
    *slot = Some(value);
    Ok(())
}

#[cold]
fn not_allowed(id: u8) -> DecodeError {
    match prop::name(id) {
        Some(name) => malformed(format!("property {name} ({id:#04x}) is not allowed here")),
        None => malformed(format!("unknown property identifier {id:#04x}")),
    }
}

fn has_wildcard(topic: &str) -> bool {
    topic.bytes().any(|b| b == b'+' || b == b'#')
}

// ---------------------------------------------------------------- CONNECT

fn decode_connect(r: &mut Reader<'_>, flags: u8) -> Result<Packet> {
    let name = r.prefixed("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = match (name, level) {
        (b"MQTT", 4) => Protocol::V311,
        (b"MQTT", 5) => Protocol::V5,
        (b"MQIsdp", 3) => Protocol::V31,
        _ => {
            return Err(DecodeError::UnsupportedProtocol {
                name: String::from_utf8_lossy(name).into_owned(),
                level,
            })
        }
    };
    check_flags(flags, 0, protocol)?;
    let v5 = protocol.is_v5();

    let connect_flags = r.u8("connect flags")?;
    if connect_flags & 0x01 != 0 && protocol != Protocol::V31 {
        return Err(malformed("reserved connect flag is set"));
    }
    let clean_start = connect_flags & 0x02 != 0;
    let will_flag = connect_flags & 0x04 != 0;
    let will_qos = (connect_flags >> 3) & 0x03;
    let will_retain = connect_flags & 0x20 != 0;
    let password_flag = connect_flags & 0x40 != 0;
    let username_flag = connect_flags & 0x80 != 0;
    let will_qos = QoS::from_u8(will_qos).ok_or_else(|| malformed("will QoS is 3"))?;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(malformed(
            "will QoS or will retain set without the will flag",
        ));
    }
    if password_flag && !username_flag && !v5 {
        return Err(malformed("password flag set without the user name flag"));
    }

    let keep_alive = r.u16("keep alive")?;
    let properties = if v5 {
        decode_connect_properties(r)?
    } else {
        ConnectProperties::default()
    };
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = if v5 {
            decode_will_properties(r)?
        } else {
            WillProperties::default()
        };
        let topic = r.str("will topic")?;
        if topic.is_empty() {
            return Err(topic_invalid("will topic is empty"));
        }
        if has_wildcard(topic) {
            return Err(topic_invalid("will topic contains a wildcard"));
        }
        let payload = r.binary("will payload")?;
        Some(LastWill {
            topic: topic.to_owned(),
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    // Some MQTT 3.1 clients set the user name/password flags without sending
    // the fields; accept that as "absent" for 3.1 only.
    let lenient = protocol == Protocol::V31 && r.is_empty();
    let username = if username_flag && !lenient {
        Some(r.string("user name")?)
    } else {
        None
    };
    let lenient = protocol == Protocol::V31 && r.is_empty();
    let password = if password_flag && !lenient {
        Some(r.binary("password")?)
    } else {
        None
    };

    Ok(Packet::Connect(Box::new(Connect {
        protocol: Some(protocol),
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })))
}

fn decode_connect_properties(r: &mut Reader<'_>) -> Result<ConnectProperties> {
    let mut p = ConnectProperties::default();
    let mut props = r.properties()?;
    while let Some(id) = props.next()? {
        match id {
            prop::SESSION_EXPIRY_INTERVAL => {
                once(&mut p.session_expiry_interval, props.u32(id)?, id)?
            }
            prop::RECEIVE_MAXIMUM => once(&mut p.receive_maximum, props.nonzero_u16(id)?, id)?,
            prop::MAXIMUM_PACKET_SIZE => {
                once(&mut p.maximum_packet_size, props.nonzero_u32(id)?, id)?
            }
            prop::TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, props.u16(id)?, id)?,
            prop::REQUEST_RESPONSE_INFORMATION => {
                once(&mut p.request_response_information, props.flag(id)?, id)?
            }
            prop::REQUEST_PROBLEM_INFORMATION => {
                once(&mut p.request_problem_information, props.flag(id)?, id)?
            }
            prop::USER_PROPERTY => props.user_property(&mut p.user_properties)?,
            prop::AUTHENTICATION_METHOD => {
                once(&mut p.authentication_method, props.string(id)?, id)?
            }
            prop::AUTHENTICATION_DATA => once(&mut p.authentication_data, props.binary(id)?, id)?,
            _ => return Err(not_allowed(id)),
        }
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(protocol_error(
            "Authentication Data without Authentication Method",
        ));
    }
    Ok(p)
}

fn decode_will_properties(r: &mut Reader<'_>) -> Result<WillProperties> {
    let mut p = WillProperties::default();
    let mut props = r.properties()?;
    while let Some(id) = props.next()? {
        match id {
            prop::WILL_DELAY_INTERVAL => once(&mut p.delay_interval, props.u32(id)?, id)?,
            prop::PAYLOAD_FORMAT_INDICATOR => {
                once(&mut p.payload_format_indicator, props.flag(id)?, id)?
            }
            prop::MESSAGE_EXPIRY_INTERVAL => {
                once(&mut p.message_expiry_interval, props.u32(id)?, id)?
            }
            prop::CONTENT_TYPE => once(&mut p.content_type, props.string(id)?, id)?,
            prop::RESPONSE_TOPIC => once(&mut p.response_topic, props.string(id)?, id)?,
            prop::CORRELATION_DATA => once(&mut p.correlation_data, props.binary(id)?, id)?,
            prop::USER_PROPERTY => props.user_property(&mut p.user_properties)?,
            _ => return Err(not_allowed(id)),
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------- CONNACK

fn decode_connack(r: &mut Reader<'_>, flags: u8, protocol: Protocol) -> Result<Packet> {
    check_flags(flags, 0, protocol)?;
    let ack_flags = r.u8("acknowledge flags")?;
    let session_present = match protocol {
        // 3.1 has no session present flag: the byte is unused.
        Protocol::V31 => false,
        _ if ack_flags & 0xFE != 0 => {
            return Err(malformed("reserved acknowledge flags are set"));
        }
        _ => ack_flags & 0x01 != 0,
    };
    let code = r.u8("return code")?;
    let (code, properties) = if protocol.is_v5() {
        let code = check_reason(code, reason::CONNACK_CODES)?;
        (code, decode_connack_properties(r)?)
    } else {
        let code = reason::connack_reason_from_v3(code)
            .ok_or_else(|| protocol_error(format!("return code {code} is reserved")))?;
        (code, ConnAckProperties::default())
    };
    Ok(Packet::ConnAck(ConnAck {
        session_present,
        code,
        properties,
    }))
}

fn decode_connack_properties(r: &mut Reader<'_>) -> Result<ConnAckProperties> {
    let mut p = ConnAckProperties::default();
    let mut props = r.properties()?;
    while let Some(id) = props.next()? {
        match id {
            prop::SESSION_EXPIRY_INTERVAL => {
                once(&mut p.session_expiry_interval, props.u32(id)?, id)?
            }
            prop::RECEIVE_MAXIMUM => once(&mut p.receive_maximum, props.nonzero_u16(id)?, id)?,
            prop::MAXIMUM_QOS => once(&mut p.maximum_qos, props.flag(id)?, id)?,
            prop::RETAIN_AVAILABLE => once(&mut p.retain_available, props.flag(id)?, id)?,
            prop::MAXIMUM_PACKET_SIZE => {
                once(&mut p.maximum_packet_size, props.nonzero_u32(id)?, id)?
            }
            prop::ASSIGNED_CLIENT_IDENTIFIER => {
                once(&mut p.assigned_client_identifier, props.string(id)?, id)?
            }
            prop::TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, props.u16(id)?, id)?,
            prop::REASON_STRING => once(&mut p.reason_string, props.string(id)?, id)?,
            prop::USER_PROPERTY => props.user_property(&mut p.user_properties)?,
            prop::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                once(&mut p.wildcard_subscription_available, props.flag(id)?, id)?
            }
            prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE => once(
                &mut p.subscription_identifiers_available,
                props.flag(id)?,
                id,
            )?,
            prop::SHARED_SUBSCRIPTION_AVAILABLE => {
                once(&mut p.shared_subscription_available, props.flag(id)?, id)?
            }
            prop::SERVER_KEEP_ALIVE => once(&mut p.server_keep_alive, props.u16(id)?, id)?,
            prop::RESPONSE_INFORMATION => once(&mut p.response_information, props.string(id)?, id)?,
            prop::SERVER_REFERENCE => once(&mut p.server_reference, props.string(id)?, id)?,
            prop::AUTHENTICATION_METHOD => {
                once(&mut p.authentication_method, props.string(id)?, id)?
            }
            prop::AUTHENTICATION_DATA => once(&mut p.authentication_data, props.binary(id)?, id)?,
            _ => return Err(not_allowed(id)),
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------- PUBLISH

fn decode_publish(r: &mut Reader<'_>, flags: u8, protocol: Protocol) -> Result<Packet> {
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or_else(|| malformed("QoS is 3"))?;
    if dup && qos == QoS::AtMostOnce {
        return Err(malformed("DUP is set on a QoS 0 message"));
    }
    let topic = r.str("topic name")?;
    if has_wildcard(topic) {
        return Err(topic_invalid("topic name contains a wildcard"));
    }
    let packet_id = match qos {
        QoS::AtMostOnce => 0,
        _ => r.packet_id()?,
    };
    let properties = if protocol.is_v5() {
        decode_publish_properties(r)?
    } else {
        PublishProperties::default()
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(topic_invalid(if protocol.is_v5() {
            "topic name is empty and there is no topic alias"
        } else {
            "topic name is empty"
        }));
    }
    Ok(Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic: topic.to_owned(),
        packet_id,
        payload: r.rest(),
        properties,
    }))
}

fn decode_publish_properties(r: &mut Reader<'_>) -> Result<PublishProperties> {
    let mut p = PublishProperties::default();
    let mut props = r.properties()?;
    while let Some(id) = props.next()? {
        match id {
            prop::PAYLOAD_FORMAT_INDICATOR => {
                once(&mut p.payload_format_indicator, props.flag(id)?, id)?
            }
            prop::MESSAGE_EXPIRY_INTERVAL => {
                once(&mut p.message_expiry_interval, props.u32(id)?, id)?
            }
            prop::TOPIC_ALIAS => once(&mut p.topic_alias, props.nonzero_u16(id)?, id)?,
            prop::RESPONSE_TOPIC => once(&mut p.response_topic, props.string(id)?, id)?,
            prop::CORRELATION_DATA => once(&mut p.correlation_data, props.binary(id)?, id)?,
            prop::USER_PROPERTY => props.user_property(&mut p.user_properties)?,
            prop::SUBSCRIPTION_IDENTIFIER => {
                let v = props.nonzero_varint(id)?;
                p.subscription_identifiers.push(v);
            }
            prop::CONTENT_TYPE => once(&mut p.content_type, props.string(id)?, id)?,
            _ => return Err(not_allowed(id)),
        }
    }
    Ok(p)
}

// ------------------------------------------- PUBACK PUBREC PUBREL PUBCOMP

fn decode_pub_resp(
    r: &mut Reader<'_>,
    flags: u8,
    expected_flags: u8,
    protocol: Protocol,
    codes: &[u8],
) -> Result<PubResp> {
    check_flags(flags, expected_flags, protocol)?;
    let packet_id = r.packet_id()?;
    let mut resp = PubResp {
        packet_id,
        ..PubResp::default()
    };
    // 5.0 short forms: remaining length 2 = success, no properties;
    // remaining length 3 = reason code, no properties.
    if protocol.is_v5() && !r.is_empty() {
        resp.reason = check_reason(r.u8("reason code")?, codes)?;
        if !r.is_empty() {
            resp.properties = decode_ack_properties(r)?;
        }
    }
    Ok(resp)
}

/// Reason String and User Property: PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK.
fn decode_ack_properties(r: &mut Reader<'_>) -> Result<AckProperties> {
    let mut p = AckProperties::default();
    let mut props = r.properties()?;
    while let Some(id) = props.next()? {
        match id {
            prop::REASON_STRING => once(&mut p.reason_string, props.string(id)?, id)?,
            prop::USER_PROPERTY => props.user_property(&mut p.user_properties)?,
            _ => return Err(not_allowed(id)),
        }
    }
    Ok(p)
}

// ------------------------------------------------------ SUBSCRIBE SUBACK

fn decode_subscribe(r: &mut Reader<'_>, flags: u8, protocol: Protocol) -> Result<Packet> {
    check_flags(flags, 0b0010, protocol)?;
    let packet_id = r.packet_id()?;
    let mut properties = SubscribeProperties::default();
    if protocol.is_v5() {
        let mut props = r.properties()?;
        while let Some(id) = props.next()? {
            match id {
                prop::SUBSCRIPTION_IDENTIFIER => {
                    once(
                        &mut properties.subscription_identifier,
                        props.nonzero_varint(id)?,
                        id,
                    )?;
                }
                prop::USER_PROPERTY => props.user_property(&mut properties.user_properties)?,
                _ => return Err(not_allowed(id)),
            }
        }
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        let options = decode_sub_options(r.u8("subscription options")?, protocol)?;
        filters.push(SubscribeFilter { filter, options });
    }
    if filters.is_empty() {
        return Err(protocol_error("no topic filters"));
    }
    Ok(Packet::Subscribe(Subscribe {
        packet_id,
        filters,
        properties,
    }))
}

fn decode_sub_options(byte: u8, protocol: Protocol) -> Result<SubOptions> {
    let qos = QoS::from_u8(byte & 0x03);
    match protocol {
        Protocol::V5 => {
            if byte & 0xC0 != 0 {
                return Err(malformed("reserved subscription option bits are set"));
            }
            let retain_handling = (byte >> 4) & 0x03;
            if retain_handling == 3 {
                return Err(protocol_error("retain handling is 3"));
            }
            Ok(SubOptions {
                qos: qos.ok_or_else(|| protocol_error("maximum QoS is 3"))?,
                no_local: byte & 0x04 != 0,
                retain_as_published: byte & 0x08 != 0,
                retain_handling,
            })
        }
        Protocol::V311 | Protocol::V31 => {
            // 3.1 did not reserve the upper bits explicitly; ignore them there.
            if byte & 0xFC != 0 && protocol == Protocol::V311 {
                return Err(malformed("reserved requested QoS bits are set"));
            }
            Ok(SubOptions {
                qos: qos.ok_or_else(|| malformed("requested QoS is 3"))?,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            })
        }
    }
}

fn decode_suback(r: &mut Reader<'_>, flags: u8, protocol: Protocol) -> Result<Packet> {
    check_flags(flags, 0, protocol)?;
    let packet_id = r.packet_id()?;
    let (properties, codes) = if protocol.is_v5() {
        (decode_ack_properties(r)?, reason::SUBACK_CODES)
    } else {
        (AckProperties::default(), reason::SUBACK_V3_CODES)
    };
    let reason_codes = r.take(r.remaining(), "reason codes")?.to_vec();
    for &code in &reason_codes {
        check_reason(code, codes)?;
    }
    Ok(Packet::SubAck(SubAck {
        packet_id,
        reason_codes,
        properties,
    }))
}

// -------------------------------------------------- UNSUBSCRIBE UNSUBACK

fn decode_unsubscribe(r: &mut Reader<'_>, flags: u8, protocol: Protocol) -> Result<Packet> {
    check_flags(flags, 0b0010, protocol)?;
    let packet_id = r.packet_id()?;
    let mut user_properties = UserProperties::new();
    if protocol.is_v5() {
        let mut props = r.properties()?;
        while let Some(id) = props.next()? {
            match id {
                prop::USER_PROPERTY => props.user_property(&mut user_properties)?,
                _ => return Err(not_allowed(id)),
            }
        }
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string("topic filter")?);
    }
    if filters.is_empty() {
        return Err(protocol_error("no topic filters"));
    }
    Ok(Packet::Unsubscribe(Unsubscribe {
        packet_id,
        filters,
        user_properties,
    }))
}

fn decode_unsuback(r: &mut Reader<'_>, flags: u8, protocol: Protocol) -> Result<Packet> {
    check_flags(flags, 0, protocol)?;
    let packet_id = r.packet_id()?;
    let mut ack = UnsubAck {
        packet_id,
        ..UnsubAck::default()
    };
    if protocol.is_v5() {
        ack.properties = decode_ack_properties(r)?;
        ack.reason_codes = r.take(r.remaining(), "reason codes")?.to_vec();
        for &code in &ack.reason_codes {
            check_reason(code, reason::UNSUBACK_CODES)?;
        }
    }
    Ok(Packet::UnsubAck(ack))
}

// ------------------------------------------------------ DISCONNECT AUTH

fn decode_disconnect(r: &mut Reader<'_>, flags: u8, protocol: Protocol) -> Result<Packet> {
    check_flags(flags, 0, protocol)?;
    let mut d = Disconnect::default();
    // 5.0: remaining length 0 = normal disconnection; 1 = reason code only.
    if protocol.is_v5() && !r.is_empty() {
        d.reason = check_reason(r.u8("reason code")?, reason::DISCONNECT_CODES)?;
        if !r.is_empty() {
            let p = &mut d.properties;
            let mut props = r.properties()?;
            while let Some(id) = props.next()? {
                match id {
                    prop::SESSION_EXPIRY_INTERVAL => {
                        once(&mut p.session_expiry_interval, props.u32(id)?, id)?
                    }
                    prop::REASON_STRING => once(&mut p.reason_string, props.string(id)?, id)?,
                    prop::USER_PROPERTY => props.user_property(&mut p.user_properties)?,
                    prop::SERVER_REFERENCE => once(&mut p.server_reference, props.string(id)?, id)?,
                    _ => return Err(not_allowed(id)),
                }
            }
        }
    }
    Ok(Packet::Disconnect(d))
}

fn decode_auth(r: &mut Reader<'_>, flags: u8) -> Result<Packet> {
    check_flags(flags, 0, Protocol::V5)?;
    let mut a = Auth::default();
    // Remaining length 0 = success, no properties. A reason code without a
    // property length is accepted too, as for DISCONNECT.
    if !r.is_empty() {
        a.reason = check_reason(r.u8("reason code")?, reason::AUTH_CODES)?;
        if !r.is_empty() {
            let p = &mut a.properties;
            let mut props = r.properties()?;
            while let Some(id) = props.next()? {
                match id {
                    prop::AUTHENTICATION_METHOD => {
                        once(&mut p.authentication_method, props.string(id)?, id)?
                    }
                    prop::AUTHENTICATION_DATA => {
                        once(&mut p.authentication_data, props.binary(id)?, id)?
                    }
                    prop::REASON_STRING => once(&mut p.reason_string, props.string(id)?, id)?,
                    prop::USER_PROPERTY => props.user_property(&mut p.user_properties)?,
                    _ => return Err(not_allowed(id)),
                }
            }
        }
    }
    Ok(Packet::Auth(a))
}
