//! The client handle ([`Client`]): how to connect ([`ConnectOpts`]), the
//! broker's answer ([`Connack`]), the messages it delivers ([`Message`]),
//! and the requests (publish, subscribe, ...) that wait for their
//! acknowledgement. The socket itself belongs to the connection task
//! (`connection`); dropping the [`Client`] aborts it and closes the socket
//! without a DISCONNECT, like a crashed client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::acks::{AckKind, Shared};
use super::codec::{self, Packet, Publish, Version, MAX_PACKET};
use super::connection::{frame, Connection, Out};
use super::{MqttError, SessionState};

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

/// An application message delivered to this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
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
