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

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{History, Kind, Micros, Op};

use super::{orphan_completions, secs, Tally, Verdict};

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

/// The result of the search on one key.
#[derive(Debug, PartialEq)]
enum Outcome {
    Linearizable,
    /// The step budget ran out.
    Undecided,
    /// The search could place no op before `op`'s return; `state` is the
    /// register's value at the furthest point the search reached.
    Stuck {
        op: usize,
        state: Option<u64>,
    },
    /// Read `op` returned a value no surviving write wrote.
    NeverWritten {
        op: usize,
    },
}

const HEAD: usize = 0;
const TAIL: usize = 1;

/// The entry list of the WGL search: a doubly linked list of call and
/// return entries in history order; op `i` has its call at node `2 + 2i`
/// and its return at `3 + 2i`. Linearizing an op lifts both out; undoing it
/// puts them back (in LIFO order, dancing-links style).
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Entries {
    /// `spans[i]`: op i's call and return positions (return >= call).
    fn new(spans: &[(At, At)]) -> Entries {
        let mut order: Vec<(At, usize)> = Vec::with_capacity(2 * spans.len());
        for (i, &(call, ret)) in spans.iter().enumerate() {
            order.push((call, 2 + 2 * i));
            order.push((ret, 3 + 2 * i));
        }
        order.sort_unstable();
        let size = 2 + 2 * spans.len();
        let mut next = vec![TAIL; size];
        let mut prev = vec![HEAD; size];
        let mut last = HEAD;
        for &(_, node) in &order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        next[last] = TAIL;
        prev[TAIL] = last;
        Entries { next, prev }
    }

    fn lift(&mut self, call: usize) {
        let ret = call + 1;
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p] = n;
        self.prev[n] = p;
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn unlift(&mut self, call: usize) {
        let ret = call + 1;
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p] = ret;
        self.prev[n] = ret;
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p] = call;
        self.prev[n] = call;
    }
}

/// The set of linearized ops as a bitset, ops numbered in call order.
struct Linearized {
    words: Vec<u64>,
}

impl Linearized {
    fn flip(&mut self, op: usize) {
        self.words[op / 64] ^= 1 << (op % 64);
    }

    /// The memo key for this set and register `state`. Search states only
    /// differ near the frontier, so the leading all-ones words and the
    /// trailing zero words are left out (the count of leading words is
    /// kept, which makes the key exact).
    fn key(&self, state: u32) -> Box<[u64]> {
        let w = &self.words;
        let lo = w.iter().position(|&x| x != u64::MAX).unwrap_or(w.len());
        let hi = w
            .iter()
            .rposition(|&x| x != 0)
            .map_or(lo, |h| h + 1)
            .max(lo);
        let mut k = Vec::with_capacity(2 + hi - lo);
        k.push(u64::from(state));
        k.push(lo as u64);
        k.extend_from_slice(&w[lo..hi]);
        k.into_boxed_slice()
    }
}

/// The WGL search over one key's ops: repeatedly linearize the first call
/// entry the model accepts (unless the memo has already seen the resulting
/// set of linearized ops with the resulting value); on reaching a return
/// entry no remaining op can go next, so undo the last choice and try the
/// entry after it. Done when every op is linearized; refuted when there is
/// nothing left to undo. Returns the outcome and the steps taken.
///
/// A write of unknown outcome must precede every read of its value, so it is
/// given the latest return among those reads as its return (exact: it may
/// take effect any time after its invocation and only those reads can tell
/// whether, or when, it did). If nobody read its value it is left out: a
/// write nobody observed can always be dropped from a linearization.
fn linearize(ops: &[RegOp], budget: u64) -> (Outcome, u64) {
    // Register states: 0 is None, else a dense id per written value.
    let mut ids: HashMap<u64, u32> = HashMap::new();
    let mut values: Vec<Option<u64>> = vec![None];
    for o in ops.iter().filter(|o| o.write) {
        if let Some(v) = o.value {
            ids.entry(v).or_insert_with(|| {
                values.push(Some(v));
                (values.len() - 1) as u32
            });
        }
    }
    let mut target: Vec<u32> = Vec::with_capacity(ops.len());
    // State id -> the latest return of a read that saw it.
    let mut last_read: HashMap<u32, At> = HashMap::new();
    for (i, o) in ops.iter().enumerate() {
        let id = match o.value {
            None => 0,
            Some(v) => match ids.get(&v) {
                Some(&id) => id,
                None => return (Outcome::NeverWritten { op: i }, 0),
            },
        };
        target.push(id);
        if let (false, Some(ret)) = (o.write, o.ret) {
            let at = last_read.entry(id).or_insert(ret);
            *at = (*at).max(ret);
        }
    }

    // The ops searched (indices into `ops`), in call order, with spans.
    let mut searched: Vec<(usize, (At, At))> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let ret = o.ret.or_else(|| last_read.get(&target[i]).copied())?;
            Some((i, (o.call, ret.max(o.call))))
        })
        .collect();
    searched.sort_unstable_by_key(|&(i, (call, _))| (call, i));
    let n = searched.len();
    if n == 0 {
        return (Outcome::Linearizable, 0);
    }
    let spans: Vec<(At, At)> = searched.iter().map(|&(_, span)| span).collect();
    let mut list = Entries::new(&spans);
    let mut lin = Linearized {
        words: vec![0; n.div_ceil(64)],
    };
    let mut cache: HashSet<Box<[u64]>> = HashSet::new();
    // (op, register state before it).
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state: u32 = 0;
    // The furthest the search got: (ops linearized, op stuck on, state).
    let mut deepest: Option<(usize, usize, u32)> = None;
    let mut steps = 0;
    let mut entry = list.next[HEAD];
    loop {
        steps += 1;
        if steps > budget {
            return (Outcome::Undecided, steps - 1);
        }
        if entry != TAIL && entry & 1 == 0 {
            // A call entry: try to linearize its op now.
            let op = (entry - 2) / 2;
            let o = &ops[searched[op].0];
            let want = target[searched[op].0];
            let next_state = if o.write || want == state {
                Some(want)
            } else {
                None
            };
            if let Some(ns) = next_state {
                lin.flip(op);
                if cache.insert(lin.key(ns)) {
                    stack.push((op, state));
                    state = ns;
                    list.lift(entry);
                    if stack.len() == n {
                        return (Outcome::Linearizable, steps);
                    }
                    entry = list.next[HEAD];
                    continue;
                }
                lin.flip(op);
            }
            entry = list.next[entry];
        } else {
            // A return entry (or, defensively, the end): the op it closes
            // cannot be linearized after the current prefix.
            if entry != TAIL && deepest.is_none_or(|(d, _, _)| stack.len() > d) {
                deepest = Some((stack.len(), (entry - 3) / 2, state));
            }
            let Some((op, before)) = stack.pop() else {
                let (op, state) = deepest.map_or((0, 0), |(_, op, s)| (op, s));
                return (
                    Outcome::Stuck {
                        op: searched[op].0,
                        state: values.get(state as usize).copied().flatten(),
                    },
                    steps,
                );
            };
            lin.flip(op);
            state = before;
            let call = 2 + 2 * op;
            list.unlift(call);
            entry = list.next[call];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use crate::history::Operation;
    use std::time::Instant;

    fn nonlinearizable(h: &H) -> Verdict {
        let v = check(&h.history());
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.count("nonlinearizable-keys"), 1, "{v:?}");
        v
    }

    #[test]
    fn sequential_writes_and_reads_are_linearizable() {
        let mut h = H::new();
        h.call("p", Kind::Ok, read("k", None));
        h.call("p", Kind::Ok, write("k", 1));
        let r = h.invoke("p", read("k", None));
        h.ok(r, read("k", Some(1)));
        h.call("p", Kind::Ok, write("k", 2));
        h.call("p", Kind::Ok, read("k", Some(2)));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("keys"), 1);
        assert_eq!(v.count("writes"), 2);
        assert_eq!(v.count("reads"), 3);
        assert!(v.examples.is_empty());
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [Some(1), Some(2)] {
            let mut h = H::new();
            h.call("a", Kind::Ok, write("k", 1));
            let w = h.invoke("a", write("k", 2));
            let r = h.invoke("b", read("k", None));
            h.ok(r, read("k", seen));
            h.ok(w, write("k", 2));
            let v = check(&h.history());
            assert!(v.valid, "{seen:?}: {v:?}");
        }
    }

    #[test]
    fn a_read_of_a_value_overwritten_before_it_began_is_not_linearizable() {
        let mut h = H::new();
        h.call("a", Kind::Ok, write("k", 1));
        h.call("a", Kind::Ok, write("k", 2));
        h.at(1_000_000);
        let r = h.invoke("b", read("k", None));
        h.ok(r, read("k", Some(1)));
        let v = nonlinearizable(&h);
        assert_eq!(
            v.examples,
            ["nonlinearizable-keys: key k: read of 1 (invoked 1.000001s, completed 1.000002s) could not be placed; the longest linearization before it leaves the register at 2"]
        );
    }

    #[test]
    fn a_read_of_nothing_after_a_completed_write_is_not_linearizable() {
        let mut h = H::new();
        h.call("a", Kind::Ok, write("k", 1));
        h.call("b", Kind::Ok, read("k", None));
        nonlinearizable(&h);
    }

    #[test]
    fn a_read_of_a_value_written_only_after_it_completed_is_not_linearizable() {
        let mut h = H::new();
        h.call("b", Kind::Ok, read("k", Some(1)));
        h.call("a", Kind::Ok, write("k", 1));
        nonlinearizable(&h);
    }

    #[test]
    fn two_readers_that_disagree_on_the_order_of_two_writes_are_not_linearizable() {
        // w1 and w2 concurrent; one reader sees 1 then 2, another 2 then 1.
        let mut h = H::new();
        let w1 = h.invoke("a", write("k", 1));
        let w2 = h.invoke("b", write("k", 2));
        h.call("c", Kind::Ok, read("k", Some(1)));
        h.call("d", Kind::Ok, read("k", Some(2)));
        h.call("c", Kind::Ok, read("k", Some(2)));
        h.call("d", Kind::Ok, read("k", Some(1)));
        h.ok(w1, write("k", 1));
        h.ok(w2, write("k", 2));
        nonlinearizable(&h);
    }

    #[test]
    fn a_read_of_a_failed_write_is_not_linearizable() {
        let mut h = H::new();
        h.call("a", Kind::Fail, write("k", 1));
        h.call("b", Kind::Ok, read("k", Some(1)));
        let v = nonlinearizable(&h);
        assert_eq!(v.count("failed-writes"), 1);
        assert!(v.examples[0].contains("no write"), "{v:?}");
    }

    #[test]
    fn an_indeterminate_write_may_take_effect_after_the_history_ends() {
        let mut h = H::new();
        h.call("a", Kind::Ok, write("k", 1));
        h.call("a", Kind::Info, write("k", 2));
        h.call("b", Kind::Ok, read("k", Some(1)));
        // Open at the end of the history: also unknown.
        h.invoke("c", write("k", 3));
        h.call("b", Kind::Ok, read("k", Some(1)));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("unknown-writes"), 2);
    }

    #[test]
    fn an_indeterminate_write_may_take_effect_long_after_its_invocation() {
        let mut h = H::new();
        h.call("a", Kind::Ok, write("k", 1));
        h.call("a", Kind::Info, write("k", 2));
        h.call("b", Kind::Ok, read("k", Some(1)));
        h.call("b", Kind::Ok, read("k", Some(2)));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
    }

    #[test]
    fn an_indeterminate_write_cannot_take_effect_before_its_invocation() {
        let mut h = H::new();
        h.call("b", Kind::Ok, read("k", Some(2)));
        h.call("a", Kind::Info, write("k", 2));
        let v = nonlinearizable(&h);
        assert!(v.examples[0].contains("read of 2 "), "{v:?}");
    }

    #[test]
    fn failed_and_indeterminate_reads_are_dropped() {
        let mut h = H::new();
        h.call("a", Kind::Ok, write("k", 1));
        h.call("b", Kind::Fail, read("k", Some(7)));
        h.call("b", Kind::Info, read("k", None));
        h.invoke("c", read("k", Some(9)));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("reads"), 0);
        assert_eq!(v.count("dropped-reads"), 3);
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut h = H::new();
        h.call("a", Kind::Ok, write("k", 1));
        h.call("a", Kind::Ok, write("j", 1));
        h.call("b", Kind::Ok, read("k", Some(1)));
        h.call("b", Kind::Ok, read("j", None));
        let v = check(&h.history());
        assert_eq!(v.count("keys"), 2);
        assert_eq!(v.count("nonlinearizable-keys"), 1);
        assert!(v.examples[0].contains("key j"), "{v:?}");
    }

    #[test]
    fn odd_register_events_are_counted_not_fatal() {
        let mut h = H::new();
        h.ok(500, read("k", Some(3)));
        let r = h.invoke("b", read("k", None));
        // Completed by the wrong kind of op: no value observed.
        h.ok(r, write("k", 4));
        let v = check(&h.history());
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("orphan-completions"), 1);
        assert_eq!(v.count("dropped-reads"), 1);
    }

    #[test]
    fn a_key_over_the_step_budget_is_undecided_not_invalid() {
        let h = random_history(7, 200, 5);
        let v = check_with_budget(&h.history(), 10);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.count("undecided-keys"), 1);
        assert_eq!(v.count("steps"), 10);
    }

    /// Simulates `procs` processes on a real register: each op is invoked,
    /// takes effect at a random later moment (a write may fail, then it never
    /// takes effect; or end unknown, taking effect or not), and completes
    /// later still. Values written are 1, 2, 3, ...
    fn random_history(seed: u64, n_ops: usize, procs: usize) -> H {
        #[derive(Clone)]
        enum St {
            Idle,
            Invoked { id: u64, op: Op, applied: bool },
        }
        let mut rng = Rng::new(seed);
        let mut h = H::new();
        let mut reg: Option<u64> = None;
        let mut next_value = 1;
        let mut started = 0;
        let mut st = vec![St::Idle; procs];
        let name: Vec<String> = (0..procs).map(|p| format!("p{p}")).collect();
        loop {
            let busy = st.iter().any(|s| matches!(s, St::Invoked { .. }));
            if started >= n_ops && !busy {
                break;
            }
            let p = rng.below(procs as u64) as usize;
            match st[p].clone() {
                St::Idle if started < n_ops => {
                    started += 1;
                    let op = if rng.below(2) == 0 {
                        next_value += 1;
                        write("k", next_value - 1)
                    } else {
                        read("k", None)
                    };
                    let id = h.invoke(&name[p], op.clone());
                    st[p] = St::Invoked {
                        id,
                        op,
                        applied: false,
                    };
                }
                St::Idle => {}
                St::Invoked {
                    id,
                    op,
                    applied: false,
                } => {
                    let roll = rng.below(20);
                    match op {
                        Op::Write { .. } if roll == 0 => {
                            // Refused: never takes effect.
                            h.fail(id, op);
                            st[p] = St::Idle;
                        }
                        Op::Write { value, .. } if roll == 1 => {
                            // Unknown, never took effect.
                            h.info(id, write("k", value));
                            st[p] = St::Idle;
                        }
                        Op::Write { value, .. } => {
                            reg = Some(value);
                            st[p] = St::Invoked {
                                id,
                                op,
                                applied: true,
                            };
                        }
                        _ => {
                            st[p] = St::Invoked {
                                id,
                                op: read("k", reg),
                                applied: true,
                            };
                        }
                    }
                }
                St::Invoked {
                    id,
                    op,
                    applied: true,
                } => {
                    if matches!(op, Op::Write { .. }) && rng.below(20) == 0 {
                        h.info(id, op); // took effect, outcome unknown
                    } else {
                        h.ok(id, op);
                    }
                    st[p] = St::Idle;
                }
            }
        }
        h
    }

    #[test]
    fn a_large_random_linearizable_history_is_judged_linearizable_quickly() {
        for seed in 1..=3 {
            let h = random_history(seed, 2_000, 10);
            let start = Instant::now();
            let v = check(&h.history());
            let took = start.elapsed();
            assert!(v.valid, "seed {seed}: {v:?}");
            assert_eq!(v.count("undecided-keys"), 0, "seed {seed}: {v:?}");
            assert!(v.count("reads") > 500, "{v:?}");
            assert!(took.as_secs() < 5, "seed {seed}: took {took:?}");
        }
    }

    /// Sets the value returned by the first `Ok` read invoked in the second
    /// half of `h` to what `pick` chooses from the read's (invocation,
    /// completion) times and the ops; returns the value.
    fn corrupt_a_read(h: &mut H, pick: impl Fn(Micros, Micros, &[Operation<'_>]) -> u64) -> u64 {
        let hist = h.history();
        let ops = hist.operations();
        let read = ops[ops.len() / 2..]
            .iter()
            .find(|o| matches!(o.invoke.op, Op::Read { .. }) && o.outcome() == Kind::Ok)
            .expect("a read");
        let value = pick(read.invoke.t, read.end().unwrap_or(0), &ops);
        let corrupt = h
            .events
            .iter_mut()
            .find(|e| e.op_id == read.invoke.op_id && e.kind == Kind::Ok)
            .expect("the read's completion");
        if let Op::Read { value: v, .. } = &mut corrupt.op {
            *v = Some(value);
        }
        value
    }

    /// Acknowledged writes: (invocation, completion, value).
    fn ok_writes(ops: &[Operation<'_>]) -> Vec<(Micros, Micros, u64)> {
        ops.iter()
            .filter_map(|o| match (&o.invoke.op, o.outcome(), o.end()) {
                (Op::Write { value, .. }, Kind::Ok, Some(end)) => Some((o.invoke.t, end, *value)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_single_read_of_a_future_value_in_a_large_random_history_is_found() {
        for seed in 11..=14 {
            let mut h = random_history(seed, 2_000, 10);
            // A value written only after the read completed.
            let future = corrupt_a_read(&mut h, |_, end, ops| {
                let w = ok_writes(ops);
                w.iter().find(|x| x.0 > end).expect("a later write").2
            });
            let start = Instant::now();
            let v = nonlinearizable(&h);
            assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
            assert!(
                v.examples[0].contains(&format!("read of {future} ")),
                "seed {seed}: {v:?}"
            );
        }
    }

    #[test]
    fn a_single_read_of_a_stale_value_in_a_large_random_history_is_found() {
        for seed in 21..=24 {
            let mut h = random_history(seed, 2_000, 10);
            // A value overwritten by a write that began after it was written
            // and completed before the read began.
            let stale = corrupt_a_read(&mut h, |begin, _, ops| {
                let w = ok_writes(ops);
                let overwritten =
                    |a: &(Micros, Micros, u64)| w.iter().any(|b| b.0 > a.1 && b.1 < begin);
                w.iter()
                    .rev()
                    .find(|a| overwritten(a))
                    .expect("a stale write")
                    .2
            });
            let start = Instant::now();
            let v = nonlinearizable(&h);
            assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
            assert!(
                v.examples[0].contains(&format!("read of {stale} ")),
                "seed {seed}: {v:?}"
            );
        }
    }
}
