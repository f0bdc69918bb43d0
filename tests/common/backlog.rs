//! Numbered QoS 1 messages, to prove that none is lost: [`publish_numbered`]
//! pipelines messages whose payloads are the sequence numbers 0..n and
//! returns once the broker has acknowledged every one; [`drain_numbered`]
//! receives (and acks) them on a subscriber into [`Deliveries`], which says
//! which sequence numbers never arrived and how many came twice.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use raftmq::codec::{Packet, Protocol, QoS};

use super::packets::{publish_packet, v3_connect};
use super::raw_client::{RawClient, Recv};

/// The payload of message `seq`: its decimal digits.
pub fn seq_payload(seq: u64) -> Vec<u8> {
    seq.to_string().into_bytes()
}

/// Publishes QoS 1 messages 0..n to `topic` (payload [`seq_payload`]) from
/// `publishers` MQTT 3.1.1 connections in parallel, each keeping up to
/// `window` unacknowledged, and returns once all n are PUBACKed. Panics if
/// any is refused, a connection fails, or an ack takes longer than 30 s.
pub fn publish_numbered(
    port: u16,
    id_prefix: &str,
    topic: &str,
    n: u64,
    publishers: u64,
    window: usize,
) {
    thread::scope(|s| {
        for i in 0..publishers {
            let (lo, hi) = (n * i / publishers, n * (i + 1) / publishers);
            let id = format!("{id_prefix}-{i}");
            s.spawn(move || publish_range(port, &id, topic, lo..hi, window));
        }
    });
}

fn publish_range(port: u16, id: &str, topic: &str, seqs: std::ops::Range<u64>, window: usize) {
    const ACK_WAIT: Duration = Duration::from_secs(30);
    let (mut c, _) = RawClient::connect_ok(port, Protocol::V311, v3_connect(id, true));
    let mut inflight: HashMap<u16, u64> = HashMap::with_capacity(window);
    let mut next = seqs.start;
    let mut pid: u16 = 0;
    let mut batch = Vec::new();
    loop {
        batch.clear();
        while inflight.len() < window && next < seqs.end {
            pid = pid.checked_add(1).unwrap_or(1);
            let mut p = publish_packet(topic, QoS::AtLeastOnce, &seq_payload(next));
            p.packet_id = pid;
            batch.extend_from_slice(&c.encode_bytes(&Packet::Publish(p)));
            inflight.insert(pid, next);
            next += 1;
        }
        if !batch.is_empty() {
            c.send_bytes(&batch)
                .unwrap_or_else(|e| panic!("{id}: writing publishes: {e}"));
        }
        if inflight.is_empty() {
            break; // all sent and acknowledged
        }
        // Wait for one ack, then take every ack already read with it, so the
        // window refills in one write.
        let mut wait = ACK_WAIT;
        loop {
            match c.recv(wait) {
                Recv::Packet(Packet::PubAck(a)) => {
                    let seq = inflight
                        .remove(&a.packet_id)
                        .unwrap_or_else(|| panic!("{id}: PUBACK for unknown packet id {a:?}"));
                    assert!(a.reason < 0x80, "{id}: message {seq} refused: {a:?}");
                }
                Recv::Timeout if wait.is_zero() => break,
                other => panic!(
                    "{id}: expected a PUBACK ({} in flight, next {next} of {seqs:?}), got {other:?}",
                    inflight.len()
                ),
            }
            wait = Duration::ZERO;
        }
    }
    c.disconnect();
}

/// What a subscriber received of the messages 0..expect.
#[derive(Debug)]
pub struct Deliveries {
    pub expect: u64,
    /// Deliveries per sequence number.
    counts: Vec<u32>,
    /// Payloads that are not a sequence number below `expect`.
    pub unexpected: u64,
}

impl Deliveries {
    pub fn new(expect: u64) -> Deliveries {
        Deliveries {
            expect,
            counts: vec![0; expect as usize],
            unexpected: 0,
        }
    }

    pub fn record(&mut self, payload: &[u8]) {
        let seq = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s < self.expect);
        match seq {
            Some(s) => self.counts[s as usize] += 1,
            None => self.unexpected += 1,
        }
    }

    /// Sequence numbers received at least once.
    pub fn distinct(&self) -> u64 {
        self.counts.iter().filter(|&&c| c > 0).count() as u64
    }

    /// Deliveries beyond the first of a sequence number (allowed at QoS 1).
    pub fn duplicates(&self) -> u64 {
        self.counts
            .iter()
            .map(|&c| u64::from(c.saturating_sub(1)))
            .sum()
    }

    pub fn complete(&self) -> bool {
        self.counts.iter().all(|&c| c > 0)
    }

    /// None if every sequence number arrived; otherwise how many did not,
    /// with the first few missing ranges.
    pub fn loss_report(&self) -> Option<String> {
        let lost = self.expect - self.distinct();
        if lost == 0 {
            return None;
        }
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for s in (0..self.expect).filter(|&s| self.counts[s as usize] == 0) {
            match ranges.last_mut() {
                Some((_, hi)) if *hi + 1 == s => *hi = s,
                _ => ranges.push((s, s)),
            }
        }
        let first: Vec<String> = ranges
            .iter()
            .take(10)
            .map(|(lo, hi)| format!("{lo}..={hi}"))
            .collect();
        Some(format!(
            "{lost} of {} acknowledged messages never delivered, in {} ranges; first: {}; \
             (duplicates {}, unexpected payloads {})",
            self.expect,
            ranges.len(),
            first.join(" "),
            self.duplicates(),
            self.unexpected
        ))
    }

    /// Panics unless every sequence number arrived (duplicates are allowed).
    pub fn assert_none_lost(&self, what: &str) {
        if let Some(report) = self.loss_report() {
            panic!("{what}: {report}");
        }
    }

    /// The negative control's check: loss is reported, and at most `limit`
    /// distinct messages arrived (a queue limit dropped the rest).
    pub fn assert_loss_detected(&self, limit: u64) {
        let report = self
            .loss_report()
            .expect("messages dropped by max_offline_messages are reported as lost");
        assert!(
            self.distinct() <= limit,
            "at most the limit arrives: {report}"
        );
        eprintln!("detected: {report}");
    }
}

/// The reconnected persistent subscriber of a backlog test (its session
/// must be present) drains `expect` numbered messages (5 s idle, 40 s at
/// most); logs how long publishing, the restart and the drain took.
pub fn drain_backlog(
    port: u16,
    client_id: &str,
    expect: u64,
    published: Duration,
    restarted: Duration,
) -> Deliveries {
    let (mut s, ack) = RawClient::v3(port, client_id, false);
    assert!(ack.session_present, "{ack:?}");
    let t = std::time::Instant::now();
    let got = drain_numbered(
        &mut s,
        expect,
        Duration::from_secs(5),
        Duration::from_secs(40),
    );
    eprintln!(
        "{expect} published and acknowledged in {published:.1?}, restart {restarted:.1?}, drain {:.1?}",
        t.elapsed()
    );
    got
}

/// Receives PUBLISHes on `c`, acking each, into a [`Deliveries`] of 0..expect,
/// until every sequence number arrived, no PUBLISH came for `idle`, or
/// `limit` passed. Panics if the connection fails.
pub fn drain_numbered(
    c: &mut RawClient,
    expect: u64,
    idle: Duration,
    limit: Duration,
) -> Deliveries {
    let mut d = Deliveries::new(expect);
    let deadline = Instant::now() + limit;
    let mut last = Instant::now();
    while !d.complete() {
        let now = Instant::now();
        if now >= deadline || now >= last + idle {
            break;
        }
        match c.recv((last + idle).min(deadline) - now) {
            Recv::Packet(Packet::Publish(p)) => {
                c.ack_start(&p);
                d.record(&p.payload);
                last = Instant::now();
            }
            Recv::Packet(Packet::PingResp) | Recv::Timeout => {}
            other => panic!(
                "connection failed while draining ({} of {expect} received): {other:?}",
                d.distinct()
            ),
        }
    }
    d
}
