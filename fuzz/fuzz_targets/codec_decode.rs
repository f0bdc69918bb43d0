//! Decodes arbitrary bytes as a stream of MQTT packets for each protocol
//! version. Every packet that decodes is checked against the codec's own
//! contract: its size limit and prefix behaviour, and that it re-encodes to
//! bytes that decode to the same packet, of exactly `encoded_len` bytes.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code, clippy::enum_variant_names)]
#[path = "../../src/codec/mod.rs"]
mod codec;

use codec::{decode, encode, encoded_len, DecodeError, Packet, Protocol};

const PROTOCOLS: [Protocol; 3] = [Protocol::V31, Protocol::V311, Protocol::V5];

fuzz_target!(|data: &[u8]| {
    for protocol in PROTOCOLS {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            let start = data.len() - before;
            match decode(&mut buf, protocol, usize::MAX) {
                Ok(Some(packet)) => {
                    let consumed = before - buf.len();
                    check(&packet, protocol, &data[start..start + consumed]);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) must not consume");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});

/// `wire` is exactly the bytes `packet` was decoded from.
fn check(packet: &Packet, protocol: Protocol, wire: &[u8]) {
    // The fixed header alone is enough to reject it with a limit one below its size.
    let header_len = 1
        + wire[1..]
            .iter()
            .position(|b| b & 0x80 == 0)
            .expect("header")
        + 1;
    let mut head = BytesMut::from(&wire[..header_len]);
    match decode(&mut head, protocol, wire.len() - 1) {
        Err(DecodeError::PacketTooLarge { size, .. }) => assert_eq!(size, wire.len()),
        other => panic!("expected PacketTooLarge, got {other:?}"),
    }
    // One byte short needs more bytes.
    let mut short = BytesMut::from(&wire[..wire.len() - 1]);
    assert_eq!(decode(&mut short, protocol, usize::MAX), Ok(None));

    // CONNECT is decoded by its own protocol level: re-encode with that.
    let wire_protocol = match packet {
        Packet::Connect(c) => c.protocol.expect("decoded CONNECT has a protocol"),
        _ => protocol,
    };
    let mut out = BytesMut::new();
    encode(packet, wire_protocol, &mut out).expect("a decoded packet re-encodes");
    assert_eq!(out.len(), encoded_len(packet, wire_protocol));
    let mut again = out.clone();
    let decoded = decode(&mut again, wire_protocol, usize::MAX)
        .expect("re-encoded packet decodes")
        .expect("re-encoded packet is complete");
    assert_eq!(&decoded, packet);
    assert!(again.is_empty(), "re-encoded packet consumed exactly");
}
