//! What the Raft side measures for `/metrics`: latency histograms taken where
//! the work happens (commit: propose to apply; the WAL fsync of each group of
//! appends; each apply batch and its size; a forwarded batch's round trip;
//! each snapshot build), the count of leader changes, the commit index, and
//! [`RaftNode::readings`], the point-in-time Raft and RocksDB values read at
//! scrape time (membership, commit and apply index, per-peer replication
//! lag, RocksDB's pending compaction).
//!
//! The histograms and counters are process-wide ([`TIMINGS`]): a raftmq
//! process runs one node, and the hooks that feed them (the log flusher
//! thread, the proposer loop, apply) are one line each instead of a handle
//! threaded through every constructor. Tests that run several nodes in one
//! process see them summed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::node::RaftNode;
use crate::types::{NodeId, Raft};

/// Latency buckets (seconds): 100 µs to about 13 s, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The Raft side's histograms and counters; see the module docs.
pub struct Timings {
    /// Propose (the batch is formed) to applied (its result is back), per
    /// proposed batch, on the node that proposed it.
    pub commit: Histogram,
    /// One WAL sync covering a group of log appends.
    pub fsync: Histogram,
    /// Applying one batch of committed entries.
    pub apply_batch: Histogram,
    /// Entries in one applied batch.
    pub apply_batch_entries: Histogram,
    /// A batch forwarded to the leader, until its reply (follower side).
    pub forward: Histogram,
    /// Building one snapshot (write, sync, publish).
    pub snapshot_build: Histogram,
    /// Times this node saw the leader change (including to "none").
    pub leader_changes: Counter,
    /// The last committed log index openraft saved.
    committed: AtomicU64,
}

/// The process's Raft timings (one node per process).
pub static TIMINGS: LazyLock<Timings> = LazyLock::new(|| Timings {
    commit: seconds(),
    fsync: seconds(),
    apply_batch: seconds(),
    apply_batch_entries: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
    forward: seconds(),
    snapshot_build: seconds(),
    leader_changes: Counter::default(),
    committed: AtomicU64::new(0),
});

impl Timings {
    /// Observes the seconds since `since` in `h`.
    pub fn since(h: &Histogram, since: Instant) {
        h.observe(since.elapsed().as_secs_f64());
    }

    /// Times `f` into `h`.
    pub fn time<T>(h: &Histogram, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        Timings::since(h, start);
        out
    }

    /// Records the commit index openraft saved.
    pub fn committed(&self, index: Option<u64>) {
        self.committed.store(index.unwrap_or(0), Ordering::Relaxed);
    }

    /// Starts timing an apply batch of `entries`; observed when dropped.
    pub fn apply(&'static self, entries: usize) -> ApplyTimer {
        self.apply_batch_entries.observe(entries as f64);
        ApplyTimer {
            start: Instant::now(),
        }
    }
}

/// Times one apply batch (see [`Timings::apply`]).
pub struct ApplyTimer {
    start: Instant,
}

impl Drop for ApplyTimer {
    fn drop(&mut self) {
        Timings::since(&TIMINGS.apply_batch, self.start);
    }
}

/// Counts leader changes as openraft reports them, until the node stops.
pub(crate) async fn watch_leader(raft: Raft) {
    let mut rx = raft.metrics();
    let mut leader = rx.borrow().current_leader;
    while rx.changed().await.is_ok() {
        let now = rx.borrow().current_leader;
        if now != leader {
            leader = now;
            TIMINGS.leader_changes.inc();
        }
    }
}

/// Raft and RocksDB values read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct RaftReadings {
    pub voters: u64,
    pub learners: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    /// On the leader: entries each other member is behind its last log
    /// index (empty elsewhere).
    pub replication_lag: BTreeMap<NodeId, u64>,
    /// `rocksdb.estimate-pending-compaction-bytes`, every column family.
    pub pending_compaction_bytes: u64,
}

impl RaftNode {
    /// The Raft and RocksDB values `/metrics` reads (no apply lock).
    pub fn readings(&self) -> RaftReadings {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let last = m.last_log_index.unwrap_or(0);
        let replication_lag = m
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.node_id)
            .map(|(id, matched)| (*id, last.saturating_sub(matched.map_or(0, |l| l.index))))
            .collect();
        RaftReadings {
            voters: membership.voter_ids().count() as u64,
            learners: membership.learner_ids().count() as u64,
            last_log_index: last,
            committed_index: TIMINGS.committed.load(Ordering::Relaxed),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            replication_lag,
            pending_compaction_bytes: self.store.pending_compaction_bytes(),
        }
    }
}
