//! The admin commands (`cluster join|leave|show`, `session show|disconnect`,
//! `retain show`, `status`): thin clients of a node's HTTP API, found with `--node ADDR`.

use anyhow::{bail, Context};

pub fn get(node: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    call("GET", node, path)
}

pub fn post(node: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    call("POST", node, path)
}

/// One admin API call; a non-2xx answer becomes an error carrying the
/// node's own message.
fn call(method: &str, node: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://{node}{path}");
    let resp = if method == "POST" {
        ureq::post(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
    } else {
        ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
    };
    let mut resp = resp.with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
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

/// Prints a `{"table": [...]}` answer as aligned columns.
pub fn print_table(v: &serde_json::Value) {
    let Some(rows) = v.get("table").and_then(|t| t.as_array()) else {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    };
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let cols: Vec<String> = rows[0]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let cell = |r: &serde_json::Value, c: &str| match r.get(c) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let widths: Vec<usize> = cols
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |vals: Vec<String>| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(cols.clone()));
    for r in rows {
        println!("{}", line(cols.iter().map(|c| cell(r, c)).collect()));
    }
}

/// Prints a `{"text": ...}` answer.
pub fn print_text(v: &serde_json::Value) {
    match v.get("text").and_then(|t| t.as_str()) {
        Some(t) => println!("{t}"),
        None => println!("{v}"),
    }
}

/// Does the node's `/health` answer 200?
pub fn is_healthy(node: &str) -> bool {
    get(node, "/health").is_ok()
}

/// Polls `/health` until it answers 200.
pub fn wait_healthy(node: &str, limit: std::time::Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    // Let the node go down for its restart first.
    std::thread::sleep(std::time::Duration::from_millis(500));
    while start.elapsed() < limit {
        if is_healthy(node) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bail!("the node at {node} was not healthy within {limit:?}")
}
