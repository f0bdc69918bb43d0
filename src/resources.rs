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

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raftmq_raft::node::now_ms;
use raftmq_raft::Message;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::config::DiskFreeLimit;
use crate::shutdown::Shutdown;

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
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::DiskFreeLimit => "disk_free_limit",
            Limit::MaxQueueBytes => "max_queue_bytes",
        }
    }
}

/// An alarm's change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raised,
    Cleared,
}

/// Raise below `limit` free bytes; clear only at `limit` + 10% (hysteresis,
/// so a compaction or a flush does not make the alarm flap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    limit: u64,
    clear_at: u64,
    raised: bool,
}

impl Watermark {
    /// Not raised. A limit of 0 never raises.
    pub fn new(limit: u64) -> Watermark {
        Watermark {
            limit,
            clear_at: limit.saturating_add(limit / 10),
            raised: false,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn raised(&self) -> bool {
        self.raised
    }

    /// Raises the alarm whatever the last reading: a publish found no room
    /// above the limit for itself. It clears as usual.
    pub fn raise(&mut self) -> Option<Change> {
        (!std::mem::replace(&mut self.raised, true)).then_some(Change::Raised)
    }

    /// Takes a reading of the free bytes; the change it makes, if any.
    pub fn observe(&mut self, free: u64) -> Option<Change> {
        if !self.raised && free < self.limit {
            self.raised = true;
            Some(Change::Raised)
        } else if self.raised && free >= self.clear_at {
            self.raised = false;
            Some(Change::Cleared)
        } else {
            None
        }
    }
}

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    /// Available to unprivileged users (RocksDB's files need no reserve).
    pub free: u64,
}

/// `statvfs(2)` of the filesystem holding `path`.
pub fn fs_space(path: &Path) -> io::Result<FsSpace> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable
    // memory the size of a `statvfs`, which the call fills on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // The fields are u64 here, u32 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let (unit, blocks, available) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    Ok(FsSpace {
        total: blocks.saturating_mul(unit),
        free: available.saturating_mul(unit),
    })
}

/// What storing a message costs on disk, as a multiple of its size: the log
/// entry and the message row, each written to the WAL and then to an SST
/// file.
pub const WRITE_AMPLIFICATION: u64 = 4;

/// The disk bytes a message of `size` bytes (payload, topic, properties) is
/// counted for against the headroom.
pub fn disk_cost(size: u64) -> u64 {
    size.saturating_add(64).saturating_mul(WRITE_AMPLIFICATION)
}

/// The disk alarm as every connection, `/health`, `/metrics` and `$SYS`
/// read it; the monitor and the publishes that find no room change it.
///
/// Besides the alarm itself, a reading leaves a headroom: the disk bytes the
/// node may still take on before the free space reaches the limit. Each
/// admitted publish uses some of it ([`DiskAlarm::admit`]) until the next
/// reading, so a burst between two readings cannot run past the limit unseen
/// (on a fast disk, one interval of publishing can write more than the whole
/// margin). A publish that the headroom does not cover takes a reading of its
/// own, and if that leaves no room for it either, it raises the alarm: the
/// alarm is raised whenever a publish is refused for the disk, and clears as
/// usual once the space is back.
pub struct DiskAlarm {
    /// The watermark's state, for lock-free readers.
    raised: AtomicBool,
    mark: Mutex<Watermark>,
    /// The last reading (bytes); `u64::MAX` until one succeeded.
    free: AtomicU64,
    /// Disk bytes left to admit until the next reading.
    headroom: AtomicI64,
    limit: u64,
    /// The data directory whose filesystem is watched.
    dir: std::path::PathBuf,
}

impl DiskAlarm {
    /// Resolves the limit for the data directory's filesystem (the default
    /// depends on its size) and takes a first reading, so a node that starts
    /// on a full disk refuses publishes from its first connection.
    pub fn new(limit: DiskFreeLimit, dir: &Path) -> DiskAlarm {
        let space = fs_space(dir);
        let limit = limit.bytes(space.as_ref().ok().map(|s| s.total));
        let alarm = DiskAlarm {
            raised: AtomicBool::new(false),
            mark: Mutex::new(Watermark::new(limit)),
            free: AtomicU64::new(u64::MAX),
            headroom: AtomicI64::new(0),
            limit,
            dir: dir.to_path_buf(),
        };
        match space {
            Ok(s) => {
                info!(disk_free_limit = limit, free_bytes = s.free, dir = %dir.display(), "disk free limit");
                alarm.observe(s.free);
            }
            Err(e) => {
                warn!(disk_free_limit = limit, dir = %dir.display(), error = %e, "cannot read the free disk space of the data directory")
            }
        }
        alarm
    }

    /// A reading of the free bytes: the alarm follows the watermark (each
    /// change logged once) and the headroom starts again from what is left
    /// above the limit (unlimited with a limit of 0).
    pub fn observe(&self, free: u64) -> Option<Change> {
        let change = {
            let mut mark = self.mark.lock();
            let change = mark.observe(free);
            self.raised.store(mark.raised(), Ordering::Release);
            change
        };
        self.measured(free);
        log_change(
            change,
            free,
            self.limit,
            "free disk space is below disk_free_limit",
        );
        change
    }

    fn measured(&self, free: u64) {
        self.free.store(free, Ordering::Relaxed);
        let headroom = if self.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(free.saturating_sub(self.limit)).unwrap_or(i64::MAX)
        };
        self.headroom.store(headroom, Ordering::Release);
    }

    /// Whether a message that costs `cost` disk bytes ([`disk_cost`]) may be
    /// stored now: the alarm is not raised and the headroom covers it (it is
    /// then taken from the headroom). When the headroom runs out before the
    /// monitor's next reading, a reading is taken here and now (`statvfs` is
    /// one cheap system call), so fast publishing is refused only when the
    /// disk is really near the limit, not for outrunning the monitor; if
    /// that reading leaves no room either, the alarm is raised.
    pub fn admit(&self, cost: u64) -> bool {
        if self.limit == 0 {
            return true;
        }
        if self.raised() {
            return false;
        }
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        if self.take(cost) {
            return true;
        }
        // The monitor logs an unreadable disk (once).
        let Ok(space) = fs_space(&self.dir) else {
            return false;
        };
        if self.observe(space.free).is_none() && self.take(cost) {
            return true;
        }
        let change = {
            let mut mark = self.mark.lock();
            self.raised.store(true, Ordering::Release);
            mark.raise()
        };
        log_change(
            change,
            space.free,
            self.limit,
            "a publish found no room above disk_free_limit",
        );
        false
    }

    /// Takes `cost` from the headroom if it covers it.
    fn take(&self, cost: i64) -> bool {
        let left = self.headroom.fetch_sub(cost, Ordering::AcqRel);
        if left >= cost {
            return true;
        }
        self.headroom.fetch_add(cost, Ordering::AcqRel);
        false
    }

    /// Whether new publishes are refused now (the alarm is raised).
    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Free bytes at the last reading (None: none succeeded yet).
    pub fn free_bytes(&self) -> Option<u64> {
        Some(self.free.load(Ordering::Relaxed)).filter(|f| *f != u64::MAX)
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit
    }

    /// The names of the alarms raised now (for `/health`).
    pub fn alarms(&self) -> Vec<&'static str> {
        if self.raised() {
            vec![Limit::DiskFreeLimit.name()]
        } else {
            Vec::new()
        }
    }
}

/// The one log line of an alarm change: WARN raised, INFO cleared.
fn log_change(change: Option<Change>, free: u64, limit: u64, why: &str) {
    match change {
        Some(Change::Raised) => warn!(
            free_bytes = free,
            disk_free_limit = limit,
            "disk alarm raised: {why}; QoS 1/2 publishes are refused (MQTT 5: reason 0x97; MQTT 3: connection closed) until the space is back"
        ),
        Some(Change::Cleared) => info!(
            free_bytes = free,
            disk_free_limit = limit,
            "disk alarm cleared: publishes are accepted again"
        ),
        None => {}
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
    if !broker.settings.systree_enabled {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_is_raised_below_the_limit_and_cleared_at_the_limit_plus_a_tenth() {
        let mut m = Watermark::new(1000);
        assert_eq!(m.observe(5000), None);
        assert_eq!(m.observe(1000), None, "at the limit is not below it");
        assert_eq!(m.observe(999), Some(Change::Raised));
        assert!(m.raised());
        assert_eq!(m.observe(500), None, "raised once, not on every check");
        assert_eq!(
            m.observe(1050),
            None,
            "above the limit but inside the margin"
        );
        assert!(m.raised());
        assert_eq!(m.observe(1100), Some(Change::Cleared));
        assert!(!m.raised());
        assert_eq!(
            m.observe(1050),
            None,
            "cleared stays cleared above the limit"
        );
        assert_eq!(m.observe(10), Some(Change::Raised));
    }

    #[test]
    fn compaction_under_the_alarm_runs_at_once_then_every_ten_seconds_or_sooner_while_queues_drain()
    {
        assert!(compaction_due(None, 0, 5));
        let s = Duration::from_secs;
        assert!(
            !compaction_due(Some(s(1)), 100, 0),
            "draining, but too soon"
        );
        assert!(compaction_due(Some(s(2)), 100, 40), "draining");
        assert!(!compaction_due(Some(s(5)), 100, 100), "not draining");
        assert!(!compaction_due(Some(s(5)), 100, 120), "filling");
        assert!(compaction_due(Some(s(10)), 100, 100));
    }

    #[test]
    fn a_zero_limit_never_raises() {
        let mut m = Watermark::new(0);
        assert_eq!(m.observe(0), None);
        assert!(!m.raised());
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = fs_space(dir.path()).expect("statvfs");
        assert!(s.total > 0 && s.free <= s.total, "{s:?}");
        assert!(fs_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn publishes_are_admitted_within_the_headroom_a_reading_leaves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(1000), dir.path());
        alarm.measured(1500);
        assert!(alarm.take(300));
        assert!(alarm.take(200));
        assert!(
            !alarm.take(1),
            "the headroom is used up until the next reading"
        );
        alarm.measured(1100);
        assert!(!alarm.take(101), "a refused one takes nothing");
        assert!(alarm.take(100));
        alarm.measured(900);
        assert!(!alarm.take(1), "below the limit there is no headroom");
    }

    #[test]
    fn a_used_up_headroom_is_measured_again_before_a_publish_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(1), dir.path());
        // As if the last reading had found the disk at the limit.
        alarm.measured(1);
        assert!(alarm.admit(1000), "the real disk has room");
        let full = DiskAlarm::new(DiskFreeLimit::Bytes(u64::MAX - 1), dir.path());
        assert!(!full.admit(1), "the real disk is below this limit");
    }

    #[test]
    fn a_publish_that_finds_no_room_above_the_limit_raises_the_alarm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = fs_space(dir.path()).expect("statvfs").free;
        let alarm = DiskAlarm::new(
            DiskFreeLimit::Bytes(free.saturating_sub(10 << 20)),
            dir.path(),
        );
        assert!(!alarm.raised());
        assert!(!alarm.admit(1 << 40));
        assert!(
            alarm.raised(),
            "refused for the disk, so the alarm is raised"
        );
        assert!(!alarm.admit(1));
    }

    #[test]
    fn the_watermark_raised_by_a_publish_clears_at_the_limit_plus_a_tenth() {
        let mut m = Watermark::new(1000);
        assert_eq!(m.raise(), Some(Change::Raised));
        assert_eq!(m.raise(), None);
        assert_eq!(m.observe(1050), None);
        assert_eq!(m.observe(1100), Some(Change::Cleared));
    }

    #[test]
    fn a_zero_limit_admits_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(0), dir.path());
        alarm.measured(0);
        assert!(alarm.admit(u64::MAX));
        assert!(alarm.admit(1 << 40));
    }

    #[test]
    fn a_node_on_a_disk_below_its_limit_starts_in_alarm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(u64::MAX - 1), dir.path());
        assert!(alarm.raised());
        assert!(!alarm.admit(1));
        assert_eq!(alarm.alarms(), vec!["disk_free_limit"]);
        let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(0), dir.path());
        assert!(!alarm.raised());
        assert!(alarm.free_bytes().is_some());
        assert!(alarm.alarms().is_empty());
    }
}
