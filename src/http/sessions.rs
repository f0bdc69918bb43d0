//! `/api/v1/session/show` and `/api/v1/session/disconnect` (VerneMQ's
//! `session show|disconnect`), and `/api/v1/session/connections`, which a
//! node answering `session show` asks of the nodes its listed clients are
//! connected to: peer, protocol, clean start and window live only there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raftmq_raft::command::AdminDisconnect;
use raftmq_raft::node::now_ms;
use raftmq_raft::state::SessionInfo;
use raftmq_raft::{CmdResult, Command, NodeId, SessionQuery, NEVER};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::peers::{self, Ask};
use super::query::{error, read_error, ApiQuery};
use crate::broker::Broker;

/// `session show`'s default row limit (VerneMQ's).
pub const DEFAULT_LIMIT: usize = 100;
/// How long a connection has to say what is in its window.
const DESCRIBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    client_id: Option<String>,
    is_online: Option<bool>,
    node: Option<NodeId>,
    limit: Option<usize>,
    /// List each session's subscription filters, not only their number.
    subscriptions: Option<bool>,
}

/// What a client's node knows about its live connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Live {
    peer: Option<String>,
    protocol: String,
    clean: bool,
    inflight: Option<usize>,
}

pub async fn show(State(b): State<Arc<Broker>>, ApiQuery(q): ApiQuery<ShowQuery>) -> Response {
    let query = SessionQuery {
        client_id: q.client_id,
        online: q.is_online,
        node: q.node,
        limit: q.limit.unwrap_or(DEFAULT_LIMIT),
    };
    let page = match b.node.session_page(&query) {
        Ok(p) => p,
        Err(e) => return read_error(e),
    };
    let live = live_details(&b, &page.sessions).await;
    let with_subs = q.subscriptions == Some(true);
    let table: Vec<_> = page
        .sessions
        .iter()
        .map(|s| row(s, live.get(&s.client_id), with_subs))
        .collect();
    let mut answer = json!({ "table": table });
    if page.more {
        answer["more"] = json!(format!(
            "more sessions match; raise --limit (now {})",
            query.limit
        ));
    }
    Json(answer).into_response()
}

/// One listing row: the replicated session, and where it is connected what
/// its node says of the connection (`-` when that node did not answer).
fn row(s: &SessionInfo, live: Option<&Live>, with_subs: bool) -> serde_json::Value {
    let online = s.node.is_some();
    let mut r = json!({
        "client_id": s.client_id,
        "online": online,
        "node": s.node,
        "peer": live.and_then(|l| l.peer.clone()),
        "protocol": live.map(|l| l.protocol.clone()),
        // A session that outlives its connection did not start clean, or
        // an offline one would not exist.
        "clean": if online { live.map(|l| l.clean) } else { Some(false) },
        "expiry": expiry(s.expiry_s),
        "queued": s.queued,
        "queued_bytes": s.queued_bytes,
        "dropped": s.dropped_offline_limit + s.dropped_online_limit,
        "inflight": live.and_then(|l| l.inflight),
        "subscriptions": s.subscriptions.len(),
    });
    if with_subs {
        r["subscriptions"] = json!(s.subscriptions);
    }
    r
}

/// A session expiry as people read it: `never`, `0s` (ends with its
/// connection), or days, hours, minutes and seconds.
pub fn expiry(s: u32) -> String {
    if s == NEVER {
        return "never".into();
    }
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (sec, "s")]
        .iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, u)| format!("{v}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.concat()
    }
}

/// The live details of the listed online sessions: from this node's
/// registry, and from each other node in one request.
async fn live_details(b: &Arc<Broker>, sessions: &[SessionInfo]) -> HashMap<String, Live> {
    let mut by_node: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    for s in sessions {
        if let Some(n) = s.node {
            by_node.entry(n).or_default().push(s.client_id.clone());
        }
    }
    let mut out = HashMap::new();
    for (node, clients) in by_node {
        if node == b.settings.node_id {
            out.extend(local(b, &clients).await);
            continue;
        }
        let Some(info) = b.node.node_info(node) else {
            continue;
        };
        let path = "/api/v1/session/connections".to_string();
        let asked = peers::ask(info.http, Ask::PostJson(path, json!(clients))).await;
        match asked.and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string())) {
            Ok(m) => out.extend::<HashMap<String, Live>>(m),
            Err(e) => tracing::debug!(node, error = %e, "no connection details from node"),
        }
    }
    out
}

/// The connections of `clients` on this node.
async fn local(b: &Broker, clients: &[String]) -> HashMap<String, Live> {
    // Every connection is asked at once; one that is slow to answer costs
    // the listing at most DESCRIBE_TIMEOUT, whatever the number of rows.
    let asked = clients.iter().filter_map(|c| {
        let (peer, window) = b.registry.describe(c)?;
        Some(async move {
            let inflight = match window {
                Some(rx) => tokio::time::timeout(DESCRIBE_TIMEOUT, rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|w| w.inflight),
                None => None,
            };
            let live = Live {
                peer: peer.addr.map(|a| a.to_string()),
                protocol: peer.protocol_name().into(),
                clean: peer.clean_start,
                inflight,
            };
            (c.clone(), live)
        })
    });
    futures::future::join_all(asked).await.into_iter().collect()
}

/// `POST /api/v1/session/connections` with a JSON list of client ids: the
/// ones connected here, with their details.
pub async fn connections(
    State(b): State<Arc<Broker>>,
    Json(clients): Json<Vec<String>>,
) -> Json<HashMap<String, Live>> {
    Json(local(&b, &clients).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectQuery {
    client_id: Option<String>,
    cleanup: Option<bool>,
}

/// `session disconnect`, from any node: committed through the log, so the
/// client's own node closes the connection wherever it is.
pub async fn disconnect(
    State(b): State<Arc<Broker>>,
    ApiQuery(q): ApiQuery<DisconnectQuery>,
) -> Response {
    let Some(c) = q.client_id else {
        return error(StatusCode::BAD_REQUEST, "client_id is required");
    };
    let cleanup = q.cleanup == Some(true);
    let one = SessionQuery {
        client_id: Some(c.clone()),
        limit: 1,
        ..Default::default()
    };
    let node = match b.node.session_page(&one) {
        Ok(p) => match p.sessions.first() {
            Some(s) => s.node,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no session for client `{c}`"),
                )
            }
        },
        Err(e) => return read_error(e),
    };
    if node.is_none() && !cleanup {
        return error(
            StatusCode::CONFLICT,
            format!("client `{c}` is not connected; add --cleanup to end its session"),
        );
    }
    let cmd = Command::AdminDisconnect(AdminDisconnect {
        client_id: c.clone(),
        cleanup,
        now_ms: now_ms(),
    });
    // A backstop: the proposer answers by the command's deadline.
    let timeout = Duration::from_millis(b.settings.commit_timeout_ms + 5_000);
    match tokio::time::timeout(timeout, b.node.propose_for_client(cmd)).await {
        Ok(Ok(CmdResult::Done)) => {
            let mut text = match node {
                Some(n) => format!("client `{c}` disconnected (it was connected to node {n})"),
                None => format!("client `{c}` was not connected"),
            };
            if cleanup {
                text.push_str("; its session has ended");
            }
            Json(json!({ "text": text, "client_id": c, "node": node, "cleanup": cleanup }))
                .into_response()
        }
        Ok(Ok(_)) => error(
            StatusCode::CONFLICT,
            format!("client `{c}` disconnected or its session ended meanwhile"),
        ),
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not committed: {e}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not committed within {timeout:?}; it may still take effect"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_as_a_duration_or_never() {
        assert_eq!(expiry(NEVER), "never");
        assert_eq!(expiry(u32::MAX), "never");
        assert_eq!(expiry(0), "0s");
        assert_eq!(expiry(90), "1m30s");
        assert_eq!(expiry(86_400 + 3600), "1d1h");
    }
}
