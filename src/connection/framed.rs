//! Framing: bytes from the socket become packets, and packets for the client
//! are encoded as they come and written in one go. Knows the wire, not the
//! session.
//!
//! Bytes read past a complete packet stay buffered and come out of
//! [`Framed::next_buffered`] in order, whichever phase of the connection
//! reads them: packets a client sends right behind its CONNECT are handled
//! after the CONNACK exactly as if they had arrived later.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

use crate::codec::{self, DecodeError, Packet, Protocol, PublishRef};
use crate::metrics::mqtt::{MqttCounters, Tally};
use crate::session::Wire;

/// How long a closing connection keeps reading (and discarding) so the
/// client reads our last packet instead of a reset.
const CLOSE_DRAIN: Duration = Duration::from_millis(500);

/// Room a read starts with: enough for a CONNECT and an idle device's
/// PINGREQs. Each read that fills the room doubles it, up to [`READ_MAX`];
/// [`Framed::shrink_idle`] starts it over.
const READ_MIN: usize = 128;
/// The most room one read asks for (the buffer itself grows to whatever one
/// packet needs).
const READ_MAX: usize = 16 * 1024;

/// What one [`Framed::flush`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub publishes: u64,
    pub bytes: u64,
}

/// A packet stream over a split socket: the read buffer, the packets encoded
/// for writing and the protocol level both directions use.
///
/// Buffers start empty and grow with traffic; an idle connection gives them
/// back with [`shrink_idle`](Self::shrink_idle), so thousands of idle
/// devices cost a few hundred bytes of buffer each, not 32 KB.
pub struct Framed<R, W> {
    rd: R,
    wr: W,
    rbuf: BytesMut,
    /// Room the next read asks for (see [`READ_MIN`]).
    read_room: usize,
    /// Packets encoded and not yet written.
    wbuf: BytesMut,
    /// PUBLISH packets among them.
    publishes: u64,
    proto: Protocol,
    max_packet_in: usize,
    /// Where every packet read and written is counted.
    counters: Option<Arc<MqttCounters>>,
    /// PUBLISH and its acknowledgements counted since the last write, made
    /// when the first is counted and given back when idle.
    tally: Option<Box<Tally>>,
}

/// A read half that can wait for bytes without a buffer to read them
/// into: an idle connection holds no read buffer while it waits.
pub trait ReadReady {
    /// Ready when a read would find bytes (or the end, or an error), or at
    /// once where the transport cannot tell. A poll function, not a future:
    /// the wait is part of every idle connection's task, and a poll keeps
    /// no state of its own there.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
}

impl<R, W> Framed<R, W>
where
    R: AsyncRead + ReadReady + Unpin,
    W: AsyncWrite + Unpin,
{
    /// A stream that accepts packets of up to `max_packet_in` bytes; MQTT
    /// 3.1.1 until [`set_protocol`](Self::set_protocol) says otherwise.
    pub fn new(rd: R, wr: W, max_packet_in: usize) -> Framed<R, W> {
        Framed {
            rd,
            wr,
            rbuf: BytesMut::new(),
            read_room: READ_MIN,
            wbuf: BytesMut::new(),
            publishes: 0,
            proto: Protocol::V311,
            max_packet_in,
            counters: None,
            tally: None,
        }
    }

    /// Counts every packet read and written in `counters`.
    pub fn counted(mut self, counters: Arc<MqttCounters>) -> Framed<R, W> {
        self.counters = Some(counters);
        self
    }

    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// The level the CONNECT asked for; every later packet uses it.
    pub fn set_protocol(&mut self, proto: Protocol) {
        self.proto = proto;
    }

    /// The next complete packet already read, if any. Never touches the
    /// socket.
    pub fn next_buffered(&mut self) -> Result<Option<Packet>, DecodeError> {
        let p = codec::decode(&mut self.rbuf, self.proto, self.max_packet_in)?;
        if let (Some(c), Some(p)) = (&self.counters, &p) {
            c.received(p, self.tally.get_or_insert_with(Box::default));
        }
        Ok(p)
    }

    /// The bytes read and not yet decoded.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Reads what the socket has into the buffer. `Ok(0)`: the client closed
    /// its side. Cancel safe: bytes are either buffered or still unread.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.rbuf.capacity() == 0 {
            std::future::poll_fn(|cx| self.rd.poll_readable(cx)).await?;
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        let room = if room < self.read_room {
            self.rbuf.reserve(self.read_room);
            self.rbuf.capacity() - self.rbuf.len()
        } else {
            room
        };
        let n = self.rd.read_buf(&mut self.rbuf).await?;
        if n == room && self.read_room < READ_MAX {
            self.read_room *= 2;
        }
        Ok(n)
    }

    /// Gives back the buffers' memory when nothing is buffered or unwritten:
    /// for a connection that has gone idle. The next read starts small again.
    pub fn shrink_idle(&mut self) {
        // Even the first 128 B: an idle device's next PINGREQ may be a
        // minute away, and most idle connections never read again.
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        self.read_room = READ_MIN;
        if self.wbuf.is_empty() {
            if self.wbuf.capacity() > 0 {
                self.wbuf = BytesMut::new();
            }
            // Nothing encoded waits for a write: the tally can go.
            self.add_tally();
            self.tally = None;
        }
    }

    /// Reads until one packet is complete. `Ok(None)`: closed first.
    /// Bytes past that packet stay buffered.
    pub async fn read_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        loop {
            if let Some(p) = self.next_buffered()? {
                return Ok(Some(p));
            }
            match self.read_more().await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Encodes a packet for the next [`flush`](Self::flush).
    pub fn push(&mut self, p: Packet) {
        if let Packet::Publish(p) = &p {
            return self.push_publish(&p.borrowed());
        }
        match codec::encode(&p, self.proto, &mut self.wbuf) {
            Err(e) => warn!(error = %e, "packet could not be encoded; dropped"),
            Ok(()) => {
                if self.counters.is_some() {
                    let proto = self.proto;
                    self.tally().sent(&p, proto);
                }
            }
        }
    }

    /// Encodes a PUBLISH given by its parts for the next
    /// [`flush`](Self::flush).
    pub fn push_publish(&mut self, p: &PublishRef) {
        match codec::encode_publish(p, self.proto, &mut self.wbuf) {
            Err(e) => warn!(error = %e, "PUBLISH could not be encoded; dropped"),
            Ok(()) => {
                self.publishes += 1;
                if self.counters.is_some() {
                    self.tally().sent_publish(p.qos);
                }
            }
        }
    }

    fn tally(&mut self) -> &mut Tally {
        self.tally.get_or_insert_with(Box::default)
    }

    /// Forgets the packets encoded and not yet written.
    pub fn discard_unwritten(&mut self) {
        self.wbuf.clear();
        self.publishes = 0;
        if let Some(t) = &mut self.tally {
            t.forget_sent();
        }
    }

    /// Writes every packet encoded since the last flush, with one write.
    pub async fn flush(&mut self) -> std::io::Result<Written> {
        self.add_tally();
        let mut written = Written {
            publishes: std::mem::take(&mut self.publishes),
            bytes: 0,
        };
        if !self.wbuf.is_empty() {
            written.bytes = self.wbuf.len() as u64;
            self.wr.write_all(&self.wbuf).await?;
            // A no-op on plain TCP; TLS and WebSocket send here.
            self.wr.flush().await?;
            self.wbuf.clear();
        }
        Ok(written)
    }

    /// Ends our side: writes what is queued (within `within`) and shuts the
    /// write side, so the client reads our last packet, then end of stream.
    pub async fn close_write(&mut self, within: Duration) -> Written {
        let written = tokio::time::timeout(within, self.flush())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let _ = self.wr.shutdown().await;
        written
    }

    /// Reads and discards what the client still sends, until it closes or
    /// [`CLOSE_DRAIN`] passes. Closing a socket with unread bytes resets
    /// it, and a reset can destroy our last packet before the client reads
    /// it (a DISCONNECT with its reason code).
    pub async fn drain(&mut self) {
        let drain = async {
            let mut sink = [0u8; 4096];
            while let Ok(n) = self.rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
    }
}

impl<R, W> Framed<R, W> {
    /// Adds what the tally counted to the shared counters.
    fn add_tally(&mut self) {
        if let (Some(c), Some(t)) = (&self.counters, &mut self.tally) {
            c.add(t);
        }
    }
}

/// The outbound window writes into the framing: each packet is encoded at
/// once, in the order written.
impl<R, W> Wire for Framed<R, W>
where
    R: AsyncRead + ReadReady + Unpin,
    W: AsyncWrite + Unpin,
{
    fn packet(&mut self, p: Packet) {
        self.push(p);
    }

    fn publish(&mut self, p: &PublishRef) {
        self.push_publish(p);
    }
}

/// A connection that ends without a last write still has its packets
/// counted.
impl<R, W> Drop for Framed<R, W> {
    fn drop(&mut self) {
        self.add_tally();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;

    use proptest::prelude::*;
    use tokio::io::ReadBuf;

    use super::*;
    use crate::codec::{
        PubResp, Publish, PublishProperties, QoS, SubOptions, Subscribe, SubscribeFilter,
    };

    /// A socket that hands out exactly the given chunks, one per read.
    struct Chunks(VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(mut c) = self.0.pop_front() {
                let n = c.len().min(buf.remaining());
                buf.put_slice(&c[..n]);
                if n < c.len() {
                    self.0.push_front(c.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl ReadReady for Chunks {
        fn poll_readable(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn packet() -> impl Strategy<Value = Packet> {
        let topic = "[a-z/]{1,20}";
        let payload = proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            (topic, payload, 0u8..3, 1u16..).prop_map(|(topic, payload, qos, pid)| {
                let qos = QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce);
                Packet::Publish(Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic,
                    packet_id: if qos == QoS::AtMostOnce { 0 } else { pid },
                    payload: payload.into(),
                    properties: PublishProperties::default(),
                })
            }),
            (1u16..).prop_map(|id| Packet::PubAck(PubResp {
                packet_id: id,
                ..Default::default()
            })),
            (1u16..).prop_map(|id| Packet::PubRel(PubResp {
                packet_id: id,
                ..Default::default()
            })),
            ("[a-z/+#]{1,12}", 1u16..).prop_map(|(filter, id)| Packet::Subscribe(Subscribe {
                packet_id: id,
                filters: vec![SubscribeFilter {
                    filter,
                    options: SubOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: 0,
                    },
                }],
                properties: Default::default(),
            })),
            Just(Packet::PingReq),
        ]
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    /// A stream that reads `chunks`, one per read, and writes nowhere.
    fn reading(chunks: Vec<Vec<u8>>) -> Framed<Chunks, tokio::io::Sink> {
        Framed::new(
            Chunks(VecDeque::from(chunks)),
            tokio::io::sink(),
            usize::MAX,
        )
    }

    /// One MQTT 3.1.1 PINGREQ, encoded.
    fn pingreq() -> Vec<u8> {
        let mut bytes = BytesMut::new();
        codec::encode(&Packet::PingReq, Protocol::V311, &mut bytes).expect("encode");
        bytes.to_vec()
    }

    /// Decodes everything `chunks` carries, reading one chunk at a time.
    fn frame(proto: Protocol, chunks: VecDeque<Vec<u8>>) -> Vec<Packet> {
        let rt = runtime();
        rt.block_on(async {
            let mut f = reading(chunks.into());
            f.set_protocol(proto);
            let mut got = Vec::new();
            loop {
                while let Some(p) = f.next_buffered().expect("valid stream") {
                    got.push(p);
                }
                if f.read_more().await.expect("read") == 0 {
                    return got;
                }
            }
        })
    }

    proptest! {
        #[test]
        fn any_stream_of_packets_cut_into_any_chunks_yields_the_same_packets_in_order(
            packets in proptest::collection::vec(packet(), 1..20),
            v5 in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let proto = if v5 { Protocol::V5 } else { Protocol::V311 };
            let mut bytes = BytesMut::new();
            for p in &packets {
                codec::encode(p, proto, &mut bytes).expect("encode");
            }
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.push(0);
            at.push(bytes.len());
            at.sort_unstable();
            at.dedup();
            let chunks = at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect();
            prop_assert_eq!(frame(proto, chunks), packets);
        }
    }

    #[test]
    fn bytes_after_the_first_packet_stay_buffered_for_the_next_phase() {
        let rt = runtime();
        let mut f = reading(vec![[pingreq(), pingreq()].concat()]);
        let first = rt.block_on(f.read_packet()).expect("decode");
        assert_eq!(first, Some(Packet::PingReq));
        assert_eq!(f.next_buffered().expect("decode"), Some(Packet::PingReq));
    }

    #[test]
    fn a_new_stream_holds_no_buffers_until_it_reads() {
        let f = Framed::new(Chunks(VecDeque::new()), tokio::io::sink(), usize::MAX);
        assert_eq!(f.rbuf.capacity(), 0);
        assert_eq!(f.wbuf.capacity(), 0);
    }

    #[test]
    fn reads_grow_with_traffic_and_an_idle_stream_gives_its_buffers_back() {
        let rt = runtime();
        // A burst: far more bytes than the first read's room, in one chunk.
        let mut burst = BytesMut::new();
        while burst.len() < 64 * 1024 {
            codec::encode(&Packet::PingReq, Protocol::V311, &mut burst).expect("encode");
        }
        let mut f = Framed::new(
            Chunks(VecDeque::from([burst.to_vec()])),
            tokio::io::sink(),
            usize::MAX,
        );
        let mut reads = 0;
        while f.buffered().len() < burst.len() {
            rt.block_on(f.read_more()).expect("read");
            reads += 1;
        }
        assert!(f.read_room > READ_MIN, "the room grew with the burst");
        assert!(reads < 16, "{reads} reads for 64 KB: the room did not grow");
        while f.next_buffered().expect("decode").is_some() {}
        f.push(Packet::PingResp);
        rt.block_on(f.flush()).expect("flush");
        assert!(f.wbuf.capacity() > 0);
        f.shrink_idle();
        assert_eq!(f.rbuf.capacity(), 0);
        assert_eq!(f.wbuf.capacity(), 0);
        assert_eq!(f.read_room, READ_MIN);
    }

    #[test]
    fn an_idle_stream_gives_back_even_its_first_small_read_buffer() {
        let rt = runtime();
        let mut f = reading(vec![pingreq(), pingreq()]);
        rt.block_on(f.read_more()).expect("read");
        assert_eq!(f.next_buffered().expect("decode"), Some(Packet::PingReq));
        assert!(f.rbuf.capacity() > 0, "the first read's buffer is held");
        f.shrink_idle();
        assert_eq!(f.rbuf.capacity(), 0);
        // The next read allocates again, from the smallest room.
        rt.block_on(f.read_more()).expect("read");
        assert_eq!(f.next_buffered().expect("decode"), Some(Packet::PingReq));
    }

    #[test]
    fn a_partial_packet_survives_an_idle_shrink() {
        let rt = runtime();
        let bytes = pingreq();
        let mut f = reading(vec![bytes[..1].to_vec(), bytes[1..].to_vec()]);
        rt.block_on(f.read_more()).expect("read");
        assert_eq!(f.next_buffered().expect("decode"), None);
        f.shrink_idle();
        rt.block_on(f.read_more()).expect("read");
        assert_eq!(f.next_buffered().expect("decode"), Some(Packet::PingReq));
    }
}
