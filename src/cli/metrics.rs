//! `raftmq metrics show`: every series of a node's `/metrics`, one per line
//! (VerneMQ's `vmq-admin metrics show`), or JSON with `--json`.

use clap::Subcommand;

use super::Target;

#[derive(Subcommand, Debug)]
pub enum MetricsCmd {
    /// Every metric of the node, one per line (`type.series = value`);
    /// histogram buckets are left out. `--json`: an array of {name, type,
    /// labels, value}.
    Show {
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(cmd: MetricsCmd) -> anyhow::Result<()> {
    let MetricsCmd::Show { target } = cmd;
    let text = target.admin().get_text("/metrics")?;
    crate::metrics::show::print(&text, target.json)
}
