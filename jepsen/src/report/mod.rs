//! The report of one run: its verdicts as JSON, three PNG plots and an
//! `index.html` that ties them together.
//!
//! # Layout
//! [`write_report`] fills one directory (the caller writes the history
//! itself, as `history.jsonl`, next to these):
//!
//! ```text
//! <dir>/
//!   index.html        the page: verdict banner, run info, checkers, plots, faults
//!   run.json          RunInfo
//!   verdicts.json     every Verdict, as one array
//!   checks/<c>.json   one Verdict per file (name made filename-safe)
//!   latency.png       latency of each client operation over time, by outcome
//!   throughput.png    completions and deliveries per second
//!   roles.png         each node's role over time
//!   history.jsonl     (written by the caller; linked from index.html)
//! ```
//!
//! All three plots shade the fault windows (injection to heal).

mod html;
mod plots;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::check::Verdict;
use crate::history::{Event, History, Kind, Micros, Op, Workload};

/// What the report says about the run besides the history and verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub time_limit_s: u64,
    /// Client operations per second the run aimed at.
    pub rate: f64,
    /// Wall-clock start, RFC 3339-ish.
    pub started: String,
    pub duration_s: f64,
    pub raftmq_version: String,
    /// The overall verdict.
    pub valid: bool,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("plot: {0}")]
    Plot(String),
    #[error("font for the plots missing or unreadable: {0} (Debian: fonts-dejavu-core)")]
    FontMissing(PathBuf),
    #[error("report json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes the report of one run into `dir` (created if needed); see the
/// module doc for the files.
pub fn write_report(
    dir: &Path,
    info: &RunInfo,
    history: &History,
    verdicts: &[Verdict],
) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir.join("checks"))?;
    write_json(&dir.join("verdicts.json"), &verdicts)?;
    for v in verdicts {
        write_json(&dir.join("checks").join(check_file(&v.checker)), v)?;
    }
    write_json(&dir.join("run.json"), info)?;

    let summary = Summary::of(history);
    plots::latency(&dir.join("latency.png"), &summary)?;
    plots::throughput(&dir.join("throughput.png"), &summary)?;
    plots::roles(&dir.join("roles.png"), &summary)?;

    let page = html::index(info, verdicts, &summary);
    std::fs::write(dir.join("index.html"), page)?;
    Ok(())
}

fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), ReportError> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The file name of a checker's verdict under `checks/`: the name with
/// anything but `[A-Za-z0-9._-]` replaced by `_` (and never empty or dotted).
fn check_file(checker: &str) -> String {
    let mut s: String = checker
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    s + ".json"
}

/// Seconds since the start of the run.
fn secs(t: Micros) -> f64 {
    t as f64 / 1e6
}

/// How an operation ended, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Fail,
    /// Unknown: an `Info` completion, or still open when the history ended.
    Info,
}

/// One completed (or open) client operation.
#[derive(Debug, Clone)]
struct ClientOp {
    workload: Workload,
    /// Invocation time, s.
    start: f64,
    /// Completion time, s; `None` if the history ended with it open.
    end: Option<f64>,
    outcome: Outcome,
}

/// A fault from injection to heal.
#[derive(Debug, Clone)]
struct FaultWindow {
    name: String,
    nodes: Vec<u64>,
    detail: String,
    start: f64,
    /// When it was healed (an `Ok` completion); `None`: never (the window
    /// runs to the end of the history).
    healed: Option<f64>,
    /// The completion, if it was not `Ok` (the heal failed or is unknown).
    other_end: Option<Kind>,
}

/// One node's role sample.
#[derive(Debug, Clone)]
struct RoleSample {
    t: f64,
    node: u64,
    role: String,
}

/// What the plots and the page need from a history, extracted once.
#[derive(Debug, Clone, Default)]
struct Summary {
    /// End of the history, s.
    end: f64,
    ops: Vec<ClientOp>,
    /// Delivery times, s, and their workloads.
    deliveries: Vec<(f64, Workload)>,
    faults: Vec<FaultWindow>,
    roles: Vec<RoleSample>,
    /// The history's notes (time s, text).
    notes: Vec<(f64, String)>,
}

impl Summary {
    fn of(history: &History) -> Summary {
        let mut s = Summary {
            end: secs(history.end()),
            ..Summary::default()
        };
        for op in history.operations() {
            let start = secs(op.invoke.t);
            let end = op.end().map(secs);
            let outcome = match op.outcome() {
                Kind::Ok => Outcome::Ok,
                Kind::Fail => Outcome::Fail,
                _ => Outcome::Info,
            };
            match &op.invoke.op {
                Op::Fault {
                    name,
                    nodes,
                    detail,
                } => s.faults.push(FaultWindow {
                    name: name.clone(),
                    nodes: nodes.clone(),
                    detail: detail.clone(),
                    start,
                    healed: end.filter(|_| outcome == Outcome::Ok),
                    other_end: op.complete.map(|c| c.kind).filter(|k| *k != Kind::Ok),
                }),
                other => {
                    if let Some(workload) = workload(other) {
                        s.ops.push(ClientOp {
                            workload,
                            start,
                            end,
                            outcome,
                        })
                    }
                }
            }
        }
        for e in history.observations() {
            observe(&mut s, e);
        }
        s
    }

    /// The x range of the plots, s: the history, at least one second.
    fn x_max(&self) -> f64 {
        self.end.max(1.0)
    }

    /// A fault window's end, s.
    fn fault_end(&self, f: &FaultWindow) -> f64 {
        f.healed.unwrap_or(self.end).max(f.start)
    }
}

fn observe(s: &mut Summary, e: &Event) {
    match &e.op {
        Op::Deliver { workload, .. } => s.deliveries.push((secs(e.t), *workload)),
        Op::Role { node, role } => s.roles.push(RoleSample {
            t: secs(e.t),
            node: *node,
            role: role.clone(),
        }),
        Op::Note { text } => s.notes.push((secs(e.t), text.clone())),
        _ => {}
    }
}

/// The client workload an operation belongs to; `None` for the nemesis and
/// observations.
fn workload(op: &Op) -> Option<Workload> {
    match op {
        Op::Publish { workload, .. }
        | Op::Deliver { workload, .. }
        | Op::Connect { workload, .. }
        | Op::Subscribe { workload, .. } => Some(*workload),
        Op::Touch { .. } => Some(Workload::Registration),
        Op::Write { .. } | Op::Read { .. } => Some(Workload::Register),
        Op::Fault { .. } | Op::Role { .. } | Op::Note { .. } => None,
    }
}

/// A workload's name as the history spells it.
fn workload_name(w: Workload) -> String {
    serde_json::to_value(w)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{w:?}"))
}

/// Operations per workload: `[ok, fail, info, open]` (open ones are also
/// counted in info), and deliveries.
fn op_counts(s: &Summary) -> BTreeMap<String, ([u64; 4], u64)> {
    let mut m: BTreeMap<String, ([u64; 4], u64)> = BTreeMap::new();
    for op in &s.ops {
        let c = &mut m.entry(workload_name(op.workload)).or_default().0;
        c[op.outcome as usize] += 1;
        if op.end.is_none() {
            c[3] += 1;
        }
    }
    for (_, w) in &s.deliveries {
        m.entry(workload_name(*w)).or_default().1 += 1;
    }
    m
}

#[cfg(test)]
mod tests;
