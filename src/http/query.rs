//! The admin API's query strings and error answers: a query with a parameter
//! the endpoint does not know, or a value of the wrong type, is a 400 whose
//! JSON names it (never silently ignored); every error is `{"error": …}`.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

/// A query string parsed into `T` (which should `deny_unknown_fields`).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// An error answer: `code` and `{"error": message}`.
pub fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// A state read that failed (RocksDB): 500 with the error.
pub fn read_error(e: raftmq_raft::RaftError) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("reading the state: {e}"),
    )
}
