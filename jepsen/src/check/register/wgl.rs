//! The Wing–Gong–Lowe search, with Lowe's memoisation, over one key's
//! operations: is there an order of them, consistent with real time, that a
//! register would accept?

use std::collections::{HashMap, HashSet};

use super::{At, RegOp};

/// The result of the search on one key.
#[derive(Debug, PartialEq)]
pub(super) enum Outcome {
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
pub(super) fn linearize(ops: &[RegOp], budget: u64) -> (Outcome, u64) {
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
