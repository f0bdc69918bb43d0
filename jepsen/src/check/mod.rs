//! The checkers: each reads a [`History`] (or, for convergence, the nodes'
//! final state) and returns a [`Verdict`]. Pure functions, no I/O.
//!
//! # Layout
//! - [`delivery`]: the queue (QoS 1) and exactly-once (QoS 2) workloads: no
//!   acknowledged message lost, no refused message delivered, nothing
//!   delivered that was never published, and (QoS 2) nothing delivered twice.
//! - [`sessions`]: never two live sessions for one client id.
//! - [`register`]: the retained value of each topic is a linearizable
//!   register (Wing–Gong–Lowe search with Lowe's memoisation).
//! - [`subscriptions`]: subscriptions made before the faults still deliver
//!   after them.
//! - [`convergence`]: after healing, every node holds the same sessions and
//!   retained messages.
//!
//! Odd histories (a completion without an invocation, a delivery of a
//! message nobody published, ...) are counted, never a panic.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::history::{History, Kind, Op, Workload};

pub mod convergence;
pub mod delivery;
pub mod register;
pub mod sessions;
pub mod subscriptions;

#[cfg(test)]
mod testkit;

pub use convergence::{check_convergence, NodeState};

/// How many examples of each violation kind a verdict keeps.
pub const MAX_EXAMPLES: usize = 10;

/// The outcome of one checker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// "queue", "exactly-once", "sessions", "register", "subscriptions" or
    /// "convergence".
    pub checker: String,
    pub valid: bool,
    /// Every count the checker computed, zero ones included.
    pub counts: BTreeMap<String, u64>,
    /// Up to [`MAX_EXAMPLES`] human-readable examples of each violation kind,
    /// each starting with the kind ("lost: ...").
    pub examples: Vec<String>,
}

impl Verdict {
    /// A count by name; 0 if the checker has no such count.
    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}

/// Runs every history checker: queue, exactly-once, sessions, register and
/// subscriptions, in that order. Each is present even when its workload has
/// no operations (then valid, counts zero).
pub fn check_history(h: &History) -> Vec<Verdict> {
    vec![
        delivery::check(h, Workload::Queue),
        delivery::check(h, Workload::ExactlyOnce),
        sessions::check(h),
        register::check(h),
        subscriptions::check(h),
    ]
}

/// One line per verdict: `queue: valid (acknowledged=1200 lost=0 ...)`, the
/// counts in name order.
pub fn summary_line(v: &Verdict) -> String {
    let counts: Vec<String> = v.counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
    format!(
        "{}: {} ({})",
        v.checker,
        if v.valid { "valid" } else { "INVALID" },
        counts.join(" ")
    )
}

/// Collects the counts and examples of one checker.
pub(crate) struct Tally {
    counts: BTreeMap<String, u64>,
    examples: BTreeMap<&'static str, Vec<String>>,
}

impl Tally {
    /// Starts with every name in `names` at zero.
    pub(crate) fn new(names: &[&str]) -> Tally {
        Tally {
            counts: names.iter().map(|n| (n.to_string(), 0)).collect(),
            examples: BTreeMap::new(),
        }
    }

    pub(crate) fn add(&mut self, name: &str, n: u64) {
        *self.counts.entry(name.to_string()).or_insert(0) += n;
    }

    pub(crate) fn set(&mut self, name: &str, n: u64) {
        self.counts.insert(name.to_string(), n);
    }

    pub(crate) fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// Keeps an example of violation `kind` if fewer than [`MAX_EXAMPLES`]
    /// are kept; `text` is only built then.
    pub(crate) fn example(&mut self, kind: &'static str, text: impl FnOnce() -> String) {
        let list = self.examples.entry(kind).or_default();
        if list.len() < MAX_EXAMPLES {
            list.push(format!("{kind}: {}", text()));
        }
    }

    /// The verdict; valid when every count in `violations` is zero.
    pub(crate) fn verdict(self, checker: &str, violations: &[&str]) -> Verdict {
        let valid = violations.iter().all(|v| self.get(v) == 0);
        Verdict {
            checker: checker.to_string(),
            valid,
            counts: self.counts,
            examples: self.examples.into_values().flatten().collect(),
        }
    }
}

/// Completions (`Ok`/`Fail`/`Info`) of operations matching `pred` that have
/// no open invocation: never invoked, or completed a second time. The
/// checkers ignore them but count them.
pub(crate) fn orphan_completions(h: &History, pred: impl Fn(&Op) -> bool) -> u64 {
    let mut open: HashSet<u64> = HashSet::new();
    let mut orphans = 0;
    for e in &h.events {
        match e.kind {
            Kind::Invoke => {
                open.insert(e.op_id);
            }
            Kind::Ok | Kind::Fail | Kind::Info => {
                if !open.remove(&e.op_id) && pred(&e.op) {
                    orphans += 1;
                }
            }
            Kind::Event => {}
        }
    }
    orphans
}

/// A time in microseconds as seconds, for examples.
pub(crate) fn secs(t: u64) -> String {
    format!("{}.{:06}s", t / 1_000_000, t % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_history_gives_every_checker_a_valid_verdict() {
        let vs = check_history(&History::default());
        let names: Vec<&str> = vs.iter().map(|v| v.checker.as_str()).collect();
        assert_eq!(
            names,
            [
                "queue",
                "exactly-once",
                "sessions",
                "register",
                "subscriptions"
            ]
        );
        for v in &vs {
            assert!(v.valid, "{v:?}");
            assert!(!v.counts.is_empty(), "{v:?}");
            assert!(v.counts.values().all(|&n| n == 0), "{v:?}");
            assert!(v.examples.is_empty());
        }
    }

    #[test]
    fn the_summary_line_names_the_checker_the_outcome_and_every_count() {
        let mut t = Tally::new(&["acknowledged", "lost"]);
        t.add("acknowledged", 1200);
        let v = t.verdict("queue", &["lost"]);
        assert_eq!(summary_line(&v), "queue: valid (acknowledged=1200 lost=0)");
        let mut t = Tally::new(&["lost"]);
        t.add("lost", 2);
        t.example("lost", || "x".into());
        let v = t.verdict("queue", &["lost"]);
        assert_eq!(summary_line(&v), "queue: INVALID (lost=2)");
        assert_eq!(v.examples, ["lost: x"]);
    }

    #[test]
    fn examples_are_capped_per_kind() {
        let mut t = Tally::new(&[]);
        for i in 0..25 {
            t.example("lost", || format!("{i}"));
            t.example("unexpected", || format!("{i}"));
        }
        let v = t.verdict("queue", &[]);
        assert_eq!(v.examples.len(), 2 * MAX_EXAMPLES);
    }
}
