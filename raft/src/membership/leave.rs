//! Leaves. The leader removes the node from the voters, then commits
//! `NodeRestarted` for it, so its sessions become disconnected in the
//! replicated state (wills fire, expiry starts) and their clients can resume
//! anywhere. A live leaving node is told, and with `-k` it disconnects its
//! clients first. A dead node is removed the same way.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;
use tracing::{info, warn};

use super::admin_err;
use crate::command::{Command, NodeRestarted};
use crate::node::{now_ms, Removal};
use crate::rpc::{AdminError, Rpc};
use crate::state::read_identities;
use crate::types::{NodeId, NodeInfo};
use crate::RaftNode;

const TELL_TIMEOUT: Duration = Duration::from_secs(2);

impl RaftNode {
    /// Leader: refuses a leave that cannot be done; says so when the node
    /// already left.
    pub(super) fn leave_precheck(
        &self,
        id: NodeId,
        kill: bool,
    ) -> Result<Option<String>, AdminError> {
        let (node, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            (
                mem.get_node(&id).cloned(),
                mem.voter_ids().collect::<BTreeSet<_>>(),
            )
        };
        if node.is_none() {
            let known = read_identities(&self.store)
                .map_err(|e| AdminError::Unavailable(format!("reading identities: {e}")))?
                .contains_key(&id);
            return if known {
                Ok(Some(format!(
                    "node {id} is not a member: it already left the cluster"
                )))
            } else {
                Err(AdminError::Refused(format!("node {id} is not a member")))
            };
        }
        if voters.len() == 1 && voters.contains(&id) {
            return Err(AdminError::Refused(format!(
                "node {id} is the last voter; a cluster cannot remove its last node"
            )));
        }
        let clients = self.clients_on(id)?;
        if self.transport.reachable(id) && clients > 0 && !kill {
            return Err(AdminError::Refused(format!(
                "node {id} still serves {clients} connected clients; \
                 add -k to disconnect them (they can reconnect to any other node)"
            )));
        }
        Ok(None)
    }

    fn clients_on(&self, id: NodeId) -> Result<u64, AdminError> {
        self.view
            .sessions_on(id)
            .map(|n| n as u64)
            .map_err(|e| AdminError::Unavailable(format!("reading sessions: {e}")))
    }

    /// Leader: the leave of node `id` as change `change`.
    pub(super) async fn run_leave(
        &self,
        change: u64,
        id: NodeId,
        kill: bool,
    ) -> Result<String, AdminError> {
        let (node, is_voter) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            (mem.get_node(&id).cloned(), mem.voter_ids().any(|v| v == id))
        };
        let Some(node) = node else {
            return Ok(format!("node {id} is not a member any more"));
        };
        let reachable = self.transport.reachable(id);
        let clients = self.clients_on(id)?;
        let ids = BTreeSet::from([id]);
        let change_members = if is_voter {
            self.stage(change, format!("removing node {id} from the voters"));
            ChangeMembers::RemoveVoters(ids)
        } else {
            self.stage(change, format!("removing learner {id}"));
            ChangeMembers::RemoveNodes(ids)
        };
        self.raft
            .change_membership(change_members, false)
            .await
            .map_err(admin_err)?;
        self.stage(
            change,
            format!("node {id} removed; disconnecting its sessions"),
        );
        self.after_removal(id, reachable.then_some(node), kill)
            .await;
        if !reachable {
            return Ok(format!(
                "node {id} was unreachable and has been removed; its {clients} sessions are disconnected and can resume on any node"
            ));
        }
        Ok(format!("node {id} left the cluster"))
    }

    /// What follows a removal: a live node (`tell`) is told, and with
    /// `kill` disconnects its clients; the sessions it owned become
    /// disconnected in the replicated state.
    pub(super) async fn after_removal(&self, id: NodeId, tell: Option<NodeInfo>, kill: bool) {
        if let Some(node) = tell {
            self.tell_removed(id, &node, kill).await;
        }
        // Proposed through the proposer: if this leader just removed
        // itself, it forwards.
        let left = self
            .propose(Command::NodeRestarted(NodeRestarted {
                node: id,
                now_ms: now_ms(),
            }))
            .await;
        if let Err(e) = left {
            warn!(node = id, error = %e, "could not disconnect the sessions of the removed node");
        } else {
            info!(node = id, "node removed from the cluster");
        }
    }

    async fn tell_removed(&self, id: NodeId, node: &NodeInfo, kill: bool) {
        if id == self.node_id {
            self.on_removed(kill);
            return;
        }
        if let Err(e) = self
            .transport
            .call(id, &node.cluster, Rpc::Removed { kill }, TELL_TIMEOUT)
            .await
        {
            warn!(node = id, error = %e, "could not tell the node it is leaving");
        }
    }

    /// This node is being removed from the cluster.
    pub(crate) fn on_removed(&self, kill: bool) {
        warn!(kill, "this node is leaving the cluster");
        self.removed.send_replace(Some(Removal { kill }));
    }
}
