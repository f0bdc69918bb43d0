//! [`RawClient`]: a blocking MQTT client on a plain `TcpStream`, built on
//! `raftmq::codec`, for exact protocol checks and malformed input.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use raftmq::codec::{
    decode, encode, ConnAck, Connect, Disconnect, Packet, Protocol, PubResp, Publish, QoS, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};

use super::packets::{publish_packet, pubresp, subscribe_packet, v3_connect, v5_connect};
use super::wait::WAIT;

/// Config lines that make user `sys` (password `sys`) a `$SYS` reader
/// (`sys_users`; `$SYS` is denied to everyone else). Append them last: they
/// end with the `[users]` table.
pub const SYS_READER: &str = "sys_users = [\"sys\"]\n[users]\nsys = \"sys\"\n";

/// The largest packet the raw client accepts (the MQTT maximum).
pub const MAX_PACKET: usize = 268_435_455;

/// What a bounded read produced.
#[derive(Debug)]
pub enum Recv {
    Packet(Packet),
    Timeout,
    /// EOF or reset: the broker closed the connection.
    Closed,
    /// The bytes from the broker did not decode.
    Error(String),
}

pub struct RawClient {
    stream: TcpStream,
    rbuf: BytesMut,
    pub proto: Protocol,
    pending: VecDeque<Packet>,
    next_pid: u16,
    /// The largest packet the client accepts when decoding.
    pub max_packet_size: usize,
    /// Topic aliases the broker established towards this client (MQTT 5).
    aliases: std::collections::HashMap<u16, String>,
}

impl RawClient {
    /// Opens a TCP connection; sends nothing.
    pub fn open(port: u16, proto: Protocol) -> RawClient {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, WAIT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        RawClient::on(stream, proto)
    }

    fn on(stream: TcpStream, proto: Protocol) -> RawClient {
        RawClient {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            proto,
            pending: VecDeque::new(),
            next_pid: 1,
            max_packet_size: MAX_PACKET,
            aliases: HashMap::new(),
        }
    }

    /// Connects with `connect` (encoded for `proto`) and returns the CONNACK.
    /// Panics unless the first packet back is a CONNACK.
    pub fn connect(port: u16, proto: Protocol, connect: Connect) -> (RawClient, ConnAck) {
        let mut c = RawClient::open(port, proto);
        c.send(&Packet::Connect(Box::new(connect)));
        match c.recv(WAIT) {
            Recv::Packet(Packet::ConnAck(ack)) => (c, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Like [`connect`](Self::connect) but never panics: for clients that
    /// retry while the broker is down.
    pub fn try_connect(
        port: u16,
        proto: Protocol,
        connect: Connect,
        timeout: Duration,
    ) -> Result<(RawClient, ConnAck), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut c = RawClient::on(stream, proto);
        c.try_send(&Packet::Connect(Box::new(connect)))
            .map_err(|e| e.to_string())?;
        match c.recv(timeout) {
            Recv::Packet(Packet::ConnAck(ack)) if ack.code == 0 => Ok((c, ack)),
            other => Err(format!("no accepting CONNACK: {other:?}")),
        }
    }

    /// Connects and asserts the CONNACK accepted the connection.
    pub fn connect_ok(port: u16, proto: Protocol, connect: Connect) -> (RawClient, ConnAck) {
        let (c, ack) = RawClient::connect(port, proto, connect);
        assert_eq!(ack.code, 0, "CONNACK refused: {ack:?}");
        (c, ack)
    }

    /// MQTT 3.1.1 client logged in as the `$SYS` reader of [`SYS_READER`].
    pub fn v3_sys(port: u16, client_id: &str) -> (RawClient, ConnAck) {
        let mut c = v3_connect(client_id, true);
        c.username = Some("sys".into());
        c.password = Some(bytes::Bytes::from_static(b"sys"));
        RawClient::connect_ok(port, Protocol::V311, c)
    }

    /// MQTT 5 client logged in as the `$SYS` reader of [`SYS_READER`].
    pub fn v5_sys(port: u16, client_id: &str) -> (RawClient, ConnAck) {
        let mut c = v5_connect(client_id, true, None);
        c.username = Some("sys".into());
        c.password = Some(bytes::Bytes::from_static(b"sys"));
        RawClient::connect_ok(port, Protocol::V5, c)
    }

    /// MQTT 3.1.1 client, keepalive 60 s.
    pub fn v3(port: u16, client_id: &str, clean: bool) -> (RawClient, ConnAck) {
        RawClient::connect_ok(port, Protocol::V311, v3_connect(client_id, clean))
    }

    /// MQTT 5 client, keepalive 60 s, with the given session expiry.
    pub fn v5(
        port: u16,
        client_id: &str,
        clean_start: bool,
        session_expiry: Option<u32>,
    ) -> (RawClient, ConnAck) {
        RawClient::connect_ok(
            port,
            Protocol::V5,
            v5_connect(client_id, clean_start, session_expiry),
        )
    }

    /// The client's own port (the broker sees it as the peer's).
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn pid(&mut self) -> u16 {
        let p = self.next_pid;
        self.next_pid = if p == u16::MAX { 1 } else { p + 1 };
        p
    }

    pub fn send(&mut self, p: &Packet) {
        self.try_send(p)
            .unwrap_or_else(|e| panic!("write {p:?}: {e}"));
    }

    /// Like [`send`](Self::send) but returns write errors (the broker may
    /// already have closed the connection).
    pub fn try_send(&mut self, p: &Packet) -> io::Result<()> {
        let out = self.encode_bytes(p);
        self.stream.write_all(&out)
    }

    /// Writes raw bytes (for malformed input).
    pub fn send_bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b)
    }

    /// Encodes a packet to bytes without sending it.
    pub fn encode_bytes(&self, p: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(p, self.proto, &mut out).unwrap_or_else(|e| panic!("encode {p:?}: {e:?}"));
        out.to_vec()
    }

    /// The next packet (queued ones first), bounded by `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Recv {
        if let Some(p) = self.pending.pop_front() {
            return Recv::Packet(p);
        }
        self.recv_wire(timeout)
    }

    fn recv_wire(&mut self, timeout: Duration) -> Recv {
        let deadline = Instant::now() + timeout;
        loop {
            match decode(&mut self.rbuf, self.proto, self.max_packet_size as _) {
                Ok(Some(p)) => {
                    self.learn_alias(&p);
                    return Recv::Packet(p);
                }
                Ok(None) => {}
                Err(e) => return Recv::Error(format!("{e:?}")),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Recv::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Recv::Closed,
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    if Instant::now() >= deadline {
                        return Recv::Timeout;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Recv::Closed,
            }
        }
    }

    fn learn_alias(&mut self, p: &Packet) {
        if let Packet::Publish(publ) = p {
            if let Some(a) = publ.properties.topic_alias {
                if !publ.topic.is_empty() {
                    self.aliases.insert(a, publ.topic.clone());
                }
            }
        }
    }

    /// The topic of a received PUBLISH, resolving a topic alias the broker
    /// set up earlier on this connection. Panics on an unknown alias.
    pub fn resolved_topic(&self, p: &Publish) -> String {
        if !p.topic.is_empty() {
            return p.topic.clone();
        }
        let a = p
            .properties
            .topic_alias
            .unwrap_or_else(|| panic!("PUBLISH with empty topic and no alias: {p:?}"));
        self.aliases
            .get(&a)
            .cloned()
            .unwrap_or_else(|| panic!("PUBLISH uses topic alias {a} never set up: {p:?}"))
    }

    /// The next packet; panics on timeout, close or decode error.
    pub fn expect_packet(&mut self, timeout: Duration) -> Packet {
        match self.recv(timeout) {
            Recv::Packet(p) => p,
            other => panic!("expected a packet within {timeout:?}, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub fn expect_publish(&mut self, timeout: Duration) -> Publish {
        match self.expect_packet(timeout) {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Receives PUBLISHes until `n` arrived or `timeout` passed, acking each
    /// (QoS 1: PUBACK; QoS 2: PUBREC, and PUBCOMP for PUBRELs that arrive).
    pub fn collect_publishes(&mut self, n: usize, timeout: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left) {
                Recv::Packet(Packet::Publish(p)) => {
                    self.ack_start(&p);
                    out.push(p);
                }
                Recv::Packet(Packet::PubRel(r)) => {
                    self.send(&Packet::PubComp(pubresp(r.packet_id)))
                }
                Recv::Packet(Packet::PingResp) => {}
                Recv::Packet(other) => panic!("unexpected packet while collecting: {other:?}"),
                Recv::Timeout => break,
                other => panic!("connection failed while collecting publishes: {other:?}"),
            }
        }
        out
    }

    /// Asserts that no PUBLISH arrives within `dur` (other packets are kept).
    pub fn expect_no_publish(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        let mut keep = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left) {
                Recv::Packet(Packet::Publish(p)) => panic!("unexpected PUBLISH: {p:?}"),
                Recv::Packet(p) => keep.push(p),
                Recv::Timeout => break,
                // A closed connection would make "nothing arrived" vacuous.
                Recv::Closed => panic!("connection closed while checking that no PUBLISH arrives"),
                Recv::Error(e) => panic!("decode error: {e}"),
            }
        }
        self.pending.extend(keep);
    }

    /// Reads until the broker closes the connection; returns the packets it
    /// sent before closing. Panics if it stays open for `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration) -> Vec<Packet> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Packet> = self.pending.drain(..).collect();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_wire(left) {
                Recv::Packet(p) => got.push(p),
                Recv::Closed => return got,
                Recv::Timeout => {
                    panic!("connection still open after {timeout:?}; received before: {got:?}")
                }
                Recv::Error(e) => {
                    panic!("undecodable bytes from broker: {e}; received before: {got:?}")
                }
            }
        }
    }

    /// Asserts the broker closes the connection, MQTT 5 with a DISCONNECT
    /// carrying `reason` as its last packet. For 3.x, only the close.
    pub fn expect_disconnect(&mut self, reason: u8, timeout: Duration) {
        let got = self.expect_closed(timeout);
        if self.proto.is_v5() {
            match got.last() {
                Some(Packet::Disconnect(d)) => assert_eq!(
                    d.reason, reason,
                    "DISCONNECT reason 0x{:02x}, expected 0x{reason:02x}; all: {got:?}",
                    d.reason
                ),
                _ => {
                    panic!("connection closed without DISCONNECT 0x{reason:02x}; received: {got:?}")
                }
            }
        }
    }

    /// Waits for a packet matching `pred`, queueing the others for later.
    pub fn wait_for<F: FnMut(&Packet) -> bool>(
        &mut self,
        timeout: Duration,
        mut pred: F,
    ) -> Packet {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        // Queued packets first.
        let queued: Vec<Packet> = self.pending.drain(..).collect();
        let mut found = None;
        for p in queued {
            if found.is_none() && pred(&p) {
                found = Some(p);
            } else {
                skipped.push(p);
            }
        }
        if let Some(p) = found {
            self.pending.extend(skipped);
            return p;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_wire(left) {
                Recv::Packet(p) if pred(&p) => {
                    self.pending.extend(skipped);
                    return p;
                }
                Recv::Packet(p) => skipped.push(p),
                other => panic!(
                    "awaited packet did not arrive within {timeout:?}: {other:?}; other packets: {skipped:?}"
                ),
            }
        }
    }

    /// SUBSCRIBE and wait for its SUBACK.
    pub fn subscribe_with(&mut self, mut sub: Subscribe) -> SubAck {
        if sub.packet_id == 0 {
            sub.packet_id = self.pid();
        }
        let pid = sub.packet_id;
        self.send(&Packet::Subscribe(sub));
        match self.wait_for(
            WAIT,
            |p| matches!(p, Packet::SubAck(a) if a.packet_id == pid),
        ) {
            Packet::SubAck(a) => a,
            _ => unreachable!(),
        }
    }

    /// Subscribes to one filter and asserts the granted QoS.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        let ack = self.subscribe_with(subscribe_packet(filter, qos));
        assert_eq!(
            ack.reason_codes,
            vec![qos as u8],
            "SUBACK for {filter}: {ack:?}"
        );
        ack
    }

    pub fn unsubscribe(&mut self, filters: &[&str]) -> UnsubAck {
        let pid = self.pid();
        self.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: pid,
            filters: filters.iter().map(|s| s.to_string()).collect(),
            user_properties: vec![],
        }));
        match self.wait_for(
            WAIT,
            |p| matches!(p, Packet::UnsubAck(a) if a.packet_id == pid),
        ) {
            Packet::UnsubAck(a) => a,
            _ => unreachable!(),
        }
    }

    /// Publishes and completes the QoS flow; returns the final ack (PUBACK
    /// for QoS 1, PUBCOMP for QoS 2). Other packets are queued.
    pub fn publish_with(&mut self, mut p: Publish) -> Option<PubResp> {
        if p.qos != QoS::AtMostOnce && p.packet_id == 0 {
            p.packet_id = self.pid();
        }
        let pid = p.packet_id;
        let qos = p.qos;
        self.send(&Packet::Publish(p));
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => {
                match self.wait_for(
                    WAIT,
                    |p| matches!(p, Packet::PubAck(a) if a.packet_id == pid),
                ) {
                    Packet::PubAck(a) => Some(a),
                    _ => unreachable!(),
                }
            }
            QoS::ExactlyOnce => {
                let rec = match self.wait_for(
                    WAIT,
                    |p| matches!(p, Packet::PubRec(a) if a.packet_id == pid),
                ) {
                    Packet::PubRec(a) => a,
                    _ => unreachable!(),
                };
                if rec.reason >= 0x80 {
                    return Some(rec);
                }
                self.send(&Packet::PubRel(pubresp(pid)));
                match self.wait_for(
                    WAIT,
                    |p| matches!(p, Packet::PubComp(a) if a.packet_id == pid),
                ) {
                    Packet::PubComp(a) => Some(a),
                    _ => unreachable!(),
                }
            }
        }
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let mut p = publish_packet(topic, qos, payload);
        p.retain = retain;
        if let Some(ack) = self.publish_with(p) {
            assert!(ack.reason < 0x80, "publish to {topic} refused: {ack:?}");
        }
    }

    /// Sends the receiver's first ack for `p`: PUBACK (QoS 1) or PUBREC (QoS 2).
    pub fn ack_start(&mut self, p: &Publish) {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PubAck(pubresp(p.packet_id))),
            QoS::ExactlyOnce => self.send(&Packet::PubRec(pubresp(p.packet_id))),
        }
    }

    /// Acks `p` completely: PUBACK, or PUBREC + await PUBREL + PUBCOMP.
    pub fn ack(&mut self, p: &Publish) {
        self.ack_start(p);
        if p.qos == QoS::ExactlyOnce {
            let pid = p.packet_id;
            self.wait_for(
                WAIT,
                |x| matches!(x, Packet::PubRel(r) if r.packet_id == pid),
            );
            self.send(&Packet::PubComp(pubresp(pid)));
        }
    }

    pub fn ping(&mut self) {
        self.send(&Packet::PingReq);
        self.wait_for(WAIT, |p| matches!(p, Packet::PingResp));
    }

    /// Sends DISCONNECT (reason 0) and closes the socket.
    pub fn disconnect(self) {
        self.disconnect_with(Disconnect::default());
    }

    /// Sends DISCONNECT with `reason` (MQTT 5) and closes.
    pub fn disconnect_with(mut self, d: Disconnect) {
        let _ = self.try_send(&Packet::Disconnect(d));
        let _ = self.stream.shutdown(Shutdown::Write);
        // Wait (bounded) for the broker to close, so the disconnect is processed.
        let _ = self.drain_until_closed(WAIT);
    }

    fn drain_until_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_wire(left) {
                Recv::Closed => return true,
                Recv::Timeout => return false,
                Recv::Error(_) => return false,
                Recv::Packet(_) => {}
            }
        }
    }

    /// Closes the TCP connection without DISCONNECT (abrupt close).
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}
