//! `/api/v1/listener/...` (`raftmq listener show|start|stop|reload`): this
//! node's MQTT listeners. Start and stop act on this node only, as
//! VerneMQ's `listener start|stop` do; stop ends accepting and leaves open
//! connections alone.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::query::{error, ApiQuery};
use crate::broker::Broker;
use crate::listener::ListenerError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameQuery {
    /// `KIND.NAME`, or `NAME` when only one listener has it.
    name: String,
}

fn failed(e: ListenerError) -> Response {
    let code = match e {
        ListenerError::Unknown(_) => StatusCode::NOT_FOUND,
        ListenerError::Ambiguous(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, e.to_string())
}

pub async fn show(State(b): State<Arc<Broker>>) -> Json<serde_json::Value> {
    Json(json!({ "table": b.listeners.show() }))
}

pub async fn start(State(b): State<Arc<Broker>>, ApiQuery(q): ApiQuery<NameQuery>) -> Response {
    match b.listeners.start(&q.name, &b).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => failed(e),
    }
}

pub async fn stop(State(b): State<Arc<Broker>>, ApiQuery(q): ApiQuery<NameQuery>) -> Response {
    match b.listeners.stop(&q.name) {
        Ok(v) => Json(v).into_response(),
        Err(e) => failed(e),
    }
}

/// Re-reads every TLS listener's certificate files.
pub async fn reload(State(b): State<Arc<Broker>>) -> Response {
    let results = b.listeners.reload();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(l, r)| r.as_ref().err().map(|e| format!("listener.{l}: {e}")))
        .collect();
    if !failed.is_empty() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, failed.join("; "));
    }
    let reloaded: Vec<&String> = results.iter().map(|(l, _)| l).collect();
    Json(json!({ "reloaded": reloaded })).into_response()
}
