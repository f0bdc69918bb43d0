//! Names and ports that no other test in this process gets.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// A name unique within this test process (and across processes by pid).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port that was free a moment ago; never the same port twice per process.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        drop(l);
        if used_ports().lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// The first of `n` consecutive ports that were free a moment ago, all
/// reserved like [`free_port`]'s.
pub fn free_port_run(n: u16) -> u16 {
    loop {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let mut used = used_ports().lock().unwrap();
        let rest_free = (1..n).all(|i| {
            !used.contains(&(base + i)) && TcpListener::bind(("127.0.0.1", base + i)).is_ok()
        });
        if rest_free {
            used.extend((1..n).map(|i| base + i));
            return base;
        }
    }
}
