//! `drain` mode: reconnect one persistent session (no SUBSCRIBE: its own
//! subscriptions deliver), receive and acknowledge its backlog, and check
//! that every sequence number 0..expect-1 arrived ([`Backlog`]), with the
//! times to CONNACK and to the first PUBLISH and the drain rate.

use super::clock::mono_ns;
use super::codec::{self, Packet};
use super::conn::{self, io_kind, ClientCfg, Conn};
use super::stats::{self, BitSet, Counters, Errors, MAX_SEQ};
use std::collections::{BTreeSet, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;

/// What one session received, checked against the sequence numbers
/// 0..expect-1 that `pub --count expect` sent. Pure bookkeeping.
#[derive(Debug, Clone)]
pub struct Backlog {
    pub expect: u64,
    /// Only this loadgen run's messages count (None: any run's).
    pub run_id: Option<u32>,
    seen: BitSet,
    /// Deliveries to the application (QoS 2 redeliveries before PUBREL excluded).
    pub received: u64,
    /// Deliveries of a sequence number already seen.
    pub duplicates: u64,
    /// Loadgen payloads with a sequence number >= expect.
    pub out_of_range: u64,
    /// Payloads without a loadgen header.
    pub foreign: u64,
    /// Loadgen payloads of another run than `run_id`.
    pub stale: u64,
    /// Run ids seen (more than one without `run_id` means mixed runs).
    pub runs: BTreeSet<u32>,
}

impl Backlog {
    pub fn new(expect: u64, run_id: Option<u32>) -> Backlog {
        Backlog {
            expect,
            run_id,
            seen: BitSet::default(),
            received: 0,
            duplicates: 0,
            out_of_range: 0,
            foreign: 0,
            stale: 0,
            runs: BTreeSet::new(),
        }
    }

    /// Records one delivered payload; true if it is a sequence number not seen before.
    pub fn record(&mut self, payload: &[u8]) -> bool {
        self.received += 1;
        let h = match stats::read_header(payload) {
            Some(h) if h.seq < MAX_SEQ => h,
            _ => {
                self.foreign += 1;
                return false;
            }
        };
        if self.run_id.is_some_and(|id| id != h.run_id) {
            self.stale += 1;
            return false;
        }
        self.runs.insert(h.run_id);
        if h.seq >= self.expect {
            self.out_of_range += 1;
            return false;
        }
        let new = self.seen.insert(h.seq);
        if !new {
            self.duplicates += 1;
        }
        new
    }

    /// Distinct sequence numbers in 0..expect received.
    pub fn distinct(&self) -> u64 {
        self.seen.len()
    }

    pub fn missing(&self) -> u64 {
        self.expect - self.distinct()
    }

    pub fn complete(&self) -> bool {
        self.distinct() == self.expect
    }

    /// The first `max` runs of missing sequence numbers, as inclusive ranges.
    pub fn missing_ranges(&self, max: usize) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        if self.complete() {
            return out;
        }
        for s in 0..self.expect {
            if self.seen.contains(s) {
                continue;
            }
            let n = out.len();
            match out.last_mut() {
                Some((_, hi)) if *hi + 1 == s => *hi = s,
                _ if n < max => out.push((s, s)),
                _ => break,
            }
        }
        out
    }
}

/// Why a drain stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every expected sequence number arrived.
    Complete,
    /// No PUBLISH for `idle`.
    Idle,
    /// The overall deadline passed.
    Timeout,
    /// The connection failed (see the errors).
    Failed,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Complete => "complete",
            Stop::Idle => "idle",
            Stop::Timeout => "timeout",
            Stop::Failed => "failed",
        }
    }
}

pub struct DrainSpec {
    pub expect: u64,
    pub run_id: Option<u32>,
    /// Monotonic ns: stop retrying the connection.
    pub connect_until: u64,
    pub idle_ns: u64,
    /// Monotonic ns: stop, complete or not.
    pub deadline: u64,
    /// A PINGREQ goes out after this long without a write (0 = never).
    pub ping_ns: u64,
}

pub struct DrainResult {
    pub client_id: String,
    pub backlog: Backlog,
    pub connect_attempts: u32,
    /// None: never connected.
    pub session_present: Option<bool>,
    /// Monotonic ns of the CONNACK, the first PUBLISH, the last new message.
    pub connack_ns: Option<u64>,
    pub first_ns: Option<u64>,
    pub last_new_ns: Option<u64>,
    pub stop: Stop,
    pub errors: Errors,
}

impl DrainResult {
    /// Distinct messages per second from CONNACK to the last new one.
    pub fn rate(&self) -> f64 {
        match (self.connack_ns, self.last_new_ns) {
            (Some(a), Some(b)) if b > a => {
                stats::rate(self.backlog.distinct(), (b - a) as f64 / 1e9)
            }
            _ => 0.0,
        }
    }
}

/// Connects (retrying until `spec.connect_until`) and drains one session;
/// deliveries are added to `counters.received` for the progress lines.
pub async fn run(
    cfg: ClientCfg,
    client_id: String,
    spec: DrainSpec,
    counters: Arc<Counters>,
) -> DrainResult {
    let mut r = DrainResult {
        client_id,
        backlog: Backlog::new(spec.expect, spec.run_id),
        connect_attempts: 0,
        session_present: None,
        connack_ns: None,
        first_ns: None,
        last_new_ns: None,
        stop: Stop::Failed,
        errors: Errors::default(),
    };
    let mut conn = loop {
        r.connect_attempts += 1;
        match conn::connect(&cfg, &r.client_id).await {
            Ok(c) => break c,
            Err(e) => {
                if mono_ns() >= spec.connect_until.min(spec.deadline) {
                    r.errors.add(e.kind());
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let connack = mono_ns();
    r.connack_ns = Some(connack);
    r.session_present = Some(conn.session_present);
    if !conn.session_present {
        r.errors
            .add("drain: CONNACK without session present (the session was lost)");
    }
    r.stop = receive(&mut conn, &mut r, &spec, connack, &counters).await;
    if r.stop != Stop::Failed {
        conn.close().await;
    }
    r
}

async fn receive(
    conn: &mut Conn,
    r: &mut DrainResult,
    spec: &DrainSpec,
    connack: u64,
    counters: &Counters,
) -> Stop {
    let mut qos2_pending: HashSet<u16> = HashSet::new();
    let mut last_publish = connack;
    loop {
        // What is buffered first: the bytes read with the CONNACK may hold
        // a whole inflight window, and no more comes until it is acked.
        let before = r.backlog.received;
        let handled = handle_buffered(conn, r, &mut qos2_pending, &mut last_publish);
        counters.add(&counters.received, r.backlog.received - before);
        if let Err(e) = handled {
            r.errors.add(e);
            return Stop::Failed;
        }
        if let Err(e) = conn.flush() {
            r.errors.add(format!("drain write: {}", io_kind(&e)));
            return Stop::Failed;
        }
        let now = mono_ns();
        if r.backlog.complete() && !conn.want_write() {
            return Stop::Complete;
        }
        if now >= spec.deadline {
            return Stop::Timeout;
        }
        if now >= last_publish + spec.idle_ns {
            return Stop::Idle;
        }
        if spec.ping_ns > 0 && !conn.want_write() && now >= conn.last_write + spec.ping_ns {
            codec::encode_pingreq(&mut conn.wbuf);
            continue;
        }
        let mut interest = Interest::READABLE;
        let mut wake = spec.deadline.min(last_publish + spec.idle_ns);
        if conn.want_write() {
            interest |= Interest::WRITABLE;
        } else if spec.ping_ns > 0 {
            wake = wake.min(conn.last_write + spec.ping_ns);
        }
        let ready = tokio::time::timeout(
            Duration::from_nanos(wake.saturating_sub(now)),
            conn.stream.ready(interest),
        )
        .await;
        let ready = match ready {
            Err(_elapsed) => continue,
            Ok(Err(e)) => {
                r.errors.add(format!("drain: {e}"));
                return Stop::Failed;
            }
            Ok(Ok(ready)) => ready,
        };
        if !(ready.is_readable() || ready.is_read_closed()) {
            continue;
        }
        match conn.read_some() {
            Ok(true) => {}
            Ok(false) => {
                r.errors.add("drain: connection closed by broker");
                return Stop::Failed;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                r.errors.add(format!("drain read: {}", io_kind(&e)));
                return Stop::Failed;
            }
        }
    }
}

/// Handles every whole packet in the read buffer: records and acknowledges
/// each PUBLISH (PUBACK, or PUBREC and later PUBCOMP). `Err`: the connection
/// cannot go on.
fn handle_buffered(
    conn: &mut Conn,
    r: &mut DrainResult,
    qos2_pending: &mut HashSet<u16>,
    last_publish: &mut u64,
) -> Result<(), String> {
    let now = mono_ns();
    loop {
        let (pkt, n) = match codec::parse(&conn.rbuf[conn.rstart..conn.rend], conn.version) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("drain: {e}")),
        };
        match pkt {
            Packet::Publish {
                qos, pid, payload, ..
            } => {
                *last_publish = now;
                r.first_ns.get_or_insert(now);
                let deliver = codec::answer_publish(&mut conn.wbuf, qos, pid, qos2_pending);
                if deliver && r.backlog.record(payload) {
                    r.last_new_ns = Some(now);
                }
            }
            Packet::PubRel { pid } => {
                qos2_pending.remove(&pid);
                codec::encode_ack(&mut conn.wbuf, codec::PUBCOMP, pid);
            }
            Packet::PingResp => {}
            Packet::Disconnect { reason } => {
                return Err(format!(
                    "drain: broker sent DISCONNECT (reason 0x{reason:02x})"
                ))
            }
            other => r.errors.add(format!("drain: unexpected {other:?}")),
        }
        conn.rstart += n;
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{stamp, write_header_static, HEADER_LEN};
    use super::Backlog;

    fn payload(run: u32, seq: u64) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + 4];
        write_header_static(&mut p, run, 0);
        stamp(&mut p, seq, 0);
        p
    }

    #[test]
    fn counts_distinct_duplicates_and_missing_ranges() {
        let mut b = Backlog::new(10, None);
        for s in [0, 1, 2, 2, 5, 9, 1] {
            b.record(&payload(7, s));
        }
        assert_eq!(b.received, 7);
        assert_eq!(b.distinct(), 5);
        assert_eq!(b.duplicates, 2);
        assert_eq!(b.missing(), 5);
        assert!(!b.complete());
        assert_eq!(b.missing_ranges(10), vec![(3, 4), (6, 8)]);
        assert_eq!(b.missing_ranges(1), vec![(3, 4)]);
        for s in [3, 4, 6, 7, 8] {
            assert!(b.record(&payload(7, s)), "{s} is new");
        }
        assert!(b.complete());
        assert!(b.missing_ranges(10).is_empty());
    }

    #[test]
    fn other_runs_out_of_range_and_foreign_payloads_do_not_count() {
        let mut b = Backlog::new(3, Some(7));
        assert!(!b.record(&payload(8, 0)), "another run");
        assert!(!b.record(&payload(7, 3)), "beyond expect");
        assert!(!b.record(b"not a loadgen payload at all, long enough"));
        assert!(b.record(&payload(7, 0)));
        assert_eq!((b.stale, b.out_of_range, b.foreign), (1, 1, 1));
        assert_eq!((b.received, b.distinct(), b.missing()), (4, 1, 2));
        assert_eq!(b.runs.iter().copied().collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn nothing_expected_is_complete_at_once() {
        let b = Backlog::new(0, None);
        assert!(b.complete());
        assert_eq!(b.missing(), 0);
    }
}
