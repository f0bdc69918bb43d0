//! `raftmq set KEY=VALUE … [--node N | --all]` and `raftmq show [KEY …]
//! [--node N | --all]`: clients of `/api/v1/set` and `/api/v1/show` on the
//! node at `--admin ADDR` (VerneMQ's `vmq-admin set|show`; `--node` names a
//! member by id, as VerneMQ's names a node).

use clap::{Args, Subcommand};

use super::Target;

#[derive(Subcommand, Debug)]
pub enum SettingsCmd {
    /// Change settings: cluster-wide keys for the whole cluster (through
    /// the log, answered once committed), per-node live keys on the node
    /// asked, `--node N` or `--all`. Keys read only at start are refused.
    Set(SetArgs),
    /// Show settings (all, or the keys named): value, scope, how it is
    /// changed and where the value came from; one row per key and node.
    Show(ShowArgs),
}

/// Which node(s) a request is for (default: the node asked).
#[derive(Args, Debug)]
pub struct Scope {
    /// The member with this node id.
    #[arg(long, conflicts_with = "all")]
    node: Option<u64>,
    /// Every member.
    #[arg(long)]
    all: bool,
}

impl Scope {
    fn query(&self) -> Option<(&'static str, String)> {
        match (self.node, self.all) {
            (Some(n), _) => Some(("node", n.to_string())),
            (None, true) => Some(("all", "true".into())),
            (None, false) => None,
        }
    }
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// `KEY=VALUE` pairs.
    #[arg(required = true)]
    pairs: Vec<String>,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Keys to show (all if none).
    keys: Vec<String>,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    target: Target,
}

pub fn run(cmd: SettingsCmd) -> anyhow::Result<()> {
    match cmd {
        SettingsCmd::Set(a) => {
            let mut q = Vec::new();
            for p in &a.pairs {
                let Some((k, v)) = p.split_once('=') else {
                    anyhow::bail!("expected KEY=VALUE, got `{p}`");
                };
                q.push((k.trim(), v.trim().to_string()));
            }
            q.extend(a.scope.query());
            let v = a.target.admin().post("/api/v1/set", &q)?;
            a.target.output().print(&v);
            Ok(())
        }
        SettingsCmd::Show(a) => {
            let mut q: Vec<(&str, String)> = a.keys.iter().map(|k| ("key", k.clone())).collect();
            q.extend(a.scope.query());
            let v = a.target.admin().get("/api/v1/show", &q)?;
            a.target.output().print(&v);
            Ok(())
        }
    }
}
