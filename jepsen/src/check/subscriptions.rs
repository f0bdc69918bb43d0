//! Checks that subscriptions survive the faults: every subscription made
//! (acknowledged) before them receives the probe published to its topic
//! after them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::history::{History, Kind, Micros, Op, Workload};

use super::{orphan_completions, secs, Tally, Verdict};

const COUNTS: &[&str] = &[
    "subscriptions",
    "probes",
    "probed",
    "lost",
    "unprobed",
    "orphan-completions",
];

/// Checks the subscriptions workload.
///
/// A subscription is a distinct (client, topic) with an `Ok` SUBSCRIBE; it
/// is probed by the acknowledged probe publishes on its topic invoked after
/// its SUBSCRIBE completed. It is `lost` if some such probe never reached
/// it, `unprobed` if there is no such probe (the probe failed, its outcome
/// is unknown, or there was none): counted, not a violation.
pub fn check(h: &History) -> Verdict {
    const W: Workload = Workload::Subscriptions;
    let mut t = Tally::new(COUNTS);
    // (client, topic) -> earliest acknowledged SUBSCRIBE.
    let mut subs: BTreeMap<(&str, &str), Micros> = BTreeMap::new();
    // topic -> acknowledged probes (invocation time, id).
    let mut probes: BTreeMap<&str, Vec<(Micros, u64)>> = BTreeMap::new();
    for op in h.operations() {
        match &op.invoke.op {
            Op::Subscribe {
                workload,
                client,
                topic,
                ..
            } if *workload == W => {
                if let (Kind::Ok, Some(end)) = (op.outcome(), op.end()) {
                    let at = subs.entry((client, topic)).or_insert(end);
                    *at = (*at).min(end);
                }
            }
            Op::Publish {
                workload,
                topic,
                id,
                ..
            } if *workload == W => {
                t.add("probes", 1);
                if op.outcome() == Kind::Ok {
                    probes.entry(topic).or_default().push((op.invoke.t, *id));
                }
            }
            _ => {}
        }
    }
    let received: HashSet<(&str, u64)> = h
        .observations()
        .filter_map(|e| match &e.op {
            Op::Deliver {
                workload,
                client,
                id,
                ..
            } if *workload == W => Some((client.as_str(), *id)),
            _ => None,
        })
        .collect();

    t.set("subscriptions", subs.len() as u64);
    for (&(client, topic), &since) in &subs {
        let owed: BTreeSet<(Micros, u64)> = probes
            .get(topic)
            .into_iter()
            .flatten()
            .filter(|(at, _)| *at > since)
            .copied()
            .collect();
        if owed.is_empty() {
            t.add("unprobed", 1);
            continue;
        }
        t.add("probed", 1);
        let missed: Vec<(Micros, u64)> = owed
            .into_iter()
            .filter(|&(_, id)| !received.contains(&(client, id)))
            .collect();
        if let Some(&(at, id)) = missed.first() {
            t.add("lost", 1);
            t.example("lost", || {
                format!(
                    "{client}'s subscription to {topic} (acknowledged {}) never received probe {id} (published {}, acknowledged)",
                    secs(since),
                    secs(at)
                )
            });
        }
    }
    t.set(
        "orphan-completions",
        orphan_completions(h, |op| match op {
            Op::Publish { workload, .. } | Op::Subscribe { workload, .. } => *workload == W,
            _ => false,
        }),
    );
    t.verdict("subscriptions", &["lost"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    const S: Workload = Workload::Subscriptions;

    #[test]
    fn subscriptions_that_receive_their_probes_are_valid() {
        let mut h = H::new();
        h.call("a", Kind::Ok, subscribe(S, "a", "t1"));
        h.call("b", Kind::Ok, subscribe(S, "b", "t1"));
        h.call("b", Kind::Ok, subscribe(S, "b", "t2"));
        h.call("c", Kind::Fail, subscribe(S, "c", "t2"));
        h.event(
            "nemesis",
            Op::Note {
                text: "faults".into(),
            },
        );
        h.call("probe", Kind::Ok, publish(S, "probe", "t1", 1));
        h.call("probe", Kind::Ok, publish(S, "probe", "t2", 2));
        h.deliver(S, "a", "t1", 1);
        h.deliver(S, "b", "t1", 1);
        h.deliver(S, "b", "t2", 2);
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("subscriptions"), 3);
        assert_eq!(v.count("probed"), 3);
        assert_eq!(v.count("probes"), 2);
        assert_eq!(v.count("lost"), 0);
    }

    #[test]
    fn a_subscription_that_misses_its_acknowledged_probe_is_lost() {
        let mut h = H::new();
        h.call("a", Kind::Ok, subscribe(S, "a", "t1"));
        h.call("b", Kind::Ok, subscribe(S, "b", "t1"));
        h.call("probe", Kind::Ok, publish(S, "probe", "t1", 1));
        h.deliver(S, "a", "t1", 1);
        // b got a delivery, but of the queue workload.
        h.deliver(Workload::Queue, "b", "t1", 1);
        let v = check(&h.history());
        assert!(!v.valid);
        assert_eq!(v.count("lost"), 1);
        assert!(
            v.examples[0].starts_with("lost: b's subscription to t1"),
            "{v:?}"
        );
    }

    #[test]
    fn a_subscription_whose_probe_failed_or_is_unknown_is_unprobed() {
        let mut h = H::new();
        h.call("a", Kind::Ok, subscribe(S, "a", "t1"));
        h.call("b", Kind::Ok, subscribe(S, "b", "t2"));
        h.call("c", Kind::Ok, subscribe(S, "c", "t3"));
        h.call("probe", Kind::Fail, publish(S, "probe", "t1", 1));
        h.call("probe", Kind::Info, publish(S, "probe", "t2", 2));
        // No probe at all on t3.
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("unprobed"), 3);
        assert_eq!(v.count("probed"), 0);
    }

    #[test]
    fn a_probe_invoked_before_the_subscription_completed_does_not_probe_it() {
        let mut h = H::new();
        let s = h.invoke("a", subscribe(S, "a", "t1"));
        h.call("probe", Kind::Ok, publish(S, "probe", "t1", 1));
        h.ok(s, subscribe(S, "a", "t1"));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("unprobed"), 1);
    }
}
