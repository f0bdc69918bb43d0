//! MQTT 5.0 behaviour, checked with the raw codec client (exact packets and
//! properties) and with rumqttc's v5 client.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

fn topic(name: &str) -> String {
    unique(&format!("v5/{name}")).replace('-', "/")
}

fn v5(b: &Broker, id: &str) -> RawClient {
    RawClient::v5(b.mqtt_port, id, true, None).0
}

fn sub_with(filter: &str, opts: SubOptions, id: Option<u32>) -> Subscribe {
    Subscribe {
        packet_id: 0,
        filters: vec![SubscribeFilter {
            filter: filter.to_string(),
            options: opts,
        }],
        properties: SubscribeProperties {
            subscription_identifier: id,
            user_properties: vec![],
        },
    }
}

#[test]
fn v5_connack_returns_assigned_client_identifier_for_empty_client_id() {
    let b = Broker::start();
    let (mut c1, ack1) = RawClient::v5(b.mqtt_port, "", true, None);
    let (_c2, ack2) = RawClient::v5(b.mqtt_port, "", true, None);
    let id1 = ack1
        .properties
        .assigned_client_identifier
        .clone()
        .expect("Assigned Client Identifier in CONNACK");
    let id2 = ack2
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier in CONNACK");
    assert!(!id1.is_empty());
    assert_ne!(id1, id2, "each connection gets its own id");
    // The first connection still works (it was not taken over by the second).
    c1.ping();
}

#[test]
fn v5_connack_advertises_receive_maximum_100_by_default() {
    let b = Broker::start();
    let (_c, ack) = RawClient::v5(b.mqtt_port, "rm-default", true, None);
    assert_eq!(ack.properties.receive_maximum, Some(100));
}

#[test]
fn v5_connack_advertises_topic_alias_maximum_16_by_default() {
    let b = Broker::start();
    let (_c, ack) = RawClient::v5(b.mqtt_port, "tam-default", true, None);
    assert_eq!(ack.properties.topic_alias_maximum, Some(16));
}

#[test]
fn v5_connack_advertises_configured_maximum_packet_size() {
    let b = Broker::start_with_config("max_packet_size = 4096\n");
    let (_c, ack) = RawClient::v5(b.mqtt_port, "mps-adv", true, None);
    assert_eq!(ack.properties.maximum_packet_size, Some(4096));
}

#[test]
fn v5_session_expiry_zero_discards_the_session_at_disconnect() {
    let b = Broker::start();
    let (mut c, _) = RawClient::v5(b.mqtt_port, "se0", false, Some(0));
    c.subscribe(&topic("se0"), QoS::AtLeastOnce);
    c.disconnect();
    let (_c, ack) = RawClient::v5(b.mqtt_port, "se0", false, Some(0));
    assert!(!ack.session_present, "{ack:?}");
}

#[test]
fn v5_session_with_expiry_is_resumed_before_it_expires() {
    let b = Broker::start();
    let t = topic("se60");
    let (mut c, _) = RawClient::v5(b.mqtt_port, "se60", false, Some(60));
    c.subscribe(&t, QoS::AtLeastOnce);
    c.disconnect();
    let (mut c, ack) = RawClient::v5(b.mqtt_port, "se60", false, Some(60));
    assert!(ack.session_present, "{ack:?}");
    let mut p = v5(&b, "se60-pub");
    p.publish(&t, b"resumed", QoS::AtLeastOnce, false);
    assert_eq!(&c.expect_publish(WAIT).payload[..], b"resumed");
}

#[test]
fn v5_session_expires_after_the_session_expiry_interval() {
    let b = Broker::start();
    let (mut c, _) = RawClient::v5(b.mqtt_port, "se1", false, Some(1));
    c.subscribe(&topic("se1"), QoS::AtLeastOnce);
    c.disconnect();
    // Let the 1 s expiry pass (with margin); a reconnect earlier would resume it.
    std::thread::sleep(Duration::from_millis(2500));
    let (_c, ack) = RawClient::v5(b.mqtt_port, "se1", false, Some(1));
    assert!(!ack.session_present, "session should have expired: {ack:?}");
}

#[test]
fn v5_clean_start_discards_an_existing_session() {
    let b = Broker::start();
    let t = topic("cs");
    let (mut c, _) = RawClient::v5(b.mqtt_port, "cs", false, Some(60));
    c.subscribe(&t, QoS::AtLeastOnce);
    c.disconnect();
    let (mut c, ack) = RawClient::v5(b.mqtt_port, "cs", true, Some(60));
    assert!(!ack.session_present);
    let mut p = v5(&b, "cs-pub");
    p.publish(&t, b"x", QoS::AtLeastOnce, false);
    c.expect_no_publish(QUIET);
}

#[test]
fn v5_session_expiry_set_to_zero_in_disconnect_discards_the_session() {
    let b = Broker::start();
    let (mut c, _) = RawClient::v5(b.mqtt_port, "sed", false, Some(60));
    c.subscribe(&topic("sed"), QoS::AtLeastOnce);
    c.disconnect_with(Disconnect {
        reason: 0,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    });
    let (_c, ack) = RawClient::v5(b.mqtt_port, "sed", false, Some(60));
    assert!(!ack.session_present, "{ack:?}");
}

#[test]
fn v5_keepalive_timeout_sends_disconnect_0x8d() {
    let b = Broker::start();
    let mut conn = v5_connect("ka5", true, None);
    conn.keep_alive = 1;
    let (mut c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, conn);
    let t0 = Instant::now();
    c.expect_disconnect(0x8D, Duration::from_secs(5));
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn v5_server_keep_alive_is_sent_in_connack_and_enforced() {
    let b = Broker::start_with_config("server_keep_alive = 1\n");
    let conn = v5_connect("ska", true, None); // asks for 60 s
    let (mut c, ack) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, conn);
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    let t0 = Instant::now();
    c.expect_disconnect(0x8D, Duration::from_secs(5));
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn v5_server_keep_alive_zero_accepts_the_clients_keep_alive() {
    let b = Broker::start_with_config("server_keep_alive = 0\n");
    let (mut c, ack) = RawClient::v5(b.mqtt_port, "ska0", true, None);
    assert_eq!(ack.properties.server_keep_alive, None);
    std::thread::sleep(Duration::from_millis(1600));
    c.ping();
}

#[test]
fn v5_session_takeover_sends_disconnect_0x8e_to_the_old_connection() {
    let b = Broker::start();
    let (mut old, _) = RawClient::v5(b.mqtt_port, "take5", false, Some(60));
    let (mut new, ack) = RawClient::v5(b.mqtt_port, "take5", false, Some(60));
    assert!(ack.session_present);
    old.expect_disconnect(0x8E, WAIT);
    new.ping();
}

#[test]
fn v5_no_local_subscription_does_not_receive_own_messages() {
    let b = Broker::start();
    let t = topic("nl");
    let mut c = v5(&b, "nl-self");
    let mut opts = sub_opts(QoS::AtLeastOnce);
    opts.no_local = true;
    let ack = c.subscribe_with(sub_with(&t, opts, None));
    assert_eq!(ack.reason_codes, vec![1]);
    c.publish(&t, b"mine", QoS::AtLeastOnce, false);
    let mut other = v5(&b, "nl-other");
    other.publish(&t, b"theirs", QoS::AtLeastOnce, false);
    let got = c.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["theirs"]);
}

#[test]
fn v5_retain_as_published_keeps_the_retain_flag_on_live_messages() {
    let b = Broker::start();
    let t = topic("rap");
    let mut s = v5(&b, "rap-sub");
    let mut opts = sub_opts(QoS::AtLeastOnce);
    opts.retain_as_published = true;
    s.subscribe_with(sub_with(&t, opts, None));
    let mut p = v5(&b, "rap-pub");
    p.publish(&t, b"r", QoS::AtLeastOnce, true);
    p.publish(&t, b"n", QoS::AtLeastOnce, false);
    let got = s.collect_publishes(2, WAIT);
    assert_eq!(payloads(&got), vec!["r", "n"]);
    assert!(got[0].retain, "retain as published: {:?}", got[0]);
    assert!(!got[1].retain);
}

#[test]
fn v5_without_retain_as_published_live_messages_have_retain_cleared() {
    let b = Broker::start();
    let t = topic("norap");
    let mut s = v5(&b, "norap-sub");
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "norap-pub");
    p.publish(&t, b"r", QoS::AtLeastOnce, true);
    let m = s.expect_publish(WAIT);
    assert!(!m.retain, "{m:?}");
}

fn retained_setup(b: &Broker, t: &str) {
    let mut p = v5(b, &unique("ret-pub"));
    p.publish(t, b"retained", QoS::AtLeastOnce, true);
}

fn subscribe_rh(c: &mut RawClient, t: &str, rh: u8) {
    let mut opts = sub_opts(QoS::AtLeastOnce);
    opts.retain_handling = rh;
    let ack = c.subscribe_with(sub_with(t, opts, None));
    assert_eq!(ack.reason_codes, vec![1]);
}

#[test]
fn v5_retain_handling_0_sends_retained_messages_on_every_subscribe() {
    let b = Broker::start();
    let t = topic("rh0");
    retained_setup(&b, &t);
    let mut s = v5(&b, "rh0");
    subscribe_rh(&mut s, &t, 0);
    let m = s.expect_publish(WAIT);
    assert!(m.retain);
    s.ack(&m);
    subscribe_rh(&mut s, &t, 0);
    let m = s.expect_publish(WAIT);
    assert_eq!(&m.payload[..], b"retained");
    assert!(m.retain);
}

#[test]
fn v5_retain_handling_1_sends_retained_messages_only_for_a_new_subscription() {
    let b = Broker::start();
    let t = topic("rh1");
    retained_setup(&b, &t);
    let mut s = v5(&b, "rh1");
    subscribe_rh(&mut s, &t, 1);
    let m = s.expect_publish(WAIT);
    assert_eq!(&m.payload[..], b"retained");
    s.ack(&m);
    subscribe_rh(&mut s, &t, 1); // already exists
    s.expect_no_publish(QUIET);
}

#[test]
fn v5_retain_handling_2_never_sends_retained_messages() {
    let b = Broker::start();
    let t = topic("rh2");
    retained_setup(&b, &t);
    let mut s = v5(&b, "rh2");
    subscribe_rh(&mut s, &t, 2);
    s.expect_no_publish(QUIET);
}

#[test]
fn v5_subscription_identifier_is_attached_to_matching_publishes() {
    let b = Broker::start();
    let t = topic("sid");
    let mut s = v5(&b, "sid");
    s.subscribe_with(sub_with(
        &format!("{t}/#"),
        sub_opts(QoS::AtLeastOnce),
        Some(77),
    ));
    let mut p = v5(&b, "sid-pub");
    p.publish(&format!("{t}/a"), b"x", QoS::AtLeastOnce, false);
    let m = s.expect_publish(WAIT);
    assert_eq!(m.properties.subscription_identifiers, vec![77]);
}

#[test]
fn v5_overlapping_subscriptions_deliver_one_copy_at_max_qos_with_all_identifiers() {
    let b = Broker::start();
    let t = topic("ovl");
    let mut s = v5(&b, "ovl");
    s.subscribe_with(sub_with(
        &format!("{t}/#"),
        sub_opts(QoS::AtMostOnce),
        Some(1),
    ));
    s.subscribe_with(sub_with(
        &format!("{t}/+/x"),
        sub_opts(QoS::AtLeastOnce),
        Some(2),
    ));
    let mut p = v5(&b, "ovl-pub");
    p.publish(&format!("{t}/a/x"), b"both", QoS::ExactlyOnce, false);
    // A marker that matches only the first filter: it must be the next message.
    p.publish(&format!("{t}/m"), b"marker", QoS::AtLeastOnce, false);
    let got = s.collect_publishes(3, Duration::from_millis(1500));
    assert_eq!(
        payloads(&got),
        vec!["both", "marker"],
        "one copy per client"
    );
    assert_eq!(
        got[0].qos,
        QoS::AtLeastOnce,
        "max QoS of the matching subscriptions"
    );
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(got[1].properties.subscription_identifiers, vec![1]);
    assert_eq!(got[1].qos, QoS::AtMostOnce);
}

fn will_conn(id: &str, t: &str, delay: Option<u32>, session_expiry: u32) -> Connect {
    let mut c = v5_connect(id, true, Some(session_expiry));
    let mut w = will(t, b"will", QoS::AtLeastOnce, false);
    w.properties.delay_interval = delay;
    c.will = Some(w);
    c
}

#[test]
fn v5_will_is_published_on_abrupt_close_with_its_properties() {
    let b = Broker::start();
    let t = topic("will");
    let mut s = v5(&b, "will-watch");
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut conn = will_conn("will-c", &t, None, 0);
    let w = conn.will.as_mut().unwrap();
    w.properties.content_type = Some("text/plain".into());
    w.properties.user_properties = vec![("k".into(), "v".into())];
    w.properties.response_topic = Some("resp/t".into());
    w.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    w.properties.payload_format_indicator = Some(1);
    let (c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, conn);
    c.drop_connection();
    let m = s.expect_publish(WAIT);
    assert_eq!(&m.payload[..], b"will");
    assert_eq!(m.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        m.properties.user_properties,
        vec![("k".to_string(), "v".to_string())]
    );
    assert_eq!(m.properties.response_topic.as_deref(), Some("resp/t"));
    assert_eq!(
        m.properties.correlation_data.as_deref(),
        Some(&b"\x01\x02"[..])
    );
    assert_eq!(m.properties.payload_format_indicator, Some(1));
}

#[test]
fn v5_will_delay_interval_delays_the_will() {
    let b = Broker::start();
    let t = topic("willdelay");
    let mut s = v5(&b, "wd-watch");
    s.subscribe(&t, QoS::AtLeastOnce);
    let (c, _) = RawClient::connect_ok(
        b.mqtt_port,
        Protocol::V5,
        will_conn("wd-c", &t, Some(2), 60),
    );
    let t0 = Instant::now();
    c.drop_connection();
    let m = s.expect_publish(Duration::from_secs(6));
    let after = t0.elapsed();
    assert_eq!(&m.payload[..], b"will");
    assert!(
        after >= Duration::from_millis(1800),
        "will published after {after:?}, before its 2 s delay"
    );
}

#[test]
fn v5_will_is_not_published_when_the_client_reconnects_within_the_will_delay() {
    let b = Broker::start();
    let t = topic("willback");
    let mut s = v5(&b, "wb-watch");
    s.subscribe(&t, QoS::AtLeastOnce);
    let (c, _) = RawClient::connect_ok(
        b.mqtt_port,
        Protocol::V5,
        will_conn("wb-c", &t, Some(2), 60),
    );
    c.drop_connection();
    let (_back, ack) = RawClient::v5(b.mqtt_port, "wb-c", false, Some(60));
    assert!(ack.session_present);
    // Past the 2 s delay: still no will.
    s.expect_no_publish(Duration::from_millis(3000));
}

#[test]
fn v5_disconnect_with_will_message_0x04_publishes_the_will() {
    let b = Broker::start();
    let t = topic("will04");
    let mut s = v5(&b, "w04-watch");
    s.subscribe(&t, QoS::AtLeastOnce);
    let (c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, will_conn("w04-c", &t, None, 0));
    c.disconnect_with(Disconnect {
        reason: 0x04,
        properties: Default::default(),
    });
    let m = s.expect_publish(WAIT);
    assert_eq!(&m.payload[..], b"will");
}

#[test]
fn v5_normal_disconnect_does_not_publish_the_will() {
    let b = Broker::start();
    let t = topic("will00");
    let mut s = v5(&b, "w00-watch");
    s.subscribe(&t, QoS::AtLeastOnce);
    let (c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, will_conn("w00-c", &t, None, 0));
    c.disconnect();
    let mut p = v5(&b, "w00-pub");
    p.publish(&t, b"marker", QoS::AtLeastOnce, false);
    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["marker"]);
}

fn publish_expiring(p: &mut RawClient, t: &str, payload: &[u8], expiry: Option<u32>) {
    let mut m = publish_packet(t, QoS::AtLeastOnce, payload);
    m.properties.message_expiry_interval = expiry;
    let ack = p.publish_with(m).unwrap();
    assert!(ack.reason < 0x80, "{ack:?}");
}

#[test]
fn v5_expired_message_is_not_delivered() {
    let b = Broker::start();
    let t = topic("exp");
    let (mut s, _) = RawClient::v5(b.mqtt_port, "exp-sub", false, Some(300));
    s.subscribe(&t, QoS::AtLeastOnce);
    s.disconnect();
    let mut p = v5(&b, "exp-pub");
    publish_expiring(&mut p, &t, b"short-lived", Some(1));
    publish_expiring(&mut p, &t, b"durable", None);
    std::thread::sleep(Duration::from_millis(2200));
    let (mut s, ack) = RawClient::v5(b.mqtt_port, "exp-sub", false, Some(300));
    assert!(ack.session_present);
    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["durable"]);
}

#[test]
fn v5_message_expiry_interval_is_forwarded_with_the_remaining_time() {
    let b = Broker::start();
    let t = topic("expleft");
    let (mut s, _) = RawClient::v5(b.mqtt_port, "expleft-sub", false, Some(300));
    s.subscribe(&t, QoS::AtLeastOnce);
    s.disconnect();
    let mut p = v5(&b, "expleft-pub");
    publish_expiring(&mut p, &t, b"m", Some(30));
    std::thread::sleep(Duration::from_millis(2100));
    let (mut s, _) = RawClient::v5(b.mqtt_port, "expleft-sub", false, Some(300));
    let m = s.expect_publish(WAIT);
    let left = m
        .properties
        .message_expiry_interval
        .expect("message expiry interval forwarded");
    assert!(
        (1..=28).contains(&left),
        "2 s after publishing with 30 s, {left} s are left"
    );
}

#[test]
fn v5_message_expiry_interval_is_forwarded_to_an_online_subscriber() {
    let b = Broker::start();
    let t = topic("expon");
    let mut s = v5(&b, "expon-sub");
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "expon-pub");
    publish_expiring(&mut p, &t, b"m", Some(30));
    let m = s.expect_publish(WAIT);
    let left = m
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!((28..=30).contains(&left), "{left}");
}

#[test]
fn v5_topic_alias_from_the_client_is_resolved_by_the_broker() {
    let b = Broker::start();
    let t = topic("alias");
    let mut s = v5(&b, "alias-sub");
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "alias-pub");
    let mut m = publish_packet(&t, QoS::AtLeastOnce, b"first");
    m.properties.topic_alias = Some(3);
    p.publish_with(m).unwrap();
    let mut m = publish_packet("", QoS::AtLeastOnce, b"second");
    m.properties.topic_alias = Some(3);
    let ack = p.publish_with(m).unwrap();
    assert!(ack.reason < 0x80, "{ack:?}");
    let got = s.collect_publishes(2, WAIT);
    assert_eq!(payloads(&got), vec!["first", "second"]);
    for m in &got {
        assert_eq!(s.resolved_topic(m), t);
    }
}

#[test]
fn v5_topic_alias_above_the_broker_maximum_gets_disconnect_0x94() {
    let b = Broker::start();
    let mut p = v5(&b, "alias-big");
    let mut m = publish_packet(&topic("aliasbig"), QoS::AtMostOnce, b"x");
    m.properties.topic_alias = Some(17); // default topic_alias_max_broker = 16
    p.send(&Packet::Publish(m));
    p.expect_disconnect(0x94, WAIT);
}

#[test]
fn v5_broker_uses_topic_aliases_towards_a_client_that_allows_them() {
    let b = Broker::start();
    let t = topic("balias");
    let mut conn = v5_connect("balias-sub", true, None);
    conn.properties.topic_alias_maximum = Some(4);
    let (mut s, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, conn);
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "balias-pub");
    for i in 0..4 {
        p.publish(&t, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let got = s.collect_publishes(4, WAIT);
    assert_eq!(payloads(&got), vec!["0", "1", "2", "3"]);
    for m in &got {
        assert_eq!(s.resolved_topic(m), t);
        if let Some(a) = m.properties.topic_alias {
            assert!((1..=4).contains(&a), "alias {a} outside 1..=4");
        }
    }
    assert!(
        got.iter().any(|m| m.topic.is_empty()),
        "the broker never replaced the topic by an alias: {got:?}"
    );
}

#[test]
fn v5_broker_sends_no_topic_alias_to_a_client_without_topic_alias_maximum() {
    let b = Broker::start();
    let t = topic("noalias");
    let mut s = v5(&b, "noalias-sub");
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "noalias-pub");
    for _ in 0..3 {
        p.publish(&t, b"x", QoS::AtLeastOnce, false);
    }
    let got = s.collect_publishes(3, WAIT);
    assert_eq!(got.len(), 3);
    for m in got {
        assert_eq!(m.properties.topic_alias, None);
        assert_eq!(m.topic, t);
    }
}

#[test]
fn v5_broker_respects_the_clients_receive_maximum() {
    let b = Broker::start();
    let t = topic("crm");
    let mut conn = v5_connect("crm-sub", true, None);
    conn.properties.receive_maximum = Some(2);
    let (mut s, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, conn);
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "crm-pub");
    for i in 0..5 {
        p.publish(&t, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let first = s.expect_publish(WAIT);
    let second = s.expect_publish(WAIT);
    s.expect_no_publish(QUIET); // 2 unacked = the client's receive maximum
    s.send(&Packet::PubAck(pubresp(first.packet_id)));
    let third = s.expect_publish(WAIT);
    s.expect_no_publish(QUIET);
    assert_eq!(payloads(&[first, second, third]), vec!["0", "1", "2"]);
}

#[test]
fn v5_client_exceeding_the_broker_receive_maximum_gets_disconnect_0x93() {
    let b = Broker::start_with_config("receive_max_broker = 2\n");
    let (mut p, ack) = RawClient::v5(b.mqtt_port, "rm-exceed", true, None);
    assert_eq!(ack.properties.receive_maximum, Some(2));
    let t = topic("rmx");
    // QoS 2 publishes stay in flight until PUBREL/PUBCOMP, which we never send.
    for pid in 1..=2u16 {
        let mut m = publish_packet(&t, QoS::ExactlyOnce, b"x");
        m.packet_id = pid;
        p.send(&Packet::Publish(m));
        p.wait_for(
            WAIT,
            |x| matches!(x, Packet::PubRec(r) if r.packet_id == pid),
        );
    }
    let mut m = publish_packet(&t, QoS::ExactlyOnce, b"x");
    m.packet_id = 3;
    p.send(&Packet::Publish(m));
    p.expect_disconnect(0x93, WAIT);
}

#[test]
fn v5_broker_does_not_send_packets_above_the_clients_maximum_packet_size() {
    let b = Broker::start();
    let t = topic("cmps");
    let mut conn = v5_connect("cmps-sub", true, None);
    conn.properties.maximum_packet_size = Some(256);
    let (mut s, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, conn);
    s.max_packet_size = 256;
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "cmps-pub");
    p.publish(&t, &[b'L'; 1000], QoS::AtLeastOnce, false);
    p.publish(&t, b"small", QoS::AtLeastOnce, false);
    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["small"]);
}

#[test]
fn v5_publish_properties_are_passed_through_unchanged() {
    let b = Broker::start();
    let t = topic("props");
    let mut s = v5(&b, "props-sub");
    s.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "props-pub");
    let mut m = publish_packet(&t, QoS::AtLeastOnce, "héllo".as_bytes());
    m.properties = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: None,
        topic_alias: None,
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr\xff")),
        user_properties: vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("a".into(), "dup".into()),
            ("ünï".into(), "cödé".into()),
        ],
        subscription_identifiers: vec![],
        content_type: Some("application/x-test".into()),
    };
    let sent = m.properties.clone();
    p.publish_with(m).unwrap();
    let got = s.expect_publish(WAIT);
    assert_eq!(
        got.properties.payload_format_indicator,
        sent.payload_format_indicator
    );
    assert_eq!(got.properties.response_topic, sent.response_topic);
    assert_eq!(got.properties.correlation_data, sent.correlation_data);
    assert_eq!(
        got.properties.user_properties, sent.user_properties,
        "order and duplicates kept"
    );
    assert_eq!(got.properties.content_type, sent.content_type);
    assert_eq!(&got.payload[..], "héllo".as_bytes());
}

#[test]
fn v5_shared_subscription_delivers_each_message_to_exactly_one_member() {
    let b = Broker::start();
    let t = topic("share");
    let filter = format!("$share/grp/{t}");
    let mut members: Vec<RawClient> = (0..3)
        .map(|i| {
            let mut c = v5(&b, &format!("share-{i}"));
            c.subscribe(&filter, QoS::AtLeastOnce);
            c
        })
        .collect();
    let mut p = v5(&b, "share-pub");
    for i in 0..30 {
        p.publish(&t, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let mut all = Vec::new();
    let mut per_member = Vec::new();
    for m in members.iter_mut() {
        let got = payloads(&m.collect_publishes(30, Duration::from_millis(800)));
        per_member.push(got.len());
        all.extend(got);
    }
    all.sort_by_key(|s| s.parse::<u32>().unwrap());
    let want: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    assert_eq!(all, want, "every message exactly once across the group");
    assert!(
        per_member.iter().all(|&n| n > 0),
        "round-robin-ish: every member gets some: {per_member:?}"
    );
}

#[test]
fn v5_shared_subscription_spreads_messages_across_two_members() {
    let b = Broker::start();
    let t = topic("share2");
    let filter = format!("$share/duo/{t}");
    let mut a = v5(&b, "duo-a");
    a.subscribe(&filter, QoS::AtLeastOnce);
    let mut c = v5(&b, "duo-b");
    c.subscribe(&filter, QoS::AtLeastOnce);
    let mut p = v5(&b, "duo-pub");
    for i in 0..20 {
        p.publish(&t, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let got_a = a.collect_publishes(20, Duration::from_millis(800)).len();
    let got_b = c.collect_publishes(20, Duration::from_millis(300)).len();
    assert_eq!(got_a + got_b, 20);
    assert!(
        got_a >= 5 && got_b >= 5,
        "round-robin-ish: 20 messages split {got_a} / {got_b}"
    );
}

#[test]
fn v5_shared_and_normal_subscriptions_both_receive() {
    let b = Broker::start();
    let t = topic("sharenorm");
    let mut shared = v5(&b, "sn-shared");
    shared.subscribe(&format!("$share/g/{t}"), QoS::AtLeastOnce);
    let mut normal = v5(&b, "sn-normal");
    normal.subscribe(&t, QoS::AtLeastOnce);
    let mut p = v5(&b, "sn-pub");
    for i in 0..5 {
        p.publish(&t, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let want = vec!["0", "1", "2", "3", "4"];
    assert_eq!(payloads(&shared.collect_publishes(5, WAIT)), want);
    assert_eq!(payloads(&normal.collect_publishes(5, WAIT)), want);
}

#[test]
fn v5_unsubscribe_reports_success_and_no_subscription_existed() {
    let b = Broker::start();
    let t = topic("unsub");
    let mut c = v5(&b, "unsub5");
    c.subscribe(&t, QoS::AtLeastOnce);
    let ack = c.unsubscribe(&[&t, "never/subscribed"]);
    assert_eq!(ack.reason_codes, vec![0x00, 0x11]);
}

#[test]
fn v5_qos2_publish_is_delivered_exactly_once() {
    let b = Broker::start();
    let t = topic("q2");
    let mut s = v5(&b, "q2-sub");
    s.subscribe(&t, QoS::ExactlyOnce);
    let mut p = v5(&b, "q2-pub");
    let mut m = publish_packet(&t, QoS::ExactlyOnce, b"once");
    m.packet_id = 11;
    p.send(&Packet::Publish(m.clone()));
    p.wait_for(
        WAIT,
        |x| matches!(x, Packet::PubRec(r) if r.packet_id == 11 && r.reason == 0),
    );
    m.dup = true;
    p.send(&Packet::Publish(m));
    p.wait_for(
        WAIT,
        |x| matches!(x, Packet::PubRec(r) if r.packet_id == 11),
    );
    p.send(&Packet::PubRel(pubresp(11)));
    let comp = p.wait_for(
        WAIT,
        |x| matches!(x, Packet::PubComp(r) if r.packet_id == 11),
    );
    assert!(matches!(comp, Packet::PubComp(r) if r.reason == 0));
    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["once"]);
}

// ---------------------------------------------------------------------------
// rumqttc (v5)
// ---------------------------------------------------------------------------

#[test]
fn rumqttc_v5_client_round_trips_a_message_with_user_properties() {
    use rumqttc::v5::mqttbytes::v5::{Packet as RP, PublishProperties as RProps};
    use rumqttc::v5::mqttbytes::QoS as RQ;
    use rumqttc::v5::{Client, Event, MqttOptions};
    let b = Broker::start();
    let t = topic("rumq5");
    let opts = MqttOptions::new("rumq-v5", "127.0.0.1", b.mqtt_port);
    let (client, mut conn) = Client::new(opts, 10);
    let mut wait = |pred: &dyn Fn(&Event) -> bool| -> Event {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.recv_timeout(left) {
                Ok(Ok(ev)) if pred(&ev) => return ev,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("rumqttc v5 connection error: {e:?}"),
                Err(e) => panic!("rumqttc v5: awaited event did not come: {e:?}"),
            }
        }
    };
    wait(&|e| matches!(e, Event::Incoming(RP::ConnAck(_))));
    client.subscribe(t.clone(), RQ::AtLeastOnce).unwrap();
    wait(&|e| matches!(e, Event::Incoming(RP::SubAck(_))));
    let props = RProps {
        user_properties: vec![("from".into(), "rumqttc".into())],
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    client
        .publish_with_properties(
            t.clone(),
            RQ::AtLeastOnce,
            false,
            b"v5 hello".to_vec(),
            props,
        )
        .unwrap();
    let ev = wait(&|e| matches!(e, Event::Incoming(RP::Publish(_))));
    let Event::Incoming(RP::Publish(m)) = ev else {
        unreachable!()
    };
    assert_eq!(&m.topic[..], t.as_bytes());
    assert_eq!(&m.payload[..], b"v5 hello");
    let props = m.properties.expect("properties");
    assert_eq!(
        props.user_properties,
        vec![("from".to_string(), "rumqttc".to_string())]
    );
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
}

#[test]
fn v5_resent_qos2_publish_does_not_count_twice_against_receive_maximum() {
    let b = Broker::start_with_config("receive_max_broker = 2\n");
    let (mut c, _) = RawClient::v5(b.mqtt_port, "rm-dup", true, None);
    let mut m = publish_packet("rm/dup", QoS::ExactlyOnce, b"x");
    m.packet_id = 7;
    c.send(&Packet::Publish(m.clone()));
    c.wait_for(WAIT, |p| matches!(p, Packet::PubRec(r) if r.packet_id == 7));
    // Resends of the same flow (no PUBREL yet) are not new flows.
    m.dup = true;
    for _ in 0..3 {
        c.send(&Packet::Publish(m.clone()));
        c.wait_for(WAIT, |p| matches!(p, Packet::PubRec(r) if r.packet_id == 7));
    }
    // One more flow fits in a receive maximum of 2.
    let mut q1 = publish_packet("rm/dup", QoS::AtLeastOnce, b"y");
    q1.packet_id = 8;
    c.send(&Packet::Publish(q1));
    match c.wait_for(WAIT, |p| {
        matches!(p, Packet::PubAck(_) | Packet::Disconnect(_))
    }) {
        Packet::PubAck(a) => assert_eq!(a.packet_id, 8),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}
