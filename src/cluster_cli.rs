//! `raftmq cluster join|leave|show`: clients of `/api/v1/cluster`. While a
//! join or leave waits for its change, the stages the leader records are
//! printed as they happen (read from `cluster show`); past `--timeout` the
//! command says the change continues on the leader and fails.

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::cli;

const POLL: Duration = Duration::from_millis(250);

/// Runs `request` (a join or leave of node `target`) and prints, as they
/// happen, the stages of the change about `target` that the leader runs.
fn with_progress(
    node: &str,
    target: Option<u64>,
    request: impl FnOnce() -> anyhow::Result<Value> + Send + 'static,
) -> anyhow::Result<Value> {
    let call = thread::spawn(request);
    let mut printed: HashSet<(u64, String)> = HashSet::new();
    let mut print = |stages: &Value| {
        for s in stages.as_array().into_iter().flatten() {
            let at = s["at_ms"].as_u64().unwrap_or(0);
            let text = s["text"].as_str().unwrap_or_default().to_string();
            if printed.insert((at, text.clone())) {
                println!("  {text}");
            }
        }
    };
    while !call.is_finished() {
        if let Ok(v) = cli::get(node, "/api/v1/cluster/show") {
            let c = &v["change_in_progress"];
            if target.is_some_and(|t| c["node"].as_u64() == Some(t)) {
                print(&c["stages"]);
            }
        }
        thread::sleep(POLL);
    }
    let r = call
        .join()
        .map_err(|_| anyhow::anyhow!("the request thread panicked"))?;
    if let Ok(v) = &r {
        print(&v["stages"]);
    }
    r
}

fn node_id_of(node: &str) -> Option<u64> {
    cli::get(node, "/api/v1/status").ok()?["node_id"].as_u64()
}

pub fn join(node: &str, discovery: &str, timeout: u64) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/cluster/join?discovery-node={}&timeout={timeout}",
        cli::enc(discovery)
    );
    let target = node_id_of(node);
    let n = node.to_string();
    let v = with_progress(node, target, move || cli::post(&n, &path))?;
    cli::print_text(&v);
    if v.get("restarting").and_then(|r| r.as_bool()) == Some(true) {
        cli::wait_healthy(node, Duration::from_secs(timeout))?;
        println!("the node joined the cluster and is serving");
    }
    Ok(())
}

pub fn leave(node: &str, id: u64, kill: bool, timeout: u64) -> anyhow::Result<()> {
    let path = format!("/api/v1/cluster/leave?node={id}&kill={kill}&timeout={timeout}");
    let n = node.to_string();
    let v = with_progress(node, Some(id), move || cli::post(&n, &path))?;
    cli::print_text(&v);
    Ok(())
}

pub fn show(node: &str) -> anyhow::Result<()> {
    let v = cli::get(node, "/api/v1/cluster/show")?;
    cli::print_table(&v);
    let c = &v["change_in_progress"];
    if c.is_object() {
        println!(
            "membership change in progress: {} (for {} s; stage: {})",
            c["what"].as_str().unwrap_or("?"),
            c["running_for_s"],
            c["stage"].as_str().unwrap_or("starting"),
        );
    } else if v["membership_change_in_progress"] == true {
        println!("membership change in progress: a joint configuration the leader is finishing");
    } else {
        println!("no membership change in progress");
    }
    Ok(())
}
