//! The disk alarm's state: the free space of the data directory's
//! filesystem, what storing a message costs on disk, and [`DiskAlarm`],
//! which connections ask before they propose a publish.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use tracing::{info, warn};

use super::{Change, Limit, Watermark};
use crate::config::DiskFreeLimit;

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
    pub(super) dir: std::path::PathBuf,
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

    pub(super) fn measured(&self, free: u64) {
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
    pub(super) fn take(&self, cost: i64) -> bool {
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
