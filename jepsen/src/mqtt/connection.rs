//! The background task that owns one connection's socket.
//!
//! The task reads and decodes packets, acknowledges inbound publishes
//! (PUBACK; PUBREC/PUBCOMP per method A, with the unreleased packet ids kept
//! in [`SessionState`] across connections), sends PINGREQ every half keep
//! alive, and hands acknowledgements to the request waiting for them (a map
//! from ack kind and packet id to a oneshot). A second task owns the write
//! half and writes the frames the handle and the reader queue. When the
//! connection ends every waiter resolves with [`MqttError::Closed`]; dropping
//! the [`Client`](super::Client) aborts both tasks and closes the socket without a
//! DISCONNECT, like a crashed client.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::acks::{AckKind, Shared};
use super::codec::{self, Packet, Version, MAX_PACKET};
use super::{Message, MqttError, SessionState};

/// Work for the writer task.
pub(super) enum Out {
    /// A frame to write; `done` learns whether the write succeeded.
    Frame(Bytes, Option<oneshot::Sender<std::io::Result<()>>>),
    /// Shut down the write half (after a DISCONNECT) and stop.
    Shutdown,
}

pub(super) fn frame(p: &Packet, v: Version) -> Result<Bytes, MqttError> {
    let mut buf = BytesMut::new();
    codec::encode(p, v, &mut buf)?;
    Ok(buf.freeze())
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
pub(super) struct Connection {
    pub(super) version: Version,
    pub(super) rd: OwnedReadHalf,
    /// Bytes read and not yet decoded.
    pub(super) buf: BytesMut,
    pub(super) out: mpsc::UnboundedSender<Out>,
    pub(super) inbox: mpsc::UnboundedSender<Message>,
    pub(super) shared: Arc<Shared>,
    pub(super) session: SessionState,
    pub(super) keep_alive: u16,
}

impl Connection {
    pub(super) async fn run(mut self, wr: OwnedWriteHalf, out_rx: mpsc::UnboundedReceiver<Out>) {
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
