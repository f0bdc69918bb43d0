//! MQTT 3.1.1 and 5.0 packets: their in-memory form ([`Packet`]) and their
//! wire encoding ([`encode`]) and decoding ([`decode`]). Only what the client
//! needs: no will, no username/password, no AUTH packet, one set of v5
//! properties read (the rest are validated and skipped).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl Version {
    fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// The largest packet [`decode`] accepts by default (whole packet, header
/// included).
pub const MAX_PACKET: usize = 4 * 1024 * 1024;

/// The largest remaining length the varint can express.
const MAX_REMAINING: usize = 268_435_455;

/// Why a packet could not be encoded or decoded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes are not a valid packet.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The packet is larger than the accepted maximum.
    #[error("packet of {0} bytes exceeds the maximum of {1}")]
    TooLarge(usize, usize),
    /// The packet cannot be expressed on the wire (a string too long, a bad
    /// QoS, ...).
    #[error("cannot encode: {0}")]
    Unencodable(String),
}

fn malformed(what: impl Into<String>) -> CodecError {
    CodecError::Malformed(what.into())
}

/// An application message as a PUBLISH packet carries it. Also the argument
/// of [`crate::mqtt::Client::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// Packet identifier; `None` for QoS 0. On publish, `None` with QoS 1/2
    /// means "allocate a fresh one".
    pub pkid: Option<u16>,
    /// Set on a re-send of an earlier attempt (same `pkid`).
    pub dup: bool,
}

impl Publish {
    /// A first attempt (no DUP, not retained) with a packet id allocated at
    /// publish time.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>, qos: u8) -> Self {
        Publish {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            pkid: None,
            dup: false,
        }
    }
}

/// One MQTT control packet. Reason codes of v5 acknowledgements are 0 on
/// 3.1.1 (which has none); `codes` of UNSUBACK are empty on 3.1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect {
        version: Version,
        client_id: String,
        /// Clean Session (3.1.1) / Clean Start (5).
        clean: bool,
        keep_alive: u16,
        /// v5 Session Expiry Interval property, if sent.
        session_expiry: Option<u32>,
    },
    Connack {
        session_present: bool,
        code: u8,
        /// v5 Server Keep Alive property, if sent: it overrides ours.
        server_keep_alive: Option<u16>,
    },
    Publish(Publish),
    Puback {
        pkid: u16,
        reason: u8,
    },
    Pubrec {
        pkid: u16,
        reason: u8,
    },
    Pubrel {
        pkid: u16,
        reason: u8,
    },
    Pubcomp {
        pkid: u16,
        reason: u8,
    },
    /// Filters with their requested maximum QoS.
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Suback {
        pkid: u16,
        codes: Vec<u8>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    Unsuback {
        pkid: u16,
        codes: Vec<u8>,
    },
    Pingreq,
    Pingresp,
    /// `reason` is always 0 on 3.1.1.
    Disconnect {
        reason: u8,
    },
}

// Packet types (high nibble of the first byte).
const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

// The v5 properties this codec reads or writes.
const PROP_SESSION_EXPIRY: u8 = 0x11;
const PROP_SERVER_KEEP_ALIVE: u8 = 0x13;
const PROP_TOPIC_ALIAS: u8 = 0x23;

// ---------------------------------------------------------------- varint

/// Appends `n` as an MQTT Variable Byte Integer.
pub fn encode_varint(n: usize, out: &mut BytesMut) -> Result<(), CodecError> {
    if n > MAX_REMAINING {
        return Err(CodecError::Unencodable(format!("varint {n} too large")));
    }
    let mut n = n;
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if n == 0 {
            return Ok(());
        }
    }
}

/// Reads a Variable Byte Integer from the start of `buf`: `Ok(None)` if
/// `buf` ends before it does, else its value and its length in bytes.
pub fn decode_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(malformed("variable byte integer longer than 4 bytes"))
}

// ---------------------------------------------------------------- encode

fn put_str(s: &str, out: &mut BytesMut) -> Result<(), CodecError> {
    put_bin(s.as_bytes(), out)
}

fn put_bin(b: &[u8], out: &mut BytesMut) -> Result<(), CodecError> {
    let len = u16::try_from(b.len())
        .map_err(|_| CodecError::Unencodable(format!("string of {} bytes", b.len())))?;
    out.put_u16(len);
    out.put_slice(b);
    Ok(())
}

fn check_qos(qos: u8) -> Result<u8, CodecError> {
    if qos > 2 {
        Err(CodecError::Unencodable(format!("QoS {qos}")))
    } else {
        Ok(qos)
    }
}

/// A v5 acknowledgement body: the reason code and the (empty) properties
/// may be omitted when the reason is success.
fn put_ack(pkid: u16, reason: u8, v: Version, body: &mut BytesMut) {
    body.put_u16(pkid);
    if v == Version::V5 && reason != 0 {
        body.put_u8(reason);
    }
}

/// Appends the wire form of `p`, as spoken by version `v` (CONNECT carries
/// its own version).
pub fn encode(p: &Packet, v: Version, out: &mut BytesMut) -> Result<(), CodecError> {
    let v5 = v == Version::V5;
    let mut body = BytesMut::new();
    let first = match p {
        Packet::Connect {
            version,
            client_id,
            clean,
            keep_alive,
            session_expiry,
        } => {
            put_str("MQTT", &mut body)?;
            body.put_u8(version.level());
            body.put_u8(if *clean { 0x02 } else { 0 });
            body.put_u16(*keep_alive);
            if *version == Version::V5 {
                let mut props = BytesMut::new();
                if let Some(e) = session_expiry {
                    props.put_u8(PROP_SESSION_EXPIRY);
                    props.put_u32(*e);
                }
                encode_varint(props.len(), &mut body)?;
                body.put_slice(&props);
            }
            put_str(client_id, &mut body)?;
            CONNECT << 4
        }
        Packet::Connack {
            session_present,
            code,
            server_keep_alive,
        } => {
            body.put_u8(u8::from(*session_present));
            body.put_u8(*code);
            if v5 {
                let mut props = BytesMut::new();
                if let Some(k) = server_keep_alive {
                    props.put_u8(PROP_SERVER_KEEP_ALIVE);
                    props.put_u16(*k);
                }
                encode_varint(props.len(), &mut body)?;
                body.put_slice(&props);
            }
            CONNACK << 4
        }
        Packet::Publish(publish) => {
            let qos = check_qos(publish.qos)?;
            put_str(&publish.topic, &mut body)?;
            match (qos, publish.pkid) {
                (0, None) => {}
                (0, Some(_)) => {
                    return Err(CodecError::Unencodable("QoS 0 with a packet id".into()))
                }
                (_, Some(pkid)) if pkid != 0 => body.put_u16(pkid),
                _ => {
                    return Err(CodecError::Unencodable(
                        "QoS 1/2 without a nonzero packet id".into(),
                    ))
                }
            }
            if publish.dup && qos == 0 {
                return Err(CodecError::Unencodable("DUP on QoS 0".into()));
            }
            if v5 {
                body.put_u8(0); // no properties
            }
            body.put_slice(&publish.payload);
            (PUBLISH << 4) | (u8::from(publish.dup) << 3) | (qos << 1) | u8::from(publish.retain)
        }
        Packet::Puback { pkid, reason } => {
            put_ack(*pkid, *reason, v, &mut body);
            PUBACK << 4
        }
        Packet::Pubrec { pkid, reason } => {
            put_ack(*pkid, *reason, v, &mut body);
            PUBREC << 4
        }
        Packet::Pubrel { pkid, reason } => {
            put_ack(*pkid, *reason, v, &mut body);
            (PUBREL << 4) | 0b0010
        }
        Packet::Pubcomp { pkid, reason } => {
            put_ack(*pkid, *reason, v, &mut body);
            PUBCOMP << 4
        }
        Packet::Subscribe { pkid, filters } => {
            if filters.is_empty() {
                return Err(CodecError::Unencodable("SUBSCRIBE without filters".into()));
            }
            body.put_u16(*pkid);
            if v5 {
                body.put_u8(0);
            }
            for (filter, qos) in filters {
                put_str(filter, &mut body)?;
                body.put_u8(check_qos(*qos)?);
            }
            (SUBSCRIBE << 4) | 0b0010
        }
        Packet::Suback { pkid, codes } => {
            body.put_u16(*pkid);
            if v5 {
                body.put_u8(0);
            }
            body.put_slice(codes);
            SUBACK << 4
        }
        Packet::Unsubscribe { pkid, filters } => {
            if filters.is_empty() {
                return Err(CodecError::Unencodable(
                    "UNSUBSCRIBE without filters".into(),
                ));
            }
            body.put_u16(*pkid);
            if v5 {
                body.put_u8(0);
            }
            for filter in filters {
                put_str(filter, &mut body)?;
            }
            (UNSUBSCRIBE << 4) | 0b0010
        }
        Packet::Unsuback { pkid, codes } => {
            body.put_u16(*pkid);
            if v5 {
                body.put_u8(0);
                body.put_slice(codes);
            }
            UNSUBACK << 4
        }
        Packet::Pingreq => PINGREQ << 4,
        Packet::Pingresp => PINGRESP << 4,
        Packet::Disconnect { reason } => {
            if v5 && *reason != 0 {
                body.put_u8(*reason);
            }
            DISCONNECT << 4
        }
    };
    out.put_u8(first);
    encode_varint(body.len(), out)?;
    out.put_slice(&body);
    Ok(())
}

// ---------------------------------------------------------------- decode

/// A cursor over one complete packet body: running short is malformation.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize, what: &str) -> Result<(), CodecError> {
        if self.0.remaining() < n {
            Err(malformed(format!("truncated {what}")))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self, what: &str) -> Result<u8, CodecError> {
        self.need(1, what)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self, what: &str) -> Result<u16, CodecError> {
        self.need(2, what)?;
        Ok(self.0.get_u16())
    }
    fn u32(&mut self, what: &str) -> Result<u32, CodecError> {
        self.need(4, what)?;
        Ok(self.0.get_u32())
    }
    fn varint(&mut self, what: &str) -> Result<usize, CodecError> {
        match decode_varint(&self.0)? {
            Some((n, len)) => {
                self.0.advance(len);
                Ok(n)
            }
            None => Err(malformed(format!("truncated {what}"))),
        }
    }
    fn bytes(&mut self, n: usize, what: &str) -> Result<Bytes, CodecError> {
        self.need(n, what)?;
        Ok(self.0.split_to(n))
    }
    fn binary(&mut self, what: &str) -> Result<Bytes, CodecError> {
        let len = self.u16(what)?;
        self.bytes(usize::from(len), what)
    }
    fn string(&mut self, what: &str) -> Result<String, CodecError> {
        let b = self.binary(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| malformed(format!("{what} is not UTF-8")))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }
}

/// The v5 properties this client reads; every other known property is
/// checked for its type and skipped.
#[derive(Default)]
struct Props {
    session_expiry: Option<u32>,
    server_keep_alive: Option<u16>,
    topic_alias: Option<u16>,
}

fn read_props(r: &mut Reader) -> Result<Props, CodecError> {
    let len = r.varint("property length")?;
    let mut p = Reader(r.bytes(len, "properties")?);
    let mut out = Props::default();
    while !p.is_empty() {
        let id = p.varint("property identifier")?;
        let id = u8::try_from(id).map_err(|_| malformed(format!("property {id:#x}")))?;
        match id {
            // Byte.
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                p.u8("property")?;
            }
            // Two Byte Integer.
            PROP_SERVER_KEEP_ALIVE => out.server_keep_alive = Some(p.u16("server keep alive")?),
            PROP_TOPIC_ALIAS => out.topic_alias = Some(p.u16("topic alias")?),
            0x21 | 0x22 => {
                p.u16("property")?;
            }
            // Four Byte Integer.
            PROP_SESSION_EXPIRY => out.session_expiry = Some(p.u32("session expiry")?),
            0x02 | 0x18 | 0x27 => {
                p.u32("property")?;
            }
            // Variable Byte Integer.
            0x0B => {
                p.varint("subscription identifier")?;
            }
            // UTF-8 string or binary data.
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                p.binary("property")?;
            }
            // String pair.
            0x26 => {
                p.binary("user property key")?;
                p.binary("user property value")?;
            }
            other => return Err(malformed(format!("unknown property {other:#x}"))),
        }
    }
    Ok(out)
}

/// An acknowledgement body (PUBACK, PUBREC, PUBREL, PUBCOMP): packet id, then
/// on v5 an optional reason code and optional properties.
fn read_ack(r: &mut Reader, v: Version) -> Result<(u16, u8), CodecError> {
    let pkid = r.u16("packet id")?;
    let mut reason = 0;
    if v == Version::V5 && !r.is_empty() {
        reason = r.u8("reason code")?;
        if !r.is_empty() {
            read_props(r)?;
        }
    }
    if !r.is_empty() {
        return Err(malformed("trailing bytes in acknowledgement"));
    }
    Ok((pkid, reason))
}

fn read_connect(r: &mut Reader) -> Result<Packet, CodecError> {
    let name = r.string("protocol name")?;
    if name != "MQTT" {
        return Err(malformed(format!("protocol name {name:?}")));
    }
    let version = match r.u8("protocol level")? {
        4 => Version::V311,
        5 => Version::V5,
        l => return Err(malformed(format!("protocol level {l}"))),
    };
    let flags = r.u8("connect flags")?;
    let keep_alive = r.u16("keep alive")?;
    let v5 = version == Version::V5;
    let session_expiry = if v5 {
        read_props(r)?.session_expiry
    } else {
        None
    };
    let client_id = r.string("client id")?;
    if flags & 0x04 != 0 {
        if v5 {
            read_props(r)?;
        }
        r.string("will topic")?;
        r.binary("will payload")?;
    }
    if flags & 0x80 != 0 {
        r.string("user name")?;
    }
    if flags & 0x40 != 0 {
        r.binary("password")?;
    }
    Ok(Packet::Connect {
        version,
        client_id,
        clean: flags & 0x02 != 0,
        keep_alive,
        session_expiry,
    })
}

fn read_publish(flags: u8, r: &mut Reader, v: Version) -> Result<Packet, CodecError> {
    let qos = (flags >> 1) & 0b11;
    let dup = flags & 0b1000 != 0;
    if qos == 3 {
        return Err(malformed("PUBLISH with QoS 3"));
    }
    if qos == 0 && dup {
        return Err(malformed("PUBLISH QoS 0 with DUP"));
    }
    let topic = r.string("topic")?;
    let pkid = if qos > 0 {
        let p = r.u16("packet id")?;
        if p == 0 {
            return Err(malformed("PUBLISH with packet id 0"));
        }
        Some(p)
    } else {
        None
    };
    if v == Version::V5 {
        // We never send a Topic Alias Maximum, so the server may not use
        // aliases with us.
        if read_props(r)?.topic_alias.is_some() {
            return Err(malformed("topic alias not allowed (maximum 0)"));
        }
    }
    if topic.is_empty() {
        return Err(malformed("PUBLISH with an empty topic"));
    }
    Ok(Packet::Publish(Publish {
        topic,
        payload: r.rest(),
        qos,
        retain: flags & 1 != 0,
        pkid,
        dup,
    }))
}

fn read_body(kind: u8, flags: u8, body: Bytes, v: Version) -> Result<Packet, CodecError> {
    let v5 = v == Version::V5;
    let mut r = Reader(body);
    let fixed_flags = match kind {
        PUBLISH => flags,
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != fixed_flags {
        return Err(malformed(format!(
            "packet type {kind} with flags {flags:#06b}"
        )));
    }
    let packet = match kind {
        CONNECT => read_connect(&mut r)?,
        CONNACK => {
            let ack_flags = r.u8("connack flags")?;
            if ack_flags & !1 != 0 {
                return Err(malformed("reserved CONNACK flags set"));
            }
            let code = r.u8("connack code")?;
            let server_keep_alive = if v5 && !r.is_empty() {
                read_props(&mut r)?.server_keep_alive
            } else {
                None
            };
            Packet::Connack {
                session_present: ack_flags & 1 != 0,
                code,
                server_keep_alive,
            }
        }
        PUBLISH => read_publish(flags, &mut r, v)?,
        PUBACK => {
            let (pkid, reason) = read_ack(&mut r, v)?;
            Packet::Puback { pkid, reason }
        }
        PUBREC => {
            let (pkid, reason) = read_ack(&mut r, v)?;
            Packet::Pubrec { pkid, reason }
        }
        PUBREL => {
            let (pkid, reason) = read_ack(&mut r, v)?;
            Packet::Pubrel { pkid, reason }
        }
        PUBCOMP => {
            let (pkid, reason) = read_ack(&mut r, v)?;
            Packet::Pubcomp { pkid, reason }
        }
        SUBSCRIBE => {
            let pkid = r.u16("packet id")?;
            if v5 {
                read_props(&mut r)?;
            }
            let mut filters = Vec::new();
            while !r.is_empty() {
                let f = r.string("topic filter")?;
                let opts = r.u8("subscription options")?;
                filters.push((f, opts & 0b11));
            }
            if filters.is_empty() {
                return Err(malformed("SUBSCRIBE without filters"));
            }
            Packet::Subscribe { pkid, filters }
        }
        SUBACK => {
            let pkid = r.u16("packet id")?;
            if v5 {
                read_props(&mut r)?;
            }
            let codes = r.rest().to_vec();
            if codes.is_empty() {
                return Err(malformed("SUBACK without return codes"));
            }
            Packet::Suback { pkid, codes }
        }
        UNSUBSCRIBE => {
            let pkid = r.u16("packet id")?;
            if v5 {
                read_props(&mut r)?;
            }
            let mut filters = Vec::new();
            while !r.is_empty() {
                filters.push(r.string("topic filter")?);
            }
            if filters.is_empty() {
                return Err(malformed("UNSUBSCRIBE without filters"));
            }
            Packet::Unsubscribe { pkid, filters }
        }
        UNSUBACK => {
            let pkid = r.u16("packet id")?;
            let codes = if v5 {
                read_props(&mut r)?;
                r.rest().to_vec()
            } else {
                Vec::new()
            };
            Packet::Unsuback { pkid, codes }
        }
        PINGREQ => Packet::Pingreq,
        PINGRESP => Packet::Pingresp,
        DISCONNECT => {
            let reason = if v5 && !r.is_empty() {
                let reason = r.u8("disconnect reason")?;
                if !r.is_empty() {
                    read_props(&mut r)?;
                }
                reason
            } else {
                0
            };
            Packet::Disconnect { reason }
        }
        other => return Err(malformed(format!("unsupported packet type {other}"))),
    };
    if !r.is_empty() {
        return Err(malformed(format!("trailing bytes in packet type {kind}")));
    }
    Ok(packet)
}

/// Takes one packet off the front of `buf`. `Ok(None)` means `buf` holds
/// only part of a packet (nothing is consumed): read more and call again.
/// Packets larger than `max` bytes are refused.
pub fn decode(buf: &mut BytesMut, v: Version, max: usize) -> Result<Option<Packet>, CodecError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining, len_len)) = decode_varint(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + len_len + remaining;
    if total > max {
        return Err(CodecError::TooLarge(total, max));
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(1 + len_len);
    read_body(first >> 4, first & 0x0f, frame.freeze(), v).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: Packet, v: Version) {
        let mut buf = BytesMut::new();
        encode(&p, v, &mut buf).expect("encode");
        let wire = buf.clone();
        let got = decode(&mut buf, v, MAX_PACKET).expect("decode");
        assert_eq!(got.as_ref(), Some(&p), "{v:?} {wire:?}");
        assert!(buf.is_empty(), "all bytes consumed");
        // Every proper prefix asks for more bytes.
        for cut in 0..wire.len() {
            let mut part = BytesMut::from(&wire[..cut]);
            assert_eq!(decode(&mut part, v, MAX_PACKET), Ok(None), "cut {cut}");
            assert_eq!(part.len(), cut, "nothing consumed at cut {cut}");
        }
    }

    fn all_packets(v: Version) -> Vec<Packet> {
        let v5 = v == Version::V5;
        let r = |code: u8| if v5 { code } else { 0 };
        vec![
            Packet::Connect {
                version: v,
                client_id: "client-1".into(),
                clean: false,
                keep_alive: 30,
                session_expiry: v5.then_some(u32::MAX),
            },
            Packet::Connect {
                version: v,
                client_id: String::new(),
                clean: true,
                keep_alive: 0,
                session_expiry: None,
            },
            Packet::Connack {
                session_present: true,
                code: 0,
                server_keep_alive: v5.then_some(60),
            },
            Packet::Connack {
                session_present: false,
                code: if v5 { 0x87 } else { 5 },
                server_keep_alive: None,
            },
            Packet::Publish(Publish::new("a/b", &b"hello"[..], 0)),
            Packet::Publish(Publish {
                topic: "t".into(),
                payload: Bytes::from(vec![7u8; 300]),
                qos: 1,
                retain: true,
                pkid: Some(1),
                dup: false,
            }),
            Packet::Publish(Publish {
                topic: "x/y/z".into(),
                payload: Bytes::new(),
                qos: 2,
                retain: false,
                pkid: Some(65535),
                dup: true,
            }),
            Packet::Puback { pkid: 1, reason: 0 },
            Packet::Puback {
                pkid: 2,
                reason: r(0x10),
            },
            Packet::Pubrec {
                pkid: 3,
                reason: r(0x80),
            },
            Packet::Pubrel { pkid: 4, reason: 0 },
            Packet::Pubrel {
                pkid: 4,
                reason: r(0x92),
            },
            Packet::Pubcomp { pkid: 5, reason: 0 },
            Packet::Subscribe {
                pkid: 6,
                filters: vec![("a/+".into(), 1), ("#".into(), 2)],
            },
            Packet::Suback {
                pkid: 6,
                codes: vec![1, 0x80],
            },
            Packet::Unsubscribe {
                pkid: 7,
                filters: vec!["a/+".into()],
            },
            Packet::Unsuback {
                pkid: 7,
                codes: if v5 { vec![0, 0x11] } else { vec![] },
            },
            Packet::Pingreq,
            Packet::Pingresp,
            Packet::Disconnect { reason: 0 },
            Packet::Disconnect { reason: r(0x8E) },
        ]
    }

    #[test]
    fn round_trips_v311() {
        for p in all_packets(Version::V311) {
            round_trip(p, Version::V311);
        }
    }

    #[test]
    fn round_trips_v5() {
        for p in all_packets(Version::V5) {
            round_trip(p, Version::V5);
        }
    }

    #[test]
    fn varint_edges() {
        for (n, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (MAX_REMAINING, 4),
        ] {
            let mut b = BytesMut::new();
            encode_varint(n, &mut b).expect("encode");
            assert_eq!(b.len(), len, "{n}");
            assert_eq!(decode_varint(&b), Ok(Some((n, len))), "{n}");
            assert_eq!(decode_varint(&b[..len - 1]), Ok(None), "{n} truncated");
        }
        assert!(encode_varint(MAX_REMAINING + 1, &mut BytesMut::new()).is_err());
        assert!(matches!(
            decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(CodecError::Malformed(_))
        ));
        assert_eq!(decode_varint(&[0x80, 0x80, 0x80]), Ok(None));
    }

    #[test]
    fn v5_ack_forms() {
        // PUBACK with reason and empty properties, and with a reason string.
        let mut b = BytesMut::from(&[0x40, 4, 0, 9, 0x10, 0][..]);
        assert_eq!(
            decode(&mut b, Version::V5, MAX_PACKET),
            Ok(Some(Packet::Puback {
                pkid: 9,
                reason: 0x10
            }))
        );
        let mut b = BytesMut::from(&[0x50, 8, 0, 9, 0x97, 4, 0x1F, 0, 1, b'x'][..]);
        assert_eq!(
            decode(&mut b, Version::V5, MAX_PACKET),
            Ok(Some(Packet::Pubrec {
                pkid: 9,
                reason: 0x97
            }))
        );
        // v5 DISCONNECT with no body means normal disconnection.
        let mut b = BytesMut::from(&[0xE0, 0][..]);
        assert_eq!(
            decode(&mut b, Version::V5, MAX_PACKET),
            Ok(Some(Packet::Disconnect { reason: 0 }))
        );
    }

    #[test]
    fn several_packets_in_one_buffer() {
        let mut b = BytesMut::new();
        encode(&Packet::Pingresp, Version::V311, &mut b).expect("encode");
        encode(
            &Packet::Puback { pkid: 3, reason: 0 },
            Version::V311,
            &mut b,
        )
        .expect("encode");
        b.extend_from_slice(&[0x40]); // start of a third
        let v = Version::V311;
        assert_eq!(decode(&mut b, v, MAX_PACKET), Ok(Some(Packet::Pingresp)));
        assert_eq!(
            decode(&mut b, v, MAX_PACKET),
            Ok(Some(Packet::Puback { pkid: 3, reason: 0 }))
        );
        assert_eq!(decode(&mut b, v, MAX_PACKET), Ok(None));
        assert_eq!(&b[..], &[0x40]);
    }

    #[test]
    fn rejects_bad_input() {
        let v = Version::V5;
        let too_big = |b: &[u8]| decode(&mut BytesMut::from(b), v, 1024);
        // 2 MiB remaining length against a 1 KiB limit: refused before reading it.
        assert!(matches!(
            too_big(&[0x30, 0x80, 0x80, 0x80, 0x01]),
            Err(CodecError::TooLarge(..))
        ));
        let bad = |b: &[u8]| decode(&mut BytesMut::from(b), v, MAX_PACKET);
        assert!(
            matches!(bad(&[0x36, 0]), Err(CodecError::Malformed(_))),
            "QoS 3"
        );
        assert!(
            matches!(bad(&[0x60, 2, 0, 1]), Err(CodecError::Malformed(_))),
            "PUBREL flags"
        );
        assert!(
            matches!(bad(&[0x40, 1, 0]), Err(CodecError::Malformed(_))),
            "short PUBACK"
        );
        assert!(
            matches!(bad(&[0xF0, 0]), Err(CodecError::Malformed(_))),
            "AUTH"
        );
        // PUBLISH with an unknown property.
        assert!(matches!(
            bad(&[0x30, 6, 0, 1, b't', 2, 0x7f, 0]),
            Err(CodecError::Malformed(_))
        ));
        // PUBLISH with invalid UTF-8 in the topic.
        assert!(matches!(
            decode(
                &mut BytesMut::from(&[0x30, 4, 0, 1, 0xff, 0][..]),
                v,
                MAX_PACKET
            ),
            Err(CodecError::Malformed(_))
        ));
        assert!(encode(
            &Packet::Publish(Publish::new("t", Bytes::new(), 1)),
            v,
            &mut BytesMut::new()
        )
        .is_err());
    }
}
