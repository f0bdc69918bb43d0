//! The proposer: turns a stream of client commands into log entries.
//!
//! Commands queue on a channel in the order connections submit them. The
//! proposer loop takes the first one, waits for an in-flight slot, then drains
//! whatever else has queued meanwhile (up to a size cap) into ONE entry. So a
//! batch closes on size or when the queue is idle, never on a timer: under
//! light load each command goes alone at once; under heavy load entries grow
//! and the fsync cost is shared (group commit, as TiKV's raftstore does).
//! Entries are submitted to openraft sequentially, so log order is submission
//! order; their results are awaited concurrently and fanned back out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{CmdResult, Command, Envelope, Request};
use crate::error::RaftError;
use crate::types::{NodeId, Raft};

/// Most commands in one entry.
pub const MAX_BATCH_CMDS: usize = 4096;
/// Most payload bytes in one entry (approximate).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Entries proposed but not yet applied.
pub const MAX_INFLIGHT_ENTRIES: usize = 8;

pub type Reply = oneshot::Sender<Result<CmdResult, RaftError>>;
pub type ResultRx = oneshot::Receiver<Result<CmdResult, RaftError>>;

struct Proposal {
    cmd: Command,
    reply: Option<Reply>,
}

/// Cheap to clone; every clone feeds the same loop.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Proposal>,
    stats: Arc<ProposerStats>,
}

#[derive(Default, Debug)]
pub struct ProposerStats {
    pub entries: AtomicU64,
    pub commands: AtomicU64,
}

fn approx_size(c: &Command) -> usize {
    match c {
        Command::Publish { msg, .. } => 64 + msg.topic.len() + msg.payload.len(),
        _ => 64,
    }
}

impl Proposer {
    pub fn start(raft: Raft, node_id: NodeId) -> Proposer {
        let (tx, rx) = mpsc::channel(65536);
        let stats = Arc::new(ProposerStats::default());
        tokio::spawn(run(raft, node_id, rx, stats.clone()));
        Proposer { tx, stats }
    }

    pub fn stats(&self) -> &ProposerStats {
        &self.stats
    }

    /// Queues a command; the receiver yields its result once it is applied.
    pub async fn submit(&self, cmd: Command) -> Result<ResultRx, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal {
                cmd,
                reply: Some(reply),
            })
            .await
            .map_err(|_| RaftError::Stopped)?;
        Ok(rx)
    }

    /// Queues a command whose result nobody waits for (subscriber acks).
    pub async fn submit_forget(&self, cmd: Command) -> Result<(), RaftError> {
        self.tx
            .send(Proposal { cmd, reply: None })
            .await
            .map_err(|_| RaftError::Stopped)
    }

    /// Proposes and waits until applied.
    pub async fn propose(&self, cmd: Command) -> Result<CmdResult, RaftError> {
        let rx = self.submit(cmd).await?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }
}

async fn run(
    raft: Raft,
    node_id: NodeId,
    mut rx: mpsc::Receiver<Proposal>,
    stats: Arc<ProposerStats>,
) {
    let slots = Arc::new(Semaphore::new(MAX_INFLIGHT_ENTRIES));
    // Proposer sequence numbers only grow, across restarts too (they start
    // from the clock), so apply can recognise a command proposed twice.
    let mut seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut bytes = approx_size(&first.cmd);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_CMDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += approx_size(&p.cmd);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut cmds = Vec::with_capacity(batch.len());
        for p in batch {
            seq += 1;
            cmds.push(Envelope {
                origin: node_id,
                seq,
                cmd: p.cmd,
            });
            replies.push(p.reply);
        }
        stats.entries.fetch_add(1, Ordering::Relaxed);
        stats
            .commands
            .fetch_add(cmds.len() as u64, Ordering::Relaxed);
        match raft.client_write_ff(Request { cmds }).await {
            Ok(pending) => {
                tokio::spawn(async move {
                    let outcome = pending.await;
                    drop(permit);
                    match outcome {
                        Ok(Ok(resp)) => {
                            let mut results = resp.data.results.into_iter();
                            for r in replies {
                                let res = results
                                    .next()
                                    .ok_or(RaftError::Raft("missing result".into()));
                                if let Some(r) = r {
                                    let _ = r.send(res);
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            let msg = match &e {
                                ClientWriteError::ForwardToLeader(f) => {
                                    format!("not the leader (leader: {:?})", f.leader_id)
                                }
                                other => other.to_string(),
                            };
                            fail(replies, RaftError::Unavailable(msg));
                        }
                        Err(_) => fail(replies, RaftError::Stopped),
                    }
                });
            }
            Err(fatal) => {
                tracing::error!(error = %fatal, "raft stopped; failing proposals");
                fail(replies, RaftError::Raft(fatal.to_string()));
            }
        }
    }
}

fn fail(replies: Vec<Option<Reply>>, e: RaftError) {
    for r in replies.into_iter().flatten() {
        let _ = r.send(Err(match &e {
            RaftError::Unavailable(m) => RaftError::Unavailable(m.clone()),
            RaftError::Stopped => RaftError::Stopped,
            other => RaftError::Raft(other.to_string()),
        }));
    }
}
