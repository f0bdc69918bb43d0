//! MQTT 3.1.1 and 5.0 packets: their in-memory form ([`Packet`]) and their
//! wire encoding ([`encode`](fn@encode)) and decoding
//! ([`decode`](fn@decode)). Only what the client needs: no will, no
//! username/password, no AUTH packet, one set of v5 properties read (the
//! rest are validated and skipped).
//!
//! - `encode`: [`encode`](fn@encode) and [`encode_varint`].
//! - `decode`: [`decode`](fn@decode) and [`decode_varint`].

use bytes::Bytes;

mod decode;
mod encode;

#[cfg(test)]
mod tests;

pub use decode::{decode, decode_varint};
pub use encode::{encode, encode_varint};

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

/// The largest packet [`decode`](fn@decode) accepts by default (whole
/// packet, header included).
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
