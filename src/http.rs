//! The HTTP admin API: `/health`, `/metrics` (Prometheus text) and
//! `/api/v1/...`, which mirrors the CLI the way VerneMQ's HTTP API mirrors
//! vmq-admin.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use raftmq_raft::rpc::AdminError;

use crate::broker::Broker;
use crate::metrics;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .route("/api/v1/status", get(status))
        .route("/api/v1/session/show", get(session_show))
        .route("/api/v1/session/disconnect", post(session_disconnect))
        .route("/api/v1/retain/show", get(retain_show))
        .route("/api/v1/cluster/show", get(cluster_show))
        .route("/api/v1/cluster/join", post(cluster_join))
        .route("/api/v1/cluster/leave", post(cluster_leave))
        .with_state(broker)
}

/// 200 only when this node accepts MQTT connections and is in a quorum.
async fn health(State(b): State<Arc<Broker>>) -> Response {
    let accepting = b.accepting.load(Ordering::Acquire);
    let quorum = b.node.in_quorum();
    let body = json!({
        "status": if accepting && quorum { "ok" } else if b.node.removed.borrow().is_some() { "removed from the cluster" } else if !quorum { "no quorum" } else { "not accepting connections" },
        "accepting": accepting,
        "quorum": quorum,
        "leader": b.node.raft.metrics().borrow().current_leader,
    });
    let code = if accepting && quorum {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

fn admin_error(e: AdminError) -> Response {
    let code = match e {
        AdminError::Refused(_) => StatusCode::CONFLICT,
        AdminError::NotLeader { .. } | AdminError::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (code, Json(json!({"error": e.to_string()}))).into_response()
}

async fn cluster_show(State(b): State<Arc<Broker>>) -> Json<serde_json::Value> {
    let v = b.node.cluster_view().await;
    let table: Vec<_> = v
        .members
        .iter()
        .map(|m| {
            json!({
                "node": m.id,
                "cluster": m.cluster,
                "mqtt": m.mqtt,
                "http": m.http,
                "role": m.role,
                "leader": m.leader,
                "match_index": m.match_index,
                "reachable": m.reachable,
            })
        })
        .collect();
    Json(json!({
        "table": table,
        "leader": v.leader,
        "term": v.term,
        "answered_by": v.answered_by,
        "last_log_index": v.last_log_index,
        "membership_change_in_progress": v.changing,
    }))
}

#[derive(Deserialize)]
struct JoinQuery {
    #[serde(rename = "discovery-node")]
    discovery_node: Option<String>,
}

async fn cluster_join(State(b): State<Arc<Broker>>, Query(q): Query<JoinQuery>) -> Response {
    let Some(d) = q.discovery_node else {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": "discovery-node is required (an inter-node address of a member)"}),
            ),
        )
            .into_response();
    };
    if b.node.is_fresh_standalone() {
        // A new node that bootstrapped a cluster of its own: it gives up its
        // empty log, restarts in place and joins (the answer goes first).
        let id = b.settings.node_id;
        let settings = b.settings.clone();
        let target = d.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let e = crate::server::restart_to_join(&settings, &target);
            tracing::error!(error = %e, "could not restart to join");
        });
        return (
            StatusCode::ACCEPTED,
            Json(json!({"text": format!("node {id} has no state of its own: it restarts with an empty data directory and joins through {d}"), "restarting": true})),
        )
            .into_response();
    }
    match b.node.join_via(&d).await {
        Ok(msg) => Json(json!({"text": msg})).into_response(),
        Err(e) => admin_error(e),
    }
}

#[derive(Deserialize)]
struct LeaveQuery {
    node: Option<u64>,
    #[serde(default)]
    kill: bool,
}

async fn cluster_leave(State(b): State<Arc<Broker>>, Query(q): Query<LeaveQuery>) -> Response {
    let Some(id) = q.node else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "node is required (a node id)"})),
        )
            .into_response();
    };
    match b.node.leave(id, q.kill).await {
        Ok(msg) => Json(json!({"text": msg})).into_response(),
        Err(e) => admin_error(e),
    }
}

fn snapshot(b: &Broker) -> metrics::Snapshot {
    let rm = b.node.raft.metrics().borrow().clone();
    let last = rm.last_log_index.unwrap_or(0);
    let purged = rm.purged.map_or(0, |l| l.index);
    let st = b.node.state.lock();
    let stats = b.node.proposer.stats();
    metrics::Snapshot {
        sessions: st.session_count() as u64,
        subscriptions: st.subscription_count() as u64,
        retained: st.retained_count() as u64,
        queued: st.queued_count() as u64,
        apply: st.stats.clone(),
        raft_last_applied: st.last_applied.map_or(0, |l| l.index),
        raft_log_entries: last.saturating_sub(purged),
        raft_snapshot_index: rm.snapshot.map_or(0, |l| l.index),
        raft_entries: stats.entries.load(std::sync::atomic::Ordering::Relaxed),
        raft_commands: stats.commands.load(std::sync::atomic::Ordering::Relaxed),
        is_leader: b.node.is_leader(),
        raft_forwarded: stats.forwarded.load(std::sync::atomic::Ordering::Relaxed),
        raft_resent: stats.resent.load(std::sync::atomic::Ordering::Relaxed),
        raft_term: rm.current_term,
        in_quorum: b.node.in_quorum(),
        peer_connects: b
            .node
            .transport
            .stats
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        peer_refused: b
            .node
            .transport
            .stats
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
    }
}

async fn prometheus(State(b): State<Arc<Broker>>) -> Response {
    let body = b.metrics.render(&snapshot(&b));
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}

async fn status(State(b): State<Arc<Broker>>) -> Json<serde_json::Value> {
    let s = snapshot(&b);
    Json(json!({
        "node_id": b.settings.node_id,
        "uptime_s": b.started.elapsed().as_secs(),
        "leader": s.is_leader,
        "leader_id": b.node.raft.metrics().borrow().current_leader,
        "term": s.raft_term,
        "in_quorum": s.in_quorum,
        "last_applied": s.raft_last_applied,
        "sessions": s.sessions,
        "subscriptions": s.subscriptions,
        "retained": s.retained,
        "queued": s.queued,
        "clients_connected_here": b.registry.connected(),
    }))
}

#[derive(Deserialize)]
struct ClientQuery {
    client_id: Option<String>,
}

async fn session_show(
    State(b): State<Arc<Broker>>,
    Query(q): Query<ClientQuery>,
) -> Json<serde_json::Value> {
    let list = b.node.state.lock().session_info(q.client_id.as_deref());
    Json(json!({ "table": list }))
}

async fn session_disconnect(
    State(b): State<Arc<Broker>>,
    Query(q): Query<ClientQuery>,
) -> Response {
    let Some(c) = q.client_id else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "client_id is required"})),
        )
            .into_response();
    };
    if b.registry.disconnect(&c) {
        Json(json!({"disconnected": c})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("client `{c}` is not connected to this node")})),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct TopicQuery {
    topic: Option<String>,
}

async fn retain_show(
    State(b): State<Arc<Broker>>,
    Query(q): Query<TopicQuery>,
) -> Json<serde_json::Value> {
    let filter = q.topic.unwrap_or_else(|| "#".into());
    let list: Vec<_> = b
        .node
        .state
        .lock()
        .retained_list(&filter)
        .into_iter()
        .map(|m| json!({"topic": m.topic, "qos": m.qos, "payload": String::from_utf8_lossy(&m.payload), "bytes": m.payload.len()}))
        .collect();
    Json(json!({ "table": list }))
}
