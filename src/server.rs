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
use raftmq_raft::{Command, NodeInfo, RaftNode, RaftNodeConfig};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::{Settings, DEFAULT_COOKIE};
use crate::registry::Registry;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
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
        .propose(Command::NodeRestarted {
            node: broker.settings.node_id,
            now_ms: now_ms(),
        })
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
