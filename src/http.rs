//! The HTTP admin API: `/health`, `/metrics` (Prometheus text) and
//! `/api/v1/...`, which mirrors the CLI the way VerneMQ's HTTP API mirrors
//! vmq-admin. This file routes and answers health and status; `cluster`
//! serves membership, `query` parses query strings (unknown parameters are errors) and shapes
//! errors, `sessions` and `retained` answer their listings, `settings` the
//! live settings (`set`, `show`), `access` the users, ACL and API keys;
//! `auth` is the API-key check in front of every route.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

mod access;
mod auth;
mod cluster;
mod listeners;
mod peers;
mod query;
mod retained;
mod sessions;
mod settings;

use crate::broker::Broker;
use crate::metrics;

pub fn router(broker: Arc<Broker>) -> Router {
    peers::set_internal_key(&broker.settings.distributed_cookie);
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .route("/api/v1/status", get(status))
        .route("/api/v1/session/show", get(sessions::show))
        .route("/api/v1/session/disconnect", post(sessions::disconnect))
        .route("/api/v1/session/connections", post(sessions::connections))
        .route("/api/v1/retain/show", get(retained::show))
        .route("/api/v1/cluster/show", get(cluster::show))
        .route("/api/v1/cluster/join", post(cluster::join))
        .route("/api/v1/cluster/leave", post(cluster::leave))
        .route("/api/v1/set", post(settings::set))
        .route("/api/v1/show", get(settings::show))
        .route("/api/v1/listener/show", get(listeners::show))
        .route("/api/v1/listener/start", post(listeners::start))
        .route("/api/v1/listener/stop", post(listeners::stop))
        .route("/api/v1/listener/reload", post(listeners::reload))
        .route("/api/v1/user/add", post(access::user_add))
        .route("/api/v1/user/delete", post(access::user_delete))
        .route("/api/v1/user/list", get(access::user_list))
        .route("/api/v1/acl/show", get(access::acl_show))
        .route("/api/v1/acl/load", post(access::acl_load))
        .route("/api/v1/api-key/create", post(access::key_create))
        .route("/api/v1/api-key/add", post(access::key_add))
        .route("/api/v1/api-key/delete", post(access::key_delete))
        .route("/api/v1/api-key/show", get(access::key_show))
        .layer(axum::middleware::from_fn_with_state(
            broker.clone(),
            auth::require_key,
        ))
        .with_state(broker)
}

/// 200 only when this node accepts MQTT connections and is in a quorum (503
/// on the minority side of a netsplit, with `netsplit_reason`). A
/// raised resource alarm does not change the code (connections, subscribers
/// and their acks still work); `alarms` names it and `accepting_publishes`
/// is false while QoS 1/2 publishes are refused.
async fn health(State(b): State<Arc<Broker>>) -> Response {
    let accepting = b.accepting.load(Ordering::Acquire);
    let stats = b.node.stats();
    let quorum = stats.in_quorum;
    let body = json!({
        "status": if accepting && quorum { "ok" } else if b.node.removed().borrow().is_some() { "removed from the cluster" } else if b.life.is_stopping() { "stopping" } else if stats.in_netsplit { "netsplit" } else if !quorum { "no quorum" } else { "not accepting connections" },
        "accepting": accepting,
        "quorum": quorum,
        "netsplit": stats.in_netsplit,
        "netsplit_reason": (stats.in_netsplit).then_some(&stats.netsplit_reason),
        "netsplit_since_ms": stats.netsplit_since_ms,
        "leader": stats.leader,
        "accepting_publishes": accepting && quorum && !b.disk.raised(),
        "alarms": b.disk.alarms(),
        "disk_free_bytes": b.disk.free_bytes(),
        "disk_free_limit_bytes": b.disk.limit_bytes(),
    });
    let code = if accepting && quorum {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn prometheus(State(b): State<Arc<Broker>>) -> Response {
    let body = b.metrics.render(&metrics::Snapshot::of(&b));
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}

async fn status(State(b): State<Arc<Broker>>) -> Json<serde_json::Value> {
    let (n, st) = (b.node.stats(), b.node.summary());
    Json(json!({
        "node_id": b.settings.node_id,
        "uptime_s": b.started.elapsed().as_secs(),
        "leader": n.is_leader,
        "leader_id": n.leader,
        "term": n.term,
        "in_quorum": n.in_quorum,
        "netsplit": n.in_netsplit,
        "last_applied": st.last_applied,
        "sessions": st.sessions,
        "subscriptions": st.subscriptions,
        "retained": st.retained,
        "queued": st.queued,
        "clients_connected_here": b.registry.connected(),
    }))
}
