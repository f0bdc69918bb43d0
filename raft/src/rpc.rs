//! The messages nodes exchange over the transport: openraft's RPCs, forwarded
//! proposals, membership requests, cluster status, and QoS 0 deliveries that
//! bypass the log. All are bincode-encoded by [`crate::transport`].

use openraft::error::{InstallSnapshotError, RaftError as ORaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::command::{Message, Request, Response};
use crate::membership::{ChangeProgress, ChangeRequest, Started};
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower's batch of client commands, for the leader to propose.
    Forward(Request),
    /// Add this node to the cluster (learner, caught up, then voter).
    Join {
        id: NodeId,
        info: NodeInfo,
    },
    /// Remove a node (`cluster leave`); `kill` disconnects its clients.
    Leave {
        id: NodeId,
        kill: bool,
    },
    /// Sent by the leader to a node it removed.
    Removed {
        kill: bool,
    },
    /// The cluster as the leader sees it.
    Status,
    /// QoS 0 routed outside the log to subscribers connected to the
    /// receiving node. One-way.
    Deliver {
        msg: Message,
        targets: Vec<RemoteTarget>,
    },
    /// Start a membership change (on the leader); answered at once.
    Change(ChangeRequest),
    /// How change `id` is going (asked of the leader that runs it).
    ChangeStatus {
        id: u64,
    },
    /// Would the receiver vote for this candidate now? (See
    /// [`crate::election`].)
    PreVote(crate::election::PreVote),
}

/// One subscriber of a QoS 0 delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteTarget {
    pub client_id: String,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Append(Result<AppendEntriesResponse<NodeId>, ORaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, ORaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, ORaftError<NodeId, InstallSnapshotError>>),
    Forward(Result<Response, Redirect>),
    Admin(Result<String, AdminError>),
    Status(Box<ClusterView>),
    Done,
    Change(Result<Started, AdminError>),
    Progress(Option<ChangeProgress>),
    PreVote { granted: bool },
}

/// Why a node did not take a request meant for the leader.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum Redirect {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    #[error("{0}")]
    Failed(String),
}

/// Why a membership command failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    /// The change did not finish within the requester's timeout; it
    /// continues on the leader.
    #[error("{0}")]
    InProgress(String),
    /// Another membership change runs: try again when it is done.
    #[error("{0}")]
    Busy(String),
}

/// One member, for `cluster show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: NodeId,
    pub cluster: String,
    pub mqtt: String,
    pub http: String,
    /// "voter" or "learner".
    pub role: String,
    pub leader: bool,
    /// Highest log index known replicated to it (leader's view).
    pub match_index: Option<u64>,
    /// Reachable from the node that answered.
    pub reachable: bool,
}

/// The cluster as one node (the leader when it can be reached) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub answered_by: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    /// A membership change is in progress (joint configuration).
    pub changing: bool,
    pub members: Vec<MemberView>,
    /// The change the leader runs now, with its stages.
    pub change: Option<ChangeProgress>,
}
