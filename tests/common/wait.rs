//! Time bounds shared by the tests, and the one polling wait they use.

use std::thread;
use std::time::{Duration, Instant};

/// Default bound for "this packet should arrive".
pub const WAIT: Duration = Duration::from_secs(5);
/// Default bound for "nothing should arrive" checks.
pub const QUIET: Duration = Duration::from_millis(700);

/// Polls `cond` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
