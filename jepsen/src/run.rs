//! One run of one scenario: a fresh cluster, the workloads, the nemesis on
//! its seeded schedule, heal, recovery, drain, the checkers, and the report
//! directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::check::{self, NodeState, Verdict};
use crate::cluster::{Cluster, ClusterSpec};
use crate::history::{History, Kind, Op, Operation, Recorder, Workload};
use crate::nemesis::{self, Shared};
use crate::report::{self, RunInfo};
use crate::scenario::Scenario;
use crate::workload::{delivery, register, registration, subscriptions, Ctx};

/// How a run is asked for.
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub binary: PathBuf,
    /// Seconds of faults (the load runs a little longer).
    pub time_limit: u64,
    /// QoS 1 + QoS 2 publishes a second, over all publishers.
    pub rate: f64,
    pub seed: u64,
    /// The run's report directory.
    pub out: PathBuf,
}

/// What a run concluded.
pub struct Outcome {
    pub verdicts: Vec<Verdict>,
    pub tally: Tally,
    /// Every checker found its property held.
    pub valid: bool,
    /// Whether the run is as it should be: valid or, for a negative
    /// control, its checker invalid.
    pub passed: bool,
    pub dir: PathBuf,
}

/// Counts over one run's history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Client operations (faults apart), and how many completed `Ok`.
    pub operations: usize,
    pub ok: usize,
    pub deliveries: usize,
    pub faults: usize,
    /// Seconds from the final heal until every node answered `/health` 200
    /// (None: not within the limit).
    pub recovery_s: Option<f64>,
}

impl Tally {
    pub fn of(h: &History) -> Tally {
        let ops = h.operations();
        let is_fault = |o: &&Operation<'_>| matches!(o.invoke.op, Op::Fault { .. });
        let faults = ops.iter().filter(is_fault).count();
        let note_at = |text: &str| {
            h.events.iter().find_map(|e| match &e.op {
                Op::Note { text: t } if e.process == "run" && t == text => Some(e.t),
                _ => None,
            })
        };
        Tally {
            operations: ops.len() - faults,
            ok: ops
                .iter()
                .filter(|o| o.outcome() == Kind::Ok && !is_fault(o))
                .count(),
            deliveries: h
                .events
                .iter()
                .filter(|e| matches!(e.op, Op::Deliver { .. }))
                .count(),
            faults,
            recovery_s: match (note_at("heal"), note_at("recovered")) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
                _ => None,
            },
        }
    }
}

const NODES: usize = 3;
const SUBSCRIPTIONS: usize = 6;
const REGISTRATION_IDS: usize = 3;
const REGISTER_KEYS: usize = 2;

pub async fn run(s: &Scenario, o: &RunOpts) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let started_wall = wall_clock();
    let t0 = std::time::Instant::now();
    let spec = ClusterSpec {
        size: NODES,
        binary: o.binary.clone(),
        dir: o.out.join("nodes"),
        config: s.config.map(str::to_string),
    };
    eprintln!("[{}] starting a {NODES}-node cluster", s.name);
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&spec)).await??;
    let mqtt = cluster.mqtt_addrs();
    let cluster: Shared = std::sync::Arc::new(std::sync::Mutex::new(cluster));
    let rec = Recorder::new();
    let result = drive(s, o, &cluster, &rec, mqtt).await;
    // Whatever happened, the history and the logs are kept.
    let history = rec.history();
    history.save(&o.out.join("history.jsonl"))?;
    {
        let c = cluster.clone();
        let out = o.out.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            c.stop();
            c.collect_logs(&out);
        })
        .await?;
    }
    let mut notes = Vec::new();
    let convergence = match result {
        Ok(v) => v,
        Err(e) => {
            notes.push(format!("the run did not finish: {e:#}"));
            Verdict {
                checker: "convergence".into(),
                valid: false,
                counts: Default::default(),
                examples: vec![format!("not checked: {e:#}")],
            }
        }
    };
    let mut verdicts = check::check_history(&history);
    verdicts.push(convergence);
    let tally = Tally::of(&history);
    notes.extend(history_notes(&history, &tally));
    let passed = match s.must_fail {
        Some(name) => verdicts.iter().any(|v| v.checker == name && !v.valid),
        None => verdicts.iter().all(|v| v.valid),
    };
    if let Some(name) = s.must_fail {
        notes.push(format!(
            "negative control: the `{name}` checker must report a violation; it {}",
            if passed { "did" } else { "did NOT" }
        ));
    }
    let info = RunInfo {
        scenario: s.name.to_string(),
        description: s.description.to_string(),
        seed: o.seed,
        time_limit_s: o.time_limit,
        rate: o.rate,
        started: started_wall,
        duration_s: t0.elapsed().as_secs_f64(),
        raftmq_version: binary_version(&o.binary),
        valid: verdicts.iter().all(|v| v.valid),
        notes,
    };
    report::write_report(&o.out, &info, &history, &verdicts)?;
    if passed {
        // The nodes' data directories are kept only for a run to look into.
        let _ = std::fs::remove_dir_all(o.out.join("nodes"));
    }
    Ok(Outcome {
        tally,
        valid: verdicts.iter().all(|v| v.valid),
        verdicts,
        passed,
        dir: o.out.clone(),
    })
}

/// The run between cluster start and checking: returns the convergence
/// verdict.
async fn drive(
    s: &Scenario,
    o: &RunOpts,
    cluster: &Shared,
    rec: &Recorder,
    mqtt: Vec<std::net::SocketAddr>,
) -> anyhow::Result<Verdict> {
    let ctx = Ctx::new(rec.clone(), mqtt, o.seed);
    let monitor_stop = CancellationToken::new();
    let monitor = tokio::spawn(nemesis::monitor_roles(
        cluster.clone(),
        rec.clone(),
        Duration::from_millis(500),
        monitor_stop.clone(),
    ));
    let (load, drain) = (CancellationToken::new(), CancellationToken::new());
    let per_publisher = o.rate / 5.0;
    let queue = delivery::Params {
        workload: Workload::Queue,
        qos: 1,
        topic: "jepsen/queue".into(),
        publishers: 3,
        subscribers: NODES,
        rate: per_publisher,
        publish_deadline: Duration::from_secs(10),
    };
    let exactly_once = delivery::Params {
        workload: Workload::ExactlyOnce,
        qos: 2,
        topic: "jepsen/exactly-once".into(),
        publishers: 2,
        ..queue.clone()
    };

    note(rec, "setup");
    eprintln!("[{}] setting up the workloads", s.name);
    let mut subscribers = delivery::start_subscribers(&ctx, &queue, &drain).await;
    subscribers.extend(delivery::start_subscribers(&ctx, &exactly_once, &drain).await);
    subscriptions::setup(&ctx, SUBSCRIPTIONS, &load).await;
    register::initialise(&ctx, REGISTER_KEYS, &load).await;

    note(rec, "load");
    let mut load_tasks = delivery::start_publishers(&ctx, &queue, &load);
    load_tasks.extend(delivery::start_publishers(&ctx, &exactly_once, &load));
    load_tasks.extend(registration::start(&ctx, REGISTRATION_IDS, &load));
    load_tasks.extend(register::start(&ctx, REGISTER_KEYS, 2, 2, &load));

    eprintln!(
        "[{}] faults for {} s (seed {})",
        s.name, o.time_limit, o.seed
    );
    let until = Instant::now() + Duration::from_secs(o.time_limit);
    nemesis::run(s.fault, o.seed, cluster.clone(), rec.clone(), until).await;

    note(rec, "heal");
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || nemesis::heal_all(&c))
        .await?
        .map_err(anyhow::Error::msg)?;
    let recovered = wait_recovered(cluster, Duration::from_secs(60)).await;
    note(
        rec,
        if recovered {
            "recovered"
        } else {
            "not recovered within 60 s"
        },
    );
    eprintln!("[{}] healed; recovered: {recovered}", s.name);
    // Some load after recovery, so the healed cluster is seen serving.
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.cancel();
    for t in load_tasks {
        let _ = t.await;
    }
    note(rec, "load stopped");

    subscriptions::probe(&ctx, SUBSCRIPTIONS, Duration::from_secs(10)).await;
    wait_drained(rec, Duration::from_secs(5), Duration::from_secs(60)).await;
    drain.cancel();
    for t in subscribers {
        let _ = t.await;
    }
    note(rec, "drained");
    monitor_stop.cancel();
    let _ = monitor.await;

    let c = cluster.clone();
    let states =
        tokio::task::spawn_blocking(move || converged_states(&c, Duration::from_secs(20))).await?;
    Ok(check::check_convergence(&states))
}

fn note(rec: &Recorder, text: &str) {
    rec.event("run", Op::Note { text: text.into() });
}

/// Waits until every node answers `/health` 200.
async fn wait_recovered(cluster: &Shared, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let c = cluster.clone();
        let healthy = tokio::task::spawn_blocking(move || {
            let http: Vec<_> = {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                c.http_addrs()
            };
            http.iter().all(|(_, a)| admin::healthy(*a))
        })
        .await
        .unwrap_or(false);
        if healthy {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until no delivery has arrived for `quiet` (or `limit` passes).
async fn wait_drained(rec: &Recorder, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    let deliveries = || rec.count(|e| matches!(e.op, Op::Deliver { .. }));
    let mut last = deliveries();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = deliveries();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// Every node's sessions and retained messages, read once all nodes report
/// the same applied index (or after `limit`).
fn converged_states(cluster: &Shared, limit: Duration) -> Vec<NodeState> {
    let http = {
        let c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        c.http_addrs()
    };
    let deadline = std::time::Instant::now() + limit;
    loop {
        let applied: Vec<Option<u64>> = http
            .iter()
            .map(|(_, a)| {
                admin::call("GET", *a, "/api/v1/status", Duration::from_secs(2))
                    .ok()
                    .and_then(|(_, v)| v.get("last_applied").and_then(|x| x.as_u64()))
            })
            .collect();
        let same = applied.iter().all(|a| a.is_some() && *a == applied[0]);
        if same || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    http.iter()
        .map(|&(node, a)| match admin::state(a) {
            Ok((sessions, retained)) => NodeState {
                node,
                sessions,
                retained,
                error: None,
            },
            Err(e) => NodeState {
                node,
                sessions: Default::default(),
                retained: Default::default(),
                error: Some(e),
            },
        })
        .collect()
}

/// Notes the history carries (sessions lost on reconnect, faults not
/// injected) and how many operations it holds.
fn history_notes(h: &History, t: &Tally) -> Vec<String> {
    let mut notes: Vec<String> = h
        .events
        .iter()
        .filter_map(|e| match &e.op {
            Op::Note { text } if e.process != "run" => Some(text.clone()),
            _ => None,
        })
        .collect();
    notes.push(format!(
        "{} operations ({} ok), {} deliveries, {} faults injected",
        t.operations, t.ok, t.deliveries, t.faults
    ));
    notes
}

fn binary_version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| bin.display().to_string())
}

fn wall_clock() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
