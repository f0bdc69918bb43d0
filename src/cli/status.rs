//! `raftmq status`: the node's own view (id, leader, term, applied index,
//! counts), as `key value` lines.

use super::Target;

pub fn run(target: Target) -> anyhow::Result<()> {
    let v = target.admin().get("/api/v1/status", &[])?;
    target.output().print(&v);
    Ok(())
}
