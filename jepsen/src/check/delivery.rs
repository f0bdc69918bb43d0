//! Checks message delivery for the queue (QoS 1) and exactly-once (QoS 2)
//! workloads: every acknowledged publish reaches every subscriber whose
//! subscription completed before the publish began; a refused publish
//! reaches nobody; nothing arrives that was never published; and, for QoS 2,
//! nothing arrives twice.

use std::collections::{BTreeMap, HashMap};

use crate::history::{History, Kind, Micros, Op, Workload};

use super::{orphan_completions, secs, Tally, Verdict};

/// Every count this checker reports.
const COUNTS: &[&str] = &[
    "acknowledged",
    "failed",
    "unknown",
    "delivered",
    "expected-deliveries",
    "lost",
    "lost-deliveries",
    "recovered",
    "unknown-delivered",
    "unexpected",
    "duplicated",
    "subscriptions",
    "orphan-completions",
];

/// The checker's name for a workload.
pub fn checker_name(w: Workload) -> &'static str {
    match w {
        Workload::Queue => "queue",
        Workload::ExactlyOnce => "exactly-once",
        Workload::Registration => "registration",
        Workload::Register => "register",
        Workload::Subscriptions => "subscriptions",
    }
}

/// One publish of the workload.
struct Publish<'a> {
    topic: &'a str,
    client: &'a str,
    invoked: Micros,
    outcome: Kind,
}

/// Checks the deliveries of workload `w` (meant for [`Workload::Queue`] and
/// [`Workload::ExactlyOnce`]; duplicates are a violation only for the
/// latter).
///
/// A delivery is `unexpected` when its id was never invoked as a publish of
/// this workload, when it arrived on another topic than the one published,
/// or when it was recorded before the publish was invoked. Unexpected
/// deliveries take no further part (they neither satisfy nor duplicate).
/// `delivered` counts distinct (id, subscriber) pairs of the other
/// deliveries, to expected subscribers or not.
pub fn check(h: &History, w: Workload) -> Verdict {
    let mut t = Tally::new(COUNTS);
    let strict_once = w == Workload::ExactlyOnce;

    // topic -> client -> earliest Ok SUBSCRIBE completion.
    let mut subscribed: HashMap<&str, BTreeMap<&str, Micros>> = HashMap::new();
    // id -> the publish; ids are unique per run, a reuse keeps the first.
    let mut publishes: BTreeMap<u64, Publish<'_>> = BTreeMap::new();
    for op in h.operations() {
        match &op.invoke.op {
            Op::Subscribe {
                workload,
                client,
                topic,
                ..
            } if *workload == w => {
                if let (Kind::Ok, Some(end)) = (op.outcome(), op.end()) {
                    let at = subscribed
                        .entry(topic.as_str())
                        .or_default()
                        .entry(client.as_str())
                        .or_insert(end);
                    *at = (*at).min(end);
                }
            }
            Op::Publish {
                workload,
                client,
                topic,
                id,
                ..
            } if *workload == w => {
                let outcome = op.outcome();
                t.add(
                    match outcome {
                        Kind::Ok => "acknowledged",
                        Kind::Fail => "failed",
                        _ => "unknown",
                    },
                    1,
                );
                publishes.entry(*id).or_insert(Publish {
                    topic,
                    client,
                    invoked: op.invoke.t,
                    outcome,
                });
            }
            _ => {}
        }
    }
    t.set(
        "subscriptions",
        subscribed.values().map(|s| s.len() as u64).sum(),
    );

    // (id, subscriber) -> how many times it arrived.
    let mut received: BTreeMap<(u64, &str), u64> = BTreeMap::new();
    for e in h.observations() {
        let Op::Deliver {
            workload,
            client,
            topic,
            id,
            ..
        } = &e.op
        else {
            continue;
        };
        if *workload != w {
            continue;
        }
        match publishes.get(id) {
            None => {
                t.add("unexpected", 1);
                t.example("unexpected", || {
                    format!(
                        "{client} received message {id} on {topic} at {}, never published",
                        secs(e.t)
                    )
                });
            }
            Some(p) if p.topic != topic => {
                t.add("unexpected", 1);
                t.example("unexpected", || {
                    format!(
                        "{client} received message {id} on {topic} at {}, published on {}",
                        secs(e.t),
                        p.topic
                    )
                });
            }
            Some(p) if e.t < p.invoked => {
                t.add("unexpected", 1);
                t.example("unexpected", || {
                    format!(
                        "{client} received message {id} on {topic} at {}, before its publish began at {}",
                        secs(e.t),
                        secs(p.invoked)
                    )
                });
            }
            Some(_) => *received.entry((*id, client.as_str())).or_insert(0) += 1,
        }
    }
    t.set("delivered", received.len() as u64);
    for (&(id, client), &n) in &received {
        if n > 1 {
            t.add("duplicated", 1);
            t.example("duplicated", || {
                format!("{client} received message {id} {n} times")
            });
        }
    }

    let no_subscribers = BTreeMap::new();
    for (&id, p) in &publishes {
        let delivered_to_anyone = received
            .range((id, "")..)
            .next()
            .is_some_and(|(k, _)| k.0 == id);
        match p.outcome {
            Kind::Ok => {
                let subs = subscribed.get(p.topic).unwrap_or(&no_subscribers);
                let mut missing = Vec::new();
                for (&client, &since) in subs {
                    if since < p.invoked {
                        t.add("expected-deliveries", 1);
                        if !received.contains_key(&(id, client)) {
                            missing.push(client);
                        }
                    }
                }
                if !missing.is_empty() {
                    t.add("lost", 1);
                    t.add("lost-deliveries", missing.len() as u64);
                    t.example("lost", || {
                        format!(
                            "message {id} on {} (published by {} at {}, acknowledged) never reached {}",
                            p.topic,
                            p.client,
                            secs(p.invoked),
                            missing.join(", ")
                        )
                    });
                }
            }
            Kind::Fail if delivered_to_anyone => {
                t.add("recovered", 1);
                t.example("recovered", || {
                    format!(
                        "message {id} on {} (published by {} at {}) was refused yet delivered",
                        p.topic,
                        p.client,
                        secs(p.invoked)
                    )
                });
            }
            Kind::Fail => {}
            _ if delivered_to_anyone => t.add("unknown-delivered", 1),
            _ => {}
        }
    }

    t.set(
        "orphan-completions",
        orphan_completions(h, |op| match op {
            Op::Publish { workload, .. } | Op::Subscribe { workload, .. } => *workload == w,
            _ => false,
        }),
    );

    let mut violations = vec!["lost", "recovered", "unexpected"];
    if strict_once {
        violations.push("duplicated");
    }
    t.verdict(checker_name(w), &violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;

    const Q: Workload = Workload::Queue;
    const X: Workload = Workload::ExactlyOnce;

    /// Two subscribers on "t", both subscribed before anything is published.
    fn subscribed(w: Workload) -> H {
        let mut h = H::new();
        h.call("s1", Kind::Ok, subscribe(w, "s1", "t"));
        h.call("s2", Kind::Ok, subscribe(w, "s2", "t"));
        h
    }

    #[test]
    fn every_acknowledged_message_delivered_to_every_subscriber_is_valid() {
        for w in [Q, X] {
            let mut h = subscribed(w);
            for id in 1..=3 {
                h.call("p", Kind::Ok, publish(w, "p", "t", id));
                h.deliver(w, "s1", "t", id);
                h.deliver(w, "s2", "t", id);
            }
            let v = check(&h.history(), w);
            assert!(v.valid, "{v:?}");
            assert_eq!(v.checker, checker_name(w));
            assert_eq!(v.count("acknowledged"), 3);
            assert_eq!(v.count("delivered"), 6);
            assert_eq!(v.count("expected-deliveries"), 6);
            assert_eq!(v.count("lost"), 0);
            assert_eq!(v.count("subscriptions"), 2);
            assert!(v.examples.is_empty());
        }
    }

    #[test]
    fn an_acknowledged_message_never_delivered_is_lost() {
        let mut h = subscribed(Q);
        h.call("p", Kind::Ok, publish(Q, "p", "t", 1));
        h.deliver(Q, "s1", "t", 1);
        h.call("p", Kind::Ok, publish(Q, "p", "t", 2));
        let v = check(&h.history(), Q);
        assert!(!v.valid);
        assert_eq!(v.count("lost"), 2);
        assert_eq!(v.count("lost-deliveries"), 3);
        assert_eq!(v.count("expected-deliveries"), 4);
        assert!(v.examples[0].starts_with("lost: message 1"), "{v:?}");
        assert!(v.examples[0].contains("s2"), "{v:?}");
    }

    #[test]
    fn a_subscriber_whose_subscription_completed_after_the_publish_began_is_not_owed_it() {
        let mut h = H::new();
        let s = h.invoke("s1", subscribe(Q, "s1", "t"));
        let p = h.invoke("p", publish(Q, "p", "t", 1));
        h.ok(s, subscribe(Q, "s1", "t"));
        h.ok(p, publish(Q, "p", "t", 1));
        // A failed subscription never makes anyone a subscriber.
        h.call("s2", Kind::Fail, subscribe(Q, "s2", "t"));
        h.call("p", Kind::Ok, publish(Q, "p", "t", 2));
        h.deliver(Q, "s1", "t", 2);
        let v = check(&h.history(), Q);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("expected-deliveries"), 1);
    }

    #[test]
    fn a_refused_publish_that_was_delivered_is_recovered() {
        let mut h = subscribed(Q);
        h.call("p", Kind::Fail, publish(Q, "p", "t", 1));
        h.deliver(Q, "s1", "t", 1);
        h.call("p", Kind::Fail, publish(Q, "p", "t", 2));
        let v = check(&h.history(), Q);
        assert!(!v.valid);
        assert_eq!(v.count("failed"), 2);
        assert_eq!(v.count("recovered"), 1);
        assert_eq!(v.count("lost"), 0);
        assert!(v.examples[0].starts_with("recovered: message 1"), "{v:?}");
    }

    #[test]
    fn an_indeterminate_publish_may_or_may_not_be_delivered() {
        let mut h = subscribed(Q);
        h.call("p", Kind::Info, publish(Q, "p", "t", 1));
        h.deliver(Q, "s1", "t", 1);
        h.call("p", Kind::Info, publish(Q, "p", "t", 2));
        // Never completed: also unknown.
        h.invoke("p", publish(Q, "p", "t", 3));
        h.deliver(Q, "s2", "t", 3);
        let v = check(&h.history(), Q);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("unknown"), 3);
        assert_eq!(v.count("unknown-delivered"), 2);
    }

    #[test]
    fn a_delivery_of_a_message_never_published_is_unexpected() {
        let mut h = subscribed(Q);
        h.deliver(Q, "s1", "t", 99);
        // Published by the other workload: still unexpected here.
        h.call("p", Kind::Ok, publish(X, "p", "t", 7));
        h.deliver(Q, "s1", "t", 7);
        let v = check(&h.history(), Q);
        assert!(!v.valid);
        assert_eq!(v.count("unexpected"), 2);
        assert!(v.examples[0].contains("never published"), "{v:?}");
    }

    #[test]
    fn a_delivery_on_another_topic_than_published_is_unexpected() {
        let mut h = subscribed(Q);
        h.call("p", Kind::Ok, publish(Q, "p", "t", 1));
        h.deliver(Q, "s1", "t", 1);
        h.deliver(Q, "s2", "t", 1);
        h.deliver(Q, "s1", "u", 1);
        let v = check(&h.history(), Q);
        assert!(!v.valid);
        assert_eq!(v.count("unexpected"), 1);
        assert_eq!(v.count("lost"), 0);
        assert!(v.examples[0].contains("published on t"), "{v:?}");
    }

    #[test]
    fn a_delivery_before_its_publish_began_is_unexpected() {
        let mut h = subscribed(Q);
        h.deliver(Q, "s1", "t", 1);
        h.call("p", Kind::Info, publish(Q, "p", "t", 1));
        let v = check(&h.history(), Q);
        assert!(!v.valid);
        assert_eq!(v.count("unexpected"), 1);
        assert_eq!(v.count("unknown-delivered"), 0);
    }

    #[test]
    fn a_duplicate_is_counted_for_the_queue_but_only_a_violation_for_exactly_once() {
        for (w, valid) in [(Q, true), (X, false)] {
            let mut h = subscribed(w);
            h.call("p", Kind::Ok, publish(w, "p", "t", 1));
            h.deliver(w, "s1", "t", 1);
            h.deliver(w, "s1", "t", 1);
            h.deliver(w, "s2", "t", 1);
            let v = check(&h.history(), w);
            assert_eq!(v.valid, valid, "{v:?}");
            assert_eq!(v.count("duplicated"), 1);
            assert_eq!(v.count("delivered"), 2);
            assert!(v.examples[0].starts_with("duplicated: s1 received message 1 2 times"));
        }
    }

    #[test]
    fn odd_events_are_counted_not_fatal() {
        let mut h = subscribed(Q);
        // A completion with no invocation, and a second completion.
        h.ok(1000, publish(Q, "p", "t", 5));
        let id = h.call("p", Kind::Ok, publish(Q, "p", "t", 6));
        h.ok(id, publish(Q, "p", "t", 6));
        h.deliver(Q, "s1", "t", 6);
        h.deliver(Q, "s2", "t", 6);
        // A delivery recorded as an invocation is not a delivery.
        h.invoke("s1", deliver(Q, "s1", "t", 42));
        let v = check(&h.history(), Q);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("orphan-completions"), 2);
        assert_eq!(v.count("acknowledged"), 1);
    }
}
