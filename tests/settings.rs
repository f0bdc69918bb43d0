//! Live settings, VerneMQ style: `raftmq set` / `raftmq show` on a running
//! cluster. Cluster-wide keys change through the log on every node; a
//! node's config file supplies them only when it bootstraps the cluster;
//! per-node live keys change the node(s) named; a wrong `set` changes
//! nothing. Real binary, real MQTT clients.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// `show KEY --all` asked of `b`: (node, value, source) per row.
fn show_all(b: &Broker, key: &str) -> Vec<(u64, String, String)> {
    let (code, v) = b.api(&format!("/api/v1/show?key={key}&all=true"));
    assert_eq!(code, 200, "{v}");
    v["table"]
        .as_array()
        .expect("table")
        .iter()
        .map(|r| {
            (
                r["node"].as_u64().unwrap_or(0),
                r["value"].as_str().unwrap_or("").to_string(),
                r["source"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits until every node, asked for `show KEY --all`, lists `nodes` rows
/// all holding `value`; panics with the last answer if not.
fn wait_shown_everywhere(c: &Cluster, key: &str, value: &str, nodes: usize) {
    for asked in &c.nodes {
        let mut last = Vec::new();
        let ok = wait_until(WAIT, || {
            last = show_all(asked, key);
            last.len() == nodes && last.iter().all(|(_, v, _)| v == value)
        });
        assert!(ok, "node {} shows {key}: {last:?}", asked.node_id);
    }
}

/// A persistent QoS 1 subscriber of `topic` on `b`, offline.
fn offline_subscriber(b: &Broker, client: &str, topic: &str) {
    let (mut s, _) = RawClient::v3(b.mqtt_port, client, false);
    s.subscribe(topic, QoS::AtLeastOnce);
    s.disconnect();
}

/// Publishes `n` QoS 1 messages (each acknowledged) to `topic` through `b`.
fn publish_n(b: &Broker, topic: &str, n: usize) {
    let (mut p, _) = RawClient::v3(b.mqtt_port, &unique("pub"), true);
    for i in 0..n {
        p.publish(topic, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
}

/// How many messages the offline subscriber `client` finds on `b`.
fn queued_for(b: &Broker, client: &str) -> usize {
    let (mut s, ack) = RawClient::v3(b.mqtt_port, client, false);
    assert!(ack.session_present, "{client}: {ack:?}");
    s.collect_publishes(10, Duration::from_millis(1500)).len()
}

#[test]
fn a_cluster_wide_set_on_one_node_is_shown_and_applied_by_every_node() {
    let c = Cluster::start(3);
    offline_subscriber(c.node(1), "cw-1", "cw/t");
    offline_subscriber(c.node(3), "cw-3", "cw/t");

    let out = c.node(2).cli(&["set", "max_offline_messages=2"]);
    out.assert_success("set max_offline_messages=2 on node 2");
    assert!(out.stdout.contains("committed"), "{}", out.stdout);

    wait_shown_everywhere(&c, "max_offline_messages", "2", 3);
    for (node, _, source) in show_all(c.node(1), "max_offline_messages") {
        assert!(
            source.starts_with("set at log index"),
            "node {node}: {source}"
        );
    }
    let table = c.node(3).cli(&["show", "max_offline_messages", "--all"]);
    table.assert_success("show --all");
    let rows: Vec<&str> = table.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{}", table.stdout);
    assert!(
        rows.iter()
            .all(|r| r.contains(" 2 ") && r.contains("cluster")),
        "{}",
        table.stdout
    );

    publish_n(c.node(2), "cw/t", 5);
    assert_eq!(
        queued_for(c.node(1), "cw-1"),
        2,
        "offline session on node 1"
    );
    assert_eq!(
        queued_for(c.node(3), "cw-3"),
        2,
        "offline session on node 3"
    );
}

#[test]
fn a_node_restarted_with_a_conflicting_config_file_leaves_the_cluster_value_alone() {
    let mut c = Cluster::start(3);
    let node2 = c.node_mut(2);
    node2.set_config(Some("max_offline_messages = 2\n"));
    node2.restart();

    let log = std::fs::read_to_string(c.node(2).log_path()).unwrap_or_default();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("max_offline_messages"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, got:\n{}",
        warnings.join("\n")
    );
    let w = warnings[0];
    for part in ["file_value=\"2\"", "cluster_value=\"-1\"", "raftmq set"] {
        assert!(w.contains(part), "`{part}` missing from: {w}");
    }

    wait_shown_everywhere(&c, "max_offline_messages", "-1", 3);
    for (node, _, source) in show_all(c.node(2), "max_offline_messages") {
        assert_eq!(source, "default", "node {node}");
    }
    offline_subscriber(c.node(1), "cf-1", "cf/t");
    publish_n(c.node(2), "cf/t", 5);
    assert_eq!(
        queued_for(c.node(1), "cf-1"),
        5,
        "node 1 keeps every message"
    );
}

#[test]
fn a_per_node_live_key_set_with_node_changes_that_node_only() {
    let c = Cluster::start(3);
    c.node(1)
        .cli(&["set", "max_client_id_size=5", "--node", "2"])
        .assert_success("set max_client_id_size=5 --node 2");

    let rows = show_all(c.node(3), "max_client_id_size");
    let values: Vec<(u64, &str)> = rows.iter().map(|(n, v, _)| (*n, v.as_str())).collect();
    assert_eq!(values, [(1, "100"), (2, "5"), (3, "100")]);
    assert!(rows[1].2.starts_with("set at "), "{rows:?}");
    assert_eq!(rows[0].2, "default");

    let long = "abcdef";
    let (_, ack) = RawClient::connect(c.node(2).mqtt_port, Protocol::V311, v3_connect(long, true));
    assert_eq!(ack.code, 0x85, "node 2 refuses a 6-byte client id: {ack:?}");
    let (_, ack) = RawClient::connect(c.node(1).mqtt_port, Protocol::V311, v3_connect(long, true));
    assert_eq!(ack.code, 0, "node 1 still accepts it: {ack:?}");
}

#[test]
fn a_wrong_set_exits_non_zero_names_the_key_and_changes_nothing() {
    let b = Broker::start();
    for (args, key, why) in [
        (vec!["no_such_key=1"], "no_such_key", "unknown setting"),
        (
            vec!["max_offline_messages=lots"],
            "max_offline_messages",
            "expected an integer",
        ),
        (
            vec!["listener.tcp.default=127.0.0.1:1"],
            "listener.tcp.default",
            "restart",
        ),
        (
            vec!["max_offline_messages=3", "nope=1"],
            "nope",
            "unknown setting",
        ),
        (
            vec!["max_offline_messages=3", "--node", "1"],
            "max_offline_messages",
            "cluster-wide",
        ),
    ] {
        let mut a = vec!["set"];
        a.extend(args.iter().copied());
        let out = b.cli(&a);
        assert!(!out.success(), "{args:?} succeeded: {}", out.stdout);
        assert!(
            out.stderr.contains(&format!("`{key}`")) && out.stderr.contains(why),
            "{args:?}: {}",
            out.stderr
        );
    }
    let rows = show_all(&b, "max_offline_messages");
    assert_eq!(rows, [(1, "-1".to_string(), "default".to_string())]);
}

#[test]
fn the_readmes_listener_example_starts_a_node_on_that_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mqtt, http, cluster) = (free_port(), free_port(), free_port());
    let config = dir.path().join("raftmq.toml");
    std::fs::write(
        &config,
        format!(
            "listener.vmq.clustering = \"127.0.0.1:{cluster}\"\n\
             [listener.tcp]\ndefault = \"127.0.0.1:{mqtt}\"\n\
             [listener.http]\ndefault = \"127.0.0.1:{http}\"\n"
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(broker_bin());
    cmd.arg("start")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let mut node = BgProcess::spawn(&mut cmd);
    let healthy = wait_until(READY_TIMEOUT, || {
        matches!(http_get(http, "/health", WAIT), Ok((200, _)))
    });
    assert!(healthy, "not healthy: {}", node.kill_and_stderr());
    let (_, body) = http_get(http, "/api/v1/show?key=listener.vmq.clustering", WAIT).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["table"][0]["value"], format!("127.0.0.1:{cluster}"));
    assert_eq!(
        v["table"][0]["source"],
        format!("file {}", config.display())
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", cluster)).is_ok());
}

#[test]
fn the_bootstrap_nodes_config_file_supplies_the_cluster_wide_values() {
    let c = Cluster::start_with_config(
        3,
        Some("max_offline_messages = 2\nallow_publish_during_netsplit = \"on\"\n"),
    );
    wait_shown_everywhere(&c, "max_offline_messages", "2", 3);
    wait_shown_everywhere(&c, "allow_publish_during_netsplit", "true", 3);
    for (node, _, source) in show_all(c.node(3), "max_offline_messages") {
        assert!(
            source.starts_with("bootstrap file "),
            "node {node}: {source}"
        );
    }
    // The joining nodes' files agree with the cluster: nothing to warn of.
    for n in &c.nodes {
        let log = std::fs::read_to_string(n.log_path()).unwrap_or_default();
        assert!(
            !log.contains("differs from the cluster's"),
            "node {}",
            n.node_id
        );
    }
    offline_subscriber(c.node(3), "bs-3", "bs/t");
    publish_n(c.node(1), "bs/t", 5);
    assert_eq!(queued_for(c.node(3), "bs-3"), 2);
}

#[test]
fn sys_can_be_switched_on_and_its_interval_changed_while_the_node_runs() {
    let b = Broker::start_with_config(&format!(
        "systree_enabled = false\nsystree_interval = 60000\n{SYS_READER}"
    ));
    let (mut s, _) = RawClient::v3_sys(b.mqtt_port, "sys-watch");
    s.subscribe("$SYS/#", QoS::AtMostOnce);
    s.expect_no_publish(Duration::from_millis(600));
    b.cli(&["set", "systree_enabled=true", "systree_interval=200"])
        .assert_success("set systree_enabled=true systree_interval=200");
    let got = s.collect_publishes(1, Duration::from_secs(3));
    assert_eq!(got.len(), 1, "$SYS publishes once switched on");
    // Then every 200 ms, not every 60 s.
    let more = s.collect_publishes(100_000, Duration::from_millis(1500));
    let rounds = more
        .iter()
        .filter(|p| s.resolved_topic(p).ends_with("/uptime"))
        .count();
    assert!(rounds >= 3, "{rounds} rounds of $SYS in 1.5 s");
    b.cli(&["set", "systree_enabled=false"])
        .assert_success("set systree_enabled=false");
    let _ = s.collect_publishes(1000, Duration::from_millis(500));
    s.expect_no_publish(Duration::from_millis(800));
}
