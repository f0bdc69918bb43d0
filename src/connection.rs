//! One MQTT connection, from CONNECT to close: the handshake, the packet loop
//! (reads, deliveries, commit results, keepalive, retransmission) and the
//! teardown that commits the disconnect. Every client-facing acknowledgement
//! is written only after its command is applied.
//!
//! Socket writes are batched: packets produced while handling whatever is
//! ready are encoded into one buffer and written together.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::stream::{FuturesOrdered, StreamExt};
use raftmq_raft::node::now_ms;
use raftmq_raft::proposer::ResultRx;
use raftmq_raft::trie::{split_shared, valid_filter, valid_topic};
use raftmq_raft::{
    CmdResult, Command, Delivery, Message, MsgProps, RaftError, SubOpts, Will, NEVER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::codec::{
    self, reason, ConnAck, ConnAckProperties, Connect, DecodeError, Packet, Protocol, PubResp,
    Publish,
};
use crate::registry::ConnEvent;
use crate::session::{AckEffect, Outbound};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to send once a command is applied.
enum Action {
    PubAck(u16),
    PubRec(u16),
    PubComp(u16),
    SubAck {
        pid: u16,
        codes: Vec<Option<u8>>,
        filters: Vec<(String, SubOpts)>,
    },
    UnsubAck {
        pid: u16,
        codes: Vec<Option<u8>>,
    },
    PubRel(u16),
}

type PendingFut = Pin<Box<dyn Future<Output = (Action, Result<CmdResult, RaftError>)> + Send>>;

/// Inbound QoS 1/2 flows the client has open, against the receive maximum
/// we advertised: QoS 1 until PUBACK, QoS 2 (by packet id) until PUBREL.
#[derive(Default)]
struct Inbound {
    qos1: usize,
    qos2: std::collections::HashSet<u16>,
}

impl Inbound {
    fn count(&self) -> usize {
        self.qos1 + self.qos2.len()
    }
}

/// Why the loop ended.
#[derive(Debug)]
enum Exit {
    /// DISCONNECT from the client; `will` = MQTT 5 "disconnect with will".
    Client {
        will: bool,
    },
    /// Socket closed or failed without DISCONNECT.
    Closed,
    /// We close with this reason code (protocol violation, limits).
    Error(u8, String),
    KeepAlive,
    TakenOver,
    Admin,
}

/// Serves one accepted TCP connection until it closes.
pub async fn serve(stream: TcpStream, broker: Arc<Broker>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    broker.metrics.connections_total.inc();
    broker.metrics.connections_current.inc();
    let span = tracing::info_span!("conn", %peer, client_id = tracing::field::Empty);
    let mut c = Conn::new(broker.clone(), rd, wr);
    async {
        match c.handshake().await {
            Ok(Some(connect)) => c.run(*connect).await,
            Ok(None) => {}
            Err(e) => debug!(error = %e, "connection ended during handshake"),
        }
    }
    .instrument(span)
    .await;
    broker.metrics.connections_current.dec();
}

struct Conn {
    broker: Arc<Broker>,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    rbuf: BytesMut,
    wbuf: BytesMut,
    out: Vec<Packet>,
    proto: Protocol,
    client_id: Arc<str>,
    conn_id: u64,
    epoch: u64,
    expiry_s: u32,
    max_packet_in: usize,
}

impl Conn {
    fn new(broker: Arc<Broker>, rd: OwnedReadHalf, wr: OwnedWriteHalf) -> Conn {
        let max_packet_in = broker.settings.max_packet_size;
        Conn {
            broker,
            rd,
            wr,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            out: Vec::new(),
            proto: Protocol::V311,
            client_id: Arc::from(""),
            conn_id: 0,
            epoch: 0,
            expiry_s: 0,
            max_packet_in,
        }
    }

    fn v5(&self) -> bool {
        self.proto.is_v5()
    }

    /// Encodes queued packets and writes them in one go.
    async fn flush(&mut self) -> std::io::Result<()> {
        for p in self.out.drain(..) {
            if matches!(p, Packet::Publish(_)) {
                self.broker.metrics.messages_sent.inc();
            }
            if let Err(e) = codec::encode(&p, self.proto, &mut self.wbuf) {
                warn!(error = %e, "packet could not be encoded; dropped");
            }
        }
        if !self.wbuf.is_empty() {
            self.broker
                .metrics
                .bytes_sent
                .inc_by(self.wbuf.len() as u64);
            self.wr.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads until one packet is decoded.
    async fn read_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        loop {
            if let Some(p) = codec::decode(&mut self.rbuf, self.proto, self.max_packet_in)? {
                return Ok(Some(p));
            }
            match self.rd.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => {
                    self.broker.metrics.bytes_received.inc_by(n as u64);
                }
            }
        }
    }

    async fn connack(
        &mut self,
        code: u8,
        session_present: bool,
        props: ConnAckProperties,
    ) -> std::io::Result<()> {
        self.out.push(Packet::ConnAck(ConnAck {
            session_present,
            code,
            properties: props,
        }));
        self.flush().await
    }

    /// Reads and checks CONNECT. Returns it if the client may proceed.
    async fn handshake(&mut self) -> std::io::Result<Option<Box<Connect>>> {
        let first = match tokio::time::timeout(CONNECT_TIMEOUT, self.read_packet()).await {
            Err(_) => return Ok(None),
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(DecodeError::UnsupportedProtocol { name, level })) => {
                info!(%name, level, "unsupported protocol version");
                self.proto = Protocol::V311;
                self.connack(
                    reason::UNSUPPORTED_PROTOCOL_VERSION,
                    false,
                    Default::default(),
                )
                .await?;
                return Ok(None);
            }
            Ok(Err(e)) => {
                self.broker.metrics.protocol_errors.inc();
                info!(error = %e, "malformed first packet");
                return Ok(None);
            }
        };
        let Packet::Connect(c) = first else {
            self.broker.metrics.protocol_errors.inc();
            info!("first packet is not CONNECT");
            return Ok(None);
        };
        self.proto = c.protocol.unwrap_or(Protocol::V311);
        Ok(Some(c))
    }

    async fn refuse(&mut self, code: u8, why: &str) {
        info!(code, why, "connection refused");
        let props = ConnAckProperties {
            reason_string: self.v5().then(|| why.to_string()),
            ..Default::default()
        };
        let _ = self.connack(code, false, props).await;
    }

    async fn run(&mut self, c: Connect) {
        let broker = self.broker.clone();
        let s = &broker.settings;
        let v5 = self.v5();
        // Client identifier.
        let mut assigned = None;
        let client_id = if c.client_id.is_empty() {
            if v5 || (self.proto == Protocol::V311 && c.clean_start) {
                let id = format!("raftmq-{:016x}", rand::random::<u64>());
                assigned = v5.then(|| id.clone());
                id
            } else {
                return self
                    .refuse(
                        reason::CLIENT_IDENTIFIER_NOT_VALID,
                        "empty client id needs a clean session",
                    )
                    .await;
            }
        } else {
            c.client_id.clone()
        };
        if client_id.len() > s.max_client_id_size {
            return self
                .refuse(reason::CLIENT_IDENTIFIER_NOT_VALID, "client id too long")
                .await;
        }
        tracing::Span::current().record("client_id", client_id.as_str());
        // Authentication.
        if c.properties.authentication_method.is_some() {
            return self
                .refuse(
                    reason::BAD_AUTHENTICATION_METHOD,
                    "enhanced authentication is not supported",
                )
                .await;
        }
        if !s.allow_anonymous {
            let ok = match (&c.username, &c.password) {
                (Some(u), Some(p)) => s.users.get(u).is_some_and(|want| want.as_bytes() == &p[..]),
                _ => false,
            };
            if !ok {
                let code = if c.username.is_some() {
                    reason::BAD_USER_NAME_OR_PASSWORD
                } else {
                    reason::NOT_AUTHORIZED
                };
                return self.refuse(code, "authentication failed").await;
            }
        }
        let now = now_ms();
        let will = match &c.will {
            Some(w) if !valid_topic(&w.topic) => {
                return self
                    .refuse(reason::TOPIC_NAME_INVALID, "invalid will topic")
                    .await;
            }
            Some(w) => Some(Will {
                msg: Message {
                    topic: w.topic.clone(),
                    payload: w.payload.clone(),
                    qos: w.qos as u8,
                    retain: w.retain,
                    publisher: client_id.clone(),
                    props: MsgProps {
                        payload_format_indicator: w.properties.payload_format_indicator,
                        content_type: w.properties.content_type.clone(),
                        response_topic: w.properties.response_topic.clone(),
                        correlation_data: w.properties.correlation_data.clone(),
                        user_properties: w.properties.user_properties.clone(),
                    },
                    created_ms: now,
                    expires_ms: None,
                },
                expiry_s: w.properties.message_expiry_interval,
                delay_s: w.properties.delay_interval.unwrap_or(0),
            }),
            None => None,
        };
        self.expiry_s = if v5 {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            s.persistent_client_expiration_s
        };
        let keepalive = if v5 && s.server_keep_alive > 0 {
            s.server_keep_alive
        } else {
            c.keep_alive
        };

        // Register through the log.
        self.client_id = Arc::from(client_id.as_str());
        self.conn_id = self.broker.registry.next_conn_id();
        let (tx, mut events) = mpsc::unbounded_channel();
        self.broker
            .registry
            .attach(&self.client_id, self.conn_id, tx);
        let reg = Command::Register(raftmq_raft::Register {
            client_id: client_id.clone(),
            node: self.broker.settings.node_id,
            clean_start: c.clean_start,
            expiry_s: self.expiry_s,
            will,
            now_ms: now,
        });
        // A registration resent across a leader change may come back as
        // `Duplicate` (it was applied, its result went to the lost attempt):
        // register again; the session it made is resumed or replaced.
        let mut result = self.commit(reg.clone()).await;
        if matches!(result, Ok(CmdResult::Duplicate)) {
            result = self.commit(reg).await;
        }
        let (session_present, queue) = match result {
            Ok(CmdResult::Registered {
                epoch,
                session_present,
                queue,
            }) => {
                self.epoch = epoch;
                (session_present, queue)
            }
            other => {
                self.broker.registry.detach(&self.client_id, self.conn_id);
                warn!(result = ?other.err(), "registration not committed");
                return self
                    .refuse(
                        reason::SERVER_UNAVAILABLE,
                        "registration could not be committed",
                    )
                    .await;
            }
        };
        self.broker
            .registry
            .set_epoch(&self.client_id, self.conn_id, self.epoch);
        info!(
            epoch = self.epoch,
            session_present,
            proto = self.proto.level(),
            "client connected"
        );

        let broker = self.broker.clone();
        let s = &broker.settings;
        let mut props = ConnAckProperties::default();
        if v5 {
            props.assigned_client_identifier = assigned;
            props.receive_maximum = Some(s.receive_max_broker);
            props.topic_alias_maximum = Some(s.topic_alias_max_broker);
            props.retain_available = Some(1);
            props.wildcard_subscription_available = Some(1);
            props.subscription_identifiers_available = Some(1);
            props.shared_subscription_available = Some(1);
            if s.max_packet_size < 268_435_460 {
                props.maximum_packet_size = Some(s.max_packet_size as u32);
            }
            if s.server_keep_alive > 0 {
                props.server_keep_alive = Some(s.server_keep_alive);
            }
        }
        if self
            .connack(reason::SUCCESS, session_present, props)
            .await
            .is_err()
        {
            self.teardown(Exit::Closed, None, &mut Outbound::new(1, 0, 0, usize::MAX))
                .await;
            return;
        }

        let window = match (s.max_inflight_messages, c.properties.receive_maximum) {
            (0, r) => r.unwrap_or(65535) as usize,
            (m, r) => (m as usize).min(r.unwrap_or(65535) as usize),
        };
        let alias_max = if v5 {
            c.properties
                .topic_alias_maximum
                .unwrap_or(0)
                .min(s.topic_alias_max_client)
        } else {
            0
        };
        let max_packet_out = c
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize);
        let mut ob = Outbound::new(window, s.max_online_messages, alias_max, max_packet_out);
        let mut commit = Vec::new();
        let sent_before = self.broker.registry.take_sent(&self.client_id);
        for d in queue {
            let dup = d
                .seq
                .is_some_and(|q| sent_before.as_ref().is_none_or(|sent| sent.contains(&q)));
            ob.offer(d, dup, now, &mut self.out, &mut commit);
        }
        let exit = self
            .session_loop(&mut ob, &mut events, keepalive, commit)
            .await;
        let new_expiry = match &exit {
            Ok((_, e)) => *e,
            Err(_) => None,
        };
        let exit = match exit {
            Ok((e, _)) => e,
            Err(e) => e,
        };
        self.teardown(exit, new_expiry, &mut ob).await;
    }

    /// Proposes a command and waits for it to be applied, bounded by the
    /// commit timeout.
    async fn commit(&self, cmd: Command) -> Result<CmdResult, RaftError> {
        let rx = self.broker.node.proposer.submit(cmd).await?;
        wait(
            rx,
            Duration::from_millis(self.broker.settings.commit_timeout_ms),
        )
        .await
    }

    async fn submit(
        &self,
        cmd: Command,
        action: Action,
        pending: &mut FuturesOrdered<PendingFut>,
    ) -> Result<(), Exit> {
        let rx = self
            .broker
            .node
            .proposer
            .submit(cmd)
            .await
            .map_err(|_| Exit::Error(reason::SERVER_UNAVAILABLE, "proposer stopped".into()))?;
        let timeout = Duration::from_millis(self.broker.settings.commit_timeout_ms);
        pending.push_back(Box::pin(async move { (action, wait(rx, timeout).await) }));
        Ok(())
    }

    async fn session_loop(
        &mut self,
        ob: &mut Outbound,
        events: &mut mpsc::UnboundedReceiver<ConnEvent>,
        keepalive: u16,
        mut commit: Vec<u64>,
    ) -> Result<(Exit, Option<u32>), Exit> {
        let exit = self.packet_loop(ob, events, keepalive, &mut commit).await;
        // Acks read together with the packet that ended the loop.
        self.commit_acks(&mut commit).await;
        exit
    }

    /// Commits the subscriber's acks collected so far, as one command.
    async fn commit_acks(&self, commit: &mut Vec<u64>) {
        if !commit.is_empty() {
            let seqs = std::mem::take(commit);
            let cmd = Command::Ack(raftmq_raft::Ack {
                client_id: self.client_id.to_string(),
                epoch: self.epoch,
                seqs,
            });
            let _ = self.broker.node.proposer.submit_forget(cmd).await;
        }
    }

    async fn packet_loop(
        &mut self,
        ob: &mut Outbound,
        events: &mut mpsc::UnboundedReceiver<ConnEvent>,
        keepalive: u16,
        commit: &mut Vec<u64>,
    ) -> Result<(Exit, Option<u32>), Exit> {
        let mut pending: FuturesOrdered<PendingFut> = FuturesOrdered::new();
        let ka = (keepalive > 0).then(|| Duration::from_millis(keepalive as u64 * 1500));
        let far = Duration::from_secs(86_400 * 365);
        let ka_sleep = tokio::time::sleep(ka.unwrap_or(far));
        tokio::pin!(ka_sleep);
        let retry = Duration::from_secs(self.broker.settings.retry_interval_s);
        let mut retry_tick = tokio::time::interval(Duration::from_secs(1).min(retry));
        retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_aliases: HashMap<u16, String> = HashMap::new();
        let mut inbound_qos = Inbound::default();
        let mut new_expiry: Option<u32> = None;
        loop {
            // Every complete packet already buffered is handled before the
            // socket is read again, including those that arrived in the same
            // read as the CONNECT.
            loop {
                let p = match codec::decode(&mut self.rbuf, self.proto, self.max_packet_in) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => return Err(Exit::Error(e.reason_code(), e.to_string())),
                };
                if let Some(exit) = self
                    .on_packet(
                        p,
                        ob,
                        &mut pending,
                        commit,
                        &mut in_aliases,
                        &mut inbound_qos,
                        &mut new_expiry,
                    )
                    .await?
                {
                    // The client's packets before its DISCONNECT get their
                    // answers before the connection closes.
                    while let Some((action, res)) = pending.next().await {
                        self.on_result(action, res, ob, &mut inbound_qos, commit);
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
                    return Ok((exit, new_expiry));
                }
            }
            self.commit_acks(commit).await;
            if self.flush().await.is_err() {
                return Err(Exit::Closed);
            }
            tokio::select! {
                r = self.rd.read_buf(&mut self.rbuf) => {
                    match r {
                        Ok(0) | Err(_) => return Err(Exit::Closed),
                        Ok(n) => {
                            self.broker.metrics.bytes_received.inc_by(n as u64);
                        }
                    }
                    if let Some(k) = ka {
                        ka_sleep.as_mut().reset(tokio::time::Instant::now() + k);
                    }
                }
                ev = events.recv() => {
                    let Some(ev) = ev else { return Err(Exit::Closed) };
                    let now = now_ms();
                    self.on_event(ev, ob, now, commit)?;
                    let mut n = 0;
                    while n < 1024 {
                        match events.try_recv() {
                            Ok(ev) => self.on_event(ev, ob, now, commit)?,
                            Err(_) => break,
                        }
                        n += 1;
                    }
                }
                Some((action, res)) = pending.next(), if !pending.is_empty() => {
                    self.on_result(action, res, ob, &mut inbound_qos, commit);
                    while let Some(Some((action, res))) = futures::FutureExt::now_or_never(pending.next()) {
                        self.on_result(action, res, ob, &mut inbound_qos, commit);
                    }
                }
                _ = &mut ka_sleep => return Err(Exit::KeepAlive),
                _ = retry_tick.tick() => {
                    if !self.v5() {
                        let n = ob.retransmit(retry, now_ms(), &mut self.out);
                        self.broker.metrics.retransmits.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            if ob.dropped > 0 {
                self.broker.metrics.publishes_dropped.inc_by(ob.dropped);
                ob.dropped = 0;
            }
        }
    }

    fn on_event(
        &mut self,
        ev: ConnEvent,
        ob: &mut Outbound,
        now: u64,
        commit: &mut Vec<u64>,
    ) -> Result<(), Exit> {
        match ev {
            ConnEvent::Deliver(epoch, d) => {
                if epoch.is_none_or(|e| e == self.epoch) {
                    ob.offer(d, false, now, &mut self.out, commit);
                }
                Ok(())
            }
            ConnEvent::Kick(epoch) if epoch == self.epoch => Err(Exit::TakenOver),
            ConnEvent::Kick(_) => Ok(()),
            ConnEvent::Disconnect => Err(Exit::Admin),
        }
    }

    fn on_result(
        &mut self,
        action: Action,
        res: Result<CmdResult, RaftError>,
        ob: &mut Outbound,
        inbound_qos: &mut Inbound,
        commit: &mut Vec<u64>,
    ) {
        let v5 = self.v5();
        if let Err(e) = &res {
            self.broker.metrics.commit_failures.inc();
            warn!(error = %e, "command not committed");
        }
        let failed = res.is_err();
        match action {
            Action::PubAck(pid) | Action::PubRec(pid) => {
                let is_ack = matches!(action, Action::PubAck(_));
                let code = match &res {
                    Ok(CmdResult::Published {
                        matched: 0,
                        duplicate: false,
                    }) if v5 => reason::NO_MATCHING_SUBSCRIBERS,
                    Ok(_) => reason::SUCCESS,
                    Err(_) => reason::IMPLEMENTATION_SPECIFIC_ERROR,
                };
                if is_ack {
                    inbound_qos.qos1 = inbound_qos.qos1.saturating_sub(1);
                } else if failed && v5 {
                    // A failure PUBREC ends the QoS 2 flow.
                    inbound_qos.qos2.remove(&pid);
                }
                // MQTT 3 has no failure ack: stay silent so the client resends.
                if failed && !v5 {
                    return;
                }
                let r = PubResp {
                    packet_id: pid,
                    reason: code,
                    ..Default::default()
                };
                self.out.push(if is_ack {
                    Packet::PubAck(r)
                } else {
                    Packet::PubRec(r)
                });
            }
            Action::PubComp(pid) => {
                let code = match res {
                    Ok(CmdResult::Released { found: false }) => reason::PACKET_IDENTIFIER_NOT_FOUND,
                    _ => reason::SUCCESS,
                };
                if failed && !v5 {
                    return;
                }
                self.out.push(Packet::PubComp(PubResp {
                    packet_id: pid,
                    reason: code,
                    ..Default::default()
                }));
            }
            Action::SubAck {
                pid,
                codes,
                filters,
            } => {
                let (granted, retained) = match res {
                    Ok(CmdResult::Subscribed { codes, retained }) => (codes, retained),
                    // Applied by an earlier attempt of the same command (a
                    // leader change): granted as asked; its retained
                    // messages went with the lost result.
                    Ok(CmdResult::Duplicate) => {
                        (filters.iter().map(|(_, o)| o.qos).collect(), Vec::new())
                    }
                    _ => (vec![reason::UNSPECIFIED_ERROR; filters.len()], Vec::new()),
                };
                let reason_codes = merge_codes(codes, granted);
                self.out.push(Packet::SubAck(codec::SubAck {
                    packet_id: pid,
                    reason_codes,
                    ..Default::default()
                }));
                let now = now_ms();
                for d in retained {
                    ob.offer(d, false, now, &mut self.out, commit);
                }
                if !failed && self.broker.settings.systree_enabled {
                    self.send_sys(&filters, ob, now, commit);
                }
            }
            Action::UnsubAck { pid, codes } => {
                let committed = match res {
                    Ok(CmdResult::Unsubscribed { codes }) => codes,
                    Ok(CmdResult::Duplicate) => vec![reason::SUCCESS; codes.len()],
                    _ => Vec::new(),
                };
                let reason_codes = merge_codes(codes, committed);
                self.out.push(Packet::UnsubAck(codec::UnsubAck {
                    packet_id: pid,
                    reason_codes,
                    ..Default::default()
                }));
            }
            Action::PubRel(pid) => {
                if !failed {
                    ob.released(pid, &mut self.out);
                }
            }
        }
    }

    /// New `$SYS` subscribers get the latest values at once.
    fn send_sys(
        &mut self,
        filters: &[(String, SubOpts)],
        ob: &mut Outbound,
        now: u64,
        commit: &mut Vec<u64>,
    ) {
        let sys = crate::sys::values(&self.broker);
        for (f, o) in filters.iter().filter(|(f, _)| f.starts_with("$SYS")) {
            for (topic, value) in sys
                .iter()
                .filter(|(t, _)| raftmq_raft::trie::filter_matches(f, t))
            {
                let msg = Message {
                    topic: topic.clone(),
                    payload: bytes::Bytes::from(value.clone().into_bytes()),
                    qos: 0,
                    retain: true,
                    publisher: String::new(),
                    props: MsgProps::default(),
                    created_ms: now,
                    expires_ms: None,
                };
                let d = Delivery {
                    seq: None,
                    msg: Arc::new(msg),
                    qos: 0,
                    retain: true,
                    sub_ids: o.sub_id.into_iter().collect(),
                    received: false,
                };
                ob.offer(d, false, now, &mut self.out, commit);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_packet(
        &mut self,
        p: Packet,
        ob: &mut Outbound,
        pending: &mut FuturesOrdered<PendingFut>,
        commit: &mut Vec<u64>,
        in_aliases: &mut HashMap<u16, String>,
        inbound_qos: &mut Inbound,
        new_expiry: &mut Option<u32>,
    ) -> Result<Option<Exit>, Exit> {
        let v5 = self.v5();
        let now = now_ms();
        match p {
            Packet::Publish(p) => {
                self.broker.metrics.messages_received.inc();
                self.on_publish(p, pending, in_aliases, inbound_qos, now)
                    .await?;
            }
            Packet::PubAck(r) => {
                if let AckEffect::Commit(seq) = ob.puback(r.packet_id) {
                    commit.push(seq);
                }
                ob.fill(now, &mut self.out, commit);
            }
            Packet::PubRec(r) => match ob.pubrec(r.packet_id, r.reason >= 0x80, &mut self.out) {
                AckEffect::CommitReceived(seq, pid) => {
                    let cmd = Command::Received(raftmq_raft::Received {
                        client_id: self.client_id.to_string(),
                        epoch: self.epoch,
                        seqs: vec![seq],
                    });
                    self.submit(cmd, Action::PubRel(pid), pending).await?;
                }
                AckEffect::Commit(seq) => {
                    commit.push(seq);
                    ob.fill(now, &mut self.out, commit);
                }
                AckEffect::None => {}
            },
            Packet::PubComp(r) => {
                if let AckEffect::Commit(seq) = ob.pubcomp(r.packet_id) {
                    commit.push(seq);
                }
                ob.fill(now, &mut self.out, commit);
            }
            Packet::PubRel(r) => {
                inbound_qos.qos2.remove(&r.packet_id);
                let cmd = Command::Release(raftmq_raft::Release {
                    client_id: self.client_id.to_string(),
                    packet_id: r.packet_id,
                });
                self.submit(cmd, Action::PubComp(r.packet_id), pending)
                    .await?;
            }
            Packet::Subscribe(s) => {
                let sub_id = s.properties.subscription_identifier;
                let mut codes = Vec::with_capacity(s.filters.len());
                let mut filters = Vec::new();
                for f in s.filters {
                    let (group, _) = split_shared(&f.filter);
                    if group.is_some() && f.options.no_local && v5 {
                        return Err(Exit::Error(
                            reason::PROTOCOL_ERROR,
                            "no local on a shared subscription".into(),
                        ));
                    }
                    if !valid_filter(&f.filter) {
                        codes.push(Some(if v5 {
                            reason::TOPIC_FILTER_INVALID
                        } else {
                            reason::UNSPECIFIED_ERROR
                        }));
                        continue;
                    }
                    codes.push(None);
                    let o = f.options;
                    filters.push((
                        f.filter,
                        SubOpts {
                            qos: o.qos as u8,
                            no_local: o.no_local,
                            retain_as_published: o.retain_as_published,
                            retain_handling: o.retain_handling,
                            sub_id,
                        },
                    ));
                }
                if filters.is_empty() {
                    let reason_codes = codes
                        .into_iter()
                        .map(|c| c.unwrap_or(reason::UNSPECIFIED_ERROR))
                        .collect();
                    self.out.push(Packet::SubAck(codec::SubAck {
                        packet_id: s.packet_id,
                        reason_codes,
                        ..Default::default()
                    }));
                } else {
                    let cmd = Command::Subscribe(raftmq_raft::Subscribe {
                        client_id: self.client_id.to_string(),
                        epoch: self.epoch,
                        filters: filters.clone(),
                    });
                    self.submit(
                        cmd,
                        Action::SubAck {
                            pid: s.packet_id,
                            codes,
                            filters,
                        },
                        pending,
                    )
                    .await?;
                }
            }
            Packet::Unsubscribe(u) => {
                let codes = vec![None; u.filters.len()];
                let cmd = Command::Unsubscribe(raftmq_raft::Unsubscribe {
                    client_id: self.client_id.to_string(),
                    epoch: self.epoch,
                    filters: u.filters,
                });
                self.submit(
                    cmd,
                    Action::UnsubAck {
                        pid: u.packet_id,
                        codes,
                    },
                    pending,
                )
                .await?;
            }
            Packet::PingReq => self.out.push(Packet::PingResp),
            Packet::Disconnect(d) => {
                if let Some(e) = d.properties.session_expiry_interval {
                    if self.expiry_s == 0 && e != 0 {
                        return Err(Exit::Error(
                            reason::PROTOCOL_ERROR,
                            "session expiry set at DISCONNECT after 0 at CONNECT".into(),
                        ));
                    }
                    *new_expiry = Some(e);
                }
                return Ok(Some(Exit::Client {
                    will: v5 && d.reason == reason::DISCONNECT_WITH_WILL_MESSAGE,
                }));
            }
            Packet::Connect(_) => {
                return Err(Exit::Error(reason::PROTOCOL_ERROR, "second CONNECT".into()))
            }
            Packet::Auth(_) => {
                return Err(Exit::Error(
                    reason::PROTOCOL_ERROR,
                    "AUTH without enhanced authentication".into(),
                ))
            }
            other => {
                return Err(Exit::Error(
                    reason::PROTOCOL_ERROR,
                    format!("unexpected packet from client: {}", packet_name(&other)),
                ));
            }
        }
        Ok(None)
    }

    async fn on_publish(
        &mut self,
        p: Publish,
        pending: &mut FuturesOrdered<PendingFut>,
        in_aliases: &mut HashMap<u16, String>,
        inbound_qos: &mut Inbound,
        now: u64,
    ) -> Result<(), Exit> {
        let s = &self.broker.settings;
        let v5 = self.v5();
        let mut topic = p.topic;
        if let Some(a) = p.properties.topic_alias {
            if a == 0 || a > s.topic_alias_max_broker {
                return Err(Exit::Error(
                    reason::TOPIC_ALIAS_INVALID,
                    format!("topic alias {a} out of range"),
                ));
            }
            if topic.is_empty() {
                match in_aliases.get(&a) {
                    Some(t) => topic = t.clone(),
                    None => {
                        return Err(Exit::Error(
                            reason::PROTOCOL_ERROR,
                            format!("unknown topic alias {a}"),
                        ))
                    }
                }
            } else {
                in_aliases.insert(a, topic.clone());
            }
        }
        if topic.is_empty() || !valid_topic(&topic) {
            return Err(Exit::Error(
                reason::TOPIC_NAME_INVALID,
                "invalid topic name".into(),
            ));
        }
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(Exit::Error(
                reason::PROTOCOL_ERROR,
                "subscription identifier in PUBLISH from client".into(),
            ));
        }
        if s.max_message_size > 0 && p.payload.len() > s.max_message_size {
            return Err(Exit::Error(
                reason::PACKET_TOO_LARGE,
                format!(
                    "payload of {} bytes exceeds max_message_size",
                    p.payload.len()
                ),
            ));
        }
        let qos = p.qos as u8;
        let new_flow = match qos {
            0 => false,
            1 => {
                inbound_qos.qos1 += 1;
                true
            }
            // A resent QoS 2 PUBLISH continues its flow: not counted again.
            _ => inbound_qos.qos2.insert(p.packet_id),
        };
        if new_flow && v5 && inbound_qos.count() > s.receive_max_broker as usize {
            return Err(Exit::Error(
                reason::RECEIVE_MAXIMUM_EXCEEDED,
                "receive maximum exceeded".into(),
            ));
        }
        let msg = Message {
            topic,
            payload: p.payload,
            qos,
            retain: p.retain,
            publisher: self.client_id.to_string(),
            props: MsgProps {
                payload_format_indicator: p.properties.payload_format_indicator,
                content_type: p.properties.content_type,
                response_topic: p.properties.response_topic,
                correlation_data: p.properties.correlation_data,
                user_properties: p.properties.user_properties,
            },
            created_ms: now,
            expires_ms: p
                .properties
                .message_expiry_interval
                .map(|e| now + e as u64 * 1000),
        };
        if msg.topic.starts_with("$SYS") {
            // Clients may not write the broker's own tree; acknowledge and drop.
            match qos {
                1 => self.out.push(Packet::PubAck(PubResp {
                    packet_id: p.packet_id,
                    reason: reason::NOT_AUTHORIZED,
                    ..Default::default()
                })),
                2 => self.out.push(Packet::PubRec(PubResp {
                    packet_id: p.packet_id,
                    reason: reason::NOT_AUTHORIZED,
                    ..Default::default()
                })),
                _ => {}
            }
            if qos == 1 {
                inbound_qos.qos1 = inbound_qos.qos1.saturating_sub(1);
            } else {
                inbound_qos.qos2.remove(&p.packet_id);
            }
            return Ok(());
        }
        let client_id = self.client_id.to_string();
        match qos {
            0 if !msg.retain => {
                crate::router::route_qos0(&self.broker, Arc::new(msg));
            }
            0 => {
                let cmd = Command::Publish(raftmq_raft::Publish {
                    client_id,
                    packet_id: 0,
                    msg,
                });
                let _ = self.broker.node.proposer.submit_forget(cmd).await;
            }
            1 => {
                let cmd = Command::Publish(raftmq_raft::Publish {
                    client_id,
                    packet_id: 0,
                    msg,
                });
                self.submit(cmd, Action::PubAck(p.packet_id), pending)
                    .await?;
            }
            _ => {
                let cmd = Command::Publish(raftmq_raft::Publish {
                    client_id,
                    packet_id: p.packet_id,
                    msg,
                });
                self.submit(cmd, Action::PubRec(p.packet_id), pending)
                    .await?;
            }
        }
        Ok(())
    }

    async fn teardown(&mut self, exit: Exit, new_expiry: Option<u32>, ob: &mut Outbound) {
        let v5 = self.v5();
        let (code, publish_will) = match &exit {
            Exit::Client { will } => (None, *will),
            Exit::Closed => (None, true),
            Exit::Error(code, why) => {
                self.broker.metrics.protocol_errors.inc();
                info!(code, why = %why, "closing connection");
                (Some(*code), true)
            }
            Exit::KeepAlive => {
                info!("keepalive timeout");
                (Some(reason::KEEP_ALIVE_TIMEOUT), true)
            }
            Exit::TakenOver => {
                info!("session taken over");
                (Some(reason::SESSION_TAKEN_OVER), false)
            }
            Exit::Admin => (Some(reason::ADMINISTRATIVE_ACTION), true),
        };
        if let (true, Some(code)) = (v5, code) {
            self.out.push(Packet::Disconnect(codec::Disconnect {
                reason: code,
                ..Default::default()
            }));
        } else {
            self.out.clear();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        let _ = self.wr.shutdown().await;
        // Only a session that outlives this connection is resumed later. A
        // taken-over connection's successor has already read (and cleared)
        // the entry, so writing one now would leave stale data behind.
        let persists = new_expiry.unwrap_or(self.expiry_s) > 0;
        if persists && !matches!(exit, Exit::TakenOver) {
            self.broker
                .registry
                .remember_sent(&self.client_id, ob.unacked_seqs());
        }
        self.broker.registry.detach(&self.client_id, self.conn_id);
        if self.epoch != 0 && !matches!(exit, Exit::TakenOver) {
            let cmd = Command::Disconnect(raftmq_raft::Disconnect {
                client_id: self.client_id.to_string(),
                epoch: self.epoch,
                publish_will,
                new_expiry_s: new_expiry.map(|e| if e == u32::MAX { NEVER } else { e }),
                now_ms: now_ms(),
            });
            if let Err(e) = self.commit(cmd).await {
                warn!(error = %e, "disconnect not committed; the session stays registered until the node restarts");
            }
        }
        info!(?exit, "client disconnected");
    }
}

/// SUBACK/UNSUBACK reason codes: the codes decided before proposing (invalid
/// filters) stay; the others are filled, in order, from the committed result
/// (an unspecified error if it has none).
fn merge_codes(decided: Vec<Option<u8>>, committed: Vec<u8>) -> Vec<u8> {
    let mut committed = committed.into_iter();
    decided
        .into_iter()
        .map(|c| c.unwrap_or_else(|| committed.next().unwrap_or(reason::UNSPECIFIED_ERROR)))
        .collect()
}

async fn wait(rx: ResultRx, timeout: Duration) -> Result<CmdResult, RaftError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(RaftError::Stopped),
        Err(_) => Err(RaftError::Unavailable("commit timed out".into())),
    }
}

fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::ConnAck(_) => "CONNACK",
        Packet::SubAck(_) => "SUBACK",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingResp => "PINGRESP",
        _ => "packet",
    }
}
