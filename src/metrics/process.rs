//! The process's own resources, read from `/proc/self` at scrape time:
//! resident memory and open file descriptors. `None` where `/proc` is not
//! there (not Linux).

/// Resident set size in bytes (`/proc/self/statm`, second field, in pages).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

/// Open file descriptors (entries of `/proc/self/fd`, less the one the
/// listing itself holds open).
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`).
pub fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory_and_open_descriptors() {
        assert!(resident_bytes().is_some_and(|b| b > 1 << 20));
        let _f = std::fs::File::open("/proc/self/statm").expect("open");
        assert!(open_fds().is_some_and(|n| n >= 1));
    }
}
