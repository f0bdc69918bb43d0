//! The admin commands' HTTP client: one call to a node's `/api/v1`, with its
//! query string encoded here and its API key (if any) as HTTP basic auth,
//! and a non-2xx answer turned into an error that carries the node's own
//! message.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// A node's admin API, at its HTTP address (`--admin ADDR`).
pub struct Admin {
    addr: String,
    /// Bound on a whole call (None: as long as the node takes).
    timeout: Option<Duration>,
    /// Sent with every call when set.
    api_key: Option<String>,
}

impl Admin {
    pub fn new(addr: impl Into<String>) -> Admin {
        Admin {
            addr: addr.into(),
            timeout: None,
            api_key: None,
        }
    }

    /// Sends `key` (as HTTP basic auth) with every call.
    pub fn with_api_key(mut self, key: Option<String>) -> Admin {
        self.api_key = key;
        self
    }

    /// Bounds every call to `t`.
    pub fn with_timeout(mut self, t: Duration) -> Admin {
        self.timeout = Some(t);
        self
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call("GET", path, query)
    }

    pub fn post(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call("POST", path, query)
    }

    /// GET a text answer (`/metrics`).
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("http://{}{path}", self.addr);
        let mut get = self.agent().get(&url);
        if let Some(k) = &self.api_key {
            get = get.header("authorization", crate::auth::api_key::header(k));
        }
        let mut resp = get.call().with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading {url}"))?;
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
        Ok(text)
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(self.timeout)
            .build()
            .into()
    }

    /// POST with a JSON body.
    pub fn post_json(&self, path: &str, body: &impl serde::Serialize) -> anyhow::Result<Value> {
        self.call_with("POST", path, &[], Some(serde_json::to_value(body)?))
    }

    fn call(&self, method: &str, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call_with(method, path, query, None)
    }

    fn call_with(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("http://{}{path}{}", self.addr, query_string(query));
        let agent = self.agent();
        let auth = self.api_key.as_deref().map(crate::auth::api_key::header);
        let resp = match (method, body) {
            ("POST", b) => {
                let mut req = agent.post(&url);
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                match b {
                    Some(b) => req.send_json(b),
                    None => req.send_empty(),
                }
            }
            _ => {
                let mut req = agent.get(&url);
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                req.call()
            }
        };
        let mut resp = resp.with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let body: Value = resp
            .body_mut()
            .read_json()
            .with_context(|| format!("reading {url}"))?;
        if !status.is_success() {
            bail!(
                "{method} {url}: {status}: {}",
                body.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("request failed")
            );
        }
        Ok(body)
    }

    /// Does the node's `/health` answer 200?
    pub fn is_healthy(&self) -> bool {
        self.get("/health", &[]).is_ok()
    }

    /// Polls `/health` until it answers 200.
    pub fn wait_healthy(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        // Let the node go down for its restart first.
        std::thread::sleep(Duration::from_millis(500));
        while start.elapsed() < limit {
            if self.is_healthy() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("the node at {} was not healthy within {limit:?}", self.addr)
    }
}

/// `?k=v&k2=v2`, percent-encoded; empty without pairs.
fn query_string(query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("?{}", pairs.join("&"))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        let q = query_string(&[("topic", "a/#".into()), ("limit", "5".into())]);
        assert_eq!(q, "?topic=a%2F%23&limit=5");
        assert_eq!(query_string(&[]), "");
    }
}
