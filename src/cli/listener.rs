//! `raftmq listener show|start|stop|reload`: the node's MQTT listeners
//! (VerneMQ's `vmq-admin listener`). Each acts on the node `--admin` names.

use clap::{Args, Subcommand};

use super::Target;

#[derive(Subcommand, Debug)]
pub enum ListenerCmd {
    /// List the listeners: name, kind, address, status, open connections,
    /// connections accepted, options not at their default.
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// Start accepting on a stopped listener (binds its address again).
    Start(NameArgs),
    /// Stop accepting new connections; open connections stay.
    Stop(NameArgs),
    /// Re-read every TLS listener's certificate, key and CA files (new
    /// connections use them; SIGHUP does the same).
    Reload {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    target: Target,
    /// The listener: KIND.NAME (`ssl.default`), or NAME when only one
    /// listener has it.
    name: String,
}

pub fn run(cmd: ListenerCmd) -> anyhow::Result<()> {
    let (target, v) = match cmd {
        ListenerCmd::Show { target } => {
            let v = target.admin().get("/api/v1/listener/show", &[])?;
            (target, v)
        }
        ListenerCmd::Start(a) => {
            let v = a
                .target
                .admin()
                .post("/api/v1/listener/start", &[("name", a.name)])?;
            (a.target, v)
        }
        ListenerCmd::Stop(a) => {
            let v = a
                .target
                .admin()
                .post("/api/v1/listener/stop", &[("name", a.name)])?;
            (a.target, v)
        }
        ListenerCmd::Reload { target } => {
            let v = target.admin().post("/api/v1/listener/reload", &[])?;
            (target, v)
        }
    };
    target.output().print(&v);
    Ok(())
}
