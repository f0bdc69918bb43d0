//! Encoding: a [`Packet`] to its wire form, and the Variable Byte Integer
//! every fixed header carries.

use bytes::{BufMut, BytesMut};

use super::{
    CodecError, Packet, Version, CONNACK, CONNECT, DISCONNECT, MAX_REMAINING, PINGREQ, PINGRESP,
    PROP_SERVER_KEEP_ALIVE, PROP_SESSION_EXPIRY, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK,
    SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};

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
