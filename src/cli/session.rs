//! `raftmq session show|disconnect`, VerneMQ's options: filters as flags or
//! `key=value` words, a row limit, and a disconnect that works from any node.

use clap::{Args, Subcommand};

use super::{pairs, Target};

#[derive(Subcommand, Debug)]
pub enum SessionCmd {
    /// List sessions: client id, online, node, peer, protocol, clean, expiry,
    /// queued, inflight. Filters may also be given as `key=value`.
    Show(ShowArgs),
    /// Disconnect a client, wherever it is connected (MQTT 5 clients get
    /// DISCONNECT 0x98, administrative action; the will is published).
    Disconnect(DisconnectArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    target: Target,
    /// Only the session of this client id.
    #[arg(long = "client_id", visible_alias = "client-id")]
    client_id: Option<String>,
    /// Only connected (true) or only disconnected (false) sessions.
    #[arg(long = "is_online", visible_alias = "is-online")]
    is_online: Option<bool>,
    /// Only sessions connected to the node with this id.
    #[arg(long)]
    node: Option<u64>,
    /// At most this many sessions (by client id).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// `client_id=ID`, `is_online=BOOL`, `node=ID`, `limit=N`.
    filters: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    #[command(flatten)]
    target: Target,
    /// The client to disconnect.
    #[arg(long = "client_id", visible_alias = "client-id")]
    client_id: Option<String>,
    /// Also end the session: its subscriptions and queued messages are
    /// deleted (as a clean session's are at disconnect).
    #[arg(long)]
    cleanup: bool,
    /// `client_id=ID` (or `client-id=ID`).
    filters: Vec<String>,
}

pub fn run(cmd: SessionCmd) -> anyhow::Result<()> {
    match cmd {
        SessionCmd::Show(a) => {
            let mut q: Vec<(&str, String)> = vec![("limit", a.limit.to_string())];
            if let Some(c) = a.client_id {
                q.push(("client_id", c));
            }
            if let Some(o) = a.is_online {
                q.push(("is_online", o.to_string()));
            }
            if let Some(n) = a.node {
                q.push(("node", n.to_string()));
            }
            for (k, v) in pairs(&a.filters, &["client_id", "is_online", "node", "limit"])? {
                q.retain(|(qk, _)| *qk != k);
                q.push((key(&k), v));
            }
            let v = a.target.admin().get("/api/v1/session/show", &q)?;
            a.target.output().print(&v);
            Ok(())
        }
        SessionCmd::Disconnect(a) => {
            let mut client = a.client_id;
            for (_, v) in pairs(&a.filters, &["client_id", "client-id"])? {
                client = Some(v);
            }
            let Some(client) = client else {
                anyhow::bail!("which client? give client_id=ID or --client_id ID");
            };
            let v = a.target.admin().post(
                "/api/v1/session/disconnect",
                &[("client_id", client), ("cleanup", a.cleanup.to_string())],
            )?;
            a.target.output().print(&v);
            Ok(())
        }
    }
}

/// The API's name of a filter key.
fn key(k: &str) -> &'static str {
    match k {
        "client_id" => "client_id",
        "is_online" => "is_online",
        "node" => "node",
        _ => "limit",
    }
}
