//! `/api/v1/set` and `/api/v1/show`: live settings, VerneMQ style.
//!
//! - `POST /api/v1/set?KEY=VALUE&…[&node=N|&all=true]`: every pair is
//!   checked first (unknown key, bad value, a key read only at start: 400,
//!   nothing changed). Cluster-wide keys are proposed through the log (from
//!   any node; the proposer forwards to the leader) and answered once
//!   applied; `node`/`all` do not apply to them. Per-node live keys change
//!   the node asked, member `node`, or every member (`all`), reached through
//!   their HTTP addresses in the membership.
//! - `GET /api/v1/show[?key=K&…][&node=N|&all=true]`: one row per key (all
//!   keys if none is named) and node: value, scope, whether `set` changes it
//!   and where the value came from.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raftmq_raft::node::now_ms;
use raftmq_raft::settings::{utc, CLUSTER_KEYS};
use raftmq_raft::{CmdResult, Command, SetSettings};
use serde_json::{json, Value};

use super::peers::{self, Ask};
use super::query::error;
use crate::broker::Broker;
use crate::config::keys::{self, Kind, NODE_LIVE_KEYS, NODE_RESTART_KEYS};
use crate::config::live::Live;

/// Which nodes a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The node asked.
    Here,
    Node(u64),
    All,
}

type Params = Vec<(String, String)>;

fn bad_request(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// Takes `node` and `all` out of the query; the rest are the request's own.
fn split_target(params: Params) -> Result<(Target, Params), String> {
    let mut target = Target::Here;
    let mut rest = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "node" => {
                let id = v
                    .parse()
                    .map_err(|_| format!("node: expected a node id, got `{v}`"))?;
                target = Target::Node(id);
            }
            "all" if v == "true" => target = Target::All,
            "all" => {}
            _ => rest.push((k, v)),
        }
    }
    Ok((target, rest))
}

/// The members a request goes to: (id, HTTP address), in id order.
async fn members(b: &Broker, target: Target) -> Result<Vec<(u64, String)>, String> {
    let here = b.settings.node_id;
    match target {
        Target::Here => Ok(vec![(here, b.settings.http_addr.to_string())]),
        Target::Node(id) if id == here => Ok(vec![(here, b.settings.http_addr.to_string())]),
        Target::Node(id) => b
            .node
            .node_info(id)
            .map(|n| vec![(id, n.http)])
            .ok_or(format!("node {id} is not a member of the cluster")),
        Target::All => {
            let mut m: Vec<_> = b
                .node
                .cluster_view()
                .await
                .members
                .into_iter()
                .map(|m| (m.id, m.http))
                .collect();
            m.sort();
            Ok(m)
        }
    }
}

pub async fn set(State(b): State<Arc<Broker>>, Query(params): Query<Params>) -> Response {
    let (target, pairs) = match split_target(params) {
        Ok(t) => t,
        Err(e) => return bad_request(e),
    };
    if pairs.is_empty() {
        return bad_request("nothing to set: give KEY=VALUE".into());
    }
    let (mut cluster, mut node) = (Vec::new(), Vec::new());
    for (k, v) in pairs {
        let key = keys::canonical(&k).to_string();
        match keys::kind(&key) {
            Kind::Cluster => cluster.push((key, v)),
            Kind::NodeLive => node.push((key, v)),
            Kind::NodeRestart => {
                return bad_request(format!(
                    "`{k}` is read when the node starts: change it in the node's config file \
                     (or flag) and restart the node"
                ))
            }
            Kind::Unknown => return bad_request(format!("`{k}`: unknown setting")),
        }
    }
    if let Err(e) = b.node.summary().settings.with(&cluster) {
        return bad_request(e.to_string());
    }
    if let Err(e) = Live::new(&b.settings).set(&node, 0) {
        return bad_request(e);
    }
    if !cluster.is_empty() && target != Target::Here {
        return bad_request(format!(
            "`{}` is cluster-wide: set it without --node/--all (it changes every node)",
            cluster[0].0
        ));
    }
    let targets = if node.is_empty() {
        Vec::new()
    } else {
        match members(&b, target).await {
            Ok(t) => t,
            Err(e) => return bad_request(e),
        }
    };
    let mut text = Vec::new();
    if !cluster.is_empty() {
        let cmd = Command::SetSettings(SetSettings {
            changes: cluster.clone(),
            bootstrap_file: None,
            now_ms: now_ms(),
        });
        // A backstop: the proposer answers by the command's deadline.
        let timeout = std::time::Duration::from_millis(b.settings.commit_timeout_ms + 5_000);
        match tokio::time::timeout(timeout, b.node.propose_for_client(cmd)).await {
            Ok(Ok(CmdResult::Done)) => {}
            Ok(Ok(CmdResult::SettingsRefused(e))) => return bad_request(e),
            Ok(Ok(other)) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("unexpected result {other:?}"),
                )
            }
            Ok(Err(e)) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not committed: {e}"),
                )
            }
            Err(_) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not committed within {timeout:?}; it may still take effect"),
                )
            }
        }
        for (k, v) in &cluster {
            text.push(format!("{k} = {v} (cluster-wide, committed)"));
        }
    }
    let mut failed = Vec::new();
    for (id, addr) in targets {
        let r = if id == b.settings.node_id {
            b.live.set(&node, now_ms())
        } else {
            let set = Ask::Post("/api/v1/set".into(), node.clone());
            peers::ask(addr, set).await.map(|_| ())
        };
        match r {
            Ok(()) => {
                for (k, v) in &node {
                    text.push(format!("{k} = {v} (node {id})"));
                }
            }
            Err(e) => failed.push(format!("node {id}: {e}")),
        }
    }
    if !failed.is_empty() {
        let done = if text.is_empty() {
            String::new()
        } else {
            format!(" (done: {})", text.join("; "))
        };
        return error(
            StatusCode::BAD_GATEWAY,
            format!("{}{done}", failed.join("; ")),
        );
    }
    Json(json!({ "text": text.join("\n") })).into_response()
}

pub async fn show(State(b): State<Arc<Broker>>, Query(params): Query<Params>) -> Response {
    let (target, rest) = match split_target(params) {
        Ok(t) => t,
        Err(e) => return bad_request(e),
    };
    let mut wanted = Vec::new();
    for (k, v) in rest {
        if k != "key" {
            return bad_request(format!(
                "unknown parameter `{k}` (expected key, node or all)"
            ));
        }
        let key = keys::canonical(&v).to_string();
        if keys::kind(&key) == Kind::Unknown {
            return bad_request(format!("`{v}`: unknown setting"));
        }
        wanted.push(key);
    }
    if target == Target::Here {
        return Json(json!({ "table": rows(&b, &wanted) })).into_response();
    }
    let targets = match members(&b, target).await {
        Ok(t) => t,
        Err(e) => return bad_request(e),
    };
    let query: Vec<(String, String)> = wanted.iter().map(|k| ("key".into(), k.clone())).collect();
    let mut table = Vec::new();
    for (id, addr) in targets {
        if id == b.settings.node_id {
            table.extend(rows(&b, &wanted));
            continue;
        }
        match peers::ask(addr, Ask::Get("/api/v1/show".into(), query.clone())).await {
            Ok(v) => table.extend(
                v.get("table")
                    .and_then(|t| t.as_array())
                    .cloned()
                    .unwrap_or_default(),
            ),
            Err(e) => return error(StatusCode::BAD_GATEWAY, format!("node {id}: {e}")),
        }
    }
    Json(json!({ "table": table })).into_response()
}

/// This node's rows for `wanted` (every key if empty).
fn rows(b: &Broker, wanted: &[String]) -> Vec<Value> {
    let all: Vec<String> = CLUSTER_KEYS
        .iter()
        .chain(&NODE_LIVE_KEYS)
        .chain(&NODE_RESTART_KEYS)
        .chain(&crate::config::auth::AUTH_KEYS)
        .map(|k| k.to_string())
        .collect();
    let keys = if wanted.is_empty() { &all[..] } else { wanted };
    let summary = b.node.summary();
    let live = b.live.get();
    let id = b.settings.node_id;
    keys.iter()
        .map(|k| {
            let (value, scope, changed_by, source) = match keys::kind(k) {
                Kind::Cluster => (
                    summary.settings.get(k).unwrap_or_default(),
                    "cluster",
                    "set (log)",
                    summary.settings.source(k).to_string(),
                ),
                kind => {
                    let source = match (b.live.set_at(k), b.settings.from_file.get(k)) {
                        (Some(ms), _) => format!("set at {}", utc(ms)),
                        (None, Some(path)) => format!("file {path}"),
                        (None, None) if b.settings.from_flags.contains(k) => "command line".into(),
                        (None, None) => "default".into(),
                    };
                    let changed_by = if kind == Kind::NodeLive {
                        "set (this node)"
                    } else {
                        "restart"
                    };
                    (
                        keys::node_value(&b.settings, &live, k).unwrap_or_default(),
                        "node",
                        changed_by,
                        source,
                    )
                }
            };
            json!({
                "node": id,
                "key": k,
                "value": value,
                "scope": scope,
                "changed_by": changed_by,
                "source": source,
            })
        })
        .collect()
}
