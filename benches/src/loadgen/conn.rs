//! One MQTT connection: a non-blocking TCP socket driven by readiness
//! (`ready()` + `try_read`/`try_write`), a read buffer parsed in place, and a
//! write buffer that accumulates a whole batch of packets per syscall.

use super::clock::mono_ns;
use super::codec::{self, ConnectOpts, Packet, ProtoError};
use std::fmt;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Stop filling the write buffer past this many bytes (one write's worth).
pub const WBUF_HIGH: usize = 64 * 1024;
const RBUF_MIN_FREE: usize = 16 * 1024;

#[derive(Clone, Debug)]
pub struct ClientCfg {
    pub host: String,
    pub version: u8,
    pub username: Option<String>,
    pub password: Option<String>,
    pub clean: bool,
    pub keepalive: u16,
    pub session_expiry: u32,
    pub connect_timeout: Duration,
}

#[derive(Debug)]
pub enum ConnError {
    Tcp(String, io::Error),
    Timeout(String),
    Refused(String),
    Closed,
    Io(io::Error),
    Proto(ProtoError),
}

impl ConnError {
    /// Short label used to tally errors by kind.
    pub fn kind(&self) -> String {
        match self {
            ConnError::Tcp(_, e) => format!("connect: {}", io_kind(e)),
            ConnError::Timeout(_) => "connect: timeout".into(),
            ConnError::Refused(s) => format!("connect: {s}"),
            ConnError::Closed => "connect: closed by broker before CONNACK".into(),
            ConnError::Io(e) => format!("connect: {}", io_kind(e)),
            ConnError::Proto(e) => format!("connect: {e}"),
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Tcp(host, e) if e.kind() == io::ErrorKind::ConnectionRefused => write!(
                f,
                "connection refused by {host} (is the broker running and listening there?)"
            ),
            ConnError::Tcp(host, e) => write!(f, "cannot connect to {host}: {e}"),
            ConnError::Timeout(host) => {
                write!(f, "timed out connecting to {host} (TCP or CONNACK)")
            }
            ConnError::Refused(s) => write!(f, "broker refused the connection: {s}"),
            ConnError::Closed => write!(f, "broker closed the connection before CONNACK"),
            ConnError::Io(e) => write!(f, "I/O error during MQTT handshake: {e}"),
            ConnError::Proto(e) => write!(f, "{e}"),
        }
    }
}

/// Stable short name for an I/O error (for tallies).
pub fn io_kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        io::ErrorKind::UnexpectedEof => "closed by broker".into(),
        _ => e.to_string(),
    }
}

pub struct Conn {
    pub stream: TcpStream,
    pub version: u8,
    pub rbuf: Vec<u8>,
    pub rstart: usize,
    pub rend: usize,
    pub wbuf: Vec<u8>,
    pub wpos: usize,
    /// Monotonic ns of the last successful write (for keepalive).
    pub last_write: u64,
    /// Broker's MQTT 5 Receive Maximum (65535 for 3.1.1).
    pub receive_max: u16,
    pub max_qos: u8,
    pub session_present: bool,
}

impl Conn {
    fn new(stream: TcpStream, version: u8) -> Self {
        Conn {
            stream,
            version,
            rbuf: vec![0; 64 * 1024],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(WBUF_HIGH + 4096),
            wpos: 0,
            last_write: mono_ns(),
            receive_max: u16::MAX,
            max_qos: 2,
            session_present: false,
        }
    }

    fn make_room(&mut self) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        if self.rbuf.len() - self.rend < RBUF_MIN_FREE {
            if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            }
            if self.rbuf.len() - self.rend < RBUF_MIN_FREE {
                let n = self.rbuf.len() * 2;
                self.rbuf.resize(n, 0);
            }
        }
    }

    /// One non-blocking read. `Ok(false)` = EOF. WouldBlock is returned as an error.
    pub fn read_some(&mut self) -> io::Result<bool> {
        self.make_room();
        let n = self.stream.try_read(&mut self.rbuf[self.rend..])?;
        self.rend += n;
        Ok(n > 0)
    }

    pub fn want_write(&self) -> bool {
        self.wpos < self.wbuf.len()
    }

    /// Write as much of the buffer as the socket takes without blocking.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    self.last_write = mono_ns();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    /// Blocking (async) flush with a time limit, for handshakes and goodbyes.
    pub async fn flush_all(&mut self, limit: Duration) -> io::Result<()> {
        let (buf, pos) = (&self.wbuf, self.wpos);
        match tokio::time::timeout(limit, self.stream.write_all(&buf[pos..])).await {
            Ok(r) => r?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
        self.wbuf.clear();
        self.wpos = 0;
        self.last_write = mono_ns();
        Ok(())
    }

    /// Send DISCONNECT and close; best effort, bounded time.
    pub async fn close(mut self) {
        codec::encode_disconnect(&mut self.wbuf);
        if self.flush_all(Duration::from_secs(2)).await.is_ok() {
            let _ = self.stream.shutdown().await;
        }
    }

    pub fn unread(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }
}

/// TCP connect + CONNECT/CONNACK. Bytes after the CONNACK stay buffered.
pub async fn connect(cfg: &ClientCfg, client_id: &str) -> Result<Conn, ConnError> {
    match tokio::time::timeout(cfg.connect_timeout, connect_inner(cfg, client_id)).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::Timeout(cfg.host.clone())),
    }
}

async fn connect_inner(cfg: &ClientCfg, client_id: &str) -> Result<Conn, ConnError> {
    let stream = TcpStream::connect(&cfg.host)
        .await
        .map_err(|e| ConnError::Tcp(cfg.host.clone(), e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| ConnError::Tcp(cfg.host.clone(), e))?;
    let mut c = Conn::new(stream, cfg.version);
    codec::encode_connect(
        &mut c.wbuf,
        &ConnectOpts {
            version: cfg.version,
            client_id,
            clean: cfg.clean,
            keepalive: cfg.keepalive,
            username: cfg.username.as_deref(),
            password: cfg.password.as_deref(),
            session_expiry: if cfg.clean { 0 } else { cfg.session_expiry },
        },
    );
    c.stream.write_all(&c.wbuf).await.map_err(ConnError::Io)?;
    c.wbuf.clear();
    c.last_write = mono_ns();
    loop {
        if let Some((pkt, n)) = codec::parse(c.unread(), c.version).map_err(ConnError::Proto)? {
            match pkt {
                Packet::ConnAck {
                    session_present,
                    code,
                    receive_max,
                    max_qos,
                } => {
                    if code != 0 {
                        return Err(ConnError::Refused(codec::connack_reason(c.version, code)));
                    }
                    c.session_present = session_present;
                    c.receive_max = receive_max.max(1);
                    c.max_qos = max_qos;
                    c.rstart += n;
                    return Ok(c);
                }
                other => {
                    return Err(ConnError::Proto(ProtoError(format!(
                        "expected CONNACK, got {other:?}"
                    ))))
                }
            }
        }
        c.make_room();
        let end = c.rend;
        let n = c
            .stream
            .read(&mut c.rbuf[end..])
            .await
            .map_err(ConnError::Io)?;
        if n == 0 {
            return Err(ConnError::Closed);
        }
        c.rend += n;
    }
}
