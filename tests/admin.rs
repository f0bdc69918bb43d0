//! The admin commands as an operator uses them: `session show` with its
//! columns, filters and limit; `session disconnect` from any node;
//! `retain show` with binary payloads; unknown options and query parameters
//! refused; `status` as a table; `--help` with the defaults; `dev-cluster`
//! run again on its directory.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use raftmq::codec::reason;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// `session show --json` rows, by client id.
fn sessions(b: &Broker, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["session", "show", "--json"];
    all.extend_from_slice(args);
    let out = b.cli(&all);
    out.assert_success("session show");
    let v: Value = serde_json::from_str(&out.stdout).expect("session show --json is JSON");
    v["table"].as_array().cloned().unwrap_or_default()
}

fn row<'a>(rows: &'a [Value], client: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["client_id"] == client)
        .unwrap_or_else(|| panic!("no row for {client}: {rows:?}"))
}

#[test]
fn session_show_lists_online_node_peer_protocol_clean_expiry_queued_and_inflight() {
    let b = Broker::start();
    let (v3, _) = RawClient::v3(b.addr().port(), "show-v3", false);
    let (_v5, _) = RawClient::v5(b.addr().port(), "show-v5", true, Some(90));
    let v3_port = v3.local_port();
    let rows = sessions(&b, &[]);
    let r3 = row(&rows, "show-v3");
    assert_eq!(r3["online"], true);
    assert_eq!(r3["node"], 1);
    assert_eq!(r3["peer"], format!("127.0.0.1:{v3_port}"));
    assert_eq!(r3["protocol"], "3.1.1");
    assert_eq!(r3["clean"], false);
    assert_eq!(
        r3["expiry"], "never",
        "MQTT 3 persistent sessions never expire"
    );
    assert_eq!(r3["queued"], 0);
    assert_eq!(r3["inflight"], 0);
    let r5 = row(&rows, "show-v5");
    assert_eq!(
        (&r5["protocol"], &r5["clean"], &r5["expiry"]),
        (
            &Value::from("5.0"),
            &Value::from(true),
            &Value::from("1m30s")
        )
    );
    // The table has the same columns, and no raw 4294967295.
    let out = b.cli(&["session", "show"]);
    out.assert_success("session show");
    let header = out.stdout.lines().next().unwrap_or_default().to_string();
    for col in [
        "client_id",
        "online",
        "node",
        "peer",
        "protocol",
        "clean",
        "expiry",
        "queued",
        "inflight",
    ] {
        assert!(header.contains(col), "column {col} in {header}");
    }
    assert!(!out.stdout.contains("4294967295"), "{}", out.stdout);
}

#[test]
fn session_show_counts_what_is_queued_and_in_flight_for_a_slow_subscriber() {
    let b = Broker::start();
    let port = b.addr().port();
    let (mut s, _) = RawClient::v3(port, "slow-sub", false);
    s.subscribe("slow/#", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(port, "slow-pub", true);
    for i in 0..30 {
        p.publish("slow/x", format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    // Received, never acknowledged: the window (20) is full.
    for _ in 0..20 {
        s.expect_publish(WAIT);
    }
    s.expect_no_publish(Duration::from_millis(300));
    let rows = sessions(&b, &["--client_id", "slow-sub"]);
    let r = row(&rows, "slow-sub");
    assert_eq!(r["inflight"], 20, "{r}");
    assert_eq!(r["queued"], 30, "{r}");
}

#[test]
fn session_show_filters_by_online_and_node_and_stops_at_the_limit() {
    let b = Broker::start();
    let port = b.addr().port();
    for i in 0..5 {
        let (c, _) = RawClient::v3(port, &format!("gone-{i}"), false);
        c.disconnect();
    }
    let (_here, _) = RawClient::v3(port, "here", false);
    let ids = |rows: Vec<Value>| -> Vec<String> {
        rows.iter()
            .map(|r| r["client_id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(wait_until(WAIT, || sessions(&b, &["--is_online", "false"])
        .len()
        == 5));
    assert_eq!(ids(sessions(&b, &["--is_online", "true"])), ["here"]);
    assert_eq!(ids(sessions(&b, &["is_online=true", "node=1"])), ["here"]);
    assert!(sessions(&b, &["--node", "2"]).is_empty());
    assert_eq!(
        ids(sessions(&b, &["--limit", "2"])),
        ["gone-0", "gone-1"],
        "by client id, at most --limit"
    );
    let out = b.cli(&["session", "show", "--limit", "2"]);
    out.assert_success("session show --limit 2");
    assert!(
        out.stdout.contains("more sessions match"),
        "the table says there are more: {}",
        out.stdout
    );
}

#[test]
fn session_show_lists_100_sessions_by_default() {
    let b = Broker::start();
    let port = b.addr().port();
    for i in 0..120 {
        let (c, _) = RawClient::v3(port, &format!("many-{i:03}"), false);
        c.disconnect();
    }
    assert!(wait_until(WAIT, || sessions(&b, &["--limit", "1000"])
        .len()
        == 120));
    assert_eq!(sessions(&b, &[]).len(), 100);
}

#[test]
fn session_disconnect_from_another_node_closes_the_client_with_administrative_action() {
    let mut c = Cluster::start(3);
    let port2 = c.node(2).addr().port();
    let mut watcher = RawClient::v3(c.node(3).addr().port(), "will-watch", true).0;
    watcher.subscribe("wills/admin", QoS::AtLeastOnce);
    let mut conn = v5_connect("kicked", false, Some(600));
    conn.will = Some(LastWill {
        topic: "wills/admin".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let (mut client, _) = RawClient::connect_ok(port2, Protocol::V5, conn);
    // Node 1 sees where it is and what it is.
    let r = row(&sessions(c.node(1), &["--client_id", "kicked"]), "kicked").clone();
    assert_eq!(
        (&r["node"], &r["protocol"]),
        (&Value::from(2), &Value::from("5.0"))
    );
    assert!(
        r["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{r}"
    );
    let out = c
        .node_mut(1)
        .cli(&["session", "disconnect", "client_id=kicked"]);
    out.assert_success("session disconnect via node 1");
    client.expect_disconnect(reason::ADMINISTRATIVE_ACTION, WAIT);
    assert_eq!(
        payloads(&watcher.collect_publishes(1, WAIT)),
        vec!["gone"],
        "the will is published"
    );
    let r = row(&sessions(c.node(3), &["--client_id", "kicked"]), "kicked").clone();
    assert_eq!(r["online"], false, "the session stays, disconnected: {r}");
}

#[test]
fn session_disconnect_with_cleanup_ends_an_offline_session() {
    let b = Broker::start();
    let (mut c, _) = RawClient::v3(b.addr().port(), "to-clean", false);
    c.subscribe("clean/me", QoS::AtLeastOnce);
    c.disconnect();
    assert!(wait_until(WAIT, || sessions(&b, &["--is_online", "false"])
        .len()
        == 1));
    let without = b.cli(&["session", "disconnect", "client_id=to-clean"]);
    assert!(!without.success(), "an offline client needs --cleanup");
    assert!(without.stderr.contains("--cleanup"), "{}", without.stderr);
    let out = b.cli(&["session", "disconnect", "client_id=to-clean", "--cleanup"]);
    out.assert_success("session disconnect --cleanup");
    assert!(sessions(&b, &[]).is_empty(), "the session ended");
    let (_again, ack) = RawClient::v3(b.addr().port(), "to-clean", false);
    assert!(!ack.session_present, "nothing is left to resume");
}

#[test]
fn session_disconnect_of_an_unknown_client_fails_and_says_so() {
    let b = Broker::start();
    let out = b.cli(&["session", "disconnect", "client_id=nobody"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("no session for client `nobody`"),
        "{}",
        out.stderr
    );
}

#[test]
fn retain_show_prints_binary_payloads_as_hex_and_text_as_text() {
    let b = Broker::start();
    let (mut p, _) = RawClient::v3(b.addr().port(), "ret-pub", true);
    p.publish("bin/raw", &[0x00, 0x1b, 0xff, 0x07], QoS::AtLeastOnce, true);
    p.publish("bin/text", b"21.5 C", QoS::AtLeastOnce, true);
    let out = b.cli(&["retain", "show", "--payload", "--topic", "bin/#"]);
    out.assert_success("retain show --payload");
    assert!(out.stdout.contains("001bff07"), "{}", out.stdout);
    assert!(out.stdout.contains("21.5 C"), "{}", out.stdout);
    assert!(
        !out.stdout.contains('\u{1b}'),
        "no raw escape byte reaches the terminal"
    );
    let without = b.cli(&["retain", "show", "topic=bin/#", "--limit", "1"]);
    without.assert_success("retain show");
    assert!(!without.stdout.contains("21.5"), "payloads only on request");
    assert!(without.stdout.contains("more retained messages match"));
}

#[test]
fn unknown_query_parameters_are_refused_with_400_naming_them() {
    let b = Broker::start();
    let (code, v) = b.api("/api/v1/session/show?clientid=x");
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("clientid")),
        "{v}"
    );
    let (code, v) = b.api("/api/v1/retain/show?limit=lots");
    assert_eq!(code, 400, "{v}");
}

#[test]
fn unknown_command_options_are_errors() {
    let b = Broker::start();
    let out = b.cli(&["session", "show", "clientid=x"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("unknown option `clientid`"),
        "{}",
        out.stderr
    );
    let out = b.cli(&["retain", "show", "--bogus"]);
    assert!(!out.success());
}

#[test]
fn status_prints_a_table_and_json_on_request() {
    let b = Broker::start();
    let out = b.cli(&["status"]);
    out.assert_success("status");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("node_id") && l.trim_end().ends_with('1')),
        "{}",
        out.stdout
    );
    let out = b.cli(&["status", "--json"]);
    out.assert_success("status --json");
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["node_id"], 1);
}

#[test]
fn every_admin_command_has_help_with_its_defaults() {
    for cmd in [
        &["session", "show", "--help"][..],
        &["session", "disconnect", "--help"],
        &["retain", "show", "--help"],
        &["cluster", "show", "--help"],
        &["status", "--help"],
    ] {
        let out = run_cmd(
            std::process::Command::new(broker_bin()).args(cmd),
            Duration::from_secs(10),
        );
        out.assert_success(&cmd.join(" "));
        assert!(
            out.stdout.contains("[default: 127.0.0.1:8888]") && out.stdout.contains("--json"),
            "{}: {}",
            cmd.join(" "),
            out.stdout
        );
    }
    let out = run_cmd(
        std::process::Command::new(broker_bin()).args(["session", "show", "--help"]),
        Duration::from_secs(10),
    );
    assert!(out.stdout.contains("[default: 100]"), "{}", out.stdout);
}
