//! The proposer: turns a stream of client commands into log entries, on the
//! leader directly or, on a follower, by forwarding batches to the leader.
//!
//! Commands queue on a channel in the order connections submit them. The
//! loop takes the first one, then drains whatever else has queued meanwhile
//! (up to a size cap) into ONE batch. So a batch closes on size or when the
//! queue is idle, never on a timer: under light load each command goes alone
//! at once; under heavy load batches grow and the fsync cost is shared (group
//! commit, as TiKV's raftstore does). [`MAX_INFLIGHT_BATCHES`] (one) batch
//! is in flight at a time: while it commits, the next gathers everything
//! submitted meanwhile, so the batch grows with the load instead of the
//! count of log entries (each costs a log write, an fsync and an apply).
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
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::command::{CmdResult, Command, Envelope, Guarded, Request, Response};
use crate::error::RaftError;
use crate::metrics::{Timings, TIMINGS};
use crate::netsplit::Netsplit;
use crate::rpc::{Redirect, Reply as RpcReply, Rpc};
use crate::transport::Transport;
use crate::types::{NodeId, Raft};
use raftmq_storage::Store;

/// Most commands in one batch.
pub const MAX_BATCH_CMDS: usize = 4096;
/// Most payload bytes in one batch (approximate).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Batches proposed but not yet resolved (while this node is not in
/// netsplit; held batches are not counted against it). One: measured with
/// `benches/compare.sh` (saturation, one node), eight in flight cut the
/// stream into entries of about 100 commands, each with its own fsync and
/// apply, and delivered half of what one in flight does with entries of
/// about 500 (benches/RESULTS.md, issue 14).
pub const MAX_INFLIGHT_BATCHES: usize = 1;
/// A forwarded batch without a reply for this long is sent again.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often unresolved batches are checked against the current leader and
/// their deadlines.
const CHECK_EVERY: Duration = Duration::from_millis(20);
/// How long the ids of commands answered `Unknown` are kept below the
/// floor, so that apply still recognises a second copy of one.
const ABANDONED_HOLD: Duration = Duration::from_secs(120);

pub type Reply = oneshot::Sender<Result<CmdResult, RaftError>>;
pub type ResultRx = oneshot::Receiver<Result<CmdResult, RaftError>>;

/// When a command must have its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// A client (or operator) waits: the commit timeout, cut to
    /// `netsplit_wait` once this node is in netsplit.
    Client,
    /// Held until it is resolved, however long: the node's own commands
    /// (acks, ticks, wills), which no one is told failed.
    Never,
    /// Accepted locally during a netsplit (an `allow_*_during_netsplit`
    /// switch is on): written to this node's disk (synced) and answered
    /// `Done` at once, then proposed when quorum returns, however long that
    /// takes, across restarts, with the same id (so it applies once).
    Local,
}

/// The two deadlines of [`Deadline::Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub commit: Duration,
    pub netsplit_wait: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            commit: Duration::from_secs(10),
            netsplit_wait: Duration::from_secs(2),
        }
    }
}

struct Proposal {
    cmd: Command,
    reply: Option<Reply>,
    deadline: Deadline,
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
    /// Client commands discarded at their deadline without leaving this
    /// node (answered `NotCommitted`).
    pub discarded: AtomicU64,
    /// Client commands whose outcome was unknown at their deadline.
    pub unknown: AtomicU64,
    /// Commands accepted locally during a netsplit, and those of them
    /// committed since.
    pub local: AtomicU64,
    pub local_committed: AtomicU64,
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
    /// Starts the loop, first taking up the commands a previous run of
    /// this node accepted locally and had not committed (they keep their
    /// ids, so each applies once).
    pub fn start(
        raft: Raft,
        transport: Arc<Transport>,
        node_id: NodeId,
        netsplit: watch::Receiver<Netsplit>,
        timeouts: Timeouts,
        store: Store,
    ) -> Result<Proposer, RaftError> {
        let (tx, rx) = mpsc::channel(65536);
        let stats = Arc::new(ProposerStats::default());
        let mut lp = Loop {
            raft,
            transport,
            me: node_id,
            stats: stats.clone(),
            netsplit,
            timeouts,
            store,
            inflight: BTreeMap::new(),
            abandoned: BTreeMap::new(),
            gen: 0,
            need_resend: true,
            next_seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(1),
        };
        lp.take_up_local()?;
        lp.need_resend = !lp.inflight.is_empty();
        tokio::spawn(lp.run(rx));
        Ok(Proposer { tx, stats })
    }

    pub fn stats(&self) -> &ProposerStats {
        &self.stats
    }

    /// Queues a command; the receiver yields its result once it is applied,
    /// or its final failure or unknown outcome at `deadline`.
    pub async fn submit(&self, cmd: Command, deadline: Deadline) -> Result<ResultRx, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal {
                cmd,
                reply: Some(reply),
                deadline,
            })
            .await
            .map_err(|_| RaftError::Stopped)?;
        Ok(rx)
    }

    /// Queues a command whose result nobody waits for (subscriber acks).
    pub async fn submit_forget(&self, cmd: Command) -> Result<(), RaftError> {
        self.tx
            .send(Proposal {
                cmd,
                reply: None,
                deadline: Deadline::Never,
            })
            .await
            .map_err(|_| RaftError::Stopped)
    }

    /// Proposes and waits until applied (or, with [`Deadline::Client`],
    /// until its deadline).
    pub async fn propose(&self, cmd: Command, deadline: Deadline) -> Result<CmdResult, RaftError> {
        let rx = self.submit(cmd, deadline).await?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }
}

/// One command of a batch, on the proposer's side.
struct Pending {
    reply: Option<Reply>,
    deadline: Deadline,
    /// Answered `Unknown` at its deadline: never sent again.
    abandoned: bool,
}

impl Pending {
    fn new(reply: Option<Reply>, deadline: Deadline) -> Pending {
        Pending {
            reply,
            deadline,
            abandoned: false,
        }
    }
}

struct Batch {
    req: Request,
    /// One per command of `req`, in order.
    pending: Vec<Pending>,
    /// The attempt whose failure counts (older attempts may still answer).
    gen: u64,
    /// Where the latest attempt went (None: not sent, no leader).
    target: Option<NodeId>,
    /// When it was proposed (for the commit latency).
    proposed: Instant,
    /// Some attempt may have reached a leader's log.
    dispatched: bool,
}

impl Batch {
    /// A batch of `origin`'s commands, not sent yet.
    fn new(
        origin: NodeId,
        cmds: Vec<Envelope>,
        pending: Vec<Pending>,
        gen: u64,
        now: Instant,
    ) -> Batch {
        Batch {
            req: Request {
                origin,
                floor: 0,
                cmds: Arc::new(cmds),
            },
            pending,
            gen,
            target: None,
            proposed: now,
            dispatched: false,
        }
    }
}

enum Outcome {
    /// The results of the commands whose sequence numbers the attempt sent.
    Applied(Response, Vec<u64>),
    Retry(String),
    Fatal(String),
}

struct Loop {
    raft: Raft,
    transport: Arc<Transport>,
    me: NodeId,
    stats: Arc<ProposerStats>,
    netsplit: watch::Receiver<Netsplit>,
    timeouts: Timeouts,
    /// Where commands accepted locally are kept until committed.
    store: Store,
    /// Unresolved batches by first sequence number.
    inflight: BTreeMap<u64, Batch>,
    /// Batches given up with their outcome unknown, by first sequence
    /// number, with when: they hold the floor for [`ABANDONED_HOLD`].
    abandoned: BTreeMap<u64, Instant>,
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
            // While in netsplit nothing is sent, and commands are taken in
            // (held) so that each gets its answer by its deadline.
            let room = (self.inflight.len() < MAX_INFLIGHT_BATCHES && !self.need_resend)
                || self.in_netsplit();
            tokio::select! {
                biased;
                Some((first, gen, outcome)) = orx.recv() => self.on_outcome(first, gen, outcome),
                _ = check.tick() => {
                    self.expire();
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
            for p in b.pending {
                if let Some(r) = p.reply {
                    let _ = r.send(Err(RaftError::Stopped));
                }
            }
        }
    }

    fn in_netsplit(&self) -> bool {
        self.netsplit.borrow().active()
    }

    fn floor(&self) -> u64 {
        let held = self.abandoned.keys().next().copied();
        let live = self.inflight.keys().next().copied();
        match (held, live) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(self.next_seq + 1),
        }
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
        let now = Instant::now();
        let mut pending = Vec::with_capacity(batch.len());
        let mut cmds = Vec::with_capacity(batch.len());
        let first_seq = self.next_seq + 1;
        for p in batch {
            self.next_seq += 1;
            cmds.push(Envelope {
                seq: self.next_seq,
                cmd: p.cmd,
            });
            pending.push(Pending::new(p.reply, p.deadline));
        }
        self.keep_local(&cmds, &mut pending);
        self.stats.entries.fetch_add(1, Ordering::Relaxed);
        self.stats
            .commands
            .fetch_add(cmds.len() as u64, Ordering::Relaxed);
        let b = Batch::new(self.me, cmds, pending, self.gen, now);
        self.inflight.insert(first_seq, b);
        if !self.need_resend {
            self.attempt(first_seq, otx).await;
        }
    }

    /// Writes the batch's commands accepted locally to disk (one synced
    /// write) and answers them `Done`; if the write fails they are answered
    /// with the error, and held as the node's own commands.
    fn keep_local(&mut self, cmds: &[Envelope], pending: &mut [Pending]) {
        let local: Vec<(u64, Vec<u8>)> = cmds
            .iter()
            .zip(pending.iter())
            .filter(|(_, p)| p.deadline == Deadline::Local)
            .filter_map(|(e, _)| Some((e.seq, crate::error::encode(e).ok()?)))
            .collect();
        if local.is_empty() {
            return;
        }
        let written = self
            .store
            .put_held(local.iter().map(|(s, b)| (*s, b.as_slice())));
        for p in pending.iter_mut().filter(|p| p.deadline == Deadline::Local) {
            let answer = match &written {
                Ok(()) => Ok(CmdResult::Done),
                Err(e) => {
                    p.deadline = Deadline::Never;
                    Err(RaftError::NotCommitted(format!(
                        "cannot keep it locally: {e}"
                    )))
                }
            };
            if let Some(r) = p.reply.take() {
                let _ = r.send(answer);
            }
        }
        if written.is_ok() {
            self.stats
                .local
                .fetch_add(local.len() as u64, Ordering::Relaxed);
        }
    }

    /// Takes up the commands accepted locally by an earlier run, in order,
    /// as batches that nobody waits for.
    fn take_up_local(&mut self) -> Result<(), RaftError> {
        let held = self.store.held()?;
        if held.is_empty() {
            return Ok(());
        }
        tracing::info!(
            commands = held.len(),
            "proposing again the commands accepted during a netsplit and not yet committed"
        );
        let now = Instant::now();
        for chunk in held.chunks(MAX_BATCH_CMDS) {
            let mut cmds = Vec::with_capacity(chunk.len());
            for (seq, bytes) in chunk {
                let env: Envelope = crate::error::decode(bytes)?;
                debug_assert_eq!(env.seq, *seq);
                cmds.push(env);
            }
            let pending = cmds
                .iter()
                .map(|_| Pending::new(None, Deadline::Local))
                .collect();
            let first = cmds[0].seq;
            let mut b = Batch::new(self.me, cmds, pending, self.gen, now);
            // An earlier run may have sent them.
            b.dispatched = true;
            self.inflight.insert(first, b);
        }
        Ok(())
    }

    fn on_outcome(&mut self, first: u64, gen: u64, outcome: Outcome) {
        match outcome {
            Outcome::Applied(resp, seqs) => {
                let Some(b) = self.inflight.remove(&first) else {
                    return; // an earlier attempt already resolved it
                };
                Timings::since(&TIMINGS.commit, b.proposed);
                let local: Vec<u64> = b
                    .req
                    .cmds
                    .iter()
                    .zip(&b.pending)
                    .filter(|(_, p)| p.deadline == Deadline::Local)
                    .map(|(e, _)| e.seq)
                    .collect();
                if !local.is_empty() {
                    self.stats
                        .local_committed
                        .fetch_add(local.len() as u64, Ordering::Relaxed);
                    if let Err(e) = self.store.delete_held(local) {
                        warn!(error = %e, "cannot forget committed netsplit commands; a restart proposes them again (they apply once)");
                    }
                }
                // The attempt's commands and the batch's are both in
                // ascending sequence order (the batch may since have lost
                // some): one walk pairs each command with its result.
                let mut results = seqs.into_iter().zip(resp.results).peekable();
                for (env, p) in b.req.cmds.iter().zip(b.pending) {
                    while results.next_if(|(seq, _)| *seq < env.seq).is_some() {}
                    let res = results.next_if(|(seq, _)| *seq == env.seq);
                    if let Some(r) = p.reply {
                        let _ = r.send(
                            res.map(|(_, result)| result)
                                .ok_or(RaftError::Raft("missing result".into())),
                        );
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
                    for p in b.pending {
                        if let Some(r) = p.reply {
                            let _ = r.send(Err(RaftError::Raft(why.clone())));
                        }
                    }
                }
            }
        }
    }

    /// When the client commands of a batch proposed at `proposed` must be
    /// answered (every command of a batch was queued at once): the commit
    /// timeout, or `netsplit_wait` after this node entered netsplit (or
    /// after the batch, if later).
    fn client_due(&self, proposed: Instant, split: Option<Instant>) -> Instant {
        let commit = proposed + self.timeouts.commit;
        match split {
            Some(s) => commit.min(s.max(proposed) + self.timeouts.netsplit_wait),
            None => commit,
        }
    }

    /// Answers every client command past its deadline: discarded with a
    /// final `NotCommitted` if it never left this node, `Unknown` (and
    /// never sent again) if it did. A batch not yet due costs one
    /// comparison.
    fn expire(&mut self) {
        let now = Instant::now();
        let split = self.netsplit.borrow().since;
        self.abandoned.retain(|_, at| at.elapsed() < ABANDONED_HOLD);
        let waiting = |p: &Pending| p.reply.is_some() && p.deadline == Deadline::Client;
        let due: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, b)| self.client_due(b.proposed, split) <= now)
            .filter(|(_, b)| b.pending.iter().any(waiting))
            .map(|(first, _)| *first)
            .collect();
        for first in due {
            let Some(mut b) = self.inflight.remove(&first) else {
                continue;
            };
            let mut i = 0;
            while i < b.pending.len() {
                if !waiting(&b.pending[i]) {
                    i += 1;
                    continue;
                }
                if b.dispatched {
                    let p = &mut b.pending[i];
                    if let Some(r) = p.reply.take() {
                        let _ = r.send(Err(RaftError::Unknown(
                            "sent to a leader, and no result came back in time".into(),
                        )));
                    }
                    p.abandoned = true;
                    self.stats.unknown.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                } else {
                    let p = b.pending.remove(i);
                    Arc::make_mut(&mut b.req.cmds).remove(i);
                    if let Some(r) = p.reply {
                        let _ = r.send(Err(RaftError::NotCommitted(if split.is_some() {
                            "this node is in netsplit; the command was never proposed".into()
                        } else {
                            "no leader took the command in time; it was never proposed".into()
                        })));
                    }
                    self.stats.discarded.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !b.pending.is_empty() {
                self.inflight.insert(first, b);
            } else if b.dispatched {
                self.abandoned.insert(first, now);
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
        if self.raft.metrics().borrow().current_leader.is_none() || self.in_netsplit() {
            return;
        }
        self.need_resend = false;
        self.gen += 1;
        let firsts: Vec<u64> = self.inflight.keys().copied().collect();
        for f in firsts {
            if let Some(b) = self.inflight.get_mut(&f) {
                b.gen = self.gen;
                if b.dispatched {
                    self.stats.resent.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.attempt(f, otx).await;
            if self.need_resend {
                break; // the leader went away again; the next check retries
            }
        }
    }

    /// Drops the commands of batch `first` answered `Unknown` (they are
    /// never sent again). False if none is left.
    fn prune(&mut self, first: u64) -> bool {
        let Some(b) = self.inflight.get_mut(&first) else {
            return false;
        };
        if b.pending.iter().any(|p| p.abandoned) {
            let pending = std::mem::take(&mut b.pending);
            let cmds = Arc::unwrap_or_clone(std::mem::take(&mut b.req.cmds));
            let mut kept = Vec::with_capacity(cmds.len());
            for (p, c) in pending.into_iter().zip(cmds) {
                if !p.abandoned {
                    b.pending.push(p);
                    kept.push(c);
                }
            }
            b.req.cmds = Arc::new(kept);
        }
        if b.pending.is_empty() {
            self.inflight.remove(&first);
            self.abandoned.insert(first, Instant::now());
            return false;
        }
        true
    }

    /// Sends one batch to the current leader (unless this node is in
    /// netsplit: then it is held).
    async fn attempt(&mut self, first: u64, otx: &OutcomeTx) {
        if self.in_netsplit() {
            self.need_resend = true;
            return;
        }
        if !self.prune(first) {
            return;
        }
        let floor = self.floor();
        let (leader, info) = crate::node::leader_of(&self.raft);
        let addr = info.map(|n| n.cluster);
        let Some(b) = self.inflight.get_mut(&first) else {
            return;
        };
        b.req.floor = floor;
        b.target = leader;
        let gen = b.gen;
        let seqs: Vec<u64> = b.req.cmds.iter().map(|e| e.seq).collect();
        let otx = otx.clone();
        match leader {
            None => self.need_resend = true,
            Some(l) if l == self.me => {
                b.dispatched = true;
                match self.raft.client_write_ff(b.req.clone()).await {
                    Ok(rx) => {
                        tokio::spawn(async move {
                            let outcome = match rx.await {
                                Ok(Ok(resp)) => Outcome::Applied(resp.data, seqs),
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
                }
            }
            Some(l) => {
                let Some(addr) = addr else {
                    self.need_resend = true;
                    return;
                };
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                let req = b.req.clone();
                match self.transport.send(l, &addr, Rpc::Forward(req)).await {
                    Ok(rx) => {
                        if let Some(b) = self.inflight.get_mut(&first) {
                            b.dispatched = true;
                        }
                        let sent = Instant::now();
                        tokio::spawn(async move {
                            let reply = tokio::time::timeout(FORWARD_TIMEOUT, rx).await;
                            if let Ok(Ok(_)) = &reply {
                                Timings::since(&TIMINGS.forward, sent);
                            }
                            let outcome = match reply {
                                Ok(Ok(RpcReply::Forward(Ok(resp)))) => Outcome::Applied(resp, seqs),
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
