//! The cluster part of the HTTP admin API: `/api/v1/cluster/show`, `join`
//! and `leave`. A join or leave waits at most `timeout` seconds (default
//! 60) for the change, which runs on the leader whatever happens to the
//! request; past it the answer is 504 and says the change continues.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raftmq_raft::membership::{ChangeProgress, ChangeRequest, DEFAULT_CHANGE_TIMEOUT};
use raftmq_raft::rpc::AdminError;
use serde::Deserialize;
use serde_json::json;

use super::query::{error, ApiQuery};
use crate::broker::Broker;
use crate::shutdown::LifecycleRequest;

/// Longest `timeout` a request may ask for.
const MAX_TIMEOUT_S: u64 = 24 * 3600;

fn admin_error(e: AdminError) -> Response {
    let code = match e {
        AdminError::Refused(_) | AdminError::Busy(_) => StatusCode::CONFLICT,
        AdminError::NotLeader { .. } | AdminError::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        AdminError::InProgress(_) => StatusCode::GATEWAY_TIMEOUT,
    };
    error(code, e.to_string())
}

fn bad_request(msg: &str) -> Response {
    error(StatusCode::BAD_REQUEST, msg)
}

/// The request's `timeout` (seconds), or why it is not one.
fn timeout_of(s: Option<u64>) -> Result<Duration, String> {
    match s {
        None => Ok(DEFAULT_CHANGE_TIMEOUT),
        Some(s) if (1..=MAX_TIMEOUT_S).contains(&s) => Ok(Duration::from_secs(s)),
        Some(_) => Err(format!("timeout must be 1..={MAX_TIMEOUT_S} seconds")),
    }
}

/// A change in progress, for `cluster show`.
fn progress_json(c: &ChangeProgress) -> serde_json::Value {
    let now = raftmq_raft::node::now_ms();
    json!({
        "id": c.id,
        "node": c.node,
        "what": c.what,
        "since_ms": c.since_ms,
        "running_for_s": now.saturating_sub(c.since_ms) / 1000,
        "stage": c.stages.last().map(|s| s.text.clone()),
        "stages": c.stages.iter().map(|s| json!({"at_ms": s.at_ms, "text": s.text})).collect::<Vec<_>>(),
    })
}

pub async fn show(State(b): State<Arc<Broker>>) -> Json<serde_json::Value> {
    let v = b.node.cluster_view().await;
    let split = b.node.netsplit();
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
        "change_in_progress": v.change.as_ref().map(progress_json),
        // The node asked: on the minority side of a netsplit it answers
        // with its own view, and says so here.
        "netsplit": {
            "node": b.settings.node_id,
            "in_netsplit": split.active(),
            "since_ms": split.since_ms,
            "reason": split.active().then_some(split.reason),
        },
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinQuery {
    #[serde(rename = "discovery-node")]
    discovery_node: Option<String>,
    timeout: Option<u64>,
}

pub async fn join(State(b): State<Arc<Broker>>, ApiQuery(q): ApiQuery<JoinQuery>) -> Response {
    let Some(d) = q.discovery_node else {
        return bad_request("discovery-node is required (an inter-node address of a member)");
    };
    let timeout = match timeout_of(q.timeout) {
        Ok(t) => t,
        Err(why) => return bad_request(&why),
    };
    if b.node.is_fresh_standalone() {
        // A new node that bootstrapped a cluster of its own: it gives up its
        // empty log, restarts in place and joins. The node's owner does that
        // after a graceful stop, which lets this answer go out first.
        let id = b.settings.node_id;
        b.life.request(LifecycleRequest::RestartToJoin(d.clone()));
        return (
            StatusCode::ACCEPTED,
            Json(json!({"text": format!("node {id} has no state of its own: it restarts with an empty data directory and joins through {d}"), "restarting": true})),
        )
            .into_response();
    }
    match b.node.join_via(&d, timeout).await {
        Ok(msg) => Json(json!({"text": msg})).into_response(),
        Err(e) => admin_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveQuery {
    node: Option<u64>,
    #[serde(default)]
    kill: bool,
    timeout: Option<u64>,
}

pub async fn leave(State(b): State<Arc<Broker>>, ApiQuery(q): ApiQuery<LeaveQuery>) -> Response {
    let Some(id) = q.node else {
        return bad_request("node is required (a node id)");
    };
    let timeout = match timeout_of(q.timeout) {
        Ok(t) => t,
        Err(why) => return bad_request(&why),
    };
    let req = ChangeRequest::Leave { id, kill: q.kill };
    match b.node.change(req, timeout).await {
        Ok(o) => Json(json!({
            "text": o.text,
            "stages": o.stages.iter().map(|s| json!({"at_ms": s.at_ms, "text": s.text})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => admin_error(e),
    }
}
