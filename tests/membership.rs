//! Membership that cannot wedge, and node identity (docs/design.md §4), on
//! clusters of real `raftmq` processes: a change whose request is killed is
//! finished by the leader, a node under a member's id with another data
//! directory is refused and changes nothing, a member restarted at new
//! ports with its own data is accepted there, and `--join`, `cluster join`
//! and `cluster leave` end with a clear answer within their bounds.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `raftmq ARGS --admin <node's HTTP address>`, killed after `limit` (as
/// `timeout 5 raftmq ...` would).
fn cli_killed_after(b: &Broker, args: &[&str], limit: Duration) -> CmdOutput {
    run_cmd(
        Command::new(broker_bin())
            .args(args)
            .arg("--admin")
            .arg(format!("127.0.0.1:{}", b.http_port)),
        limit,
    )
}

/// The row of member `id` in a `cluster show` answer.
fn member(show: &serde_json::Value, id: u64) -> Option<serde_json::Value> {
    show["table"]
        .as_array()?
        .iter()
        .find(|r| r["node"].as_u64() == Some(id))
        .cloned()
}

/// The leader and the two other nodes of a three-node cluster.
fn roles(c: &mut Cluster) -> (u64, u64, u64) {
    let l = c.wait_leader(WAIT);
    let others: Vec<u64> = (1..=3).filter(|&i| i != l).collect();
    (l, others[0], others[1])
}

/// Kills the leader's two followers `a` and `b`, then runs `cluster leave
/// node=b` on the leader `l` and kills the command after `limit`, as
/// `timeout` would: the leave cannot commit without a quorum.
fn leave_cancelled_without_quorum(c: &mut Cluster, (l, a, b): (u64, u64, u64), limit: Duration) {
    c.node_mut(a).kill9();
    c.node_mut(b).kill9();
    let out = cli_killed_after(
        c.node(l),
        &["cluster", "leave", &format!("node={b}")],
        limit,
    );
    assert!(out.timed_out, "the CLI was still waiting: {out:?}");
}

/// Waits until `cluster show` (asked of node `via`) says no change is in
/// progress and `gone` is not a member.
fn wait_settled_without(c: &Cluster, via: u64, gone: u64, limit: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(limit, || {
        last = c.node(via).api("/api/v1/cluster/show").1;
        last["membership_change_in_progress"] == false && member(&last, gone).is_none()
    });
    assert!(ok, "the change was not finished within {limit:?}: {last}");
    last
}

#[test]
fn a_cancelled_leave_is_finished_by_the_leader_once_the_nodes_restart() {
    let mut c = Cluster::start(3);
    let (l, a, b) = roles(&mut c);
    leave_cancelled_without_quorum(&mut c, (l, a, b), Duration::from_secs(4));
    c.node_mut(a).start_no_wait();
    c.node_mut(b).start_no_wait();
    c.node_mut(a).wait_ready();
    let show = wait_settled_without(&c, l, b, Duration::from_secs(30));
    assert!(
        member(&show, a).is_some() && member(&show, l).is_some(),
        "{show}"
    );
    assert!(show["change_in_progress"].is_null(), "{show}");

    // Membership is not frozen: a new node joins, and a node leaves.
    c.node_mut(b).kill9();
    let four = c.add_node() as u64 + 1;
    let show = c.show();
    assert_eq!(member(&show, four).unwrap()["role"], "voter", "{show}");
    let out = c
        .node(l)
        .cli(&["cluster", "leave", &format!("node={four}"), "-k"]);
    out.assert_success("leave of the fourth node");
    assert!(
        out.stdout
            .contains(&format!("removing node {four} from the voters")),
        "the stages are printed: {}",
        out.stdout
    );
    wait_settled_without(&c, l, four, WAIT);
}

#[test]
fn an_interrupted_leave_is_finished_by_the_next_leader_after_a_restart() {
    let mut c = Cluster::start(3);
    let (l, a, b) = roles(&mut c);
    leave_cancelled_without_quorum(&mut c, (l, a, b), Duration::from_secs(3));
    // The joint configuration is in the old leader's log only; the task
    // that ran the change dies with the process.
    c.node_mut(l).kill9();
    c.node_mut(l).start_no_wait();
    c.node_mut(a).start_no_wait();
    c.node_mut(l).wait_ready();
    c.node_mut(a).wait_ready();
    let show = wait_settled_without(&c, l, b, Duration::from_secs(30));
    assert_eq!(
        (member(&show, l).is_some(), member(&show, a).is_some()),
        (true, true),
        "{show}"
    );
    assert!(
        c.node(show["leader"].as_u64().unwrap())
            .log_tail(2000)
            .contains("finishing the interrupted change"),
        "the leader's driver finished it"
    );
}

#[test]
fn a_leave_past_its_timeout_fails_saying_it_continues_and_the_leader_finishes_it() {
    let mut c = Cluster::start(3);
    let (l, a, b) = roles(&mut c);
    // Without a quorum the leave cannot commit. (Killed and restarted, not
    // paused: resumed processes would elect a leader without the change.)
    c.node_mut(a).kill9();
    c.node_mut(b).kill9();
    let began = Instant::now();
    let out = c
        .node(l)
        .cli(&["cluster", "leave", &format!("node={b}"), "-t", "2"]);
    let took = began.elapsed();
    let show = c.node(l).api("/api/v1/cluster/show").1;
    c.node_mut(a).start_no_wait();
    c.node_mut(b).start_no_wait();
    assert!(!out.success(), "{out:?}");
    assert!(took < Duration::from_secs(15), "--timeout 2 took {took:?}");
    assert!(
        out.stderr.contains("continues on the leader") && out.stderr.contains("cluster show"),
        "{}",
        out.stderr
    );
    assert_eq!(
        show["change_in_progress"]["what"],
        format!("leave of node {b}"),
        "cluster show says what is in progress: {show}"
    );
    assert!(
        show["change_in_progress"]["since_ms"].as_u64().is_some(),
        "{show}"
    );
    wait_settled_without(&c, l, b, Duration::from_secs(30));
}

#[test]
fn cluster_show_prints_the_change_in_progress_as_a_line() {
    let mut c = Cluster::start(3);
    let (l, a, b) = roles(&mut c);
    let idle = c.node(l).cli(&["cluster", "show"]);
    idle.assert_success("cluster show");
    assert!(
        idle.stdout.contains("no membership change in progress"),
        "{}",
        idle.stdout
    );
    c.node_mut(a).kill9();
    c.node_mut(b).kill9();
    let _ = c
        .node(l)
        .cli(&["cluster", "leave", &format!("node={b}"), "-t", "1"]);
    let busy = c.node(l).cli(&["cluster", "show"]);
    c.node_mut(a).start_no_wait();
    c.node_mut(b).start_no_wait();
    assert!(
        busy.stdout
            .contains(&format!("membership change in progress: leave of node {b}")),
        "{}",
        busy.stdout
    );
    wait_settled_without(&c, l, b, Duration::from_secs(30));
}

#[test]
fn a_node_with_a_members_id_and_another_data_directory_is_refused_and_changes_nothing() {
    let mut c = Cluster::start(3);
    let before = c.show();
    let mut impostor = Broker::unstarted_node(2, Some(c.node(1).cluster_port), None);
    impostor.start_no_wait();
    let status = impostor.wait_exit(Duration::from_secs(30));
    let log = impostor.log_tail(40);
    assert!(
        status.is_some_and(|s| !s.success()),
        "exits non-zero ({status:?}):\n{log}"
    );
    assert!(
        log.contains(
            "node 2 is already a member with another data directory; remove it with cluster leave first"
        ),
        "{log}"
    );
    let after = c.show();
    for id in 1..=3 {
        let (was, is) = (member(&before, id).unwrap(), member(&after, id).unwrap());
        for k in ["cluster", "mqtt", "http", "role"] {
            assert_eq!(was[k], is[k], "node {id} {k}: {before} -> {after}");
        }
    }
    assert_eq!(after["table"].as_array().map(Vec::len), Some(3), "{after}");
    let (code, _) = c.node(2).api("/health");
    assert_eq!(code, 200, "the real node 2 is healthy");
    let (mut s, _) = RawClient::v3(c.node(2).mqtt_port, "real-two", true);
    s.subscribe("two/x", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::v3(c.node(1).mqtt_port, "two-pub", true);
    p.publish("two/x", b"still here", QoS::AtLeastOnce, false);
    assert_eq!(&s.expect_publish(WAIT).payload[..], b"still here");
}

#[test]
fn a_member_restarted_at_new_ports_with_its_own_data_is_listed_at_its_new_addresses() {
    let mut c = Cluster::start(3);
    let f = c.follower();
    let n = c.node_mut(f);
    n.kill9();
    n.mqtt_port = free_port();
    n.http_port = free_port();
    n.cluster_port = free_port();
    n.restart();
    let (mqtt, http, cluster) = (n.mqtt_port, n.http_port, n.cluster_port);
    let mut row = serde_json::Value::Null;
    let listed = wait_until(WAIT, || {
        row = member(&c.show(), f).unwrap_or_default();
        row["cluster"] == format!("127.0.0.1:{cluster}")
    });
    assert!(listed, "{row}");
    assert_eq!(row["mqtt"], format!("127.0.0.1:{mqtt}"));
    assert_eq!(row["http"], format!("127.0.0.1:{http}"));
    assert_eq!(row["role"], "voter");
    let (mut s, _) = RawClient::v3(mqtt, "moved-sub", true);
    s.subscribe("moved/x", QoS::AtLeastOnce);
    let other = (1..=3).find(|&i| i != f).unwrap();
    let (mut p, _) = RawClient::v3(c.node(other).mqtt_port, "moved-pub", true);
    p.publish("moved/x", b"found", QoS::AtLeastOnce, false);
    assert_eq!(&s.expect_publish(WAIT).payload[..], b"found");
}

#[test]
fn join_to_an_address_where_nothing_listens_exits_naming_the_address() {
    let dead = free_port();
    let mut n = Broker::unstarted_node(2, Some(dead), Some("join_timeout = 3\n".into()));
    let began = Instant::now();
    n.start_no_wait();
    let status = n.wait_exit(Duration::from_secs(30));
    let log = n.log_tail(40);
    assert!(
        status.is_some_and(|s| !s.success()),
        "exits non-zero within the bound ({status:?}, {:?}):\n{log}",
        began.elapsed()
    );
    assert!(
        log.contains(&format!(
            "could not join a cluster through 127.0.0.1:{dead}"
        )),
        "{log}"
    );
    let retries = log.matches("join failed; retrying").count();
    assert!(
        retries <= 2,
        "a repeating error is logged once, not {retries} times:\n{log}"
    );
}

#[test]
fn cluster_join_on_a_removed_node_fails_and_says_how_to_rejoin() {
    let mut c = Cluster::start(3);
    let f = c.follower();
    let via = (1..=3).find(|&i| i != f).unwrap();
    c.node(via)
        .cli(&["cluster", "leave", &format!("node={f}"), "-k"])
        .assert_success("leave");
    c.wait_voters(2);
    let discovery = format!("discovery-node=127.0.0.1:{}", c.node(via).cluster_port);
    let out = c.node(f).cli(&["cluster", "join", &discovery]);
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("node {f} was removed from its cluster"))
            && out.stderr.contains("empty data directory and --join"),
        "{}",
        out.stderr
    );
}

#[test]
fn repeated_joins_and_leaves_succeed_saying_nothing_changed() {
    let mut c = Cluster::start(3);
    let f = c.follower();
    let via = (1..=3).find(|&i| i != f).unwrap();
    let discovery = format!("discovery-node=127.0.0.1:{}", c.node(via).cluster_port);
    let again = c.node(f).cli(&["cluster", "join", &discovery]);
    again.assert_success("join of a member");
    assert!(
        again.stdout.contains("already a member"),
        "{}",
        again.stdout
    );

    c.node_mut(f).kill9();
    let leave = ["cluster", "leave", &format!("node={f}")];
    c.node(via).cli(&leave).assert_success("leave");
    c.wait_voters(2);
    let twice = c.node(via).cli(&leave);
    twice.assert_success("the same leave again");
    assert!(twice.stdout.contains("already left"), "{}", twice.stdout);
    let never = c.node(via).cli(&["cluster", "leave", "node=77"]);
    assert!(
        !never.success(),
        "a node that never was a member: {never:?}"
    );
}
