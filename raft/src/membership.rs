//! Membership changes and the cluster view (docs/design.md §4).
//!
//! - **Join**: the new node asks any member; a follower points it to the
//!   leader. The leader adds it as a learner, waits until it has caught up
//!   (from a snapshot when the log was purged), then promotes it to voter.
//! - **Leave**: the leader removes the node from the voters, then commits
//!   `NodeRestarted` for it, so its sessions become disconnected in the
//!   replicated state (wills fire, expiry starts) and their clients can
//!   resume anywhere. A live leaving node is told, and with `-k` it
//!   disconnects its clients first. A dead node is removed the same way.
//! - Changes run one at a time; a second is refused with what is in progress.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::ChangeMembers;
use tracing::{info, warn};

use crate::command::{Command, NodeRestarted};
use crate::node::{now_ms, Removal};
use crate::rpc::{AdminError, ClusterView, MemberView, Reply, Rpc};
use crate::types::{NodeId, NodeInfo};
use crate::RaftNode;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Releases the membership-change slot when dropped.
struct ChangeGuard<'a>(&'a RaftNode);

impl Drop for ChangeGuard<'_> {
    fn drop(&mut self) {
        *self.0.changing.lock() = None;
    }
}

impl RaftNode {
    /// Claims the one membership-change slot; only the leader changes
    /// membership.
    fn begin_change(&self, what: String) -> Result<ChangeGuard<'_>, AdminError> {
        if !self.is_leader() {
            return Err(AdminError::NotLeader {
                leader: self.leader_info(),
            });
        }
        let mut c = self.changing.lock();
        if let Some(cur) = c.as_ref() {
            return Err(AdminError::Refused(format!(
                "another membership change is in progress ({cur}); try again when it is done"
            )));
        }
        let joint = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_joint_config()
            .len()
            > 1;
        if joint {
            return Err(AdminError::Refused(
                "another membership change is in progress (joint configuration); try again when it is done"
                    .into(),
            ));
        }
        *c = Some(what);
        Ok(ChangeGuard(self))
    }

    /// Leader side of a join.
    pub(crate) async fn add_node(&self, id: NodeId, info: NodeInfo) -> Result<String, AdminError> {
        let _g = self.begin_change(format!("join of node {id}"))?;
        let (known, is_voter) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            (mem.get_node(&id).cloned(), mem.voter_ids().any(|v| v == id))
        };
        if let Some(k) = &known {
            if *k != info {
                // Same id, new addresses (a wiped node restarted elsewhere).
                let mut nodes = BTreeMap::new();
                nodes.insert(id, info.clone());
                self.raft
                    .change_membership(ChangeMembers::SetNodes(nodes), true)
                    .await
                    .map_err(admin_err)?;
            }
            if is_voter {
                return Ok(format!("node {id} is already a voter"));
            }
        }
        info!(node = id, cluster = %info.cluster, "adding node as a learner");
        tokio::time::timeout(ADMIN_TIMEOUT, self.raft.add_learner(id, info, true))
            .await
            .map_err(|_| AdminError::Unavailable(format!("node {id} did not catch up in time")))?
            .map_err(admin_err)?;
        info!(node = id, "learner caught up; promoting to voter");
        let mut ids = BTreeSet::new();
        ids.insert(id);
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(ids), false)
            .await
            .map_err(admin_err)?;
        Ok(format!("node {id} joined the cluster as a voter"))
    }

    /// A cluster of one that never held any client state: it may give up its
    /// log and join another cluster (VerneMQ's `cluster join` on a new node).
    pub fn is_fresh_standalone(&self) -> bool {
        let alone = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            mem.voter_ids().eq([self.node_id]) && mem.learner_ids().next().is_none()
        };
        alone && self.summary().empty
    }

    /// Joining side: asks `discovery` (an inter-node address of any member)
    /// to add this node, following redirects to the leader.
    pub async fn join_via(&self, discovery: &str) -> Result<String, AdminError> {
        if self.joined.load(Ordering::Acquire) {
            return if self.is_member() && self.voters().len() > 1 {
                Ok(format!(
                    "node {} is already a member of a cluster",
                    self.node_id
                ))
            } else {
                Err(AdminError::Refused(format!(
                    "node {} already has its own cluster state; to join another cluster, \
                     start it with an empty data directory and --join {discovery}",
                    self.node_id
                )))
            };
        }
        let mut addr = discovery.to_string();
        for _ in 0..5 {
            let rpc = Rpc::Join {
                id: self.node_id,
                info: self.info.clone(),
            };
            let (from, reply) = self
                .transport
                .call_addr(&addr, rpc, ADMIN_TIMEOUT)
                .await
                .map_err(|e| AdminError::Unavailable(format!("{addr}: {e}")))?;
            match reply {
                Reply::Admin(Ok(msg)) => {
                    self.joined.store(true, Ordering::Release);
                    return Ok(msg);
                }
                Reply::Admin(Err(AdminError::NotLeader {
                    leader: Some((l, info)),
                })) if l != from => addr = info.cluster,
                Reply::Admin(Err(AdminError::NotLeader { .. })) => {
                    return Err(AdminError::Unavailable(format!(
                        "node {from} at {addr} knows no leader"
                    )))
                }
                Reply::Admin(Err(e)) => return Err(e),
                other => {
                    return Err(AdminError::Unavailable(format!(
                        "unexpected reply {other:?}"
                    )))
                }
            }
        }
        Err(AdminError::Unavailable("too many redirects".into()))
    }

    /// `--join` at start: retries until this node is in.
    pub(crate) async fn join_until_done(&self, discovery: &str) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.join_via(discovery).await {
                Ok(msg) => {
                    info!("{msg}");
                    return;
                }
                Err(e) => {
                    warn!(discovery, error = %e, "join failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// `cluster leave node=ID [-k]`, from any node: runs on the leader.
    pub async fn leave(&self, id: NodeId, kill: bool) -> Result<String, AdminError> {
        if self.is_leader() {
            return self.remove_node(id, kill).await;
        }
        let Some((l, info)) = self.leader_info() else {
            return Err(AdminError::Unavailable(
                "no leader; cannot change membership".into(),
            ));
        };
        match self
            .transport
            .call(l, &info.cluster, Rpc::Leave { id, kill }, ADMIN_TIMEOUT)
            .await
        {
            Ok(Reply::Admin(r)) => r,
            Ok(other) => Err(AdminError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
            Err(e) => Err(AdminError::Unavailable(format!("leader {l}: {e}"))),
        }
    }

    /// Leader side of a leave.
    pub(crate) async fn remove_node(&self, id: NodeId, kill: bool) -> Result<String, AdminError> {
        let _g = self.begin_change(format!("leave of node {id}"))?;
        let (node, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            (
                mem.get_node(&id).cloned(),
                mem.voter_ids().collect::<BTreeSet<_>>(),
            )
        };
        let Some(node) = node else {
            return Err(AdminError::Refused(format!("node {id} is not a member")));
        };
        if voters.len() == 1 && voters.contains(&id) {
            return Err(AdminError::Refused(format!(
                "node {id} is the last voter; a cluster cannot remove its last node"
            )));
        }
        let reachable = self.transport.reachable(id);
        let clients = self
            .view
            .sessions_on(id)
            .map_err(|e| AdminError::Unavailable(format!("reading sessions: {e}")))?;
        if reachable && clients > 0 && !kill {
            return Err(AdminError::Refused(format!(
                "node {id} still serves {clients} connected clients; \
                 add -k to disconnect them (they can reconnect to any other node)"
            )));
        }
        let ids = BTreeSet::from([id]);
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(admin_err)?;
        info!(node = id, "node removed from the cluster");
        // A live node closes its listener and (with -k) its clients; their
        // disconnects still commit: a removed node forwards to the leader.
        if reachable {
            self.tell_removed(id, &node, kill).await;
        }
        // Its sessions are not connected anywhere any more. Proposed through
        // the proposer: if this leader just removed itself, it forwards.
        let left = self
            .proposer
            .propose(Command::NodeRestarted(NodeRestarted {
                node: id,
                now_ms: now_ms(),
            }))
            .await;
        if let Err(e) = left {
            warn!(node = id, error = %e, "could not disconnect the sessions of the removed node");
        }
        if !reachable {
            return Ok(format!(
                "node {id} was unreachable and has been removed; its {clients} sessions are disconnected and can resume on any node"
            ));
        }
        Ok(format!("node {id} left the cluster"))
    }

    async fn tell_removed(&self, id: NodeId, node: &NodeInfo, kill: bool) {
        if id == self.node_id {
            self.on_removed(kill);
            return;
        }
        match self
            .transport
            .call(id, &node.cluster, Rpc::Removed { kill }, STATUS_TIMEOUT)
            .await
        {
            Ok(_) => {}
            Err(e) => warn!(node = id, error = %e, "could not tell the node it is leaving"),
        }
    }

    /// This node is being removed from the cluster.
    pub(crate) fn on_removed(&self, kill: bool) {
        warn!(kill, "this node is leaving the cluster");
        self.removed.send_replace(Some(Removal { kill }));
    }

    /// The cluster as the leader sees it (this node's view if the leader
    /// cannot be asked).
    pub async fn cluster_view(&self) -> ClusterView {
        if !self.is_leader() {
            if let Some((l, info)) = self.leader_info() {
                if let Ok(Reply::Status(v)) = self
                    .transport
                    .call(l, &info.cluster, Rpc::Status, STATUS_TIMEOUT)
                    .await
                {
                    return *v;
                }
            }
        }
        self.local_view()
    }

    pub(crate) fn local_view(&self) -> ClusterView {
        let m = self.raft.metrics();
        let m = m.borrow();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let is_leader = m.current_leader == Some(self.node_id);
        let members = mem
            .nodes()
            .map(|(id, n)| MemberView {
                id: *id,
                cluster: n.cluster.clone(),
                mqtt: n.mqtt.clone(),
                http: n.http.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                leader: m.current_leader == Some(*id),
                match_index: if *id == self.node_id {
                    m.last_log_index
                } else if is_leader {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                } else {
                    None
                },
                reachable: self.transport.reachable(*id),
            })
            .collect();
        ClusterView {
            answered_by: self.node_id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed: m.last_applied.map(|l| l.index),
            changing: mem.get_joint_config().len() > 1 || self.changing.lock().is_some(),
            members,
        }
    }
}
