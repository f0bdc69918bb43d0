//! Starting a node: opens the Raft node on the data directory, publishes the
//! cluster settings through the log if they changed, announces the restart
//! (so sessions that were connected here get their wills), then binds the
//! MQTT and HTTP listeners and runs until stopped.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use raftmq_raft::node::now_ms;
use raftmq_raft::{Command, RaftNode, RaftNodeConfig};
use tokio::net::TcpListener;
use tracing::info;

use crate::broker::Broker;
use crate::config::Settings;
use crate::registry::Registry;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::default());
    let node = RaftNode::start(RaftNodeConfig {
        node_id: settings.node_id,
        data_dir: settings.data_dir.clone(),
        addr: settings.mqtt_addr.to_string(),
        sink: registry.clone(),
        snapshot_logs: settings.snapshot_interval_entries,
    })
    .await
    .with_context(|| format!("starting raft node in {}", settings.data_dir.display()))?;

    let wanted = settings.cluster();
    if node.state.lock().settings != wanted {
        node.proposer
            .propose(Command::Configure(wanted))
            .await
            .context("committing settings")?;
    }
    node.proposer
        .propose(Command::NodeRestarted {
            node: settings.node_id,
            now_ms: now_ms(),
        })
        .await
        .context("committing node restart")?;

    let mqtt = TcpListener::bind(settings.mqtt_addr)
        .await
        .with_context(|| format!("binding MQTT {}", settings.mqtt_addr))?;
    let http = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding HTTP {}", settings.http_addr))?;
    let broker = Arc::new(Broker {
        settings,
        node,
        registry,
        metrics: Default::default(),
        started: Instant::now(),
    });
    info!(node_id = broker.settings.node_id, mqtt = %broker.settings.mqtt_addr, http = %broker.settings.http_addr, "raftmq node started");
    tokio::spawn(crate::sys::run(broker.clone()));
    let app = crate::http::router(broker.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tokio::select! {
        _ = crate::listener::run(mqtt, broker.clone()) => {}
        _ = tokio::signal::ctrl_c() => info!("interrupted; stopping"),
    }
    Ok(())
}
