//! Running a membership change on the leader, following it from any node,
//! and the driver that finishes a joint configuration nobody is finishing.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{admin_err, ChangeProgress, ChangeRequest, Started};
use crate::rpc::{AdminError, Reply, Rpc};
use crate::types::NodeId;
use crate::RaftNode;

/// How often a requester asks the leader how its change is going, and how
/// often the driver looks for a joint configuration.
const POLL: Duration = Duration::from_millis(200);
const DRIVE_EVERY: Duration = Duration::from_millis(500);
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// How a followed change ended, as its requester reports it.
#[derive(Debug, Clone)]
pub struct ChangeOutcome {
    pub text: String,
    pub stages: Vec<super::Stage>,
}

impl RaftNode {
    /// Leader only: starts `req` in a task of this node's own, unless
    /// nothing has to change (a repeated request) or it is refused. A
    /// request for the change already running attaches to it.
    pub(crate) fn start_change(&self, req: ChangeRequest) -> Result<Started, AdminError> {
        if !self.is_leader() {
            return Err(AdminError::NotLeader {
                leader: self.leader_info(),
            });
        }
        if let Some(cur) = self.changes.current() {
            if cur.node == req.node() && cur.what == describe(&req) {
                return Ok(Started::Running(cur.id));
            }
            return Err(busy(&cur));
        }
        if self.is_joint() {
            return Err(AdminError::Busy(
                "another membership change is in progress (joint configuration, being finished by the leader); \
                 try again in a moment".into(),
            ));
        }
        if let Some(done) = self.nothing_to_do(&req)? {
            return Ok(Started::Done(done));
        }
        let id = self
            .changes
            .claim(req.node(), describe(&req))
            .map_err(|cur| busy(&cur))?;
        let node = self.clone();
        tokio::spawn(async move {
            let outcome = match req {
                ChangeRequest::Join {
                    id: n,
                    info,
                    identity,
                } => node.run_join(id, n, info, identity).await,
                ChangeRequest::Leave { id: n, kill } => node.run_leave(id, n, kill).await,
            };
            match &outcome {
                Ok(text) => info!(change = id, "{text}"),
                Err(e) => warn!(change = id, error = %e, "membership change failed"),
            }
            node.changes.finish(id, outcome);
        });
        Ok(Started::Running(id))
    }

    /// Ok(Some(why)) when `req` has nothing to change.
    fn nothing_to_do(&self, req: &ChangeRequest) -> Result<Option<String>, AdminError> {
        match req {
            ChangeRequest::Join { id, info, identity } => self.join_precheck(*id, info, *identity),
            ChangeRequest::Leave { id, kill } => self.leave_precheck(*id, *kill),
        }
    }

    /// Records a stage of change `id` (and logs it).
    pub(super) fn stage(&self, id: u64, text: String) {
        info!(change = id, "{text}");
        self.changes.stage(id, text);
    }

    /// Change `id` as this node (the leader that runs it) knows it.
    pub(crate) fn change_progress(&self, id: u64) -> Option<ChangeProgress> {
        self.changes.get(id)
    }

    pub(super) fn is_joint(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_joint_config()
            .len()
            > 1
    }

    /// Asks the leader to make `req` and waits up to `timeout` for it to
    /// finish. The change does not depend on this wait: past the timeout (or
    /// if this caller goes away) it continues on the leader.
    pub async fn change(
        &self,
        req: ChangeRequest,
        timeout: Duration,
    ) -> Result<ChangeOutcome, AdminError> {
        let deadline = Instant::now() + timeout;
        let (leader, started) = self.start_at_leader(&req).await?;
        let id = match started {
            Started::Done(text) => {
                return Ok(ChangeOutcome {
                    text,
                    stages: Vec::new(),
                })
            }
            Started::Running(id) => id,
        };
        let mut last: Option<ChangeProgress> = None;
        loop {
            match self.progress_at(leader, id).await {
                Some(p) => {
                    if let Some(outcome) = p.outcome.clone() {
                        return outcome.map(|text| ChangeOutcome {
                            text,
                            stages: p.stages,
                        });
                    }
                    last = Some(p);
                }
                // The leader changed (or restarted): the change is done if
                // the membership shows it, else the new leader's driver
                // finishes it.
                None => {
                    if let Some(text) = self.reached(&req) {
                        return Ok(ChangeOutcome {
                            text,
                            stages: last.map(|p| p.stages).unwrap_or_default(),
                        });
                    }
                }
            }
            if Instant::now() >= deadline {
                let stage = last
                    .as_ref()
                    .and_then(|p| p.stages.last())
                    .map(|s| format!(" (last stage: {})", s.text))
                    .unwrap_or_default();
                return Err(AdminError::InProgress(format!(
                    "{} did not finish within {timeout:?}{stage}; it continues on the leader \
                     (node {leader}): follow it with `raftmq cluster show`",
                    describe(&req)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends `req` to the leader (this node or another): the leader's id and
    /// its answer.
    async fn start_at_leader(&self, req: &ChangeRequest) -> Result<(NodeId, Started), AdminError> {
        if self.is_leader() {
            return Ok((self.node_id, self.start_change(req.clone())?));
        }
        let Some((l, info)) = self.leader_info() else {
            return Err(AdminError::Unavailable(
                "no leader; cannot change membership".into(),
            ));
        };
        match self
            .transport
            .call(l, &info.cluster, Rpc::Change(req.clone()), ASK_TIMEOUT)
            .await
        {
            Ok(Reply::Change(r)) => r.map(|s| (l, s)),
            Ok(other) => Err(AdminError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
            Err(e) => Err(AdminError::Unavailable(format!("leader {l}: {e}"))),
        }
    }

    /// Change `id` as node `leader` reports it; None if it cannot be asked
    /// or no longer knows it.
    async fn progress_at(&self, leader: NodeId, id: u64) -> Option<ChangeProgress> {
        if leader == self.node_id {
            return self.change_progress(id);
        }
        let info = self.node_info(leader)?;
        match self
            .transport
            .call(leader, &info.cluster, Rpc::ChangeStatus { id }, ASK_TIMEOUT)
            .await
        {
            Ok(Reply::Progress(p)) => p,
            _ => None,
        }
    }

    /// Whether this node's membership already shows `req` done.
    fn reached(&self, req: &ChangeRequest) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let mem = m.membership_config.membership();
        if mem.get_joint_config().len() > 1 {
            return None;
        }
        match req {
            ChangeRequest::Join { id, .. } if mem.voter_ids().any(|v| v == *id) => {
                Some(format!("node {id} is a voter"))
            }
            ChangeRequest::Leave { id, .. } if mem.get_node(id).is_none() => {
                Some(format!("node {id} left the cluster"))
            }
            _ => None,
        }
    }
}

fn describe(req: &ChangeRequest) -> String {
    match req {
        ChangeRequest::Join { id, .. } => format!("join of node {id}"),
        ChangeRequest::Leave { id, .. } => format!("leave of node {id}"),
    }
}

fn busy(cur: &ChangeProgress) -> AdminError {
    let secs = crate::node::now_ms().saturating_sub(cur.since_ms) / 1000;
    AdminError::Busy(format!(
        "another membership change is in progress ({}, for {secs} s); try again when it is done",
        cur.what
    ))
}

/// While this node leads: finishes a joint configuration that no change of
/// this node is finishing (its change ran on a leader that is gone, or its
/// requester's task ended before the second step in an older version).
pub(crate) async fn driver(node: RaftNode) {
    let mut iv = tokio::time::interval(DRIVE_EVERY);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = node.stop.cancelled() => return,
            _ = iv.tick() => {}
        }
        if !node.is_leader() || !node.is_joint() || node.changes.current().is_some() {
            continue;
        }
        let (first, last) = {
            let m = node.raft.metrics();
            let m = m.borrow();
            let joint = m.membership_config.membership().get_joint_config().clone();
            (
                joint.first().cloned().unwrap_or_default(),
                joint.last().cloned().unwrap_or_default(),
            )
        };
        let target = last.iter().next().copied().unwrap_or(node.node_id);
        let what = format!("finishing the interrupted change of voters {first:?} to {last:?}");
        let Ok(id) = node.changes.claim(target, what.clone()) else {
            continue;
        };
        node.stage(id, what);
        let r = node
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(last.clone()), false)
            .await
            .map_err(admin_err);
        match r {
            Ok(_) => {
                last_error = None;
                let removed: BTreeSet<NodeId> = first.difference(&last).copied().collect();
                for gone in &removed {
                    node.stage(
                        id,
                        format!("node {gone} removed; disconnecting its sessions"),
                    );
                    node.after_removal(*gone, None, false).await;
                }
                node.changes
                    .finish(id, Ok(format!("voters are now {last:?}")));
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    warn!(error = %text, "could not finish the joint configuration yet; retrying");
                    last_error = Some(text);
                }
                node.changes.finish(id, Err(e));
            }
        }
    }
}
