//! Starting a node: binds the inter-node and HTTP listeners, opens the Raft
//! node on the data directory (bootstrapping a cluster of one, or joining
//! one), waits for a quorum, publishes the cluster settings through the log
//! if they changed, announces the restart (so sessions that were connected
//! here get their wills), then binds the MQTT listener and runs until stopped
//! or removed from the cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use raftmq_raft::node::now_ms;
use raftmq_raft::{Command, NodeInfo, NodeRestarted, RaftNode, RaftNodeConfig};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::{Settings, DEFAULT_COOKIE};
use crate::registry::Registry;

/// Prefix of a data directory's discarded log, left by [`restart_to_join`].
const DISCARDED: &str = "db.discarded-";

/// Gives up this node's (empty) cluster of one and re-executes the process
/// in place with `--join discovery`. The RocksDB directory is renamed away
/// (this process still has it open) and removed by the next start. Returns
/// only on failure.
pub fn restart_to_join(settings: &Settings, discovery: &str) -> anyhow::Error {
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

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    remove_discarded(&settings);
    if settings.distributed_cookie == DEFAULT_COOKIE {
        info!("distributed_cookie is the default; set your own before the cluster spans machines");
    }
    let registry = Arc::new(Registry::default());
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
    })
    .await
    .with_context(|| format!("starting raft node in {}", settings.data_dir.display()))?;

    let broker = Arc::new(Broker {
        settings,
        node,
        registry,
        metrics: Default::default(),
        started: Instant::now(),
        accepting: AtomicBool::new(false),
    });
    let app = crate::http::router(broker.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

    tokio::select! {
        _ = broker.node.wait_ready() => {}
        _ = tokio::signal::ctrl_c() => {
            info!("interrupted; stopping");
            return Ok(());
        }
    }
    let wanted = broker.settings.cluster();
    let differs = broker.node.state.lock().settings != wanted;
    if differs && broker.settings.join.is_none() {
        broker
            .node
            .proposer
            .propose(Command::Configure(wanted))
            .await
            .context("committing settings")?;
    } else if differs {
        info!(
            "this node joined a cluster: it follows the cluster's settings, not its config file's"
        );
    }
    broker
        .node
        .proposer
        .propose(Command::NodeRestarted(NodeRestarted {
            node: broker.settings.node_id,
            now_ms: now_ms(),
        }))
        .await
        .context("committing node restart")?;

    let mqtt = TcpListener::bind(broker.settings.mqtt_addr)
        .await
        .with_context(|| format!("binding MQTT {}", broker.settings.mqtt_addr))?;
    broker.accepting.store(true, Ordering::Release);
    info!(node_id = broker.settings.node_id, mqtt = %broker.settings.mqtt_addr, http = %broker.settings.http_addr, cluster = %broker.settings.cluster_addr, "raftmq node started");
    tokio::spawn(crate::sys::run(broker.clone()));
    let mut removed = broker.node.removed.subscribe();
    tokio::select! {
        _ = crate::listener::run(mqtt, broker.clone()) => {}
        r = removed.wait_for(|r| r.is_some()) => {
            let kill = r.ok().and_then(|r| *r).is_some_and(|r| r.kill);
            broker.accepting.store(false, Ordering::Release);
            let n = broker.registry.disconnect_all();
            warn!(kill, disconnected = n, "removed from the cluster: MQTT listener closed; the node keeps answering on HTTP");
            // Stay up for /health (503) and `cluster show`, until stopped.
            let _ = tokio::signal::ctrl_c().await;
        }
        _ = tokio::signal::ctrl_c() => info!("interrupted; stopping"),
    }
    Ok(())
}
