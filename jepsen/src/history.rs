//! The history of one run: every client operation (its invocation and its
//! completion), every delivery a subscriber saw, every fault the nemesis
//! injected and healed, and samples of each node's role. Written as JSON lines;
//! read back by the checkers and the report.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Microseconds since the start of the run.
pub type Micros = u64;

/// An invocation opens an operation; exactly one of `Ok`, `Fail`, `Info`
/// closes it (same `op` id). `Fail` means the system said, definitely, that
/// the operation did not take effect; `Info` means its outcome is unknown
/// (timeout, connection lost). `Event` marks a one-off observation (a
/// delivery, a role sample) that has no invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
    Event,
}

/// Which workload an operation belongs to (one checker family each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// QoS 1 queue: persistent publishers and subscribers, unique ids.
    Queue,
    /// QoS 2 exactly-once.
    ExactlyOnce,
    /// Registration contention: many connections racing for few client ids.
    Registration,
    /// A retained value per topic, written and read.
    Register,
    /// Subscriptions made before the faults, probed after them.
    Subscriptions,
}

/// What an operation or observation was, with its arguments; the result
/// travels in the completing event's `Op` (e.g. a read's value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// A QoS 1/2 publish of message `id` (unique in the run) to `topic`.
    Publish {
        workload: Workload,
        client: String,
        node: u64,
        topic: String,
        id: u64,
        qos: u8,
    },
    /// A subscriber (`client`, connected to `node`) received message `id`.
    Deliver {
        workload: Workload,
        client: String,
        node: u64,
        topic: String,
        id: u64,
        qos: u8,
        dup: bool,
    },
    /// A CONNECT of `client`; `conn` is unique per connection attempt.
    Connect {
        workload: Workload,
        client: String,
        conn: u64,
        node: u64,
        clean: bool,
    },
    /// An operation done on connection `conn` of `client` to show the
    /// connection was still live (a QoS 1 publish the broker acknowledged).
    Touch {
        client: String,
        conn: u64,
        node: u64,
    },
    /// A SUBSCRIBE of `client` to `topic`.
    Subscribe {
        workload: Workload,
        client: String,
        node: u64,
        topic: String,
    },
    /// Retained register: write `value` to `key` (a retained QoS 1 publish).
    Write { key: String, node: u64, value: u64 },
    /// Retained register: read `key` (subscribe and take the retained
    /// message). On completion `value` is what was read (None: no retained
    /// message).
    Read {
        key: String,
        node: u64,
        value: Option<u64>,
    },
    /// A fault: invoked when injected, `Ok` when healed. `nodes` are the
    /// node ids it touched; `detail` says what exactly (e.g. "[1] | [2,3]").
    Fault {
        name: String,
        nodes: Vec<u64>,
        detail: String,
    },
    /// A sample of one node's role: "leader" or "follower" as the node
    /// reports itself, "no-leader" when it knows of none, "down" (killed or
    /// not answering) or "paused" (SIGSTOP).
    Role { node: u64, role: String },
    /// A free-form note in the history (phase changes: "heal", "recovered").
    Note { text: String },
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Microseconds since the start of the run.
    pub t: Micros,
    /// The logical process that did it ("queue-pub-3", "nemesis", ...). A
    /// process has at most one operation open at a time.
    pub process: String,
    /// Operation id: the same on an invocation and its completion; unique
    /// per run (observations get their own).
    pub op_id: u64,
    pub kind: Kind,
    #[serde(flatten)]
    pub op: Op,
}

/// An operation with its invocation and (if any) its completion.
#[derive(Debug, Clone)]
pub struct Operation<'a> {
    pub invoke: &'a Event,
    /// `None` if the history ended with the operation still open (treated as
    /// `Info`: outcome unknown).
    pub complete: Option<&'a Event>,
}

impl Operation<'_> {
    /// The completion kind; an open operation counts as `Info`.
    pub fn outcome(&self) -> Kind {
        self.complete.map_or(Kind::Info, |c| c.kind)
    }

    /// Completion time, or `None` if it never completed.
    pub fn end(&self) -> Option<Micros> {
        self.complete.map(|c| c.t)
    }
}

/// A whole history, in the order events were recorded.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    pub fn new(events: Vec<Event>) -> History {
        History { events }
    }

    /// Reads a JSON-lines history.
    pub fn load(path: &Path) -> io::Result<History> {
        let file = std::fs::File::open(path)?;
        let mut events = Vec::new();
        for (n, line) in io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let e = serde_json::from_str(&line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), n + 1),
                )
            })?;
            events.push(e);
        }
        Ok(History { events })
    }

    /// Writes the history as JSON lines.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut out = io::BufWriter::new(std::fs::File::create(path)?);
        for e in &self.events {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// Every invoked operation paired with its completion, in invocation
    /// order.
    pub fn operations(&self) -> Vec<Operation<'_>> {
        let mut open: std::collections::HashMap<u64, usize> = Default::default();
        let mut ops: Vec<Operation<'_>> = Vec::new();
        for e in &self.events {
            match e.kind {
                Kind::Invoke => {
                    open.insert(e.op_id, ops.len());
                    ops.push(Operation {
                        invoke: e,
                        complete: None,
                    });
                }
                Kind::Ok | Kind::Fail | Kind::Info => {
                    if let Some(i) = open.remove(&e.op_id) {
                        ops[i].complete = Some(e);
                    }
                }
                Kind::Event => {}
            }
        }
        ops
    }

    /// Observations (deliveries, role samples).
    pub fn observations(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(|e| e.kind == Kind::Event)
    }

    /// The time of the last event.
    pub fn end(&self) -> Micros {
        self.events.iter().map(|e| e.t).max().unwrap_or(0)
    }
}

/// Records events from many tasks: a clock started with the run, an op-id
/// counter, and the event list. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

struct RecorderInner {
    start: Instant,
    next_op: std::sync::atomic::AtomicU64,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            inner: Arc::new(RecorderInner {
                start: Instant::now(),
                next_op: 1.into(),
                events: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn now(&self) -> Micros {
        self.inner.start.elapsed().as_micros() as Micros
    }

    fn push(&self, process: &str, op_id: u64, kind: Kind, op: Op) {
        let mut events = self.inner.events.lock().unwrap_or_else(|p| p.into_inner());
        // The time is read under the lock so the list stays in time order.
        let t = self.now();
        events.push(Event {
            t,
            process: process.to_string(),
            op_id,
            kind,
            op,
        });
    }

    /// Opens an operation; complete it with [`Recorder::complete`].
    pub fn invoke(&self, process: &str, op: Op) -> u64 {
        let id = self
            .inner
            .next_op
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.push(process, id, Kind::Invoke, op);
        id
    }

    /// Closes operation `op_id` with `kind` (Ok, Fail or Info) and its
    /// result-carrying `op`.
    pub fn complete(&self, process: &str, op_id: u64, kind: Kind, op: Op) {
        debug_assert!(matches!(kind, Kind::Ok | Kind::Fail | Kind::Info));
        self.push(process, op_id, kind, op);
    }

    /// Records an observation.
    pub fn event(&self, process: &str, op: Op) {
        let id = self
            .inner
            .next_op
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.push(process, id, Kind::Event, op);
    }

    /// How many events so far match `f` (read in place, not copied).
    pub fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        let events = self.inner.events.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().filter(|e| f(e)).count()
    }

    /// The history so far.
    pub fn history(&self) -> History {
        History::new(
            self.inner
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}
