//! Decoding: one packet off the front of a buffer, validated, with the v5
//! properties the client reads; and the Variable Byte Integer.

use bytes::{Buf, Bytes, BytesMut};

use super::{
    malformed, CodecError, Packet, Publish, Version, CONNACK, CONNECT, DISCONNECT, PINGREQ,
    PINGRESP, PROP_SERVER_KEEP_ALIVE, PROP_SESSION_EXPIRY, PROP_TOPIC_ALIAS, PUBACK, PUBCOMP,
    PUBLISH, PUBREC, PUBREL, SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};

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
