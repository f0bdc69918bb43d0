//! When this node builds a snapshot (which also lets it purge its log).
//!
//! openraft's own policy builds one every `snapshot_interval_entries`
//! entries. A snapshot is the whole state, so with a large state (a deep
//! queue: gigabytes) that policy writes gigabytes for every few megabytes
//! logged, and while subscribers drain (each entry a small batch of acks)
//! it rewrote the state every few seconds. Here a snapshot is built once
//! that many entries are logged **and** the log since the last snapshot
//! holds at least half the last snapshot's bytes, so snapshot writes stay
//! within about twice what is logged, and the log within half the state
//! (or the entry count, for a small state).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::types::Raft;

const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What the policy reads: the entries and bytes logged, and the size of
/// the last snapshot.
pub(crate) struct Inputs {
    pub raft: Raft,
    /// Entries since the last snapshot before one is built.
    pub entries: u64,
    /// Bytes appended to the log since this process started.
    pub appended: Arc<AtomicU64>,
    /// The current snapshot file.
    pub snapshot_file: PathBuf,
}

/// Whether to build a snapshot now: `entries_since` entries and
/// `bytes_since` bytes logged since the last one, which was `last_bytes`.
pub(crate) fn due(entries_since: u64, bytes_since: u64, last_bytes: u64, entries: u64) -> bool {
    entries_since >= entries && bytes_since >= last_bytes / 2
}

/// Checks every [`CHECK_EVERY`] and triggers a snapshot when [`due`], until
/// `stop`.
pub(crate) async fn run(inputs: Inputs, stop: CancellationToken) {
    let mut iv = tokio::time::interval(CHECK_EVERY);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Log bytes at the last trigger (or the start: what was logged before
    // it is not counted, which only delays the first snapshot).
    let mut mark = inputs.appended.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = iv.tick() => {}
        }
        let (applied, snapshot) = {
            let m = inputs.raft.metrics();
            let m = m.borrow();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        let appended = inputs.appended.load(Ordering::Relaxed);
        let last_bytes = std::fs::metadata(&inputs.snapshot_file).map_or(0, |m| m.len());
        let entries_since = applied.saturating_sub(snapshot);
        let bytes_since = appended.saturating_sub(mark);
        if !due(entries_since, bytes_since, last_bytes, inputs.entries) {
            continue;
        }
        debug!(
            entries_since,
            bytes_since, last_bytes, "building a snapshot"
        );
        if inputs.raft.trigger().snapshot().await.is_err() {
            return; // Raft stopped.
        }
        mark = appended;
    }
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn a_small_state_is_snapshotted_every_so_many_entries() {
        assert!(!due(19_999, 1 << 20, 0, 20_000));
        assert!(due(20_000, 1 << 20, 4096, 20_000));
    }

    #[test]
    fn a_large_state_waits_until_half_its_size_is_logged() {
        let state = 10 << 30;
        assert!(
            !due(200_000, 1 << 30, state, 20_000),
            "acks: many small entries"
        );
        assert!(due(200_000, 5 << 30, state, 20_000));
    }
}
