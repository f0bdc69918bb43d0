//! The live-session epoch guard. A command that names a session epoch was
//! proposed by one connection; once the client id has registered again (a
//! takeover) or its session has ended, that connection's commands are stale
//! and change nothing.

use std::sync::Arc;

use super::MqttState;

impl MqttState {
    /// The session's client id if `epoch` is its current epoch; `None` if
    /// the command is stale.
    pub(super) fn live_session(&self, client_id: &str, epoch: u64) -> Option<Arc<str>> {
        match self.sessions.get_key_value(client_id) {
            Some((c, r)) if r.epoch == epoch => Some(c.clone()),
            _ => None,
        }
    }

    /// As [`MqttState::live_session`], and the connection of that epoch has
    /// not ended yet.
    pub(super) fn live_connection(&self, client_id: &str, epoch: u64) -> Option<Arc<str>> {
        self.live_session(client_id, epoch)
            .filter(|c| self.sessions.get(c).is_some_and(|r| r.node.is_some()))
    }
}
