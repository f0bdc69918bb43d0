//! `raftmq cluster join|leave|show`: membership, through the node's
//! `/api/v1/cluster/...`. While a join or leave waits for its change, the
//! stages the leader records are printed as they happen (read from `cluster
//! show`); past `--timeout` the command says the change continues on the
//! leader and fails.

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::{pairs, Admin, Target};

/// How often a waiting join or leave reads the change's stages.
const POLL: Duration = Duration::from_millis(250);

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Make the node at --admin join a cluster: `discovery-node=ADDR`, the
    /// cluster address of any member. The node must be new (started with an
    /// empty data directory and --join, or still waiting to join).
    Join {
        #[command(flatten)]
        target: Target,
        /// `discovery-node=ADDR`
        discovery: String,
        /// Seconds to wait for the join; it continues on the leader past it.
        #[arg(short = 't', long, default_value_t = 60)]
        timeout: u64,
    },
    /// Remove a node from the cluster: `node=ID`. Also removes a dead node.
    Leave {
        #[command(flatten)]
        target: Target,
        /// `node=ID`
        node: String,
        /// Disconnect the node's clients (they can resume on any other node).
        #[arg(short = 'k', long = "kill")]
        kill: bool,
        /// Seconds to wait for the leave; it continues on the leader past it.
        #[arg(short = 't', long, default_value_t = 60)]
        timeout: u64,
    },
    /// Members (id, addresses, voter or learner, leader, match index,
    /// reachability) and the membership change in progress, if any.
    Show {
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Join {
            target,
            discovery,
            timeout,
        } => {
            let d = one(&discovery, "discovery-node")?;
            let admin = target.admin();
            let me = admin.get("/api/v1/status", &[]).ok();
            let me = me.and_then(|v| v["node_id"].as_u64());
            let addr = target.admin.clone();
            let v = with_progress(&admin, me, move || {
                Admin::new(addr).post(
                    "/api/v1/cluster/join",
                    &[("discovery-node", d), ("timeout", timeout.to_string())],
                )
            })?;
            target.output().print(&v);
            if v.get("restarting").and_then(|r| r.as_bool()) == Some(true) {
                admin.wait_healthy(Duration::from_secs(timeout))?;
                println!("the node joined the cluster and is serving");
            }
            Ok(())
        }
        ClusterCmd::Leave {
            target,
            node,
            kill,
            timeout,
        } => {
            let id = one(&node, "node")?;
            let id: u64 = id
                .parse()
                .with_context(|| format!("node=ID needs a numeric node id, got `{id}`"))?;
            let addr = target.admin.clone();
            let v = with_progress(&target.admin(), Some(id), move || {
                Admin::new(addr).post(
                    "/api/v1/cluster/leave",
                    &[
                        ("node", id.to_string()),
                        ("kill", kill.to_string()),
                        ("timeout", timeout.to_string()),
                    ],
                )
            })?;
            target.output().print(&v);
            Ok(())
        }
        ClusterCmd::Show { target } => {
            let v = target.admin().get("/api/v1/cluster/show", &[])?;
            if target.json {
                target.output().print(&v);
            } else {
                // The members, then one line for the change in progress.
                target
                    .output()
                    .print(&serde_json::json!({ "table": v["table"] }));
                println!("{}", change_line(&v));
                println!("{}", netsplit_line(&v));
            }
            Ok(())
        }
    }
}

/// Runs `request` (a join or leave of node `about`) and prints, as they
/// happen, the stages of the change about that node that the leader runs.
fn with_progress(
    admin: &Admin,
    about: Option<u64>,
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
        if let Ok(v) = admin.get("/api/v1/cluster/show", &[]) {
            let c = &v["change_in_progress"];
            if about.is_some_and(|t| c["node"].as_u64() == Some(t)) {
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

/// `cluster show`'s last line: the change in progress, or that there is
/// none.
fn change_line(v: &Value) -> String {
    let c = &v["change_in_progress"];
    if c.is_object() {
        format!(
            "membership change in progress: {} (for {} s; stage: {})",
            c["what"].as_str().unwrap_or("?"),
            c["running_for_s"],
            c["stage"].as_str().unwrap_or("starting"),
        )
    } else if v["membership_change_in_progress"] == true {
        "membership change in progress: a joint configuration the leader is finishing".into()
    } else {
        "no membership change in progress".into()
    }
}

/// `cluster show`'s netsplit line, about the node asked.
fn netsplit_line(v: &Value) -> String {
    let n = &v["netsplit"];
    if n["in_netsplit"] == true {
        let since = n["since_ms"].as_u64().unwrap_or(0);
        let for_s = raftmq_raft::node::now_ms().saturating_sub(since) as f64 / 1000.0;
        format!(
            "node {} is in netsplit (for {for_s:.1} s): {}; this view is its own",
            n["node"],
            n["reason"].as_str().unwrap_or("no quorum"),
        )
    } else {
        format!("node {} is not in netsplit", n["node"])
    }
}

/// The value of the one `key=value` argument a command takes.
fn one(arg: &str, key: &str) -> anyhow::Result<String> {
    let p = pairs(&[arg.to_string()], &[key])?;
    Ok(p.into_iter().next().map(|(_, v)| v).unwrap_or_default())
}
