//! One MQTT connection, from CONNECT to close. Every client-facing
//! acknowledgement is written only after its command is applied.
//!
//! # Layout
//! - [`framed`]: bytes to packets and back; batched writes; the close that
//!   lets the client read our last packet.
//! - [`connect`]: a CONNECT and the settings decide the registration or the
//!   refusal (pure, no I/O).
//! - [`listener_rules`]: what the accepting listener allows of a CONNECT.
//! - [`convert`]: wire values to log values, in one place.
//! - [`inbound`]: a client's PUBLISH: aliases, receive maximum, checks.
//! - [`replies`]: commands awaiting their results, and the packets those
//!   results produce.
//! - [`backlog`]: the session's queued deliveries: from apply's live events
//!   while the client keeps up, else in pages from RocksDB.
//! - [`netsplit`]: each operation's `allow_*_during_netsplit` switch, as
//!   the cluster, the listener and the request set it.
//! - [`register`]: from CONNECT to a registered connection (or a refusal).
//! - [`packets`]: what each packet from the client does.
//! - [`close`]: why a connection ends, and the teardown that commits it.
//! - [`access`]: the login, the ACL's word on publishes and subscriptions,
//!   `max_message_rate`.
//! - [`span`]: the connection's tracing span, given back while it is idle.
//! - this file: [`serve`], the per-connection state ([`Conn`]) and its loop.
//!
//! The loop waits on the socket (client to log) and on the log and timers
//! (log to client), handles whatever is ready, then flushes once.

mod access;
mod backlog;
mod close;
mod connect;
mod convert;
mod framed;
mod inbound;
mod listener_rules;
mod netsplit;

pub use netsplit::{Overrides as NetsplitOverrides, OVERRIDE_KEYS as NETSPLIT_OVERRIDE_KEYS};
mod packets;
mod register;
mod replies;
mod span;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftmq_raft::command as cmd;
use raftmq_raft::node::now_ms;
use raftmq_raft::proposer::ResultRx;
use raftmq_raft::{CmdResult, Command, Delivery, KickReason, Message, RaftError, SubOpts};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tracing::Instrument;

use crate::broker::Broker;
use crate::codec::reason;
use crate::listener::transport::{Established, Reader, Writer};
use crate::registry::{ConnEvent, Inflight};
use crate::session::Outbound;
use crate::shutdown::Shutdown;
use backlog::Backlog;

pub use close::Exit;
pub use framed::ReadReady;
use framed::{Framed, Written};
use inbound::Inbound;
use replies::Replies;

type Io = Framed<Reader, Writer>;

/// Serves one accepted connection, its transport established, until it
/// closes or the node stops (`broker.life`). Its CONNECT must arrive by
/// `est.connect_by`. (`est` is boxed: only the admission reads it, and the
/// task keeps its arguments' room for its whole life.)
pub async fn serve(est: Box<Established>, broker: Arc<Broker>) {
    let shutdown = &broker.life;
    broker.metrics.connections_total.inc();
    broker.metrics.connections_current.inc();
    let mut span = span::ConnSpan::new(est.info.peer, est.info.listener.clone());
    // The handshake and the registration, like the teardown, run once and
    // are each a larger future than the loop: boxed, the memory they need
    // is held only while they run, not by every idle connection. `est`
    // goes in whole: unpacked here, its parts would keep their room.
    // Bound straight from the await (not through an `Option<Conn>` local,
    // which would keep a second Conn-sized slot in the task).
    let Some(mut conn) = Box::pin(admit(est, &broker, shutdown))
        .instrument(span.current())
        .await
    else {
        broker.metrics.connections_current.dec();
        return;
    };
    span.registered(conn.client_id.clone());
    let asleep = AtomicBool::new(false);
    let exit = {
        let run = std::pin::pin!(conn.run(shutdown, &asleep));
        span.while_awake(run, &asleep).await
    };
    Box::pin(conn.teardown(exit))
        .instrument(span.current())
        .await;
    broker.metrics.connections_current.dec();
}

/// From the established transport to a registered connection; `None`:
/// refused (and told so), closed, or the node stopped first.
async fn admit(est: Box<Established>, broker: &Arc<Broker>, shutdown: &Shutdown) -> Option<Conn> {
    let Established {
        stream,
        info,
        connect_by,
    } = *est;
    let (rd, wr) = stream.split();
    let io =
        Framed::new(rd, wr, broker.settings.max_packet_size).counted(broker.metrics.mqtt.clone());
    // Still in its CONNECT handshake when the node stops: it just closes.
    let (io, mut connect) = tokio::select! {
        h = register::handshake(io, broker, connect_by) => h,
        _ = shutdown.cancelled() => None,
    }?;
    if let Err(r) = listener_rules::apply(&info, &mut connect) {
        return register::refuse(io, r).await;
    }
    // A verified client certificate's name logs the client in where the
    // listener says so (use_identity_as_username).
    let cert_identity = info
        .listener
        .use_identity_as_username
        .then(|| info.identity.clone())
        .flatten();
    Conn::register(io, broker, &connect, info.peer, cert_identity).await
}

/// A registered connection: everything its loop and handlers share.
pub struct Conn {
    broker: Arc<Broker>,
    io: Io,
    client_id: Arc<str>,
    conn_id: u64,
    /// The session epoch the registration committed; commands carry it.
    epoch: u64,
    /// Session expiry (seconds) from CONNECT...
    expiry_s: u32,
    /// ...and as a DISCONNECT changed it.
    new_expiry_s: Option<u32>,
    keep_alive: u16,
    /// Deliveries from the log and this node's router.
    events: crate::mailbox::Receiver<ConnEvent>,
    outbound: Outbound,
    inbound: Inbound,
    replies: Replies,
    /// Subscriber acks to commit, as one command per loop turn.
    acks: Vec<u64>,
    backlog: Backlog,
    /// The listener's overrides of the netsplit switches.
    netsplit: netsplit::Overrides,
    /// Who the client is, for the ACL.
    identity: crate::auth::Identity,
    /// The ACL's rules as last read, while they are current.
    acl: access::AclSeen,
    /// `max_message_rate` (None: unlimited, the default; boxed, the
    /// unlimited connection holds one word, not 32 B).
    rate: Option<Box<crate::auth::rate::RateLimit>>,
}

/// The loop's clocks: the keepalive deadline (1.5 × the keepalive after the
/// client's last bytes) and the retransmission tick.
struct Timers {
    keep_alive_window: Option<Duration>,
    keep_alive: Pin<Box<Sleep>>,
    retry: Duration,
    /// `None` while asleep: a tick that finds nothing happened since the
    /// last one gives the connection's buffers back and (unless deliveries
    /// await retransmission) drops the tick, timer entry and all, until
    /// something happens: an idle connection is not woken every second and
    /// holds one timer, its keepalive.
    retry_tick: Option<Interval>,
    /// Something happened since the last retransmission tick.
    busy: bool,
}

impl Timers {
    fn new(keep_alive_s: u16, retry_s: u64) -> Timers {
        let window = (keep_alive_s > 0).then(|| Duration::from_millis(keep_alive_s as u64 * 1500));
        let retry = Duration::from_secs(retry_s);
        Timers {
            keep_alive_window: window,
            keep_alive: Box::pin(tokio::time::sleep(
                window.unwrap_or(Duration::from_secs(86_400 * 365)),
            )),
            retry,
            retry_tick: Some(Self::tick_every(Instant::now(), retry)),
            busy: true,
        }
    }

    /// The retransmission tick (every second, or every `retry` if
    /// shorter), the first at `first`.
    fn tick_every(first: Instant, retry: Duration) -> Interval {
        let mut tick = tokio::time::interval_at(first, Duration::from_secs(1).min(retry));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick
    }

    /// Something happened: the tick runs (again), and the next quiet tick
    /// gives the buffers back.
    fn activity(&mut self) {
        self.busy = true;
        if self.retry_tick.is_none() {
            let first = Instant::now() + Duration::from_secs(1).min(self.retry);
            self.retry_tick = Some(Self::tick_every(first, self.retry));
        }
    }

    /// The next tick of `retry_tick`; pending forever while asleep.
    async fn tick(retry_tick: &mut Option<Interval>) {
        match retry_tick {
            Some(t) => {
                t.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Bytes from the client: the keepalive deadline moves.
    fn client_active(&mut self) {
        if let Some(w) = self.keep_alive_window {
            self.keep_alive.as_mut().reset(Instant::now() + w);
        }
    }
}

impl Conn {
    fn v5(&self) -> bool {
        self.io.protocol().is_v5()
    }

    /// The packet loop: until the client, the broker, the node's stop or an
    /// error ends it.
    /// `asleep` says, after each turn, whether the retransmission tick has
    /// stopped (the connection is idle: its span is given back meanwhile).
    async fn run(&mut self, shutdown: &Shutdown, asleep: &AtomicBool) -> Exit {
        // The timers in their own scope, and the ending boxed: the state
        // kept across the ending's awaits would otherwise sit beside the
        // turn's in every connection's task.
        let exit = {
            let mut timers = Timers::new(self.keep_alive, self.broker.live.get().retry_interval_s);
            loop {
                match self.turn(&mut timers, shutdown).await {
                    Ok(()) => asleep.store(timers.retry_tick.is_none(), Ordering::Relaxed),
                    Err(exit) => break exit,
                }
            }
        };
        Box::pin(self.wind_down(exit)).await
    }

    /// After the loop: answers what a client that ended the connection
    /// itself still waits for, and commits the acknowledgements read.
    async fn wind_down(&mut self, exit: Exit) -> Exit {
        if matches!(exit, Exit::Client { .. }) {
            self.answer_all().await;
        }
        self.commit_acks().await;
        exit
    }

    /// One turn of the loop: handle every packet already read, flush, then
    /// wait for the next thing to happen and handle it.
    async fn turn(&mut self, timers: &mut Timers, shutdown: &Shutdown) -> Result<(), Exit> {
        // Packets read together (the CONNECT's read included) are handled
        // before the socket is read again.
        if !self.io.buffered().is_empty() {
            // Boxed: the packet handlers' future is most of the loop's size,
            // and an idle connection would carry it unused. One allocation
            // per batch of packets read together.
            Box::pin(self.on_buffered()).await?;
        }
        self.read_backlog()?;
        if !self.acks.is_empty() {
            Box::pin(self.commit_acks()).await;
        }
        self.flush().await.map_err(|_| Exit::Closed)?;
        tokio::select! {
            r = self.io.read_more() => {
                match r {
                    Ok(0) | Err(_) => return Err(Exit::Closed),
                    Ok(n) => {
                        self.broker.metrics.bytes_received.inc_by(n as u64);
                    }
                }
                timers.client_active();
                timers.activity();
            }
            ev = self.events.recv() => {
                timers.activity();
                let now = now_ms();
                self.on_event(ev.ok_or(Exit::Closed)?, now)?;
                for _ in 0..1024 {
                    match self.events.try_recv() {
                        Ok(ev) => self.on_event(ev, now)?,
                        Err(_) => break,
                    }
                }
            }
            Some(outcome) = self.replies.next(), if !self.replies.is_empty() => {
                timers.activity();
                self.on_outcome(outcome)?;
                while let Some(outcome) = self.replies.ready() {
                    self.on_outcome(outcome)?;
                }
            }
            _ = timers.keep_alive.as_mut() => return Err(Exit::KeepAlive),
            _ = shutdown.cancelled() => return Err(Exit::ServerShutdown),
            _ = Timers::tick(&mut timers.retry_tick), if timers.retry_tick.is_some() => {
                if !std::mem::replace(&mut timers.busy, false) {
                    self.io.shrink_idle();
                    self.events.shrink();
                    self.replies.shrink();
                    self.inbound.shrink();
                    self.outbound.shrink();
                    self.acl.forget();
                    if !self.retransmits() {
                        timers.retry_tick = None;
                    }
                }
                if !self.v5() {
                    let n = self.outbound.retransmit(timers.retry, now_ms(), &mut self.io);
                    self.broker.metrics.retransmits.inc_by(n as u64);
                }
            }
        }
        self.broker.metrics.outbound(&mut self.outbound.counts);
        Ok(())
    }

    /// Whether deliveries may be due for retransmission (MQTT 3 only).
    fn retransmits(&self) -> bool {
        !self.v5() && self.outbound.inflight() > 0
    }

    /// Handles every complete packet already read. They arrived together,
    /// so they share one reading of the clock: the time a message was
    /// received, from which its expiry counts, even if handling an earlier
    /// packet of the batch waited.
    async fn on_buffered(&mut self) -> Result<(), Exit> {
        let now = now_ms();
        while let Some(p) = self
            .io
            .next_buffered()
            .map_err(|e| Exit::Error(e.reason_code(), e.to_string()))?
        {
            if !self.on_packet_now(&p, now) {
                self.on_packet(p, now).await?;
            }
        }
        Ok(())
    }

    /// The client's packets before its DISCONNECT get their answers before
    /// the connection closes (each waits at most the commit timeout).
    async fn answer_all(&mut self) {
        while let Some(outcome) = self.replies.next().await {
            if self.on_outcome(outcome).is_err() {
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
    }

    /// Writes what is queued, counting it.
    async fn flush(&mut self) -> std::io::Result<()> {
        let written = self.io.flush().await?;
        self.count(written);
        Ok(())
    }

    fn count(&self, w: Written) {
        self.broker.metrics.messages_sent.inc_by(w.publishes);
        self.broker.metrics.bytes_sent.inc_by(w.bytes);
    }

    /// Something the log or the broker has for this connection.
    fn on_event(&mut self, ev: ConnEvent, now: u64) -> Result<(), Exit> {
        match ev {
            ConnEvent::Deliver(epoch, d) => {
                if epoch.is_none_or(|e| e == self.epoch) {
                    if d.seq.is_none() {
                        self.offer(d, now);
                    } else if let Some(d) = self.backlog.on_live(d, self.outbound.waiting()) {
                        self.offer(d, now);
                    }
                }
                Ok(())
            }
            ConnEvent::Kick(epoch, why) if epoch == self.epoch => Err(match why {
                KickReason::TakenOver => Exit::TakenOver,
                KickReason::Administrative => Exit::Disconnected,
            }),
            ConnEvent::Kick(..) => Ok(()),
            // A registration held through a netsplit was committed: the
            // session (resumed, maybe with a queue) is this connection's
            // now; read its queue from the head.
            ConnEvent::Registered(epoch)
                if epoch == self.epoch && raftmq_raft::is_held_epoch(epoch) =>
            {
                self.backlog = Backlog::resume(None);
                Ok(())
            }
            ConnEvent::Registered(_) => Ok(()),
            ConnEvent::Disconnect => Err(Exit::Admin),
            ConnEvent::Describe(answer) => {
                let _ = answer.send(Inflight {
                    inflight: self.outbound.inflight(),
                    waiting: self.outbound.waiting(),
                });
                Ok(())
            }
        }
    }

    /// Reads the session's queue from RocksDB while the backlog wants it
    /// (bounded by its read-ahead) and offers what it read.
    fn read_backlog(&mut self) -> Result<(), Exit> {
        while let Some(from) = self.backlog.wants_read(self.outbound.waiting()) {
            let page = self
                .broker
                .node
                .queue_page(
                    &self.client_id,
                    from,
                    backlog::PAGE_ITEMS,
                    backlog::PAGE_BYTES,
                )
                .map_err(|e| {
                    Exit::error(
                        reason::UNSPECIFIED_ERROR,
                        format!("reading the session's queue: {e}"),
                    )
                })?;
            let now = now_ms();
            for (d, dup) in self.backlog.on_page(page) {
                self.outbound
                    .offer(d, dup, now, &mut self.io, &mut self.acks);
            }
        }
        Ok(())
    }

    /// Offers one delivery to the outbound window.
    fn offer(&mut self, d: Delivery, now: u64) {
        self.outbound
            .offer(d, false, now, &mut self.io, &mut self.acks);
    }

    /// New `$SYS` subscribers get the latest values at once.
    fn send_sys(&mut self, filters: &[(String, SubOpts)], now: u64) {
        let is_sys = |(f, _): &&(String, SubOpts)| f.starts_with("$SYS");
        // The values render every metric and count the node's descriptors:
        // only for a subscription that asks for them, not for every SUBSCRIBE.
        if !filters.iter().any(|f| is_sys(&f)) {
            return;
        }
        let sys = crate::sys::values(&self.broker);
        for (f, o) in filters.iter().filter(is_sys) {
            for (topic, value) in sys
                .iter()
                .filter(|(t, _)| raftmq_raft::trie::filter_matches(f, t))
            {
                let msg = Arc::new(Message::system(topic.clone(), value.clone(), true, now));
                let d = Delivery::live(msg, 0, true, o.sub_id.into_iter().collect());
                self.offer(d, now);
            }
        }
    }

    /// Is this operation accepted locally now: is the node in netsplit, and
    /// its switch on (for this request)?
    fn accepts_locally(&self, op: netsplit::Op, user_properties: &[(String, String)]) -> bool {
        self.broker.node.in_netsplit()
            && netsplit::allowed(
                op,
                &self.broker.node.summary().settings,
                &self.netsplit,
                user_properties,
            )
    }

    /// Accepts a command locally during a netsplit: its reply goes out once
    /// it is on this node's disk; it commits when quorum returns.
    async fn submit_local(&mut self, command: Command, reply: replies::Reply) -> Result<(), Exit> {
        let rx = self.broker.node.submit_local(command).await;
        self.await_reply(rx, reply)
    }

    /// Proposes a command; its reply goes out once it is applied.
    async fn submit(&mut self, command: Command, reply: replies::Reply) -> Result<(), Exit> {
        let rx = self.broker.node.submit(command).await;
        self.await_reply(rx, reply)
    }

    /// Parks `reply` until the submitted command's result comes.
    fn await_reply(
        &mut self,
        rx: Result<ResultRx, RaftError>,
        reply: replies::Reply,
    ) -> Result<(), Exit> {
        let rx = rx.map_err(|_| Exit::error(reason::SERVER_UNAVAILABLE, "proposer stopped"))?;
        self.replies.push(rx, reply);
        Ok(())
    }

    /// Commits the subscriber's acks collected so far, as one command.
    async fn commit_acks(&mut self) {
        if !self.acks.is_empty() {
            let ack = Command::Ack(cmd::Ack {
                client_id: self.client_id.to_string(),
                epoch: self.epoch,
                seqs: std::mem::take(&mut self.acks),
            });
            let _ = self.broker.node.submit_forget(ack).await;
        }
    }
}

/// Proposes a client's command and waits for its final answer (the
/// proposer gives one by the command's deadline).
async fn commit(broker: &Broker, command: Command) -> Result<CmdResult, RaftError> {
    let rx = broker.node.submit(command).await?;
    replies::wait(rx, replies::answer_bound(&broker.settings)).await
}

/// Proposes one of the connection's own commands (its disconnect), which
/// is held until it commits however long that takes, and waits for it at
/// most the commit timeout (`netsplit_wait` while in netsplit).
async fn commit_held(broker: &Broker, command: Command) -> Result<CmdResult, RaftError> {
    let rx = broker.node.submit_own(command).await?;
    let s = &broker.settings;
    let ms = if broker.node.netsplit().active() {
        s.netsplit_wait_ms
    } else {
        s.commit_timeout_ms
    };
    replies::wait(rx, Duration::from_millis(ms)).await
}
