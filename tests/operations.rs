//! Operations: configuration (keys, values, errors), authentication, the
//! queue and flow limits, $SYS topics, and the HTTP /health and /metrics.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

#[test]
fn health_endpoint_returns_200() {
    let b = Broker::start();
    let (status, _) = http_get(b.http_port, "/health", WAIT).expect("GET /health");
    assert_eq!(status, 200);
}

/// Checks one Prometheus text exposition sample line: `name{labels} value [ts]`.
fn check_sample_line(line: &str) -> Result<(), String> {
    let (name_labels, rest) = match line.find('}') {
        Some(i) => (&line[..=i], line[i + 1..].trim_start()),
        None => {
            let mut it = line.splitn(2, ' ');
            (
                it.next().unwrap_or(""),
                it.next().unwrap_or("").trim_start(),
            )
        }
    };
    let name = name_labels.split('{').next().unwrap();
    let valid_name = !name.is_empty()
        && name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
    if !valid_name {
        return Err(format!("bad metric name in {line:?}"));
    }
    let mut parts = rest.split_whitespace();
    let value = parts
        .next()
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let ok_value = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    if !ok_value {
        return Err(format!("bad value {value:?} in {line:?}"));
    }
    if let Some(ts) = parts.next() {
        ts.parse::<f64>()
            .map_err(|_| format!("bad timestamp in {line:?}"))?;
    }
    Ok(())
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let b = Broker::start();
    // Some traffic first, so counters exist.
    let (mut c, _) = RawClient::v3(b.mqtt_port, "metrics-client", true);
    c.subscribe("metrics/t", QoS::AtLeastOnce);
    c.publish("metrics/t", b"x", QoS::AtLeastOnce, false);
    c.expect_publish(WAIT);
    let (status, body) = http_get(b.http_port, "/metrics", WAIT).expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE "), "no # TYPE lines:\n{body}");
    let samples: Vec<&str> = body
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!samples.is_empty(), "no samples:\n{body}");
    for l in samples {
        if let Err(e) = check_sample_line(l) {
            panic!("{e}\nfull body:\n{body}");
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------

fn assert_rejected(toml: &str, key: &str) {
    let (status, log) = Broker::run_expecting_exit(toml, Duration::from_secs(15));
    match status {
        Some(st) => assert!(
            !st.success(),
            "config {toml:?} accepted (exit 0); log:\n{log}"
        ),
        None => panic!("config {toml:?} accepted: the broker kept running; log:\n{log}"),
    }
    assert!(
        log.contains(key),
        "the error for {toml:?} does not name {key:?}; log:\n{log}"
    );
}

#[test]
fn unknown_config_key_fails_startup_naming_the_key() {
    assert_rejected("no_such_option = 1\n", "no_such_option");
}

#[test]
fn config_value_of_the_wrong_type_fails_startup_naming_the_key() {
    for (toml, key) in [
        (
            "max_inflight_messages = \"lots\"\n",
            "max_inflight_messages",
        ),
        ("allow_anonymous = \"maybe\"\n", "allow_anonymous"),
        ("retry_interval = \"often\"\n", "retry_interval"),
        ("systree_enabled = 3\n", "systree_enabled"),
    ] {
        assert_rejected(toml, key);
    }
}

#[test]
fn config_value_out_of_range_fails_startup_naming_the_key() {
    for (toml, key) in [
        ("max_client_id_size = -5\n", "max_client_id_size"),
        ("receive_max_broker = 70000\n", "receive_max_broker"),
        ("topic_alias_max_broker = -1\n", "topic_alias_max_broker"),
    ] {
        assert_rejected(toml, key);
    }
}

#[test]
fn invalid_duration_values_fail_startup_naming_the_key() {
    assert_rejected(
        "persistent_client_expiration = \"soon\"\n",
        "persistent_client_expiration",
    );
    assert_rejected(
        "max_last_will_delay = \"sometimes\"\n",
        "max_last_will_delay",
    );
}

#[test]
fn unparsable_toml_fails_startup() {
    let (status, log) =
        Broker::run_expecting_exit("allow_anonymous = = true\n", Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| !s.success()),
        "broken TOML accepted ({status:?}); log:\n{log}"
    );
}

#[test]
fn all_documented_config_keys_are_accepted() {
    let b = Broker::start_with_config(
        r#"
allow_anonymous = true
max_client_id_size = 64
max_message_size = 0
max_packet_size = 1048576
max_inflight_messages = 20
max_online_messages = 1000
max_offline_messages = -1
retry_interval = 20
persistent_client_expiration = "2d"
topic_alias_max_broker = 16
topic_alias_max_client = 16
receive_max_broker = 100
server_keep_alive = 0
suppress_lwt_on_session_takeover = false
max_last_will_delay = "never"
systree_enabled = true
systree_interval = 20000

[users]
alice = "secret"
"#,
    );
    let (mut c, _) = RawClient::v3(b.mqtt_port, "all-keys", true);
    c.ping();
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

const AUTH_CONFIG: &str = "allow_anonymous = false\n[users]\nalice = \"secret\"\n";

fn with_credentials(mut c: Connect, user: Option<&str>, pass: Option<&str>) -> Connect {
    c.username = user.map(str::to_string);
    c.password = pass.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    c
}

#[test]
fn anonymous_client_is_refused_when_allow_anonymous_is_false() {
    let b = Broker::start_with_config(AUTH_CONFIG);
    let (mut c, ack) = RawClient::connect(b.mqtt_port, Protocol::V311, v3_connect("anon", true));
    // 3.1.1 return code 5 (not authorized) or 4 (bad user name or password),
    // reported by the codec as 0x87 / 0x86.
    assert!(matches!(ack.code, 0x86 | 0x87), "{ack:?}");
    c.expect_closed(WAIT);
}

#[test]
fn v5_anonymous_client_is_refused_when_allow_anonymous_is_false() {
    let b = Broker::start_with_config(AUTH_CONFIG);
    let (mut c, ack) =
        RawClient::connect(b.mqtt_port, Protocol::V5, v5_connect("anon5", true, None));
    assert!(matches!(ack.code, 0x86 | 0x87), "{ack:?}");
    c.expect_closed(WAIT);
}

#[test]
fn configured_user_with_the_right_password_is_accepted() {
    let b = Broker::start_with_config(AUTH_CONFIG);
    let conn = with_credentials(v3_connect("alice-c", true), Some("alice"), Some("secret"));
    let (mut c, ack) = RawClient::connect(b.mqtt_port, Protocol::V311, conn);
    assert_eq!(ack.code, 0, "{ack:?}");
    c.ping();
}

#[test]
fn wrong_password_is_refused() {
    let b = Broker::start_with_config(AUTH_CONFIG);
    let conn = with_credentials(v3_connect("mallory", true), Some("alice"), Some("guess"));
    let (mut c, ack) = RawClient::connect(b.mqtt_port, Protocol::V311, conn);
    assert!(matches!(ack.code, 0x86 | 0x87), "{ack:?}");
    c.expect_closed(WAIT);
}

#[test]
fn unknown_user_is_refused() {
    let b = Broker::start_with_config(AUTH_CONFIG);
    let conn = with_credentials(v5_connect("bob-c", true, None), Some("bob"), Some("secret"));
    let (mut c, ack) = RawClient::connect(b.mqtt_port, Protocol::V5, conn);
    assert!(matches!(ack.code, 0x86 | 0x87), "{ack:?}");
    c.expect_closed(WAIT);
}

// ---------------------------------------------------------------------------
// Client id size
// ---------------------------------------------------------------------------

#[test]
fn client_id_of_100_characters_is_accepted_and_101_refused_by_default() {
    let b = Broker::start();
    let (_c, ack) = RawClient::connect(
        b.mqtt_port,
        Protocol::V311,
        v3_connect(&"a".repeat(100), true),
    );
    assert_eq!(ack.code, 0, "{ack:?}");
    let (mut c, ack) = RawClient::connect(
        b.mqtt_port,
        Protocol::V311,
        v3_connect(&"b".repeat(101), true),
    );
    assert_eq!(ack.code, 0x85, "identifier rejected expected: {ack:?}");
    c.expect_closed(WAIT);
}

#[test]
fn client_id_longer_than_max_client_id_size_is_refused() {
    let b = Broker::start_with_config("max_client_id_size = 10\n");
    let (_c, ack) = RawClient::connect(
        b.mqtt_port,
        Protocol::V5,
        v5_connect("0123456789", true, None),
    );
    assert_eq!(ack.code, 0, "{ack:?}");
    let (mut c, ack) = RawClient::connect(
        b.mqtt_port,
        Protocol::V5,
        v5_connect("0123456789x", true, None),
    );
    assert_eq!(ack.code, 0x85, "{ack:?}");
    c.expect_closed(WAIT);
}

// ---------------------------------------------------------------------------
// Message and queue limits
// ---------------------------------------------------------------------------

#[test]
fn payload_above_max_message_size_is_not_delivered() {
    let b = Broker::start_with_config("max_message_size = 100\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "mms-sub", true);
    s.subscribe("mms/t", QoS::AtLeastOnce);
    let (mut big, _) = RawClient::v3(b.mqtt_port, "mms-big", true);
    let mut m = publish_packet("mms/t", QoS::AtLeastOnce, &[b'x'; 101]);
    m.packet_id = 1;
    let _ = big.try_send(&Packet::Publish(m));
    // Whatever happens to the sender (refused ack or disconnect), the
    // message is not routed; an allowed one after it is.
    let (mut ok, _) = RawClient::v3(b.mqtt_port, "mms-ok", true);
    ok.publish("mms/t", &[b'y'; 100], QoS::AtLeastOnce, false);
    let got = s.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(
        got.len(),
        1,
        "{:?}",
        got.iter().map(|p| p.payload.len()).collect::<Vec<_>>()
    );
    assert_eq!(got[0].payload.len(), 100);
}

fn publish_n(b: &Broker, topic: &str, n: usize) {
    let (mut p, _) = RawClient::v3(b.mqtt_port, &unique("pub"), true);
    for i in 0..n {
        p.publish(topic, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
}

#[test]
fn a_persistent_subscriber_that_falls_behind_is_fed_from_disk_and_misses_nothing() {
    // 2,000 messages wait for a subscriber that acknowledges none of them:
    // more than its window (20) and its connection's read-ahead (512). The
    // excess stays on disk and is read back, in order, as it acknowledges.
    let b = Broker::start();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "behind", false);
    s.subscribe("behind/t", QoS::AtLeastOnce);
    publish_n(&b, "behind/t", 2000);
    let mut got = Vec::new();
    while got.len() < 2000 {
        let p = s.expect_publish(WAIT);
        s.ack(&p);
        got.push(p);
    }
    let want: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
    assert_eq!(payloads(&got), want);
    s.expect_no_publish(QUIET);
}

#[test]
fn a_queue_larger_than_one_read_in_bytes_is_delivered_whole() {
    // 300 messages of 8 KiB wait for an offline session: 2.4 MB, more than
    // one read from disk takes (1 MiB), in fewer items than a read's 256.
    let b = Broker::start();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "bytes-deep", false);
    s.subscribe("bytes/t", QoS::AtLeastOnce);
    s.disconnect();
    let (mut p, _) = RawClient::v3(b.mqtt_port, &unique("pub"), true);
    for i in 0..300 {
        let mut payload = format!("{i}:").into_bytes();
        payload.resize(8 * 1024, b'x');
        p.publish("bytes/t", &payload, QoS::AtLeastOnce, false);
    }
    let (mut s, _) = RawClient::v3(b.mqtt_port, "bytes-deep", false);
    let mut got = Vec::new();
    while got.len() < 300 {
        let m = s.expect_publish(WAIT);
        s.ack(&m);
        let text = String::from_utf8_lossy(&m.payload).to_string();
        got.push(text.split(':').next().unwrap_or_default().to_string());
    }
    let want: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    s.expect_no_publish(QUIET);
}

#[test]
fn max_inflight_messages_limits_unacked_outgoing_messages() {
    let b = Broker::start_with_config("max_inflight_messages = 3\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "mif-sub", true);
    s.subscribe("mif/t", QoS::AtLeastOnce);
    publish_n(&b, "mif/t", 6);
    let first: Vec<Publish> = (0..3).map(|_| s.expect_publish(WAIT)).collect();
    s.expect_no_publish(QUIET);
    s.ack(&first[0]);
    let fourth = s.expect_publish(WAIT);
    s.expect_no_publish(QUIET);
    assert_eq!(
        payloads(&[first[0].clone(), first[1].clone(), first[2].clone(), fourth]),
        vec!["0", "1", "2", "3"]
    );
}

#[test]
fn max_inflight_messages_zero_means_no_limit() {
    let b = Broker::start_with_config("max_inflight_messages = 0\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "mif0-sub", true);
    s.subscribe("mif0/t", QoS::AtLeastOnce);
    publish_n(&b, "mif0/t", 40);
    let got: Vec<Publish> = (0..40).map(|_| s.expect_publish(WAIT)).collect();
    let want: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    assert_eq!(payloads(&got), want, "all 40 unacked at once");
}

#[test]
fn max_online_messages_drops_messages_beyond_inflight_and_queue() {
    let b = Broker::start_with_config("max_inflight_messages = 1\nmax_online_messages = 2\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "mom-sub", true);
    s.subscribe("mom/t", QoS::AtLeastOnce);
    publish_n(&b, "mom/t", 10);
    let first = s.expect_publish(WAIT);
    s.ack(&first);
    let rest = s.collect_publishes(10, Duration::from_millis(1500));
    let mut all = vec![first];
    all.extend(rest);
    assert_eq!(
        payloads(&all),
        vec!["0", "1", "2"],
        "1 in flight + 2 queued; the rest dropped"
    );
}

#[test]
fn max_offline_messages_drops_the_excess_for_an_offline_session() {
    let b = Broker::start_with_config("max_offline_messages = 3\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "mofl", false);
    s.subscribe("mofl/t", QoS::AtLeastOnce);
    s.disconnect();
    publish_n(&b, "mofl/t", 10);
    let (mut s, ack) = RawClient::v3(b.mqtt_port, "mofl", false);
    assert!(ack.session_present);
    let got = s.collect_publishes(10, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["0", "1", "2"]);
}

#[test]
fn max_offline_messages_minus_one_is_unlimited() {
    let b = Broker::start_with_config("max_offline_messages = -1\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "mofl-inf", false);
    s.subscribe("moflinf/t", QoS::AtLeastOnce);
    s.disconnect();
    publish_n(&b, "moflinf/t", 60);
    let (mut s, _) = RawClient::v3(b.mqtt_port, "mofl-inf", false);
    let got = s.collect_publishes(60, WAIT);
    assert_eq!(got.len(), 60);
}

#[test]
fn retry_interval_resends_an_unacked_message_with_dup() {
    let b = Broker::start_with_config("retry_interval = 1\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "retry-sub", true);
    s.subscribe("retry/t", QoS::AtLeastOnce);
    publish_n(&b, "retry/t", 1);
    let first = s.expect_publish(WAIT);
    assert!(!first.dup);
    let t0 = Instant::now();
    let again = s.expect_publish(Duration::from_secs(4));
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "resent too early: {:?}",
        t0.elapsed()
    );
    assert!(again.dup, "{again:?}");
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(&again.payload[..], b"0");
}

#[test]
fn persistent_client_expiration_keeps_a_recently_disconnected_session() {
    let b = Broker::start_with_config("persistent_client_expiration = \"1h\"\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "pce", false);
    s.subscribe("pce/t", QoS::AtLeastOnce);
    s.disconnect();
    let (_s, ack) = RawClient::v3(b.mqtt_port, "pce", false);
    assert!(ack.session_present);
}

#[test]
fn persistent_client_expiration_removes_an_expired_offline_session() {
    let b = Broker::start_with_config("persistent_client_expiration = \"2s\"\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "pce-exp", false);
    s.subscribe("pce/exp", QoS::AtLeastOnce);
    s.disconnect();
    // Let the 2 s pass (with margin); reconnecting earlier would resume it.
    std::thread::sleep(Duration::from_millis(3500));
    let (_s, ack) = RawClient::v3(b.mqtt_port, "pce-exp", false);
    assert!(
        !ack.session_present,
        "offline session should have expired: {ack:?}"
    );
}

// ---------------------------------------------------------------------------
// MQTT 5 limits from the config
// ---------------------------------------------------------------------------

#[test]
fn receive_max_broker_is_advertised_in_connack() {
    let b = Broker::start_with_config("receive_max_broker = 7\n");
    let (_c, ack) = RawClient::v5(b.mqtt_port, "rmb", true, None);
    assert_eq!(ack.properties.receive_maximum, Some(7));
}

#[test]
fn topic_alias_max_broker_is_advertised_in_connack() {
    let b = Broker::start_with_config("topic_alias_max_broker = 2\n");
    let (_c, ack) = RawClient::v5(b.mqtt_port, "tamb", true, None);
    assert_eq!(ack.properties.topic_alias_maximum, Some(2));
}

#[test]
fn topic_alias_above_topic_alias_max_broker_gets_disconnect_0x94() {
    let b = Broker::start_with_config("topic_alias_max_broker = 2\n");
    let (mut c, _) = RawClient::v5(b.mqtt_port, "tamb-x", true, None);
    let mut m = publish_packet("tamb/t", QoS::AtMostOnce, b"x");
    m.properties.topic_alias = Some(2);
    c.send(&Packet::Publish(m)); // allowed
    let mut m = publish_packet("tamb/t", QoS::AtMostOnce, b"x");
    m.properties.topic_alias = Some(3);
    c.send(&Packet::Publish(m));
    c.expect_disconnect(0x94, WAIT);
}

fn alias_subscriber(b: &Broker, id: &str, client_max: u16) -> RawClient {
    let mut conn = v5_connect(id, true, None);
    conn.properties.topic_alias_maximum = Some(client_max);
    let (mut s, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, conn);
    s.subscribe("tamc/#", QoS::AtLeastOnce);
    s
}

#[test]
fn topic_alias_max_client_zero_disables_topic_aliases_towards_clients() {
    let b = Broker::start_with_config("topic_alias_max_client = 0\n");
    let mut s = alias_subscriber(&b, "tamc0", 10);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "tamc0-pub", true);
    for _ in 0..3 {
        p.publish("tamc/a", b"x", QoS::AtLeastOnce, false);
    }
    let got = s.collect_publishes(3, WAIT);
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|m| m.properties.topic_alias.is_none() && m.topic == "tamc/a"),
        "{got:?}"
    );
}

#[test]
fn topic_alias_max_client_limits_the_alias_values_used() {
    let b = Broker::start_with_config("topic_alias_max_client = 1\n");
    let mut s = alias_subscriber(&b, "tamc1", 10);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "tamc1-pub", true);
    let topics = ["tamc/a", "tamc/b", "tamc/c", "tamc/a", "tamc/b", "tamc/c"];
    for t in topics {
        p.publish(t, t.as_bytes(), QoS::AtLeastOnce, false);
    }
    let got = s.collect_publishes(6, WAIT);
    assert_eq!(got.len(), 6);
    for (m, want) in got.iter().zip(topics) {
        assert_eq!(s.resolved_topic(m), want);
        if let Some(a) = m.properties.topic_alias {
            assert_eq!(a, 1, "alias {a} above topic_alias_max_client = 1");
        }
    }
}

// ---------------------------------------------------------------------------
// Wills
// ---------------------------------------------------------------------------

fn takeover_with_will(b: &Broker, watch_topic: &str) -> RawClient {
    let (mut w, _) = RawClient::v3(b.mqtt_port, &unique("watch"), true);
    w.subscribe(watch_topic, QoS::AtLeastOnce);
    let mut conn = v3_connect("lwt-takeover", false);
    conn.will = Some(will(watch_topic, b"will", QoS::AtLeastOnce, false));
    let (mut old, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V311, conn);
    let (_new, _) = RawClient::v3(b.mqtt_port, "lwt-takeover", false);
    old.expect_closed(WAIT);
    w
}

#[test]
fn will_is_published_on_session_takeover_by_default() {
    let b = Broker::start();
    let mut w = takeover_with_will(&b, "lwt/default");
    assert_eq!(&w.expect_publish(WAIT).payload[..], b"will");
}

#[test]
fn suppress_lwt_on_session_takeover_suppresses_the_will() {
    let b = Broker::start_with_config("suppress_lwt_on_session_takeover = true\n");
    let mut w = takeover_with_will(&b, "lwt/suppressed");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "lwt-marker", true);
    p.publish("lwt/suppressed", b"marker", QoS::AtLeastOnce, false);
    let got = w.collect_publishes(2, Duration::from_millis(1500));
    assert_eq!(payloads(&got), vec!["marker"]);
}

#[test]
fn max_last_will_delay_caps_the_will_delay_interval() {
    let b = Broker::start_with_config("max_last_will_delay = 1\n");
    let (mut w, _) = RawClient::v3(b.mqtt_port, "mlwd-watch", true);
    w.subscribe("mlwd/t", QoS::AtLeastOnce);
    let mut conn = v5_connect("mlwd", true, Some(3600));
    let mut wl = will("mlwd/t", b"capped", QoS::AtLeastOnce, false);
    wl.properties.delay_interval = Some(3600);
    conn.will = Some(wl);
    let (c, _) = RawClient::connect_ok(b.mqtt_port, Protocol::V5, conn);
    c.drop_connection();
    let m = w.expect_publish(Duration::from_secs(5));
    assert_eq!(&m.payload[..], b"capped");
}

// ---------------------------------------------------------------------------
// $SYS
// ---------------------------------------------------------------------------

const SYS_METRICS: [&str; 6] = [
    "uptime",
    "clients/connected",
    "messages/received",
    "messages/sent",
    "bytes/received",
    "bytes/sent",
];

/// Collects $SYS/1/... values until `done` says so (bounded).
fn sys_values(
    s: &mut RawClient,
    timeout: Duration,
    mut done: impl FnMut(&HashMap<String, u64>) -> bool,
) -> HashMap<String, u64> {
    let deadline = Instant::now() + timeout;
    let mut seen = HashMap::new();
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.recv(left) {
            Recv::Packet(Packet::Publish(p)) => {
                let text = String::from_utf8_lossy(&p.payload).into_owned();
                let key = p
                    .topic
                    .strip_prefix("$SYS/1/")
                    .unwrap_or_else(|| panic!("$SYS topic outside $SYS/1/: {}", p.topic))
                    .to_string();
                if SYS_METRICS.contains(&key.as_str()) {
                    let v: u64 = text
                        .trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{} is not decimal text: {text:?}", p.topic));
                    seen.insert(key, v);
                }
            }
            Recv::Packet(_) => {}
            other => panic!("$SYS values incomplete ({other:?}); seen: {seen:?}"),
        }
    }
    seen
}

#[test]
fn systree_publishes_every_metric_for_the_node() {
    let b = Broker::start_with_config(&format!("systree_interval = 200\n{SYS_READER}"));
    let (mut s, _) = RawClient::v3_sys(b.mqtt_port, "sys-all");
    s.subscribe("$SYS/1/#", QoS::AtMostOnce);
    // Values may be a snapshot from before this client connected; a later
    // one must count it.
    sys_values(&mut s, WAIT, |m| {
        SYS_METRICS.iter().all(|k| m.contains_key(*k))
            && m.get("clients/connected").is_some_and(|&n| n >= 1)
    });
}

#[test]
fn systree_clients_connected_counts_connected_clients() {
    let b = Broker::start_with_config(&format!("systree_interval = 200\n{SYS_READER}"));
    let (mut s, _) = RawClient::v3_sys(b.mqtt_port, "sys-cc");
    s.subscribe("$SYS/1/clients/connected", QoS::AtMostOnce);
    let _a = RawClient::v3(b.mqtt_port, "sys-cc-a", true);
    let _b = RawClient::v5(b.mqtt_port, "sys-cc-b", true, None);
    sys_values(&mut s, WAIT, |m| m.get("clients/connected") == Some(&3));
}

#[test]
fn systree_messages_received_counts_published_messages() {
    let b = Broker::start_with_config(&format!("systree_interval = 200\n{SYS_READER}"));
    let (mut s, _) = RawClient::v3_sys(b.mqtt_port, "sys-mr");
    s.subscribe("$SYS/1/messages/received", QoS::AtMostOnce);
    publish_n(&b, "sys/traffic", 7);
    sys_values(&mut s, WAIT, |m| {
        m.get("messages/received").is_some_and(|&v| v >= 7)
    });
}

#[test]
fn systree_bytes_received_grows_with_traffic() {
    let b = Broker::start_with_config(&format!("systree_interval = 200\n{SYS_READER}"));
    let (mut s, _) = RawClient::v3_sys(b.mqtt_port, "sys-br");
    s.subscribe("$SYS/1/bytes/received", QoS::AtMostOnce);
    let before = sys_values(&mut s, WAIT, |m| m.contains_key("bytes/received"))["bytes/received"];
    let (mut p, _) = RawClient::v3(b.mqtt_port, "sys-br-pub", true);
    p.publish("sys/bytes", &[0u8; 5000], QoS::AtLeastOnce, false);
    sys_values(&mut s, WAIT, |m| {
        m.get("bytes/received").is_some_and(|&v| v >= before + 5000)
    });
}

#[test]
fn systree_interval_sets_the_publish_period() {
    let b = Broker::start_with_config(&format!("systree_interval = 300\n{SYS_READER}"));
    let (mut s, _) = RawClient::v3_sys(b.mqtt_port, "sys-period");
    s.subscribe("$SYS/1/uptime", QoS::AtMostOnce);
    let mut at = Vec::new();
    for _ in 0..4 {
        s.expect_publish(WAIT);
        at.push(Instant::now());
    }
    for w in at.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(150) && gap <= Duration::from_millis(1000),
            "uptime published {gap:?} apart with systree_interval = 300 ms"
        );
    }
}

#[test]
fn systree_disabled_publishes_nothing() {
    let b = Broker::start_with_config(&format!(
        "systree_enabled = false\nsystree_interval = 100\n{SYS_READER}"
    ));
    let (mut s, _) = RawClient::v3_sys(b.mqtt_port, "sys-off");
    s.subscribe("$SYS/#", QoS::AtMostOnce);
    s.expect_no_publish(Duration::from_millis(1000));
}

fn metric(b: &Broker, name: &str) -> u64 {
    let (status, text) = http_get(b.http_port, "/metrics", WAIT).expect("GET /metrics");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not in /metrics:\n{text}"))
}

#[test]
fn snapshots_keep_the_log_bounded_and_state_survives_restart() {
    let mut b = Broker::start_with_config("snapshot_interval_entries = 100\n");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "snap-pub", true);
    p.publish("snap/retained", b"kept", QoS::AtLeastOnce, true);
    // Serial QoS 1 publishes: each is its own log entry.
    for i in 0..600 {
        p.publish("snap/x", format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let applied = metric(&b, "raftmq_raft_last_applied");
    assert!(applied >= 600, "applied {applied}");
    // The snapshot policy looks every 100 ms, and builds in the background.
    let purged = wait_until(Duration::from_secs(5), || {
        metric(&b, "raftmq_raft_snapshot_index") >= 400
            && metric(&b, "raftmq_raft_log_entries") <= 300
    });
    let (index, in_log) = (
        metric(&b, "raftmq_raft_snapshot_index"),
        metric(&b, "raftmq_raft_log_entries"),
    );
    assert!(purged, "snapshot at {index}, {in_log} entries in the log");
    assert!(b.data_dir().join("snapshot.bin").exists());
    b.kill9();
    b.restart();
    let (mut s, _) = RawClient::v3(b.mqtt_port, "snap-sub", true);
    s.subscribe("snap/#", QoS::AtLeastOnce);
    let m = s.expect_publish(WAIT);
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("snap/retained", &b"kept"[..])
    );
}
