//! The admin API's authentication: a middleware in front of every route.
//! A request that needs a key (see [`crate::auth::Auth::api_key_required`]:
//! `/api/v1` once the cluster has a key, or always with `api_auth = on`;
//! `/health` and `/metrics` only with `health_auth` / `metrics_auth`) must
//! carry one of the cluster's API keys, or the cluster-internal key that
//! members use between themselves, as HTTP basic auth (the key as the user
//! name) or a bearer token. Otherwise: 401.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::api_key;
use crate::broker::Broker;

pub async fn require_key(State(b): State<Arc<Broker>>, req: Request, next: Next) -> Response {
    let table = b.node.auth();
    if !b.auth.api_key_required(&table, req.uri().path()) {
        return next.run(req).await;
    }
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(api_key::from_header);
    match key {
        Some(k) if b.auth.api_key_ok(&table, &k) => next.run(req).await,
        Some(_) => refused("the API key is not one of the cluster's"),
        None => refused("an API key is required (HTTP basic auth with the key as user name; raftmq: --api-key, RAFTMQ_API_KEY or --api-key-file)"),
    }
}

fn refused(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"raftmq\"")],
        Json(json!({ "error": why })),
    )
        .into_response()
}
