//! A node's admin HTTP API as the harness reads it: `/health`, cluster
//! membership and roles, sessions and retained messages (for the
//! convergence check), and `cluster leave`. Blocking calls with a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// One call: the status code and the JSON body (`Null` if the body was not
/// JSON), or `Err` if the node did not answer within `timeout`.
pub fn call(
    method: &str,
    node: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let url = format!("http://{node}{path}");
    let resp = if method == "POST" {
        ureq::post(&url)
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .send_empty()
    } else {
        ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .call()
    };
    let mut resp = resp.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_json().unwrap_or(Value::Null);
    Ok((status, body))
}

/// `/health` is 200.
pub fn healthy(node: SocketAddr) -> bool {
    matches!(
        call("GET", node, "/health", Duration::from_secs(1)),
        Ok((200, _))
    )
}

/// What one node says about itself: its role ("leader", "follower", or
/// "no-leader" when it knows of none), the leader it follows, and its term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleView {
    pub role: String,
    pub leader: Option<u64>,
    pub term: u64,
}

/// A node's own view, from its `/api/v1/status` (answered locally).
pub fn role(node: SocketAddr) -> Result<RoleView, String> {
    let (code, v) = call("GET", node, "/api/v1/status", Duration::from_millis(800))?;
    if code != 200 {
        return Err(format!("status: {code}"));
    }
    let leader = v.get("leader_id").and_then(Value::as_u64);
    let role = if v.get("leader").and_then(Value::as_bool) == Some(true) {
        "leader"
    } else if leader.is_some() {
        "follower"
    } else {
        "no-leader"
    };
    Ok(RoleView {
        role: role.to_string(),
        leader,
        term: v.get("term").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// Sessions (client id → sorted subscription filters) and retained messages
/// (topic → payload) as one node reports them.
pub type StateDump = (BTreeMap<String, Vec<String>>, BTreeMap<String, String>);

pub fn state(node: SocketAddr) -> Result<StateDump, String> {
    let t = Duration::from_secs(5);
    let (code, s) = call(
        "GET",
        node,
        "/api/v1/session/show?limit=1000000&subscriptions=true",
        t,
    )?;
    if code != 200 {
        return Err(format!("session show: {code} {s}"));
    }
    let mut sessions = BTreeMap::new();
    for row in s
        .get("table")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(id) = row.get("client_id").and_then(Value::as_str) else {
            continue;
        };
        let mut subs: Vec<String> = row
            .get("subscriptions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        subs.sort();
        sessions.insert(id.to_string(), subs);
    }
    let (code, r) = call(
        "GET",
        node,
        "/api/v1/retain/show?limit=1000000&payload=true",
        t,
    )?;
    if code != 200 {
        return Err(format!("retain show: {code} {r}"));
    }
    let mut retained = BTreeMap::new();
    for row in r
        .get("table")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(t), Some(p)) = (
            row.get("topic").and_then(Value::as_str),
            row.get("payload").and_then(Value::as_str),
        ) {
            retained.insert(t.to_string(), p.to_string());
        }
    }
    Ok((sessions, retained))
}

/// `cluster leave node=ID -k`, asked of `via`.
pub fn leave(via: SocketAddr, id: u64) -> Result<String, String> {
    let (code, v) = call(
        "POST",
        via,
        &format!("/api/v1/cluster/leave?node={id}&kill=true"),
        Duration::from_secs(30),
    )?;
    if code == 200 {
        Ok(v.get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string())
    } else {
        Err(format!("{code}: {v}"))
    }
}
