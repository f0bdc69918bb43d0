//! MQTT packet codec: turns bytes from a connection into [`Packet`] values
//! and back, for MQTT 3.1, 3.1.1 and 5.0.
//!
//! This module owns the wire format and nothing else: the fixed header and
//! remaining length, every control packet's variable header and payload, MQTT
//! 5 properties (which ids each packet allows, duplicates, value ranges),
//! reason codes and their 3.x equivalents, UTF-8 and topic-name validation,
//! and the packet size limit. Session state, topic alias mapping, topic
//! filter syntax (answered per filter in SUBACK), and direction-dependent
//! rules (e.g. a client must not send a Subscription Identifier in PUBLISH)
//! are the broker's.
//!
//! It is self-contained (only `std`, `bytes` and `thiserror`, no `crate::`
//! paths) so the fuzz crate can include it by path without the broker's
//! dependencies.
//!
//! Decoding is zero-copy for payloads and binary fields: they are slices of
//! the connection buffer. On `Err` the connection must be closed; the buffer
//! may or may not have been consumed past the bad packet.

pub mod packet;
pub mod reason;

mod decode;
mod encode;
mod error;
mod property;

#[cfg(test)]
mod tests;

pub use error::{DecodeError, EncodeError};
pub use packet::*;

/// Largest remaining length (and variable byte integer) MQTT can express.
pub const MAX_REMAINING_LENGTH: usize = decode::MAX_VARINT;

/// Decode one packet from the front of `buf`. `Ok(None)` = need more bytes
/// (`buf` untouched). On `Ok(Some)` exactly that packet's bytes are consumed.
/// Payloads and binary data are zero-copy slices (`split_to().freeze()`).
/// CONNECT is decoded by its own protocol name/level, whatever `protocol`
/// says; every other packet uses `protocol` (properties and reason codes only
/// for V5). If the fixed header announces a packet whose total size (fixed
/// header included) exceeds `max_packet_size`, returns
/// `Err(PacketTooLarge)` as soon as the header is readable.
pub fn decode(
    buf: &mut bytes::BytesMut,
    protocol: Protocol,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    decode::decode(buf, protocol, max_packet_size)
}

/// Append the wire form of `packet` for `protocol` to `out`. For CONNECT the
/// protocol name and level come from `protocol`, not `Connect::protocol`.
/// Fields that do not exist in 3.x (properties, most reason codes) are left
/// out for 3.x; CONNACK and SUBACK codes are mapped to 3.x return codes.
/// On error nothing is appended.
pub fn encode(
    packet: &Packet,
    protocol: Protocol,
    out: &mut bytes::BytesMut,
) -> Result<(), EncodeError> {
    encode::encode(packet, protocol, out)
}

/// Exact number of bytes `encode` would write (unspecified if it would fail).
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    encode::encoded_len(packet, protocol)
}

/// Append the wire form of a PUBLISH given by its parts, as [`encode`] would
/// write the same [`Publish`]. On error nothing is appended.
pub fn encode_publish(
    p: &PublishRef,
    protocol: Protocol,
    out: &mut bytes::BytesMut,
) -> Result<(), EncodeError> {
    encode::encode_publish(p, protocol, out)
}

/// Exact number of bytes [`encode_publish`] would write.
pub fn publish_len(p: &PublishRef, protocol: Protocol) -> usize {
    encode::publish_len(p, protocol)
}
