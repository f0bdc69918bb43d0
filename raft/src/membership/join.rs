//! Joins. The leader's side checks the joining node's data-directory
//! identity, records it, updates a member's addresses, and adds a new node
//! as a learner that it promotes once caught up. The joining side asks any
//! member (following redirects to the leader) and follows the change; a
//! member restarted at new addresses announces them the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::ChangeMembers;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{admin_err, another_directory, ChangeRequest, Started};
use crate::command::{Command, Identify};
use crate::rpc::{AdminError, Reply, Rpc};
use crate::state::read_identities;
use crate::types::{NodeId, NodeInfo};
use crate::RaftNode;

/// How long the leader waits for a new learner to catch up before it gives
/// the change up (the learner stays a learner; `cluster leave` removes it).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30 * 60);
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(200);

impl RaftNode {
    /// The recorded identity of member `id`.
    fn recorded_identity(&self, id: NodeId) -> Result<Option<u128>, AdminError> {
        read_identities(&self.store)
            .map(|m| m.get(&id).copied())
            .map_err(|e| AdminError::Unavailable(format!("reading identities: {e}")))
    }

    /// Leader: refuses a join under a member's id from another data
    /// directory; says so when the node is already a voter as it asks.
    pub(super) fn join_precheck(
        &self,
        id: NodeId,
        info: &NodeInfo,
        identity: Option<u128>,
    ) -> Result<Option<String>, AdminError> {
        let (known, is_voter) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            (mem.get_node(&id).cloned(), mem.voter_ids().any(|v| v == id))
        };
        let Some(known) = known else {
            return Ok(None);
        };
        let recorded = self.recorded_identity(id)?;
        match (identity, recorded) {
            // Members recorded before identities existed: the first
            // identity presented is theirs.
            (Some(mine), Some(theirs)) if mine != theirs => {
                return Err(AdminError::Refused(another_directory(id)))
            }
            (None, _) => return Err(AdminError::Refused(another_directory(id))),
            _ => {}
        }
        if is_voter && known == *info && recorded == identity {
            return Ok(Some(format!(
                "node {id} is already a voter with this data directory and these addresses"
            )));
        }
        Ok(None)
    }

    /// Leader: the join of node `id` as change `change`.
    pub(super) async fn run_join(
        &self,
        change: u64,
        id: NodeId,
        info: NodeInfo,
        identity: Option<u128>,
    ) -> Result<String, AdminError> {
        if let Some(mine) = identity {
            if self.recorded_identity(id)? != Some(mine) {
                self.stage(change, format!("recording the data directory of node {id}"));
                self.propose(Command::Identify(Identify {
                    node: id,
                    identity: mine,
                }))
                .await
                .map_err(|e| AdminError::Unavailable(format!("recording the identity: {e}")))?;
            }
        }
        let (known, is_voter) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            (mem.get_node(&id).cloned(), mem.voter_ids().any(|v| v == id))
        };
        let mut moved = false;
        if let Some(k) = &known {
            if *k != info {
                self.stage(
                    change,
                    format!(
                        "updating the addresses of node {id}: cluster {} -> {}, mqtt {} -> {}, http {} -> {}",
                        k.cluster, info.cluster, k.mqtt, info.mqtt, k.http, info.http
                    ),
                );
                let nodes = BTreeMap::from([(id, info.clone())]);
                self.raft
                    .change_membership(ChangeMembers::SetNodes(nodes), true)
                    .await
                    .map_err(admin_err)?;
                moved = true;
            }
            if is_voter {
                return Ok(if moved {
                    format!("node {id} is a voter at its new addresses")
                } else {
                    format!("node {id} is already a voter")
                });
            }
        }
        self.stage(change, format!("adding node {id} as a learner"));
        tokio::time::timeout(CATCH_UP_LIMIT, self.raft.add_learner(id, info, true))
            .await
            .map_err(|_| {
                AdminError::Unavailable(format!(
                    "node {id} did not catch up within {CATCH_UP_LIMIT:?}; it stays a learner"
                ))
            })?
            .map_err(admin_err)?;
        self.stage(
            change,
            format!("node {id} caught up; promoting it to voter"),
        );
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
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

    /// `cluster join` on this node: joins through `discovery` (an
    /// inter-node address of any member) if this node is new. A node that
    /// is a member says so; one the cluster removed, or with a cluster of
    /// its own, is refused with how to rejoin.
    pub async fn join_via(&self, discovery: &str, timeout: Duration) -> Result<String, AdminError> {
        if !self.joined.load(Ordering::Acquire) {
            return self.ask_to_join(discovery, Instant::now() + timeout).await;
        }
        let me = self.node_id;
        let removed = || {
            AdminError::Refused(format!(
                "node {me} was removed from its cluster; to rejoin, stop it and start it \
                 with an empty data directory and --join {discovery}"
            ))
        };
        if self.removed.borrow().is_some() || !self.is_member() {
            return Err(removed());
        }
        let voters: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if voters.len() == 1 {
            return Err(AdminError::Refused(format!(
                "node {me} already has its own cluster state; to join another cluster, \
                 start it with an empty data directory and --join {discovery}"
            )));
        }
        // This node still counts itself in; ask the cluster.
        match self
            .transport
            .call_addr(discovery, Rpc::Status, ASK_TIMEOUT)
            .await
        {
            Ok((_, Reply::Status(v))) if v.members.iter().any(|m| m.id == me) => {
                Ok(format!("node {me} is already a member of the cluster"))
            }
            Ok((_, Reply::Status(_))) => Err(removed()),
            Ok((_, other)) => Err(AdminError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
            Err(e) => Err(AdminError::Unavailable(format!("{discovery}: {e}"))),
        }
    }

    /// Asks the member at `addr` to make this node (id, addresses, data
    /// directory) a member, follows redirects to the leader, then follows
    /// the change to its end. `deadline` bounds the asking; once the leader
    /// runs the change it is followed until it ends.
    pub(crate) async fn ask_to_join(
        &self,
        addr: &str,
        deadline: Instant,
    ) -> Result<String, AdminError> {
        let req = ChangeRequest::Join {
            id: self.node_id,
            info: self.info.clone(),
            identity: Some(self.identity),
        };
        let mut addr = addr.to_string();
        let mut redirects = 0;
        let change = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (from, reply) = self
                .transport
                .call_addr(&addr, Rpc::Change(req.clone()), left.min(ASK_TIMEOUT))
                .await
                .map_err(|e| AdminError::Unavailable(format!("{addr}: {e}")))?;
            match reply {
                Reply::Change(Ok(Started::Done(msg))) => {
                    self.joined.store(true, Ordering::Release);
                    return Ok(msg);
                }
                Reply::Change(Ok(Started::Running(id))) => break id,
                Reply::Change(Err(AdminError::NotLeader {
                    leader: Some((l, info)),
                })) if l != from && redirects < 5 => {
                    redirects += 1;
                    addr = info.cluster;
                }
                Reply::Change(Err(AdminError::NotLeader { .. })) => {
                    return Err(AdminError::Unavailable(format!(
                        "node {from} at {addr} knows no leader"
                    )))
                }
                Reply::Change(Err(e)) => return Err(e),
                other => {
                    return Err(AdminError::Unavailable(format!(
                        "unexpected reply {other:?}"
                    )))
                }
            }
        };
        loop {
            tokio::time::sleep(POLL).await;
            match self
                .transport
                .call_addr(&addr, Rpc::ChangeStatus { id: change }, ASK_TIMEOUT)
                .await
            {
                Ok((_, Reply::Progress(Some(p)))) => match p.outcome {
                    Some(Ok(msg)) => {
                        self.joined.store(true, Ordering::Release);
                        return Ok(msg);
                    }
                    Some(Err(e)) => return Err(e),
                    None => {}
                },
                Ok((_, Reply::Progress(None))) => {
                    return Err(AdminError::Unavailable(
                        "the leader changed during the join".into(),
                    ))
                }
                Ok((_, other)) => {
                    return Err(AdminError::Unavailable(format!(
                        "unexpected reply {other:?}"
                    )))
                }
                Err(e) => {
                    return Err(AdminError::Unavailable(format!(
                        "following the join at {addr}: {e}"
                    )))
                }
            }
        }
    }

    /// `--join` at start: retries (logging each new error once) until this
    /// node is in, it is refused, or `timeout` passes without an answer.
    pub(crate) async fn join_until_done(
        &self,
        discovery: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(200);
        let mut last: Option<String> = None;
        loop {
            match self.ask_to_join(discovery, deadline).await {
                Ok(msg) => return Ok(msg),
                Err(AdminError::Refused(m)) => return Err(m),
                Err(e) => {
                    let text = e.to_string();
                    if Instant::now() + backoff >= deadline {
                        return Err(format!(
                            "could not join a cluster through {discovery} within {timeout:?}: {text}"
                        ));
                    }
                    if last.as_deref() != Some(&text) {
                        warn!(discovery, error = %text, "join failed; retrying");
                        last = Some(text);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// A member (restarted, or that just bootstrapped a cluster): if the
    /// membership records other addresses for it, or no identity, it tells
    /// the leader (itself, or through any member it knows). Refused: another
    /// directory holds its place.
    pub(crate) async fn announce(&self, timeout: Duration) -> Result<(), String> {
        let Some(recorded) = self.node_info(self.node_id) else {
            return Ok(());
        };
        let identity = read_identities(&self.store)
            .map_err(|e| e.to_string())?
            .get(&self.node_id)
            .copied();
        if recorded == self.info && identity == Some(self.identity) {
            return Ok(());
        }
        info!(
            recorded = %recorded.cluster,
            now = %self.info.cluster,
            "telling the cluster this node's addresses and data directory"
        );
        let deadline = Instant::now() + timeout;
        let mut last: Option<String> = None;
        while Instant::now() < deadline {
            let peers: Vec<String> = {
                let m = self.raft.metrics();
                let m = m.borrow();
                m.membership_config
                    .membership()
                    .nodes()
                    .filter(|(id, _)| **id != self.node_id)
                    .map(|(_, n)| n.cluster.clone())
                    .collect()
            };
            if self.is_leader() {
                let req = ChangeRequest::Join {
                    id: self.node_id,
                    info: self.info.clone(),
                    identity: Some(self.identity),
                };
                let left = deadline.saturating_duration_since(Instant::now());
                match self.change(req, left).await {
                    Ok(o) => {
                        info!("{}", o.text);
                        return Ok(());
                    }
                    Err(AdminError::Refused(m)) => return Err(m),
                    Err(e) => {
                        let text = e.to_string();
                        if last.as_deref() != Some(&text) {
                            warn!(error = %text, "could not record this node's addresses and data directory yet; retrying");
                            last = Some(text);
                        }
                    }
                }
            }
            for addr in peers {
                match self.ask_to_join(&addr, deadline).await {
                    Ok(msg) => {
                        info!("{msg}");
                        return Ok(());
                    }
                    Err(AdminError::Refused(m)) => return Err(m),
                    Err(e) => {
                        let text = e.to_string();
                        if last.as_deref() != Some(&text) {
                            warn!(error = %text, "could not reach the leader to update this node's addresses; retrying");
                            last = Some(text);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        warn!("the cluster still records this node's old addresses (no leader reached)");
        Ok(())
    }
}
