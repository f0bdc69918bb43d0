//! loadgen: an emqtt-bench-style MQTT load generator that measures any broker
//! from the outside. See `cli.rs` for the modes and what each one measures.

pub mod cli;
mod clock;
mod codec;
mod conn;
mod connmode;
mod drain;
mod publisher;
mod sessions;
mod stats;
mod subscriber;

use cli::Pattern;
use cli::{
    BenchArgs, Cli, Common, ConnArgs, DrainArgs, LoadOpts, Mode, PubArgs, SessionsArgs, SubArgs,
};
use clock::mono_ns;
use conn::{ClientCfg, Conn};
use hdrhistogram::Histogram;
use publisher::{PubResult, PubSpec};
use serde_json::{json, Value};
use stats::{lat_header, lat_json, lat_row, new_hist, rate, Counters, Errors, Window};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use subscriber::{SubResult, SubSpec};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

/// Exit codes: 0 = clean run; 1 = fatal (bad arguments, could not connect or
/// subscribe); 2 = the run completed but saw errors or lost messages.
pub const EXIT_FATAL: i32 = 1;
pub const EXIT_ERRORS: i32 = 2;

/// Shared schedule of a run, in monotonic ns.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// Publishers start sending (warmup begins).
    pub start: u64,
    /// Measurement window [t0, t1).
    pub t0: u64,
    pub t1: u64,
    /// Publishers give up waiting for acks after this.
    pub drain_until: u64,
}

#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Waiting,
    Run(Timeline),
    Stop,
}

fn secs_ns(s: f64) -> u64 {
    (s.max(0.0) * 1e9) as u64
}

fn client_cfg(c: &Common, host: &str) -> ClientCfg {
    ClientCfg {
        host: host.to_string(),
        version: c.mqtt_version,
        username: c.username.clone(),
        password: c.password.clone(),
        clean: c.clean_session,
        keepalive: c.keepalive,
        session_expiry: c.session_expiry,
        connect_timeout: Duration::from_secs_f64(c.connect_timeout.max(0.001)),
    }
}

fn prefix(c: &Common) -> String {
    c.client_prefix
        .clone()
        .unwrap_or_else(|| format!("loadgen_{}", std::process::id()))
}

fn version_name(v: u8) -> &'static str {
    if v == codec::V311 {
        "3.1.1"
    } else {
        "5.0"
    }
}

/// Connect all clients (at most 256 handshakes in flight). The first failure
/// is fatal for pub/sub/bench: a load test on a partial fleet is misleading.
async fn connect_all(cfg: &ClientCfg, ids: &[String], role: &str) -> Result<Vec<Conn>, String> {
    let sem = Arc::new(Semaphore::new(256));
    let mut handles = Vec::with_capacity(ids.len());
    for id in ids {
        let (cfg, id, sem) = (cfg.clone(), id.clone(), sem.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            conn::connect(&cfg, &id).await
        }));
    }
    let mut conns = Vec::with_capacity(ids.len());
    let mut first_err = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => {
                first_err.get_or_insert_with(|| format!("{role} {i} ({}): {e}", ids[i]));
            }
            Err(e) => {
                first_err.get_or_insert_with(|| format!("{role} {i}: task failed: {e}"));
            }
        }
    }
    match first_err {
        None => Ok(conns),
        Some(e) => {
            for c in conns {
                c.close().await;
            }
            Err(e)
        }
    }
}

/// Per-second progress on stderr.
fn spawn_progress(counters: Arc<Counters>, quiet: bool, show: [bool; 3]) -> Option<JoinHandle<()>> {
    if quiet {
        return None;
    }
    Some(tokio::spawn(async move {
        let begin = mono_ns();
        let mut last = counters.snapshot();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = counters.snapshot();
            let mut line = format!("[{:>6.1}s]", (mono_ns() - begin) as f64 / 1e9);
            let parts = [
                ("pub", now.0 - last.0),
                ("ack", now.1 - last.1),
                ("recv", now.2 - last.2),
            ];
            for (i, (name, v)) in parts.iter().enumerate() {
                if show[i] {
                    line.push_str(&format!("  {name} {v:>8}/s"));
                }
            }
            eprintln!("{line}");
            last = now;
        }
    }))
}

fn emit(common: &Common, table: String, json: Value) {
    if common.json {
        eprint!("{table}");
        println!("{json}");
    } else {
        print!("{table}");
    }
}

fn fatal(msg: &str) -> i32 {
    eprintln!("loadgen: error: {msg}");
    EXIT_FATAL
}

fn check_load(o: &LoadOpts) -> Result<usize, String> {
    if o.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if o.duration <= 0.0 {
        return Err("--duration must be positive".into());
    }
    if o.qos > 0 && o.inflight == 0 {
        return Err("--inflight must be at least 1".into());
    }
    let size = o.size.max(stats::HEADER_LEN);
    if size != o.size {
        eprintln!(
            "loadgen: note: payload raised from {} to {size} bytes to hold the loadgen header",
            o.size
        );
    }
    if size + o.topic.len() + 16 > codec::MAX_REMAINING {
        return Err("--size too large for one MQTT packet".into());
    }
    Ok(size)
}

fn run_id() -> u32 {
    let x = mono_ns() ^ ((std::process::id() as u64) << 32);
    (x ^ (x >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u32
}

/// Entry point: build the runtime and run the chosen mode; returns the exit code.
pub fn main_with(cli: Cli) -> i32 {
    let common = match &cli.mode {
        Mode::Pub(a) => &a.common,
        Mode::Sub(a) => &a.common,
        Mode::Conn(a) => &a.common,
        Mode::Bench(a) => &a.common,
        Mode::Sessions(a) => &a.common,
        Mode::Drain(a) => &a.common,
    };
    let threads = common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let _ = clock::raise_nofile_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fatal(&format!("cannot start runtime: {e}")),
    };
    rt.block_on(async move {
        match cli.mode {
            Mode::Pub(a) => run_pub(a).await,
            Mode::Sub(a) => run_sub(a).await,
            Mode::Conn(a) => run_conn(a).await,
            Mode::Bench(a) => run_bench(a).await,
            Mode::Sessions(a) => run_sessions(a).await,
            Mode::Drain(a) => run_drain(a).await,
        }
    })
}

struct PubFleet {
    handles: Vec<JoinHandle<PubResult>>,
}

/// `counts`: with `pub --count`, each publisher's block of sequence numbers
/// (see [`publisher::shares`]); None runs for the timeline's duration.
#[allow(clippy::too_many_arguments)]
fn spawn_publishers(
    conns: Vec<Conn>,
    o: &LoadOpts,
    size: usize,
    run_id: u32,
    keepalive: u16,
    counts: Option<&[(u64, u64)]>,
    ctl: &watch::Receiver<Phase>,
    counters: &Arc<Counters>,
) -> PubFleet {
    let n = conns.len() as u64;
    if let Some(c) = conns.first() {
        if o.qos > 0 && (c.receive_max as usize) < o.inflight {
            eprintln!(
                "loadgen: note: broker Receive Maximum {} caps --inflight {}",
                c.receive_max, o.inflight
            );
        }
        if c.max_qos < o.qos {
            eprintln!(
                "loadgen: note: broker Maximum QoS {} caps --qos {}",
                c.max_qos, o.qos
            );
        }
    }
    let handles = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let spec = PubSpec {
                idx: i as u32,
                topic: o.topic.replace("%i", &i.to_string()).into_bytes(),
                retain: o.retain,
                qos: o.qos.min(c.max_qos),
                size,
                inflight: o.inflight,
                rate: o.rate,
                n_pubs: n,
                run_id,
                keepalive,
                seq_base: counts.map_or(0, |c| c[i].0),
                count: counts.map(|c| c[i].1),
                drain_ns: secs_ns(o.drain),
            };
            let (ctl, counters) = (ctl.clone(), counters.clone());
            tokio::spawn(async move {
                let (r, c) = publisher::run(spec, c, ctl, counters).await;
                if let Some(c) = c {
                    c.close().await;
                }
                r
            })
        })
        .collect();
    PubFleet { handles }
}

/// A task that panicked or was cancelled has no result; say so loudly.
fn task_lost(role: &str, e: tokio::task::JoinError) {
    eprintln!("loadgen: internal error: a {role} task failed: {e}");
    TASKS_LOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

static TASKS_LOST: AtomicU64 = AtomicU64::new(0);

fn tasks_lost(errors: &mut Errors) {
    let n = TASKS_LOST.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..n {
        errors.add("internal: client task failed");
    }
}

async fn join_pubs(f: PubFleet) -> Vec<PubResult> {
    let mut out = Vec::new();
    for h in f.handles {
        match h.await {
            Ok(r) => out.push(r),
            Err(e) => task_lost("publisher", e),
        }
    }
    out
}

struct SubFleet {
    handles: Vec<JoinHandle<SubResult>>,
    unique: Vec<Arc<AtomicU64>>,
}

/// Spawn subscriber tasks and wait for every SUBACK.
async fn spawn_subscribers(
    conns: Vec<Conn>,
    spec: SubSpec,
    ctl: &watch::Receiver<Phase>,
    counters: &Arc<Counters>,
    timeout: Duration,
) -> Result<SubFleet, (SubFleet, String)> {
    let mut fleet = SubFleet {
        handles: Vec::new(),
        unique: Vec::new(),
    };
    let mut acks = Vec::new();
    for (i, c) in conns.into_iter().enumerate() {
        let mut spec = spec.clone();
        // A filter with %i: subscriber i's own topic (p2p).
        spec.filter = spec.filter.replace("%i", &i.to_string());
        let (tx, rx) = oneshot::channel();
        let unique = Arc::new(AtomicU64::new(0));
        fleet.unique.push(unique.clone());
        let (ctl, counters) = (ctl.clone(), counters.clone());
        fleet.handles.push(tokio::spawn(async move {
            let (r, c) = subscriber::run(spec, c, ctl, tx, unique, counters).await;
            if let Some(c) = c {
                c.close().await;
            }
            r
        }));
        acks.push(rx);
    }
    for (i, rx) in acks.into_iter().enumerate() {
        let err = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(e))) => e,
            Ok(Err(_)) => "subscriber task ended before SUBACK".to_string(),
            Err(_) => "timed out waiting for SUBACK".to_string(),
        };
        return Err((fleet, format!("subscriber {i}: {err}")));
    }
    Ok(fleet)
}

async fn join_subs(f: SubFleet) -> Vec<SubResult> {
    let mut out = Vec::new();
    for h in f.handles {
        match h.await {
            Ok(r) => out.push(r),
            Err(e) => task_lost("subscriber", e),
        }
    }
    out
}

fn timeline(o: &LoadOpts) -> Timeline {
    // A few ms of slack so every task is parked on the start signal.
    let start = mono_ns() + 20_000_000;
    let t0 = start + secs_ns(o.warmup);
    let t1 = t0 + secs_ns(o.duration);
    Timeline {
        start,
        t0,
        t1,
        drain_until: t1 + secs_ns(o.drain),
    }
}

/// `pub --count`: publishing starts at once and ends when every message is
/// sent, all of it measured; the end of the window is only a far bound.
fn counted_timeline(o: &LoadOpts) -> Timeline {
    const YEAR_NS: u64 = 365 * 24 * 3600 * 1_000_000_000;
    let start = mono_ns();
    Timeline {
        start,
        t0: 0,
        t1: start + YEAR_NS,
        drain_until: start + YEAR_NS + secs_ns(o.drain),
    }
}

/// Aggregated publisher side.
struct PubAgg {
    sent_total: u64,
    sent_win: u64,
    acked_total: u64,
    acked_win: u64,
    not_sent: u64,
    unacked: u64,
    hist: Histogram<u64>,
    errors: Errors,
}

fn agg_pubs(rs: &[PubResult]) -> PubAgg {
    let mut a = PubAgg {
        sent_total: 0,
        sent_win: 0,
        acked_total: 0,
        acked_win: 0,
        not_sent: 0,
        unacked: 0,
        hist: new_hist(),
        errors: Errors::default(),
    };
    for r in rs {
        a.sent_total += r.sent_total;
        a.sent_win += r.sent_win;
        a.acked_total += r.acked_total;
        a.acked_win += r.acked_win;
        a.not_sent += r.not_sent;
        a.unacked += r.unacked;
        let _ = a.hist.add(&r.ack_hist);
        a.errors.merge(&r.errors);
    }
    a
}

struct SubAgg {
    received_total: u64,
    received_win: u64,
    duplicates: u64,
    gaps: u64,
    stale: u64,
    foreign: u64,
    disconnected: u64,
    publishers_seen: usize,
    hist: Histogram<u64>,
    errors: Errors,
}

fn agg_subs(rs: &[SubResult]) -> SubAgg {
    let mut a = SubAgg {
        received_total: 0,
        received_win: 0,
        duplicates: 0,
        gaps: 0,
        stale: 0,
        foreign: 0,
        disconnected: 0,
        publishers_seen: 0,
        hist: new_hist(),
        errors: Errors::default(),
    };
    let mut pubs = std::collections::HashSet::new();
    for r in rs {
        a.received_total += r.received_total;
        a.received_win += r.received_win;
        a.duplicates += r.duplicates();
        a.gaps += r.trackers.values().map(|t| t.gaps()).sum::<u64>();
        a.stale += r.stale;
        a.foreign += r.foreign;
        a.disconnected += u64::from(!r.stayed_connected);
        pubs.extend(r.trackers.keys().copied());
        let _ = a.hist.add(&r.e2e_hist);
        a.errors.merge(&r.errors);
    }
    a.publishers_seen = pubs.len();
    a
}

/// Publisher + subscriber errors, plus any client task that died.
fn all_errors(pa: Option<&PubAgg>, sa: Option<&SubAgg>) -> Errors {
    let mut e = Errors::default();
    if let Some(p) = pa {
        e.merge(&p.errors);
    }
    if let Some(s) = sa {
        e.merge(&s.errors);
    }
    tasks_lost(&mut e);
    e
}

fn offered(rate_opt: u64) -> (String, Value) {
    if rate_opt == 0 {
        ("max".into(), Value::Null)
    } else {
        (format!("{rate_opt}"), json!(rate_opt))
    }
}

fn count_row(name: &str, total: impl ToString, win: impl ToString, rate: impl ToString) -> String {
    format!(
        "  {name:<22}{:>14}{:>14}{:>14}\n",
        total.to_string(),
        win.to_string(),
        rate.to_string()
    )
}

fn count_header() -> String {
    count_row("messages", "total", "in window", "msg/s")
}

// ---------------------------------------------------------------- pub mode

async fn run_pub(a: PubArgs) -> i32 {
    let c = &a.common;
    let o = &a.load;
    let size = match check_load(o) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    let cfg = client_cfg(c, &c.host);
    let p = prefix(c);
    let ids: Vec<String> = (0..o.clients).map(|i| format!("{p}_pub_{i}")).collect();
    let conns = match connect_all(&cfg, &ids, "publisher").await {
        Ok(v) => v,
        Err(e) => return fatal(&e),
    };
    let counters = Arc::new(Counters::default());
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Waiting);
    let rid = run_id();
    let counts = (a.count > 0).then(|| publisher::shares(a.count, o.clients as u64));
    let fleet = spawn_publishers(
        conns,
        o,
        size,
        rid,
        c.keepalive,
        counts.as_deref(),
        &ctl_rx,
        &counters,
    );
    let tl = if a.count > 0 {
        counted_timeline(o)
    } else {
        timeline(o)
    };
    let _ = ctl_tx.send(Phase::Run(tl));
    let progress = spawn_progress(counters.clone(), c.quiet, [true, o.qos > 0, false]);
    let results = join_pubs(fleet).await;
    if let Some(p) = progress {
        p.abort();
    }
    let win = if a.count > 0 {
        // The whole run, to the last ack (QoS 0: to the last write).
        let last_ack = counters
            .last_ack_ns
            .load(std::sync::atomic::Ordering::Relaxed);
        Window {
            t0: tl.start,
            t1: if o.qos > 0 && last_ack > 0 {
                last_ack
            } else {
                mono_ns()
            },
        }
    } else {
        Window {
            t0: tl.t0,
            t1: tl.t1,
        }
    };
    let mut pa = agg_pubs(&results);
    let done = if o.qos > 0 {
        pa.acked_total
    } else {
        pa.sent_total
    };
    if done < a.count {
        pa.errors.add(format!(
            "count: only {done} of {} {}",
            a.count,
            if o.qos > 0 { "acknowledged" } else { "sent" }
        ));
    }
    let secs = win.secs();
    let (off_s, off_j) = offered(o.rate);
    let mut t = format!(
        "loadgen pub: {} MQTT {} QoS {} payload {} B, {} publishers, inflight {}, offered {off_s} msg/s, {}\n",
        c.host,
        version_name(c.mqtt_version),
        o.qos,
        size,
        o.clients,
        o.inflight,
        if a.count > 0 {
            format!("{} messages (sequence numbers 0..{}) in {secs:.1} s, run id {rid}", a.count, a.count - 1)
        } else {
            format!("{secs:.1} s measured after {:.1} s warmup", o.warmup)
        }
    );
    t += &count_header();
    t += &count_row("offered", "-", "-", &off_s);
    t += &count_row(
        "published",
        pa.sent_total,
        pa.sent_win,
        rate(pa.sent_win, secs),
    );
    if o.qos > 0 {
        t += &count_row(
            "acked",
            pa.acked_total,
            pa.acked_win,
            rate(pa.acked_win, secs),
        );
        t += &lat_header();
        t += "\n";
        t += &lat_row("pub->ack", &pa.hist);
        t += "\n";
    }
    t += &format!(
        "  not sent (behind schedule) {}, unacked at end {}\n",
        pa.not_sent, pa.unacked
    );
    let errors = all_errors(Some(&pa), None);
    t += &errors.lines();
    let j = json!({
        "mode": "pub", "host": c.host, "mqtt_version": version_name(c.mqtt_version),
        "qos": o.qos, "size": size, "clients": o.clients, "inflight": o.inflight,
        "count": a.count, "run_id": rid,
        "duration_s": secs, "warmup_s": if a.count > 0 { 0.0 } else { o.warmup },
        "offered_rate": off_j,
        "published": pa.sent_total, "published_in_window": pa.sent_win, "published_rate": rate(pa.sent_win, secs),
        "acked": pa.acked_total, "acked_in_window": pa.acked_win, "acked_rate": rate(pa.acked_win, secs),
        "ack_latency_ms": lat_json(&pa.hist),
        "max_ack_gap_ms": counters.max_ack_gap_ms(),
        "not_sent": pa.not_sent, "unacked": pa.unacked,
        "errors": errors.total(), "error_kinds": errors.json(),
    });
    emit(c, t, j);
    if errors.total() > 0 {
        EXIT_ERRORS
    } else {
        0
    }
}

// ---------------------------------------------------------------- sub mode

async fn run_sub(a: SubArgs) -> i32 {
    let c = &a.common;
    if a.clients == 0 || a.duration <= 0.0 {
        return fatal("--clients and --duration must be positive");
    }
    let cfg = client_cfg(c, &c.host);
    let p = prefix(c);
    let ids: Vec<String> = (0..a.clients).map(|i| format!("{p}_sub_{i}")).collect();
    let conns = match connect_all(&cfg, &ids, "subscriber").await {
        Ok(v) => v,
        Err(e) => return fatal(&e),
    };
    let counters = Arc::new(Counters::default());
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Waiting);
    let fleet = match spawn_subscribers(
        conns,
        SubSpec {
            filter: a.topic.clone(),
            qos: a.qos,
            keepalive: c.keepalive,
            run_id: None,
        },
        &ctl_rx,
        &counters,
        cfg.connect_timeout,
    )
    .await
    {
        Ok(f) => f,
        Err((f, e)) => {
            let _ = ctl_tx.send(Phase::Stop);
            join_subs(f).await;
            return fatal(&e);
        }
    };
    let start = mono_ns();
    let t0 = start + secs_ns(a.warmup);
    let t1 = t0 + secs_ns(a.duration);
    let _ = ctl_tx.send(Phase::Run(Timeline {
        start,
        t0,
        t1,
        drain_until: t1,
    }));
    let progress = spawn_progress(counters.clone(), c.quiet, [false, false, true]);
    // Stop at t1, or early if every subscriber has died.
    while mono_ns() < t1 && !fleet.handles.iter().all(|h| h.is_finished()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = ctl_tx.send(Phase::Stop);
    let results = join_subs(fleet).await;
    if let Some(p) = progress {
        p.abort();
    }
    let secs = Window { t0, t1 }.secs();
    let sa = agg_subs(&results);
    let mut t = format!(
        "loadgen sub: {} MQTT {} filter '{}' QoS {}, {} subscribers, {:.1} s measured after {:.1} s warmup\n",
        c.host,
        version_name(c.mqtt_version),
        a.topic,
        a.qos,
        a.clients,
        secs,
        a.warmup
    );
    t += &count_header();
    t += &count_row(
        "received",
        sa.received_total,
        sa.received_win,
        rate(sa.received_win, secs),
    );
    t += &lat_header();
    t += "\n";
    t += &lat_row("pub->sub (e2e)", &sa.hist);
    t += "\n";
    t += &format!(
        "  publishers seen {}, duplicates {}, sequence gaps {}, non-loadgen payloads {}\n",
        sa.publishers_seen, sa.duplicates, sa.gaps, sa.foreign
    );
    let errors = all_errors(None, Some(&sa));
    t += &errors.lines();
    let j = json!({
        "mode": "sub", "host": c.host, "mqtt_version": version_name(c.mqtt_version),
        "topic": a.topic, "qos": a.qos, "clients": a.clients,
        "duration_s": secs, "warmup_s": a.warmup,
        "received": sa.received_total, "received_in_window": sa.received_win,
        "received_rate": rate(sa.received_win, secs),
        "e2e_latency_ms": lat_json(&sa.hist),
        "publishers_seen": sa.publishers_seen, "duplicates": sa.duplicates, "gaps": sa.gaps,
        "foreign": sa.foreign, "disconnected": sa.disconnected,
        "errors": errors.total(), "error_kinds": errors.json(),
    });
    emit(c, t, j);
    if errors.total() > 0 {
        EXIT_ERRORS
    } else {
        0
    }
}

// ---------------------------------------------------------------- conn mode

struct ConnTally {
    hist: Histogram<u64>,
    errors: Errors,
    ok: u64,
    failed: u64,
}

impl ConnTally {
    fn absorb(&mut self, att: connmode::Attempt) {
        match (att.latency_ns, att.error) {
            (Some(ns), _) => {
                self.ok += 1;
                stats::record_ns(&mut self.hist, ns);
            }
            (None, e) => {
                self.failed += 1;
                self.errors
                    .add(e.unwrap_or_else(|| "connect: unknown".into()));
            }
        }
    }
}

async fn run_conn(a: ConnArgs) -> i32 {
    let c = &a.common;
    if a.clients == 0 {
        return fatal("--clients must be at least 1");
    }
    let cfg = client_cfg(c, &c.host);
    let p = prefix(c);
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Waiting);
    let (rep_tx, mut rep_rx) = mpsc::unbounded_channel();
    let pacer = match clock::Pacer::new() {
        Ok(p) => p,
        Err(e) => return fatal(&format!("timerfd: {e}")),
    };
    let begin = mono_ns() + 5_000_000;
    let mut handles = Vec::with_capacity(a.clients);
    let mut tally = ConnTally {
        hist: new_hist(),
        errors: Errors::default(),
        ok: 0,
        failed: 0,
    };
    for i in 0..a.clients {
        let intended = if a.rate == 0 {
            begin
        } else {
            begin + (i as u128 * 1_000_000_000 / a.rate as u128) as u64
        };
        if let Err(e) = pacer.sleep_until(intended).await {
            return fatal(&format!("timer: {e}"));
        }
        while let Ok(att) = rep_rx.try_recv() {
            tally.absorb(att);
        }
        handles.push(tokio::spawn(connmode::one(
            cfg.clone(),
            format!("{p}_conn_{i}"),
            intended,
            rep_tx.clone(),
            ctl_rx.clone(),
        )));
    }
    drop(rep_tx);
    let mut next_note = 1000;
    while let Some(att) = rep_rx.recv().await {
        tally.absorb(att);
        let done = tally.ok + tally.failed;
        if !c.quiet && done >= next_note {
            eprintln!("[conn] {done}/{} attempted", a.clients);
            next_note += 1000;
        }
    }
    let ConnTally {
        hist,
        mut errors,
        ok,
        failed,
    } = tally;
    let last = mono_ns();
    let span = (last - begin) as f64 / 1e9;
    if a.duration > 0.0 && ok > 0 {
        if !c.quiet {
            eprintln!("[conn] {ok} connected, holding {:.1} s", a.duration);
        }
        tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    }
    let _ = ctl_tx.send(Phase::Stop);
    let mut dropped = 0u64;
    for h in handles {
        if let Ok(Some(reason)) = h.await {
            dropped += 1;
            errors.add(reason);
        }
    }
    let mut t = format!(
        "loadgen conn: {} MQTT {}, {} connections at {} /s, held {:.1} s\n",
        c.host,
        version_name(c.mqtt_version),
        a.clients,
        if a.rate == 0 {
            "max".to_string()
        } else {
            a.rate.to_string()
        },
        a.duration
    );
    t += &format!(
        "  attempted {}, connected {ok}, failed {failed}, dropped while held {dropped}, {:.1} connects/s over {:.2} s\n",
        a.clients,
        rate(ok, span),
        span
    );
    t += &lat_header();
    t += "\n";
    t += &lat_row("connect", &hist);
    t += "\n";
    t += &errors.lines();
    let j = json!({
        "mode": "conn", "host": c.host, "mqtt_version": version_name(c.mqtt_version),
        "clients": a.clients, "offered_rate": offered(a.rate).1, "hold_s": a.duration,
        "connected": ok, "failed": failed, "dropped": dropped,
        "connect_rate": rate(ok, span),
        "connect_latency_ms": lat_json(&hist),
        "errors": errors.total(), "error_kinds": errors.json(),
    });
    emit(c, t, j);
    if ok == 0 {
        eprintln!("loadgen: error: no connection succeeded");
        EXIT_FATAL
    } else if errors.total() > 0 {
        EXIT_ERRORS
    } else {
        0
    }
}

// ---------------------------------------------------------------- bench mode

async fn run_bench(a: BenchArgs) -> i32 {
    let c = &a.common;
    let o = &a.load;
    let size = match check_load(o) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    let sub_host = a.sub_host.clone().unwrap_or_else(|| c.host.clone());
    let filter = a
        .sub_topic
        .clone()
        .unwrap_or_else(|| default_filter(&o.topic));
    let sub_qos = a.sub_qos.unwrap_or(o.qos);
    let p = prefix(c);
    let rid = run_id();
    let counters = Arc::new(Counters::default());
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Waiting);

    // 1. Subscribers, all SUBACKed before any publisher starts.
    let sub_cfg = client_cfg(c, &sub_host);
    let sub_ids: Vec<String> = (0..a.subs).map(|i| format!("{p}_sub_{i}")).collect();
    let sub_conns = match connect_all(&sub_cfg, &sub_ids, "subscriber").await {
        Ok(v) => v,
        Err(e) => return fatal(&e),
    };
    let subs = match spawn_subscribers(
        sub_conns,
        SubSpec {
            filter: filter.clone(),
            qos: sub_qos,
            keepalive: c.keepalive,
            run_id: Some(rid),
        },
        &ctl_rx,
        &counters,
        sub_cfg.connect_timeout,
    )
    .await
    {
        Ok(f) => f,
        Err((f, e)) => {
            let _ = ctl_tx.send(Phase::Stop);
            join_subs(f).await;
            return fatal(&e);
        }
    };

    // 2. Publishers.
    let pub_cfg = client_cfg(c, &c.host);
    let pub_ids: Vec<String> = (0..o.clients).map(|i| format!("{p}_pub_{i}")).collect();
    let pub_conns = match connect_all(&pub_cfg, &pub_ids, "publisher").await {
        Ok(v) => v,
        Err(e) => {
            let _ = ctl_tx.send(Phase::Stop);
            join_subs(subs).await;
            return fatal(&e);
        }
    };
    let pubs = spawn_publishers(
        pub_conns,
        o,
        size,
        rid,
        c.keepalive,
        None,
        &ctl_rx,
        &counters,
    );

    // 3. Run.
    let tl = timeline(o);
    let _ = ctl_tx.send(Phase::Run(tl));
    let progress = spawn_progress(counters.clone(), c.quiet, [true, o.qos > 0, true]);
    let pub_results = join_pubs(pubs).await;
    let pa = agg_pubs(&pub_results);

    // What subscriber `si` must receive: everything (fanout), or its own
    // publisher's messages (p2p). Shared: the group as a whole, below.
    let expected = |si: usize| match a.pattern {
        Pattern::P2p => pub_results
            .iter()
            .filter(|p| p.idx as usize == si)
            .map(|p| p.sent_total)
            .sum(),
        _ => pa.sent_total,
    };

    // 4. Let subscribers catch up on everything that was sent, bounded by --drain.
    let catchup_from = mono_ns();
    let catchup_until = catchup_from + secs_ns(o.drain);
    let caught_up = loop {
        let got = |u: &Arc<AtomicU64>| u.load(std::sync::atomic::Ordering::Relaxed);
        let caught_up = match a.pattern {
            Pattern::Shared => {
                subs.handles.iter().all(|h| h.is_finished())
                    || subs.unique.iter().map(got).sum::<u64>() >= pa.sent_total
            }
            _ => subs
                .unique
                .iter()
                .zip(&subs.handles)
                .enumerate()
                .all(|(si, (u, h))| h.is_finished() || got(u) >= expected(si)),
        };
        if caught_up || mono_ns() >= catchup_until {
            break caught_up;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let catchup_s = (mono_ns() - catchup_from) as f64 / 1e9;
    let _ = ctl_tx.send(Phase::Stop);
    let sub_results = join_subs(subs).await;
    if let Some(p) = progress {
        p.abort();
    }

    // 5. Loss / duplicates per (subscriber, publisher).
    let mut lost = 0u64;
    let mut missing = 0u64;
    // A few concrete lost messages, to help debug a broker.
    let mut lost_sample: Vec<Value> = Vec::new();
    for (si, s) in sub_results.iter().enumerate() {
        // Shared: a message is delivered once to the group; counted once,
        // against every subscriber's trackers.
        if a.pattern == Pattern::Shared && si > 0 {
            break;
        }
        for pr in &pub_results {
            if a.pattern == Pattern::P2p && pr.idx as usize != si {
                continue;
            }
            let t = s.trackers.get(&(rid, pr.idx));
            let seen = |seq: u64| match a.pattern {
                Pattern::Shared => sub_results.iter().any(|s| {
                    s.trackers
                        .get(&(rid, pr.idx))
                        .is_some_and(|t| t.seen.contains(seq))
                }),
                _ => t.is_some_and(|t| t.seen.contains(seq)),
            };
            if o.qos > 0 {
                for q in pr.acked.iter().filter(|&q| !seen(q)) {
                    lost += 1;
                    if lost_sample.len() < 10 {
                        lost_sample.push(
                            json!({"sub": si, "publisher": pr.idx, "seq": q, "of": pr.sent_total}),
                        );
                    }
                }
            }
            missing += (0..pr.sent_total).filter(|&q| !seen(q)).count() as u64;
        }
    }
    let sa = agg_subs(&sub_results);
    let errors = all_errors(Some(&pa), Some(&sa));

    let win = Window {
        t0: tl.t0,
        t1: tl.t1,
    };
    let secs = win.secs();
    let (off_s, off_j) = offered(o.rate);
    let mut t = format!(
        "loadgen bench: pubs -> {} subs <- {} MQTT {} QoS {} (sub QoS {sub_qos}) payload {} B, {} publishers, {} subscribers on '{}', inflight {}, offered {off_s} msg/s, {:.1} s measured after {:.1} s warmup\n",
        c.host,
        sub_host,
        version_name(c.mqtt_version),
        o.qos,
        size,
        o.clients,
        a.subs,
        filter,
        o.inflight,
        secs,
        o.warmup
    );
    t += &count_header();
    t += &count_row("offered", "-", "-", &off_s);
    t += &count_row(
        "published",
        pa.sent_total,
        pa.sent_win,
        rate(pa.sent_win, secs),
    );
    if o.qos > 0 {
        t += &count_row(
            "acked",
            pa.acked_total,
            pa.acked_win,
            rate(pa.acked_win, secs),
        );
    }
    t += &count_row(
        "received",
        sa.received_total,
        sa.received_win,
        rate(sa.received_win, secs),
    );
    t += &lat_header();
    t += "\n";
    if o.qos > 0 {
        t += &lat_row("pub->ack", &pa.hist);
        t += "\n";
    }
    t += &lat_row("pub->sub (e2e)", &sa.hist);
    t += "\n";
    if o.qos > 0 {
        t += &format!("  lost (acked, never received) {lost}, ");
    } else {
        t += "  lost n/a at QoS 0, ";
    }
    t += &format!(
        "duplicates {}, missing (sent, never received) {missing}\n  not sent (behind schedule) {}, unacked at end {}, subscribers disconnected {}, stale (other runs) {}, non-loadgen {}\n",
        sa.duplicates, pa.not_sent, pa.unacked, sa.disconnected, sa.stale, sa.foreign
    );
    if !lost_sample.is_empty() {
        t += &format!(
            "  first lost (subscriber, publisher, seq of sent): {}\n",
            lost_sample
                .iter()
                .map(|v| format!(
                    "({}, {}, {}/{})",
                    v["sub"], v["publisher"], v["seq"], v["of"]
                ))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    t += &format!(
        "  subscriber catch-up after the publishers finished: {catchup_s:.2} s{}\n",
        if caught_up {
            String::new()
        } else {
            format!(
                " (gave up after --drain {} s: \"lost\" may include late deliveries)",
                o.drain
            )
        }
    );
    t += &errors.lines();
    let j = json!({
        "mode": "bench", "host": c.host, "sub_host": sub_host,
        "mqtt_version": version_name(c.mqtt_version),
        "qos": o.qos, "sub_qos": sub_qos, "size": size, "clients": o.clients, "subs": a.subs,
        "topic": o.topic, "sub_topic": filter, "inflight": o.inflight,
        "duration_s": secs, "warmup_s": o.warmup,
        "offered_rate": off_j,
        "published": pa.sent_total, "published_in_window": pa.sent_win, "published_rate": rate(pa.sent_win, secs),
        "acked": pa.acked_total, "acked_in_window": pa.acked_win, "acked_rate": rate(pa.acked_win, secs),
        "received": sa.received_total, "received_in_window": sa.received_win, "received_rate": rate(sa.received_win, secs),
        "ack_latency_ms": lat_json(&pa.hist),
        "max_ack_gap_ms": counters.max_ack_gap_ms(),
        "e2e_latency_ms": lat_json(&sa.hist),
        "lost": if o.qos > 0 { json!(lost) } else { Value::Null },
        "duplicates": sa.duplicates, "missing": missing,
        "not_sent": pa.not_sent, "unacked": pa.unacked,
        "lost_sample": lost_sample,
        "catchup_s": (catchup_s * 1000.0).round() / 1000.0, "catchup_timed_out": !caught_up,
        "subs_disconnected": sa.disconnected, "stale": sa.stale, "foreign": sa.foreign,
        "errors": errors.total(), "error_kinds": errors.json(),
    });
    emit(c, t, j);
    if errors.total() > 0 || lost > 0 {
        EXIT_ERRORS
    } else {
        0
    }
}

// ---------------------------------------------------------------- sessions mode

async fn run_sessions(a: SessionsArgs) -> i32 {
    let c = &a.common;
    if a.clients == 0 {
        return fatal("--clients must be at least 1");
    }
    let mut cfg = client_cfg(c, &c.host);
    cfg.clean = false;
    let p = prefix(c);
    let ids: Vec<String> = (0..a.clients).map(|i| format!("{p}_sub_{i}")).collect();
    let begin = mono_ns();
    let conns = match connect_all(&cfg, &ids, "session").await {
        Ok(v) => v,
        Err(e) => return fatal(&e),
    };
    let existed = conns.iter().filter(|c| c.session_present).count();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let (filter, timeout) = (a.topic.clone(), cfg.connect_timeout);
            tokio::spawn(async move {
                sessions::subscribe_and_leave(conn, &filter, a.qos, timeout).await
            })
        })
        .collect();
    let mut errors = Errors::default();
    let mut granted = std::collections::BTreeMap::<u8, usize>::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(q)) => *granted.entry(q).or_default() += 1,
            Ok(Err(e)) => {
                if errors.total() == 0 {
                    eprintln!("loadgen: error: session {i} ({}): {e}", ids[i]);
                }
                errors.add(e);
            }
            Err(e) => task_lost("session", e),
        }
    }
    tasks_lost(&mut errors);
    let secs = (mono_ns() - begin) as f64 / 1e9;
    let mut t = format!(
        "loadgen sessions: {} MQTT {}, {} persistent sessions {p}_sub_0..{} subscribed to '{}' at QoS {} and disconnected in {secs:.2} s\n",
        c.host,
        version_name(c.mqtt_version),
        a.clients,
        a.clients - 1,
        a.topic,
        a.qos
    );
    t += &format!(
        "  already present {existed}, granted QoS {}\n",
        granted
            .iter()
            .map(|(q, n)| format!("{q}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    t += &errors.lines();
    let j = json!({
        "mode": "sessions", "host": c.host, "mqtt_version": version_name(c.mqtt_version),
        "clients": a.clients, "topic": a.topic, "qos": a.qos,
        "subscribed": granted.values().sum::<usize>(), "already_present": existed,
        "elapsed_s": secs,
        "errors": errors.total(), "error_kinds": errors.json(),
    });
    emit(c, t, j);
    if errors.total() > 0 {
        EXIT_FATAL
    } else {
        0
    }
}

// ---------------------------------------------------------------- drain mode

async fn run_drain(a: DrainArgs) -> i32 {
    let c = &a.common;
    if a.clients == 0 {
        return fatal("--clients must be at least 1");
    }
    if c.client_prefix.is_none() {
        return fatal("drain needs --client-prefix: the one the sessions were made with");
    }
    if a.expect >= stats::MAX_SEQ {
        return fatal(&format!("--expect must be below {}", stats::MAX_SEQ));
    }
    // Wall-clock time of the monotonic `begin`, to report instants as Unix ms
    // that a script can compare with other processes' (e.g. a broker start).
    let begin = mono_ns();
    let begin_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let ms_since = |ns: Option<u64>| ns.map(|t| t.saturating_sub(begin) as f64 / 1e6);
    let unix_ms = |ns: Option<u64>| ns.map(|t| (begin_unix_ms + (t - begin) as f64 / 1e6).round());
    let mut cfg = client_cfg(c, &c.host);
    cfg.clean = false;
    let p = prefix(c);
    let counters = Arc::new(Counters::default());
    let handles: Vec<_> = (0..a.clients)
        .map(|i| {
            let spec = drain::DrainSpec {
                expect: a.expect,
                run_id: a.run_id,
                connect_until: begin + secs_ns(a.connect_retry),
                idle_ns: secs_ns(a.idle),
                deadline: begin + secs_ns(a.timeout),
                ping_ns: c.keepalive as u64 * 500_000_000,
            };
            tokio::spawn(drain::run(
                cfg.clone(),
                format!("{p}_sub_{i}"),
                spec,
                counters.clone(),
            ))
        })
        .collect();
    let progress = spawn_progress(counters.clone(), c.quiet, [false, false, true]);
    let mut results = Vec::new();
    for h in handles {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => task_lost("drain", e),
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    let mut errors = Errors::default();
    for r in &results {
        errors.merge(&r.errors);
    }
    tasks_lost(&mut errors);
    let sum = |f: &dyn Fn(&drain::DrainResult) -> u64| results.iter().map(f).sum::<u64>();
    let received = sum(&|r| r.backlog.received);
    let distinct = sum(&|r| r.backlog.distinct());
    let duplicates = sum(&|r| r.backlog.duplicates);
    let missing = sum(&|r| r.backlog.missing()) + a.expect * (a.clients - results.len()) as u64;
    let connack = results.iter().filter_map(|r| r.connack_ns).min();
    let first = results.iter().filter_map(|r| r.first_ns).min();
    let last = results.iter().filter_map(|r| r.last_new_ns).max();
    let drain_s = match (connack, last) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let mut t = format!(
        "loadgen drain: {} MQTT {}, {} persistent sessions {p}_sub_0..{}, each expecting sequence numbers 0..{}\n",
        c.host,
        version_name(c.mqtt_version),
        a.clients,
        a.clients - 1,
        a.expect.saturating_sub(1)
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
    t += &format!(
        "  first CONNACK after {}, first PUBLISH after {} (from this process's start)\n",
        ms(ms_since(connack)),
        ms(ms_since(first))
    );
    t += &format!(
        "  received {received}, distinct {distinct}, duplicates {duplicates}, missing {missing}; {} msg/s over {drain_s:.2} s (CONNACK to the last new message)\n",
        stats::rate(distinct, drain_s)
    );
    let mut sessions = Vec::new();
    for r in &results {
        let b = &r.backlog;
        let ranges = b.missing_ranges(5);
        t += &format!(
            "  {}: {} after {} attempt(s), stopped: {}, distinct {} of {}, duplicates {}, {} msg/s{}{}\n",
            r.client_id,
            match r.session_present {
                Some(true) => "session present",
                Some(false) => "SESSION NOT PRESENT",
                None => "never connected",
            },
            r.connect_attempts,
            r.stop.name(),
            b.distinct(),
            b.expect,
            b.duplicates,
            r.rate(),
            if ranges.is_empty() {
                String::new()
            } else {
                format!(
                    ", first missing: {}",
                    ranges
                        .iter()
                        .map(|(lo, hi)| if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}-{hi}")
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            },
            if b.stale + b.out_of_range + b.foreign > 0 || b.runs.len() > 1 {
                format!(
                    " (other runs {}, beyond --expect {}, non-loadgen {}, runs seen {})",
                    b.stale,
                    b.out_of_range,
                    b.foreign,
                    b.runs.len()
                )
            } else {
                String::new()
            }
        );
        sessions.push(json!({
            "client_id": r.client_id, "session_present": r.session_present,
            "connect_attempts": r.connect_attempts, "stopped": r.stop.name(),
            "connack_ms": ms_since(r.connack_ns), "first_message_ms": ms_since(r.first_ns),
            "received": b.received, "distinct": b.distinct(), "duplicates": b.duplicates,
            "missing": b.missing(), "missing_ranges": ranges,
            "stale": b.stale, "out_of_range": b.out_of_range, "foreign": b.foreign,
            "runs_seen": b.runs.len(), "drain_rate": r.rate(),
        }));
    }
    t += &errors.lines();
    let j = json!({
        "mode": "drain", "host": c.host, "mqtt_version": version_name(c.mqtt_version),
        "clients": a.clients, "expect": a.expect,
        "sessions_present": results.iter().filter(|r| r.session_present == Some(true)).count(),
        "connack_ms": ms_since(connack), "first_message_ms": ms_since(first),
        "connack_unix_ms": unix_ms(connack), "first_message_unix_ms": unix_ms(first),
        "last_message_unix_ms": unix_ms(last),
        "received": received, "distinct": distinct, "duplicates": duplicates, "missing": missing,
        "drain_s": drain_s, "drain_rate": stats::rate(distinct, drain_s),
        "sessions": sessions,
        "errors": errors.total(), "error_kinds": errors.json(),
    });
    emit(c, t, j);
    if results.iter().all(|r| r.connack_ns.is_none()) {
        eprintln!("loadgen: error: no session could connect");
        EXIT_FATAL
    } else if errors.total() > 0 || missing > 0 {
        EXIT_ERRORS
    } else {
        0
    }
}

/// `a/%i/b` -> `a/+/b`: a filter matching every publisher's topic.
fn default_filter(topic: &str) -> String {
    topic
        .split('/')
        .map(|l| if l.contains("%i") { "+" } else { l })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_filter() {
        assert_eq!(super::default_filter("loadgen/%i"), "loadgen/+");
        assert_eq!(super::default_filter("a/x%i/b"), "a/+/b");
        assert_eq!(super::default_filter("fixed/topic"), "fixed/topic");
    }
}
