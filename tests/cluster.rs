//! Three-node clusters of real `raftmq` processes on loopback: every node
//! applies the same log, so any node serves any client, and a node can die or
//! leave without taking a session, subscription, retained message or
//! acknowledged message with it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// Cross-node behaviour
// ---------------------------------------------------------------------------

#[test]
fn subscriber_on_one_node_receives_qos_0_1_2_published_on_the_others() {
    let c = Cluster::start(3);
    let (mut sub, _) = RawClient::v5(c.node(3).mqtt_port, "xn-sub", true, None);
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        sub.subscribe(&format!("xn/{}", q as u8), q);
    }
    for from in [1u64, 2] {
        let (mut p, _) =
            RawClient::v5(c.node(from).mqtt_port, &format!("xn-pub{from}"), true, None);
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            p.publish(
                &format!("xn/{}", q as u8),
                format!("{from}-{}", q as u8).as_bytes(),
                q,
                false,
            );
        }
        let got = sub.collect_publishes(3, WAIT);
        let mut seen: Vec<(String, u8)> = got
            .iter()
            .map(|p| {
                (
                    String::from_utf8_lossy(&p.payload).into_owned(),
                    p.qos as u8,
                )
            })
            .collect();
        seen.sort();
        let want: Vec<(String, u8)> = (0..3u8).map(|q| (format!("{from}-{q}"), q)).collect();
        assert_eq!(seen, want, "from node {from}");
    }
}

#[test]
fn persistent_session_resumes_on_another_node_after_its_node_is_killed() {
    let mut c = Cluster::start(3);
    // Session on node 1 (whatever its role); 5 messages delivered but not
    // acked (inflight), then node 1 dies and 5 more are published.
    let (mut s, _) = RawClient::v3(c.node(1).mqtt_port, "roamer", false);
    s.subscribe("roam/#", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(c.node(2).mqtt_port, "roam-pub", true);
    for i in 0..5 {
        p.publish(
            "roam/a",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
        );
    }
    let inflight: Vec<Publish> = (0..5).map(|_| s.expect_publish(WAIT)).collect();
    assert_eq!(payloads(&inflight), vec!["m0", "m1", "m2", "m3", "m4"]);
    c.node_mut(1).kill9();
    drop(s);
    for i in 5..10 {
        p.publish(
            "roam/a",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
        );
    }
    let (mut s, ack) = RawClient::v3(c.node(3).mqtt_port, "roamer", false);
    assert!(ack.session_present, "{ack:?}");
    let got = s.collect_publishes(11, Duration::from_secs(3));
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads(&got), want, "exactly the 10 messages, in order");
    assert!(
        got[..5].iter().all(|p| p.dup),
        "inflight ones are resent with DUP"
    );
}

#[test]
fn takeover_across_nodes_disconnects_the_old_connection_with_0x8e_and_publishes_its_will() {
    let c = Cluster::start(3);
    let (mut watcher, _) = RawClient::v5(c.node(3).mqtt_port, "tk-watch", true, None);
    watcher.subscribe("tk/will", QoS::AtLeastOnce);
    let mut conn = v5_connect("tk-client", true, Some(0));
    conn.will = Some(will("tk/will", b"gone", QoS::AtLeastOnce, false));
    let (mut old, _) = RawClient::connect_ok(c.node(1).mqtt_port, Protocol::V5, conn);
    let (_new, ack) = RawClient::v5(c.node(2).mqtt_port, "tk-client", true, None);
    assert!(!ack.session_present);
    old.expect_disconnect(0x8E, WAIT);
    let w = watcher.expect_publish(WAIT);
    assert_eq!(&w.payload[..], b"gone");
}

#[test]
fn takeover_across_nodes_suppresses_the_will_when_configured() {
    let c = Cluster::start_with_config(3, Some("suppress_lwt_on_session_takeover = \"on\"\n"));
    let (mut watcher, _) = RawClient::v5(c.node(3).mqtt_port, "tks-watch", true, None);
    watcher.subscribe("tks/will", QoS::AtLeastOnce);
    let mut conn = v5_connect("tks-client", true, Some(0));
    conn.will = Some(will("tks/will", b"gone", QoS::AtLeastOnce, false));
    let (mut old, _) = RawClient::connect_ok(c.node(1).mqtt_port, Protocol::V5, conn);
    let (_new, _) = RawClient::v5(c.node(2).mqtt_port, "tks-client", true, None);
    old.expect_disconnect(0x8E, WAIT);
    watcher.expect_no_publish(QUIET);
}

#[test]
fn retained_message_is_visible_from_every_node() {
    let c = Cluster::start(3);
    let (mut p, _) = RawClient::v3(c.node(2).mqtt_port, "ret-pub", true);
    p.publish("ret/site/1", b"kept", QoS::AtLeastOnce, true);
    for id in 1..=3u64 {
        let (mut s, _) = RawClient::v3(c.node(id).mqtt_port, &format!("ret-sub{id}"), true);
        s.subscribe("ret/#", QoS::AtLeastOnce);
        let m = s.expect_publish(WAIT);
        assert_eq!(
            (&m.payload[..], m.retain),
            (&b"kept"[..], true),
            "node {id}"
        );
        let out = c.node(id).cli(&["retain", "show", "topic=ret/#"]);
        out.assert_success("retain show");
        assert!(
            out.stdout.contains("ret/site/1"),
            "node {id}: {}",
            out.stdout
        );
    }
}

#[test]
fn shared_subscription_balances_across_members_on_all_nodes() {
    let c = Cluster::start(3);
    let mut members: Vec<RawClient> = (1..=3u64)
        .map(|id| {
            let (mut m, _) = RawClient::v3(c.node(id).mqtt_port, &format!("share-m{id}"), true);
            m.subscribe("$share/g/jobs/#", QoS::AtLeastOnce);
            m
        })
        .collect();
    let (mut p, _) = RawClient::v3(c.node(1).mqtt_port, "share-pub", true);
    let n = 90;
    for i in 0..n {
        p.publish(
            "jobs/x",
            format!("j{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
        );
    }
    let mut all = BTreeSet::new();
    let mut per_member = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut counts = [0usize; 3];
    while all.len() < n && Instant::now() < deadline {
        for (i, m) in members.iter_mut().enumerate() {
            for pl in payloads(&m.collect_publishes(n, Duration::from_millis(200))) {
                assert!(all.insert(pl.clone()), "{pl} delivered twice");
                counts[i] += 1;
            }
        }
    }
    per_member.extend(counts);
    assert_eq!(all.len(), n, "every message delivered once: {per_member:?}");
    assert!(
        per_member.iter().all(|&k| k >= n / 6),
        "each member (one per node) gets a fair share: {per_member:?}"
    );
}

// ---------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------

#[test]
fn cluster_show_lists_every_member_with_role_leader_match_index_and_reachability() {
    let c = Cluster::start(3);
    let out = c.node(2).cli(&["cluster", "show"]);
    out.assert_success("cluster show");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "header + 3 members + the change line + the netsplit line:\n{}",
        out.stdout
    );
    assert_eq!(lines[4], "no membership change in progress");
    assert_eq!(lines[5], "node 2 is not in netsplit");
    for col in [
        "node",
        "role",
        "leader",
        "match_index",
        "reachable",
        "cluster",
        "mqtt",
        "http",
    ] {
        assert!(lines[0].contains(col), "column {col}: {}", lines[0]);
    }
    let (_, v) = c.node(2).api("/api/v1/cluster/show");
    let rows = v["table"].as_array().expect("table");
    assert_eq!(
        rows.iter().filter(|r| r["leader"] == true).count(),
        1,
        "{v}"
    );
    for r in rows {
        assert_eq!(r["role"], "voter", "{v}");
        assert_eq!(r["reachable"], true, "{v}");
        assert!(r["match_index"].as_u64().is_some_and(|m| m > 0), "{v}");
    }
}

#[test]
fn fresh_node_joins_by_a_snapshot_sent_in_many_chunks_after_the_log_was_purged() {
    // Snapshots every 100 entries, sent in 64 KiB chunks: the 400 KiB of
    // retained messages are many chunks.
    let config = "snapshot_interval_entries = 100\nsnapshot_chunk_bytes = 65536\n";
    let mut c = Cluster::start_with_config(3, Some(config));
    let (mut s, _) = RawClient::v3(c.node(1).mqtt_port, "join-sess", false);
    s.subscribe("join/q", QoS::AtLeastOnce);
    s.disconnect();
    let (mut p, _) = RawClient::v3(c.node(2).mqtt_port, "join-pub", true);
    let big = |i: usize| format!("{i:04}").repeat(1024); // 4 KiB
    for i in 0..100 {
        p.publish(
            &format!("join/ret/{i}"),
            big(i).as_bytes(),
            QoS::AtLeastOnce,
            true,
        );
    }
    p.publish("join/q", b"queued", QoS::AtLeastOnce, false);
    // Enough entries (one per acked publish here), and log bytes (a
    // snapshot waits until the log holds half the last one's size), for
    // snapshots and purges. Not retained: the state does not grow.
    for i in 0..300 {
        p.publish("join/noise", big(i).as_bytes(), QoS::AtLeastOnce, false);
    }
    let leader = c.wait_leader(WAIT);
    // Built and purged: the snapshot policy works in the background, so the
    // join waits until the leader's log no longer starts at entry 1.
    let l = c.node(leader).http_port;
    let purged = wait_until(Duration::from_secs(10), || {
        metric(l, "raftmq_raft_snapshot_index") > 0.0
            && metric(l, "raftmq_raft_log_entries") < metric(l, "raftmq_raft_last_applied")
    });
    assert!(purged, "the leader built a snapshot and purged its log");
    let sent = |c: &Cluster, name: &str| -> f64 {
        (1..=3).map(|id| metric(c.node(id).http_port, name)).sum()
    };
    assert_eq!(sent(&c, "raftmq_snapshot_chunks_sent_total"), 0.0);
    let i = c.add_node();
    c.wait_voters(4);
    let n4 = &c.nodes[i];
    let (chunks, bytes) = (
        sent(&c, "raftmq_snapshot_chunks_sent_total"),
        sent(&c, "raftmq_snapshot_bytes_sent_total"),
    );
    // The snapshot is 7 chunks. They are counted once acknowledged: a
    // transfer openraft restarts (it does when the membership changes) adds
    // the chunks it sent, and one it cancels while the last chunk is being
    // installed lacks that one.
    assert!(
        chunks > 1.0 && bytes > 65_536.0,
        "node 4 caught up by a snapshot in many chunks: {chunks} chunks, {bytes} bytes"
    );
    assert!(
        metric(n4.http_port, "raftmq_raft_snapshot_index") > 0.0,
        "node 4 starts from a snapshot"
    );
    let (mut r, _) = RawClient::v3(n4.mqtt_port, "join-ret", true);
    r.subscribe("join/ret/#", QoS::AtLeastOnce);
    let mut got: Vec<(String, Vec<u8>)> = r
        .collect_publishes(100, WAIT)
        .into_iter()
        .map(|m| (m.topic.clone(), m.payload.to_vec()))
        .collect();
    got.sort();
    let mut want: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("join/ret/{i}"), big(i).into_bytes()))
        .collect();
    want.sort();
    assert!(got == want, "the 100 retained messages, intact, on node 4");
    let (mut s, ack) = RawClient::v3(n4.mqtt_port, "join-sess", false);
    assert!(ack.session_present);
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["queued"]);
}

/// A value of a Prometheus metric (0 when absent).
fn metric(http_port: u16, name: &str) -> f64 {
    let Ok((200, body)) = http_get(http_port, "/metrics", Duration::from_secs(3)) else {
        return 0.0;
    };
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name || k.starts_with(&format!("{name}{{"))).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

#[test]
fn cluster_join_makes_a_new_standalone_node_join_and_refuses_one_with_state() {
    let mut c = Cluster::start(3);
    // A node started on its own (a cluster of one, no clients yet).
    let mut fresh = Broker::try_start_node(4, None, None)
        .unwrap_or_else(|f| panic!("node 4: {:?}\n{}", f.status, f.log));
    let discovery = format!("discovery-node=127.0.0.1:{}", c.node(2).cluster_port);
    let out = fresh.cli(&["cluster", "join", &discovery]);
    out.assert_success("cluster join");
    assert!(out.stdout.contains("joined"), "{}", out.stdout);
    assert!(fresh.is_running(), "restarted in place, same process id");
    c.wait_voters(4);
    let (mut s, _) = RawClient::v3(fresh.mqtt_port, "cj-sub", true);
    s.subscribe("cj/x", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(c.node(1).mqtt_port, "cj-pub", true);
    p.publish("cj/x", b"hi", QoS::AtLeastOnce, false);
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["hi"]);

    // A standalone node that already has state of its own is refused.
    let owned = Broker::try_start_node(5, None, None)
        .unwrap_or_else(|f| panic!("node 5: {:?}\n{}", f.status, f.log));
    let (mut o, _) = RawClient::v3(owned.mqtt_port, "owned", false);
    o.subscribe("mine/#", QoS::AtLeastOnce);
    let out = owned.cli(&["cluster", "join", &discovery]);
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("already has its own cluster state"),
        "{}",
        out.stderr
    );
}

#[test]
fn leave_without_k_is_refused_while_the_node_has_clients() {
    let c = Cluster::start(3);
    let (_s, _) = RawClient::v3(c.node(3).mqtt_port, "stay", true);
    let out = c.node(1).cli(&["cluster", "leave", "node=3"]);
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("-k"),
        "the refusal says how: {}",
        out.stderr
    );
}

#[test]
fn leave_with_k_disconnects_the_nodes_clients_and_their_sessions_resume_elsewhere() {
    let mut c = Cluster::start(3);
    let (mut s, _) = RawClient::v5(c.node(3).mqtt_port, "leaver", false, Some(3600));
    s.subscribe("leave/#", QoS::AtLeastOnce);
    let out = c.node(1).cli(&["cluster", "leave", "node=3", "-k"]);
    out.assert_success("cluster leave -k");
    s.expect_closed(WAIT);
    c.wait_voters(2);
    let health = wait_until(WAIT, || {
        http_get(c.node(3).http_port, "/health", Duration::from_secs(1))
            .is_ok_and(|(code, _)| code == 503)
    });
    assert!(health, "the removed node reports 503");
    let (mut p, _) = RawClient::v3(c.node(2).mqtt_port, "leave-pub", true);
    p.publish("leave/x", b"after", QoS::AtLeastOnce, false);
    let (mut s, ack) = RawClient::v5(c.node(1).mqtt_port, "leaver", false, Some(3600));
    assert!(ack.session_present);
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["after"]);
}

#[test]
fn leave_removes_a_dead_node_and_its_sessions_resume_with_their_wills_fired() {
    let mut c = Cluster::start(3);
    let victim = c.follower();
    let other = (1..=3)
        .find(|&i| i != victim && c.node_mut(i).is_running())
        .unwrap();
    let (mut watcher, _) = RawClient::v3(c.node(other).mqtt_port, "dead-watch", true);
    watcher.subscribe("dead/will", QoS::AtLeastOnce);
    let mut conn = v3_connect("dead-client", false);
    conn.will = Some(will("dead/will", b"bye", QoS::AtLeastOnce, false));
    let (mut s, _) = RawClient::connect_ok(c.node(victim).mqtt_port, Protocol::V311, conn);
    s.subscribe("dead/q", QoS::AtLeastOnce);
    c.node_mut(victim).kill9();
    let (mut p, _) = RawClient::v3(c.node(other).mqtt_port, "dead-pub", true);
    p.publish("dead/q", b"while-dead", QoS::AtLeastOnce, false);
    let out = c
        .node(other)
        .cli(&["cluster", "leave", &format!("node={victim}")]);
    out.assert_success("cluster leave of a dead node");
    assert!(out.stdout.contains("unreachable"), "{}", out.stdout);
    c.wait_voters(2);
    assert_eq!(
        &watcher.expect_publish(WAIT).payload[..],
        b"bye",
        "its will fired"
    );
    let (mut s, ack) = RawClient::v3(c.node(other).mqtt_port, "dead-client", false);
    assert!(ack.session_present);
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["while-dead"]);
}

#[test]
fn wiped_node_rejoins_with_the_same_id_after_a_leave() {
    let mut c = Cluster::start(3);
    let victim = c.follower();
    let via = (1..=3).find(|&i| i != victim).unwrap();
    c.node(via)
        .cli(&["cluster", "leave", &format!("node={victim}"), "-k"])
        .assert_success("leave");
    c.wait_voters(2);
    let join_port = c.node(via).cluster_port;
    let n = c.node_mut(victim);
    n.wipe();
    n.join = Some(join_port);
    n.start_no_wait();
    n.wait_ready();
    c.wait_voters(3);
    let (mut s, _) = RawClient::v3(c.node(victim).mqtt_port, "rejoin-sub", true);
    s.subscribe("rejoin/x", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(c.node(via).mqtt_port, "rejoin-pub", true);
    p.publish("rejoin/x", b"hi", QoS::AtLeastOnce, false);
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["hi"]);
}

#[test]
fn concurrent_membership_changes_are_refused_with_a_clear_message() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(WAIT);
    let mut others: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let (leaving, frozen) = (others.remove(0), others.remove(0));
    // With `frozen` stopped, removing `leaving` cannot commit (the new
    // configuration {leader, frozen} has no quorum), so it stays in progress.
    c.node(frozen).pause(true);
    let leader_http = c.node(leader).http_port;
    let bin = broker_bin();
    let first = thread::spawn(move || {
        run_cmd(
            std::process::Command::new(bin)
                .args(["cluster", "leave", &format!("node={leaving}")])
                .args(["--admin", &format!("127.0.0.1:{leader_http}")]),
            Duration::from_secs(60),
        )
    });
    let busy = wait_until(Duration::from_secs(10), || {
        c.node(leader).api("/api/v1/cluster/show").1["membership_change_in_progress"] == true
    });
    let second = c
        .node(leader)
        .cli(&["cluster", "leave", &format!("node={frozen}"), "-k"]);
    c.node(frozen).pause(false);
    assert!(busy, "the first change is in progress");
    assert!(!second.success(), "a second change is refused: {second:?}");
    assert!(
        second
            .stderr
            .contains("another membership change is in progress"),
        "{}",
        second.stderr
    );
    let out = first.join().unwrap();
    out.assert_success("the first change completes once the frozen node is back");
    c.wait_voters(2);
}

#[test]
fn node_with_the_wrong_cookie_is_refused_and_the_logs_say_so() {
    let c = Cluster::start(3);
    let mut bad = Broker::unstarted_node(4, Some(c.node(1).cluster_port), None);
    bad.cookie = Some("not-the-cluster-secret".into());
    bad.start_no_wait();
    let said = wait_until(Duration::from_secs(10), || {
        bad.log_tail(200).contains("different distributed_cookie")
    });
    assert!(said, "joining node's log:\n{}", bad.log_tail(30));
    let (code, _) = bad.api("/health");
    assert_eq!(code, 503);
    assert!(
        c.node(1)
            .log_tail(400)
            .contains("refused inter-node connection"),
        "member's log:\n{}",
        c.node(1).log_tail(30)
    );
}

#[test]
fn health_is_503_without_a_quorum_and_200_when_it_returns() {
    let mut c = Cluster::start(3);
    let survivor = c.follower();
    for id in (1..=3).filter(|&i| i != survivor) {
        c.node_mut(id).kill9();
    }
    let port = c.node(survivor).http_port;
    let code = |p| http_get(p, "/health", Duration::from_secs(1)).map_or(0, |(c, _)| c);
    assert!(
        wait_until(Duration::from_secs(5), || code(port) == 503),
        "503 without quorum"
    );
    for id in (1..=3).filter(|&i| i != survivor) {
        c.node_mut(id).restart();
    }
    assert!(
        wait_until(Duration::from_secs(10), || code(port) == 200),
        "200 again"
    );
}

// ---------------------------------------------------------------------------
// Leader failure under load
// ---------------------------------------------------------------------------

#[test]
fn leader_sigkill_during_qos1_load_loses_no_acknowledged_message() {
    let mut c = Cluster::start_with_config(
        3,
        Some(
            "max_online_messages = 1000000\nmax_offline_messages = -1\nmax_inflight_messages = 0\n",
        ),
    );
    let leader = c.wait_leader(WAIT);
    let mut followers: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let (pub_node, sub_node) = (followers.remove(0), followers.remove(0));
    let (pub_port, sub_port) = (c.node(pub_node).mqtt_port, c.node(sub_node).mqtt_port);
    let (mut sub, _) = RawClient::v3(sub_port, "lk-sub", false);
    sub.subscribe("lk/#", QoS::AtLeastOnce);

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..4)
        .map(|k| {
            let (acked, stop) = (acked.clone(), stop.clone());
            thread::spawn(move || {
                let (mut p, _) = RawClient::v3(pub_port, &format!("lk-pub{k}"), true);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let m = format!("{k}-{i}");
                    // A PUBACK can take an election to arrive; it must arrive.
                    p.publish("lk/x", m.as_bytes(), QoS::AtLeastOnce, false);
                    acked.lock().unwrap().insert(m);
                    i += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    let before = acked.lock().unwrap().len();
    c.node_mut(leader).kill9();
    thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    for t in publishers {
        t.join().expect("publisher");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > before,
        "publishes were acknowledged again after the leader died"
    );
    let mut got: BTreeMap<String, u32> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while acked.iter().any(|m| !got.contains_key(m)) && Instant::now() < deadline {
        for p in sub.collect_publishes(10_000, Duration::from_millis(300)) {
            *got.entry(String::from_utf8_lossy(&p.payload).into_owned())
                .or_default() += 1;
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|m| !got.contains_key(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

// ---------------------------------------------------------------------------
// Offline backlog across a SIGKILL of every node
// ---------------------------------------------------------------------------

/// Messages in the offline-backlog tests: far more than any per-session
/// count a default could quietly cap.
const BACKLOG: u64 = 200_000;

/// A persistent QoS 1 subscriber subscribes on one follower and disconnects;
/// BACKLOG numbered QoS 1 messages are published on the other follower (each
/// forwarded to the leader), every one PUBACKed; all three nodes are
/// SIGKILLed and restarted; the subscriber reconnects on the node that led
/// (not the one it subscribed on) and receives what comes (acking each)
/// until it has all or nothing arrives for 5 s.
fn offline_backlog_across_whole_cluster_sigkill(config: Option<&str>) -> Deliveries {
    let mut c = Cluster::start_with_config(3, config);
    let leader = c.wait_leader(WAIT);
    let followers: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let (sub_node, pub_node) = (followers[0], followers[1]);
    let (mut s, _) = RawClient::v3(c.node(sub_node).mqtt_port, "backlog-sub", false);
    s.subscribe("backlog/q", QoS::AtLeastOnce);
    s.disconnect();
    let t = Instant::now();
    publish_numbered(
        c.node(pub_node).mqtt_port,
        "backlog-pub",
        "backlog/q",
        BACKLOG,
        4,
        256,
    );
    let published = t.elapsed();
    let t = Instant::now();
    c.sigkill_all_and_restart();
    let restarted = t.elapsed();
    drain_backlog(
        c.node(leader).mqtt_port,
        "backlog-sub",
        BACKLOG,
        published,
        restarted,
    )
}

#[test]
fn default_config_loses_no_acknowledged_qos1_message_to_an_offline_subscriber_when_every_node_is_sigkilled(
) {
    let got = offline_backlog_across_whole_cluster_sigkill(None);
    got.assert_none_lost(
        "offline subscriber after SIGKILL of all three nodes, default configuration",
    );
    eprintln!("received all {BACKLOG}; duplicates {}", got.duplicates());
}

#[test]
fn an_offline_limit_is_detected_as_lost_messages_on_three_nodes() {
    // Negative control: the same scenario and check, with a limit that drops
    // all but 1,000 of the offline session's messages.
    let got = offline_backlog_across_whole_cluster_sigkill(Some("max_offline_messages = 1000\n"));
    got.assert_loss_detected(1000);
}

// ---------------------------------------------------------------------------
// logs
// ---------------------------------------------------------------------------

/// The most WARN and ERROR lines a surviving node logs in the 5 s after a
/// follower is SIGKILLed, its nodes logging with `filter` (None: the default).
fn warnings_while_a_peer_is_down(filter: Option<&str>) -> usize {
    let mut c = Cluster::start(3);
    if let Some(f) = filter {
        for id in 1..=3 {
            c.node_mut(id).log_level = Some(f.to_string());
            c.node_mut(id).restart();
        }
    }
    let leader = c.wait_leader(WAIT);
    let dead = c.follower();
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != dead).collect();
    let lines = |b: &Broker| read_file(&b.log_path()).lines().count();
    let before: Vec<usize> = survivors.iter().map(|&id| lines(c.node(id))).collect();
    c.node_mut(dead).kill9();
    thread::sleep(Duration::from_secs(5));
    let mut most = 0;
    for (&id, &skip) in survivors.iter().zip(&before) {
        let log = read_file(&c.node(id).log_path());
        let warned: Vec<&str> = log
            .lines()
            .skip(skip)
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        eprintln!(
            "node {id} ({}) logged {} WARN/ERROR lines:\n{}",
            if id == leader { "leader" } else { "follower" },
            warned.len(),
            warned.join("\n")
        );
        most = most.max(warned.len());
    }
    most
}

#[test]
fn a_dead_peer_is_logged_once_per_change_not_on_every_retry() {
    let most = warnings_while_a_peer_is_down(None);
    assert!(
        most <= 3,
        "{most} WARN/ERROR lines in 5 s for one dead peer"
    );
}

#[test]
fn the_dead_peer_log_check_catches_openraft_logging_every_retry() {
    // Negative control: the filter raftmq had before logged each failed
    // replication RPC, several lines a second.
    let most = warnings_while_a_peer_is_down(Some("info,openraft=warn"));
    assert!(
        most > 20,
        "only {most} WARN/ERROR lines: the check could not fail"
    );
}

// ---------------------------------------------------------------------------
// dev-cluster
// ---------------------------------------------------------------------------

/// `raftmq dev-cluster` on `dir` with these first ports.
fn dev_cluster(dir: &std::path::Path, (mqtt, http, cluster): (u16, u16, u16)) -> BgProcess {
    BgProcess::spawn(
        std::process::Command::new(broker_bin())
            .arg("dev-cluster")
            .arg("--dir")
            .arg(dir)
            .args(["--mqtt-port", &mqtt.to_string()])
            .args(["--http-port", &http.to_string()])
            .args(["--cluster-port", &cluster.to_string()])
            .env_remove("RAFTMQ_COOKIE"),
    )
}

fn wait_dev_cluster_up(dc: &mut BgProcess) {
    let up = dc.wait_for_line(Duration::from_secs(60), |l| l.contains("3 nodes up"));
    assert!(
        up.is_some(),
        "dev-cluster did not come up: {}",
        dc.describe()
    );
}

fn stop_dev_cluster(dc: &mut BgProcess, http: u16) {
    dc.signal("-TERM");
    assert!(
        dc.wait_exit(Duration::from_secs(20)).is_some(),
        "dev-cluster exits on SIGTERM"
    );
    let all_down = wait_until(Duration::from_secs(10), || {
        (0..3).all(|i| http_get(http + i, "/health", Duration::from_millis(300)).is_err())
    });
    assert!(all_down, "every node stopped with it");
}

#[test]
fn dev_cluster_starts_three_joined_nodes_and_sigterm_stops_them_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = (free_port_run(3), free_port_run(3), free_port_run(3));
    let (mqtt, http, _) = ports;
    let mut dc = dev_cluster(dir.path(), ports);
    wait_dev_cluster_up(&mut dc);
    let (code, v) = match http_get(http + 2, "/api/v1/cluster/show", WAIT) {
        Ok((code, body)) => (
            code,
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default(),
        ),
        Err(e) => panic!("cluster show: {e}"),
    };
    assert_eq!(code, 200);
    let voters = v["table"]
        .as_array()
        .map_or(0, |t| t.iter().filter(|r| r["role"] == "voter").count());
    assert_eq!(voters, 3, "{v}");
    let (mut s, _) = RawClient::v3(mqtt + 2, "dc-sub", true);
    s.subscribe("dc/x", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(mqtt, "dc-pub", true);
    p.publish("dc/x", b"hi", QoS::AtLeastOnce, false);
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["hi"]);
    stop_dev_cluster(&mut dc, http);
}

#[test]
fn a_sigkilled_dev_cluster_takes_its_nodes_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = (free_port_run(3), free_port_run(3), free_port_run(3));
    let mut dc = dev_cluster(dir.path(), ports);
    wait_dev_cluster_up(&mut dc);
    dc.signal("-KILL");
    let http = ports.1;
    let all_down = wait_until(Duration::from_secs(15), || {
        (0..3).all(|i| http_get(http + i, "/health", Duration::from_millis(300)).is_err())
    });
    assert!(all_down, "a node outlived its dev-cluster");
}

#[test]
fn dev_cluster_runs_again_on_its_directory_with_its_data_and_says_its_cookie() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = (free_port_run(3), free_port_run(3), free_port_run(3));
    let (mqtt, http, _) = ports;
    let mut dc = dev_cluster(dir.path(), ports);
    wait_dev_cluster_up(&mut dc);
    let cookie = std::fs::read_to_string(dir.path().join("cookie")).expect("cookie kept");
    let line = dc.wait_for_line(WAIT, |l| l.starts_with("cookie:"));
    assert!(
        line.is_some_and(|l| l.contains(cookie.trim())),
        "the cookie is printed: {}",
        dc.describe()
    );
    let (mut p, _) = RawClient::v3(mqtt + 1, "dc-keep", true);
    p.publish("dc/kept", b"still here", QoS::AtLeastOnce, true);
    stop_dev_cluster(&mut dc, http);

    let mut again = dev_cluster(dir.path(), ports);
    wait_dev_cluster_up(&mut again);
    let printed = again.drain().join("\n");
    assert!(printed.contains("restarting the three nodes"), "{printed}");
    let (mut s, _) = RawClient::v3(mqtt + 2, "dc-read", true);
    s.subscribe("dc/kept", QoS::AtLeastOnce);
    assert_eq!(payloads(&s.collect_publishes(1, WAIT)), vec!["still here"]);
    stop_dev_cluster(&mut again, http);

    // Other ports: the members know each other by the old addresses.
    let other = (free_port_run(3), free_port_run(3), free_port_run(3));
    let mut wrong = dev_cluster(dir.path(), other);
    let status = wrong.wait_exit(Duration::from_secs(10));
    let said = wrong.kill_and_stderr();
    assert!(status.is_some_and(|s| !s.success()), "refused: {said}");
    assert!(
        said.contains("run again with those ports"),
        "says why: {said}"
    );
}
