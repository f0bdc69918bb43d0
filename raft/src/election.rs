//! Elections with a pre-vote (Raft thesis §9.6). openraft's own election
//! timer is off (`enable_elect = false`); this driver starts an election
//! only after a majority of the voters (this node included) confirm that no
//! leader has reached them for the election timeout either, and that this
//! node's log is at least as long as theirs. A node cut off from the others
//! therefore never raises its term, and when the network heals it follows
//! the sitting leader instead of deposing it.

use std::time::{Duration, Instant};

use openraft::ServerState;
use rand::Rng;
use tracing::debug;

use crate::netsplit::NETSPLIT_AFTER;
use crate::node::ELECTION_TIMEOUT_MIN;
use crate::rpc::{Reply, Rpc};
use crate::types::NodeId;
use crate::RaftNode;

/// How often the driver looks.
const LOOK_EVERY: Duration = Duration::from_millis(50);
/// Bound on one pre-vote request.
const PRE_VOTE_TIMEOUT: Duration = Duration::from_millis(300);

/// A candidate's question to another voter.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct PreVote {
    pub candidate: NodeId,
    /// The term the candidate would stand in (its current term + 1).
    pub term: u64,
    pub last_log_index: u64,
}

/// Randomized wait, on top of the election timeout, before this node asks:
/// spreads candidates so that one usually wins the first round.
fn jitter() -> Duration {
    Duration::from_millis(rand::rng().random_range(100..=ELECTION_TIMEOUT_MIN))
}

/// Runs elections for this node until it stops.
pub(crate) async fn driver(node: RaftNode) {
    let mut iv = tokio::time::interval(LOOK_EVERY);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_try = Instant::now() + NETSPLIT_AFTER + jitter();
    loop {
        tokio::select! {
            _ = node.stop.cancelled() => return,
            _ = iv.tick() => {}
        }
        let (state, voters, me_voter, term, last_log_index) = {
            let m = node.raft.metrics();
            let m = m.borrow();
            let voters: Vec<(NodeId, String)> = m
                .membership_config
                .membership()
                .voter_ids()
                .filter_map(|id| {
                    let n = m.membership_config.membership().get_node(&id)?;
                    Some((id, n.cluster.clone()))
                })
                .collect();
            let me_voter = voters.iter().any(|(id, _)| *id == node.node_id);
            (
                m.state,
                voters,
                me_voter,
                m.current_term,
                m.last_log_index.unwrap_or(0),
            )
        };
        if state == ServerState::Leader || !me_voter || !node.serving() {
            next_try = Instant::now() + NETSPLIT_AFTER + jitter();
            continue;
        }
        if voters.len() == 1 {
            let _ = node.raft.trigger().elect().await;
            next_try = Instant::now() + jitter();
            continue;
        }
        let now = Instant::now();
        let quiet = node.quorum.since_leader_contact();
        if quiet <= NETSPLIT_AFTER || now < next_try {
            if quiet <= NETSPLIT_AFTER {
                next_try = now + (NETSPLIT_AFTER - quiet) + jitter();
            }
            continue;
        }
        let ask = PreVote {
            candidate: node.node_id,
            term: term + 1,
            last_log_index,
        };
        let asks = voters
            .iter()
            .filter(|(id, _)| *id != node.node_id)
            .map(|(id, addr)| {
                let t = node.transport.clone();
                async move {
                    let r = t.call(*id, addr, Rpc::PreVote(ask), PRE_VOTE_TIMEOUT).await;
                    matches!(r, Ok(Reply::PreVote { granted: true }))
                }
            });
        let granted = 1 + futures::future::join_all(asks)
            .await
            .into_iter()
            .filter(|g| *g)
            .count();
        next_try = Instant::now() + jitter();
        if granted * 2 > voters.len() {
            debug!(
                term = ask.term,
                granted, "pre-vote won; starting an election"
            );
            let _ = node.raft.trigger().elect().await;
        } else {
            debug!(
                granted,
                voters = voters.len(),
                "pre-vote lost; not starting an election"
            );
        }
    }
}

impl RaftNode {
    /// The answer to another voter's pre-vote: yes if this node would vote
    /// for it now (no leader reaches this node, or this node is a leader
    /// without a majority; and the candidate's log is not behind).
    pub(crate) fn pre_vote_answer(&self, ask: PreVote) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        let lost_leader = match m.state {
            ServerState::Leader => m
                .millis_since_quorum_ack
                .is_none_or(|ms| ms > NETSPLIT_AFTER.as_millis() as u64),
            _ => self.quorum.since_leader_contact() > NETSPLIT_AFTER,
        };
        lost_leader
            && ask.term > m.current_term
            && ask.last_log_index >= m.last_log_index.unwrap_or(0)
    }
}
