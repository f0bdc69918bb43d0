//! Bad input: every case must end (only) the offending connection, and the
//! broker must keep serving other clients with their state intact.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::any;

/// State set up before the bad input and checked after it: a persistent
/// session with a subscription, and a retained message.
struct Survivor {
    id: String,
    topic: String,
    retained_topic: String,
}

impl Survivor {
    fn setup(b: &Broker) -> Survivor {
        let s = Survivor {
            id: unique("survivor"),
            topic: unique("survivor/live").replace('-', "/"),
            retained_topic: unique("survivor/retained").replace('-', "/"),
        };
        let (mut c, _) = RawClient::v3(b.mqtt_port, &s.id, false);
        c.subscribe(&s.topic, QoS::AtLeastOnce);
        c.disconnect();
        let (mut p, _) = RawClient::v3(b.mqtt_port, &unique("survivor-pub"), true);
        p.publish(&s.retained_topic, b"still here", QoS::AtLeastOnce, true);
        p.disconnect();
        s
    }

    /// The broker still accepts connections, resumes the session, routes to
    /// it, and keeps the retained message.
    fn verify(&self, b: &Broker) {
        let (mut c, ack) = RawClient::v3(b.mqtt_port, &self.id, false);
        assert!(ack.session_present, "persistent session lost: {ack:?}");
        let (mut p, _) = RawClient::v5(b.mqtt_port, &unique("verify-pub"), true, None);
        p.publish(&self.topic, b"routed", QoS::AtLeastOnce, false);
        let m = c.expect_publish(WAIT);
        assert_eq!(&m.payload[..], b"routed");
        c.ack(&m);
        let (mut r, _) = RawClient::v3(b.mqtt_port, &unique("verify-ret"), true);
        r.subscribe(&self.retained_topic, QoS::AtLeastOnce);
        let m = r.expect_publish(WAIT);
        assert_eq!(&m.payload[..], b"still here");
        assert!(m.retain);
    }
}

fn v3_client(b: &Broker) -> RawClient {
    RawClient::v3(b.mqtt_port, &unique("bad"), true).0
}

fn v5_client(b: &Broker) -> RawClient {
    RawClient::v5(b.mqtt_port, &unique("bad5"), true, None).0
}

/// PUBLISH bytes with a hand-made topic (for topics the encoder would refuse).
fn raw_publish(qos: u8, topic: &[u8], packet_id: Option<u16>, v5: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = mqtt_str(topic);
    if let Some(pid) = packet_id {
        body.extend_from_slice(&pid.to_be_bytes());
    }
    if v5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(payload);
    let mut out = vec![0x30 | (qos << 1)];
    out.extend(varint(body.len()));
    out.extend(body);
    out
}

#[test]
fn malformed_remaining_length_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    // Five continuation bytes: a remaining length longer than MQTT allows.
    let _ = c.send_bytes(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    c.expect_closed(WAIT);
    s.verify(&b);
}

#[test]
fn v5_malformed_packet_gets_disconnect_0x81() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v5_client(&b);
    // PUBLISH whose topic length (5) runs past its remaining length (2).
    let _ = c.send_bytes(&[0x30, 0x02, 0x00, 0x05]);
    c.expect_disconnect(0x81, WAIT);
    s.verify(&b);
}

#[test]
fn second_connect_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    let _ = c.try_send(&Packet::Connect(Box::new(v3_connect("again", true))));
    let got = c.expect_closed(WAIT);
    assert!(
        !got.iter().any(|p| matches!(p, Packet::ConnAck(_))),
        "a second CONNECT must not be answered: {got:?}"
    );
    s.verify(&b);
}

#[test]
fn v5_second_connect_gets_disconnect_0x82() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v5_client(&b);
    let _ = c.try_send(&Packet::Connect(Box::new(v5_connect("again5", true, None))));
    c.expect_disconnect(0x82, WAIT);
    s.verify(&b);
}

#[test]
fn invalid_utf8_topic_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    let _ = c.send_bytes(&raw_publish(0, b"bad/\xC3\x28", None, false, b"x"));
    c.expect_closed(WAIT);
    s.verify(&b);
}

#[test]
fn v5_invalid_utf8_topic_gets_disconnect_0x81() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v5_client(&b);
    let _ = c.send_bytes(&raw_publish(1, b"bad/\xFF", Some(1), true, b"x"));
    c.expect_disconnect(0x81, WAIT);
    s.verify(&b);
}

#[test]
fn wildcard_in_publish_topic_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    let _ = c.send_bytes(&raw_publish(1, b"a/+/b", Some(1), false, b"x"));
    let got = c.expect_closed(WAIT);
    assert!(
        !got.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "a PUBLISH to a wildcard topic must not be acked: {got:?}"
    );
    s.verify(&b);
}

#[test]
fn v5_wildcard_in_publish_topic_gets_disconnect_0x90() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v5_client(&b);
    let _ = c.send_bytes(&raw_publish(1, b"a/#", Some(1), true, b"x"));
    c.expect_disconnect(0x90, WAIT);
    s.verify(&b);
}

/// Closing on an error, the broker shuts its write side and keeps reading
/// briefly, so a client that goes on writing for a moment (as Paho's
/// flow-control test does) gets no broken pipe and then reads the DISCONNECT
/// with its reason code, instead of a reset caused by unread bytes.
#[test]
fn v5_client_still_writing_after_an_error_reads_the_disconnect_reason_not_a_reset() {
    let b = Broker::start();
    let mut c = v5_client(&b);
    let filler = raw_publish(0, b"fill", None, true, &[0u8; 1000]);
    let _ = c.send_bytes(&raw_publish(1, b"a/#", Some(1), true, b"x"));
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(60));
        if let Err(e) = c.send_bytes(&filler) {
            panic!("write {i} after the error failed: {e}");
        }
    }
    c.expect_disconnect(0x90, WAIT);
}

#[test]
fn qos1_publish_with_packet_id_0_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    let _ = c.send_bytes(&raw_publish(1, b"pid/zero", Some(0), false, b"x"));
    let got = c.expect_closed(WAIT);
    assert!(
        !got.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "{got:?}"
    );
    s.verify(&b);
}

#[test]
fn v5_qos1_publish_with_packet_id_0_gets_a_disconnect_error() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v5_client(&b);
    let _ = c.send_bytes(&raw_publish(1, b"pid/zero", Some(0), true, b"x"));
    let got = c.expect_closed(WAIT);
    match got.last() {
        Some(Packet::Disconnect(d)) => assert!(
            d.reason == 0x81 || d.reason == 0x82,
            "expected 0x81 or 0x82, got 0x{:02x}",
            d.reason
        ),
        other => panic!("expected a DISCONNECT before close, got {other:?} (all: {got:?})"),
    }
    s.verify(&b);
}

#[test]
fn v5_pubrel_for_unknown_packet_id_gets_pubcomp_0x92() {
    let b = Broker::start();
    let mut c = v5_client(&b);
    c.send(&Packet::PubRel(pubresp(999)));
    match c.expect_packet(WAIT) {
        Packet::PubComp(r) => {
            assert_eq!(r.packet_id, 999);
            assert_eq!(r.reason, 0x92, "{r:?}");
        }
        other => panic!("expected PUBCOMP 0x92, got {other:?}"),
    }
    c.ping(); // the connection stays usable
}

#[test]
fn pubrel_for_unknown_packet_id_gets_pubcomp_in_311() {
    let b = Broker::start();
    let mut c = v3_client(&b);
    c.send(&Packet::PubRel(pubresp(999)));
    match c.expect_packet(WAIT) {
        Packet::PubComp(r) => assert_eq!(r.packet_id, 999),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    c.ping();
}

#[test]
fn oversized_packet_closes_the_connection() {
    let b = Broker::start_with_config("max_packet_size = 1024\n");
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    let m = publish_packet("big/one", QoS::AtLeastOnce, &[b'x'; 2000]);
    let mut m = m;
    m.packet_id = 1;
    let _ = c.try_send(&Packet::Publish(m));
    let got = c.expect_closed(WAIT);
    assert!(
        !got.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "{got:?}"
    );
    s.verify(&b);
}

#[test]
fn v5_oversized_packet_gets_disconnect_0x95() {
    let b = Broker::start_with_config("max_packet_size = 1024\n");
    let s = Survivor::setup(&b);
    let (mut c, ack) = RawClient::v5(b.mqtt_port, "big5", true, None);
    assert_eq!(ack.properties.maximum_packet_size, Some(1024));
    let mut m = publish_packet("big/five", QoS::AtLeastOnce, &[b'x'; 2000]);
    m.packet_id = 1;
    let _ = c.try_send(&Packet::Publish(m));
    c.expect_disconnect(0x95, WAIT);
    s.verify(&b);
}

#[test]
fn first_packet_that_is_not_connect_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = RawClient::open(b.mqtt_port, Protocol::V311);
    let sub = c.encode_bytes(&Packet::Subscribe({
        let mut s = subscribe_packet("sneaky/#", QoS::AtMostOnce);
        s.packet_id = 1;
        s
    }));
    let _ = c.send_bytes(&sub);
    let got = c.expect_closed(WAIT);
    assert!(got.is_empty(), "nothing must be answered: {got:?}");
    s.verify(&b);
}

#[test]
fn pingreq_before_connect_closes_the_connection() {
    let b = Broker::start();
    let mut c = RawClient::open(b.mqtt_port, Protocol::V311);
    let _ = c.send_bytes(&[0xC0, 0x00]);
    let got = c.expect_closed(WAIT);
    assert!(got.is_empty(), "{got:?}");
}

fn raw_connect(name: &[u8], level: u8) -> Vec<u8> {
    let mut body = mqtt_str(name);
    body.push(level);
    body.push(0x02); // clean session
    body.extend_from_slice(&60u16.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    body.extend(mqtt_str(b"lvl-client"));
    let mut out = vec![0x10];
    out.extend(varint(body.len()));
    out.extend(body);
    out
}

fn raw_reply(port: u16, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let mut buf = [0u8; 256];
    while std::time::Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("connection not closed after refusal; got {out:?}")
            }
            Err(_) => return out,
        }
    }
    panic!("connection not closed after refusal; got {out:?}");
}

#[test]
fn unknown_protocol_level_gets_connack_return_code_1() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let got = raw_reply(b.mqtt_port, &raw_connect(b"MQTT", 2));
    assert_eq!(
        got,
        vec![0x20, 0x02, 0x00, 0x01],
        "CONNACK return code 1, then close"
    );
    s.verify(&b);
}

#[test]
fn v5_unknown_protocol_level_gets_connack_0x84() {
    let b = Broker::start();
    let got = raw_reply(b.mqtt_port, &raw_connect(b"MQTT", 6));
    // A level above 5 comes from a newer client: refuse with the MQTT 5 code
    // 0x84 (CONNACK 20 len 00 84 props); 3.x return code 1 is also allowed
    // by the MQTT 5 spec for a server that cannot tell.
    let v5_form = got.len() >= 5 && got[0] == 0x20 && got[2] == 0x00 && got[3] == 0x84;
    let v3_form = got == vec![0x20, 0x02, 0x00, 0x01];
    assert!(
        v5_form || v3_form,
        "expected CONNACK 0x84 (or return code 1), got {got:02x?}"
    );
}

#[test]
fn protocol_name_not_matching_level_is_refused() {
    let b = Broker::start();
    // "MQIsdp" is only valid with level 3.
    let got = raw_reply(b.mqtt_port, &raw_connect(b"MQIsdp", 4));
    assert!(
        got.is_empty() || got == vec![0x20, 0x02, 0x00, 0x01],
        "expected close or CONNACK return code 1, got {got:02x?}"
    );
}

#[test]
fn http_request_to_the_mqtt_port_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = RawClient::open(b.mqtt_port, Protocol::V311);
    let _ = c.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    c.expect_closed(WAIT);
    s.verify(&b);
}

#[test]
fn reserved_packet_type_0_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    let _ = c.send_bytes(&[0x00, 0x00]);
    c.expect_closed(WAIT);
    s.verify(&b);
}

#[test]
fn subscribe_with_wrong_fixed_header_flags_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    // SUBSCRIBE must have flags 0010; 0x80 has 0000.
    let mut body = 1u16.to_be_bytes().to_vec();
    body.extend(mqtt_str(b"flags/t"));
    body.push(0);
    let mut pkt = vec![0x80];
    pkt.extend(varint(body.len()));
    pkt.extend(body);
    let _ = c.send_bytes(&pkt);
    let got = c.expect_closed(WAIT);
    assert!(
        !got.iter().any(|p| matches!(p, Packet::SubAck(_))),
        "{got:?}"
    );
    s.verify(&b);
}

#[test]
fn publish_with_qos_3_closes_the_connection() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = v3_client(&b);
    let mut pkt = raw_publish(1, b"qos/three", Some(1), false, b"x");
    pkt[0] = 0x36; // QoS bits 11
    let _ = c.send_bytes(&pkt);
    c.expect_closed(WAIT);
    s.verify(&b);
}

#[test]
fn truncated_connect_followed_by_close_leaves_the_broker_healthy() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut c = RawClient::open(b.mqtt_port, Protocol::V311);
    let full = raw_connect(b"MQTT", 4);
    let _ = c.send_bytes(&full[..full.len() / 2]);
    c.drop_connection();
    s.verify(&b);
}

#[test]
fn stalled_partial_connect_does_not_block_other_clients() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut stalled = RawClient::open(b.mqtt_port, Protocol::V311);
    let _ = stalled.send_bytes(&[0x10]);
    // While that connection hangs mid-packet, everything else works.
    s.verify(&b);
    let (mut c, _) = RawClient::v3(b.mqtt_port, "not-blocked", true);
    c.ping();
}

/// Arbitrary bytes after a valid CONNECT never take the broker down, and it
/// never answers with bytes that do not decode.
#[test]
fn random_bytes_after_connect_do_not_break_the_broker() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        max_shrink_iters: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(any::<u8>(), 1..200),
        any::<bool>(),
    );
    let result = runner.run(&strategy, |(junk, v5)| {
        let mut c = if v5 { v5_client(&b) } else { v3_client(&b) };
        let _ = c.send_bytes(&junk);
        let deadline = std::time::Instant::now() + Duration::from_millis(300);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match c.recv(left) {
                Recv::Packet(_) => {}
                Recv::Timeout | Recv::Closed => break,
                Recv::Error(e) => {
                    return Err(TestCaseError::fail(format!(
                        "broker sent undecodable bytes after junk {junk:02x?}: {e}"
                    )))
                }
            }
        }
        let (mut ok, _) = RawClient::v3(b.mqtt_port, &unique("after-junk"), true);
        ok.ping();
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    s.verify(&b);
}

#[test]
fn random_junk_leaves_sessions_and_retained_messages_intact() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..20 {
        let mut c = if i % 2 == 0 {
            v3_client(&b)
        } else {
            v5_client(&b)
        };
        let junk: Vec<u8> = (0..64)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let _ = c.send_bytes(&junk);
        c.drop_connection();
    }
    s.verify(&b);
}

#[test]
fn a_tls_handshake_on_the_plain_port_is_logged_as_such_and_the_node_serves_on() {
    let b = Broker::start();
    let s = Survivor::setup(&b);
    let script = format!(
        "import socket, ssl\n\
         s = socket.create_connection(('127.0.0.1', {}), timeout=5)\n\
         try:\n    ssl.create_default_context().wrap_socket(s, server_hostname='raftmq')\n\
         except (ssl.SSLError, OSError) as e:\n    print('refused:', e)\n",
        b.addr().port()
    );
    let out = run_cmd(
        std::process::Command::new("python3").args(["-c", &script]),
        Duration::from_secs(10),
    );
    out.assert_success("python TLS client");
    assert!(
        out.stdout.contains("refused"),
        "the handshake fails: {}",
        out.stdout
    );
    let logged = wait_until(Duration::from_secs(5), || {
        b.log_tail(50)
            .contains("TLS handshake on a plain MQTT listener")
    });
    assert!(logged, "log:\n{}", b.log_tail(30));
    s.verify(&b);
}
