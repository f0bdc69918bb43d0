//! The client handle ([`Client`]) and the background task that owns its
//! connection.
//!
//! The task reads and decodes packets, acknowledges inbound publishes
//! (PUBACK; PUBREC/PUBCOMP per method A, with the unreleased packet ids kept
//! in [`SessionState`] across connections), sends PINGREQ every half keep
//! alive, and hands acknowledgements to the request waiting for them (a map
//! from ack kind and packet id to a oneshot). A second task owns the write
//! half and writes the frames the handle and the reader queue. When the
//! connection ends every waiter resolves with [`MqttError::Closed`]; dropping
//! the [`Client`] aborts both tasks and closes the socket without a
//! DISCONNECT, like a crashed client.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant, MissedTickBehavior};

use super::codec::{self, CodecError, Packet, Publish, Version, MAX_PACKET};

/// How to open one connection.
#[derive(Debug, Clone)]
pub struct ConnectOpts {
    pub addr: SocketAddr,
    pub client_id: String,
    pub version: Version,
    /// Clean Session (3.1.1) / Clean Start (5).
    pub clean: bool,
    /// MQTT 5 Session Expiry Interval (seconds); ignored for 3.1.1. 0 sends
    /// no property (the session ends with the connection).
    pub session_expiry: u32,
    /// Seconds; 0 disables PINGREQ. A v5 Server Keep Alive overrides it.
    pub keep_alive: u16,
    /// Bound for TCP connect + CONNACK.
    pub timeout: Duration,
}

impl ConnectOpts {
    /// A persistent session (clean = false, and for v5 a session that never
    /// expires), keep alive 30 s, 5 s to connect.
    pub fn new(addr: SocketAddr, client_id: impl Into<String>, version: Version) -> Self {
        ConnectOpts {
            addr,
            client_id: client_id.into(),
            version,
            clean: false,
            session_expiry: match version {
                Version::V311 => 0,
                Version::V5 => u32::MAX,
            },
            keep_alive: 30,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The broker's answer to CONNECT (always code 0 when returned by
/// [`Client::connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connack {
    pub session_present: bool,
    pub code: u8,
}

/// How an operation ended when it did not succeed.
#[derive(thiserror::Error, Debug)]
pub enum MqttError {
    /// The broker answered with a failure reason code (CONNACK != 0, SUBACK
    /// 0x80+, v5 PUBACK/PUBREC/PUBCOMP/UNSUBACK 0x80+). The operation
    /// definitely did not take effect (per protocol).
    #[error("refused by the broker: reason code {0:#04x}")]
    Refused(u8),
    /// No answer within the deadline; outcome unknown.
    #[error("no answer before the deadline")]
    Timeout,
    /// The connection closed or failed before the answer; outcome unknown.
    /// Carries the v5 DISCONNECT reason code if the broker sent one (a
    /// DISCONNECT is not tied to one operation, so it never makes an
    /// outcome definite).
    #[error("connection closed{}", disconnect_reason(.0))]
    Closed(Option<u8>),
    /// QoS 2 publish interrupted after PUBREC arrived (broker has the
    /// message): resume with [`Client::release`].
    #[error("QoS 2 publish interrupted after PUBREC")]
    AfterPubrec,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The broker broke the protocol, or the request could not be encoded;
    /// outcome unknown.
    #[error("protocol: {0}")]
    Protocol(String),
}

fn disconnect_reason(code: &Option<u8>) -> String {
    match code {
        Some(c) => format!(" by the broker: DISCONNECT reason {c:#04x}"),
        None => String::new(),
    }
}

impl MqttError {
    /// True only for [`MqttError::Refused`]: the operation definitely did not
    /// take effect. Everything else leaves the outcome unknown.
    pub fn is_definite(&self) -> bool {
        matches!(self, MqttError::Refused(_))
    }
}

impl From<CodecError> for MqttError {
    fn from(e: CodecError) -> Self {
        MqttError::Protocol(e.to_string())
    }
}

/// An application message delivered to this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
}

#[derive(Debug, Default)]
struct Session {
    /// Inbound QoS 2 packet ids acknowledged with PUBREC, not yet released.
    inbound_qos2: HashSet<u16>,
    /// The last outbound packet id handed out (0: none yet).
    last_pkid: u16,
}

/// State a client keeps across connections of one persistent session:
/// inbound QoS 2 packet ids received but not yet released (so a re-sent QoS 2
/// PUBLISH with DUP after reconnect is acknowledged but not delivered again:
/// method A of the spec), and the next outbound packet id.
#[derive(Debug, Default, Clone)]
pub struct SessionState(Arc<Mutex<Session>>);

impl SessionState {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh outbound packet id (1..=65535, wrapping).
    pub fn next_pkid(&self) -> u16 {
        let mut s = self.lock();
        s.last_pkid = s.last_pkid.wrapping_add(1).max(1);
        s.last_pkid
    }

    /// Inbound QoS 2 packet ids received and not yet released, ascending.
    pub fn unreleased_inbound(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.lock().inbound_qos2.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Records an inbound QoS 2 publish; true if it is new (deliver it).
    fn receive_qos2(&self, pkid: u16) -> bool {
        self.lock().inbound_qos2.insert(pkid)
    }

    fn release_qos2(&self, pkid: u16) {
        self.lock().inbound_qos2.remove(&pkid);
    }

    /// The broker holds no session for us: nothing will be re-sent.
    fn forget_inbound(&self) {
        self.lock().inbound_qos2.clear();
    }
}

/// Which acknowledgement a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AckKind {
    Puback,
    Pubrec,
    Pubcomp,
    Suback,
    Unsuback,
}

type Waiter = oneshot::Sender<Result<Packet, MqttError>>;

#[derive(Default)]
struct ConnState {
    waiters: HashMap<(AckKind, u16), Waiter>,
    /// Set once the connection has ended, with the broker's DISCONNECT
    /// reason if it sent one.
    closed: Option<Option<u8>>,
}

/// What the handle and the connection task share: the waiting requests and
/// whether the connection is over.
#[derive(Default)]
struct Shared(Mutex<ConnState>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(
        &self,
        key: (AckKind, u16),
    ) -> Result<oneshot::Receiver<Result<Packet, MqttError>>, MqttError> {
        let mut s = self.lock();
        if let Some(reason) = s.closed {
            return Err(MqttError::Closed(reason));
        }
        let (tx, rx) = oneshot::channel();
        s.waiters.insert(key, tx);
        Ok(rx)
    }

    fn forget(&self, key: (AckKind, u16)) {
        self.lock().waiters.remove(&key);
    }

    /// Hands `p` to whoever waits for it; late acknowledgements (their
    /// request already timed out) are dropped.
    fn route(&self, key: (AckKind, u16), p: Packet) {
        if let Some(tx) = self.lock().waiters.remove(&key) {
            let _ = tx.send(Ok(p));
        }
    }

    fn close(&self, reason: Option<u8>) {
        let mut s = self.lock();
        if s.closed.is_none() {
            s.closed = Some(reason);
        }
        let reason = s.closed.flatten();
        for (_, tx) in s.waiters.drain() {
            let _ = tx.send(Err(MqttError::Closed(reason)));
        }
    }

    fn closed_error(&self) -> MqttError {
        MqttError::Closed(self.lock().closed.flatten())
    }
}

/// Work for the writer task.
enum Out {
    /// A frame to write; `done` learns whether the write succeeded.
    Frame(Bytes, Option<oneshot::Sender<std::io::Result<()>>>),
    /// Shut down the write half (after a DISCONNECT) and stop.
    Shutdown,
}

/// A connection to a broker. Requests take `&mut self`: one at a time.
pub struct Client {
    version: Version,
    out: mpsc::UnboundedSender<Out>,
    inbox: mpsc::UnboundedReceiver<Message>,
    shared: Arc<Shared>,
    session: SessionState,
    op_timeout: Duration,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // The task's drop aborts the writer; both halves close the socket.
        self.task.abort();
    }
}

fn frame(p: &Packet, v: Version) -> Result<Bytes, MqttError> {
    let mut buf = BytesMut::new();
    codec::encode(p, v, &mut buf)?;
    Ok(buf.freeze())
}

/// Success, or Refused for a failure reason code (0x80 and up; 0x10 "no
/// matching subscribers" and 0x11 "no subscription existed" are successes).
fn check_reason(reason: u8) -> Result<u8, MqttError> {
    if reason >= 0x80 {
        Err(MqttError::Refused(reason))
    } else {
        Ok(reason)
    }
}

/// TCP connect, CONNECT, and wait for CONNACK. Returns the stream, any bytes
/// read past the CONNACK, and the CONNACK fields.
async fn handshake(
    opts: &ConnectOpts,
) -> Result<(TcpStream, BytesMut, bool, u8, Option<u16>), MqttError> {
    let mut stream = TcpStream::connect(opts.addr).await?;
    stream.set_nodelay(true)?;
    let connect = Packet::Connect {
        version: opts.version,
        client_id: opts.client_id.clone(),
        clean: opts.clean,
        keep_alive: opts.keep_alive,
        session_expiry: (opts.version == Version::V5 && opts.session_expiry > 0)
            .then_some(opts.session_expiry),
    };
    stream.write_all(&frame(&connect, opts.version)?).await?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some(p) = codec::decode(&mut buf, opts.version, MAX_PACKET)? {
            return match p {
                Packet::Connack {
                    session_present,
                    code,
                    server_keep_alive,
                } => Ok((stream, buf, session_present, code, server_keep_alive)),
                Packet::Disconnect { reason } => Err(MqttError::Closed(Some(reason))),
                other => Err(MqttError::Protocol(format!(
                    "expected CONNACK, got {other:?}"
                ))),
            };
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(MqttError::Closed(None));
        }
    }
}

impl Client {
    /// Opens a connection. `Err(Refused(code))` if CONNACK's code is not 0;
    /// `Err(Timeout)` if TCP connect + CONNACK took longer than
    /// `opts.timeout`.
    pub async fn connect(
        opts: &ConnectOpts,
        state: SessionState,
    ) -> Result<(Client, Connack), MqttError> {
        let (stream, buf, session_present, code, server_keep_alive) =
            match timeout(opts.timeout, handshake(opts)).await {
                Ok(r) => r?,
                Err(_) => return Err(MqttError::Timeout),
            };
        if code != 0 {
            return Err(MqttError::Refused(code));
        }
        if !session_present {
            state.forget_inbound();
        }
        let (rd, wr) = stream.into_split();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let conn = Connection {
            version: opts.version,
            rd,
            buf,
            out: out_tx.clone(),
            inbox: inbox_tx,
            shared: shared.clone(),
            session: state.clone(),
            keep_alive: server_keep_alive.unwrap_or(opts.keep_alive),
        };
        let task = tokio::spawn(conn.run(wr, out_rx));
        let client = Client {
            version: opts.version,
            out: out_tx,
            inbox,
            shared,
            session: state,
            op_timeout: Duration::from_secs(5),
            task,
        };
        Ok((
            client,
            Connack {
                session_present,
                code,
            },
        ))
    }

    /// The deadline of each request (default 5 s).
    pub fn set_op_timeout(&mut self, d: Duration) {
        self.op_timeout = d;
    }

    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The session state this connection uses.
    pub fn session(&self) -> &SessionState {
        &self.session
    }

    /// A fresh packet id from the session, for a caller that wants to know
    /// it before publishing (to resend with it later).
    pub fn next_pkid(&self) -> u16 {
        self.session.next_pkid()
    }

    /// Sends `p` and waits for the acknowledgement `kind` of packet `pkid`.
    async fn request(&mut self, p: &Packet, kind: AckKind, pkid: u16) -> Result<Packet, MqttError> {
        let bytes = frame(p, self.version)?;
        let key = (kind, pkid);
        // Register before sending, so the answer cannot arrive unclaimed.
        let rx = self.shared.register(key)?;
        if self.out.send(Out::Frame(bytes, None)).is_err() {
            self.shared.forget(key);
            return Err(self.shared.closed_error());
        }
        match timeout(self.op_timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(self.shared.closed_error()),
            Err(_) => {
                self.shared.forget(key);
                Err(MqttError::Timeout)
            }
        }
    }

    /// Writes a frame that expects no answer; returns once it is written.
    async fn send_only(&mut self, p: &Packet) -> Result<(), MqttError> {
        let bytes = frame(p, self.version)?;
        let (tx, rx) = oneshot::channel();
        if self.out.send(Out::Frame(bytes, Some(tx))).is_err() {
            return Err(self.shared.closed_error());
        }
        match timeout(self.op_timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(_))) | Ok(Err(_)) => Err(self.shared.closed_error()),
            Err(_) => Err(MqttError::Timeout),
        }
    }

    /// Publishes and waits for the acknowledgement (QoS 0: returns once
    /// written; QoS 1: PUBACK; QoS 2: PUBREC, then PUBREL and PUBCOMP).
    /// `p.pkid` None allocates a fresh id from the session; Some(id) with
    /// `dup` re-sends an earlier attempt. A QoS 2 publish that loses its
    /// connection or deadline after PUBREC returns [`MqttError::AfterPubrec`].
    pub async fn publish(&mut self, mut p: Publish) -> Result<(), MqttError> {
        match p.qos {
            0 => {
                p.pkid = None;
                self.send_only(&Packet::Publish(p)).await
            }
            1 => {
                let pkid = *p.pkid.get_or_insert_with(|| self.session.next_pkid());
                match self
                    .request(&Packet::Publish(p), AckKind::Puback, pkid)
                    .await?
                {
                    Packet::Puback { reason, .. } => check_reason(reason).map(drop),
                    other => Err(unexpected(other)),
                }
            }
            2 => {
                let pkid = *p.pkid.get_or_insert_with(|| self.session.next_pkid());
                match self
                    .request(&Packet::Publish(p), AckKind::Pubrec, pkid)
                    .await?
                {
                    Packet::Pubrec { reason, .. } => check_reason(reason)?,
                    other => return Err(unexpected(other)),
                };
                match self.release(pkid).await {
                    Ok(()) => Ok(()),
                    Err(MqttError::Timeout | MqttError::Closed(_)) => Err(MqttError::AfterPubrec),
                    // The broker accepted the message (PUBREC) and then lost
                    // its packet id: not a definite failure of the publish.
                    Err(MqttError::Refused(code)) => Err(MqttError::Protocol(format!(
                        "PUBCOMP reason {code:#04x} after a successful PUBREC"
                    ))),
                    Err(e) => Err(e),
                }
            }
            q => Err(MqttError::Protocol(format!("cannot publish with QoS {q}"))),
        }
    }

    /// Sends PUBREL for `pkid` and waits for PUBCOMP (second half of a QoS 2
    /// publish, or its resumption after [`MqttError::AfterPubrec`]).
    pub async fn release(&mut self, pkid: u16) -> Result<(), MqttError> {
        let pubrel = Packet::Pubrel { pkid, reason: 0 };
        match self.request(&pubrel, AckKind::Pubcomp, pkid).await? {
            Packet::Pubcomp { reason, .. } => check_reason(reason).map(drop),
            other => Err(unexpected(other)),
        }
    }

    /// Subscribes to one filter; returns the granted QoS.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<u8, MqttError> {
        let pkid = self.session.next_pkid();
        let sub = Packet::Subscribe {
            pkid,
            filters: vec![(filter.to_owned(), qos)],
        };
        match self.request(&sub, AckKind::Suback, pkid).await? {
            Packet::Suback { codes, .. } if codes.len() == 1 => check_reason(codes[0]),
            other => Err(unexpected(other)),
        }
    }

    /// Unsubscribes from one filter (v5 "no subscription existed" is
    /// success).
    pub async fn unsubscribe(&mut self, filter: &str) -> Result<(), MqttError> {
        let pkid = self.session.next_pkid();
        let unsub = Packet::Unsubscribe {
            pkid,
            filters: vec![filter.to_owned()],
        };
        match self.request(&unsub, AckKind::Unsuback, pkid).await? {
            Packet::Unsuback { codes, .. } => match codes.first() {
                Some(&code) => check_reason(code).map(drop),
                None => Ok(()),
            },
            other => Err(unexpected(other)),
        }
    }

    /// The next incoming message (already acknowledged by the connection
    /// task). `Err(Closed)` once the connection has ended and every message
    /// it queued has been returned.
    pub async fn recv(&mut self) -> Result<Message, MqttError> {
        match self.inbox.recv().await {
            Some(m) => Ok(m),
            None => Err(self.shared.closed_error()),
        }
    }

    /// Like [`Client::recv`] with a deadline: `Ok(None)` when nothing came.
    pub async fn recv_timeout(&mut self, d: Duration) -> Result<Option<Message>, MqttError> {
        match timeout(d, self.inbox.recv()).await {
            Ok(Some(m)) => Ok(Some(m)),
            Ok(None) => Err(self.shared.closed_error()),
            Err(_) => Ok(None),
        }
    }

    /// Sends DISCONNECT (normal disconnection), shuts the socket down and
    /// waits (at most the op timeout) for the broker to close its side.
    /// Returns the messages that arrived (and were acknowledged) but were not
    /// taken with `recv`: the broker considers them delivered.
    pub async fn disconnect(mut self) -> Vec<Message> {
        let bye = Packet::Disconnect { reason: 0 };
        if self.send_only(&bye).await.is_ok() && self.out.send(Out::Shutdown).is_ok() {
            let _ = timeout(self.op_timeout, &mut self.task).await;
        }
        let mut left = Vec::new();
        while let Ok(m) = self.inbox.try_recv() {
            left.push(m);
        }
        // Drop aborts whatever is left.
        left
    }
}

fn unexpected(p: Packet) -> MqttError {
    MqttError::Protocol(format!("unexpected answer {p:?}"))
}

/// Aborts the writer task when the connection task ends or is aborted.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How the writer task ended.
enum WriterEnd {
    /// Write half shut down after DISCONNECT: keep reading until EOF.
    Shutdown,
    /// A write failed: the connection is over.
    Failed,
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>) -> WriterEnd {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Frame(bytes, done) => {
                let result = wr.write_all(&bytes).await;
                let failed = result.is_err();
                if let Some(done) = done {
                    let _ = done.send(result);
                }
                if failed {
                    return WriterEnd::Failed;
                }
            }
            Out::Shutdown => {
                let _ = wr.shutdown().await;
                return WriterEnd::Shutdown;
            }
        }
    }
    WriterEnd::Shutdown
}

/// The reading side of one connection (runs as the connection task).
struct Connection {
    version: Version,
    rd: OwnedReadHalf,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
    out: mpsc::UnboundedSender<Out>,
    inbox: mpsc::UnboundedSender<Message>,
    shared: Arc<Shared>,
    session: SessionState,
    keep_alive: u16,
}

impl Connection {
    async fn run(mut self, wr: OwnedWriteHalf, out_rx: mpsc::UnboundedReceiver<Out>) {
        let writer = AbortOnDrop(tokio::spawn(write_loop(wr, out_rx)));
        let reason = self.read_loop(writer).await;
        // Set the reason before the inbox sender drops (with `self`), so
        // `recv` sees it once the queue is drained.
        self.shared.close(reason);
    }

    fn send(&self, p: &Packet) {
        if let Ok(bytes) = frame(p, self.version) {
            let _ = self.out.send(Out::Frame(bytes, None));
        }
    }

    /// Reads until the connection ends; returns the broker's DISCONNECT
    /// reason if it sent one.
    async fn read_loop(&mut self, mut writer: AbortOnDrop<WriterEnd>) -> Option<u8> {
        let period = Duration::from_millis(u64::from(self.keep_alive.max(1)) * 500);
        let keep_alive = Duration::from_secs(u64::from(self.keep_alive));
        let mut ping = tokio::time::interval_at(Instant::now() + period, period);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping_sent: Option<Instant> = None;
        let mut last_rx = Instant::now();
        let mut writer_running = true;
        loop {
            loop {
                match codec::decode(&mut self.buf, self.version, MAX_PACKET) {
                    Ok(Some(p)) => {
                        last_rx = Instant::now();
                        if let Some(end) = self.handle(p) {
                            return end;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return None,
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            tokio::select! {
                read = self.rd.read_buf(&mut self.buf) => match read {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
                _ = ping.tick(), if self.keep_alive > 0 && writer_running => {
                    match ping_sent {
                        // Unanswered for a whole keep alive: the broker or
                        // the path to it is gone.
                        Some(sent) if last_rx < sent => {
                            if sent.elapsed() >= keep_alive {
                                return None;
                            }
                        }
                        _ => {
                            ping_sent = Some(Instant::now());
                            self.send(&Packet::Pingreq);
                        }
                    }
                }
                end = &mut writer.0, if writer_running => {
                    writer_running = false;
                    if !matches!(end, Ok(WriterEnd::Shutdown)) {
                        return None;
                    }
                }
            }
        }
    }

    /// Acts on one inbound packet; `Some(end)` closes the connection.
    fn handle(&mut self, p: Packet) -> Option<Option<u8>> {
        match p {
            Packet::Publish(publish) => {
                let pkid = publish.pkid;
                let deliver = match (publish.qos, pkid) {
                    (2, Some(id)) => self.session.receive_qos2(id),
                    _ => true,
                };
                if deliver {
                    let _ = self.inbox.send(Message {
                        topic: publish.topic,
                        payload: publish.payload,
                        qos: publish.qos,
                        retain: publish.retain,
                        dup: publish.dup,
                    });
                }
                match (publish.qos, pkid) {
                    (1, Some(pkid)) => self.send(&Packet::Puback { pkid, reason: 0 }),
                    (2, Some(pkid)) => self.send(&Packet::Pubrec { pkid, reason: 0 }),
                    _ => {}
                }
            }
            Packet::Pubrel { pkid, .. } => {
                self.session.release_qos2(pkid);
                self.send(&Packet::Pubcomp { pkid, reason: 0 });
            }
            Packet::Puback { pkid, .. } => self.shared.route((AckKind::Puback, pkid), p),
            Packet::Pubrec { pkid, .. } => self.shared.route((AckKind::Pubrec, pkid), p),
            Packet::Pubcomp { pkid, .. } => self.shared.route((AckKind::Pubcomp, pkid), p),
            Packet::Suback { pkid, .. } => self.shared.route((AckKind::Suback, pkid), p),
            Packet::Unsuback { pkid, .. } => self.shared.route((AckKind::Unsuback, pkid), p),
            Packet::Pingresp => {}
            Packet::Disconnect { reason } => {
                return Some((self.version == Version::V5).then_some(reason))
            }
            // CONNECT, CONNACK, SUBSCRIBE, ... from a broker: a protocol
            // violation; drop the connection.
            _ => return Some(None),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};
    use tokio::net::TcpListener;

    const VERSIONS: [Version; 2] = [Version::V311, Version::V5];

    /// A Debian mosquitto on a free local port; killed on drop.
    struct Mosquitto {
        child: Option<Child>,
        addr: SocketAddr,
        _dir: tempfile::TempDir,
    }

    impl Mosquitto {
        fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let dir = tempfile::tempdir().expect("temp dir");
            let conf = dir.path().join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
                ),
            )
            .expect("write config");
            let child = Command::new("/usr/sbin/mosquitto")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mosquitto");
            let mut m = Mosquitto {
                child: Some(child),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                _dir: dir,
            };
            for _ in 0..100 {
                if std::net::TcpStream::connect(m.addr).is_ok() {
                    return m;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            m.kill();
            panic!("mosquitto did not listen on {}", m.addr);
        }

        fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Mosquitto {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn opts(addr: SocketAddr, id: &str, v: Version, clean: bool) -> ConnectOpts {
        let mut o = ConnectOpts::new(addr, id, v);
        o.clean = clean;
        o
    }

    async fn connect(addr: SocketAddr, id: &str, v: Version, clean: bool) -> (Client, Connack) {
        Client::connect(&opts(addr, id, v, clean), SessionState::new())
            .await
            .expect("connect")
    }

    #[tokio::test]
    async fn connects_with_both_versions() {
        let broker = Mosquitto::start();
        for v in VERSIONS {
            let (client, ack) = connect(broker.addr, &format!("c-{v:?}"), v, true).await;
            assert_eq!(
                ack,
                Connack {
                    session_present: false,
                    code: 0
                }
            );
            assert_eq!(client.version(), v);
            client.disconnect().await;
        }
    }

    #[tokio::test]
    async fn refused_connect_is_definite() {
        let broker = Mosquitto::start();
        // 3.1.1: an empty client id needs a clean session (code 2).
        let err = Client::connect(
            &opts(broker.addr, "", Version::V311, false),
            SessionState::new(),
        )
        .await
        .err()
        .expect("refused");
        assert!(matches!(err, MqttError::Refused(2)), "{err:?}");
        assert!(err.is_definite());
    }

    #[tokio::test]
    async fn round_trip_each_qos() {
        let broker = Mosquitto::start();
        for v in VERSIONS {
            let topic = format!("rt/{v:?}");
            let (mut sub, _) = connect(broker.addr, &format!("sub-{v:?}"), v, true).await;
            assert_eq!(sub.subscribe(&topic, 2).await.expect("subscribe"), 2);
            let (mut publ, _) = connect(broker.addr, &format!("pub-{v:?}"), v, true).await;
            for qos in 0..=2u8 {
                let payload = format!("m{qos}");
                publ.publish(Publish::new(topic.clone(), payload.clone(), qos))
                    .await
                    .expect("publish");
                let m = sub
                    .recv_timeout(Duration::from_secs(5))
                    .await
                    .expect("recv")
                    .expect("a message");
                assert_eq!(m.topic, topic);
                assert_eq!(m.payload, payload.as_bytes());
                assert_eq!(m.qos, qos);
                assert!(!m.retain && !m.dup);
            }
            sub.unsubscribe(&topic).await.expect("unsubscribe");
            publ.publish(Publish::new(topic.clone(), "after", 1))
                .await
                .expect("publish after unsubscribe");
            assert_eq!(
                sub.recv_timeout(Duration::from_millis(200))
                    .await
                    .expect("recv"),
                None
            );
            assert!(sub.session().unreleased_inbound().is_empty());
            publ.disconnect().await;
            sub.disconnect().await;
        }
    }

    #[tokio::test]
    async fn persistent_session_gets_offline_messages() {
        let broker = Mosquitto::start();
        for v in VERSIONS {
            let topic = format!("ps/{v:?}");
            let id = format!("persistent-{v:?}");
            let state = SessionState::new();
            let o = opts(broker.addr, &id, v, false);
            let (mut sub, ack) = Client::connect(&o, state.clone()).await.expect("connect");
            assert!(!ack.session_present);
            sub.subscribe(&topic, 2).await.expect("subscribe");
            sub.disconnect().await;

            let (mut publ, _) = connect(broker.addr, &format!("pub-{v:?}"), v, true).await;
            publ.publish(Publish::new(topic.clone(), "one", 1))
                .await
                .expect("qos 1");
            publ.publish(Publish::new(topic.clone(), "two", 2))
                .await
                .expect("qos 2");
            publ.disconnect().await;

            let (mut sub, ack) = Client::connect(&o, state.clone()).await.expect("reconnect");
            assert!(ack.session_present);
            let mut got = Vec::new();
            while let Some(m) = sub
                .recv_timeout(Duration::from_millis(500))
                .await
                .expect("recv")
            {
                got.push((m.payload, m.qos));
            }
            got.sort();
            assert_eq!(
                got,
                vec![(Bytes::from("one"), 1), (Bytes::from("two"), 2)],
                "{v:?}"
            );
            assert!(state.unreleased_inbound().is_empty());
            sub.disconnect().await;
        }
    }

    #[tokio::test]
    async fn dead_broker_gives_closed_not_refused() {
        let mut broker = Mosquitto::start();
        for v in VERSIONS {
            let (mut sub, _) = connect(broker.addr, &format!("sub-{v:?}"), v, true).await;
            sub.subscribe("dead/#", 1).await.expect("subscribe");
            let (mut publ, _) = connect(broker.addr, &format!("pub-{v:?}"), v, true).await;
            publ.publish(Publish::new("dead/1", "x", 1))
                .await
                .expect("publish");
            sub.recv().await.expect("delivered");
            broker.kill();
            for qos in [1, 2] {
                let err = publ
                    .publish(Publish::new("dead/2", "y", qos))
                    .await
                    .expect_err("broker is dead");
                assert!(matches!(err, MqttError::Closed(None)), "{v:?} {err:?}");
                assert!(!err.is_definite());
            }
            assert!(matches!(sub.recv().await, Err(MqttError::Closed(None))));
            assert!(matches!(
                sub.subscribe("x", 1).await,
                Err(MqttError::Closed(None))
            ));
            broker = Mosquitto::start();
        }
    }

    #[tokio::test]
    async fn recv_timeout_is_none_when_idle() {
        let broker = Mosquitto::start();
        for v in VERSIONS {
            let (mut c, _) = connect(broker.addr, &format!("idle-{v:?}"), v, true).await;
            c.subscribe("idle/#", 1).await.expect("subscribe");
            let started = std::time::Instant::now();
            assert_eq!(
                c.recv_timeout(Duration::from_millis(300))
                    .await
                    .expect("recv"),
                None
            );
            assert!(started.elapsed() >= Duration::from_millis(300));
            c.disconnect().await;
        }
    }

    /// The broker side of one scripted connection (no mosquitto needed).
    struct Fake {
        stream: TcpStream,
        buf: BytesMut,
        v: Version,
    }

    impl Fake {
        async fn accept(l: &TcpListener, v: Version, session_present: bool) -> Fake {
            let (stream, _) = l.accept().await.expect("accept");
            let mut f = Fake {
                stream,
                buf: BytesMut::new(),
                v,
            };
            assert!(matches!(f.read().await, Some(Packet::Connect { .. })));
            f.send(Packet::Connack {
                session_present,
                code: 0,
                server_keep_alive: None,
            })
            .await;
            f
        }

        /// The next packet; None at EOF.
        async fn read(&mut self) -> Option<Packet> {
            loop {
                if let Some(p) = codec::decode(&mut self.buf, self.v, MAX_PACKET).expect("decode") {
                    return Some(p);
                }
                if self.stream.read_buf(&mut self.buf).await.expect("read") == 0 {
                    return None;
                }
            }
        }

        async fn send(&mut self, p: Packet) {
            let bytes = frame(&p, self.v).expect("encode");
            self.stream.write_all(&bytes).await.expect("write");
        }
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        (l, addr)
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (l, addr) = listener().await;
        let mut o = opts(addr, "c", Version::V5, true);
        o.timeout = Duration::from_millis(200);
        let err = Client::connect(&o, SessionState::new())
            .await
            .err()
            .expect("timeout");
        assert!(matches!(err, MqttError::Timeout), "{err:?}");
        drop(l);

        // Connected, but the broker never acknowledges.
        let (l, addr) = listener().await;
        let broker = tokio::spawn(async move {
            let mut f = Fake::accept(&l, Version::V311, false).await;
            while f.read().await.is_some() {}
        });
        let (mut c, _) = connect(addr, "c", Version::V311, true).await;
        c.set_op_timeout(Duration::from_millis(200));
        let err = c
            .publish(Publish::new("t", "x", 1))
            .await
            .expect_err("timeout");
        assert!(matches!(err, MqttError::Timeout), "{err:?}");
        drop(c);
        broker.await.expect("fake broker");
    }

    #[tokio::test]
    async fn v5_reason_codes_and_disconnect() {
        let (l, addr) = listener().await;
        let broker = tokio::spawn(async move {
            let v = Version::V5;
            let mut f = Fake::accept(&l, v, false).await;
            let mut answers = [0x10u8, 0x87].into_iter();
            loop {
                match f.read().await {
                    Some(Packet::Publish(Publish {
                        qos: 1,
                        pkid: Some(pkid),
                        ..
                    })) => {
                        let reason = answers.next().expect("two QoS 1 publishes");
                        f.send(Packet::Puback { pkid, reason }).await;
                    }
                    Some(Packet::Publish(Publish {
                        qos: 2,
                        pkid: Some(pkid),
                        dup,
                        ..
                    })) => {
                        assert_eq!(pkid, 77);
                        assert!(!dup);
                        f.send(Packet::Pubrec { pkid, reason: 0 }).await;
                    }
                    // Lose the connection between PUBREC and PUBCOMP.
                    Some(Packet::Pubrel { .. }) => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            drop(f);
            // Second connection: PUBREL is resumed; then DISCONNECT 0x8E.
            let mut f = Fake::accept(&l, v, true).await;
            assert_eq!(
                f.read().await,
                Some(Packet::Pubrel {
                    pkid: 77,
                    reason: 0
                })
            );
            f.send(Packet::Pubcomp {
                pkid: 77,
                reason: 0,
            })
            .await;
            assert!(matches!(f.read().await, Some(Packet::Publish(_))));
            f.send(Packet::Disconnect { reason: 0x8E }).await;
        });
        let state = SessionState::new();
        let o = opts(addr, "c", Version::V5, false);
        let (mut c, _) = Client::connect(&o, state.clone()).await.expect("connect");
        // 0x10 "no matching subscribers" is success; 0x87 is a refusal.
        c.publish(Publish::new("t", "a", 1))
            .await
            .expect("0x10 is success");
        let err = c
            .publish(Publish::new("t", "b", 1))
            .await
            .expect_err("refused");
        assert!(matches!(err, MqttError::Refused(0x87)) && err.is_definite());
        let mut p = Publish::new("t", "c", 2);
        p.pkid = Some(77);
        let err = c.publish(p).await.expect_err("interrupted");
        assert!(matches!(err, MqttError::AfterPubrec), "{err:?}");
        drop(c);

        let (mut c, ack) = Client::connect(&o, state).await.expect("reconnect");
        assert!(ack.session_present);
        c.release(77).await.expect("release");
        let err = c
            .publish(Publish::new("t", "d", 1))
            .await
            .expect_err("closed");
        assert!(matches!(err, MqttError::Closed(Some(0x8E))), "{err:?}");
        assert!(!err.is_definite());
        broker.await.expect("fake broker");
    }

    #[tokio::test]
    async fn inbound_qos2_resent_after_reconnect_is_delivered_once() {
        let (l, addr) = listener().await;
        let broker = tokio::spawn(async move {
            let v = Version::V311;
            let publish = |dup| {
                Packet::Publish(Publish {
                    topic: "q2".into(),
                    payload: Bytes::from("once"),
                    qos: 2,
                    retain: false,
                    pkid: Some(7),
                    dup,
                })
            };
            let mut f = Fake::accept(&l, v, false).await;
            f.send(publish(false)).await;
            assert_eq!(f.read().await, Some(Packet::Pubrec { pkid: 7, reason: 0 }));
            drop(f); // the connection breaks before PUBREL
            let mut f = Fake::accept(&l, v, true).await;
            f.send(publish(true)).await;
            assert_eq!(f.read().await, Some(Packet::Pubrec { pkid: 7, reason: 0 }));
            f.send(Packet::Pubrel { pkid: 7, reason: 0 }).await;
            assert_eq!(f.read().await, Some(Packet::Pubcomp { pkid: 7, reason: 0 }));
            // After release the id is free: a new message with it is new.
            f.send(publish(false)).await;
            assert_eq!(f.read().await, Some(Packet::Pubrec { pkid: 7, reason: 0 }));
            f.send(Packet::Pubrel { pkid: 7, reason: 0 }).await;
            assert_eq!(f.read().await, Some(Packet::Pubcomp { pkid: 7, reason: 0 }));
            f.send(Packet::Publish(Publish::new("q2", "done", 0))).await;
            assert_eq!(f.read().await, Some(Packet::Disconnect { reason: 0 }));
        });
        let state = SessionState::new();
        let o = opts(addr, "c", Version::V311, false);
        let (mut c, _) = Client::connect(&o, state.clone()).await.expect("connect");
        let m = c.recv().await.expect("first delivery");
        assert_eq!((m.payload.as_ref(), m.qos, m.dup), (&b"once"[..], 2, false));
        assert!(matches!(c.recv().await, Err(MqttError::Closed(None))));
        assert_eq!(state.unreleased_inbound(), vec![7]);

        let (mut c, ack) = Client::connect(&o, state.clone()).await.expect("reconnect");
        assert!(ack.session_present);
        let m = c.recv().await.expect("the next, new message");
        assert!(!m.dup, "the DUP re-send was not delivered again");
        assert_eq!(c.recv().await.expect("done").payload, "done");
        c.disconnect().await;
        broker.await.expect("fake broker");
        assert!(state.unreleased_inbound().is_empty());
    }

    #[tokio::test]
    async fn unanswered_pings_close_the_connection() {
        let (l, addr) = listener().await;
        let broker = tokio::spawn(async move {
            let mut f = Fake::accept(&l, Version::V5, false).await;
            // Answer the first PINGREQ, then go silent (a paused broker).
            assert_eq!(f.read().await, Some(Packet::Pingreq));
            f.send(Packet::Pingresp).await;
            assert_eq!(f.read().await, Some(Packet::Pingreq));
            while f.read().await.is_some() {}
        });
        let mut o = opts(addr, "c", Version::V5, true);
        o.keep_alive = 1;
        let (mut c, _) = Client::connect(&o, SessionState::new())
            .await
            .expect("connect");
        let started = std::time::Instant::now();
        assert!(matches!(c.recv().await, Err(MqttError::Closed(None))));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
            "{took:?}"
        );
        broker.await.expect("fake broker");
    }

    #[test]
    fn pkids_wrap_and_skip_zero() {
        let s = SessionState::new();
        assert_eq!(s.next_pkid(), 1);
        s.lock().last_pkid = u16::MAX - 1;
        assert_eq!(s.next_pkid(), u16::MAX);
        assert_eq!(s.next_pkid(), 1);
    }
}
