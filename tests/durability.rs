//! Durability: every acknowledgement is backed by the log, so SIGKILL loses
//! nothing that was acknowledged, and QoS 2 stays exactly-once across crashes.
//! Each test below checks one promise, most of them across one SIGKILL and
//! restart:
//!
//! * a persistent session and its subscriptions (3.1.1, and 5 with a session
//!   expiry) are still there;
//! * a retained message (even one published at QoS 0 before an acknowledged
//!   QoS 1 one) is still there, and a deleted one stays deleted;
//! * messages queued for an offline session are delivered, in order;
//! * inbound QoS 2 state: a resent PUBLISH with DUP is not routed twice, and a
//!   PUBREL after the crash completes with success;
//! * an outgoing message not yet acknowledged is redelivered with DUP, and an
//!   acknowledged one is not;
//! * an unsubscribe stays done;
//! * the will of a client connected at the crash is published after restart;
//! * acks read together with a DISCONNECT are committed;
//! * with the default configuration, an offline session's backlog of 200,000
//!   acknowledged QoS 1 messages arrives in full (and a negative control
//!   shows that the check catches messages an offline limit dropped).
//!
//! Acknowledged messages under load and repeated SIGKILL: `tests/soak.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn persistent_session_and_subscription_survive_sigkill() {
    let mut b = Broker::start();
    let (mut c, _) = RawClient::v3(b.mqtt_port, "crash-sess", false);
    c.subscribe("crash/sess/#", QoS::AtLeastOnce);
    c.disconnect();
    b.kill9();
    b.restart();
    let (mut c, ack) = RawClient::v3(b.mqtt_port, "crash-sess", false);
    assert!(ack.session_present, "{ack:?}");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "crash-sess-pub", true);
    p.publish("crash/sess/a", b"routed", QoS::AtLeastOnce, false);
    assert_eq!(&c.expect_publish(WAIT).payload[..], b"routed");
}

#[test]
fn v5_session_with_expiry_survives_sigkill() {
    let mut b = Broker::start();
    let (mut c, _) = RawClient::v5(b.mqtt_port, "crash-v5", false, Some(3600));
    c.subscribe("crash/v5/#", QoS::ExactlyOnce);
    c.disconnect();
    b.kill9();
    b.restart();
    let (mut c, ack) = RawClient::v5(b.mqtt_port, "crash-v5", false, Some(3600));
    assert!(ack.session_present, "{ack:?}");
    let (mut p, _) = RawClient::v5(b.mqtt_port, "crash-v5-pub", true, None);
    p.publish("crash/v5/a", b"routed", QoS::ExactlyOnce, false);
    let m = c.expect_publish(WAIT);
    assert_eq!((&m.payload[..], m.qos), (&b"routed"[..], QoS::ExactlyOnce));
}

#[test]
fn retained_message_survives_sigkill() {
    let mut b = Broker::start();
    let (mut p, _) = RawClient::v3(b.mqtt_port, "crash-ret-pub", true);
    // QoS 0 has no ack; the QoS 1 publish after it is acked only once every
    // command submitted before it is committed, so both are promised.
    p.publish("crash/ret0", b"kept0", QoS::AtMostOnce, true);
    p.publish("crash/ret", b"kept", QoS::AtLeastOnce, true);
    b.kill9();
    b.restart();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "crash-ret-sub", true);
    s.subscribe("crash/+", QoS::AtLeastOnce);
    let mut got = payloads(&s.collect_publishes(2, WAIT));
    got.sort();
    assert_eq!(got, vec!["kept", "kept0"]);
}

#[test]
fn retained_message_deletion_survives_sigkill() {
    let mut b = Broker::start();
    let (mut p, _) = RawClient::v3(b.mqtt_port, "crash-retdel-pub", true);
    p.publish("crash/retdel", b"doomed", QoS::AtLeastOnce, true);
    p.publish("crash/retdel", b"", QoS::AtLeastOnce, true);
    b.kill9();
    b.restart();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "crash-retdel-sub", true);
    s.subscribe("crash/retdel", QoS::AtLeastOnce);
    s.expect_no_publish(QUIET);
}

#[test]
fn offline_queued_messages_survive_sigkill() {
    let mut b = Broker::start();
    let (mut c, _) = RawClient::v3(b.mqtt_port, "crash-queue", false);
    c.subscribe("crash/queue", QoS::ExactlyOnce);
    c.disconnect();
    let (mut p, _) = RawClient::v3(b.mqtt_port, "crash-queue-pub", true);
    for i in 0..5 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        p.publish("crash/queue", format!("{i}").as_bytes(), qos, false);
    }
    b.kill9();
    b.restart();
    let (mut c, ack) = RawClient::v3(b.mqtt_port, "crash-queue", false);
    assert!(ack.session_present);
    let got = c.collect_publishes(6, Duration::from_secs(2));
    assert_eq!(payloads(&got), vec!["0", "1", "2", "3", "4"]);
}

#[test]
fn inbound_qos2_packet_id_state_survives_sigkill() {
    let mut b = Broker::start();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "crash-q2-sub", false);
    s.subscribe("crash/q2", QoS::ExactlyOnce);
    s.disconnect();
    let (mut p, _) = RawClient::v3(b.mqtt_port, "crash-q2-pub", false);
    let mut m = publish_packet("crash/q2", QoS::ExactlyOnce, b"exactly once");
    m.packet_id = 77;
    p.send(&Packet::Publish(m.clone()));
    p.wait_for(
        WAIT,
        |x| matches!(x, Packet::PubRec(r) if r.packet_id == 77),
    );
    b.kill9();
    b.restart();
    // The publisher did not get (or lost) the PUBREC and resends with DUP.
    let (mut p, ack) = RawClient::v3(b.mqtt_port, "crash-q2-pub", false);
    assert!(ack.session_present);
    m.dup = true;
    p.send(&Packet::Publish(m));
    p.wait_for(
        WAIT,
        |x| matches!(x, Packet::PubRec(r) if r.packet_id == 77),
    );
    p.send(&Packet::PubRel(pubresp(77)));
    p.wait_for(
        WAIT,
        |x| matches!(x, Packet::PubComp(r) if r.packet_id == 77),
    );

    let (mut s, _) = RawClient::v3(b.mqtt_port, "crash-q2-sub", false);
    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["exactly once"]);
}

#[test]
fn v5_pubrel_after_sigkill_completes_with_success() {
    let mut b = Broker::start();
    let (mut p, _) = RawClient::v5(b.mqtt_port, "crash-rel5", false, Some(3600));
    let mut m = publish_packet("crash/rel5", QoS::ExactlyOnce, b"x");
    m.packet_id = 5;
    p.send(&Packet::Publish(m));
    p.wait_for(WAIT, |x| matches!(x, Packet::PubRec(r) if r.packet_id == 5));
    b.kill9();
    b.restart();
    let (mut p, ack) = RawClient::v5(b.mqtt_port, "crash-rel5", false, Some(3600));
    assert!(ack.session_present);
    p.send(&Packet::PubRel(pubresp(5)));
    match p.wait_for(WAIT, |x| matches!(x, Packet::PubComp(_))) {
        Packet::PubComp(r) => assert_eq!(
            (r.packet_id, r.reason),
            (5, 0),
            "packet id state lost: {r:?}"
        ),
        _ => unreachable!(),
    }
}

#[test]
fn unacked_outgoing_message_is_redelivered_with_dup_after_sigkill() {
    let mut b = Broker::start();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "crash-dup", false);
    s.subscribe("crash/dup", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "crash-dup-pub", true);
    p.publish("crash/dup", b"unacked", QoS::AtLeastOnce, false);
    let first = s.expect_publish(WAIT);
    assert_eq!(&first.payload[..], b"unacked");
    b.kill9(); // before any PUBACK
    b.restart();
    let (mut s, ack) = RawClient::v3(b.mqtt_port, "crash-dup", false);
    assert!(ack.session_present);
    let again = s.expect_publish(WAIT);
    assert_eq!(&again.payload[..], b"unacked");
    assert!(again.dup, "{again:?}");
}

#[test]
fn acked_outgoing_message_is_not_redelivered_after_sigkill() {
    let mut b = Broker::start();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "crash-nodup", false);
    s.subscribe("crash/nodup", QoS::ExactlyOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "crash-nodup-pub", true);
    p.publish("crash/nodup", b"done", QoS::ExactlyOnce, false);
    let m = s.expect_publish(WAIT);
    s.ack(&m); // PUBREC, PUBREL, PUBCOMP: complete
               // The PUBCOMP may or may not be committed before the kill; either way
               // the message itself must not come again (at most its PUBREL).
    s.disconnect();
    b.kill9();
    b.restart();
    let (mut s, ack) = RawClient::v3(b.mqtt_port, "crash-nodup", false);
    assert!(ack.session_present);
    s.expect_no_publish(QUIET);
}

#[test]
fn unsubscribe_survives_sigkill() {
    let mut b = Broker::start();
    let (mut c, _) = RawClient::v3(b.mqtt_port, "crash-unsub", false);
    c.subscribe("crash/unsub", QoS::AtLeastOnce);
    c.subscribe("crash/keep", QoS::AtLeastOnce);
    c.unsubscribe(&["crash/unsub"]);
    c.disconnect();
    b.kill9();
    b.restart();
    let (mut c, ack) = RawClient::v3(b.mqtt_port, "crash-unsub", false);
    assert!(ack.session_present);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "crash-unsub-pub", true);
    p.publish("crash/unsub", b"no", QoS::AtLeastOnce, false);
    p.publish("crash/keep", b"yes", QoS::AtLeastOnce, false);
    let got = c.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["yes"]);
}

#[test]
fn will_of_a_client_connected_at_the_crash_is_published_after_restart() {
    let mut b = Broker::start();
    let (mut w, _) = RawClient::v3(b.mqtt_port, "crash-will-watch", false);
    w.subscribe("crash/will", QoS::AtLeastOnce);
    let mut conn = v3_connect("crash-will", true);
    conn.will = Some(will("crash/will", b"crashed", QoS::AtLeastOnce, false));
    let (_c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V311, conn);
    b.kill9();
    b.restart();
    let (mut w, ack) = RawClient::v3(b.mqtt_port, "crash-will-watch", false);
    assert!(ack.session_present);
    let m = w.expect_publish(WAIT);
    assert_eq!(&m.payload[..], b"crashed");
}

#[test]
fn acks_read_together_with_disconnect_are_committed() {
    let b = Broker::start();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "ack-disc", false);
    s.subscribe("ackdisc", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "ack-disc-pub", true);
    p.publish("ackdisc", b"one", QoS::AtLeastOnce, false);
    let m = s.expect_publish(WAIT);
    // PUBACK and DISCONNECT in one write, so the broker reads them together.
    let mut wire = s.encode_bytes(&Packet::PubAck(pubresp(m.packet_id)));
    wire.extend_from_slice(&s.encode_bytes(&Packet::Disconnect(Default::default())));
    let _ = s.send_bytes(&wire);
    s.expect_closed(WAIT);
    let (mut s, ack) = RawClient::v3(b.mqtt_port, "ack-disc", false);
    assert!(ack.session_present);
    s.expect_no_publish(Duration::from_millis(700));
}

/// Messages in the offline-backlog tests: far more than any per-session
/// count a default could quietly cap.
const BACKLOG: u64 = 200_000;

/// A persistent QoS 1 subscriber subscribes and disconnects; BACKLOG numbered
/// QoS 1 messages are published to its topic, every one PUBACKed; the broker
/// is SIGKILLed and restarted; the subscriber reconnects and receives what
/// comes (acking each) until it has all or nothing arrives for 5 s.
fn offline_backlog_across_sigkill(config: Option<&str>) -> Deliveries {
    let mut b = match config {
        Some(toml) => Broker::start_with_config(toml),
        None => Broker::start(),
    };
    let (mut s, _) = RawClient::v3(b.mqtt_port, "backlog-sub", false);
    s.subscribe("backlog/q", QoS::AtLeastOnce);
    s.disconnect();
    let t = Instant::now();
    publish_numbered(b.mqtt_port, "backlog-pub", "backlog/q", BACKLOG, 4, 256);
    let published = t.elapsed();
    let t = Instant::now();
    b.kill9();
    b.restart();
    let restarted = t.elapsed();
    drain_backlog(b.mqtt_port, "backlog-sub", BACKLOG, published, restarted)
}

#[test]
fn default_config_loses_no_acknowledged_qos1_message_to_an_offline_subscriber_across_sigkill() {
    let got = offline_backlog_across_sigkill(None);
    got.assert_none_lost("offline subscriber after SIGKILL, default configuration");
    eprintln!("received all {BACKLOG}; duplicates {}", got.duplicates());
}

#[test]
fn an_offline_limit_is_detected_as_lost_messages() {
    // Negative control: the same scenario and check, with a limit that drops
    // all but 1,000 of the offline session's messages.
    let got = offline_backlog_across_sigkill(Some("max_offline_messages = 1000\n"));
    got.assert_loss_detected(1000);
}
