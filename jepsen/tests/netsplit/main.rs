//! Netsplits, cut for real: three nodes in network namespaces, iptables
//! DROP between node addresses (clients still reach every node). Each test
//! is one promise of docs/consistency.md, for each `allow_*_during_netsplit`
//! switch off and on, MQTT 3.1.1 and 5, on the minority and the majority
//! side. Needs root.

#[path = "../common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use raftmq_jepsen::admin;
use raftmq_jepsen::mqtt::{MqttError, Publish, SessionState, Version};
use support::*;

const V5: Version = Version::V5;
const V311: Version = Version::V311;
/// CONNACK codes: MQTT 5 "server unavailable", MQTT 3.1.1 return code 3.
const SERVER_UNAVAILABLE_V5: u8 = 0x88;
const SERVER_UNAVAILABLE_V311: u8 = 3;
const SUBACK_FAILURE: u8 = 0x80;
const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
const SESSION_TAKEN_OVER: u8 = 0x8e;

/// A refusal must come within `netsplit_wait` and a margin, far from the
/// commit timeout.
fn prompt(t: Instant) {
    let took = t.elapsed();
    assert!(
        took < NETSPLIT_WAIT + Duration::from_secs(2) && took < COMMIT_TIMEOUT / 2,
        "the answer took {took:?} (netsplit_wait {NETSPLIT_WAIT:?}, commit_timeout {COMMIT_TIMEOUT:?})"
    );
}

fn majority_of(alone: u64) -> u64 {
    (1..=3).find(|id| *id != alone).expect("another node")
}

fn count_lines(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

// ----- the netsplit state --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_node_says_so_in_health_metrics_cluster_show_and_one_log_line_each_way() {
    let mut s = Split::start("");
    let f = s.follower();
    let m = majority_of(f);
    let log = s.c.node(f).log_path();
    let (entered, left) = (
        count_lines(&log, "entering netsplit"),
        count_lines(&log, "leaving netsplit"),
    );
    s.isolate(f);
    let (code, h) = health(s.http(f));
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["status"], "netsplit", "{h}");
    assert!(
        h["netsplit_reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{h}"
    );
    let (code, h) = health(s.http(m));
    assert_eq!(code, 200, "the majority is not in netsplit: {h}");
    assert_eq!(h["netsplit"], false);
    assert_eq!(metric(s.http(f), "raftmq_netsplit"), Some(1.0));
    assert_eq!(metric(s.http(m), "raftmq_netsplit"), Some(0.0));
    let (_, show) = admin::call(
        "GET",
        s.http(f),
        "/api/v1/cluster/show",
        Duration::from_secs(5),
    )
    .expect("cluster show");
    assert_eq!(show["netsplit"]["in_netsplit"], true, "{show}");
    std::thread::sleep(Duration::from_secs(2));
    s.heal();
    s.wait_netsplit(f, false, Duration::from_secs(5));
    assert_eq!(metric(s.http(f), "raftmq_netsplit"), Some(0.0));
    assert!(metric(s.http(f), "raftmq_netsplit_detected_total").unwrap_or(0.0) >= 1.0);
    assert!(metric(s.http(f), "raftmq_netsplit_resolved_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        count_lines(&log, "entering netsplit") - entered,
        1,
        "one line on entering"
    );
    assert_eq!(
        count_lines(&log, "leaving netsplit") - left,
        1,
        "one line on leaving"
    );
}

// ----- every switch off: refusals are prompt and final ----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_refused_on_the_minority_is_answered_promptly_and_never_applied() {
    let mut s = Split::start("");
    let f = s.follower();
    s.isolate(f);
    let t = Instant::now();
    match connect(s.mqtt(f), "refused-5", V5).await {
        Err(MqttError::Refused(SERVER_UNAVAILABLE_V5)) => {}
        other => panic!(
            "MQTT 5 CONNECT on the minority: {:?}",
            other.map(|(_, a)| a)
        ),
    }
    prompt(t);
    let t = Instant::now();
    match connect(s.mqtt(f), "refused-3", V311).await {
        Err(MqttError::Refused(SERVER_UNAVAILABLE_V311)) => {}
        other => panic!(
            "MQTT 3.1.1 CONNECT on the minority: {:?}",
            other.map(|(_, a)| a)
        ),
    }
    prompt(t);
    s.heal();
    std::thread::sleep(Duration::from_secs(3));
    for id in 1..=3 {
        let sessions = s.sessions(id);
        assert!(
            !sessions.contains_key("refused-5") && !sessions.contains_key("refused-3"),
            "node {id} has a session for a refused CONNECT: {sessions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_follows_a_connack_that_refuses_the_connection() {
    let mut s = Split::start("");
    let f = s.follower();
    s.isolate(f);
    let v311 = raw_connect(s.mqtt(f), "raw-3", false);
    assert_eq!(
        v311,
        vec![0x20, 0x02, 0x00, SERVER_UNAVAILABLE_V311],
        "MQTT 3.1.1: one CONNACK, then the close"
    );
    let v5 = raw_connect(s.mqtt(f), "raw-5", true);
    assert!(
        v5.len() >= 4 && v5[0] == 0x20,
        "MQTT 5: a CONNACK first: {v5:02x?}"
    );
    let len = v5[1] as usize;
    assert_eq!(v5[3], SERVER_UNAVAILABLE_V5, "{v5:02x?}");
    assert_eq!(
        v5.len(),
        2 + len,
        "MQTT 5: nothing after the CONNACK (no DISCONNECT): {v5:02x?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_refused_on_the_minority_is_never_applied() {
    let mut s = Split::start("");
    let f = s.follower();
    let l = s.leader();
    let (mut c5, _) = connect(s.mqtt(f), "sub-5", V5).await.expect("connect");
    let (mut c3, _) = connect(s.mqtt(f), "sub-3", V311).await.expect("connect");
    s.isolate(f);
    for c in [&mut c5, &mut c3] {
        let t = Instant::now();
        match c.subscribe("t/refused", 1).await {
            Err(MqttError::Refused(SUBACK_FAILURE)) => {}
            other => panic!("SUBSCRIBE on the minority: {other:?}"),
        }
        prompt(t);
    }
    s.heal();
    std::thread::sleep(Duration::from_secs(2));
    let (mut p, _) = connect(s.mqtt(l), "pub", V5).await.expect("connect");
    p.publish(msg("t/refused", "after-heal", 1))
        .await
        .expect("publish");
    for (name, c) in [("sub-5", &mut c5), ("sub-3", &mut c3)] {
        let got = drain(c, Duration::from_secs(3)).await;
        assert!(
            got.is_empty(),
            "{name} is subscribed after a SUBACK 0x80: got {got:?}"
        );
    }
    let sessions = s.sessions(l);
    for name in ["sub-5", "sub-3"] {
        assert_eq!(
            sessions.get(name),
            Some(&Vec::new()),
            "{name}: {sessions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_publish_refused_on_the_minority_is_never_delivered() {
    let mut s = Split::start("");
    let f = s.follower();
    let l = s.leader();
    let (mut sub, _) = connect(s.mqtt(l), "sub", V5).await.expect("connect");
    sub.subscribe("t/p", 2).await.expect("subscribe");
    let (mut p, _) = connect(s.mqtt(f), "pub-5", V5).await.expect("connect");
    s.isolate(f);
    for qos in [1, 2] {
        let t = Instant::now();
        match p
            .publish(msg("t/p", &format!("refused-qos{qos}"), qos))
            .await
        {
            Err(MqttError::Refused(IMPLEMENTATION_SPECIFIC_ERROR)) => {}
            other => panic!("QoS {qos} PUBLISH on the minority: {other:?}"),
        }
        prompt(t);
    }
    s.heal();
    p.publish(msg("t/p", "after-heal", 1))
        .await
        .expect("publish after the heal");
    let got = drain(&mut sub, Duration::from_secs(3)).await;
    assert_eq!(
        got,
        vec!["after-heal".to_string()],
        "refused publishes must never be delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt311_publish_that_cannot_commit_closes_the_connection_and_its_resend_is_delivered_once(
) {
    let mut s = Split::start("");
    let f = s.follower();
    let l = s.leader();
    let (mut sub, _) = connect(s.mqtt(l), "sub", V5).await.expect("connect");
    sub.subscribe("t/p3", 1).await.expect("subscribe");
    let state = SessionState::new();
    let (mut p, _) = connect_with(s.mqtt(f), "pub-3", V311, state.clone())
        .await
        .expect("connect");
    s.isolate(f);
    let t = Instant::now();
    let pkid = state.next_pkid();
    let first = Publish {
        pkid: Some(pkid),
        ..msg("t/p3", "resent", 1)
    };
    match p.publish(first.clone()).await {
        Err(MqttError::Closed(None)) => {}
        other => panic!(
            "an MQTT 3.1.1 QoS 1 publish that cannot commit must close the connection: {other:?}"
        ),
    }
    prompt(t);
    s.heal();
    let (mut p, _) = connect_with(s.mqtt(f), "pub-3", V311, state)
        .await
        .expect("reconnect");
    p.publish(Publish { dup: true, ..first })
        .await
        .expect("the resend is acknowledged");
    let got = drain(&mut sub, Duration::from_secs(3)).await;
    assert_eq!(got, vec!["resent".to_string()], "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_refused_on_an_isolated_old_leader_never_takes_over_the_live_session() {
    let mut s = Split::start("");
    let old = s.leader();
    let m = majority_of(old);
    s.isolate(old);
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    // /health may still say 200 on the majority just before it notices the
    // leader is gone: wait for its new leader first.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !others
        .iter()
        .any(|id| admin::role(s.http(*id)).is_ok_and(|r| r.role == "leader"))
    {
        assert!(Instant::now() < deadline, "the majority elects no leader");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.c.wait_healthy(&others, Duration::from_secs(15))
        .expect("the majority is healthy");
    // Just after the failover a CONNECT's outcome may be unknown (closed
    // without a CONNACK), or it may be refused with 0x88 (server
    // unavailable: the node had not yet heard from the new leader within
    // netsplit_wait); a client then connects again, as this one does.
    let mut attempts = 0;
    let mut live = loop {
        attempts += 1;
        match connect(s.mqtt(m), "dup", V5).await {
            Ok((c, _)) => break c,
            Err(
                e @ (MqttError::Closed(_)
                | MqttError::Timeout
                | MqttError::Refused(SERVER_UNAVAILABLE_V5)),
            ) if attempts < 10 => {
                eprintln!("connect on the majority, attempt {attempts}: {e}");
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => panic!("connect on the majority: {e:?}"),
        }
    };
    let t = Instant::now();
    match connect(s.mqtt(old), "dup", V5).await {
        Err(MqttError::Refused(SERVER_UNAVAILABLE_V5)) => {}
        other => panic!(
            "CONNECT on the isolated old leader: {:?}",
            other.map(|(_, a)| a)
        ),
    }
    prompt(t);
    s.heal();
    std::thread::sleep(Duration::from_secs(3));
    live.publish(msg("t/alive", "still here", 1))
        .await
        .expect("the majority's connection is still live");
    for id in 1..=3 {
        assert_eq!(
            s.session_node(id, "dup"),
            Some(m),
            "node {id}: `dup` is connected on node {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_refused_on_the_minority_leaves_the_subscription() {
    let mut s = Split::start("");
    let f = s.follower();
    let l = s.leader();
    let (mut c5, _) = connect(s.mqtt(f), "keep-5", V5).await.expect("connect");
    c5.subscribe("t/kept", 1).await.expect("subscribe");
    let state3 = SessionState::new();
    let (mut c3, _) = connect_with(s.mqtt(f), "keep-3", V311, state3.clone())
        .await
        .expect("connect");
    c3.subscribe("t/kept", 1).await.expect("subscribe");
    s.isolate(f);
    let t = Instant::now();
    match c5.unsubscribe("t/kept").await {
        Err(MqttError::Refused(SUBACK_FAILURE)) => {}
        other => panic!("MQTT 5 UNSUBSCRIBE on the minority: {other:?}"),
    }
    prompt(t);
    let t = Instant::now();
    match c3.unsubscribe("t/kept").await {
        Err(MqttError::Closed(None)) => {}
        other => {
            panic!("MQTT 3.1.1 UNSUBSCRIBE on the minority must close the connection: {other:?}")
        }
    }
    prompt(t);
    s.heal();
    let (mut c3, _) = connect_with(s.mqtt(f), "keep-3", V311, state3)
        .await
        .expect("reconnect");
    let (mut p, _) = connect(s.mqtt(l), "pub", V5).await.expect("connect");
    p.publish(msg("t/kept", "still subscribed", 1))
        .await
        .expect("publish");
    for (name, c) in [("keep-5", &mut c5), ("keep-3", &mut c3)] {
        let got = drain(c, Duration::from_secs(3)).await;
        assert_eq!(got, vec!["still subscribed".to_string()], "{name}");
    }
}

// ----- the majority ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_majority_serves_every_operation_during_a_split_with_every_switch_off() {
    let mut s = Split::start("");
    let f = s.follower();
    let m = majority_of(f);
    s.isolate(f);
    for (v, tag) in [(V5, "5"), (V311, "3")] {
        let (mut c, _) = connect(s.mqtt(m), &format!("maj-{tag}"), v)
            .await
            .expect("connect");
        c.subscribe(&format!("maj/{tag}"), 1)
            .await
            .expect("subscribe");
        c.publish(msg(&format!("maj/{tag}"), "hello", 1))
            .await
            .expect("publish");
        let got = drain(&mut c, Duration::from_secs(2)).await;
        assert_eq!(got, vec!["hello".to_string()], "MQTT {tag}");
        c.unsubscribe(&format!("maj/{tag}"))
            .await
            .expect("unsubscribe");
    }
}

// ----- recovery -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_node_serves_again_within_two_seconds_whatever_the_splits_length() {
    let mut s = Split::start("");
    // A follower for 10 s, then the leader for 30 s: every node's /health
    // must be 200, for good, within 2 s (and a margin) of each heal.
    for (who, split_s) in [("a follower", 10), ("the leader", 30)] {
        let alone = if split_s == 10 {
            s.follower()
        } else {
            s.leader()
        };
        s.isolate(alone);
        std::thread::sleep(Duration::from_secs(split_s));
        let settled = s.heal_until_stable(Duration::from_secs(3));
        eprintln!("{who} (node {alone}) cut off for {split_s} s: last non-200 /health after the heal, by node: {settled:?}");
        for (id, t) in settled {
            assert!(
                t < Duration::from_millis(2500),
                "{who} cut off for {split_s} s: node {id} was unhealthy {t:?} after the heal"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_node_does_not_depose_the_leader() {
    let mut s = Split::start("");
    let l = s.leader();
    let f = s.follower();
    let term = admin::role(s.http(l)).expect("role").term;
    s.isolate(f);
    std::thread::sleep(Duration::from_secs(5));
    s.c.net.heal().expect("heal");
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for id in (1..=3).filter(|id| *id != f) {
            let (code, h) = health(s.http(id));
            assert_eq!(
                code, 200,
                "node {id} of the majority lost its health after the heal: {h}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = admin::role(s.http(l)).expect("role");
    assert_eq!(
        (r.role.as_str(), r.term),
        ("leader", term),
        "the leader and its term are unchanged"
    );
}

// ----- switches on: the weaker promises ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_publish_allowed_every_publish_acknowledged_on_the_minority_is_delivered_once_after_the_heal(
) {
    let mut s = Split::start("");
    let f = s.follower();
    let l = s.leader();
    s.set(l, "allow_publish_during_netsplit", "on");
    let (mut sub, _) = connect(s.mqtt(l), "sub", V5).await.expect("connect");
    sub.subscribe("t/on", 2).await.expect("subscribe");
    let (mut p5, _) = connect(s.mqtt(f), "pub-5", V5).await.expect("connect");
    let (mut p3, _) = connect(s.mqtt(f), "pub-3", V311).await.expect("connect");
    s.isolate(f);
    let mut want = Vec::new();
    for i in 0..10 {
        let t = Instant::now();
        p5.publish(msg("t/on", &format!("v5-q1-{i}"), 1))
            .await
            .expect("MQTT 5 QoS 1 accepted");
        p3.publish(msg("t/on", &format!("v3-q1-{i}"), 1))
            .await
            .expect("MQTT 3.1.1 QoS 1 accepted");
        prompt(t);
        want.push(format!("v5-q1-{i}"));
        want.push(format!("v3-q1-{i}"));
    }
    for i in 0..3 {
        p5.publish(msg("t/on", &format!("v5-q2-{i}"), 2))
            .await
            .expect("MQTT 5 QoS 2 accepted");
        want.push(format!("v5-q2-{i}"));
    }
    assert!(
        drain(&mut sub, Duration::from_secs(1)).await.is_empty(),
        "nothing crosses the split"
    );
    s.heal();
    let mut got = drain(&mut sub, Duration::from_secs(4)).await;
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "each acknowledged message delivered exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_subscribe_allowed_a_subscription_made_on_the_minority_applies_after_the_heal() {
    let mut s = Split::start("allow_subscribe_during_netsplit = \"on\"");
    let f = s.follower();
    let l = s.leader();
    let (mut c5, _) = connect(s.mqtt(f), "sub-5", V5).await.expect("connect");
    let (mut c3, _) = connect(s.mqtt(f), "sub-3", V311).await.expect("connect");
    s.isolate(f);
    for c in [&mut c5, &mut c3] {
        let t = Instant::now();
        assert_eq!(c.subscribe("t/later", 1).await.expect("granted"), 1);
        prompt(t);
    }
    s.heal();
    std::thread::sleep(Duration::from_secs(1));
    let (mut p, _) = connect(s.mqtt(l), "pub", V5).await.expect("connect");
    p.publish(msg("t/later", "hello", 1))
        .await
        .expect("publish");
    for (name, c) in [("sub-5", &mut c5), ("sub-3", &mut c3)] {
        assert_eq!(
            drain(c, Duration::from_secs(3)).await,
            vec!["hello".to_string()],
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_unsubscribe_allowed_an_unsubscribe_made_on_the_minority_applies_after_the_heal() {
    let mut s = Split::start("allow_unsubscribe_during_netsplit = \"on\"");
    let f = s.follower();
    let l = s.leader();
    let (mut c5, _) = connect(s.mqtt(f), "unsub-5", V5).await.expect("connect");
    let (mut c3, _) = connect(s.mqtt(f), "unsub-3", V311).await.expect("connect");
    for c in [&mut c5, &mut c3] {
        c.subscribe("t/gone", 1).await.expect("subscribe");
    }
    s.isolate(f);
    for c in [&mut c5, &mut c3] {
        let t = Instant::now();
        c.unsubscribe("t/gone").await.expect("UNSUBACK");
        prompt(t);
    }
    s.heal();
    std::thread::sleep(Duration::from_secs(1));
    let (mut p, _) = connect(s.mqtt(l), "pub", V5).await.expect("connect");
    p.publish(msg("t/gone", "unwanted", 1))
        .await
        .expect("publish");
    for (name, c) in [("unsub-5", &mut c5), ("unsub-3", &mut c3)] {
        assert!(
            drain(c, Duration::from_secs(3)).await.is_empty(),
            "{name} is unsubscribed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_register_allowed_a_client_connects_on_the_minority_and_the_newer_session_wins_at_heal(
) {
    let mut s = Split::start("allow_register_during_netsplit = \"on\"");
    let f = s.follower();
    let m = majority_of(f);
    // Older on the majority, newer on the minority: the minority's wins.
    let (mut older, _) = connect(s.mqtt(m), "newer-min", V5).await.expect("connect");
    s.isolate(f);
    let t = Instant::now();
    let (mut newer, ack) = connect(s.mqtt(f), "newer-min", V5)
        .await
        .expect("accepted on the minority");
    prompt(t);
    assert!(!ack.session_present);
    let (_, ack3) = connect(s.mqtt(f), "v311-min", V311)
        .await
        .expect("MQTT 3.1.1 accepted on the minority");
    assert!(!ack3.session_present);
    // Older on the minority, newer on the majority: the majority's wins.
    let (mut min_older, _) = connect(s.mqtt(f), "newer-maj", V5)
        .await
        .expect("accepted on the minority");
    std::thread::sleep(Duration::from_millis(50));
    let (mut maj_newer, _) = connect(s.mqtt(m), "newer-maj", V5)
        .await
        .expect("connect on the majority");
    s.heal();
    for (name, c) in [
        ("newer-min on the majority", &mut older),
        ("newer-maj on the minority", &mut min_older),
    ] {
        match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
            Ok(Err(MqttError::Closed(Some(SESSION_TAKEN_OVER)))) => {}
            other => panic!("{name}: the older connection must be closed with 0x8E: {other:?}"),
        }
    }
    newer
        .publish(msg("t/x", "alive", 1))
        .await
        .expect("the newer minority connection lives");
    maj_newer
        .publish(msg("t/x", "alive", 1))
        .await
        .expect("the newer majority connection lives");
    assert_eq!(s.session_node(m, "newer-min"), Some(f));
    assert_eq!(s.session_node(m, "newer-maj"), Some(m));
}
