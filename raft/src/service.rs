//! Serves peers' requests: openraft RPCs into the local Raft, forwarded
//! batches into the log (when leader), membership requests, status, and QoS 0
//! deliveries into the local event sink.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use openraft::error::{ClientWriteError, Fatal};
use openraft::raft::AppendEntriesResponse;

use crate::command::Message;
use crate::membership::{ChangeRequest, DEFAULT_CHANGE_TIMEOUT};
use crate::rpc::{Redirect, Reply, Rpc};
use crate::transport::Handler;
use crate::types::NodeId;
use crate::RaftNode;

impl Handler for RaftNode {
    async fn handle(&self, from: NodeId, rpc: Rpc) -> BoxFuture<'static, Option<Reply>> {
        let node = self.clone();
        if self.stop.is_cancelled() {
            // This node is stopping: Raft traffic gets "stopped" without
            // reaching openraft (which would log each one as an error).
            use openraft::error::RaftError::Fatal as F;
            let reply = match rpc {
                Rpc::Append(_) => Some(Reply::Append(Err(F(Fatal::Stopped)))),
                Rpc::Vote(_) => Some(Reply::Vote(Err(F(Fatal::Stopped)))),
                Rpc::Snapshot(_) => Some(Reply::Snapshot(Err(F(Fatal::Stopped)))),
                rpc => return self.serve(from, node, rpc).await,
            };
            return async move { reply }.boxed();
        }
        self.serve(from, node, rpc).await
    }
}

impl RaftNode {
    /// Serves a peer's request (see [`Handler::handle`]).
    async fn serve(
        &self,
        from: NodeId,
        node: RaftNode,
        rpc: Rpc,
    ) -> BoxFuture<'static, Option<Reply>> {
        match rpc {
            Rpc::Append(r) => async move {
                let resp = node.raft.append_entries(r).await;
                if resp
                    .as_ref()
                    .is_ok_and(|r| !matches!(r, AppendEntriesResponse::HigherVote(_)))
                {
                    node.quorum.leader_contact();
                }
                Some(Reply::Append(resp))
            }
            .boxed(),
            Rpc::Vote(r) => async move { Some(Reply::Vote(node.raft.vote(r).await)) }.boxed(),
            Rpc::Snapshot(r) => async move {
                let resp = node.raft.install_snapshot(r).await;
                if resp.is_ok() {
                    node.quorum.leader_contact();
                }
                Some(Reply::Snapshot(resp))
            }
            .boxed(),
            Rpc::Forward(req) => {
                // Proposed here, in arrival order; the result is awaited
                // concurrently.
                if !node.is_leader() {
                    let leader = node.leader_info();
                    return async move { Some(Reply::Forward(Err(Redirect::NotLeader { leader }))) }
                        .boxed();
                }
                match node.raft.client_write_ff(req).await {
                    Ok(rx) => async move {
                        let r = match rx.await {
                            Ok(Ok(resp)) => Ok(resp.data),
                            Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                                Err(Redirect::NotLeader {
                                    leader: f.leader_id.zip(f.leader_node),
                                })
                            }
                            Ok(Err(e)) => Err(Redirect::Failed(e.to_string())),
                            Err(_) => Err(Redirect::NotLeader { leader: None }),
                        };
                        Some(Reply::Forward(r))
                    }
                    .boxed(),
                    Err(fatal) => {
                        let m = fatal.to_string();
                        async move { Some(Reply::Forward(Err(Redirect::Failed(m)))) }.boxed()
                    }
                }
            }
            // Older peers' requests: a join without an identity, a leave.
            Rpc::Join { id, info } => async move {
                let req = ChangeRequest::Join {
                    id,
                    info,
                    identity: None,
                };
                let r = node.change(req, DEFAULT_CHANGE_TIMEOUT).await;
                Some(Reply::Admin(r.map(|o| o.text)))
            }
            .boxed(),
            Rpc::Leave { id, kill } => async move {
                let req = ChangeRequest::Leave { id, kill };
                let r = node.change(req, DEFAULT_CHANGE_TIMEOUT).await;
                Some(Reply::Admin(r.map(|o| o.text)))
            }
            .boxed(),
            Rpc::Change(req) => {
                let r = node.start_change(req);
                async move { Some(Reply::Change(r)) }.boxed()
            }
            Rpc::ChangeStatus { id } => {
                let p = node.change_progress(id);
                async move { Some(Reply::Progress(p)) }.boxed()
            }
            Rpc::Removed { kill } => {
                tracing::info!(by = from, "the leader removed this node from the cluster");
                node.on_removed(kill);
                async { Some(Reply::Done) }.boxed()
            }
            Rpc::Status => async move { Some(Reply::Status(Box::new(node.local_view()))) }.boxed(),
            Rpc::PreVote(ask) => {
                let granted = node.pre_vote_answer(ask);
                async move { Some(Reply::PreVote { granted }) }.boxed()
            }
            Rpc::Deliver { msg, targets } => {
                let msg: Arc<Message> = Arc::new(msg);
                node.sink.deliver_remote(msg, targets);
                async { None }.boxed()
            }
        }
    }
}
