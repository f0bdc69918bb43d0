//! `raftmq retain show`: retained messages by topic filter, with their
//! payloads shown safely (text when printable, hex otherwise) on request.

use clap::{Args, Subcommand};

use super::{pairs, Target};

#[derive(Subcommand, Debug)]
pub enum RetainCmd {
    /// List retained messages: topic, qos, bytes (and payload with
    /// --payload). The filter may also be given as `topic=FILTER`.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    target: Target,
    /// Only topics matching this filter (wildcards allowed).
    #[arg(long, default_value = "#")]
    topic: String,
    /// At most this many messages (by topic).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// Show each payload: as text when it is printable UTF-8, else as hex;
    /// long payloads are cut at 64 bytes (with --json they are whole).
    #[arg(long)]
    payload: bool,
    /// `topic=FILTER`, `limit=N`.
    filters: Vec<String>,
}

pub fn run(cmd: RetainCmd) -> anyhow::Result<()> {
    let RetainCmd::Show(a) = cmd;
    let (mut topic, mut limit) = (a.topic, a.limit.to_string());
    for (k, v) in pairs(&a.filters, &["topic", "limit"])? {
        if k == "topic" {
            topic = v;
        } else {
            limit = v;
        }
    }
    let mut q = vec![("topic", topic), ("limit", limit)];
    if a.payload {
        // The table cuts long payloads; JSON carries them whole.
        let cut = if a.target.json { "0" } else { "64" };
        q.push(("payload", "true".into()));
        q.push(("payload_max", cut.into()));
    }
    let v = a.target.admin().get("/api/v1/retain/show", &q)?;
    a.target.output().print(&v);
    Ok(())
}
