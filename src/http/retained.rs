//! `/api/v1/retain/show` (VerneMQ's `retain show`): retained messages by
//! topic filter, at most `limit`, with payloads only on request and then in
//! a form a terminal can print (text when printable UTF-8, else hex).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::query::{read_error, ApiQuery};
use crate::broker::Broker;

/// `retain show`'s default row limit.
pub const DEFAULT_LIMIT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    topic: Option<String>,
    limit: Option<usize>,
    /// Include each payload.
    payload: Option<bool>,
    /// Cut payloads longer than this many bytes (0 or absent: whole).
    payload_max: Option<usize>,
}

pub async fn show(State(b): State<Arc<Broker>>, ApiQuery(q): ApiQuery<ShowQuery>) -> Response {
    let filter = q.topic.unwrap_or_else(|| "#".into());
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let list = match b.node.retained(&filter) {
        Ok(list) => list,
        Err(e) => return read_error(e),
    };
    let more = list.len() > limit;
    let max = q.payload_max.filter(|m| *m > 0);
    let table: Vec<_> = list
        .into_iter()
        .take(limit)
        .map(|m| {
            let mut r = json!({"topic": m.topic, "qos": m.qos, "bytes": m.payload.len()});
            if q.payload == Some(true) {
                let (text, encoding) = printable(&m.payload, max);
                r["payload"] = json!(text);
                r["encoding"] = json!(encoding);
            }
            r
        })
        .collect();
    let mut answer = json!({ "table": table });
    if more {
        answer["more"] = json!(format!(
            "more retained messages match; raise --limit (now {limit})"
        ));
    }
    Json(answer).into_response()
}

/// A payload a terminal can show: itself when it is UTF-8 without control
/// characters (`utf8`), else its bytes in hex (`hex`); cut after `max`
/// bytes with `…` when given.
pub fn printable(payload: &[u8], max: Option<usize>) -> (String, &'static str) {
    let cut = max.is_some_and(|m| payload.len() > m);
    let shown = &payload[..max.map_or(payload.len(), |m| m.min(payload.len()))];
    let text = std::str::from_utf8(payload)
        .ok()
        .filter(|s| !s.chars().any(char::is_control));
    let (mut s, enc) = match text {
        Some(_) => (String::from_utf8_lossy(shown).into_owned(), "utf8"),
        None => (shown.iter().map(|b| format!("{b:02x}")).collect(), "hex"),
    };
    if cut {
        // A cut inside a UTF-8 character shows as U+FFFD, never as bytes.
        s.push('…');
    }
    (s, enc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_shown_as_is() {
        assert_eq!(printable(b"21.5 C", None), ("21.5 C".into(), "utf8"));
    }

    #[test]
    fn binary_and_control_characters_are_shown_as_hex() {
        assert_eq!(
            printable(&[0x00, 0xff, 0x1b], None),
            ("00ff1b".into(), "hex")
        );
        assert_eq!(printable(b"bell\x07", None), ("62656c6c07".into(), "hex"));
    }

    #[test]
    fn long_payloads_are_cut_when_asked() {
        assert_eq!(printable(b"abcdef", Some(3)), ("abc…".into(), "utf8"));
        assert_eq!(printable(&[1, 2, 3, 4], Some(2)), ("0102…".into(), "hex"));
        assert_eq!(printable(b"abc", Some(3)), ("abc".into(), "utf8"));
    }
}
