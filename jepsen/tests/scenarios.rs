//! The short fault scenarios CI runs, through the `raftmq-jepsen` binary
//! against the `raftmq` binary built beside it: a partition, a kill and a
//! pause of about 20 s each must find no violation, and both negative
//! controls must find theirs (so the checkers are shown able to fail).
//! Needs root (network namespaces, iptables).

use std::path::{Path, PathBuf};
use std::process::Command;

use common::raftmq_bin;
use raftmq_jepsen::check::Verdict;

mod common;

const TIME_LIMIT: &str = "20";

/// Runs one scenario; returns its exit code and its verdicts.
fn run(scenario: &str, seed: u64) -> (i32, Vec<Verdict>, PathBuf) {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the jepsen scenarios need root (network namespaces and iptables)"
    );
    let out = tempfile::Builder::new()
        .prefix("raftmq-jepsen-")
        .tempdir()
        .expect("tempdir")
        .keep();
    let status = Command::new(env!("CARGO_BIN_EXE_raftmq-jepsen"))
        .args(["run", "--scenario", scenario, "--time-limit", TIME_LIMIT])
        .args(["--seed", &seed.to_string(), "--rate", "60"])
        .arg("--out")
        .arg(&out)
        .arg("--binary")
        .arg(raftmq_bin())
        .status()
        .expect("run raftmq-jepsen");
    let dir = out.join(format!("{scenario}-seed{seed}"));
    for f in [
        "history.jsonl",
        "verdicts.json",
        "index.html",
        "latency.png",
        "throughput.png",
        "roles.png",
    ] {
        assert!(dir.join(f).exists(), "{} has no {f}", dir.display());
    }
    let verdicts: Vec<Verdict> =
        serde_json::from_slice(&std::fs::read(dir.join("verdicts.json")).expect("verdicts.json"))
            .expect("verdicts.json parses");
    (status.code().unwrap_or(-1), verdicts, dir)
}

fn count(v: &[Verdict], checker: &str, name: &str) -> u64 {
    v.iter()
        .find(|x| x.checker == checker)
        .and_then(|x| x.counts.get(name).copied())
        .unwrap_or_else(|| panic!("no count {checker}/{name} in {v:?}"))
}

fn assert_clean(scenario: &str, seed: u64) {
    let (code, verdicts, dir) = run(scenario, seed);
    let invalid: Vec<_> = verdicts.iter().filter(|v| !v.valid).collect();
    assert!(
        invalid.is_empty() && code == 0,
        "{scenario} (seed {seed}) exited {code} with violations {invalid:#?}; report in {}",
        dir.display()
    );
    assert!(
        count(&verdicts, "queue", "acknowledged") > 100,
        "{verdicts:?}"
    );
    assert!(
        count(&verdicts, "exactly-once", "acknowledged") > 50,
        "{verdicts:?}"
    );
    remove_run(&dir);
}

/// Removes a run's output once its test has passed (a failing test keeps it
/// for its report).
fn remove_run(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(dir));
}

#[test]
fn isolating_the_leader_loses_and_duplicates_nothing() {
    assert_clean("partition-leader", 11);
}

#[test]
fn killing_the_leader_loses_and_duplicates_nothing() {
    assert_clean("kill-leader", 12);
}

#[test]
fn pausing_nodes_loses_and_duplicates_nothing() {
    assert_clean("pause", 13);
}

/// A negative control: the `queue` checker must report lost messages, and
/// the run must exit 1 (a violation).
fn assert_control_loses_messages(scenario: &str, seed: u64, why: &str) {
    let (code, verdicts, dir) = run(scenario, seed);
    assert!(
        count(&verdicts, "queue", "lost") > 0,
        "{why}: {verdicts:#?} ({})",
        dir.display()
    );
    assert_eq!(code, 1, "a violation exits 1");
    remove_run(&dir);
}

#[test]
fn the_offline_limit_control_is_reported_as_lost_messages() {
    assert_control_loses_messages(
        "control-offline-limit",
        14,
        "max_offline_messages = 5 must lose messages",
    );
}

#[test]
fn the_amnesia_control_is_reported_as_lost_acknowledged_writes() {
    assert_control_loses_messages(
        "control-amnesia",
        15,
        "wiping two of three nodes must lose acknowledged messages",
    );
}
