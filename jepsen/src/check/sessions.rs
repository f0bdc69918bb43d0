//! Checks that one client id never has two live sessions at once: two
//! connections of the same client, each shown live (an acknowledged touch)
//! after both were registered (both CONNACKs), overlapped.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{History, Kind, Micros, Op};

use super::{orphan_completions, secs, Tally, Verdict};

const COUNTS: &[&str] = &[
    "connections",
    "refused",
    "unknown",
    "touches",
    "overlapping-pairs",
    "client-ids",
    "orphan-completions",
];

/// One accepted connection.
#[derive(Debug, Clone, Copy)]
struct Conn {
    conn: u64,
    /// When its CONNACK arrived (the CONNECT's completion).
    connack: Micros,
    /// The latest invocation of an acknowledged touch on it, if any.
    last_touch: Option<Micros>,
}

/// Checks every client id (of any workload) for overlapping sessions.
///
/// For connections a and b of one client, let T be the later of their two
/// CONNACKs. If each has an acknowledged touch *invoked* after T, the broker
/// served both sessions after it had registered both: an overlap. The rule
/// holds whichever registration the broker committed first. Touches on a
/// connection whose CONNECT did not complete `Ok` are counted but not used.
pub fn check(h: &History) -> Verdict {
    let mut t = Tally::new(COUNTS);
    let mut client_ids: BTreeSet<&str> = BTreeSet::new();
    // client -> conn id -> connection.
    let mut conns: BTreeMap<&str, BTreeMap<u64, Conn>> = BTreeMap::new();
    // (client, conn) -> latest Ok touch invocation.
    let mut touches: BTreeMap<(&str, u64), Micros> = BTreeMap::new();
    for op in h.operations() {
        match &op.invoke.op {
            Op::Connect { client, conn, .. } => {
                client_ids.insert(client);
                match (op.outcome(), op.end()) {
                    (Kind::Ok, Some(end)) => {
                        t.add("connections", 1);
                        // A reused conn id keeps its first CONNACK.
                        conns
                            .entry(client)
                            .or_default()
                            .entry(*conn)
                            .or_insert(Conn {
                                conn: *conn,
                                connack: end,
                                last_touch: None,
                            });
                    }
                    (Kind::Fail, _) => t.add("refused", 1),
                    _ => t.add("unknown", 1),
                }
            }
            Op::Touch { client, conn, .. } if op.outcome() == Kind::Ok => {
                t.add("touches", 1);
                let at = touches.entry((client, *conn)).or_insert(op.invoke.t);
                *at = (*at).max(op.invoke.t);
            }
            _ => {}
        }
    }
    t.set("client-ids", client_ids.len() as u64);
    for ((client, conn), at) in touches {
        if let Some(c) = conns.get_mut(client).and_then(|m| m.get_mut(&conn)) {
            c.last_touch = Some(at);
        }
    }

    for (client, by_id) in &conns {
        // Only touched connections can overlap; sorted by CONNACK so the
        // later of a pair is the one being visited.
        let mut live: Vec<Conn> = by_id
            .values()
            .filter(|c| c.last_touch.is_some())
            .copied()
            .collect();
        live.sort_by_key(|c| (c.connack, c.conn));
        for (i, b) in live.iter().enumerate() {
            let since = b.connack;
            if b.last_touch.is_none_or(|x| x <= since) {
                continue;
            }
            for a in &live[..i] {
                if a.last_touch.is_some_and(|x| x > since) {
                    t.add("overlapping-pairs", 1);
                    t.example("overlapping-pairs", || {
                        format!(
                            "client {client}: conn {} (CONNACK {}, touched {}) and conn {} (CONNACK {}, touched {}) both live after {}",
                            a.conn,
                            secs(a.connack),
                            secs(a.last_touch.unwrap_or_default()),
                            b.conn,
                            secs(b.connack),
                            secs(b.last_touch.unwrap_or_default()),
                            secs(since)
                        )
                    });
                }
            }
        }
    }

    t.set(
        "orphan-completions",
        orphan_completions(h, |op| matches!(op, Op::Connect { .. } | Op::Touch { .. })),
    );
    t.verdict("sessions", &["overlapping-pairs"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    #[test]
    fn a_takeover_where_the_old_connection_stops_being_live_is_valid() {
        let mut h = H::new();
        h.call("p1", Kind::Ok, connect("c", 1));
        h.call("p1", Kind::Ok, touch("c", 1));
        h.call("p2", Kind::Ok, connect("c", 2));
        // The old connection is refused from now on.
        h.call("p1", Kind::Fail, touch("c", 1));
        h.call("p1", Kind::Info, touch("c", 1));
        h.call("p2", Kind::Ok, touch("c", 2));
        h.call("p3", Kind::Fail, connect("c", 3));
        h.invoke("p4", connect("d", 4));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("connections"), 2);
        assert_eq!(v.count("refused"), 1);
        assert_eq!(v.count("unknown"), 1);
        assert_eq!(v.count("touches"), 2);
        assert_eq!(v.count("client-ids"), 2);
        assert_eq!(v.count("overlapping-pairs"), 0);
    }

    #[test]
    fn two_connections_acknowledged_after_both_connacks_overlap() {
        let mut h = H::new();
        h.call("p1", Kind::Ok, connect("c", 1));
        h.call("p2", Kind::Ok, connect("c", 2));
        h.call("p1", Kind::Ok, touch("c", 1));
        h.call("p2", Kind::Ok, touch("c", 2));
        let v = check(&h.history());
        assert!(!v.valid);
        assert_eq!(v.count("overlapping-pairs"), 1);
        assert!(
            v.examples[0].starts_with("overlapping-pairs: client c: conn 1"),
            "{v:?}"
        );
    }

    #[test]
    fn the_order_of_the_connacks_does_not_matter() {
        // conn 2 is invoked first but acknowledged last.
        let mut h = H::new();
        let b = h.invoke("p2", connect("c", 2));
        h.call("p1", Kind::Ok, connect("c", 1));
        h.ok(b, connect("c", 2));
        let t1 = h.invoke("p1", touch("c", 1));
        h.call("p2", Kind::Ok, touch("c", 2));
        h.ok(t1, touch("c", 1));
        let v = check(&h.history());
        assert_eq!(v.count("overlapping-pairs"), 1, "{v:?}");
    }

    #[test]
    fn a_touch_invoked_before_the_later_connack_proves_no_overlap() {
        // The touch on conn 1 was invoked before conn 2's CONNACK, even
        // though it completed after: it may have been served before the
        // takeover.
        let mut h = H::new();
        h.call("p1", Kind::Ok, connect("c", 1));
        let t1 = h.invoke("p1", touch("c", 1));
        h.call("p2", Kind::Ok, connect("c", 2));
        h.ok(t1, touch("c", 1));
        h.call("p2", Kind::Ok, touch("c", 2));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
    }

    #[test]
    fn different_client_ids_never_overlap() {
        let mut h = H::new();
        h.call("p1", Kind::Ok, connect("c", 1));
        h.call("p2", Kind::Ok, connect("d", 2));
        h.call("p1", Kind::Ok, touch("c", 1));
        h.call("p2", Kind::Ok, touch("d", 2));
        // A touch on a connection that was never accepted.
        h.call("p3", Kind::Ok, touch("c", 9));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("touches"), 3);
    }

    #[test]
    fn three_live_connections_make_three_overlapping_pairs() {
        let mut h = H::new();
        for c in 1..=3 {
            h.call("p", Kind::Ok, connect("c", c));
        }
        for c in 1..=3 {
            h.call("p", Kind::Ok, touch("c", c));
        }
        let v = check(&h.history());
        assert_eq!(v.count("overlapping-pairs"), 3, "{v:?}");
        assert_eq!(v.examples.len(), 3);
    }
}
