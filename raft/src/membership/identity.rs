//! A data directory's identity: 128 random bits written to `node_identity`
//! when the node first opens the directory, and never regenerated. A wiped
//! directory gets a new one, so the cluster can tell a member restarted with
//! its own data from a new node started under a member's id.

use std::io::Write;
use std::path::Path;

use crate::error::RaftError;

const FILE: &str = "node_identity";

/// The identity of `data_dir`, created (durably) if it has none yet.
pub(crate) fn load_or_create(data_dir: &Path) -> Result<u128, RaftError> {
    let path = data_dir.join(FILE);
    let io =
        |what: &str, e: std::io::Error| RaftError::Raft(format!("{what} {}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => u128::from_str_radix(text.trim(), 16).map_err(|e| {
            RaftError::Raft(format!(
                "{} is not a node identity ({e}); restore it or start with an empty data directory",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id: u128 = rand::random();
            let tmp = data_dir.join(format!("{FILE}.tmp"));
            let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
            writeln!(f, "{id:032x}").map_err(|e| io("write", e))?;
            f.sync_all().map_err(|e| io("sync", e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io("rename to", e))?;
            if let Ok(d) = std::fs::File::open(data_dir) {
                let _ = d.sync_all();
            }
            Ok(id)
        }
        Err(e) => Err(io("read", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_identity_and_a_new_one_gets_another() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = load_or_create(a.path()).unwrap();
        assert_eq!(load_or_create(a.path()).unwrap(), first);
        assert_ne!(load_or_create(b.path()).unwrap(), first);
    }
}
