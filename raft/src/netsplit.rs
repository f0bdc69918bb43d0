//! Whether this node is in netsplit, as DESIGN §2 defines it: a leader that
//! has not heard from a majority within the election timeout, or a follower
//! or candidate that no leader has reached for longer than that. Assessed
//! from the Raft state every few tens of milliseconds and published on a
//! watch; entering and leaving are each logged once and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::node::{now_ms, ELECTION_TIMEOUT_MAX};
use crate::types::NodeId;
use crate::RaftNode;

/// How long without a quorum (leader) or a leader (follower) makes a
/// netsplit: the election timeout.
pub const NETSPLIT_AFTER: Duration = Duration::from_millis(ELECTION_TIMEOUT_MAX);
/// How often the Raft state is assessed.
const ASSESS_EVERY: Duration = Duration::from_millis(50);

/// This node's netsplit state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Netsplit {
    /// When this node entered netsplit; None while it is not in one.
    pub since: Option<Instant>,
    /// The same instant, wall clock (ms since the epoch), for display.
    pub since_ms: Option<u64>,
    /// Why, in words (empty when not in netsplit).
    pub reason: String,
}

impl Netsplit {
    pub fn active(&self) -> bool {
        self.since.is_some()
    }
}

/// What the assessment needs of the Raft state, taken from openraft's
/// metrics in one place.
#[derive(Debug, Clone, Copy)]
pub struct RaftFacts {
    pub state: ServerState,
    pub voters: usize,
    pub leader: Option<NodeId>,
    pub millis_since_quorum_ack: Option<u64>,
}

/// Tracks when a leader last reached this node and publishes the netsplit
/// state.
pub struct Quorum {
    started: Instant,
    /// When a leader last reached this node, in ms after `started` (+1; 0:
    /// never).
    contact: AtomicU64,
    state: watch::Sender<Netsplit>,
    detected: AtomicU64,
    resolved: AtomicU64,
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum {
            started: Instant::now(),
            contact: AtomicU64::new(0),
            state: watch::channel(Netsplit::default()).0,
            detected: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
        }
    }
}

impl Quorum {
    /// A leader's AppendEntries (or snapshot) reached this node.
    pub fn leader_contact(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        self.contact.fetch_max(ms, Ordering::Relaxed);
    }

    /// Time since a leader last reached this node (since start if none has).
    pub fn since_leader_contact(&self) -> Duration {
        let c = self.contact.load(Ordering::Relaxed).saturating_sub(1);
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(c))
    }

    pub fn watch(&self) -> watch::Receiver<Netsplit> {
        self.state.subscribe()
    }

    pub fn is_active(&self) -> bool {
        self.state.borrow().active()
    }

    pub fn current(&self) -> Netsplit {
        self.state.borrow().clone()
    }

    /// Times this node entered netsplit, and left it, since it started.
    pub fn transitions(&self) -> (u64, u64) {
        (
            self.detected.load(Ordering::Relaxed),
            self.resolved.load(Ordering::Relaxed),
        )
    }

    /// Publishes the assessment: logs and counts a change of state, and
    /// keeps the reason current while it lasts.
    fn set(&self, reason: Option<String>) {
        let was = self.state.borrow().active();
        match reason {
            Some(reason) => {
                if !was {
                    warn!(%reason, "entering netsplit: this node cannot reach a quorum");
                    self.detected.fetch_add(1, Ordering::Relaxed);
                    self.state.send_replace(Netsplit {
                        since: Some(Instant::now()),
                        since_ms: Some(now_ms()),
                        reason,
                    });
                } else {
                    self.state.send_if_modified(|s| {
                        let changed = s.reason != reason;
                        s.reason = reason;
                        changed
                    });
                }
            }
            None if was => {
                let lasted = self
                    .state
                    .borrow()
                    .since
                    .map(|s| s.elapsed())
                    .unwrap_or_default();
                info!(
                    lasted_ms = lasted.as_millis() as u64,
                    "leaving netsplit: quorum reached again"
                );
                self.resolved.fetch_add(1, Ordering::Relaxed);
                self.state.send_replace(Netsplit::default());
            }
            None => {}
        }
    }
}

/// Why this node is in netsplit, or None if it is not (DESIGN §2). A leader
/// of a single voter is never in one.
pub fn assess(f: RaftFacts, since_contact: Duration) -> Option<String> {
    let after = NETSPLIT_AFTER.as_millis() as u64;
    match f.state {
        ServerState::Leader if f.voters <= 1 => None,
        ServerState::Leader => match f.millis_since_quorum_ack {
            Some(ms) if ms <= after => None,
            Some(ms) => Some(format!(
                "leader without a majority: no quorum acknowledgement for {ms} ms"
            )),
            None => Some("leader without a majority: no quorum acknowledgement yet".into()),
        },
        ServerState::Shutdown => None,
        _ if since_contact <= NETSPLIT_AFTER => None,
        _ => Some(match f.leader {
            Some(l) => format!(
                "leader {l} has not reached this node for {} ms",
                since_contact.as_millis()
            ),
            None => format!("no leader for {} ms", since_contact.as_millis()),
        }),
    }
}

/// Assesses the node's state until it stops.
pub(crate) async fn monitor(node: RaftNode) {
    let mut iv = tokio::time::interval(ASSESS_EVERY);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = node.stop.cancelled() => return,
            _ = iv.tick() => {}
        }
        let reason = if node.serving() {
            assess(node.raft_facts(), node.quorum.since_leader_contact())
        } else {
            None
        };
        node.quorum.set(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: ServerState, voters: usize, ack: Option<u64>) -> RaftFacts {
        RaftFacts {
            state,
            voters,
            leader: Some(1),
            millis_since_quorum_ack: ack,
        }
    }

    #[test]
    fn a_leader_with_a_recent_quorum_ack_is_not_in_netsplit() {
        let f = facts(ServerState::Leader, 3, Some(120));
        assert_eq!(assess(f, Duration::ZERO), None);
    }

    #[test]
    fn a_leader_without_a_quorum_ack_for_the_election_timeout_is_in_netsplit() {
        let f = facts(ServerState::Leader, 3, Some(ELECTION_TIMEOUT_MAX + 1));
        assert!(assess(f, Duration::ZERO).is_some());
    }

    #[test]
    fn a_single_voter_leader_is_never_in_netsplit() {
        let f = facts(ServerState::Leader, 1, None);
        assert_eq!(assess(f, Duration::from_secs(60)), None);
    }

    #[test]
    fn a_follower_is_in_netsplit_only_once_no_leader_reached_it_for_the_election_timeout() {
        let f = facts(ServerState::Follower, 3, None);
        assert_eq!(assess(f, NETSPLIT_AFTER), None);
        let why = assess(f, NETSPLIT_AFTER + Duration::from_millis(1)).expect("in netsplit");
        assert!(why.contains("leader 1"), "{why}");
    }

    #[test]
    fn a_candidate_without_a_leader_is_in_netsplit() {
        let mut f = facts(ServerState::Candidate, 3, None);
        f.leader = None;
        let why = assess(f, Duration::from_secs(2)).expect("in netsplit");
        assert!(why.starts_with("no leader"), "{why}");
    }

    #[test]
    fn entering_and_leaving_count_two_transitions() {
        let q = Quorum::default();
        q.set(Some("cut".into()));
        q.set(Some("still cut".into()));
        assert!(q.current().active());
        assert_eq!(q.current().reason, "still cut");
        q.set(None);
        assert!(!q.current().active());
        assert_eq!(q.transitions(), (1, 1));
    }

    #[test]
    fn leader_contact_resets_the_time_since_contact() {
        let q = Quorum::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(q.since_leader_contact() >= Duration::from_millis(30));
        q.leader_contact();
        assert!(q.since_leader_contact() < Duration::from_millis(30));
    }
}
