//! MQTT 3.1 and 3.1.1 behaviour, checked with the raw codec client (exact
//! packets) and with rumqttc (a real third-party client).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn topic(name: &str) -> String {
    unique(&format!("v3/{name}")).replace('-', "/")
}

#[test]
fn mqtt31_mqisdp_client_connects_and_round_trips_a_message() {
    let b = Broker::start();
    let connect = Connect {
        protocol: Some(Protocol::V31),
        clean_start: true,
        keep_alive: 60,
        client_id: "v31-client".into(),
        ..Default::default()
    };
    let probe = RawClient::open(b.mqtt_port, Protocol::V31);
    let bytes = probe.encode_bytes(&Packet::Connect(Box::new(connect.clone())));
    assert!(
        bytes.windows(6).any(|w| w == b"MQIsdp"),
        "the 3.1 CONNECT must carry protocol name MQIsdp: {bytes:?}"
    );
    drop(probe);
    let (mut c, ack) = RawClient::connect_ok(b.mqtt_port, Protocol::V31, connect);
    assert!(!ack.session_present);
    let t = topic("mqisdp");
    c.subscribe(&t, QoS::AtLeastOnce);
    c.publish(&t, b"hello 3.1", QoS::AtLeastOnce, false);
    let p = c.expect_publish(WAIT);
    assert_eq!(p.topic, t);
    assert_eq!(&p.payload[..], b"hello 3.1");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[test]
fn mqtt311_new_clean_session_is_accepted_without_session_present() {
    let b = Broker::start();
    let (_c, ack) = RawClient::v3(b.mqtt_port, "fresh", true);
    assert_eq!(ack.code, 0);
    assert!(!ack.session_present);
}

#[test]
fn persistent_session_resumes_with_session_present_and_its_subscriptions() {
    let b = Broker::start();
    let t = topic("persist");
    let (mut c, ack) = RawClient::v3(b.mqtt_port, "persist-1", false);
    assert!(!ack.session_present, "first connect has no session");
    c.subscribe(&t, QoS::AtLeastOnce);
    c.disconnect();

    let (mut c, ack) = RawClient::v3(b.mqtt_port, "persist-1", false);
    assert!(ack.session_present, "session must be resumed: {ack:?}");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "persist-pub", true);
    p.publish(&t, b"after resume", QoS::AtLeastOnce, false);
    let m = c.expect_publish(WAIT);
    assert_eq!(&m.payload[..], b"after resume");
}

#[test]
fn clean_session_discards_the_stored_session() {
    let b = Broker::start();
    let t = topic("discard");
    let (mut c, _) = RawClient::v3(b.mqtt_port, "discard-1", false);
    c.subscribe(&t, QoS::AtLeastOnce);
    c.disconnect();

    let (mut c, ack) = RawClient::v3(b.mqtt_port, "discard-1", true);
    assert!(
        !ack.session_present,
        "clean session must not resume: {ack:?}"
    );
    let (mut p, _) = RawClient::v3(b.mqtt_port, "discard-pub", true);
    p.publish(&t, b"nobody listens", QoS::AtLeastOnce, false);
    c.expect_no_publish(QUIET);
}

#[test]
fn clean_session_is_not_kept_after_disconnect() {
    let b = Broker::start();
    let t = topic("notkept");
    let (mut c, _) = RawClient::v3(b.mqtt_port, "notkept-1", true);
    c.subscribe(&t, QoS::AtLeastOnce);
    c.disconnect();
    let (_c, ack) = RawClient::v3(b.mqtt_port, "notkept-1", false);
    assert!(
        !ack.session_present,
        "a clean session must end with its connection: {ack:?}"
    );
}

#[test]
fn offline_persistent_session_receives_queued_qos1_and_qos2_messages() {
    let b = Broker::start();
    let t = topic("offline");
    let (mut c, _) = RawClient::v3(b.mqtt_port, "offline-1", false);
    c.subscribe(&format!("{t}/#"), QoS::ExactlyOnce);
    c.disconnect();

    let (mut p, _) = RawClient::v3(b.mqtt_port, "offline-pub", true);
    p.publish(&format!("{t}/a"), b"m1", QoS::AtLeastOnce, false);
    p.publish(&format!("{t}/b"), b"m2", QoS::ExactlyOnce, false);

    let (mut c, ack) = RawClient::v3(b.mqtt_port, "offline-1", false);
    assert!(ack.session_present);
    let got = c.collect_publishes(2, WAIT);
    assert_eq!(payloads(&got), vec!["m1", "m2"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::ExactlyOnce);
    assert_eq!(got[0].topic, format!("{t}/a"));
    c.expect_no_publish(QUIET);
}

#[test]
fn empty_client_id_with_clean_session_is_accepted_in_311() {
    let b = Broker::start();
    let t = topic("emptyid");
    let (mut c, ack) = RawClient::v3(b.mqtt_port, "", true);
    assert_eq!(ack.code, 0);
    assert!(!ack.session_present);
    c.subscribe(&t, QoS::AtMostOnce);
    c.publish(&t, b"self", QoS::AtMostOnce, false);
    assert_eq!(&c.expect_publish(WAIT).payload[..], b"self");
}

#[test]
fn empty_client_id_without_clean_session_is_rejected_in_311() {
    let b = Broker::start();
    let (mut c, ack) = RawClient::connect(b.mqtt_port, Protocol::V311, v3_connect("", false));
    // The codec reports 3.x return code 2 (identifier rejected) as 0x85.
    assert_eq!(ack.code, 0x85, "expected return code 2: {ack:?}");
    c.expect_closed(WAIT);
}

#[test]
fn keepalive_timeout_closes_connection_after_one_and_a_half_keepalives() {
    let b = Broker::start();
    let mut conn = v3_connect("ka-timeout", true);
    conn.keep_alive = 1;
    let (mut c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V311, conn);
    let t0 = Instant::now();
    c.expect_closed(Duration::from_secs(5));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}, before 1.5 x keepalive"
    );
    assert!(
        waited <= Duration::from_millis(3500),
        "closed only after {waited:?}"
    );
}

#[test]
fn pingreq_keeps_the_connection_alive_past_the_keepalive() {
    let b = Broker::start();
    let mut conn = v3_connect("ka-ping", true);
    conn.keep_alive = 1;
    let (mut c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V311, conn);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(3000) {
        c.ping();
        std::thread::sleep(Duration::from_millis(400));
    }
    // Still open: another PINGREQ gets its PINGRESP.
    c.ping();
}

#[test]
fn qos0_message_is_delivered_to_subscriber() {
    let b = Broker::start();
    let t = topic("q0");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "q0-sub", true);
    s.subscribe(&t, QoS::AtMostOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "q0-pub", true);
    p.publish(&t, b"zero", QoS::AtMostOnce, false);
    let m = s.expect_publish(WAIT);
    assert_eq!(
        (m.topic.as_str(), &m.payload[..], m.qos),
        (t.as_str(), &b"zero"[..], QoS::AtMostOnce)
    );
    assert!(!m.dup && !m.retain);
}

#[test]
fn qos1_publish_is_acked_and_delivered_at_qos1() {
    let b = Broker::start();
    let t = topic("q1");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "q1-sub", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "q1-pub", true);
    let mut msg = publish_packet(&t, QoS::AtLeastOnce, b"one");
    msg.packet_id = 4242;
    let ack = p.publish_with(msg).expect("PUBACK");
    assert_eq!(ack.packet_id, 4242);
    let m = s.expect_publish(WAIT);
    assert_eq!(m.qos, QoS::AtLeastOnce);
    assert_eq!(&m.payload[..], b"one");
    assert_ne!(m.packet_id, 0);
    s.ack(&m);
    s.expect_no_publish(QUIET);
}

#[test]
fn qos2_message_is_delivered_exactly_once() {
    let b = Broker::start();
    let t = topic("q2");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "q2-sub", true);
    s.subscribe(&t, QoS::ExactlyOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "q2-pub", true);
    let mut msg = publish_packet(&t, QoS::ExactlyOnce, b"exactly");
    msg.packet_id = 7;
    p.send(&Packet::Publish(msg.clone()));
    p.wait_for(WAIT, |x| matches!(x, Packet::PubRec(r) if r.packet_id == 7));
    // The publisher did not see the PUBREC (as far as the broker knows) and resends.
    msg.dup = true;
    p.send(&Packet::Publish(msg));
    p.wait_for(WAIT, |x| matches!(x, Packet::PubRec(r) if r.packet_id == 7));
    p.send(&Packet::PubRel(pubresp(7)));
    p.wait_for(
        WAIT,
        |x| matches!(x, Packet::PubComp(r) if r.packet_id == 7),
    );

    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["exactly"], "QoS 2 must arrive once");
}

#[test]
fn qos2_delivery_to_subscriber_uses_pubrec_pubrel_pubcomp() {
    let b = Broker::start();
    let t = topic("q2out");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "q2out-sub", true);
    s.subscribe(&t, QoS::ExactlyOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "q2out-pub", true);
    p.publish(&t, b"flow", QoS::ExactlyOnce, false);
    let m = s.expect_publish(WAIT);
    assert_eq!(m.qos, QoS::ExactlyOnce);
    s.send(&Packet::PubRec(pubresp(m.packet_id)));
    match s.expect_packet(WAIT) {
        Packet::PubRel(r) => assert_eq!(r.packet_id, m.packet_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    s.send(&Packet::PubComp(pubresp(m.packet_id)));
    s.expect_no_publish(QUIET);
}

#[test]
fn delivered_qos_is_the_minimum_of_publish_and_subscription_qos() {
    let b = Broker::start();
    let t = topic("minqos");
    let (mut s0, _) = RawClient::v3(b.mqtt_port, "minqos-0", true);
    s0.subscribe(&t, QoS::AtMostOnce);
    let (mut s1, _) = RawClient::v3(b.mqtt_port, "minqos-1", true);
    s1.subscribe(&t, QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "minqos-pub", true);
    p.publish(&t, b"two", QoS::ExactlyOnce, false);
    assert_eq!(s0.expect_publish(WAIT).qos, QoS::AtMostOnce);
    assert_eq!(s1.expect_publish(WAIT).qos, QoS::AtLeastOnce);
}

#[test]
fn unacked_qos1_message_is_resent_with_dup_on_reconnect() {
    let b = Broker::start();
    let t = topic("dup1");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "dup1-sub", false);
    s.subscribe(&t, QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "dup1-pub", true);
    p.publish(&t, b"ack me", QoS::AtLeastOnce, false);
    let first = s.expect_publish(WAIT);
    assert!(!first.dup);
    s.drop_connection(); // no PUBACK

    let (mut s, ack) = RawClient::v3(b.mqtt_port, "dup1-sub", false);
    assert!(ack.session_present);
    let again = s.expect_publish(WAIT);
    assert_eq!(&again.payload[..], b"ack me");
    assert!(again.dup, "a resent PUBLISH must have DUP set: {again:?}");
    assert_eq!(again.packet_id, first.packet_id);
    s.ack(&again);
    s.expect_no_publish(QUIET);
}

#[test]
fn unacked_qos2_message_is_resent_with_dup_on_reconnect() {
    let b = Broker::start();
    let t = topic("dup2");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "dup2-sub", false);
    s.subscribe(&t, QoS::ExactlyOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "dup2-pub", true);
    p.publish(&t, b"rec me", QoS::ExactlyOnce, false);
    let first = s.expect_publish(WAIT);
    s.drop_connection(); // no PUBREC

    let (mut s, ack) = RawClient::v3(b.mqtt_port, "dup2-sub", false);
    assert!(ack.session_present);
    let again = s.expect_publish(WAIT);
    assert_eq!(&again.payload[..], b"rec me");
    assert!(again.dup);
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(again.qos, QoS::ExactlyOnce);
}

#[test]
fn pubrel_is_resent_on_reconnect_after_pubrec() {
    let b = Broker::start();
    let t = topic("rel");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "rel-sub", false);
    s.subscribe(&t, QoS::ExactlyOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "rel-pub", true);
    p.publish(&t, b"release me", QoS::ExactlyOnce, false);
    let m = s.expect_publish(WAIT);
    s.send(&Packet::PubRec(pubresp(m.packet_id)));
    s.wait_for(
        WAIT,
        |x| matches!(x, Packet::PubRel(r) if r.packet_id == m.packet_id),
    );
    s.drop_connection(); // no PUBCOMP

    let (mut s, ack) = RawClient::v3(b.mqtt_port, "rel-sub", false);
    assert!(ack.session_present);
    match s.expect_packet(WAIT) {
        Packet::PubRel(r) => assert_eq!(r.packet_id, m.packet_id),
        other => panic!("expected the PUBREL to be resent, got {other:?}"),
    }
    s.send(&Packet::PubComp(pubresp(m.packet_id)));
    s.expect_no_publish(QUIET);
}

#[test]
fn plus_wildcard_matches_exactly_one_level() {
    let b = Broker::start();
    let t = topic("plus");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "plus-sub", true);
    s.subscribe(&format!("{t}/+/x"), QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "plus-pub", true);
    for (sub, payload) in [
        ("a/x", "match-a"),
        ("a/b/x", "deep"),
        ("x", "short"),
        ("/x", "match-empty-level"),
        ("a/x/y", "longer"),
        ("end/x", "match-end"),
    ] {
        p.publish(
            &format!("{t}/{sub}"),
            payload.as_bytes(),
            QoS::AtLeastOnce,
            false,
        );
    }
    let got = s.collect_publishes(3, WAIT);
    assert_eq!(
        payloads(&got),
        vec!["match-a", "match-empty-level", "match-end"]
    );
    s.expect_no_publish(QUIET);
}

#[test]
fn hash_wildcard_matches_the_parent_and_all_descendants() {
    let b = Broker::start();
    let t = topic("hash");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "hash-sub", true);
    s.subscribe(&format!("{t}/#"), QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "hash-pub", true);
    for (tp, payload) in [
        (t.clone(), "parent"),
        (format!("{t}/a"), "child"),
        (format!("{t}/a/b/c"), "grandchild"),
        (format!("{t}x/a"), "sibling-prefix"),
        (format!("other/{t}"), "other"),
        (format!("{t}/end"), "end"),
    ] {
        p.publish(&tp, payload.as_bytes(), QoS::AtLeastOnce, false);
    }
    let got = s.collect_publishes(4, WAIT);
    assert_eq!(payloads(&got), vec!["parent", "child", "grandchild", "end"]);
    s.expect_no_publish(QUIET);
}

#[test]
fn wildcard_filters_do_not_match_dollar_topics() {
    let b = Broker::start_with_config(&format!(
        "systree_enabled = true\nsystree_interval = 100\n{SYS_READER}"
    ));
    let (mut all, _) = RawClient::v3(b.mqtt_port, "dollar-all", true);
    all.subscribe("#", QoS::AtMostOnce);
    let (mut plus, _) = RawClient::v3(b.mqtt_port, "dollar-plus", true);
    plus.subscribe("+/1/uptime", QoS::AtMostOnce);
    let (mut sys, _) = RawClient::v3_sys(b.mqtt_port, "dollar-sys");
    sys.subscribe("$SYS/#", QoS::AtMostOnce);
    // $SYS messages are flowing ...
    let m = sys.expect_publish(WAIT);
    assert!(m.topic.starts_with("$SYS/"), "{m:?}");
    sys.expect_publish(WAIT);
    // ... and neither "#" nor "+/..." saw any of them.
    all.expect_no_publish(QUIET);
    plus.expect_no_publish(Duration::from_millis(10));
}

#[test]
fn retained_message_is_delivered_to_a_new_subscriber_with_retain_flag() {
    let b = Broker::start();
    let t = topic("ret");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "ret-pub", true);
    p.publish(&t, b"kept", QoS::AtLeastOnce, true);
    let (mut s, _) = RawClient::v3(b.mqtt_port, "ret-sub", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let m = s.expect_publish(WAIT);
    assert_eq!(&m.payload[..], b"kept");
    assert!(
        m.retain,
        "a retained message sent at subscribe has RETAIN set"
    );
    assert_eq!(m.qos, QoS::AtLeastOnce);
}

#[test]
fn retained_message_is_deleted_by_empty_payload() {
    let b = Broker::start();
    let t = topic("retdel");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "retdel-pub", true);
    p.publish(&t, b"soon gone", QoS::AtLeastOnce, true);
    p.publish(&t, b"", QoS::AtLeastOnce, true);
    let (mut s, _) = RawClient::v3(b.mqtt_port, "retdel-sub", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    s.expect_no_publish(QUIET);
}

#[test]
fn retained_message_is_replaced_by_a_newer_one() {
    let b = Broker::start();
    let t = topic("retnew");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "retnew-pub", true);
    p.publish(&t, b"old", QoS::AtLeastOnce, true);
    p.publish(&t, b"new", QoS::AtMostOnce, true);
    let (mut s, _) = RawClient::v3(b.mqtt_port, "retnew-sub", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["new"]);
    assert!(got[0].retain);
}

#[test]
fn retained_messages_are_delivered_for_a_wildcard_subscription() {
    let b = Broker::start();
    let t = topic("retwild");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "retwild-pub", true);
    for sub in ["a", "b", "c/d"] {
        p.publish(
            &format!("{t}/{sub}"),
            sub.as_bytes(),
            QoS::AtLeastOnce,
            true,
        );
    }
    p.publish(&format!("{t}x/no"), b"no", QoS::AtLeastOnce, true);
    let (mut s, _) = RawClient::v3(b.mqtt_port, "retwild-sub", true);
    s.subscribe(&format!("{t}/#"), QoS::AtLeastOnce);
    let got = s.collect_publishes(4, Duration::from_millis(2000));
    let mut got = payloads(&got);
    got.sort();
    assert_eq!(got, vec!["a", "b", "c/d"]);
}

#[test]
fn live_message_to_an_existing_subscription_has_retain_flag_cleared() {
    let b = Broker::start();
    let t = topic("retlive");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "retlive-sub", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "retlive-pub", true);
    p.publish(&t, b"live", QoS::AtLeastOnce, true);
    let m = s.expect_publish(WAIT);
    assert_eq!(&m.payload[..], b"live");
    assert!(
        !m.retain,
        "MQTT 3.1.1 [MQTT-3.3.1-9]: RETAIN is 0 for established subscriptions"
    );
}

fn will_client(port: u16, id: &str, will_topic: &str, keep_alive: u16) -> RawClient {
    let mut conn = v3_connect(id, true);
    conn.keep_alive = keep_alive;
    conn.will = Some(will(will_topic, b"gone", QoS::AtLeastOnce, false));
    RawClient::connect_ok(port, Protocol::V311, conn).0
}

#[test]
fn will_is_published_on_abrupt_close() {
    let b = Broker::start();
    let t = topic("will");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "will-watch", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let c = will_client(b.mqtt_port, "will-abrupt", &t, 60);
    c.drop_connection();
    let m = s.expect_publish(WAIT);
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        (t.as_str(), &b"gone"[..])
    );
    assert_eq!(m.qos, QoS::AtLeastOnce);
}

#[test]
fn will_is_published_on_keepalive_timeout() {
    let b = Broker::start();
    let t = topic("willka");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "willka-watch", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let _silent = will_client(b.mqtt_port, "willka-silent", &t, 1);
    // The client keeps its socket open but says nothing.
    let m = s.expect_publish(Duration::from_secs(5));
    assert_eq!(&m.payload[..], b"gone");
}

#[test]
fn will_is_not_published_on_clean_disconnect() {
    let b = Broker::start();
    let t = topic("willclean");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "willclean-watch", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let c = will_client(b.mqtt_port, "willclean-c", &t, 60);
    c.disconnect();
    // A marker published after the disconnect must be the first thing seen.
    let (mut p, _) = RawClient::v3(b.mqtt_port, "willclean-pub", true);
    p.publish(&t, b"marker", QoS::AtLeastOnce, false);
    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["marker"]);
}

#[test]
fn retained_will_is_stored_as_a_retained_message() {
    let b = Broker::start();
    let t = topic("willret");
    let mut conn = v3_connect("willret-c", true);
    conn.will = Some(will(&t, b"last words", QoS::AtLeastOnce, true));
    let (c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V311, conn);
    c.drop_connection();
    // Wait for the will to be published (bounded), then subscribe fresh.
    let (mut s, _) = RawClient::v3(b.mqtt_port, "willret-late", true);
    let found = wait_until(Duration::from_secs(5), || {
        let ack = s.subscribe_with(subscribe_packet(&t, QoS::AtLeastOnce));
        assert_eq!(ack.reason_codes, vec![1]);
        matches!(s.recv(Duration::from_millis(200)), Recv::Packet(Packet::Publish(p)) if p.retain && &p.payload[..] == b"last words")
    });
    assert!(found, "retained will not found on {t}");
}

#[test]
fn session_takeover_closes_the_older_connection() {
    let b = Broker::start();
    let (mut old, _) = RawClient::v3(b.mqtt_port, "takeover", false);
    let (mut new, ack) = RawClient::v3(b.mqtt_port, "takeover", false);
    assert!(ack.session_present, "the takeover keeps the session");
    old.expect_closed(WAIT);
    new.ping();
}

#[test]
fn unsubscribe_stops_delivery() {
    let b = Broker::start();
    let t = topic("unsub");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "unsub-sub", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let ack = s.unsubscribe(&[&t]);
    assert_ne!(ack.packet_id, 0);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "unsub-pub", true);
    p.publish(&t, b"after unsubscribe", QoS::AtLeastOnce, false);
    s.expect_no_publish(QUIET);
}

#[test]
fn qos1_messages_from_one_publisher_arrive_in_order() {
    let b = Broker::start();
    let t = topic("order");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "order-sub", true);
    s.subscribe(&t, QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "order-pub", true);
    // Pipelined: send all, then collect the PUBACKs.
    let mut pids = Vec::new();
    for i in 0..30 {
        let mut m = publish_packet(&t, QoS::AtLeastOnce, format!("{i}").as_bytes());
        m.packet_id = p.pid();
        pids.push(m.packet_id);
        p.send(&Packet::Publish(m));
    }
    for pid in pids {
        p.wait_for(
            WAIT,
            |x| matches!(x, Packet::PubAck(a) if a.packet_id == pid),
        );
    }
    let got = s.collect_publishes(30, WAIT);
    let want: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    assert_eq!(payloads(&got), want);
}

#[test]
fn shared_subscription_works_for_311_clients() {
    let b = Broker::start();
    let t = topic("share311");
    let filter = format!("$share/g311/{t}");
    let (mut a, _) = RawClient::v3(b.mqtt_port, "share311-a", true);
    a.subscribe(&filter, QoS::AtLeastOnce);
    let (mut c, _) = RawClient::v3(b.mqtt_port, "share311-b", true);
    c.subscribe(&filter, QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "share311-pub", true);
    for i in 0..10 {
        p.publish(&t, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let mut got = payloads(&a.collect_publishes(10, Duration::from_millis(1500)));
    got.extend(payloads(
        &c.collect_publishes(10, Duration::from_millis(500)),
    ));
    got.sort_by_key(|s| s.parse::<u32>().unwrap());
    let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "each message exactly once across the group");
}

// ---------------------------------------------------------------------------
// rumqttc (3.1.1)
// ---------------------------------------------------------------------------

fn rumq_wait<F: FnMut(&rumqttc::Event) -> bool>(
    conn: &mut rumqttc::Connection,
    timeout: Duration,
    mut pred: F,
) -> rumqttc::Event {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_timeout(left) {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("rumqttc connection error: {e:?}"),
            Err(e) => panic!("rumqttc: awaited event did not come within {timeout:?}: {e:?}"),
        }
    }
}

#[test]
fn rumqttc_v311_client_publishes_and_receives_qos1() {
    use rumqttc::{Client, Event, MqttOptions, Packet as RP, QoS as RQ};
    let b = Broker::start();
    let t = topic("rumq");
    let mut opts = MqttOptions::new("rumq-311", "127.0.0.1", b.mqtt_port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(opts, 10);
    rumq_wait(&mut conn, WAIT, |e| {
        matches!(e, Event::Incoming(RP::ConnAck(_)))
    });
    client.subscribe(t.clone(), RQ::AtLeastOnce).unwrap();
    rumq_wait(&mut conn, WAIT, |e| {
        matches!(e, Event::Incoming(RP::SubAck(_)))
    });
    client
        .publish(t.clone(), RQ::AtLeastOnce, false, b"from rumqttc".to_vec())
        .unwrap();
    let ev = rumq_wait(&mut conn, WAIT, |e| {
        matches!(e, Event::Incoming(RP::Publish(_)))
    });
    let Event::Incoming(RP::Publish(p)) = ev else {
        unreachable!()
    };
    assert_eq!(p.topic, t);
    assert_eq!(&p.payload[..], b"from rumqttc");
    assert_eq!(p.qos, RQ::AtLeastOnce);
}

#[test]
fn rumqttc_v311_persistent_session_receives_offline_messages() {
    use rumqttc::{Client, Event, MqttOptions, Packet as RP, QoS as RQ};
    let b = Broker::start();
    let t = topic("rumqoff");
    let opts = || {
        let mut o = MqttOptions::new("rumq-offline", "127.0.0.1", b.mqtt_port);
        o.set_clean_session(false).set_manual_acks(true);
        o
    };
    {
        let (client, mut conn) = Client::new(opts(), 10);
        rumq_wait(&mut conn, WAIT, |e| {
            matches!(e, Event::Incoming(RP::ConnAck(_)))
        });
        client.subscribe(t.clone(), RQ::ExactlyOnce).unwrap();
        rumq_wait(&mut conn, WAIT, |e| {
            matches!(e, Event::Incoming(RP::SubAck(_)))
        });
        client.disconnect().unwrap();
        rumq_wait(&mut conn, WAIT, |e| {
            matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect))
        });
    }
    let (mut p, _) = RawClient::v3(b.mqtt_port, "rumqoff-pub", true);
    p.publish(&t, b"while away", QoS::ExactlyOnce, false);

    let (client, mut conn) = Client::new(opts(), 10);
    let ev = rumq_wait(&mut conn, WAIT, |e| {
        matches!(e, Event::Incoming(RP::ConnAck(_)))
    });
    let Event::Incoming(RP::ConnAck(ack)) = ev else {
        unreachable!()
    };
    assert!(ack.session_present);
    let ev = rumq_wait(&mut conn, WAIT, |e| {
        matches!(e, Event::Incoming(RP::Publish(_)))
    });
    let Event::Incoming(RP::Publish(m)) = ev else {
        unreachable!()
    };
    assert_eq!(&m.payload[..], b"while away");
    assert_eq!(m.qos, RQ::ExactlyOnce);
    client.ack(&m).unwrap();
    rumq_wait(&mut conn, WAIT, |e| {
        matches!(e, Event::Incoming(RP::PubRel(_)))
    });
}
