//! Minimal MQTT 3.1.1 / 5.0 client-side codec: only the packets the load
//! generator sends or expects. Encoders append to a caller-owned `Vec<u8>` so
//! a whole window of packets goes out in one socket write; the decoder borrows
//! from the read buffer (no allocation per packet).
//!
//! It is deliberately not the broker's codec (`raftmq::codec`): a load
//! generator that shares the broker's encoder and decoder would share their
//! bugs too, so a wrong length or flag could pass unnoticed on both ends. Its
//! own small codec keeps the measurement independent of the code measured,
//! and lets the same client drive Mosquitto in `compare.sh` on equal terms.

use std::fmt;

/// MQTT protocol level byte: 4 = 3.1.1, 5 = 5.0.
pub const V311: u8 = 4;
pub const V5: u8 = 5;

/// Largest remaining length MQTT can express (4-byte varint).
pub const MAX_REMAINING: usize = 268_435_455;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtoError {}

fn perr<T>(msg: impl Into<String>) -> Result<T, ProtoError> {
    Err(ProtoError(msg.into()))
}

pub fn put_varint(buf: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        buf.push(b);
        if n == 0 {
            break;
        }
    }
}

pub fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_bin(buf: &mut Vec<u8>, s: &[u8]) {
    put_u16(buf, s.len() as u16);
    buf.extend_from_slice(s);
}

/// Decode a varint at the start of `b`: `Ok(None)` if incomplete.
fn get_varint(b: &[u8]) -> Result<Option<(usize, usize)>, ProtoError> {
    let mut value = 0usize;
    let mut mult = 1usize;
    for (i, &byte) in b.iter().enumerate() {
        if i >= 4 {
            return perr("malformed variable byte integer");
        }
        value += (byte & 0x7f) as usize * mult;
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
        mult *= 128;
    }
    if b.len() >= 4 {
        return perr("malformed variable byte integer");
    }
    Ok(None)
}

pub struct ConnectOpts<'a> {
    pub version: u8,
    pub client_id: &'a str,
    pub clean: bool,
    pub keepalive: u16,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    /// MQTT 5 Session Expiry Interval (seconds); ignored for 3.1.1.
    pub session_expiry: u32,
}

pub fn encode_connect(buf: &mut Vec<u8>, o: &ConnectOpts<'_>) {
    let mut body = Vec::with_capacity(64);
    put_bin(&mut body, b"MQTT");
    body.push(o.version);
    let mut flags = 0u8;
    if o.clean {
        flags |= 0x02;
    }
    if o.username.is_some() {
        flags |= 0x80;
    }
    if o.password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    put_u16(&mut body, o.keepalive);
    if o.version == V5 {
        let mut props = Vec::new();
        if o.session_expiry > 0 {
            props.push(0x11);
            props.extend_from_slice(&o.session_expiry.to_be_bytes());
        }
        put_varint(&mut body, props.len());
        body.extend_from_slice(&props);
    }
    put_bin(&mut body, o.client_id.as_bytes());
    if let Some(u) = o.username {
        put_bin(&mut body, u.as_bytes());
    }
    if let Some(p) = o.password {
        put_bin(&mut body, p.as_bytes());
    }
    buf.push(0x10);
    put_varint(buf, body.len());
    buf.extend_from_slice(&body);
}

/// Bytes `encode_publish` adds for one message (used to size buffers).
pub fn publish_len(version: u8, qos: u8, topic_len: usize, payload_len: usize) -> usize {
    let rem =
        2 + topic_len + if qos > 0 { 2 } else { 0 } + usize::from(version == V5) + payload_len;
    1 + varint_len(rem) + rem
}

/// Append a PUBLISH (no properties) and return the offset of the payload in
/// `buf` so the caller can stamp header fields in place.
pub fn encode_publish(
    buf: &mut Vec<u8>,
    version: u8,
    qos: u8,
    topic: &[u8],
    pid: u16,
    payload: &[u8],
) -> usize {
    let rem =
        2 + topic.len() + if qos > 0 { 2 } else { 0 } + usize::from(version == V5) + payload.len();
    buf.push(0x30 | (qos << 1));
    put_varint(buf, rem);
    put_bin(buf, topic);
    if qos > 0 {
        put_u16(buf, pid);
    }
    if version == V5 {
        buf.push(0); // property length
    }
    let at = buf.len();
    buf.extend_from_slice(payload);
    at
}

pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;

/// PUBACK / PUBREC / PUBREL / PUBCOMP in the short form (reason 0 implied in v5).
pub fn encode_ack(buf: &mut Vec<u8>, first_byte: u8, pid: u16) {
    buf.push(first_byte);
    buf.push(2);
    put_u16(buf, pid);
}

/// A subscriber's answer to a PUBLISH: PUBACK (QoS 1) or PUBREC (QoS 2)
/// into `buf`. Returns whether it is a new delivery: a QoS 2 PUBLISH resent
/// before its PUBREL (its packet id still in `qos2_pending`) is the same
/// delivery again.
pub fn answer_publish(
    buf: &mut Vec<u8>,
    qos: u8,
    pid: u16,
    qos2_pending: &mut std::collections::HashSet<u16>,
) -> bool {
    match qos {
        1 => {
            encode_ack(buf, PUBACK, pid);
            true
        }
        2 => {
            encode_ack(buf, PUBREC, pid);
            qos2_pending.insert(pid)
        }
        _ => true,
    }
}

pub fn encode_subscribe(buf: &mut Vec<u8>, version: u8, pid: u16, filter: &str, qos: u8) {
    let rem = 2 + usize::from(version == V5) + 2 + filter.len() + 1;
    buf.push(0x82);
    put_varint(buf, rem);
    put_u16(buf, pid);
    if version == V5 {
        buf.push(0);
    }
    put_bin(buf, filter.as_bytes());
    buf.push(qos);
}

pub fn encode_pingreq(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&[0xC0, 0]);
}

pub fn encode_disconnect(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&[0xE0, 0]);
}

#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    ConnAck {
        session_present: bool,
        code: u8,
        /// MQTT 5 Receive Maximum from the broker (65535 if absent).
        receive_max: u16,
        /// MQTT 5 Maximum QoS from the broker (2 if absent).
        max_qos: u8,
    },
    Publish {
        qos: u8,
        dup: bool,
        pid: u16,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    PubAck {
        pid: u16,
        reason: u8,
    },
    PubRec {
        pid: u16,
        reason: u8,
    },
    PubRel {
        pid: u16,
    },
    PubComp {
        pid: u16,
        reason: u8,
    },
    SubAck {
        pid: u16,
        codes: &'a [u8],
    },
    PingResp,
    Disconnect {
        reason: u8,
    },
    Other(u8),
}

fn be16(b: &[u8], at: usize) -> Result<u16, ProtoError> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => perr("truncated packet"),
    }
}

/// Walk an MQTT 5 property block, calling `f(id, value_bytes)` for each.
fn walk_props(p: &[u8], mut f: impl FnMut(u8, &[u8])) -> Result<(), ProtoError> {
    let mut i = 0;
    while i < p.len() {
        let id = p[i];
        i += 1;
        let len = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => match get_varint(&p[i..])? {
                Some((_, n)) => n,
                None => return perr("truncated property"),
            },
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                2 + be16(p, i)? as usize
            }
            0x26 => {
                let k = 2 + be16(p, i)? as usize;
                k + 2 + be16(p, i + k)? as usize
            }
            _ => return perr(format!("unknown property 0x{id:02x}")),
        };
        let v = p
            .get(i..i + len)
            .ok_or_else(|| ProtoError("truncated property".into()))?;
        f(id, v);
        i += len;
    }
    Ok(())
}

/// The property block starting at `at` (after its length) and the offset after it.
fn props_at(b: &[u8], at: usize) -> Result<(&[u8], usize), ProtoError> {
    match get_varint(b.get(at..).unwrap_or(&[]))? {
        Some((len, n)) if at + n + len <= b.len() => Ok((&b[at + n..at + n + len], at + n + len)),
        _ => perr("truncated properties"),
    }
}

fn skip_props(b: &[u8], at: usize) -> Result<usize, ProtoError> {
    props_at(b, at).map(|(_, end)| end)
}

/// Parse one packet from the front of `buf`. `Ok(None)` = need more bytes.
/// On success returns the packet and the number of bytes it occupied.
pub fn parse(buf: &[u8], version: u8) -> Result<Option<(Packet<'_>, usize)>, ProtoError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let first = buf[0];
    let (rem, vlen) = match get_varint(&buf[1..])? {
        Some(x) => x,
        None => return Ok(None),
    };
    let total = 1 + vlen + rem;
    if buf.len() < total {
        return Ok(None);
    }
    let b = &buf[1 + vlen..total];
    let v5 = version == V5;
    let ack = |b: &[u8]| -> Result<(u16, u8), ProtoError> {
        let pid = be16(b, 0)?;
        Ok((pid, b.get(2).copied().unwrap_or(0)))
    };
    let pkt = match first >> 4 {
        2 => {
            if b.len() < 2 {
                return perr("short CONNACK");
            }
            let mut receive_max = u16::MAX;
            let mut max_qos = 2;
            if v5 && b.len() > 2 {
                let (props, _) = props_at(b, 2)?;
                walk_props(props, |id, v| match id {
                    0x21 => receive_max = u16::from_be_bytes([v[0], v[1]]),
                    0x24 => max_qos = v[0],
                    _ => {}
                })?;
            }
            Packet::ConnAck {
                session_present: b[0] & 1 == 1,
                code: b[1],
                receive_max,
                max_qos,
            }
        }
        3 => {
            let qos = (first >> 1) & 3;
            if qos == 3 {
                return perr("PUBLISH with QoS 3");
            }
            let tlen = be16(b, 0)? as usize;
            let mut at = 2 + tlen;
            let topic = b
                .get(2..at)
                .ok_or_else(|| ProtoError("truncated topic".into()))?;
            let mut pid = 0;
            if qos > 0 {
                pid = be16(b, at)?;
                at += 2;
            }
            if v5 {
                at = skip_props(b, at)?;
            }
            let payload = b
                .get(at..)
                .ok_or_else(|| ProtoError("truncated PUBLISH".into()))?;
            Packet::Publish {
                qos,
                dup: first & 0x08 != 0,
                pid,
                topic,
                payload,
            }
        }
        4 => {
            let (pid, reason) = ack(b)?;
            Packet::PubAck { pid, reason }
        }
        5 => {
            let (pid, reason) = ack(b)?;
            Packet::PubRec { pid, reason }
        }
        6 => Packet::PubRel { pid: be16(b, 0)? },
        7 => {
            let (pid, reason) = ack(b)?;
            Packet::PubComp { pid, reason }
        }
        9 => {
            let pid = be16(b, 0)?;
            let at = if v5 { skip_props(b, 2)? } else { 2 };
            Packet::SubAck {
                pid,
                codes: &b[at..],
            }
        }
        13 => Packet::PingResp,
        14 => Packet::Disconnect {
            reason: b.first().copied().unwrap_or(0),
        },
        t => Packet::Other(t),
    };
    Ok(Some((pkt, total)))
}

/// Human-readable CONNACK refusal.
pub fn connack_reason(version: u8, code: u8) -> String {
    let s = if version == V5 {
        match code {
            0x80 => "unspecified error",
            0x81 => "malformed packet",
            0x82 => "protocol error",
            0x84 => "unsupported protocol version",
            0x85 => "client identifier not valid",
            0x86 => "bad user name or password",
            0x87 => "not authorized",
            0x88 => "server unavailable",
            0x89 => "server busy",
            0x8A => "banned",
            0x9F => "connection rate exceeded",
            _ => "refused",
        }
    } else {
        match code {
            1 => "unacceptable protocol version",
            2 => "identifier rejected",
            3 => "server unavailable",
            4 => "bad user name or password",
            5 => "not authorized",
            _ => "refused",
        }
    };
    format!("CONNACK refused: {s} (code 0x{code:02x})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, n);
            assert_eq!(b.len(), varint_len(n));
            assert_eq!(get_varint(&b).unwrap(), Some((n, b.len())));
        }
        assert!(get_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        assert_eq!(get_varint(&[0x80]).unwrap(), None);
    }

    #[test]
    fn publish_roundtrip_both_versions() {
        for v in [V311, V5] {
            for qos in 0..=2u8 {
                let mut b = Vec::new();
                let at = encode_publish(&mut b, v, qos, b"a/b", 7, b"hello");
                assert_eq!(&b[at..], b"hello");
                assert_eq!(b.len(), publish_len(v, qos, 3, 5));
                let (p, n) = parse(&b, v).unwrap().unwrap();
                assert_eq!(n, b.len());
                let pid = if qos > 0 { 7 } else { 0 };
                assert_eq!(
                    p,
                    Packet::Publish {
                        qos,
                        dup: false,
                        pid,
                        topic: b"a/b",
                        payload: b"hello"
                    }
                );
                // Incomplete input asks for more.
                assert_eq!(parse(&b[..b.len() - 1], v).unwrap(), None);
            }
        }
    }

    #[test]
    fn acks_and_connack() {
        let mut b = Vec::new();
        encode_ack(&mut b, PUBACK, 300);
        encode_ack(&mut b, PUBREL, 301);
        let (p, n) = parse(&b, V311).unwrap().unwrap();
        assert_eq!(
            p,
            Packet::PubAck {
                pid: 300,
                reason: 0
            }
        );
        let (p, _) = parse(&b[n..], V311).unwrap().unwrap();
        assert_eq!(p, Packet::PubRel { pid: 301 });
        // v5 CONNACK with Receive Maximum 20 and a reason string.
        let c = [
            0x20, 13, 0, 0, 10, 0x21, 0, 20, 0x1F, 0, 4, b'o', b'k', b'!', b'!',
        ];
        let (p, n) = parse(&c, V5).unwrap().unwrap();
        assert_eq!(n, c.len());
        assert_eq!(
            p,
            Packet::ConnAck {
                session_present: false,
                code: 0,
                receive_max: 20,
                max_qos: 2
            }
        );
    }

    #[test]
    fn subscribe_and_suback() {
        let mut b = Vec::new();
        encode_subscribe(&mut b, V5, 1, "x/#", 1);
        assert_eq!(b, [0x82, 9, 0, 1, 0, 0, 3, b'x', b'/', b'#', 1]);
        let s = [0x90, 4, 0, 1, 0, 1];
        let (p, _) = parse(&s, V5).unwrap().unwrap();
        assert_eq!(
            p,
            Packet::SubAck {
                pid: 1,
                codes: &[1]
            }
        );
    }
}
