//! Resource alarms: the free space of the filesystem that holds the data
//! directory, against `disk_free_limit` (RabbitMQ's disk alarm). The monitor
//! ([`run`]) checks it every [`CHECK_EVERY`]. While the alarm is raised,
//! connections refuse new QoS 1/2 publishes before proposing them (an
//! acknowledgement is a promise, so refuse before acknowledging) and drop QoS
//! 0 ones; everything else goes on, subscribers draining their queues
//! included, which frees space. Between two readings a publish is admitted
//! only within the headroom the last one left ([`DiskAlarm::admit`]). The alarm clears by itself once the free
//! space is back above the limit plus a margin ([`Watermark`]); while it is
//! raised the monitor compacts the tables whose deleted rows hold disk space.
//!
//! # Layout
//! - [`watermark`]: raise below the limit, clear at the limit plus a tenth.
//! - [`disk`]: the filesystem's free space (`statvfs`), what a message costs
//!   on disk, and [`DiskAlarm`], the state every connection reads, with its
//!   headroom between readings.
//! - this file: the limits' names, and the monitor task ([`run`]) with the
//!   compactions it starts and the `$SYS` announcements.

mod disk;
#[cfg(test)]
mod tests;
mod watermark;

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftmq_raft::node::now_ms;
use raftmq_raft::Message;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::shutdown::Shutdown;

pub use disk::{disk_cost, fs_space, DiskAlarm, FsSpace, WRITE_AMPLIFICATION};
pub use watermark::{Change, Watermark};

/// How often the free space is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);
/// While the alarm is raised, how often the tables holding deleted data are
/// compacted (the first time as it is raised)...
pub const COMPACT_EVERY: Duration = Duration::from_secs(10);
/// ...and sooner, but not more often than this, once queues are shrinking
/// (subscribers draining free the space of what they acknowledged).
pub const COMPACT_DRAINING: Duration = Duration::from_secs(2);

/// Whether to compact again under a raised alarm: at once when just raised
/// (`since_last` None), then every [`COMPACT_EVERY`], or after
/// [`COMPACT_DRAINING`] if the queued messages went down since.
pub fn compaction_due(since_last: Option<Duration>, queued_then: u64, queued_now: u64) -> bool {
    match since_last {
        None => true,
        Some(d) => d >= COMPACT_EVERY || (d >= COMPACT_DRAINING && queued_now < queued_then),
    }
}

/// A resource limit that refuses publishes: the label of
/// `raftmq_publishes_refused_total` and the name of the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// This node's disk alarm.
    DiskFreeLimit,
    /// A subscriber's queue byte quota (cluster-wide, decided at apply).
    MaxQueueBytes,
    /// This node is in netsplit and `allow_publish_during_netsplit` is off
    /// (QoS 0 only: QoS 1/2 get their final answer from the proposer).
    Netsplit,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::DiskFreeLimit => "disk_free_limit",
            Limit::MaxQueueBytes => "max_queue_bytes",
            Limit::Netsplit => "netsplit",
        }
    }
}

/// Checks the free space every [`CHECK_EVERY`] until the node stops, tells
/// `$SYS` subscribers of each change at once, and while the alarm is raised
/// compacts what holds deleted data ([`compaction_due`]).
pub async fn run(broker: Arc<Broker>, life: Shutdown) {
    let alarm = &broker.disk;
    let mut iv = tokio::time::interval(CHECK_EVERY);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unreadable = false;
    let mut announced = false;
    let mut compaction: Option<JoinHandle<()>> = None;
    // When the last compaction under this alarm began, and the messages
    // queued then.
    let mut last_compaction: Option<(Instant, u64)> = None;
    loop {
        tokio::select! {
            _ = life.cancelled() => return,
            _ = iv.tick() => {}
        }
        let free = match fs_space(&alarm.dir) {
            Ok(s) => {
                if unreadable {
                    unreadable = false;
                    info!("the free disk space of the data directory is readable again");
                }
                s.free
            }
            Err(e) => {
                if !unreadable {
                    unreadable = true;
                    warn!(dir = %alarm.dir.display(), error = %e, "cannot read the free disk space of the data directory; the disk alarm keeps its state, and publishes are admitted only within the headroom of the last reading");
                }
                continue;
            }
        };
        alarm.observe(free);
        // Changes made here or by a publish that found no room.
        let raised = alarm.raised();
        if raised != announced {
            announced = raised;
            announce(&broker, raised);
        }
        if compaction.as_ref().is_some_and(|c| c.is_finished()) {
            compaction = None;
        }
        if !raised {
            last_compaction = None;
            continue;
        }
        let queued = broker.node.summary().queued;
        let due = match last_compaction {
            None => compaction_due(None, 0, queued),
            Some((t, then)) => compaction_due(Some(t.elapsed()), then, queued),
        };
        if due && compaction.is_none() {
            last_compaction = Some((Instant::now(), queued));
            compaction = Some(tokio::spawn(compact(broker.clone(), free)));
        }
    }
}

/// Compacts the tables whose deleted rows hold disk space, and logs what
/// that gave back.
async fn compact(broker: Arc<Broker>, free: u64) {
    match broker.node.compact_for_space(free).await {
        Ok(done) => {
            for c in done {
                if c.skipped {
                    debug!(
                        cf = c.cf,
                        sst_bytes = c.before,
                        free_bytes = free,
                        "not compacted under the disk alarm: rewriting it could need more than the free space"
                    );
                } else {
                    info!(
                        cf = c.cf,
                        before = c.before,
                        after = c.after,
                        "compacted under the disk alarm"
                    );
                }
            }
        }
        Err(e) => warn!(error = %e, "compaction under the disk alarm failed"),
    }
}

/// `$SYS/<node>/alarms/disk_free_limit` to this node's subscribers as soon
/// as the alarm changes (the periodic tree follows at its interval).
fn announce(broker: &Broker, raised: bool) {
    if !broker.live.get().systree_enabled {
        return;
    }
    let topic = format!(
        "{}alarms/{}",
        broker.sys_prefix(),
        Limit::DiskFreeLimit.name()
    );
    let msg = Message::system(topic, (raised as u8).to_string(), false, now_ms());
    crate::router::route_qos0(broker, Arc::new(msg));
}
