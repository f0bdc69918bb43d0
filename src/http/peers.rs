//! Calls from this node to another member's admin API (listings and settings
//! that live on that node), bounded in time and off the async runtime, with
//! the cluster-internal API key (derived from the cookie) that every member
//! accepts.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::cli::Admin;

/// How long one call to another member may take.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a member's admin API is asked.
pub enum Ask {
    Get(String, Vec<(String, String)>),
    Post(String, Vec<(String, String)>),
    PostJson(String, Value),
}

/// The key calls to other members carry; set once, when the node's router
/// is built (one node per process).
static INTERNAL_KEY: OnceLock<String> = OnceLock::new();

/// Sets the key from the cluster cookie.
pub fn set_internal_key(cookie: &str) {
    let _ = INTERNAL_KEY.set(crate::auth::api_key::internal_key(cookie));
}

/// Asks the member whose HTTP address is `addr`; the error says why not.
pub async fn ask(addr: String, what: Ask) -> Result<Value, String> {
    tokio::task::spawn_blocking(move || {
        let admin = Admin::new(addr)
            .with_timeout(PEER_TIMEOUT)
            .with_api_key(INTERNAL_KEY.get().cloned());
        let r = match &what {
            Ask::Get(path, q) => admin.get(path, &pairs(q)),
            Ask::Post(path, q) => admin.post(path, &pairs(q)),
            Ask::PostJson(path, body) => admin.post_json(path, body),
        };
        r.map_err(|e| format!("{e:#}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

fn pairs(q: &[(String, String)]) -> Vec<(&str, String)> {
    q.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}
