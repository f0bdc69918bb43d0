//! The HTTP admin API: `/health`, `/metrics` (Prometheus text) and
//! `/api/v1/...`, which mirrors the CLI the way VerneMQ's HTTP API mirrors
//! vmq-admin.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

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
        .with_state(broker)
}

async fn health(State(b): State<Arc<Broker>>) -> Response {
    if b.node.in_quorum() {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "no quorum"})),
        )
            .into_response()
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
