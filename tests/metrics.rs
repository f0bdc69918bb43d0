//! Metrics as an operator reads them: reason-code labels that move for
//! refused logins, counters typed as counters, latency histograms that move
//! with traffic, one count for every dropped message, `$SYS` carrying every
//! series, `raftmq metrics show`, and the Raft view of a cluster.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

const AUTH_CONFIG: &str = "allow_anonymous = false\n[users]\nalice = \"secret\"\n";

/// `/metrics` of the node at `http_port`.
fn scrape(http_port: u16) -> String {
    let (status, text) = http_get(http_port, "/metrics", WAIT).expect("GET /metrics");
    assert_eq!(status, 200);
    text
}

/// The value of one series (name with its labels as rendered), 0 if absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn metric(b: &Broker, series: &str) -> f64 {
    value(&scrape(b.http_port), series)
}

/// `# TYPE` of every family.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

fn wrong_password(proto: Protocol, client_id: &str) -> Connect {
    let mut c = match proto {
        Protocol::V5 => v5_connect(client_id, true, None),
        _ => v3_connect(client_id, true),
    };
    c.username = Some("alice".into());
    c.password = Some(Bytes::from_static(b"guess"));
    c
}

const BAD_LOGIN: &str = "raftmq_mqtt_connack_sent_total{reason_code=\"bad_user_name_or_password\"}";

/// Refuses `n` logins with a wrong password over `proto`; returns how much
/// `connack_sent{bad_user_name_or_password}` moved.
fn refused_logins_move_connack_sent(proto: Protocol, n: usize) -> f64 {
    let b = Broker::start_with_config(AUTH_CONFIG);
    let before = metric(&b, BAD_LOGIN);
    for i in 0..n {
        let (mut c, ack) = RawClient::connect(
            b.mqtt_port,
            proto,
            wrong_password(proto, &format!("bad-{i}")),
        );
        assert_eq!(ack.code, 0x86, "bad user name or password: {ack:?}");
        c.expect_closed(WAIT);
    }
    let after = metric(&b, BAD_LOGIN);
    assert_eq!(
        metric(
            &b,
            "raftmq_mqtt_connack_sent_total{reason_code=\"success\"}"
        ),
        0.0,
        "no login succeeded"
    );
    after - before
}

#[test]
fn refused_mqtt_311_logins_move_connack_sent_by_reason_code_once_each() {
    assert_eq!(refused_logins_move_connack_sent(Protocol::V311, 3), 3.0);
}

#[test]
fn refused_mqtt_5_logins_move_connack_sent_by_reason_code_once_each() {
    assert_eq!(refused_logins_move_connack_sent(Protocol::V5, 3), 3.0);
}

#[test]
fn an_anonymous_login_refused_is_counted_as_not_authorized() {
    let b = Broker::start_with_config(AUTH_CONFIG);
    let (mut c, ack) =
        RawClient::connect(b.mqtt_port, Protocol::V5, v5_connect("anon", true, None));
    assert_eq!(ack.code, 0x87, "{ack:?}");
    c.expect_closed(WAIT);
    assert_eq!(
        metric(
            &b,
            "raftmq_mqtt_connack_sent_total{reason_code=\"not_authorized\"}"
        ),
        1.0
    );
}

#[test]
fn ever_growing_counts_are_typed_counter_with_a_total_suffix() {
    let b = Broker::start();
    // Labelled families appear with their first sample.
    let (mut p, _) = RawClient::v3(b.mqtt_port, "types-pub", true);
    p.publish("types/t", b"x", QoS::AtLeastOnce, false);
    let text = scrape(b.http_port);
    let t = types(&text);
    // The ten counts /metrics used to declare as gauges, and the new
    // packet counters.
    for name in [
        "raftmq_retransmits",
        "raftmq_wills_published",
        "raftmq_sessions_expired",
        "raftmq_raft_entries_proposed",
        "raftmq_raft_commands_proposed",
        "raftmq_raft_batches_forwarded",
        "raftmq_raft_batches_resent",
        "raftmq_raft_duplicate_commands",
        "raftmq_peer_connects",
        "raftmq_peer_refused",
        "raftmq_mqtt_connack_sent",
        "raftmq_mqtt_publish_received",
        "raftmq_queue_message_drop",
        "raftmq_raft_leader_changes",
    ] {
        assert_eq!(t.get(name).map(String::as_str), Some("counter"), "{name}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = t
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("{name} has no # TYPE"));
        let total = name.ends_with("_total");
        assert_eq!(
            t[family] == "counter",
            total,
            "{line}: a {} named {name}",
            t[family]
        );
    }
}

#[test]
fn qos1_publishes_move_the_commit_fsync_and_apply_histograms() {
    let b = Broker::start();
    let (mut p, _) = RawClient::v3(b.mqtt_port, "hist-pub", true);
    p.publish("hist/warm", b"x", QoS::AtLeastOnce, false);
    let before = scrape(b.http_port);
    // Each waits for its PUBACK, so each is a batch of its own.
    for i in 0..10 {
        p.publish("hist/t", format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let after = scrape(b.http_port);
    for h in [
        "raftmq_raft_commit_seconds",
        "raftmq_raft_wal_fsync_seconds",
        "raftmq_raft_apply_batch_seconds",
        "raftmq_raft_apply_batch_entries",
    ] {
        assert_eq!(types(&after).get(h).map(String::as_str), Some("histogram"));
        let count = |t: &str| value(t, &format!("{h}_count"));
        assert!(
            count(&after) - count(&before) >= 10.0,
            "{h}_count moved by {} for 10 QoS 1 publishes",
            count(&after) - count(&before)
        );
        assert_eq!(
            value(&after, &format!("{h}_bucket{{le=\"+Inf\"}}")),
            count(&after),
            "{h}: the +Inf bucket holds every observation"
        );
        assert!(value(&after, &format!("{h}_sum")) > 0.0, "{h}_sum");
    }
}

#[test]
fn a_message_dropped_by_the_offline_limit_is_counted_once_in_queue_message_drop() {
    let b = Broker::start_with_config("max_offline_messages = 2\n");
    let (mut s, _) = RawClient::v3(b.mqtt_port, "drop-sub", false);
    s.subscribe("drop/t", QoS::AtLeastOnce);
    // Returns once the broker closed the connection, which it does after
    // the disconnect is committed: the session is offline from here on.
    s.disconnect();
    let (mut p, _) = RawClient::v3(b.mqtt_port, "drop-pub", true);
    for i in 0..5 {
        p.publish("drop/t", format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let text = scrape(b.http_port);
    assert_eq!(
        value(
            &text,
            "raftmq_queue_message_drop_total{reason=\"offline_limit\"}"
        ),
        3.0
    );
    let dropped: f64 = text
        .lines()
        .filter(|l| l.starts_with("raftmq_queue_message_drop_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(dropped, 3.0, "no drop is counted under two reasons");
    assert!(
        !text.contains("raftmq_publishes_dropped") && !text.contains("raftmq_queue_limit_drops"),
        "the old drop counters are gone"
    );
}

/// The `$SYS` topic of a `/metrics` sample line, as docs/metrics.md specifies
/// it: no `raftmq_` prefix, a counter's `_total` dropped, `_` as a level,
/// then each label value as one more level. `None` for histogram buckets.
fn sys_topic_of(line: &str, types: &BTreeMap<String, String>) -> Option<String> {
    let (series, _) = line.rsplit_once(' ')?;
    let (name, labels) = match series.split_once('{') {
        Some((n, l)) => (n, l.trim_end_matches('}')),
        None => (series, ""),
    };
    let family = types
        .keys()
        .filter(|f| name.starts_with(f.as_str()))
        .max_by_key(|f| f.len())?;
    if types[family] == "histogram" && name.ends_with("_bucket") {
        return None;
    }
    let mut short = name.strip_prefix("raftmq_")?;
    if types[family] == "counter" {
        short = short.strip_suffix("_total")?;
    }
    let mut topic = short.replace('_', "/");
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (_, v) = pair.split_once('=')?;
        topic.push('/');
        topic.push_str(&v.trim_matches('"').replace(['/', '+', '#'], "_"));
    }
    Some(topic)
}

#[test]
fn sys_carries_a_topic_for_every_series_in_metrics() {
    let b = Broker::start_with_config(&format!("systree_interval = 200\n{SYS_READER}"));
    let (mut s, _) = RawClient::v3_sys(b.mqtt_port, "sys-every");
    s.subscribe("$SYS/#", QoS::AtMostOnce);
    // Some traffic, so labelled series exist.
    let (mut p, _) = RawClient::v3(b.mqtt_port, "sys-every-pub", true);
    p.publish("sys/every", b"x", QoS::AtLeastOnce, false);
    p.publish("sys/every", b"x", QoS::AtMostOnce, false);
    let text = scrape(b.http_port);
    let t = types(&text);
    let want: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| sys_topic_of(l, &t))
        .map(|topic| format!("$SYS/1/{topic}"))
        .collect();
    assert!(want.len() > 80, "{} series", want.len());
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !want.is_subset(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.recv(left) {
            Recv::Packet(Packet::Publish(m)) => {
                seen.insert(m.topic);
            }
            Recv::Packet(_) => {}
            other => {
                let missing: Vec<&String> = want.difference(&seen).collect();
                panic!("$SYS lacks {missing:?} ({other:?})");
            }
        }
    }
}

#[test]
fn metrics_show_prints_every_series_one_per_line_with_its_value() {
    let b = Broker::start();
    let (mut p, _) = RawClient::v3(b.mqtt_port, "show-pub", true);
    p.publish("show/t", b"x", QoS::AtLeastOnce, false);
    let out = b.cli(&["metrics", "show"]);
    assert!(out.status.is_some_and(|s| s.success()), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let text = scrape(b.http_port);
    let t = types(&text);
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| sys_topic_of(l, &t).is_some())
        .count();
    assert_eq!(lines.len(), series, "{}", out.stdout);
    assert!(
        lines.contains(&"counter.raftmq_mqtt_publish_received_total{qos=\"1\"} = 1"),
        "{}",
        out.stdout
    );
    let json = b.cli(&["metrics", "show", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let row = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["name"] == "raftmq_mqtt_publish_received_total" && r["labels"]["qos"] == "1")
        .expect("publish_received{qos=1}");
    assert_eq!(
        (row["type"].as_str(), row["value"].as_i64()),
        (Some("counter"), Some(1))
    );
}

#[test]
fn the_process_and_rocksdb_are_in_metrics() {
    let b = Broker::start();
    let text = scrape(b.http_port);
    assert!(value(&text, "raftmq_process_resident_memory_bytes") > 1e6);
    assert!(value(&text, "raftmq_process_open_fds") >= 3.0);
    assert!(text.contains("\nraftmq_rocksdb_pending_compaction_bytes "));
}

#[test]
fn the_leader_reports_membership_and_each_followers_replication_lag() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(30));
    let text = scrape(c.node(leader).http_port);
    assert_eq!(value(&text, "raftmq_raft_voters"), 3.0);
    assert_eq!(value(&text, "raftmq_raft_is_leader"), 1.0);
    assert!(value(&text, "raftmq_raft_commit_index") > 0.0);
    let peers: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    for n in peers {
        assert!(
            text.contains(&format!(
                "raftmq_raft_replication_lag_entries{{peer=\"{n}\"}} "
            )),
            "lag of node {n}:\n{text}"
        );
    }
    let follower = c.follower();
    let f = scrape(c.node(follower).http_port);
    assert!(
        !f.contains("raftmq_raft_replication_lag_entries{"),
        "only the leader reports replication lag"
    );
    assert!(value(&f, "raftmq_raft_leader_changes_total") >= 1.0);
}
