//! The inter-node transport: persistent TCP connections carrying
//! length-prefixed bincode frames.
//!
//! - **Authenticated.** Every connection starts with a mutual HMAC-SHA256
//!   challenge-response over the cluster secret (`distributed_cookie`); the
//!   secret never crosses the wire. A peer with the wrong secret is refused
//!   and both sides log why.
//! - **Pipelined.** Requests carry ids; many are in flight on one connection
//!   and replies come back in any order. A writer task drains everything
//!   queued into one socket write.
//! - **Reconnecting.** A broken connection fails its pending requests at once
//!   and is re-established on next use, with exponential backoff between
//!   failed attempts.
//!
//! Each node dials its own outgoing connection to each peer; requests flow
//! from dialer to listener and replies flow back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::bincode_config;
use crate::rpc::{Reply, Rpc};
use crate::types::NodeId;

/// Largest frame accepted (a snapshot chunk is at most a few MiB).
pub const MAX_FRAME: usize = 64 << 20;
/// Frames queued for one connection's writer.
const WRITE_QUEUE: usize = 16_384;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(2000);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Half the shortest election timeout (`node::ELECTION_TIMEOUT_MIN`, 400 ms):
/// a peer that restarts hears from the leader before its own election
/// timer fires. With a longer backoff, two followers restarted together
/// could elect one of themselves and drop the leader's entries that had not
/// reached a quorum (a membership change cancelled without one, say).
pub(crate) const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// A peer counts as reachable if it answered within this long.
const REACHABLE_WITHIN: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("{0}")]
    Refused(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("connection lost")]
    Closed,
    #[error("bad frame: {0}")]
    Frame(String),
}

type Nonce = [u8; 16];

#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Hello {
        from: NodeId,
        nonce: Nonce,
    },
    Challenge {
        from: NodeId,
        nonce: Nonce,
        proof: Vec<u8>,
    },
    Proof {
        proof: Vec<u8>,
    },
    Welcome,
    Refused {
        reason: String,
    },
    /// id 0: one-way, no reply.
    Req {
        id: u64,
        rpc: Rpc,
    },
    Resp {
        id: u64,
        reply: Reply,
    },
}

/// Serves requests arriving from peers.
pub trait Handler: Send + Sync + 'static {
    /// Called for each request in the order it arrived on its connection;
    /// may await briefly (to keep that order). The returned future runs
    /// detached; its output is the reply (`None` for one-way messages).
    fn handle(
        &self,
        from: NodeId,
        rpc: Rpc,
    ) -> impl Future<Output = BoxFuture<'static, Option<Reply>>> + Send;
}

/// One live connection to a peer.
struct Conn {
    tx: mpsc::Sender<Frame>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
    dead: AtomicBool,
    /// Cancelled when the connection is killed: its reader and writer stop
    /// and the socket closes, even if the peer has gone silent.
    closed: CancellationToken,
}

impl Conn {
    fn new(tx: mpsc::Sender<Frame>) -> Conn {
        Conn {
            tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            dead: AtomicBool::new(false),
            closed: CancellationToken::new(),
        }
    }

    fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        self.closed.cancel();
        // Dropping the senders fails every waiter at once.
        self.pending.lock().clear();
    }
    fn alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct PeerState {
    addr: String,
    conn: Option<Arc<Conn>>,
    /// No new attempt before this instant (backoff after a failure).
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
}

struct Peer {
    state: Mutex<PeerState>,
    /// One dial at a time.
    dialing: tokio::sync::Mutex<()>,
    last_ok: Mutex<Option<Instant>>,
}

/// The transport of one node. Cheap to share (`Arc`).
pub struct Transport {
    me: NodeId,
    cookie: Vec<u8>,
    peers: Mutex<HashMap<NodeId, Arc<Peer>>>,
    pub stats: TransportStats,
}

#[derive(Default, Debug)]
pub struct TransportStats {
    pub requests_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub connects: AtomicU64,
    pub refused: AtomicU64,
    /// Snapshot chunks sent and acknowledged (counted by
    /// [`crate::network`]), and their payload bytes.
    pub snapshot_chunks_sent: AtomicU64,
    pub snapshot_bytes_sent: AtomicU64,
}

fn mac(cookie: &[u8], role: &[u8], a: &Nonce, b: &Nonce, id: NodeId) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length; `None` cannot happen in practice.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(cookie).ok()?;
    mac.update(role);
    mac.update(a);
    mac.update(b);
    mac.update(&id.to_be_bytes());
    Some(mac)
}

fn proof(cookie: &[u8], role: &[u8], a: &Nonce, b: &Nonce, id: NodeId) -> Vec<u8> {
    mac(cookie, role, a, b, id)
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default()
}

fn verify(cookie: &[u8], role: &[u8], a: &Nonce, b: &Nonce, id: NodeId, got: &[u8]) -> bool {
    mac(cookie, role, a, b, id).is_some_and(|m| m.verify_slice(got).is_ok())
}

fn encode_frame(f: &Frame, out: &mut Vec<u8>) -> Result<(), NetError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(f, out, bincode_config())
        .map_err(|e| NetError::Frame(e.to_string()))?;
    let len = out.len() - at - 4;
    if len > MAX_FRAME {
        out.truncate(at);
        return Err(NetError::Frame(format!(
            "frame of {len} bytes is too large"
        )));
    }
    out[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Frame, NetError> {
    let len = r.read_u32().await.map_err(|_| NetError::Closed)? as usize;
    if len > MAX_FRAME {
        return Err(NetError::Frame(format!(
            "frame of {len} bytes is too large"
        )));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).await.map_err(|_| NetError::Closed)?;
    bincode::serde::decode_from_slice(&buf, bincode_config())
        .map(|(f, _)| f)
        .map_err(|e| NetError::Frame(e.to_string()))
}

async fn write_frame(w: &mut (impl AsyncWriteExt + Unpin), f: &Frame) -> Result<(), NetError> {
    let mut buf = Vec::new();
    encode_frame(f, &mut buf)?;
    w.write_all(&buf).await.map_err(|_| NetError::Closed)
}

async fn timed<T>(
    d: Duration,
    f: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| NetError::Timeout(d))?
}

impl Transport {
    pub fn new(me: NodeId, cookie: &str) -> Arc<Transport> {
        Arc::new(Transport {
            me,
            cookie: cookie.as_bytes().to_vec(),
            peers: Mutex::new(HashMap::new()),
            stats: TransportStats::default(),
        })
    }

    fn peer(&self, to: NodeId, addr: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock();
        let p = peers.entry(to).or_insert_with(|| {
            Arc::new(Peer {
                state: Mutex::new(PeerState {
                    addr: addr.to_string(),
                    ..Default::default()
                }),
                dialing: tokio::sync::Mutex::new(()),
                last_ok: Mutex::new(None),
            })
        });
        let mut st = p.state.lock();
        if st.addr != addr {
            // The node moved: drop the old connection.
            st.addr = addr.to_string();
            if let Some(c) = st.conn.take() {
                c.kill();
            }
            st.retry_at = None;
        }
        drop(st);
        p.clone()
    }

    /// Did `to` answer recently?
    pub fn reachable(&self, to: NodeId) -> bool {
        if to == self.me {
            return true;
        }
        let Some(p) = self.peers.lock().get(&to).cloned() else {
            return false;
        };
        let alive = p.state.lock().conn.as_ref().is_some_and(|c| c.alive());
        let recent = p
            .last_ok
            .lock()
            .is_some_and(|t| t.elapsed() < REACHABLE_WITHIN);
        alive && recent
    }

    /// The last connection error to `to`, if its connection is down.
    pub fn last_error(&self, to: NodeId) -> Option<String> {
        let p = self.peers.lock().get(&to).cloned()?;
        let st = p.state.lock();
        if st.conn.as_ref().is_some_and(|c| c.alive()) {
            None
        } else {
            st.last_error.clone()
        }
    }

    /// The live connection to `to`, dialing it if needed (unless backing off).
    async fn conn(&self, to: NodeId, addr: &str) -> Result<Arc<Conn>, NetError> {
        let peer = self.peer(to, addr);
        loop {
            {
                let st = peer.state.lock();
                if let Some(c) = st.conn.as_ref().filter(|c| c.alive()) {
                    return Ok(c.clone());
                }
                if let Some(t) = st.retry_at {
                    if Instant::now() < t {
                        return Err(NetError::Unreachable(format!(
                            "node {to} at {}: {}",
                            st.addr,
                            st.last_error.as_deref().unwrap_or("backing off")
                        )));
                    }
                }
            }
            let _dial = peer.dialing.lock().await;
            // Someone else may have connected (or failed) while we waited.
            {
                let st = peer.state.lock();
                if st.conn.as_ref().is_some_and(|c| c.alive()) {
                    continue;
                }
                if st.retry_at.is_some_and(|t| Instant::now() < t) {
                    continue;
                }
            }
            let addr = peer.state.lock().addr.clone();
            match self.dial(to, &addr, peer.clone()).await {
                Ok(c) => {
                    let mut st = peer.state.lock();
                    st.conn = Some(c.clone());
                    st.retry_at = None;
                    st.backoff = Duration::ZERO;
                    st.last_error = None;
                    return Ok(c);
                }
                Err(e) => {
                    let mut st = peer.state.lock();
                    st.backoff = (st.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    st.retry_at = Some(Instant::now() + st.backoff);
                    let msg = e.to_string();
                    // Logged on change only: the first failure since the
                    // peer was last reachable, or a different error.
                    if st.last_error.as_deref() != Some(&msg) {
                        if matches!(e, NetError::Refused(_)) {
                            warn!(peer = to, %addr, error = %msg, "inter-node connection refused");
                        } else if st.last_error.is_none() {
                            warn!(peer = to, %addr, error = %msg, "peer unreachable; retrying with backoff (logged again when this changes)");
                        } else {
                            info!(peer = to, %addr, error = %msg, "peer still unreachable, now with another error");
                        }
                    }
                    st.last_error = Some(msg);
                    return Err(e);
                }
            }
        }
    }

    /// Connects and authenticates; `expect` is the node id we want (0 =
    /// whoever answers). Returns the stream and the peer's id.
    async fn handshake(&self, addr: &str, expect: NodeId) -> Result<(TcpStream, NodeId), NetError> {
        let mut s = timed(CONNECT_TIMEOUT, async {
            TcpStream::connect(addr)
                .await
                .map_err(|e| NetError::Unreachable(format!("{addr}: {e}")))
        })
        .await?;
        let _ = s.set_nodelay(true);
        let mine: Nonce = rand::random();
        timed(HANDSHAKE_TIMEOUT, async {
            write_frame(
                &mut s,
                &Frame::Hello {
                    from: self.me,
                    nonce: mine,
                },
            )
            .await?;
            let (from, theirs) = match read_frame(&mut s).await? {
                Frame::Challenge { from, nonce, proof } => {
                    if !verify(&self.cookie, b"server", &mine, &nonce, from, &proof) {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(NetError::Refused(format!(
                            "node {from} at {addr} has a different distributed_cookie"
                        )));
                    }
                    (from, nonce)
                }
                Frame::Refused { reason } => return Err(NetError::Refused(reason)),
                other => {
                    return Err(NetError::Frame(format!(
                        "expected a challenge, got {other:?}"
                    )))
                }
            };
            if expect != 0 && from != expect {
                return Err(NetError::Refused(format!(
                    "{addr} is node {from}, not node {expect}"
                )));
            }
            let p = proof(&self.cookie, b"client", &theirs, &mine, self.me);
            write_frame(&mut s, &Frame::Proof { proof: p }).await?;
            match read_frame(&mut s).await? {
                Frame::Welcome => Ok(()),
                Frame::Refused { reason } => Err(NetError::Refused(format!("{addr}: {reason}"))),
                other => Err(NetError::Frame(format!("expected welcome, got {other:?}"))),
            }
            .map(|_| from)
        })
        .await
        .map(|from| (s, from))
    }

    async fn dial(&self, to: NodeId, addr: &str, peer: Arc<Peer>) -> Result<Arc<Conn>, NetError> {
        let (s, _) = self.handshake(addr, to).await?;
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        info!(peer = to, %addr, "connected to peer");
        let (rd, wr) = s.into_split();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let conn = Arc::new(Conn::new(tx));
        tokio::spawn(writer(wr, rx, conn.clone()));
        tokio::spawn(client_reader(rd, conn.clone(), peer, to));
        Ok(conn)
    }

    /// Queues a request to `to` and returns the receiver of its reply. The
    /// request is on the wire in call order: two `send`s awaited one after
    /// the other reach the peer in that order, on one connection.
    pub async fn send(
        &self,
        to: NodeId,
        addr: &str,
        rpc: Rpc,
    ) -> Result<oneshot::Receiver<Reply>, NetError> {
        Ok(self.send_on(to, addr, rpc).await?.1)
    }

    /// As [`Transport::send`], also returning the connection it went on.
    async fn send_on(
        &self,
        to: NodeId,
        addr: &str,
        rpc: Rpc,
    ) -> Result<(Arc<Conn>, oneshot::Receiver<Reply>), NetError> {
        let conn = self.conn(to, addr).await?;
        self.stats.requests_sent.fetch_add(1, Ordering::Relaxed);
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        if conn.tx.send(Frame::Req { id, rpc }).await.is_err() || !conn.alive() {
            conn.pending.lock().remove(&id);
            return Err(NetError::Closed);
        }
        Ok((conn, rx))
    }

    /// Sends a request and waits for its reply. If it times out and the
    /// peer has answered nothing on any request since this one was sent, the
    /// connection is taken as silent (a cut network keeps a TCP connection
    /// open but blackholed, and TCP's retransmission backoff would delay the
    /// first packet after the heal by seconds): it is closed, and the next
    /// request dials afresh.
    pub async fn call(
        &self,
        to: NodeId,
        addr: &str,
        rpc: Rpc,
        timeout: Duration,
    ) -> Result<Reply, NetError> {
        let sent = Instant::now();
        let (conn, rx) = timed(timeout, self.send_on(to, addr, rpc)).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(NetError::Closed),
            Err(_) => {
                let peer = self.peer(to, addr);
                let answered = peer.last_ok.lock().is_some_and(|t| t >= sent);
                if !answered && conn.alive() {
                    debug!(
                        peer = to,
                        "no answer from peer within {timeout:?}; redialing"
                    );
                    conn.kill();
                }
                Err(NetError::Timeout(timeout))
            }
        }
    }

    /// Sends a one-way message if a connection is up or can be made; drops
    /// it when the peer's queue is full (used for QoS 0).
    pub async fn notify(&self, to: NodeId, addr: &str, rpc: Rpc) -> Result<(), NetError> {
        let conn = self.conn(to, addr).await?;
        conn.tx
            .try_send(Frame::Req { id: 0, rpc })
            .map_err(|_| NetError::Closed)
    }

    /// One request over a fresh connection to an address whose node id is not
    /// known yet (joining through a discovery node). Returns the answering
    /// node's id with the reply.
    pub async fn call_addr(
        &self,
        addr: &str,
        rpc: Rpc,
        timeout: Duration,
    ) -> Result<(NodeId, Reply), NetError> {
        let (mut s, from) = self.handshake(addr, 0).await?;
        timed(timeout, async {
            write_frame(&mut s, &Frame::Req { id: 1, rpc }).await?;
            match read_frame(&mut s).await? {
                Frame::Resp { reply, .. } => Ok((from, reply)),
                other => Err(NetError::Frame(format!("expected a reply, got {other:?}"))),
            }
        })
        .await
    }

    /// Accepts peers on `listener` and serves their requests with `handler`.
    pub async fn serve<H: Handler>(self: Arc<Self>, listener: TcpListener, handler: Arc<H>) {
        loop {
            let (s, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "cluster listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = s.set_nodelay(true);
            let t = self.clone();
            let h = handler.clone();
            tokio::spawn(async move {
                match t.accept(s).await {
                    Ok((rd, wr, from)) => t.serve_conn(rd, wr, from, h).await,
                    Err(e) => {
                        t.stats.refused.fetch_add(1, Ordering::Relaxed);
                        warn!(%remote, error = %e, "refused inter-node connection");
                    }
                }
            });
        }
    }

    async fn accept(
        &self,
        mut s: TcpStream,
    ) -> Result<(OwnedReadHalf, OwnedWriteHalf, NodeId), NetError> {
        timed(HANDSHAKE_TIMEOUT, async {
            let (from, theirs) = match read_frame(&mut s).await? {
                Frame::Hello { from, nonce } => (from, nonce),
                other => return Err(NetError::Frame(format!("expected hello, got {other:?}"))),
            };
            let mine: Nonce = rand::random();
            let p = proof(&self.cookie, b"server", &theirs, &mine, self.me);
            write_frame(
                &mut s,
                &Frame::Challenge {
                    from: self.me,
                    nonce: mine,
                    proof: p,
                },
            )
            .await?;
            let answer = match read_frame(&mut s).await {
                Err(NetError::Closed) => {
                    return Err(NetError::Refused(format!(
                        "node {from} hung up during the handshake: it has a different distributed_cookie"
                    )))
                }
                other => other?,
            };
            match answer {
                Frame::Proof { proof } if verify(&self.cookie, b"client", &mine, &theirs, from, &proof) => {
                    write_frame(&mut s, &Frame::Welcome).await?;
                    Ok(from)
                }
                Frame::Proof { .. } => {
                    let reason = "wrong distributed_cookie".to_string();
                    let _ = write_frame(&mut s, &Frame::Refused { reason: reason.clone() }).await;
                    Err(NetError::Refused(format!("node {from} has a {reason}")))
                }
                // The dialer rejected our proof and hung up.
                _ => Err(NetError::Refused(format!(
                    "node {from} hung up during the handshake (different distributed_cookie?)"
                ))),
            }
        })
        .await
        .map(|from| {
            let (rd, wr) = s.into_split();
            (rd, wr, from)
        })
    }

    async fn serve_conn<H: Handler>(
        &self,
        rd: OwnedReadHalf,
        wr: OwnedWriteHalf,
        from: NodeId,
        handler: Arc<H>,
    ) {
        debug!(peer = from, "peer connected");
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let conn = Arc::new(Conn::new(tx.clone()));
        tokio::spawn(writer(wr, rx, conn.clone()));
        let mut rd = BufReader::with_capacity(256 << 10, rd);
        loop {
            let f = match read_frame(&mut rd).await {
                Ok(f) => f,
                Err(NetError::Closed) => break,
                Err(e) => {
                    warn!(peer = from, error = %e, "closing inter-node connection");
                    break;
                }
            };
            self.stats.frames_received.fetch_add(1, Ordering::Relaxed);
            let Frame::Req { id, rpc } = f else {
                warn!(peer = from, "unexpected frame from peer; closing");
                break;
            };
            let fut = handler.handle(from, rpc).await;
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(reply) = fut.await {
                    if id != 0 {
                        let _ = tx.send(Frame::Resp { id, reply }).await;
                    }
                }
            });
        }
        conn.kill();
        debug!(peer = from, "peer disconnected");
    }
}

/// Writes queued frames, many per socket write.
async fn writer(mut w: OwnedWriteHalf, mut rx: mpsc::Receiver<Frame>, conn: Arc<Conn>) {
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let f = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
            _ = conn.closed.cancelled() => break,
        };
        if let Err(e) = encode_frame(&f, &mut buf) {
            warn!(error = %e, "dropping a frame that cannot be encoded");
        }
        while buf.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(f) => {
                    if let Err(e) = encode_frame(&f, &mut buf) {
                        warn!(error = %e, "dropping a frame that cannot be encoded");
                    }
                }
                Err(_) => break,
            }
        }
        if buf.is_empty() {
            continue;
        }
        if w.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
        if !conn.alive() {
            break;
        }
    }
    conn.kill();
    let _ = w.shutdown().await;
}

/// Reads replies on a dialed connection and hands them to their waiters.
async fn client_reader(rd: OwnedReadHalf, conn: Arc<Conn>, peer: Arc<Peer>, to: NodeId) {
    let mut rd = BufReader::with_capacity(256 << 10, rd);
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd) => f,
            _ = conn.closed.cancelled() => break,
        };
        match frame {
            Ok(Frame::Resp { id, reply }) => {
                *peer.last_ok.lock() = Some(Instant::now());
                if let Some(w) = conn.pending.lock().remove(&id) {
                    let _ = w.send(reply);
                }
            }
            Ok(other) => {
                warn!(peer = to, "unexpected frame {other:?}; closing");
                break;
            }
            Err(NetError::Closed) => break,
            Err(e) => {
                warn!(peer = to, error = %e, "closing connection to peer");
                break;
            }
        }
        if !conn.alive() {
            break;
        }
    }
    conn.kill();
    info!(peer = to, "connection to peer lost");
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::rpc::AdminError;
    use crate::types::NodeInfo;

    /// Answers `Join { id }` with `id` after `id` ms, so later requests can
    /// be answered first.
    struct Echo;

    impl Handler for Echo {
        async fn handle(&self, _from: NodeId, rpc: Rpc) -> BoxFuture<'static, Option<Reply>> {
            async move {
                match rpc {
                    Rpc::Join { id, .. } => {
                        tokio::time::sleep(Duration::from_millis(id)).await;
                        Some(Reply::Admin(Ok(id.to_string())))
                    }
                    _ => Some(Reply::Admin(Err(AdminError::Refused("unexpected".into())))),
                }
            }
            .boxed()
        }
    }

    async fn server(id: NodeId, cookie: &str) -> (Arc<Transport>, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let t = Transport::new(id, cookie);
        tokio::spawn(t.clone().serve(l, Arc::new(Echo)));
        (t, addr)
    }

    fn join(id: NodeId) -> Rpc {
        Rpc::Join {
            id,
            info: NodeInfo::default(),
        }
    }

    #[tokio::test]
    async fn pipelined_requests_get_their_own_replies_in_any_order() {
        let (_srv, addr) = server(2, "secret").await;
        let client = Transport::new(1, "secret");
        // Sent in order 60, 59, ... 1 ms of work: replies come back reversed.
        let mut rxs = Vec::new();
        for id in (1..=60).rev() {
            rxs.push((id, client.send(2, &addr, join(id)).await.expect("send")));
        }
        for (id, rx) in rxs {
            match rx.await.expect("reply") {
                Reply::Admin(Ok(s)) => assert_eq!(s, id.to_string()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            client.stats.connects.load(Ordering::Relaxed),
            1,
            "one connection"
        );
        assert!(client.reachable(2));
    }

    #[tokio::test]
    async fn a_call_that_times_out_on_a_silent_connection_closes_it_and_the_next_call_redials() {
        let (_srv, addr) = server(2, "secret").await;
        let client = Transport::new(1, "secret");
        // Answered only after 500 ms, and nothing else is in flight: the
        // connection looks silent when the 100 ms deadline passes.
        let err = client
            .call(2, &addr, join(500), Duration::from_millis(100))
            .await
            .expect_err("timeout");
        assert!(matches!(err, NetError::Timeout(_)), "{err}");
        let reply = client
            .call(2, &addr, join(1), Duration::from_secs(2))
            .await
            .expect("reply on a new connection");
        assert!(matches!(reply, Reply::Admin(Ok(_))), "{reply:?}");
        assert_eq!(client.stats.connects.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_call_that_times_out_while_the_peer_answers_others_keeps_the_connection() {
        let (_srv, addr) = server(2, "secret").await;
        let client = Transport::new(1, "secret");
        let quick = client.send(2, &addr, join(10)).await.expect("send");
        // The slow one times out, but the peer answered the quick one
        // after it was sent: the connection is busy, not silent.
        let err = client
            .call(2, &addr, join(400), Duration::from_millis(100))
            .await
            .expect_err("timeout");
        assert!(matches!(err, NetError::Timeout(_)), "{err}");
        quick.await.expect("quick reply");
        client
            .call(2, &addr, join(1), Duration::from_secs(2))
            .await
            .expect("reply");
        assert_eq!(client.stats.connects.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_peer_with_another_cookie_is_refused_on_both_sides() {
        let (srv, addr) = server(2, "secret").await;
        let client = Transport::new(1, "guess");
        let err = client
            .call(2, &addr, join(1), Duration::from_secs(2))
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("different distributed_cookie"),
            "{err}"
        );
        assert!(!client.reachable(2));
        let refused_on_server = tokio::time::timeout(Duration::from_secs(2), async {
            while srv.stats.refused.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            refused_on_server.is_ok(),
            "the listening side counts the refusal"
        );
    }

    #[tokio::test]
    async fn a_dialled_node_must_be_the_node_expected() {
        let (_srv, addr) = server(3, "secret").await;
        let client = Transport::new(1, "secret");
        let err = client
            .call(2, &addr, join(1), Duration::from_secs(2))
            .await
            .expect_err("wrong node");
        assert!(err.to_string().contains("is node 3, not node 2"), "{err}");
    }

    #[tokio::test]
    async fn a_lost_connection_fails_pending_requests_and_is_redialled() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        // A peer that authenticates, reads nothing and then hangs up.
        let peer = Transport::new(2, "secret");
        let accepted = tokio::spawn(async move {
            let (s, _) = l.accept().await.expect("accept");
            peer.accept(s).await.expect("handshake")
        });
        let client = Transport::new(1, "secret");
        let pending = client.send(2, &addr, join(1)).await.expect("send");
        let (rd, wr, from) = accepted.await.expect("task");
        assert_eq!(from, 1);
        drop((rd, wr));
        let r = tokio::time::timeout(Duration::from_secs(2), pending).await;
        assert!(
            matches!(r, Ok(Err(_))),
            "the pending request fails at once: {r:?}"
        );
        assert!(!client.reachable(2));
        // A real server on the same address: the client dials again.
        let l = TcpListener::bind(&addr).await.expect("rebind");
        tokio::spawn(Transport::new(2, "secret").serve(l, Arc::new(Echo)));
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(Reply::Admin(Ok(s))) =
                    client.call(2, &addr, join(1), Duration::from_secs(1)).await
                {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert_eq!(ok.ok().as_deref(), Some("1"));
        assert_eq!(client.stats.connects.load(Ordering::Relaxed), 2);
    }
}
