//! Decode and encode errors. Every decode error maps to the MQTT 5.0 reason
//! code the broker puts in its CONNACK or DISCONNECT before closing.

use std::borrow::Cow;

use thiserror::Error;

use super::packet::Protocol;
use super::reason;

/// Why bytes from the network are not a valid MQTT packet. Any of these ends
/// the connection; `reason_code` gives the code to send first (MQTT 5.0).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Bytes that cannot be parsed: bad remaining length, truncated field,
    /// bad flags or reserved bits, invalid UTF-8, U+0000 in a string, QoS 3,
    /// an unknown property or one not allowed on the packet, ...
    #[error("malformed packet: {0}")]
    MalformedPacket(Cow<'static, str>),
    /// Parsable bytes that break a protocol rule: a duplicate property, a zero
    /// packet identifier, topic alias or subscription identifier, an empty
    /// SUBSCRIBE/UNSUBSCRIBE, a reason code not allowed on the packet, ...
    #[error("protocol error: {0}")]
    ProtocolError(Cow<'static, str>),
    /// CONNECT with a protocol name/level pair other than "MQIsdp"/3,
    /// "MQTT"/4 or "MQTT"/5. `name` is the protocol name as sent (lossy UTF-8).
    #[error("unsupported protocol: name {name:?}, level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
    /// The fixed header announces a packet of `size` bytes (fixed header
    /// included) but at most `max` are accepted.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    /// PUBLISH (or will) topic name containing `+` or `#`, or empty where
    /// that is not allowed.
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(Cow<'static, str>),
}

impl DecodeError {
    /// MQTT 5.0 reason code for this error (for CONNACK or DISCONNECT).
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::MalformedPacket(_) => reason::MALFORMED_PACKET,
            DecodeError::ProtocolError(_) => reason::PROTOCOL_ERROR,
            DecodeError::UnsupportedProtocol { .. } => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::TopicNameInvalid(_) => reason::TOPIC_NAME_INVALID,
        }
    }
}

/// Why a packet value cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A string or binary field longer than the 65,535 bytes a two-byte
    /// length prefix can describe.
    #[error("{field} is {len} bytes long; MQTT allows at most 65535")]
    FieldTooLong { field: &'static str, len: usize },
    /// The remaining length exceeds 268,435,455 (the largest variable byte
    /// integer).
    #[error("remaining length {0} exceeds the MQTT maximum of 268435455")]
    PacketTooLarge(usize),
    /// A variable byte integer field (subscription identifier) above 268,435,455.
    #[error("{field} value {value} exceeds the MQTT maximum of 268435455")]
    ValueTooLarge { field: &'static str, value: u32 },
    /// The packet cannot be expressed in this protocol version (AUTH in 3.x,
    /// a password without a user name in 3.x).
    #[error("{what} cannot be encoded for {protocol:?}")]
    NotRepresentable {
        what: &'static str,
        protocol: Protocol,
    },
}
