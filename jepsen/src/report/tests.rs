//! Tests of the report: every file written, from a synthetic history and
//! from an empty one; HTML escaping.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// Builds a history event by event, with increasing op ids.
#[derive(Default)]
struct Builder {
    events: Vec<Event>,
    next: u64,
}

impl Builder {
    fn push(&mut self, t_ms: u64, process: &str, op_id: u64, kind: Kind, op: Op) {
        self.events.push(Event {
            t: t_ms * 1000,
            process: process.to_string(),
            op_id,
            kind,
            op,
        });
    }

    /// An operation invoked at `t0` ms, completed with `kind` at `t1` ms
    /// (`None`: never).
    fn op(&mut self, t0: u64, t1: Option<u64>, kind: Kind, process: &str, op: Op) {
        self.next += 1;
        let id = self.next;
        self.push(t0, process, id, Kind::Invoke, op.clone());
        if let Some(t1) = t1 {
            self.push(t1, process, id, kind, op);
        }
    }

    fn event(&mut self, t: u64, op: Op) {
        self.next += 1;
        let id = self.next;
        self.push(t, "observer", id, Kind::Event, op);
    }

    fn history(mut self) -> History {
        self.events.sort_by_key(|e| e.t);
        History::new(self.events)
    }
}

fn publish(id: u64) -> Op {
    Op::Publish {
        workload: Workload::Queue,
        client: format!("pub-{}", id % 3),
        node: id % 3 + 1,
        topic: "q".into(),
        id,
        qos: 1,
    }
}

fn deliver(id: u64) -> Op {
    Op::Deliver {
        workload: Workload::Queue,
        client: "sub-1".into(),
        node: 1,
        topic: "q".into(),
        id,
        qos: 1,
        dup: false,
    }
}

fn fault(name: &str, nodes: Vec<u64>, detail: &str) -> Op {
    Op::Fault {
        name: name.into(),
        nodes,
        detail: detail.into(),
    }
}

/// `secs` seconds of a run: publishes every 50 ms (slower and failing
/// during a partition of node 1), deliveries, two faults (one never
/// healed), role samples every 250 ms for 3 nodes, notes, and reads/writes.
fn synthetic(secs: u64) -> History {
    let mut b = Builder::default();
    let part = (secs * 1000 / 4, secs * 1000 / 2);
    let pause = secs * 1000 * 3 / 4;
    b.op(
        part.0,
        Some(part.1),
        Kind::Ok,
        "nemesis",
        fault("partition", vec![1, 2, 3], "[1] | [2,3]"),
    );
    b.op(
        pause,
        None,
        Kind::Ok,
        "nemesis",
        fault("pause", vec![2], "SIGSTOP node 2"),
    );
    let mut id = 0;
    let mut t = 0;
    while t < secs * 1000 {
        id += 1;
        let in_part = t >= part.0 && t < part.1;
        let lat = if in_part {
            200 + (id * 37) % 2000
        } else {
            2 + (id * 7) % 30
        };
        let kind = match id % 10 {
            _ if in_part && id % 3 == 0 => Kind::Info,
            _ if in_part => Kind::Fail,
            0 => Kind::Info,
            7 => Kind::Fail,
            _ => Kind::Ok,
        };
        b.op(
            t,
            Some(t + lat),
            kind,
            &format!("queue-pub-{}", id % 4),
            publish(id),
        );
        if kind != Kind::Fail {
            b.event(t + lat + 1, deliver(id));
        }
        if id % 5 == 0 {
            b.op(
                t,
                Some(t + lat / 2 + 1),
                Kind::Ok,
                "register-0",
                Op::Write {
                    key: "k".into(),
                    node: 2,
                    value: id,
                },
            );
        }
        t += 50;
    }
    // One operation left open.
    b.op(
        secs * 1000 - 100,
        None,
        Kind::Ok,
        "register-1",
        Op::Read {
            key: "k".into(),
            node: 3,
            value: None,
        },
    );
    let mut t = 0;
    while t < secs * 1000 {
        for node in 1..=3u64 {
            let role = if t >= part.0 && t < part.0 + 600 && node != 1 {
                "no-leader"
            } else if t >= pause && node == 2 {
                "paused"
            } else if (t < part.0 && node == 1) || (t >= part.0 + 600 && node == 2) {
                "leader"
            } else {
                "follower"
            };
            b.event(
                t,
                Op::Role {
                    node,
                    role: role.into(),
                },
            );
        }
        t += 250;
    }
    b.event(
        part.1 + 10,
        Op::Note {
            text: "heal".into(),
        },
    );
    b.history()
}

fn info(valid: bool) -> RunInfo {
    RunInfo {
        scenario: "partition-leader".into(),
        description: "Partitions the leader away from the majority, then heals.".into(),
        seed: 42,
        time_limit_s: 20,
        rate: 20.0,
        started: "2025-01-01T12:00:00Z".into(),
        duration_s: 20.3,
        raftmq_version: "0.1.0".into(),
        valid,
        notes: vec!["a note".into()],
    }
}

fn verdicts() -> Vec<Verdict> {
    vec![
        Verdict {
            checker: "queue-lost".into(),
            valid: true,
            counts: BTreeMap::from([("acked".into(), 300), ("delivered".into(), 300)]),
            examples: vec![],
        },
        Verdict {
            checker: "exactly/once".into(),
            valid: false,
            counts: BTreeMap::from([("duplicates".into(), 1)]),
            examples: vec!["message 17 delivered twice to <sub-1> & sub-2".into()],
        },
    ]
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

fn assert_files(dir: &Path, min_png: usize) {
    for f in ["verdicts.json", "run.json", "index.html"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    for f in ["latency.png", "throughput.png", "roles.png"] {
        let bytes = std::fs::read(dir.join(f)).expect(f);
        assert!(bytes.starts_with(&PNG_SIGNATURE), "{f} is not a PNG");
        assert!(bytes.len() > min_png, "{f}: only {} bytes", bytes.len());
    }
    let run: RunInfo =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).expect("run.json"))
            .expect("run.json parses");
    assert_eq!(run.scenario, "partition-leader");
}

#[test]
fn report_from_a_synthetic_history_writes_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let vs = verdicts();
    write_report(&out, &info(false), &synthetic(20), &vs).expect("report");
    assert_files(&out, 8 * 1024);

    let all: Vec<Verdict> =
        serde_json::from_slice(&std::fs::read(out.join("verdicts.json")).expect("verdicts"))
            .expect("verdicts parse");
    assert_eq!(all.len(), 2);
    assert!(out.join("checks/queue-lost.json").is_file());
    assert!(out.join("checks/exactly_once.json").is_file());

    let html = std::fs::read_to_string(out.join("index.html")).expect("html");
    for needle in [
        "INVALID",
        "partition-leader",
        "[1] | [2,3]",
        "not healed",
        "href=\"history.jsonl\"",
        "href=\"verdicts.json\"",
        "href=\"run.json\"",
        "src=\"latency.png\"",
        "src=\"throughput.png\"",
        "src=\"roles.png\"",
        "href=\"checks/exactly_once.json\"",
        "&lt;sub-1&gt; &amp; sub-2",
        "queue",
        "register",
    ] {
        assert!(html.contains(needle), "index.html lacks {needle}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[test]
fn report_from_an_empty_history_writes_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_report(dir.path(), &info(true), &History::default(), &[]).expect("report");
    assert_files(dir.path(), 1024);
    let html = std::fs::read_to_string(dir.path().join("index.html")).expect("html");
    assert!(html.contains("VALID"));
    assert!(!html.contains("INVALID"));
}

#[test]
fn notes_are_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut i = info(true);
    i.notes = vec!["<script>alert('x')</script>".into()];
    i.scenario = "a<b".into();
    let mut b = Builder::default();
    b.event(
        5,
        Op::Note {
            text: "<script>".into(),
        },
    );
    write_report(dir.path(), &i, &b.history(), &[]).expect("report");
    let html = std::fs::read_to_string(dir.path().join("index.html")).expect("html");
    assert!(!html.contains("<script"), "unescaped script in {html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("a&lt;b"));
}

#[test]
fn checker_names_become_safe_file_names() {
    assert_eq!(check_file("queue-lost"), "queue-lost.json");
    assert_eq!(check_file("../x y"), "_.._x_y.json");
    assert_eq!(check_file(""), "_.json");
}
