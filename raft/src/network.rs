//! openraft's network traits over [`crate::transport`]: each RPC is one
//! request on the persistent, pipelined connection to the target node.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::rpc::{Reply, Rpc};
use crate::transport::{NetError, Transport};
use crate::types::{NodeId, NodeInfo, TypeConfig};

#[derive(Clone)]
pub struct Network {
    pub transport: Arc<Transport>,
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    transport: Arc<Transport>,
}

type Err<E = openraft::error::Infallible> = RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>;

fn net_err<E: std::error::Error>(e: NetError) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
    match e {
        NetError::Unreachable(_) | NetError::Refused(_) => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

fn unexpected<E: std::error::Error>(r: Reply) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
        "unexpected reply {r:?}"
    ))))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;
    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            target,
            addr: node.cluster.clone(),
            transport: self.transport.clone(),
        }
    }
}

impl PeerClient {
    async fn call(&self, rpc: Rpc, ttl: Duration) -> Result<Reply, NetError> {
        self.transport.call(self.target, &self.addr, rpc, ttl).await
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Err> {
        match self.call(Rpc::Append(rpc), option.hard_ttl()).await {
            Ok(Reply::Append(Ok(r))) => Ok(r),
            Ok(Reply::Append(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(net_err(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Err<InstallSnapshotError>> {
        match self.call(Rpc::Snapshot(rpc), option.hard_ttl()).await {
            Ok(Reply::Snapshot(Ok(r))) => Ok(r),
            Ok(Reply::Snapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(net_err(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Err> {
        match self.call(Rpc::Vote(rpc), option.hard_ttl()).await {
            Ok(Reply::Vote(Ok(r))) => Ok(r),
            Ok(Reply::Vote(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(net_err(e)),
        }
    }
}
