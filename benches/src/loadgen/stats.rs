//! Measurement primitives: latency histograms, per-publisher sequence
//! tracking (loss / duplicate detection), error tallies, progress counters.

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Payload header stamped into every message (little-endian):
/// magic(4) run_id(4) publisher(4) seq(8) intended_send_ns(8).
pub const MAGIC: &[u8; 4] = b"LGv1";
pub const HEADER_LEN: usize = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub run_id: u32,
    pub publisher: u32,
    pub seq: u64,
    pub ts: u64,
}

pub fn write_header_static(payload: &mut [u8], run_id: u32, publisher: u32) {
    payload[0..4].copy_from_slice(MAGIC);
    payload[4..8].copy_from_slice(&run_id.to_le_bytes());
    payload[8..12].copy_from_slice(&publisher.to_le_bytes());
}

/// Stamp seq and timestamp into an already-encoded payload.
pub fn stamp(payload: &mut [u8], seq: u64, ts: u64) {
    payload[12..20].copy_from_slice(&seq.to_le_bytes());
    payload[20..28].copy_from_slice(&ts.to_le_bytes());
}

pub fn read_header(p: &[u8]) -> Option<Header> {
    if p.len() < HEADER_LEN || &p[0..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&p[i..i + 8]);
        u64::from_le_bytes(b)
    };
    Some(Header {
        run_id: u32_at(4),
        publisher: u32_at(8),
        seq: u64_at(12),
        ts: u64_at(20),
    })
}

/// Latency histogram in microseconds, 1 µs .. 1 h, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).max(1));
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn lat_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": h.mean().round() / 1000.0,
    })
}

pub fn lat_header() -> String {
    format!(
        "  {:<22}{:>10}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
    )
}

pub fn lat_row(name: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("  {name:<22}{:>10}", 0);
    }
    let q = |x: f64| ms(h.value_at_quantile(x));
    format!(
        "  {name:<22}{:>10}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>9.3}",
        h.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        ms(h.max()),
        h.mean() / 1000.0
    )
}

/// Growable bitset indexed by sequence number.
#[derive(Default, Clone, Debug)]
pub struct BitSet {
    words: Vec<u64>,
    count: u64,
}

/// Sequence numbers above this are treated as garbage (caps memory at 32 MiB).
pub const MAX_SEQ: u64 = 1 << 28;

impl BitSet {
    /// Set `i`; returns true if it was newly set.
    pub fn insert(&mut self, i: u64) -> bool {
        let w = (i / 64) as usize;
        if w >= self.words.len() {
            self.words.resize((w + 1).next_power_of_two(), 0);
        }
        let m = 1u64 << (i % 64);
        let new = self.words[w] & m == 0;
        self.words[w] |= m;
        self.count += u64::from(new);
        new
    }
    pub fn contains(&self, i: u64) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
    pub fn len(&self) -> u64 {
        self.count
    }
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            (0..64u64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| wi as u64 * 64 + b)
        })
    }
}

/// What one subscriber saw from one publisher.
#[derive(Default, Clone, Debug)]
pub struct SeqTracker {
    pub seen: BitSet,
    pub dups: u64,
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl SeqTracker {
    /// Record a delivery; returns true if this sequence number is new.
    pub fn record(&mut self, seq: u64) -> bool {
        let new = self.seen.insert(seq);
        if !new {
            self.dups += 1;
        }
        self.min = Some(self.min.map_or(seq, |m| m.min(seq)));
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        new
    }
    /// Sequence numbers missing between the lowest and highest seen.
    pub fn gaps(&self) -> u64 {
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => (hi - lo + 1).saturating_sub(self.seen.len()),
            _ => 0,
        }
    }
}

/// Error tally by kind.
#[derive(Default, Clone, Debug)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, kind: impl Into<String>) {
        *self.0.entry(kind.into()).or_default() += 1;
    }
    pub fn merge(&mut self, o: &Errors) {
        for (k, v) in &o.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
    pub fn json(&self) -> Value {
        json!(self.0)
    }
    pub fn lines(&self) -> String {
        let mut s = format!("errors: {}\n", self.total());
        for (k, v) in &self.0 {
            s.push_str(&format!("  {v:>8}  {k}\n"));
        }
        s
    }
}

/// Process-wide progress counters; tasks add per batch, not per message.
#[derive(Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    /// Monotonic ns of the latest ack (any publisher).
    pub last_ack_ns: AtomicU64,
    /// Longest time between two consecutive acks (any publishers): how long
    /// publishing stalled, e.g. across a leader failover.
    pub max_ack_gap_ns: AtomicU64,
}

impl Counters {
    /// Add `n` to one of this struct's counters (skipping the atomic op for 0).
    pub fn add(&self, c: &AtomicU64, n: u64) {
        debug_assert!(
            std::ptr::eq(c, &self.published)
                || std::ptr::eq(c, &self.acked)
                || std::ptr::eq(c, &self.received)
        );
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
    /// Records that acks arrived at `now` (once per read batch).
    pub fn note_ack(&self, now: u64) {
        let prev = self.last_ack_ns.swap(now, Ordering::Relaxed);
        if prev > 0 && now > prev {
            self.max_ack_gap_ns.fetch_max(now - prev, Ordering::Relaxed);
        }
    }

    /// The longest ack gap so far, in ms.
    pub fn max_ack_gap_ms(&self) -> f64 {
        self.max_ack_gap_ns.load(Ordering::Relaxed) as f64 / 1e6
    }

    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.published.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

/// A measurement window [t0, t1) in monotonic ns.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub t0: u64,
    pub t1: u64,
}

impl Window {
    pub const NEVER: Window = Window {
        t0: u64::MAX,
        t1: u64::MAX,
    };
    pub fn contains(&self, t: u64) -> bool {
        t >= self.t0 && t < self.t1
    }
    pub fn secs(&self) -> f64 {
        self.t1.saturating_sub(self.t0) as f64 / 1e9
    }
}

pub fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let mut p = vec![0u8; 64];
        write_header_static(&mut p, 9, 3);
        stamp(&mut p, 42, 123_456);
        assert_eq!(
            read_header(&p),
            Some(Header {
                run_id: 9,
                publisher: 3,
                seq: 42,
                ts: 123_456
            })
        );
        assert_eq!(read_header(&p[..27]), None);
    }

    #[test]
    fn tracker_counts() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 3, 3, 5] {
            t.record(s);
        }
        assert_eq!(t.dups, 1);
        assert_eq!(t.gaps(), 2);
        assert!(t.seen.contains(5) && !t.seen.contains(4));
        assert_eq!(t.seen.iter().collect::<Vec<_>>(), vec![0, 1, 3, 5]);
    }
}
