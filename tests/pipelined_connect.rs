//! Packets a client sends right behind its CONNECT, before the CONNACK
//! (MQTT 3.1.1 §3.1.4, MQTT 5 §3.1.4), are handled in order after the
//! CONNACK, exactly as if they had arrived later; behind a refused CONNECT
//! they are discarded. Constrained devices connect, publish and disconnect in
//! one burst, so every case here writes its packets in a single write (or, for
//! the split cases, in two writes cut at every byte boundary).

mod common;

use std::time::Duration;

use common::*;
use raftmq::codec::reason;

fn topic(name: &str) -> String {
    unique(&format!("pp/{name}")).replace('-', "/")
}

fn connect_packet(proto: Protocol, client_id: &str) -> Connect {
    match proto {
        Protocol::V5 => v5_connect(client_id, true, None),
        _ => v3_connect(client_id, true),
    }
}

/// The bytes of `packets`, encoded for `proto`, back to back.
fn burst_bytes(proto: Protocol, packets: &[Packet]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for p in packets {
        encode(p, proto, &mut out).unwrap_or_else(|e| panic!("encode {p:?}: {e:?}"));
    }
    out.to_vec()
}

/// Opens a connection and writes CONNECT followed by `rest`, in one write.
fn burst(port: u16, proto: Protocol, client_id: &str, rest: Vec<Packet>) -> RawClient {
    let mut packets = vec![Packet::Connect(Box::new(connect_packet(proto, client_id)))];
    packets.extend(rest);
    let mut c = RawClient::open(port, proto);
    c.send_bytes(&burst_bytes(proto, &packets))
        .expect("write the burst");
    c
}

fn expect_connack_accepted(c: &mut RawClient) {
    match c.expect_packet(WAIT) {
        Packet::ConnAck(a) => assert_eq!(a.code, reason::SUCCESS, "CONNACK refused: {a:?}"),
        other => panic!("expected CONNACK first, got {other:?}"),
    }
}

fn subscriber(port: u16, filter: &str, qos: QoS) -> RawClient {
    let (mut s, _) = RawClient::v3(port, &unique("pp-sub"), true);
    s.subscribe(filter, qos);
    s
}

fn publish(topic: &str, qos: QoS, payload: &[u8], packet_id: u16) -> Packet {
    let mut p = publish_packet(topic, qos, payload);
    p.packet_id = packet_id;
    Packet::Publish(p)
}

fn subscribe_then_suback_arrives(proto: Protocol) {
    let b = Broker::start();
    let t = topic("sub");
    let mut sub = subscribe_packet(&t, QoS::AtLeastOnce);
    sub.packet_id = 7;
    let mut c = burst(
        b.mqtt_port,
        proto,
        &unique("pp"),
        vec![Packet::Subscribe(sub)],
    );
    expect_connack_accepted(&mut c);
    match c.expect_packet(WAIT) {
        Packet::SubAck(a) => {
            assert_eq!(a.packet_id, 7);
            assert_eq!(a.reason_codes, vec![reason::GRANTED_QOS_1]);
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
    // The subscription is live: a message published now is routed to it.
    mosquitto_pub(b.mqtt_port, &["-t", &t, "-m", "after", "-q", "1"]).assert_success("publish");
    assert_eq!(payloads(&c.collect_publishes(1, WAIT)), vec!["after"]);
}

#[test]
fn v311_connect_then_subscribe_in_one_write_gets_its_suback() {
    subscribe_then_suback_arrives(Protocol::V311);
}

#[test]
fn v5_connect_then_subscribe_in_one_write_gets_its_suback() {
    subscribe_then_suback_arrives(Protocol::V5);
}

fn qos0_publish_reaches_subscriber(proto: Protocol) {
    let b = Broker::start();
    let t = topic("q0");
    let mut s = subscriber(b.mqtt_port, &t, QoS::AtMostOnce);
    let mut c = burst(
        b.mqtt_port,
        proto,
        &unique("pp"),
        vec![publish(&t, QoS::AtMostOnce, b"zero", 0)],
    );
    expect_connack_accepted(&mut c);
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["zero"]);
}

#[test]
fn v311_connect_then_qos0_publish_in_one_write_reaches_the_subscriber() {
    qos0_publish_reaches_subscriber(Protocol::V311);
}

#[test]
fn v5_connect_then_qos0_publish_in_one_write_reaches_the_subscriber() {
    qos0_publish_reaches_subscriber(Protocol::V5);
}

fn qos1_publish_is_acked_and_delivered(proto: Protocol) {
    let b = Broker::start();
    let t = topic("q1");
    let mut s = subscriber(b.mqtt_port, &t, QoS::AtLeastOnce);
    let mut c = burst(
        b.mqtt_port,
        proto,
        &unique("pp"),
        vec![publish(&t, QoS::AtLeastOnce, b"one", 11)],
    );
    expect_connack_accepted(&mut c);
    match c.expect_packet(WAIT) {
        Packet::PubAck(a) => {
            assert_eq!(a.packet_id, 11);
            assert_eq!(a.reason, reason::SUCCESS);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["one"]);
}

#[test]
fn v311_connect_then_qos1_publish_in_one_write_is_acknowledged_and_delivered() {
    qos1_publish_is_acked_and_delivered(Protocol::V311);
}

#[test]
fn v5_connect_then_qos1_publish_in_one_write_is_acknowledged_and_delivered() {
    qos1_publish_is_acked_and_delivered(Protocol::V5);
}

fn qos2_publish_is_received_and_delivered(proto: Protocol) {
    let b = Broker::start();
    let t = topic("q2");
    let mut s = subscriber(b.mqtt_port, &t, QoS::ExactlyOnce);
    let mut c = burst(
        b.mqtt_port,
        proto,
        &unique("pp"),
        vec![publish(&t, QoS::ExactlyOnce, b"two", 12)],
    );
    expect_connack_accepted(&mut c);
    match c.expect_packet(WAIT) {
        Packet::PubRec(r) => {
            assert_eq!(r.packet_id, 12);
            assert_eq!(r.reason, reason::SUCCESS);
        }
        other => panic!("expected PUBREC, got {other:?}"),
    }
    c.send(&Packet::PubRel(pubresp(12)));
    match c.expect_packet(WAIT) {
        Packet::PubComp(r) => assert_eq!(r.packet_id, 12),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["two"]);
    s.expect_no_publish(QUIET);
}

#[test]
fn v311_connect_then_qos2_publish_in_one_write_is_received_and_delivered() {
    qos2_publish_is_received_and_delivered(Protocol::V311);
}

#[test]
fn v5_connect_then_qos2_publish_in_one_write_is_received_and_delivered() {
    qos2_publish_is_received_and_delivered(Protocol::V5);
}

fn disconnect_publishes_no_will(proto: Protocol) {
    let b = Broker::start();
    let t = topic("will");
    let mut s = subscriber(b.mqtt_port, &t, QoS::AtLeastOnce);
    let mut connect = connect_packet(proto, &unique("pp"));
    connect.will = Some(will(&t, b"will", QoS::AtLeastOnce, false));
    let bytes = burst_bytes(
        proto,
        &[
            Packet::Connect(Box::new(connect)),
            Packet::Disconnect(Disconnect::default()),
        ],
    );
    let mut c = RawClient::open(b.mqtt_port, proto);
    c.send_bytes(&bytes).expect("write the burst");
    let got = c.expect_closed(WAIT);
    assert!(
        matches!(got.first(), Some(Packet::ConnAck(a)) if a.code == reason::SUCCESS),
        "expected an accepting CONNACK before the close: {got:?}"
    );
    s.expect_no_publish(Duration::from_secs(2));
}

#[test]
fn v311_connect_then_disconnect_in_one_write_publishes_no_will() {
    disconnect_publishes_no_will(Protocol::V311);
}

#[test]
fn v5_connect_then_disconnect_in_one_write_publishes_no_will() {
    disconnect_publishes_no_will(Protocol::V5);
}

/// The device burst from the bug report: CONNECT, PUBLISH QoS 1, PUBLISH
/// QoS 0, DISCONNECT in one write, from ten connections.
#[test]
fn connect_publish_publish_disconnect_bursts_deliver_every_message() {
    let b = Broker::start();
    let t = topic("device");
    let mut s = subscriber(b.mqtt_port, &format!("{t}/#"), QoS::AtLeastOnce);
    for i in 0..10 {
        let mut c = burst(
            b.mqtt_port,
            Protocol::V311,
            &unique("device"),
            vec![
                publish(&format!("{t}/{i}"), QoS::AtLeastOnce, b"q1", 1),
                publish(&format!("{t}/{i}"), QoS::AtMostOnce, b"q0", 0),
                Packet::Disconnect(Disconnect::default()),
            ],
        );
        let got = c.expect_closed(WAIT);
        let kinds: Vec<_> = got
            .iter()
            .map(|p| match p {
                Packet::ConnAck(_) => "CONNACK",
                Packet::PubAck(_) => "PUBACK",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, vec!["CONNACK", "PUBACK"], "device {i}: {got:?}");
    }
    let got = s.collect_publishes(20, WAIT);
    assert_eq!(got.len(), 20, "received {:?}", payloads(&got));
    s.expect_no_publish(QUIET);
}

fn split_subscribe_gets_suback_at_every_cut(proto: Protocol) {
    let b = Broker::start();
    let t = topic("split");
    let mut sub = subscribe_packet(&t, QoS::AtMostOnce);
    sub.packet_id = 3;
    let bytes = burst_bytes(
        proto,
        &[
            Packet::Connect(Box::new(connect_packet(proto, "pp-split"))),
            Packet::Subscribe(sub),
        ],
    );
    for cut in 1..bytes.len() {
        let mut c = RawClient::open(b.mqtt_port, proto);
        c.send_bytes(&bytes[..cut]).expect("first write");
        std::thread::sleep(Duration::from_millis(2));
        c.send_bytes(&bytes[cut..]).expect("second write");
        expect_connack_accepted(&mut c);
        match c.expect_packet(WAIT) {
            Packet::SubAck(a) => assert_eq!(a.packet_id, 3, "cut at {cut}"),
            other => panic!("cut at {cut}: expected SUBACK, got {other:?}"),
        }
        c.disconnect();
    }
}

#[test]
fn v311_connect_and_subscribe_split_at_every_byte_get_connack_and_suback() {
    split_subscribe_gets_suback_at_every_cut(Protocol::V311);
}

#[test]
fn v5_connect_and_subscribe_split_at_every_byte_get_connack_and_suback() {
    split_subscribe_gets_suback_at_every_cut(Protocol::V5);
}

fn split_burst_is_acked_without_will_at_every_cut(proto: Protocol) {
    let b = Broker::start();
    let t = topic("splitburst");
    let will_topic = format!("{t}/will");
    let mut s = subscriber(b.mqtt_port, &format!("{t}/#"), QoS::AtLeastOnce);
    let mut connect = connect_packet(proto, "pp-split-burst");
    connect.will = Some(will(&will_topic, b"will", QoS::AtLeastOnce, false));
    let bytes = burst_bytes(
        proto,
        &[
            Packet::Connect(Box::new(connect)),
            publish(&format!("{t}/msg"), QoS::AtLeastOnce, b"m", 9),
            Packet::Disconnect(Disconnect::default()),
        ],
    );
    let cuts: Vec<usize> = (1..bytes.len()).collect();
    for &cut in &cuts {
        let mut c = RawClient::open(b.mqtt_port, proto);
        c.send_bytes(&bytes[..cut]).expect("first write");
        std::thread::sleep(Duration::from_millis(2));
        c.send_bytes(&bytes[cut..]).expect("second write");
        let got = c.expect_closed(WAIT);
        let acked = matches!(
            got.as_slice(),
            [Packet::ConnAck(a), Packet::PubAck(r)] if a.code == reason::SUCCESS && r.packet_id == 9
        );
        assert!(
            acked,
            "cut at {cut}: expected CONNACK then PUBACK, got {got:?}"
        );
    }
    let got = s.collect_publishes(cuts.len(), WAIT);
    assert_eq!(got.len(), cuts.len(), "one message per cut");
    assert!(
        got.iter().all(|p| p.topic == format!("{t}/msg")),
        "a will was published: {:?}",
        got.iter().map(|p| &p.topic).collect::<Vec<_>>()
    );
    s.expect_no_publish(QUIET);
}

#[test]
fn v311_connect_publish_disconnect_split_at_every_byte_are_acked_and_publish_no_will() {
    split_burst_is_acked_without_will_at_every_cut(Protocol::V311);
}

#[test]
fn v5_connect_publish_disconnect_split_at_every_byte_are_acked_and_publish_no_will() {
    split_burst_is_acked_without_will_at_every_cut(Protocol::V5);
}

fn refused_connect_discards_what_follows(proto: Protocol) {
    // Anonymous clients are refused; the refused client's retained PUBLISH
    // would show in `retain show` if it were applied.
    let b = Broker::start_with_config("allow_anonymous = false\n");
    let t = topic("refused");
    let mut retained = publish_packet(&t, QoS::AtLeastOnce, b"refused");
    retained.packet_id = 5;
    retained.retain = true;
    let mut c = burst(
        b.mqtt_port,
        proto,
        &unique("pp"),
        vec![
            Packet::Publish(retained),
            Packet::Disconnect(Disconnect::default()),
        ],
    );
    let got = c.expect_closed(WAIT);
    match got.as_slice() {
        [Packet::ConnAck(a)] => assert_ne!(a.code, reason::SUCCESS, "CONNACK accepted: {a:?}"),
        other => panic!("expected only a refusing CONNACK, got {other:?}"),
    }
    let out = b.cli(&["retain", "show"]);
    out.assert_success("retain show");
    assert!(
        !out.stdout.contains(&t),
        "the retained PUBLISH behind a refused CONNECT was applied: {}",
        out.stdout
    );
}

#[test]
fn v311_packets_behind_a_refused_connect_are_discarded() {
    refused_connect_discards_what_follows(Protocol::V311);
}

#[test]
fn v5_packets_behind_a_refused_connect_are_discarded() {
    refused_connect_discards_what_follows(Protocol::V5);
}
