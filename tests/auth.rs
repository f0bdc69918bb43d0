//! Access control with real processes and clients: replicated users
//! (`raftmq user`), the ACL (`raftmq acl load`) in MQTT 3 and 5, `$SYS`
//! for `sys_users` only, admin API keys (`raftmq api-key`, 401 without
//! one), login timing for unknown users, and `max_message_rate`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use raftmq::codec::reason;

fn with_login(mut c: Connect, user: &str, pass: &str) -> Connect {
    c.username = Some(user.to_string());
    c.password = Some(Bytes::copy_from_slice(pass.as_bytes()));
    c
}

fn cli_ok(b: &Broker, args: &[&str]) -> String {
    let out = b.cli(args);
    out.assert_success(&format!("raftmq {}", args.join(" ")));
    out.stdout
}

/// Replicates `rules` as the ACL, through the CLI.
fn load_acl(b: &Broker, rules: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl");
    std::fs::write(&file, rules).unwrap();
    let mut args = vec!["acl", "load", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli_ok(b, &args);
}

fn v3_as(b: &Broker, client_id: &str, user: &str, pass: &str) -> RawClient {
    let c = with_login(v3_connect(client_id, true), user, pass);
    RawClient::connect_ok(b.mqtt_port, Protocol::V311, c).0
}

fn v5_as(b: &Broker, client_id: &str, user: &str, pass: &str) -> RawClient {
    let c = with_login(v5_connect(client_id, true, None), user, pass);
    RawClient::connect_ok(b.mqtt_port, Protocol::V5, c).0
}

fn suback_code(c: &mut RawClient, filter: &str) -> u8 {
    c.subscribe_with(subscribe_packet(filter, QoS::AtLeastOnce))
        .reason_codes[0]
}

const ACL: &str = "# alice owns her tree; nobody else may touch it\n\
allow user alice both users/%u/#\n\
deny all both users/#\n";

// ---------------------------------------------------------------------------
// ACL
// ---------------------------------------------------------------------------

#[test]
fn a_denied_subscription_gets_suback_failure_in_mqtt3_and_not_authorized_in_mqtt5() {
    let b = Broker::start();
    load_acl(&b, ACL, &[]);
    let (mut v3, _) = RawClient::v3(b.mqtt_port, "anon3", true);
    assert_eq!(suback_code(&mut v3, "users/alice/#"), 0x80);
    let (mut v5, _) = RawClient::v5(b.mqtt_port, "anon5", true, None);
    assert_eq!(
        suback_code(&mut v5, "users/alice/#"),
        reason::NOT_AUTHORIZED
    );
    // Other topics: acl_nomatch = allow (the default).
    assert_eq!(suback_code(&mut v5, "elsewhere/#"), 1);
}

#[test]
fn an_allowed_user_subscribes_and_receives_within_its_own_tree() {
    let b = Broker::start();
    cli_ok(&b, &["user", "add", "alice", "--password", "wonder"]);
    load_acl(&b, ACL, &[]);
    let mut alice = v5_as(&b, "alice-sub", "alice", "wonder");
    assert_eq!(suback_code(&mut alice, "users/alice/#"), 1);
    assert_eq!(
        suback_code(&mut alice, "users/bob/#"),
        reason::NOT_AUTHORIZED,
        "%u is alice's own name only"
    );
    let mut pubr = v5_as(&b, "alice-pub", "alice", "wonder");
    pubr.publish("users/alice/x", b"hi", QoS::AtLeastOnce, false);
    assert_eq!(&alice.expect_publish(WAIT).payload[..], b"hi");
}

#[test]
fn a_denied_publish_gets_puback_not_authorized_in_mqtt5_and_is_not_delivered() {
    let b = Broker::start();
    cli_ok(&b, &["user", "add", "alice", "--password", "wonder"]);
    load_acl(&b, ACL, &[]);
    let mut alice = v5_as(&b, "alice-sub", "alice", "wonder");
    alice.subscribe("users/alice/#", QoS::AtLeastOnce);
    let (mut intruder, _) = RawClient::v5(b.mqtt_port, "intruder", true, None);
    let ack = intruder
        .publish_with(publish_packet("users/alice/x", QoS::AtLeastOnce, b"forged"))
        .expect("PUBACK");
    assert_eq!(ack.reason, reason::NOT_AUTHORIZED);
    let ack = intruder
        .publish_with(publish_packet("users/alice/y", QoS::ExactlyOnce, b"forged"))
        .expect("PUBREC");
    assert_eq!(ack.reason, reason::NOT_AUTHORIZED);
    alice.expect_no_publish(Duration::from_millis(500));
}

#[test]
fn a_denied_publish_is_acknowledged_and_dropped_in_mqtt3_with_acl_deny_action_ignore() {
    let b = Broker::start();
    cli_ok(&b, &["user", "add", "alice", "--password", "wonder"]);
    load_acl(&b, ACL, &[]);
    let mut alice = v3_as(&b, "alice-sub3", "alice", "wonder");
    alice.subscribe("users/alice/#", QoS::AtLeastOnce);
    let (mut watcher, _) = RawClient::v3(b.mqtt_port, "watcher", true);
    watcher.subscribe("open/#", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "intruder3", true);
    let ack = p
        .publish_with(publish_packet("users/alice/x", QoS::AtLeastOnce, b"forged"))
        .expect("PUBACK");
    assert_eq!(ack.reason, reason::SUCCESS, "MQTT 3 has no negative PUBACK");
    // Still connected, and allowed topics still pass.
    p.publish("open/1", b"ok", QoS::AtLeastOnce, false);
    assert_eq!(&watcher.expect_publish(WAIT).payload[..], b"ok");
    alice.expect_no_publish(Duration::from_millis(500));
}

#[test]
fn acl_deny_action_disconnect_closes_a_denied_publisher_with_not_authorized() {
    let b = Broker::start_with_config("acl_deny_action = \"disconnect\"\n");
    load_acl(&b, ACL, &[]);
    let (mut v5, _) = RawClient::v5(b.mqtt_port, "bad5", true, None);
    v5.send(&Packet::Publish(publish_packet(
        "users/alice/x",
        QoS::AtMostOnce,
        b"x",
    )));
    v5.expect_disconnect(reason::NOT_AUTHORIZED, WAIT);
    let (mut v3, _) = RawClient::v3(b.mqtt_port, "bad3", true);
    v3.send(&Packet::Publish(publish_packet(
        "users/alice/x",
        QoS::AtMostOnce,
        b"x",
    )));
    v3.expect_closed(WAIT);
}

#[test]
fn a_reloaded_acl_applies_to_connected_clients_without_a_restart() {
    let b = Broker::start();
    let (mut c, _) = RawClient::v5(b.mqtt_port, "steady", true, None);
    assert_eq!(suback_code(&mut c, "plant/1"), 1);
    load_acl(&b, "deny client steady subscribe plant/#\n", &[]);
    assert_eq!(suback_code(&mut c, "plant/2"), reason::NOT_AUTHORIZED);
    load_acl(&b, "", &[]);
    assert_eq!(suback_code(&mut c, "plant/3"), 1);
    let show = cli_ok(&b, &["acl", "show", "--json"]);
    assert!(show.contains("\"rule_count\": 0"), "{show}");
}

#[test]
fn a_bad_acl_line_is_refused_and_changes_nothing() {
    let b = Broker::start();
    load_acl(&b, "deny all publish a\n", &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl");
    std::fs::write(&file, "deny all publish a\nallow nobody both b\n").unwrap();
    let out = b.cli(&["acl", "load", file.to_str().unwrap()]);
    assert!(!out.success());
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    let show = cli_ok(&b, &["acl", "show"]);
    assert_eq!(show, "deny all publish a\n");
}

#[test]
fn mosquitto_clients_are_allowed_and_denied_by_the_acl_over_mqtt_3_and_5() {
    let b = Broker::start();
    cli_ok(&b, &["user", "add", "alice", "--password", "wonder"]);
    load_acl(&b, ACL, &[]);
    let alice = ["-u", "alice", "-P", "wonder"];
    let mut sub = MosqSub::start(
        b.mqtt_port,
        &[&["-V", "5", "-q", "1", "-t", "users/alice/#"][..], &alice].concat(),
    );
    // An anonymous mosquitto_pub: MQTT 5 PUBACK 0x87 (135), MQTT 3 a plain
    // PUBACK; neither is delivered.
    let denied = mosquitto_pub(
        b.mqtt_port,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-d",
            "-t",
            "users/alice/x",
            "-m",
            "forged",
        ],
    );
    assert!(denied.stdout.contains("RC:135"), "{denied:?}");
    mosquitto_pub(
        b.mqtt_port,
        &[
            "-V",
            "311",
            "-q",
            "1",
            "-t",
            "users/alice/x",
            "-m",
            "forged3",
        ],
    )
    .assert_success("anonymous MQTT 3 publish (acknowledged, dropped)");
    mosquitto_pub(
        b.mqtt_port,
        &[
            &["-V", "311", "-q", "1", "-t", "users/alice/x", "-m", "real"][..],
            &alice,
        ]
        .concat(),
    )
    .assert_success("alice's publish");
    let got = sub.messages(2, Duration::from_millis(1500));
    let payloads: Vec<&str> = got.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(payloads, ["real"], "{}", sub.proc.describe());
    // An anonymous mosquitto_sub to alice's tree: SUBACK 0x87 (135).
    let out = run_cmd(
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &b.mqtt_port.to_string()])
            .args(["-V", "5", "-d", "-W", "2", "-t", "users/alice/#"]),
        Duration::from_secs(10),
    );
    assert!(out.stdout.contains("Subscribed (mid: 1): 135"), "{out:?}");
}

// ---------------------------------------------------------------------------
// $SYS
// ---------------------------------------------------------------------------

#[test]
fn sys_is_denied_to_an_anonymous_subscriber_and_allowed_to_a_sys_user() {
    let b = Broker::start_with_config(
        "systree_interval = 200\nsys_users = [\"ops\"]\n[users]\nops = \"ops-pw\"\n",
    );
    let (mut anon, _) = RawClient::v5(b.mqtt_port, "anon-sys", true, None);
    assert_eq!(suback_code(&mut anon, "$SYS/#"), reason::NOT_AUTHORIZED);
    anon.expect_no_publish(Duration::from_millis(600));
    let mut ops = v5_as(&b, "ops-sys", "ops", "ops-pw");
    assert_eq!(suback_code(&mut ops, "$SYS/#"), 1);
    let p = ops.expect_publish(WAIT);
    assert!(p.topic.starts_with("$SYS/1/"), "{p:?}");
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

#[test]
fn a_user_added_on_one_node_logs_in_on_another_and_once_deleted_cannot() {
    let c = Cluster::start_with_config(3, Some("allow_anonymous = false\n"));
    cli_ok(
        c.node(1),
        &["user", "add", "carol", "--password", "pw-carol"],
    );
    let login = |node: &Broker, pass: &str| {
        let connect = with_login(v5_connect("carol-c", true, None), "carol", pass);
        RawClient::connect(node.mqtt_port, Protocol::V5, connect)
            .1
            .code
    };
    assert!(
        wait_until(WAIT, || login(c.node(3), "pw-carol") == reason::SUCCESS),
        "carol cannot log in on node 3"
    );
    assert_eq!(login(c.node(2), "wrong"), reason::BAD_USER_NAME_OR_PASSWORD);
    let list = cli_ok(c.node(2), &["user", "list"]);
    assert!(list.contains("carol"), "{list}");
    cli_ok(c.node(2), &["user", "delete", "carol"]);
    assert!(
        wait_until(WAIT, || login(c.node(3), "pw-carol")
            == reason::BAD_USER_NAME_OR_PASSWORD),
        "carol still logs in on node 3 after her deletion"
    );
    let out = c.node(1).cli(&["user", "delete", "carol"]);
    assert!(!out.success() && out.stderr.contains("no user"), "{out:?}");
}

#[test]
fn a_password_file_user_logs_in_and_its_hash_comes_from_raftmq_user_hash() {
    let dir = tempfile::tempdir().unwrap();
    let hash = Command::new(broker_bin())
        .args(["user", "hash", "--password", "from-file"])
        .output()
        .unwrap();
    assert!(hash.status.success());
    let hash = String::from_utf8(hash.stdout).unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, format!("dave:{}erin:plain-erin\n", hash)).unwrap();
    let b = Broker::start_with_config(&format!(
        "allow_anonymous = false\npassword_file = {:?}\n",
        file.display().to_string()
    ));
    v5_as(&b, "dave", "dave", "from-file");
    v3_as(&b, "erin", "erin", "plain-erin");
    let refused = RawClient::connect(
        b.mqtt_port,
        Protocol::V5,
        with_login(v5_connect("x", true, None), "erin", "nope"),
    )
    .1;
    assert_eq!(refused.code, reason::BAD_USER_NAME_OR_PASSWORD);
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_wrong_password_and_an_unknown_user_get_the_same_answer_in_the_same_time() {
    let b = Broker::start();
    cli_ok(&b, &["user", "add", "frank", "--password", "right"]);
    let attempt = |user: &str| {
        let connect = with_login(v5_connect("timing", true, None), user, "wrong");
        let t = Instant::now();
        let (_, ack) = RawClient::connect(b.mqtt_port, Protocol::V5, connect);
        (t.elapsed(), ack.code)
    };
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let (t, code) = attempt("frank");
        assert_eq!(code, reason::BAD_USER_NAME_OR_PASSWORD);
        wrong.push(t);
        let (t, code) = attempt("nobody-by-this-name");
        assert_eq!(code, reason::BAD_USER_NAME_OR_PASSWORD);
        unknown.push(t);
    }
    let (w, u) = (median(&mut wrong), median(&mut unknown));
    eprintln!("login refusal medians over 20 each: wrong password {w:?}, unknown user {u:?}");
    let ratio = w.as_secs_f64() / u.as_secs_f64();
    assert!(
        (1.0 / 3.0..=3.0).contains(&ratio),
        "wrong password {w:?} vs unknown user {u:?}: an unknown user is told apart by time"
    );
}

// ---------------------------------------------------------------------------
// Admin API keys
// ---------------------------------------------------------------------------

fn raftmq(b: &Broker, args: &[&str], env: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = Command::new(broker_bin());
    cmd.args(args)
        .arg("--admin")
        .arg(format!("127.0.0.1:{}", b.http_port));
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_cmd(&mut cmd, Duration::from_secs(30))
}

#[test]
fn once_a_key_exists_an_api_call_without_it_is_refused_and_the_cli_sends_it_from_flag_env_or_file()
{
    let b = Broker::start();
    assert_eq!(b.api("/api/v1/status").0, 200, "no key yet: open");
    let key = cli_ok(&b, &["api-key", "create"]).trim().to_string();
    assert_eq!(key.len(), 64, "{key}");
    assert_eq!(b.api("/api/v1/status").0, 401);
    assert!(!b.cli(&["status"]).success());
    // /health and /metrics stay open by default.
    assert_eq!(b.api("/health").0, 200);
    assert!(raftmq(&b, &["status", "--api-key", &key], &[]).success());
    assert!(raftmq(&b, &["status"], &[("RAFTMQ_API_KEY", &key)]).success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    assert!(raftmq(
        &b,
        &["status", "--api-key-file", file.to_str().unwrap()],
        &[]
    )
    .success());
    assert!(!raftmq(&b, &["status", "--api-key", "0123456789abcdef-wrong"], &[]).success());
    // The store holds a digest: `show` never prints the key.
    let show = raftmq(&b, &["api-key", "show", "--api-key", &key], &[]);
    assert!(show.success() && !show.stdout.contains(&key), "{show:?}");
    raftmq(&b, &["api-key", "delete", &key, "--api-key", &key], &[])
        .assert_success("api-key delete");
    assert_eq!(b.api("/api/v1/status").0, 200, "no key left: open again");
}

#[test]
fn api_auth_on_closes_the_api_from_the_start_and_api_key_file_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_key");
    std::fs::write(&file, "an-operator-chosen-key-0001\n").unwrap();
    let file = file.to_str().unwrap();
    let b = Broker::start_with_config(&format!(
        "api_auth = \"on\"\nmetrics_auth = true\napi_key_file = {file:?}\n"
    ));
    assert_eq!(
        b.api("/api/v1/status").0,
        401,
        "no cluster key yet, still closed"
    );
    assert_eq!(b.api("/metrics").0, 401);
    assert_eq!(b.api("/health").0, 200, "health_auth is off");
    assert!(!b.cli(&["status"]).success());
    assert!(raftmq(&b, &["status", "--api-key-file", file], &[]).success());
    // The operator's way in adds cluster keys.
    let key = raftmq(&b, &["api-key", "create", "--api-key-file", file], &[]);
    key.assert_success("api-key create");
    assert!(raftmq(&b, &["status", "--api-key", key.stdout.trim()], &[]).success());
}

#[test]
fn members_answer_each_other_with_the_internal_key_once_keys_are_required() {
    let c = Cluster::start(3);
    let key = cli_ok(c.node(1), &["api-key", "create"]).trim().to_string();
    // `show --all` asks every member over HTTP.
    let out = raftmq(
        c.node(2),
        &["show", "max_message_rate", "--all", "--api-key", &key],
        &[],
    );
    out.assert_success("show --all");
    for n in 1..=3 {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&n.to_string())),
            "no row of node {n}: {}",
            out.stdout
        );
    }
}

// ---------------------------------------------------------------------------
// max_message_rate
// ---------------------------------------------------------------------------

#[test]
fn a_client_publishing_faster_than_max_message_rate_is_disconnected_with_0x96() {
    let b = Broker::start_with_config("max_message_rate = 5\n");
    let (mut slow, _) = RawClient::v5(b.mqtt_port, "slow", true, None);
    for i in 0..4 {
        slow.publish(&format!("r/{i}"), b"x", QoS::AtLeastOnce, false);
    }
    slow.ping();
    let (mut fast, _) = RawClient::v5(b.mqtt_port, "fast", true, None);
    for i in 0..20 {
        if fast
            .try_send(&Packet::Publish(publish_packet(
                &format!("r/{i}"),
                QoS::AtMostOnce,
                b"x",
            )))
            .is_err()
        {
            break;
        }
    }
    fast.expect_disconnect(reason::MESSAGE_RATE_TOO_HIGH, WAIT);
}

#[test]
fn max_message_rate_closes_an_mqtt3_client_too() {
    let b = Broker::start_with_config("max_message_rate = 3\n");
    let (mut fast, _) = RawClient::v3(b.mqtt_port, "fast3", true);
    for i in 0..10 {
        let _ = fast.try_send(&Packet::Publish(publish_packet(
            &format!("r/{i}"),
            QoS::AtMostOnce,
            b"x",
        )));
    }
    fast.expect_closed(WAIT);
}
