//! Time: one monotonic clock for everything, and a sub-millisecond sleeper.
//!
//! Timestamps are CLOCK_MONOTONIC nanoseconds (time since boot), not "since
//! process start": the value is the same in every process on one host, so a
//! `loadgen pub` and a separate `loadgen sub` on the same machine still measure
//! end-to-end latency correctly. (Across hosts it means nothing.)
//!
//! tokio's timer wheel has 1 ms resolution, which would add up to a
//! millisecond of client-side lateness to every paced send; the open-loop
//! latency is measured from the intended send time, so that slop would show up
//! as broker latency. `Pacer` sleeps on a Linux timerfd instead (hrtimer
//! precision, typically tens of microseconds), registered with tokio's reactor.

use std::io;

pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(target_os = "linux")]
mod imp {
    use super::mono_ns;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::unix::AsyncFd;

    pub struct Pacer {
        fd: AsyncFd<OwnedFd>,
        armed: AtomicU64,
    }

    impl Pacer {
        pub fn new() -> io::Result<Self> {
            // SAFETY: plain syscall; the fd is owned below.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: raw is a fresh fd we own.
            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: `owned` is a valid open fd that the AsyncFd takes
            // ownership of, so it stays open (and the same) for its lifetime.
            let fd =
                unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
                    .map_err(|e| io::Error::other(e.to_string()))?;
            Ok(Self {
                fd,
                armed: AtomicU64::new(0),
            })
        }

        fn arm(&self, deadline: u64) -> io::Result<()> {
            if self.armed.load(Ordering::Relaxed) == deadline {
                return Ok(());
            }
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: (deadline / 1_000_000_000) as libc::time_t,
                    tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
                },
            };
            // SAFETY: valid fd and itimerspec; old value not requested.
            let r = unsafe {
                libc::timerfd_settime(
                    self.fd.as_raw_fd(),
                    libc::TFD_TIMER_ABSTIME,
                    &spec,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            self.armed.store(deadline, Ordering::Relaxed);
            Ok(())
        }

        /// Sleep until the monotonic time `deadline` (ns). Cancel-safe.
        pub async fn sleep_until(&self, deadline: u64) -> io::Result<()> {
            if deadline <= mono_ns() {
                return Ok(());
            }
            self.arm(deadline)?;
            loop {
                let mut guard = self.fd.readable().await?;
                let res = guard.try_io(|fd| {
                    let mut buf = [0u8; 8];
                    // SAFETY: reading 8 bytes into an 8-byte buffer.
                    let n =
                        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                match res {
                    Ok(Ok(())) => {
                        // One read drains a timerfd: drop the cached readiness
                        // so the next sleep doesn't start with a wasted EAGAIN read.
                        guard.clear_ready();
                        if mono_ns() >= deadline {
                            return Ok(());
                        }
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => {}
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::mono_ns;
    use std::io;
    use std::time::Duration;

    /// Portable fallback: tokio's 1 ms timer.
    pub struct Pacer;

    impl Pacer {
        pub fn new() -> io::Result<Self> {
            Ok(Pacer)
        }
        pub async fn sleep_until(&self, deadline: u64) -> io::Result<()> {
            let now = mono_ns();
            if deadline > now {
                tokio::time::sleep(Duration::from_nanos(deadline - now)).await;
            }
            Ok(())
        }
    }
}

pub use imp::Pacer;

/// Raise the open-files soft limit to the hard limit (conn mode opens many sockets).
pub fn raise_nofile_limit() -> io::Result<()> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
