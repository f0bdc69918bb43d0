//! `/api/v1/user/...`, `/api/v1/acl/...` and `/api/v1/api-key/...`: the
//! replicated users, ACL and admin API keys (`raftmq user|acl|api-key`).
//! Changes go through the log and are answered once committed. Passwords
//! arrive already hashed (the CLI hashes them) and API keys in a JSON body,
//! so neither is in a URL or a log line; only hashes and digests are
//! stored.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raftmq_raft::command::{AddApiKey, DeleteApiKey, DeleteUser, SetAcl, SetUser};
use raftmq_raft::node::now_ms;
use raftmq_raft::settings::utc;
use raftmq_raft::{CmdResult, Command};
use serde::Deserialize;
use serde_json::json;

use super::query::{error, ApiQuery};
use crate::auth::acl::Acl;
use crate::auth::{api_key, password};
use crate::broker::Broker;

/// Commits `cmd`: `Ok(true)` done, `Ok(false)` nothing to delete.
async fn commit(b: &Broker, cmd: Command) -> Result<bool, Response> {
    let timeout = Duration::from_millis(b.settings.commit_timeout_ms);
    match tokio::time::timeout(timeout, b.node.propose(cmd)).await {
        Ok(Ok(CmdResult::Done)) => Ok(true),
        Ok(Ok(CmdResult::Missing)) => Ok(false),
        Ok(Ok(other)) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected result {other:?}"),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not committed: {e}"),
        )),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not committed within {timeout:?}"),
        )),
    }
}

fn text(t: String) -> Response {
    Json(json!({ "text": t })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAdd {
    name: String,
    /// The password's argon2 PHC string.
    hash: String,
}

/// A user name is 1 to 256 characters, without `:` (the password file's
/// separator) or control characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.contains(':')
        && !name.chars().any(char::is_control)
}

pub async fn user_add(State(b): State<Arc<Broker>>, ApiQuery(q): ApiQuery<UserAdd>) -> Response {
    if !valid_name(&q.name) {
        return error(
            StatusCode::BAD_REQUEST,
            "a user name is 1 to 256 characters, without `:` or control characters",
        );
    }
    if let Err(e) = password::check_phc(&q.hash) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let existed = b.node.auth().users.contains_key(&q.name);
    let cmd = Command::SetUser(SetUser {
        name: q.name.clone(),
        hash: q.hash,
        now_ms: now_ms(),
    });
    match commit(&b, cmd).await {
        Ok(_) if existed => text(format!("user `{}`: password changed", q.name)),
        Ok(_) => text(format!("user `{}` added", q.name)),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserName {
    name: String,
}

pub async fn user_delete(
    State(b): State<Arc<Broker>>,
    ApiQuery(q): ApiQuery<UserName>,
) -> Response {
    let cmd = Command::DeleteUser(DeleteUser {
        name: q.name.clone(),
    });
    match commit(&b, cmd).await {
        Ok(true) => text(format!("user `{}` deleted", q.name)),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no user `{}` in the cluster's users", q.name),
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// The cluster's users, then this node's own (config file, password file).
pub async fn user_list(State(b): State<Arc<Broker>>, ApiQuery(_): ApiQuery<NoQuery>) -> Response {
    let t = b.node.auth();
    let mut table: Vec<_> = t
        .users
        .iter()
        .map(|(u, r)| json!({ "user": u, "source": "cluster", "set": utc(r.set_ms) }))
        .collect();
    table.extend(
        b.auth
            .local_users()
            .filter(|u| !t.users.contains_key(*u))
            .map(|u| json!({ "user": u, "source": format!("node {}", b.settings.node_id), "set": null })),
    );
    Json(json!({ "table": table })).into_response()
}

pub async fn acl_show(State(b): State<Arc<Broker>>, ApiQuery(_): ApiQuery<NoQuery>) -> Response {
    let t = b.node.auth();
    let s = b.auth.settings();
    Json(json!({
        "rules": t.acl.rules,
        "rule_count": Acl::parse(&t.acl.rules).map(|a| a.len()).ok(),
        "set": (t.acl.set_ms > 0).then(|| utc(t.acl.set_ms)),
        "acl_nomatch": if s.acl_nomatch_allow { "allow" } else { "deny" },
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclBody {
    rules: String,
}

/// Replaces the ACL, once its rules parse; every node applies the new
/// rules to the next publish and subscribe of every client.
pub async fn acl_load(State(b): State<Arc<Broker>>, Json(body): Json<AclBody>) -> Response {
    let n = match Acl::parse(&body.rules) {
        Ok(a) => a.len(),
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let cmd = Command::SetAcl(SetAcl {
        rules: body.rules,
        now_ms: now_ms(),
    });
    match commit(&b, cmd).await {
        Ok(_) => text(format!("ACL replaced: {n} rule(s)")),
        Err(r) => r,
    }
}

/// A new random key: only its digest is stored; the answer is the one
/// place the key is ever shown.
pub async fn key_create(State(b): State<Arc<Broker>>, ApiQuery(_): ApiQuery<NoQuery>) -> Response {
    let key = api_key::generate();
    let cmd = Command::AddApiKey(AddApiKey {
        digest: api_key::digest(&key),
        now_ms: now_ms(),
    });
    match commit(&b, cmd).await {
        Ok(_) => Json(json!({ "key": key })).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    key: String,
}

pub async fn key_add(State(b): State<Arc<Broker>>, Json(body): Json<KeyBody>) -> Response {
    if let Err(e) = api_key::check_format(&body.key) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let d = api_key::digest(&body.key);
    let cmd = Command::AddApiKey(AddApiKey {
        digest: d.clone(),
        now_ms: now_ms(),
    });
    match commit(&b, cmd).await {
        Ok(_) => text(format!("API key {} added", &d[..16])),
        Err(r) => r,
    }
}

pub async fn key_delete(State(b): State<Arc<Broker>>, Json(body): Json<KeyBody>) -> Response {
    let d = api_key::digest(&body.key);
    let cmd = Command::DeleteApiKey(DeleteApiKey { digest: d.clone() });
    match commit(&b, cmd).await {
        Ok(true) => text(format!("API key {} deleted", &d[..16])),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such API key"),
        Err(r) => r,
    }
}

/// The keys by the first 16 hex digits of their digest (the keys
/// themselves are not stored, so they cannot be shown).
pub async fn key_show(State(b): State<Arc<Broker>>, ApiQuery(_): ApiQuery<NoQuery>) -> Response {
    let t = b.node.auth();
    let table: Vec<_> = t
        .api_keys
        .iter()
        .map(|(d, r)| json!({ "digest": &d[..16.min(d.len())], "added": utc(r.added_ms) }))
        .collect();
    Json(json!({ "table": table })).into_response()
}
