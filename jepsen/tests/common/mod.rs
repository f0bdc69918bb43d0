//! What the jepsen test binaries share: where the broker binary under test is.

use std::path::PathBuf;

/// The raftmq binary: `RAFTMQ_BIN`, else the workspace's own, next to the
/// jepsen binary.
pub fn raftmq_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RAFTMQ_BIN") {
        return PathBuf::from(p);
    }
    let jepsen = PathBuf::from(env!("CARGO_BIN_EXE_raftmq-jepsen"));
    let bin = jepsen.with_file_name("raftmq");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --release --workspace --bins)",
        bin.display()
    );
    bin
}
