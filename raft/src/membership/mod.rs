//! Membership changes and the cluster view (docs/design.md §4).
//!
//! - **Changes are the leader's.** A join or leave runs in a task the leader
//!   owns, not in the future of the request that asked for it: a client that
//!   goes away, or an HTTP request that times out, does not stop it. One
//!   change runs at a time; its stages (adding a learner, caught up,
//!   promoting, ...) are recorded with their times, for the requester to
//!   follow and for `cluster show`.
//! - **Nothing stays joint.** openraft changes voters in two steps (joint,
//!   then uniform). Whenever this node leads, the effective membership is
//!   joint and no change runs (its task died with an old leader, or every
//!   node restarted), the driver finishes it towards its last configuration.
//! - **Identity.** Each data directory has a random identity ([`identity`]),
//!   recorded in the replicated state when a node joins. A node whose id is
//!   a member but whose identity differs is refused and changes nothing; a
//!   member restarted with its own data at new addresses is accepted and its
//!   addresses are updated.
//! - **Requests are idempotent and time-bounded**: a join of a voter with the
//!   same identity, or a leave of a node that already left, succeeds saying
//!   so; a request waits at most its timeout, then says the change continues.
//!
//! # Layout
//! - this file: the change record ([`ChangeProgress`]) and the one slot.
//! - `change`: starting a change on the leader, following it from any node,
//!   and the driver that finishes joint configurations.
//! - `join`: the leader's side of a join, and the joining node's (`--join`,
//!   `cluster join`, a member announcing new addresses).
//! - `leave`: the leader's side of a leave and what follows a removal.
//! - `view`: the cluster as one node sees it (`cluster show`).
//! - `identity`: the data directory's identity file.

mod change;
pub(crate) mod identity;
mod join;
mod leave;
mod view;

use std::collections::VecDeque;
use std::time::Duration;

use openraft::error::ClientWriteError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::node::now_ms;
use crate::rpc::AdminError;
use crate::types::{NodeId, NodeInfo};

pub(crate) use change::driver;

/// How long `cluster join`/`cluster leave` wait by default (VerneMQ's `-t`).
pub const DEFAULT_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `--join` tries before the node gives up and exits: long enough
/// for every node of a new cluster to be started together, in any order.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A membership change asked of the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeRequest {
    /// Add (or re-announce) node `id` at `info`, running on the data
    /// directory `identity`.
    Join {
        id: NodeId,
        info: NodeInfo,
        identity: Option<u128>,
    },
    /// Remove node `id`; `kill` disconnects its clients.
    Leave { id: NodeId, kill: bool },
}

impl ChangeRequest {
    /// The node the change is about.
    pub fn node(&self) -> NodeId {
        match self {
            ChangeRequest::Join { id, .. } | ChangeRequest::Leave { id, .. } => *id,
        }
    }
}

/// The leader's answer to a change request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Started {
    /// Nothing had to change (a repeated request): why.
    Done(String),
    /// The change runs on the leader under this id.
    Running(u64),
}

/// One step of a change, when it began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub at_ms: u64,
    pub text: String,
}

/// A change the leader runs or ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeProgress {
    pub id: u64,
    /// The node the change is about.
    pub node: NodeId,
    /// E.g. "leave of node 3".
    pub what: String,
    pub since_ms: u64,
    pub stages: Vec<Stage>,
    /// None while it runs.
    pub outcome: Option<Result<String, AdminError>>,
}

/// Finished changes kept for requesters that follow them.
const KEEP_FINISHED: usize = 16;

/// The leader's one change slot and the changes it finished lately.
#[derive(Default)]
pub(crate) struct Changes {
    inner: Mutex<ChangeLog>,
}

#[derive(Default)]
struct ChangeLog {
    next_id: u64,
    current: Option<ChangeProgress>,
    finished: VecDeque<ChangeProgress>,
}

impl Changes {
    /// Claims the slot for `what`; the running change if there is one.
    fn claim(&self, node: NodeId, what: String) -> Result<u64, ChangeProgress> {
        let mut l = self.inner.lock();
        if let Some(cur) = &l.current {
            return Err(cur.clone());
        }
        l.next_id += 1;
        let id = l.next_id;
        l.current = Some(ChangeProgress {
            id,
            node,
            what,
            since_ms: now_ms(),
            stages: Vec::new(),
            outcome: None,
        });
        Ok(id)
    }

    fn stage(&self, id: u64, text: String) {
        let mut l = self.inner.lock();
        if let Some(cur) = l.current.as_mut().filter(|c| c.id == id) {
            cur.stages.push(Stage {
                at_ms: now_ms(),
                text,
            });
        }
    }

    /// Ends change `id` with `outcome` and frees the slot.
    fn finish(&self, id: u64, outcome: Result<String, AdminError>) {
        let mut l = self.inner.lock();
        if l.current.as_ref().is_some_and(|c| c.id == id) {
            if let Some(mut done) = l.current.take() {
                done.outcome = Some(outcome);
                l.finished.push_back(done);
                if l.finished.len() > KEEP_FINISHED {
                    l.finished.pop_front();
                }
            }
        }
    }

    /// The running change, if any.
    pub(crate) fn current(&self) -> Option<ChangeProgress> {
        self.inner.lock().current.clone()
    }

    /// Change `id`, running or finished lately.
    fn get(&self, id: u64) -> Option<ChangeProgress> {
        let l = self.inner.lock();
        l.current
            .iter()
            .chain(l.finished.iter())
            .find(|c| c.id == id)
            .cloned()
    }
}

type OErr = openraft::error::RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>;

fn admin_err(e: OErr) -> AdminError {
    match e {
        openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            AdminError::NotLeader {
                leader: f.leader_id.zip(f.leader_node),
            }
        }
        openraft::error::RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            AdminError::Refused(c.to_string())
        }
        other => AdminError::Unavailable(other.to_string()),
    }
}

/// The refusal of a node whose id is a member with another data directory.
pub fn another_directory(id: NodeId) -> String {
    format!(
        "node {id} is already a member with another data directory; remove it with cluster leave first"
    )
}
