//! [`SessionState`]: what a client keeps across the connections of one
//! persistent session (unreleased inbound QoS 2 packet ids, the next
//! outbound packet id).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Session {
    /// Inbound QoS 2 packet ids acknowledged with PUBREC, not yet released.
    inbound_qos2: HashSet<u16>,
    /// The last outbound packet id handed out (0: none yet).
    last_pkid: u16,
}

/// State a client keeps across connections of one persistent session:
/// inbound QoS 2 packet ids received but not yet released (so a re-sent QoS 2
/// PUBLISH with DUP after reconnect is acknowledged but not delivered again:
/// method A of the spec), and the next outbound packet id.
#[derive(Debug, Default, Clone)]
pub struct SessionState(Arc<Mutex<Session>>);

impl SessionState {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh outbound packet id (1..=65535, wrapping).
    pub fn next_pkid(&self) -> u16 {
        let mut s = self.lock();
        s.last_pkid = s.last_pkid.wrapping_add(1).max(1);
        s.last_pkid
    }

    /// Inbound QoS 2 packet ids received and not yet released, ascending.
    pub fn unreleased_inbound(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.lock().inbound_qos2.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Records an inbound QoS 2 publish; true if it is new (deliver it).
    pub(super) fn receive_qos2(&self, pkid: u16) -> bool {
        self.lock().inbound_qos2.insert(pkid)
    }

    pub(super) fn release_qos2(&self, pkid: u16) {
        self.lock().inbound_qos2.remove(&pkid);
    }

    /// The broker holds no session for us: nothing will be re-sent.
    pub(super) fn forget_inbound(&self) {
        self.lock().inbound_qos2.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkids_wrap_and_skip_zero() {
        let s = SessionState::new();
        assert_eq!(s.next_pkid(), 1);
        s.lock().last_pkid = u16::MAX - 1;
        assert_eq!(s.next_pkid(), u16::MAX);
        assert_eq!(s.next_pkid(), 1);
    }
}
