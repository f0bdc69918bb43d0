//! Publisher task: open-loop timetable (or saturation), bounded inflight
//! window, batched writes, publish→PUBACK/PUBCOMP latency from the intended
//! send time.

use super::clock::{mono_ns, Pacer};
use super::codec::{self, Packet};
use super::conn::{io_kind, Conn, WBUF_HIGH};
use super::stats::{self, new_hist, record_ns, BitSet, Counters, Errors, Window};
use super::Phase;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use tokio::io::Interest;
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct PubSpec {
    pub idx: u32,
    /// May contain `%n`: replaced by each message's sequence number.
    pub topic: Vec<u8>,
    pub retain: bool,
    pub qos: u8,
    pub size: usize,
    pub inflight: usize,
    /// Total offered msg/s across all publishers; 0 = saturation.
    pub rate: u64,
    pub n_pubs: u64,
    pub run_id: u32,
    pub keepalive: u16,
    /// Sequence number of this publisher's first message.
    pub seq_base: u64,
    /// Stop after this many messages (pub --count), then wait `drain_ns` for acks.
    pub count: Option<u64>,
    pub drain_ns: u64,
}

/// `pub --count n` over `pubs` publishers: (first sequence number, how many)
/// for each, contiguous blocks that together cover 0..n exactly.
pub fn shares(n: u64, pubs: u64) -> Vec<(u64, u64)> {
    let mut base = 0;
    (0..pubs)
        .map(|i| {
            let k = n / pubs + u64::from(i < n % pubs);
            base += k;
            (base - k, k)
        })
        .collect()
}

pub struct PubResult {
    pub idx: u32,
    /// Messages written (all time) and within the measurement window.
    pub sent_total: u64,
    pub sent_win: u64,
    pub acked_total: u64,
    pub acked_win: u64,
    /// Scheduled before the end but never sent (broker too slow / window full).
    pub not_sent: u64,
    /// Still unacknowledged when the publisher stopped.
    pub unacked: u64,
    pub ack_hist: Histogram<u64>,
    pub errors: Errors,
    /// Sequence numbers the broker acknowledged (QoS>0).
    pub acked: BitSet,
}

/// Intended send time of message `k` on this publisher's timetable.
struct Timetable {
    start: u64,
    num: u128,
    den: u128,
}

impl Timetable {
    fn new(start: u64, idx: u32, n_pubs: u64, rate: u64) -> Self {
        // Publisher i sends at start + i/R + k*N/R: the union of all
        // timetables is evenly spaced at the total rate R.
        let offset = (idx as u128 * 1_000_000_000 / rate as u128) as u64;
        Timetable {
            start: start + offset,
            num: n_pubs as u128 * 1_000_000_000,
            den: rate as u128,
        }
    }
    fn at(&self, k: u64) -> u64 {
        self.start + (k as u128 * self.num / self.den) as u64
    }
    /// How many messages are scheduled strictly before `t`.
    fn count_before(&self, t: u64) -> u64 {
        if t <= self.start {
            return 0;
        }
        let d = (t - self.start) as u128;
        ((d * self.den).div_ceil(self.num)) as u64
    }
}

enum Ev {
    Ready(io::Result<tokio::io::Ready>),
    Timer(io::Result<()>),
    Ctl(bool),
}

pub async fn run(
    spec: PubSpec,
    mut conn: Conn,
    mut ctl: watch::Receiver<Phase>,
    counters: Arc<Counters>,
) -> (PubResult, Option<Conn>) {
    let mut r = PubResult {
        idx: spec.idx,
        sent_total: 0,
        sent_win: 0,
        acked_total: 0,
        acked_win: 0,
        not_sent: 0,
        unacked: 0,
        ack_hist: new_hist(),
        errors: Errors::default(),
        acked: BitSet::default(),
    };
    // Wait for the common start.
    let tl = loop {
        let phase = *ctl.borrow_and_update();
        match phase {
            Phase::Run(tl) => break tl,
            Phase::Stop => return (r, Some(conn)),
            Phase::Waiting => {}
        }
        if ctl.changed().await.is_err() {
            return (r, Some(conn));
        }
    };
    let pacer = match Pacer::new() {
        Ok(p) => p,
        Err(e) => {
            r.errors.add(format!("timerfd: {e}"));
            return (r, Some(conn));
        }
    };
    let win = Window {
        t0: tl.t0,
        t1: tl.t1,
    };
    let qos = spec.qos;
    let version = conn.version;
    let window = if qos == 0 {
        usize::MAX
    } else {
        spec.inflight
            .clamp(1, 65_535)
            .min(conn.receive_max as usize)
    };
    let table = (spec.rate > 0).then(|| Timetable::new(tl.start, spec.idx, spec.n_pubs, spec.rate));
    let ka_ns = spec.keepalive as u64 * 500_000_000; // ping at half the keepalive
    let mut payload = vec![0u8; spec.size];
    stats::write_header_static(&mut payload, spec.run_id, spec.idx);
    let mut inflight: HashMap<u16, (u64, u64)> = HashMap::with_capacity(window.min(65_535));
    let mut next_pid: u16 = 0;
    let mut k: u64 = 0;
    let mut done_sending = false;
    let mut drain_until = tl.drain_until;

    // `%n` in the topic: a new topic per message.
    let per_msg_topic = spec
        .topic
        .windows(2)
        .position(|w| w == b"%n")
        .map(|i| (spec.topic[..i].to_vec(), spec.topic[i + 2..].to_vec()));
    let mut topic_buf = Vec::with_capacity(spec.topic.len() + 20);
    // Pre-size the write buffer for a full window of publishes.
    let one = codec::publish_len(version, qos, spec.topic.len(), spec.size);
    conn.wbuf
        .reserve((one * window.min(1024)).min(WBUF_HIGH) + one);

    loop {
        let now = mono_ns();
        if !done_sending && now >= tl.t1 {
            done_sending = true;
            if let Some(t) = &table {
                r.not_sent = t.count_before(tl.t1).saturating_sub(k);
            }
        }
        let mut batch = 0u64;
        if !done_sending && spec.count.is_some_and(|n| k >= n) {
            done_sending = true;
            drain_until = now + spec.drain_ns;
        }
        if !done_sending {
            while inflight.len() < window
                && conn.wbuf.len() < WBUF_HIGH
                && spec.count.is_none_or(|n| k < n)
            {
                let intended = match &table {
                    Some(t) => {
                        let at = t.at(k);
                        if at > now {
                            break;
                        }
                        if at >= tl.t1 {
                            done_sending = true;
                            break;
                        }
                        at
                    }
                    None => now,
                };
                let pid = if qos > 0 {
                    loop {
                        next_pid = if next_pid == u16::MAX {
                            1
                        } else {
                            next_pid + 1
                        };
                        if !inflight.contains_key(&next_pid) {
                            break next_pid;
                        }
                    }
                } else {
                    0
                };
                let topic: &[u8] = match &per_msg_topic {
                    Some((pre, post)) => {
                        topic_buf.clear();
                        topic_buf.extend_from_slice(pre);
                        topic_buf.extend_from_slice(k.to_string().as_bytes());
                        topic_buf.extend_from_slice(post);
                        &topic_buf
                    }
                    None => &spec.topic,
                };
                let first = conn.wbuf.len();
                let at = codec::encode_publish(&mut conn.wbuf, version, qos, topic, pid, &payload);
                if spec.retain {
                    conn.wbuf[first] |= 0x01;
                }
                let seq = spec.seq_base + k;
                stats::stamp(&mut conn.wbuf[at..], seq, intended);
                if qos > 0 {
                    inflight.insert(pid, (intended, seq));
                }
                if win.contains(now) {
                    r.sent_win += 1;
                }
                k += 1;
                batch += 1;
            }
        }
        r.sent_total = k;
        counters.add(&counters.published, batch);
        if ka_ns > 0 && !conn.want_write() && now >= conn.last_write + ka_ns {
            codec::encode_pingreq(&mut conn.wbuf);
        }
        if let Err(e) = conn.flush() {
            r.errors.add(format!("publisher write: {}", io_kind(&e)));
            break;
        }
        if done_sending && inflight.is_empty() && !conn.want_write() {
            break;
        }
        if done_sending && now >= drain_until {
            r.errors.add("publisher: timed out waiting for acks");
            break;
        }

        let mut interest = Interest::READABLE;
        if conn.want_write() || (table.is_none() && qos == 0 && !done_sending) {
            interest |= Interest::WRITABLE;
        }
        let mut deadline = if done_sending {
            drain_until
        } else {
            match &table {
                Some(t) if inflight.len() < window => t.at(k).min(tl.t1),
                _ => tl.t1,
            }
        };
        if ka_ns > 0 && !conn.want_write() {
            deadline = deadline.min(conn.last_write + ka_ns);
        }
        let ev = tokio::select! {
            rd = conn.stream.ready(interest) => Ev::Ready(rd),
            t = pacer.sleep_until(deadline) => Ev::Timer(t),
            c = ctl.changed() => Ev::Ctl(c.is_ok() && !matches!(*ctl.borrow(), Phase::Stop)),
        };
        match ev {
            Ev::Ready(Err(e)) | Ev::Timer(Err(e)) => {
                r.errors.add(format!("publisher: {e}"));
                break;
            }
            Ev::Timer(Ok(())) => {}
            Ev::Ctl(true) => {}
            Ev::Ctl(false) => {
                // Aborted by the coordinator.
                break;
            }
            Ev::Ready(Ok(ready)) => {
                if !(ready.is_readable() || ready.is_read_closed()) {
                    continue;
                }
                match conn.read_some() {
                    Ok(true) => {}
                    Ok(false) => {
                        r.errors.add("publisher: connection closed by broker");
                        r.unacked = inflight.len() as u64;
                        return (r, None);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        r.errors.add(format!("publisher read: {}", io_kind(&e)));
                        r.unacked = inflight.len() as u64;
                        return (r, None);
                    }
                }
                let now = mono_ns();
                let mut acks = 0u64;
                let mut fatal = false;
                loop {
                    let parsed = codec::parse(&conn.rbuf[conn.rstart..conn.rend], version);
                    let (pkt, n) = match parsed {
                        Ok(Some(x)) => x,
                        Ok(None) => break,
                        Err(e) => {
                            r.errors.add(format!("publisher: {e}"));
                            fatal = true;
                            break;
                        }
                    };
                    match pkt {
                        Packet::PubAck { pid, reason } if qos == 1 => {
                            acks += complete(&mut inflight, &mut r, pid, reason, "PUBACK", now, win)
                        }
                        Packet::PubRec { pid, reason } if qos == 2 => {
                            if reason >= 0x80 {
                                acks += complete(
                                    &mut inflight,
                                    &mut r,
                                    pid,
                                    reason,
                                    "PUBREC",
                                    now,
                                    win,
                                );
                            } else if inflight.contains_key(&pid) {
                                codec::encode_ack(&mut conn.wbuf, codec::PUBREL, pid);
                            } else {
                                r.errors.add("PUBREC for unknown packet id");
                            }
                        }
                        Packet::PubComp { pid, reason } if qos == 2 => {
                            acks +=
                                complete(&mut inflight, &mut r, pid, reason, "PUBCOMP", now, win)
                        }
                        Packet::PingResp => {}
                        Packet::Disconnect { reason } => {
                            r.errors.add(format!(
                                "publisher: broker sent DISCONNECT (reason 0x{reason:02x})"
                            ));
                            fatal = true;
                        }
                        other => r.errors.add(format!("publisher: unexpected {other:?}")),
                    }
                    conn.rstart += n;
                    if fatal {
                        break;
                    }
                }
                counters.add(&counters.acked, acks);
                if acks > 0 {
                    counters.note_ack(now);
                }
                if fatal {
                    r.unacked = inflight.len() as u64;
                    return (r, None);
                }
            }
        }
    }
    r.unacked = inflight.len() as u64;
    (r, Some(conn))
}

/// Retire an inflight message on its final ack; returns 1 if it counts as acked.
fn complete(
    inflight: &mut HashMap<u16, (u64, u64)>,
    r: &mut PubResult,
    pid: u16,
    reason: u8,
    what: &str,
    now: u64,
    win: Window,
) -> u64 {
    match inflight.remove(&pid) {
        Some((intended, seq)) if reason < 0x80 => {
            r.acked_total += 1;
            r.acked.insert(seq);
            if win.contains(now) {
                r.acked_win += 1;
            }
            if win.contains(intended) {
                record_ns(&mut r.ack_hist, now.saturating_sub(intended));
            }
            1
        }
        Some(_) => {
            r.errors.add(format!("{what} reason 0x{reason:02x}"));
            0
        }
        None => {
            r.errors.add(format!("{what} for unknown packet id"));
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{shares, Timetable};

    #[test]
    fn count_shares_are_contiguous_blocks_covering_every_sequence_number_once() {
        assert_eq!(shares(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(shares(2, 4), vec![(0, 1), (1, 1), (2, 0), (2, 0)]);
        assert_eq!(shares(1_000_000, 1), vec![(0, 1_000_000)]);
        for (n, p) in [(0, 1), (7, 7), (1_000_003, 8)] {
            let s = shares(n, p);
            assert_eq!(s.len() as u64, p);
            assert_eq!(s.iter().map(|x| x.1).sum::<u64>(), n);
            assert!(s.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        }
    }

    #[test]
    fn timetable_spacing() {
        // 4 publishers, 1000 msg/s total: each every 4 ms, offset 1 ms apart.
        let t0 = Timetable::new(1_000, 0, 4, 1000);
        let t1 = Timetable::new(1_000, 1, 4, 1000);
        assert_eq!(t0.at(0), 1_000);
        assert_eq!(t0.at(1), 1_000 + 4_000_000);
        assert_eq!(t1.at(0), 1_000 + 1_000_000);
        assert_eq!(t0.count_before(1_000), 0);
        assert_eq!(t0.count_before(1_001), 1);
        assert_eq!(t0.count_before(1_000 + 4_000_000), 1);
        assert_eq!(t0.count_before(1_000 + 4_000_001), 2);
    }
}
