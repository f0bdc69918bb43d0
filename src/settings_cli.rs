//! `raftmq set KEY=VALUE … [--node N | --all]` and `raftmq show [KEY …]
//! [--node N | --all]`: clients of `/api/v1/set` and `/api/v1/show` on the
//! node at `--http ADDR` (VerneMQ's `vmq-admin set|show`; `--node` names a
//! member by id, as VerneMQ's names a node).

use clap::{Args, Subcommand};

use crate::cli;
use crate::settings_api::enc;

#[derive(Subcommand)]
pub enum SettingsCmd {
    /// Change settings: cluster-wide keys for the whole cluster (through
    /// the log, answered once committed), per-node live keys on the node
    /// asked, `--node N` or `--all`. Keys read only at start are refused.
    Set(SetArgs),
    /// Show settings (all, or the keys named): value, scope, how it is
    /// changed and where the value came from; one row per key and node.
    Show(ShowArgs),
}

/// Which node(s) a request is for, and the node to ask.
#[derive(Args)]
pub struct Target {
    /// The member with this node id.
    #[arg(long, conflicts_with = "all")]
    node: Option<u64>,
    /// Every member.
    #[arg(long)]
    all: bool,
    /// HTTP address of the node to ask.
    #[arg(long, default_value = "127.0.0.1:8888")]
    http: String,
}

impl Target {
    fn query(&self) -> Option<String> {
        match (self.node, self.all) {
            (Some(n), _) => Some(format!("node={n}")),
            (None, true) => Some("all=true".into()),
            (None, false) => None,
        }
    }
}

#[derive(Args)]
pub struct SetArgs {
    /// `KEY=VALUE` pairs.
    #[arg(required = true)]
    pairs: Vec<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct ShowArgs {
    /// Keys to show (all if none).
    keys: Vec<String>,
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
                q.push(format!("{}={}", enc(k.trim()), enc(v.trim())));
            }
            q.extend(a.target.query());
            let v = cli::post(&a.target.http, &format!("/api/v1/set?{}", q.join("&")))?;
            cli::print_text(&v);
            Ok(())
        }
        SettingsCmd::Show(a) => {
            let mut q: Vec<String> = a.keys.iter().map(|k| format!("key={}", enc(k))).collect();
            q.extend(a.target.query());
            let v = cli::get(&a.target.http, &format!("/api/v1/show?{}", q.join("&")))?;
            cli::print_table(&v);
            Ok(())
        }
    }
}
