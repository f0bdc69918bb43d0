//! Register checker tests: small hand-made histories for each rule, and
//! large random ones for speed and for finding a single bad read.

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
