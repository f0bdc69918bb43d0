//! openraft's network traits over [`crate::transport`]: each RPC is one
//! request on the persistent, pipelined connection to the target node.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::error::encoded_len;
use crate::rpc::{Reply, Rpc};
use crate::transport::{NetError, Transport, MAX_FRAME};
use crate::types::{Entry, NodeId, NodeInfo, TypeConfig};

#[derive(Clone)]
pub struct Network {
    pub transport: Arc<Transport>,
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    transport: Arc<Transport>,
    /// The snapshot being sent to this peer: when it started, chunks and
    /// bytes acknowledged.
    sending: Option<(Instant, u64, u64)>,
}

/// Deadline of a snapshot chunk that is not the last: its transfer and
/// the receiver writing it to a file. (The last chunk's answer also waits
/// for the install; it gets openraft's `install_snapshot_timeout`.) A
/// chunk that misses it is sent again by openraft.
const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Largest AppendEntries sent as one request. A log entry holds up to 4 MiB
/// of commands, so `max_payload_entries` (64) of them can be larger than a
/// transport frame ([`MAX_FRAME`]), which is then never sent: the request
/// would time out again and again, and a follower behind by such entries (a
/// joining node after its snapshot) would never catch up. It is also well
/// under a frame because openraft gives an AppendEntries the heartbeat
/// interval (100 ms) to be sent, appended and synced.
const MAX_APPEND_BYTES: usize = 8 << 20;
const _: () = assert!(MAX_APPEND_BYTES * 4 <= MAX_FRAME);

/// How many of `entries`, from the first, fit in [`MAX_APPEND_BYTES`].
fn entries_that_fit(entries: &[Entry]) -> usize {
    let mut total = 0;
    for (i, e) in entries.iter().enumerate() {
        // An entry that cannot be encoded fails in the transport, as before.
        total += encoded_len(e).unwrap_or(0);
        if total > MAX_APPEND_BYTES {
            return i;
        }
    }
    entries.len()
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;
    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            target,
            addr: node.cluster.clone(),
            transport: self.transport.clone(),
            sending: None,
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
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Err> {
        // Too many bytes for one request: send the entries that fit (at
        // least one) and answer PartialSuccess up to the last of them, which
        // openraft's network contract allows; it sends the rest next.
        let fit = entries_that_fit(&rpc.entries).max(1);
        let partial = if fit < rpc.entries.len() {
            tracing::debug!(
                peer = self.target,
                entries = rpc.entries.len(),
                fit,
                "AppendEntries too large for one request; sending the first entries"
            );
            rpc.entries.truncate(fit);
            rpc.entries.last().map(|e| e.log_id)
        } else {
            None
        };
        match self.call(Rpc::Append(rpc), option.hard_ttl()).await {
            Ok(Reply::Append(Ok(AppendEntriesResponse::Success))) if partial.is_some() => {
                Ok(AppendEntriesResponse::PartialSuccess(partial))
            }
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
        let (done, bytes) = (rpc.done, rpc.data.len() as u64);
        let ttl = if done {
            option.hard_ttl()
        } else {
            option.hard_ttl().min(SNAPSHOT_CHUNK_TIMEOUT)
        };
        if rpc.offset == 0 {
            self.sending = Some((Instant::now(), 0, 0));
            tracing::info!(peer = self.target, snapshot = %rpc.meta.snapshot_id, "sending a snapshot");
        }
        let id = rpc.meta.snapshot_id.clone();
        match self.call(Rpc::Snapshot(rpc), ttl).await {
            Ok(Reply::Snapshot(Ok(r))) => {
                let stats = &self.transport.stats;
                stats.snapshot_chunks_sent.fetch_add(1, Ordering::Relaxed);
                stats
                    .snapshot_bytes_sent
                    .fetch_add(bytes, Ordering::Relaxed);
                if let Some((_, chunks, sent)) = &mut self.sending {
                    *chunks += 1;
                    *sent += bytes;
                }
                if done {
                    if let Some((started, chunks, sent)) = self.sending.take() {
                        tracing::info!(
                            peer = self.target,
                            snapshot = %id,
                            chunks,
                            bytes = sent,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "snapshot sent"
                        );
                    }
                }
                Ok(r)
            }
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::{Command, Message, MsgProps, Publish};

    /// A log entry holding one publish of `size` payload bytes.
    fn entry(index: u64, size: usize) -> Entry {
        let msg = Message {
            topic: "t".into(),
            payload: Bytes::from(vec![0; size]),
            qos: 1,
            retain: false,
            publisher: "p".into(),
            props: MsgProps::default(),
            created_ms: 0,
            expires_ms: None,
        };
        crate::types::numbered_entry(
            index,
            1,
            0,
            vec![(
                index,
                Command::Publish(Publish {
                    client_id: "p".into(),
                    packet_id: 1,
                    msg: msg.into(),
                }),
            )],
        )
    }

    #[test]
    fn append_entries_are_cut_to_what_fits_in_one_request() {
        let mib = 1 << 20;
        let big: Vec<Entry> = (1..=5).map(|i| entry(i, 3 * mib)).collect();
        assert_eq!(entries_that_fit(&big), 2, "3 + 3 MiB fit, a third does not");
        let small: Vec<Entry> = (1..=64).map(|i| entry(i, 1000)).collect();
        assert_eq!(entries_that_fit(&small), 64);
        assert_eq!(
            entries_that_fit(&[entry(1, 10 * mib)]),
            0,
            "the caller still sends one"
        );
        assert_eq!(entries_that_fit(&[]), 0);
    }
}
