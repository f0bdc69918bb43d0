//! Per-listener limits and the connect timeout: `max_connections`,
//! `max_connection_rate`, `allowed_protocol_versions` (refused with the
//! protocol's own code), and a connection that never sends CONNECT.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::{refused, section, v3_ok, Answer, Plain};

#[test]
fn a_connection_that_never_sends_connect_is_closed_after_the_connect_timeout() {
    let b = Broker::start_with_config("connect_timeout = 1000\n");
    let mut silent = Plain::open(b.mqtt_port, Protocol::V311);
    let (took, bytes) = silent.until_closed(Duration::from_secs(8));
    assert_eq!(bytes, 0, "nothing is sent to a client without a CONNECT");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}, connect_timeout is 1 s"
    );
}

#[test]
fn the_default_connect_timeout_leaves_a_slow_client_its_ten_seconds() {
    // The negative of the test above: without the key the connection is
    // still open after two seconds and a late CONNECT is served.
    let b = Broker::start();
    let mut slow = Plain::open(b.mqtt_port, Protocol::V311);
    std::thread::sleep(Duration::from_secs(2));
    match slow.connect(v3_connect("late", true)) {
        Answer::ConnAck(a) => assert_eq!(a.code, 0),
        Answer::Closed => panic!("closed before the default 10 s"),
    }
}

#[test]
fn max_connections_closes_the_connection_over_the_limit_at_once() {
    let port = free_port();
    let b = Broker::start_with_config(&section(
        "tcp.limited",
        port,
        &[("max_connections", "2".into())],
    ));
    let first = v3_ok(port, "one").expect("first");
    let _second = v3_ok(port, "two").expect("second");
    let mut third = Plain::open(port, Protocol::V311);
    let (took, bytes) = third.until_closed(WAIT);
    assert_eq!(bytes, 0);
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    assert_eq!(refused(&b, "tcp.limited", "max_connections"), 1);
    // The default listener has no limit.
    let _other = v3_ok(b.mqtt_port, "elsewhere").expect("default listener");
    // A closed connection frees its place.
    drop(first);
    assert!(wait_until(WAIT, || v3_ok(port, "three").is_ok()));
}

#[test]
fn max_connection_rate_closes_the_connections_beyond_the_rate() {
    let port = free_port();
    let b = Broker::start_with_config(&section(
        "tcp.rated",
        port,
        &[("max_connection_rate", "3".into())],
    ));
    let start = Instant::now();
    let mut conns: Vec<Plain> = (0..12)
        .map(|i| {
            let mut c = Plain::open(port, Protocol::V311);
            c.send(&Packet::Connect(Box::new(v3_connect(
                &format!("r{i}"),
                true,
            ))));
            c
        })
        .collect();
    let opened_in = start.elapsed();
    let mut accepted = 0;
    let mut closed = 0;
    for c in &mut conns {
        match c.recv(WAIT) {
            Some(Packet::ConnAck(a)) if a.code == 0 => accepted += 1,
            None => closed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // 12 connections within `opened_in`: at most 3 per started second.
    let windows = opened_in.as_secs() as usize + 2;
    assert!(
        accepted >= 3 && accepted <= 3 * windows,
        "accepted {accepted}"
    );
    assert_eq!(accepted + closed, 12);
    assert_eq!(
        refused(&b, "tcp.rated", "max_connection_rate"),
        closed as u64
    );
    // The next second admits again.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(v3_ok(port, "later").is_ok());
}

#[test]
fn mqtt_3_1_1_on_a_listener_for_mqtt_5_only_gets_unacceptable_protocol_version() {
    let port = free_port();
    let _b = Broker::start_with_config(&section(
        "tcp.v5only",
        port,
        &[("allowed_protocol_versions", "\"5\"".into())],
    ));
    let mut c = Plain::open(port, Protocol::V311);
    c.send(&Packet::Connect(Box::new(v3_connect("old", true))));
    let mut ack = [0u8; 4];
    std::io::Read::read_exact(&mut c.stream, &mut ack).expect("CONNACK");
    assert_eq!(
        ack,
        [
            0x20,
            0x02,
            0x00,
            raftmq::codec::reason::V3_UNACCEPTABLE_PROTOCOL_VERSION
        ]
    );
    // MQTT 5 is served there.
    let mut v5 = Plain::open(port, Protocol::V5);
    match v5.connect(v5_connect("new", true, None)) {
        Answer::ConnAck(a) => assert_eq!(a.code, raftmq::codec::reason::SUCCESS),
        Answer::Closed => panic!("MQTT 5 refused"),
    }
}

#[test]
fn mqtt_5_on_a_listener_for_mqtt_3_only_gets_unsupported_protocol_version() {
    let port = free_port();
    let _b = Broker::start_with_config(&section(
        "tcp.v3only",
        port,
        &[("allowed_protocol_versions", "\"3,4\"".into())],
    ));
    let mut c = Plain::open(port, Protocol::V5);
    match c.connect(v5_connect("new", true, None)) {
        Answer::ConnAck(a) => {
            assert_eq!(a.code, raftmq::codec::reason::UNSUPPORTED_PROTOCOL_VERSION)
        }
        Answer::Closed => panic!("closed without a CONNACK"),
    }
    assert!(v3_ok(port, "old").is_ok(), "MQTT 3.1.1 is served there");
}
