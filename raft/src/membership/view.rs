//! The cluster as one node sees it, for `cluster show`: members, roles,
//! leader, replication, reachability, and the membership change in progress.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::rpc::{ClusterView, MemberView, Reply, Rpc};
use crate::types::NodeId;
use crate::RaftNode;

const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

impl RaftNode {
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

    /// This node's view.
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
            changing: mem.get_joint_config().len() > 1 || self.changes.current().is_some(),
            members,
            change: self.changes.current(),
        }
    }
}
