//! Checks that each key of the register workload (a topic's retained value)
//! behaves as a linearizable register, with the Wing–Gong–Lowe search and
//! Lowe's memoisation, one key at a time.
//!
//! Model: a register whose initial value is `None`; a write sets `Some(v)`
//! (values are unique per key); a read returns the current value. A write
//! that failed never happened. A write whose outcome is unknown may take
//! effect at any point after its invocation, or never. A read that failed or
//! whose outcome is unknown observed nothing and is dropped.
//!
//! Positions in the history are (time, event index): the recorder writes
//! events in time order, so the index breaks ties truthfully.
//!
//! - this module: the checker, and the history prepared for the search (one
//!   list of operations per key).
//! - `wgl`: the Wing–Gong–Lowe search over one key.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{History, Kind, Micros, Op};

use super::{orphan_completions, secs, Tally, Verdict};

mod wgl;

#[cfg(test)]
mod tests;

use wgl::{linearize, Outcome};

/// Search steps allowed per key before it is reported undecided.
pub const DEFAULT_STEP_BUDGET: u64 = 5_000_000;

const COUNTS: &[&str] = &[
    "keys",
    "writes",
    "reads",
    "failed-writes",
    "unknown-writes",
    "dropped-reads",
    "nonlinearizable-keys",
    "undecided-keys",
    "steps",
    "orphan-completions",
];

/// Checks every key with [`DEFAULT_STEP_BUDGET`].
pub fn check(h: &History) -> Verdict {
    check_with_budget(h, DEFAULT_STEP_BUDGET)
}

/// Checks every key, allowing `step_budget` search steps per key. A key
/// whose search runs out is counted in `undecided-keys`, which is not a
/// violation; only `nonlinearizable-keys` is.
pub fn check_with_budget(h: &History, step_budget: u64) -> Verdict {
    let mut t = Tally::new(COUNTS);
    let keys = collect(h, &mut t);
    t.set("keys", keys.len() as u64);
    for (key, ops) in &keys {
        let (outcome, steps) = linearize(ops, step_budget);
        t.add("steps", steps);
        match outcome {
            Outcome::Linearizable => {}
            Outcome::Undecided => {
                t.add("undecided-keys", 1);
                t.example("undecided-keys", || {
                    format!(
                        "key {key}: no decision after {steps} steps ({} operations)",
                        ops.len()
                    )
                });
            }
            Outcome::Stuck { op, state } => {
                t.add("nonlinearizable-keys", 1);
                t.example("nonlinearizable-keys", || describe(key, &ops[op], state));
            }
            Outcome::NeverWritten { op } => {
                t.add("nonlinearizable-keys", 1);
                t.example("nonlinearizable-keys", || {
                    let o = &ops[op];
                    format!(
                        "key {key}: read of {} ({}) returned a value no write (that did not fail) wrote",
                        show(o.value),
                        span(o)
                    )
                });
            }
        }
    }
    t.set(
        "orphan-completions",
        orphan_completions(h, |op| matches!(op, Op::Write { .. } | Op::Read { .. })),
    );
    t.verdict("register", &["nonlinearizable-keys"])
}

/// A position in the history: time, then the event's index (the recorder
/// writes events in time order, so the index breaks ties truthfully).
type At = (Micros, usize);

/// One operation kept for the search.
#[derive(Debug, Clone)]
struct RegOp {
    write: bool,
    /// Written value, or the value read.
    value: Option<u64>,
    call: At,
    /// `None`: a write with unknown outcome (returns at +infinity).
    ret: Option<At>,
}

fn show(v: Option<u64>) -> String {
    v.map_or("nothing".to_string(), |v| v.to_string())
}

fn span(o: &RegOp) -> String {
    match o.ret {
        Some(r) => format!("invoked {}, completed {}", secs(o.call.0), secs(r.0)),
        None => format!("invoked {}, outcome unknown", secs(o.call.0)),
    }
}

fn describe(key: &str, o: &RegOp, state: Option<u64>) -> String {
    format!(
        "key {key}: {} of {} ({}) could not be placed; the longest linearization before it leaves the register at {}",
        if o.write { "write" } else { "read" },
        show(o.value),
        span(o),
        show(state)
    )
}

/// Pairs invocations with completions and keeps, per key, the writes that
/// did not fail and the reads that completed `Ok`.
fn collect(h: &History, t: &mut Tally) -> BTreeMap<String, Vec<RegOp>> {
    let mut keys: BTreeMap<String, Vec<RegOp>> = BTreeMap::new();
    // op id -> (key, index in keys[key]) of an open operation; reads are
    // staged with `ret: None` until they complete.
    let mut open: HashMap<u64, (String, usize)> = HashMap::new();
    let mut dropped: HashSet<(String, usize)> = HashSet::new();
    for (i, e) in h.events.iter().enumerate() {
        match (e.kind, &e.op) {
            (Kind::Invoke, Op::Write { key, value, .. }) => {
                let ops = keys.entry(key.clone()).or_default();
                open.insert(e.op_id, (key.clone(), ops.len()));
                ops.push(RegOp {
                    write: true,
                    value: Some(*value),
                    call: (e.t, i),
                    ret: None,
                });
            }
            (Kind::Invoke, Op::Read { key, .. }) => {
                let ops = keys.entry(key.clone()).or_default();
                open.insert(e.op_id, (key.clone(), ops.len()));
                ops.push(RegOp {
                    write: false,
                    value: None,
                    call: (e.t, i),
                    ret: None,
                });
            }
            (Kind::Ok | Kind::Fail | Kind::Info, _) => {
                let Some((key, n)) = open.remove(&e.op_id) else {
                    continue;
                };
                let Some(o) = keys.get_mut(&key).and_then(|ops| ops.get_mut(n)) else {
                    continue;
                };
                // Never before the invocation, even in a disordered history.
                let ret = (e.t.max(o.call.0), i);
                match (o.write, e.kind) {
                    (true, Kind::Ok) => o.ret = Some(ret),
                    (true, Kind::Fail) => {
                        dropped.insert((key, n));
                    }
                    (true, _) => {}
                    (false, Kind::Ok) => match &e.op {
                        Op::Read { value, .. } => {
                            o.value = *value;
                            o.ret = Some(ret);
                        }
                        // A read completed by something else: no value seen.
                        _ => {
                            dropped.insert((key, n));
                        }
                    },
                    (false, _) => {
                        dropped.insert((key, n));
                    }
                }
            }
            _ => {}
        }
    }
    // Reads still open saw nothing.
    for (key, n) in open.into_values() {
        if keys
            .get(&key)
            .and_then(|ops| ops.get(n))
            .is_some_and(|o| !o.write)
        {
            dropped.insert((key, n));
        }
    }
    for (key, ops) in keys.iter_mut() {
        let mut n = 0;
        ops.retain(|o| {
            let keep = !dropped.contains(&(key.clone(), n));
            n += 1;
            match (o.write, keep, o.ret.is_some()) {
                (true, true, true) => t.add("writes", 1),
                (true, true, false) => {
                    t.add("writes", 1);
                    t.add("unknown-writes", 1);
                }
                (true, false, _) => t.add("failed-writes", 1),
                (false, true, _) => t.add("reads", 1),
                (false, false, _) => t.add("dropped-reads", 1),
            }
            keep
        });
    }
    keys
}
