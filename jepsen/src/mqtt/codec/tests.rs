//! Codec tests: every packet round-trips in both versions and asks for more
//! bytes at every cut; varint edges; v5 acknowledgement forms; bad input.

use bytes::{Bytes, BytesMut};

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
