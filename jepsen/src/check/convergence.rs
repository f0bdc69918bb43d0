//! Checks that the nodes converged: after healing, every node answers and
//! all hold the same sessions (with the same subscriptions) and the same
//! retained messages.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Tally, Verdict};

/// What one node reported at the end of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeState {
    pub node: u64,
    /// Client id -> its subscription filters, sorted.
    pub sessions: BTreeMap<String, Vec<String>>,
    /// Topic -> retained payload.
    pub retained: BTreeMap<String, String>,
    /// Set when the node did not answer (then the maps are ignored).
    pub error: Option<String>,
}

const COUNTS: &[&str] = &[
    "nodes",
    "unanswered",
    "session-differences",
    "retained-differences",
];

/// Compares the nodes' final states. `session-differences` and
/// `retained-differences` count the client ids and topics on which two
/// answering nodes disagree (one lacking an entry the other has counts);
/// subscription lists are compared as sorted lists.
pub fn check_convergence(nodes: &[NodeState]) -> Verdict {
    let mut t = Tally::new(COUNTS);
    t.set("nodes", nodes.len() as u64);
    let mut answering: Vec<&NodeState> = Vec::new();
    for n in nodes {
        match &n.error {
            Some(err) => {
                t.add("unanswered", 1);
                t.example("unanswered", || {
                    format!("node {} did not answer: {err}", n.node)
                });
            }
            None => answering.push(n),
        }
    }

    let sessions: Vec<(u64, BTreeMap<&str, Vec<&str>>)> = answering
        .iter()
        .map(|n| {
            let map = n
                .sessions
                .iter()
                .map(|(c, subs)| {
                    let mut subs: Vec<&str> = subs.iter().map(String::as_str).collect();
                    subs.sort_unstable();
                    (c.as_str(), subs)
                })
                .collect();
            (n.node, map)
        })
        .collect();
    let n = differences(&sessions, |subs| format!("[{}]", subs.join(", ")));
    t.set("session-differences", n.len() as u64);
    for text in n {
        t.example("session-differences", || format!("session {text}"));
    }

    let retained: Vec<(u64, BTreeMap<&str, &str>)> = answering
        .iter()
        .map(|n| {
            let map = n
                .retained
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (n.node, map)
        })
        .collect();
    let n = differences(&retained, |v| format!("{v:?}"));
    t.set("retained-differences", n.len() as u64);
    for text in n {
        t.example("retained-differences", || format!("retained {text}"));
    }

    t.verdict(
        "convergence",
        &["unanswered", "session-differences", "retained-differences"],
    )
}

/// For every key on which the maps do not all agree (present with equal
/// values everywhere), a line saying what each node holds.
fn differences<V: PartialEq>(
    maps: &[(u64, BTreeMap<&str, V>)],
    show: impl Fn(&V) -> String,
) -> Vec<String> {
    let keys: BTreeSet<&str> = maps.iter().flat_map(|(_, m)| m.keys().copied()).collect();
    let mut out = Vec::new();
    for key in keys {
        let held: Vec<(u64, Option<&V>)> = maps.iter().map(|(n, m)| (*n, m.get(key))).collect();
        if held.windows(2).all(|w| w[0].1 == w[1].1) {
            continue;
        }
        let each: Vec<String> = held
            .iter()
            .map(|(n, v)| match v {
                Some(v) => format!("node {n} has {}", show(v)),
                None => format!("node {n} has none"),
            })
            .collect();
        out.push(format!("{key}: {}", each.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, sessions: &[(&str, &[&str])], retained: &[(&str, &str)]) -> NodeState {
        NodeState {
            node: id,
            sessions: sessions
                .iter()
                .map(|(c, s)| (c.to_string(), s.iter().map(|x| x.to_string()).collect()))
                .collect(),
            retained: retained
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            error: None,
        }
    }

    #[test]
    fn identical_nodes_have_converged() {
        let n: Vec<NodeState> = (1..=3)
            .map(|i| node(i, &[("c1", &["a/#", "b"]), ("c2", &[])], &[("t", "1")]))
            .collect();
        let v = check_convergence(&n);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("nodes"), 3);
        assert!(v.counts.contains_key("retained-differences"));
    }

    #[test]
    fn subscription_order_does_not_matter() {
        let v = check_convergence(&[
            node(1, &[("c1", &["a", "b"])], &[]),
            node(2, &[("c1", &["b", "a"])], &[]),
        ]);
        assert!(v.valid, "{v:?}");
    }

    #[test]
    fn a_node_that_does_not_answer_is_a_violation() {
        let mut down = node(3, &[], &[]);
        down.error = Some("connection refused".into());
        let v = check_convergence(&[node(1, &[], &[]), node(2, &[], &[]), down]);
        assert!(!v.valid);
        assert_eq!(v.count("unanswered"), 1);
        assert_eq!(v.count("session-differences"), 0);
        assert_eq!(
            v.examples,
            ["unanswered: node 3 did not answer: connection refused"]
        );
    }

    #[test]
    fn a_session_missing_or_different_on_one_node_is_a_difference() {
        let v = check_convergence(&[
            node(1, &[("c1", &["a"]), ("c2", &["x"])], &[]),
            node(2, &[("c1", &["a"]), ("c2", &["x", "y"])], &[]),
            node(3, &[("c2", &["x"])], &[]),
        ]);
        assert!(!v.valid);
        assert_eq!(v.count("session-differences"), 2);
        assert_eq!(
            v.examples,
            [
                "session-differences: session c1: node 1 has [a], node 2 has [a], node 3 has none",
                "session-differences: session c2: node 1 has [x], node 2 has [x, y], node 3 has [x]",
            ]
        );
    }

    #[test]
    fn a_retained_message_that_differs_between_nodes_is_a_difference() {
        let v = check_convergence(&[
            node(1, &[], &[("t", "1"), ("u", "5")]),
            node(2, &[], &[("t", "2"), ("u", "5")]),
        ]);
        assert!(!v.valid);
        assert_eq!(v.count("retained-differences"), 1);
        assert_eq!(
            v.examples,
            ["retained-differences: retained t: node 1 has \"1\", node 2 has \"2\""]
        );
    }

    #[test]
    fn no_nodes_is_trivially_converged() {
        assert!(check_convergence(&[]).valid);
    }
}
