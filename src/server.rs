//! The owner of a node's life ([`run`]): start, serve, stop.
//!
//! - **Start**: binds the inter-node and HTTP listeners, opens the Raft node
//!   on the data directory (bootstrapping a cluster of one, or joining one),
//!   starts the disk monitor and the HTTP server.
//! - **Serve**: waits for a quorum; a node that has just bootstrapped a new
//!   cluster commits its config file's cluster-wide values (the only time a
//!   file supplies them); any other node logs once where its file differs
//!   from the cluster's values (see [`settings_step`]). It announces the
//!   restart (so sessions that were connected here get their wills), binds
//!   the MQTT listener and runs until
//!   a [`LifecycleRequest`] arrives: a stop (SIGTERM, SIGINT) or a restart to
//!   join a cluster (from `cluster join` on a new standalone node). Removed
//!   from the cluster, it closes the MQTT listener and keeps answering HTTP.
//! - **Stop** (graceful, bounded by [`STOP_LIMIT`]): see [`crate::shutdown`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use raftmq_raft::node::now_ms;
use raftmq_raft::proposer::Timeouts;
use raftmq_raft::{
    CmdResult, Command, NodeInfo, NodeRestarted, RaftNode, RaftNodeConfig, SetSettings,
};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::{Settings, DEFAULT_COOKIE};
use crate::registry::Registry;
use crate::resources::DiskAlarm;
use crate::shutdown::{LifecycleRequest, Requests, Shutdown};

/// Prefix of a data directory's discarded log, left by [`restart_to_join`].
const DISCARDED: &str = "db.discarded-";

/// Gives up this node's (empty) cluster of one and re-executes the process
/// in place with `--join discovery`; called by [`run`] after the stop. The
/// RocksDB directory is renamed away (this process still has it open) and
/// removed by the next start. Returns only on failure.
fn restart_to_join(settings: &Settings, discovery: &str) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let run = || -> anyhow::Result<std::io::Error> {
        let db = settings.data_dir.join("db");
        let away = settings.data_dir.join(format!("{DISCARDED}{}", now_ms()));
        std::fs::rename(&db, &away).with_context(|| format!("moving {} away", db.display()))?;
        let _ = std::fs::remove_file(settings.data_dir.join("snapshot.bin"));
        let exe = std::env::current_exe().context("finding the raftmq binary")?;
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut skip = false;
        for a in std::env::args_os().skip(1) {
            if skip {
                skip = false;
                continue;
            }
            match a.to_str() {
                Some("--join") => skip = true,
                Some(s) if s.starts_with("--join=") => {}
                _ => args.push(a),
            }
        }
        args.push("--join".into());
        args.push(discovery.into());
        warn!(
            discovery,
            "restarting with an empty data directory to join a cluster"
        );
        Ok(std::process::Command::new(exe).args(args).exec())
    };
    match run() {
        Ok(exec_error) => anyhow::Error::new(exec_error).context("re-executing raftmq"),
        Err(e) => e,
    }
}

/// Removes what an earlier [`restart_to_join`] moved away.
fn remove_discarded(settings: &Settings) {
    let Ok(entries) = std::fs::read_dir(&settings.data_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(DISCARDED) {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                warn!(path = %e.path().display(), error = %err, "cannot remove a discarded log");
            }
        }
    }
}

/// How long a stop may take in all; past it the process exits anyway.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Of [`STOP_LIMIT`], what the connections (their disconnects) and the other
/// tasks get; the Raft node's own stop gets the rest.
const DRAIN_LIMIT: Duration = Duration::from_secs(7);

/// Runs a node's whole life: start, serve, stop. Returns when the node has
/// stopped (or, for a restart to join, re-executes the process).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    remove_discarded(&settings);
    if settings.distributed_cookie == DEFAULT_COOKIE {
        info!("distributed_cookie is the default; set your own before the cluster spans machines");
    }
    let (life, mut requests) = Shutdown::new();
    crate::shutdown::watch_signals(&life);
    let (broker, bootstraps) = start(settings, &life).await?;
    let ended = serve(&broker, bootstraps, &life, &mut requests).await;
    let clean = stop(&broker, &life).await;
    match ended {
        Err(e) => Err(e),
        Ok(LifecycleRequest::RestartToJoin(discovery)) => {
            Err(restart_to_join(&broker.settings, &discovery))
        }
        Ok(LifecycleRequest::Stop) if clean => Ok(()),
        Ok(LifecycleRequest::Stop) => {
            anyhow::bail!("the stop did not finish within {STOP_LIMIT:?} (see the log)")
        }
    }
}

/// Binds the inter-node and HTTP listeners, opens the Raft node and starts
/// the HTTP server. Also says whether this start bootstraps a new cluster (a
/// new data directory and no `join`).
async fn start(settings: Settings, life: &Shutdown) -> anyhow::Result<(Arc<Broker>, bool)> {
    let bootstraps = settings.join.is_none() && !settings.data_dir.join("db").exists();
    // Bad listener options or unreadable TLS files stop the start here.
    let listeners = crate::listener::ListenerSet::new(&settings)?;
    let registry = Arc::new(Registry::new(settings.node_id));
    let cluster = TcpListener::bind(settings.cluster_addr)
        .await
        .with_context(|| format!("binding the cluster listener {}", settings.cluster_addr))?;
    let http = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding HTTP {}", settings.http_addr))?;
    let node = RaftNode::start(RaftNodeConfig {
        node_id: settings.node_id,
        data_dir: settings.data_dir.clone(),
        info: NodeInfo {
            cluster: settings.cluster_addr.to_string(),
            mqtt: settings.mqtt_addr.to_string(),
            http: settings.http_addr.to_string(),
        },
        listener: cluster,
        cookie: settings.distributed_cookie.clone(),
        join: settings.join.clone(),
        sink: registry.clone(),
        snapshot_logs: settings.snapshot_interval_entries,
        store: settings.store_options(),
        snapshot_chunk_bytes: settings.snapshot_chunk_bytes,
        join_timeout: std::time::Duration::from_secs(settings.join_timeout_s),
        timeouts: Timeouts {
            commit: Duration::from_millis(settings.commit_timeout_ms),
            netsplit_wait: Duration::from_millis(settings.netsplit_wait_ms),
        },
    })
    .await
    .with_context(|| format!("starting raft node in {}", settings.data_dir.display()))?;

    // The data directory exists now (the node created it).
    let disk = DiskAlarm::new(settings.disk_free_limit, &settings.data_dir);
    let live = crate::config::live::Live::new(&settings);
    let auth = crate::auth::Auth::new(&settings).context("reading the node's users")?;
    let broker = Arc::new(Broker {
        settings,
        live,
        node,
        registry,
        metrics: Default::default(),
        disk,
        started: Instant::now(),
        accepting: AtomicBool::new(false),
        life: life.clone(),
        auth,
        listeners,
    });
    life.spawn(
        "disk monitor",
        crate::resources::run(broker.clone(), life.clone()),
    );
    life.spawn(
        "orphaned registrations",
        crate::orphans::end_orphans(broker.clone(), life.clone()),
    );
    let app = crate::http::router(broker.clone());
    let stop = life.clone();
    life.spawn("HTTP server", async move {
        let r = axum::serve(http, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((broker, bootstraps))
}

/// Waits for a quorum, commits the settings and the restart, opens the MQTT
/// listener and serves until a request to stop (or restart) arrives. A node
/// the cluster removed closes its listener and keeps answering HTTP.
async fn serve(
    broker: &Arc<Broker>,
    bootstraps: bool,
    life: &Shutdown,
    requests: &mut Requests,
) -> anyhow::Result<LifecycleRequest> {
    /// Runs `f` unless a request comes first.
    macro_rules! or_request {
        ($f:expr) => {
            tokio::select! {
                r = $f => r,
                req = requests.next() => return Ok(req),
            }
        };
    }
    or_request!(broker.node.wait_ready())?;
    if bootstraps {
        or_request!(commit_bootstrap_settings(broker))?;
    }
    or_request!(broker.node.propose(Command::NodeRestarted(NodeRestarted {
        node: broker.settings.node_id,
        now_ms: now_ms(),
    })))
    .context("committing node restart")?;
    if !bootstraps {
        or_request!(warn_file_differs(broker));
    }

    broker.listeners.start_all(broker).await?;
    broker.accepting.store(true, Ordering::Release);
    info!(node_id = broker.settings.node_id, mqtt = %broker.settings.mqtt_addr, http = %broker.settings.http_addr, cluster = %broker.settings.cluster_addr, "raftmq node started");
    life.spawn(
        "$SYS publisher",
        crate::sys::run(broker.clone(), life.clone()),
    );
    let mut removed = broker.node.removed();
    let mut serving = true;
    loop {
        tokio::select! {
            req = requests.next() => return Ok(req),
            r = removed.wait_for(|r| r.is_some()), if serving => {
                serving = false;
                let kill = r.ok().and_then(|r| *r).is_some_and(|r| r.kill);
                broker.accepting.store(false, Ordering::Release);
                life.close_listener();
                let n = broker.registry.disconnect_all();
                warn!(kill, disconnected = n, "removed from the cluster: MQTT listener closed; the node keeps answering on HTTP until stopped");
            }
        }
    }
}

/// The first start of a new cluster: the config file's cluster-wide values
/// become the cluster's, committed as the bootstrap file's.
async fn commit_bootstrap_settings(broker: &Broker) -> anyhow::Result<()> {
    let changes = broker.settings.cluster_from_file();
    let Some((first, _)) = changes.first() else {
        return Ok(());
    };
    let file = broker.settings.from_file.get(first).cloned();
    let r = broker
        .node
        .propose(Command::SetSettings(SetSettings {
            changes: changes.clone(),
            bootstrap_file: file,
            now_ms: now_ms(),
        }))
        .await
        .context("committing the config file's cluster-wide settings")?;
    if let CmdResult::SettingsRefused(e) = r {
        anyhow::bail!("the cluster refused the config file's settings: {e}");
    }
    info!(
        ?changes,
        "bootstrapped the cluster with the config file's cluster-wide settings"
    );
    Ok(())
}

/// Where this node's config file gives a cluster-wide key another value
/// than the cluster's, says so once (the file does not change the
/// cluster). Waits (bounded) until this node has applied what the leader
/// has applied now, so the comparison is with the cluster's current value.
async fn warn_file_differs(broker: &Broker) {
    let committed = broker.node.cluster_view().await.committed.unwrap_or(0);
    let _ = broker
        .node
        .wait_applied(
            committed,
            Duration::from_millis(broker.settings.commit_timeout_ms),
        )
        .await;
    let summary = broker.node.summary();
    for (key, file_value) in broker.settings.cluster_from_file() {
        let cluster_value = summary.settings.get(&key).unwrap_or_default();
        if cluster_value != file_value {
            let file = broker
                .settings
                .from_file
                .get(&key)
                .cloned()
                .unwrap_or_default();
            warn!(
                key,
                file_value,
                cluster_value,
                file,
                source = %summary.settings.source(&key),
                "the config file's value of a cluster-wide setting differs from the cluster's; the \
                 cluster's value stays in effect (a config file supplies cluster-wide values only \
                 when it bootstraps a cluster); change it with `raftmq set {key}=VALUE`"
            );
        }
    }
}

/// The graceful stop: the MQTT listener closes, every connection ends with
/// DISCONNECT 0x8B (server shutting down) and commits its disconnect (wills
/// fire), the other tasks end, then the Raft node stops and RocksDB is
/// synced. Bounded by [`STOP_LIMIT`]; returns false if something did not
/// finish in time (it is logged).
async fn stop(broker: &Arc<Broker>, life: &Shutdown) -> bool {
    let began = Instant::now();
    info!(
        clients = broker.registry.connected(),
        "stopping: MQTT listener closed, disconnecting clients"
    );
    broker.accepting.store(false, Ordering::Release);
    life.begin_stop();
    let drained = life.drain(DRAIN_LIMIT).await;
    let rest = STOP_LIMIT.saturating_sub(began.elapsed());
    let node = match broker.node.shutdown(rest).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "the Raft node did not stop cleanly");
            false
        }
    };
    info!(elapsed_ms = began.elapsed().as_millis() as u64, "stopped");
    drained && node
}
