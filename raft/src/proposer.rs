//! The proposer: turns a stream of client commands into log entries, on the
//! leader directly or, on a follower, by forwarding batches to the leader.
//!
//! Commands queue on a channel in the order connections submit them. The
//! loop takes the first one, then drains whatever else has queued meanwhile
//! (up to a size cap) into ONE batch. So a batch closes on size or when the
//! queue is idle, never on a timer: under light load each command goes alone
//! at once; under heavy load batches grow and the fsync cost is shared (group
//! commit, as TiKV's raftstore does). Up to [`MAX_INFLIGHT_BATCHES`] batches
//! are in flight, submitted in order.
//!
//! Every command is numbered (origin node, sequence). A batch whose outcome
//! is not learned (the leader changed, a forwarded reply was lost or timed
//! out) is sent again, with every other unresolved batch, in order, to the
//! new leader; apply recognises ids it has seen ([`crate::dedup`]) and answers
//! `Duplicate`, so nothing is lost and nothing runs twice. Each request
//! carries the floor below which every id is resolved, which keeps apply's
//! dedup sets small.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::command::{CmdResult, Command, Envelope, Guarded, Request, Response};
use crate::error::RaftError;
use crate::metrics::{Timings, TIMINGS};
use crate::rpc::{Redirect, Reply as RpcReply, Rpc};
use crate::transport::Transport;
use crate::types::{NodeId, Raft};

/// Most commands in one batch.
pub const MAX_BATCH_CMDS: usize = 4096;
/// Most payload bytes in one batch (approximate).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Batches proposed but not yet resolved.
pub const MAX_INFLIGHT_BATCHES: usize = 8;
/// A forwarded batch without a reply for this long is sent again.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often unresolved batches are checked against the current leader.
const CHECK_EVERY: Duration = Duration::from_millis(20);

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
    /// Batches proposed (each is one log entry).
    pub entries: AtomicU64,
    pub commands: AtomicU64,
    /// Batches sent to another node's leader.
    pub forwarded: AtomicU64,
    /// Batches sent again after a leader change or a lost reply.
    pub resent: AtomicU64,
}

fn approx_size(c: &Command) -> usize {
    match c {
        Command::Publish(p) | Command::GuardedPublish(Guarded { cmd: p, .. }) => {
            64 + p.msg.topic.len() + p.msg.payload.len()
        }
        _ => 64,
    }
}

impl Proposer {
    pub fn start(raft: Raft, transport: Arc<Transport>, node_id: NodeId) -> Proposer {
        let (tx, rx) = mpsc::channel(65536);
        let stats = Arc::new(ProposerStats::default());
        let lp = Loop {
            raft,
            transport,
            me: node_id,
            stats: stats.clone(),
            inflight: BTreeMap::new(),
            gen: 0,
            need_resend: false,
            next_seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(1),
        };
        tokio::spawn(lp.run(rx));
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

struct Batch {
    req: Request,
    replies: Vec<Option<Reply>>,
    /// The attempt whose failure counts (older attempts may still answer).
    gen: u64,
    /// Where the latest attempt went (None: not sent, no leader).
    target: Option<NodeId>,
    /// When it was proposed (for the commit latency).
    proposed: Instant,
}

enum Outcome {
    Applied(Response),
    Retry(String),
    Fatal(String),
}

struct Loop {
    raft: Raft,
    transport: Arc<Transport>,
    me: NodeId,
    stats: Arc<ProposerStats>,
    /// Unresolved batches by first sequence number.
    inflight: BTreeMap<u64, Batch>,
    gen: u64,
    need_resend: bool,
    next_seq: u64,
}

type OutcomeTx = mpsc::UnboundedSender<(u64, u64, Outcome)>;

impl Loop {
    async fn run(mut self, mut rx: mpsc::Receiver<Proposal>) {
        let (otx, mut orx) = mpsc::unbounded_channel();
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.inflight.len() < MAX_INFLIGHT_BATCHES && !self.need_resend;
            tokio::select! {
                biased;
                Some((first, gen, outcome)) = orx.recv() => self.on_outcome(first, gen, outcome),
                _ = check.tick() => {
                    self.check_leader();
                    if self.need_resend {
                        self.resend_all(&otx).await;
                    }
                }
                p = rx.recv(), if room => {
                    let Some(first) = p else { break };
                    self.new_batch(first, &mut rx, &otx).await;
                }
            }
        }
        // The broker is stopping: fail whatever is still unresolved.
        for (_, b) in std::mem::take(&mut self.inflight) {
            fail(b.replies, || RaftError::Stopped);
        }
    }

    fn floor(&self) -> u64 {
        self.inflight
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_seq + 1)
    }

    async fn new_batch(
        &mut self,
        first: Proposal,
        rx: &mut mpsc::Receiver<Proposal>,
        otx: &OutcomeTx,
    ) {
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
        let first_seq = self.next_seq + 1;
        for p in batch {
            self.next_seq += 1;
            cmds.push(Envelope {
                seq: self.next_seq,
                cmd: p.cmd,
            });
            replies.push(p.reply);
        }
        self.stats.entries.fetch_add(1, Ordering::Relaxed);
        self.stats
            .commands
            .fetch_add(cmds.len() as u64, Ordering::Relaxed);
        let b = Batch {
            req: Request {
                origin: self.me,
                floor: 0,
                cmds,
            },
            replies,
            gen: self.gen,
            target: None,
            proposed: Instant::now(),
        };
        self.inflight.insert(first_seq, b);
        if !self.need_resend {
            self.attempt(first_seq, otx).await;
        }
    }

    fn on_outcome(&mut self, first: u64, gen: u64, outcome: Outcome) {
        match outcome {
            Outcome::Applied(resp) => {
                let Some(b) = self.inflight.remove(&first) else {
                    return; // an earlier attempt already resolved it
                };
                Timings::since(&TIMINGS.commit, b.proposed);
                let mut results = resp.results.into_iter();
                for r in b.replies {
                    let res = results
                        .next()
                        .ok_or(RaftError::Raft("missing result".into()));
                    if let Some(r) = r {
                        let _ = r.send(res);
                    }
                }
            }
            Outcome::Retry(why) => {
                if self.inflight.get(&first).is_some_and(|b| b.gen == gen) {
                    debug!(reason = %why, "batch not confirmed; will resend");
                    self.need_resend = true;
                }
            }
            Outcome::Fatal(why) => {
                if let Some(b) = self.inflight.remove(&first) {
                    warn!(reason = %why, "proposal failed");
                    fail(b.replies, || RaftError::Raft(why.clone()));
                }
            }
        }
    }

    /// A batch whose attempt went to a node that is no longer the leader
    /// will not be answered by it: resend.
    fn check_leader(&mut self) {
        let leader = self.raft.metrics().borrow().current_leader;
        if let Some(l) = leader {
            if self.inflight.values().any(|b| b.target != Some(l)) {
                self.need_resend = true;
            }
        }
    }

    async fn resend_all(&mut self, otx: &OutcomeTx) {
        if self.raft.metrics().borrow().current_leader.is_none() {
            return;
        }
        self.need_resend = false;
        self.gen += 1;
        let firsts: Vec<u64> = self.inflight.keys().copied().collect();
        for f in firsts {
            if let Some(b) = self.inflight.get_mut(&f) {
                b.gen = self.gen;
                self.stats.resent.fetch_add(1, Ordering::Relaxed);
            }
            self.attempt(f, otx).await;
            if self.need_resend {
                break; // the leader went away again; the next check retries
            }
        }
    }

    /// Sends one batch to the current leader.
    async fn attempt(&mut self, first: u64, otx: &OutcomeTx) {
        let floor = self.floor();
        let (leader, info) = crate::node::leader_of(&self.raft);
        let addr = info.map(|n| n.cluster);
        let Some(b) = self.inflight.get_mut(&first) else {
            return;
        };
        b.req.floor = floor;
        b.target = leader;
        let gen = b.gen;
        let otx = otx.clone();
        match leader {
            None => self.need_resend = true,
            Some(l) if l == self.me => match self.raft.client_write_ff(b.req.clone()).await {
                Ok(rx) => {
                    tokio::spawn(async move {
                        let outcome = match rx.await {
                            Ok(Ok(resp)) => Outcome::Applied(resp.data),
                            Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                                Outcome::Retry(format!("leadership moved to {:?}", f.leader_id))
                            }
                            Ok(Err(e)) => Outcome::Fatal(e.to_string()),
                            Err(_) => Outcome::Retry("raft dropped the proposal".into()),
                        };
                        let _ = otx.send((first, gen, outcome));
                    });
                }
                Err(fatal) => {
                    let _ = otx.send((first, gen, Outcome::Fatal(fatal.to_string())));
                }
            },
            Some(l) => {
                let Some(addr) = addr else {
                    self.need_resend = true;
                    return;
                };
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                match self
                    .transport
                    .send(l, &addr, Rpc::Forward(b.req.clone()))
                    .await
                {
                    Ok(rx) => {
                        let sent = Instant::now();
                        tokio::spawn(async move {
                            let reply = tokio::time::timeout(FORWARD_TIMEOUT, rx).await;
                            if let Ok(Ok(_)) = &reply {
                                Timings::since(&TIMINGS.forward, sent);
                            }
                            let outcome = match reply {
                                Ok(Ok(RpcReply::Forward(Ok(resp)))) => Outcome::Applied(resp),
                                Ok(Ok(RpcReply::Forward(Err(Redirect::NotLeader { .. })))) => {
                                    Outcome::Retry(format!("node {l} is no longer the leader"))
                                }
                                Ok(Ok(RpcReply::Forward(Err(Redirect::Failed(m))))) => {
                                    Outcome::Retry(format!("leader {l}: {m}"))
                                }
                                Ok(Ok(other)) => {
                                    Outcome::Fatal(format!("unexpected reply {other:?}"))
                                }
                                Ok(Err(_)) => Outcome::Retry(format!("connection to {l} lost")),
                                Err(_) => Outcome::Retry(format!("no reply from {l}")),
                            };
                            let _ = otx.send((first, gen, outcome));
                        });
                    }
                    Err(e) => {
                        debug!(leader = l, error = %e, "cannot forward to the leader");
                        self.need_resend = true;
                    }
                }
            }
        }
    }
}

fn fail(replies: Vec<Option<Reply>>, e: impl Fn() -> RaftError) {
    for r in replies.into_iter().flatten() {
        let _ = r.send(Err(e()));
    }
}
