//! A node's life: SIGTERM (or SIGINT) stops it gracefully: its MQTT 5
//! clients get DISCONNECT "server shutting down", their disconnects commit
//! (so their wills fire on the other nodes at once), and the process exits 0
//! within the stop's bound; a second signal exits at once; a restart after a
//! graceful stop finds every session, queue and retained message.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use raftmq::codec::reason::SERVER_SHUTTING_DOWN;
use raftmq::server::STOP_LIMIT;

#[test]
fn sigterm_sends_mqtt5_clients_server_shutting_down() {
    let b = Broker::start();
    let (mut c, _) = RawClient::v5(b.mqtt_port, "stop-v5", true, None);
    b.signal("-TERM");
    c.expect_disconnect(SERVER_SHUTTING_DOWN, WAIT);
}

#[test]
fn sigterm_exits_with_status_zero() {
    let mut b = Broker::start();
    // A connected client: the stop has a disconnect to commit.
    let (_c, _) = RawClient::v5(b.mqtt_port, "stop-exit", false, Some(60));
    let sent = Instant::now();
    b.signal("-TERM");
    let status = b.wait_exit(STOP_LIMIT);
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {STOP_LIMIT:?} after SIGTERM; log:\n{}",
            b.log_tail(40)
        )
    });
    assert!(
        status.success(),
        "exit status {status:?} after {took:?}; log:\n{}",
        b.log_tail(40)
    );
}

#[test]
fn will_of_a_client_on_a_stopped_node_reaches_a_subscriber_on_another_node_within_a_second() {
    let mut c = Cluster::start(3);
    // The stopped node is the leader: the hardest case, its last commit (the
    // disconnect that fires the will) must reach the others before it goes.
    let b = c.wait_leader(Duration::from_secs(10));
    let a = (1..=3).find(|&i| i != b).expect("another node");
    let (mut watcher, _) = RawClient::v5(c.node(a).mqtt_port, "stop-watch", true, None);
    watcher.subscribe("stop/will", QoS::AtLeastOnce);
    let mut conn = v5_connect("stop-will", true, Some(0));
    conn.will = Some(will("stop/will", b"gone", QoS::AtLeastOnce, false));
    let (_client, _) = RawClient::connect_ok(c.node(b).mqtt_port, Protocol::V5, conn);
    let sent = Instant::now();
    c.node(b).signal("-TERM");
    let w = watcher.expect_publish(Duration::from_secs(1));
    let took = sent.elapsed();
    assert_eq!(&w.payload[..], b"gone");
    assert!(
        took <= Duration::from_secs(1),
        "the will arrived {took:?} after SIGTERM"
    );
}

#[test]
fn restart_after_graceful_stop_restores_session_queue_and_retained() {
    let mut b = Broker::start();
    // A persistent session, connected when the stop comes, with a QoS 1
    // message in its queue that it received but did not acknowledge.
    let (mut s, _) = RawClient::v5(b.mqtt_port, "stop-keeper", true, Some(3600));
    s.subscribe("keep/#", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "stop-pub", true);
    p.publish("keep/q", b"queued", QoS::AtLeastOnce, false);
    p.publish("kept/r", b"retained", QoS::AtLeastOnce, true);
    assert_eq!(&s.expect_publish(WAIT).payload[..], b"queued");
    b.signal("-TERM");
    s.expect_disconnect(SERVER_SHUTTING_DOWN, WAIT);
    let status = b.wait_exit(STOP_LIMIT).expect("the node stops");
    assert!(status.success(), "{status:?}");
    b.restart();
    let (mut s, ack) = RawClient::v5(b.mqtt_port, "stop-keeper", false, Some(3600));
    assert!(ack.session_present, "{ack:?}");
    let again = s.expect_publish(WAIT);
    assert_eq!(&again.payload[..], b"queued");
    s.ack(&again);
    s.subscribe("kept/#", QoS::AtLeastOnce);
    let r = s.expect_publish(WAIT);
    assert_eq!(
        (r.topic.as_str(), &r.payload[..]),
        ("kept/r", &b"retained"[..])
    );
    assert!(r.retain, "{r:?}");
}

#[test]
fn second_signal_exits_at_once() {
    let mut c = Cluster::start(2);
    let (_client, _) = RawClient::v5(c.node(1).mqtt_port, "stop-stuck", true, None);
    // Without node 2 there is no quorum: the client's disconnect cannot
    // commit, so node 1's graceful stop waits (up to its bound).
    c.node(2).pause(true);
    c.node(1).signal("-TERM");
    thread::sleep(Duration::from_millis(500));
    assert!(
        c.node_mut(1).is_running(),
        "the graceful stop is still waiting"
    );
    let sent = Instant::now();
    c.node(1).signal("-INT");
    let status = c.node_mut(1).wait_exit(Duration::from_secs(2));
    c.node(2).pause(false);
    let status = status.expect("exits at once on the second signal");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(sent.elapsed() < Duration::from_secs(2));
}
