//! The byte stream a connection reads and writes through, whatever the
//! listener's transport: plain TCP, or anything layered on it (TLS,
//! WebSocket frames, both). Plain TCP keeps tokio's own lock-free split
//! halves; a layered stream is boxed and split with [`tokio::io::split`].
//! The connection pays one `match` per read or write for the choice.
//!
//! Also [`TransportInfo`]: what the listener learnt about the connection
//! before MQTT starts (its listener, the client's address, possibly from a
//! PROXY header, and the verified client certificate's identity).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::config::listeners::ListenerConfig;

/// A stream layered on TCP (TLS, WebSocket).
pub trait Layered: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Layered for T {}

/// An accepted connection's byte stream, handshakes done.
pub enum Stream {
    Tcp(TcpStream),
    Layered(Box<dyn Layered>),
}

impl Stream {
    /// The read and write halves the connection's framing owns.
    pub fn split(self) -> (Reader, Writer) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (Reader::Tcp(r), Writer::Tcp(w))
            }
            Stream::Layered(s) => {
                let (r, w) = tokio::io::split(s);
                (Reader::Layered(r), Writer::Layered(w))
            }
        }
    }
}

/// The read half of a [`Stream`].
pub enum Reader {
    Tcp(OwnedReadHalf),
    Layered(ReadHalf<Box<dyn Layered>>),
}

/// The write half of a [`Stream`].
pub enum Writer {
    Tcp(OwnedWriteHalf),
    Layered(WriteHalf<Box<dyn Layered>>),
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Layered(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// A plain TCP connection waits for readability without a buffer; a
/// layered one (TLS, WebSocket) reads through its layer at once.
impl crate::connection::ReadReady for Reader {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            // The socket's own reader slot, not `readable()`'s waiter node
            // (about 150 B that every idle connection's task would carry).
            Reader::Tcp(r) => r.as_ref().poll_read_ready(cx),
            Reader::Layered(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Layered(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_flush(cx),
            Writer::Layered(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Layered(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// A connection whose transport is ready: its stream, what the listener
/// learnt, and when its CONNECT must have arrived. Boxed from the accept
/// loop to the connection: only the admission reads it.
pub struct Established {
    pub stream: Stream,
    pub info: TransportInfo,
    pub connect_by: tokio::time::Instant,
}

/// What the listener knows of a connection before its CONNECT.
#[derive(Debug, Clone)]
pub struct TransportInfo {
    /// The listener that accepted it (its options apply).
    pub listener: Arc<ListenerConfig>,
    /// The client's address: the PROXY header's source on a
    /// `proxy_protocol` listener, else the socket's peer.
    pub peer: Option<SocketAddr>,
    /// The subject CN of the client certificate the TLS handshake verified
    /// (mTLS listeners). With `use_identity_as_username` it replaces the
    /// CONNECT's user name before admission; authentication may also read
    /// it here.
    pub identity: Option<String>,
}
