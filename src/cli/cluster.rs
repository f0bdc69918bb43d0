//! `raftmq cluster join|leave|show`: membership, through the node's
//! `/api/v1/cluster/...`.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use super::{pairs, Target};

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
    },
    /// Members: id, addresses, voter or learner, leader, match index,
    /// reachability.
    Show {
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Join { target, discovery } => {
            let d = one(&discovery, "discovery-node")?;
            let admin = target.admin();
            let v = admin.post("/api/v1/cluster/join", &[("discovery-node", d)])?;
            target.output().print(&v);
            if v.get("restarting").and_then(|r| r.as_bool()) == Some(true) {
                admin.wait_healthy(Duration::from_secs(60))?;
                println!("the node joined the cluster and is serving");
            }
            Ok(())
        }
        ClusterCmd::Leave { target, node, kill } => {
            let id = one(&node, "node")?;
            let id: u64 = id
                .parse()
                .with_context(|| format!("node=ID needs a numeric node id, got `{id}`"))?;
            let v = target.admin().post(
                "/api/v1/cluster/leave",
                &[("node", id.to_string()), ("kill", kill.to_string())],
            )?;
            target.output().print(&v);
            Ok(())
        }
        ClusterCmd::Show { target } => {
            let v = target.admin().get("/api/v1/cluster/show", &[])?;
            target.output().print(&v);
            Ok(())
        }
    }
}

/// The value of the one `key=value` argument a command takes.
fn one(arg: &str, key: &str) -> anyhow::Result<String> {
    let p = pairs(&[arg.to_string()], &[key])?;
    Ok(p.into_iter().next().map(|(_, v)| v).unwrap_or_default())
}
