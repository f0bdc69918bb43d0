//! The outbound half of a session on its connection: the inflight window,
//! packet ids, the queue of messages waiting for the window, outgoing topic
//! aliases, and retransmission. It produces packets; the connection writes
//! them and commits what the subscriber acknowledged.
//!
//! Durable deliveries (persistent sessions, QoS > 0) carry a queue sequence;
//! their packet id is derived from it, so the same message keeps the same
//! packet id across reconnects and restarts, which is what makes QoS 2
//! exactly-once hold after a crash.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasherDefault;
use std::time::Duration;

use rustc_hash::FxHasher;

use raftmq_raft::Delivery;

use crate::coarse_clock;
use crate::codec::{self, Packet, PubResp, PublishProperties, PublishRef, QoS};

/// Where the window's packets go: the connection's framing, which encodes
/// each at once. A delivery is written from the message it shares with
/// the other subscribers, not copied into a packet of its own.
pub trait Wire {
    fn packet(&mut self, p: Packet);
    fn publish(&mut self, p: &PublishRef);
}

/// A PUBREL for `pid`, reason success.
fn pubrel(pid: u16) -> Packet {
    Packet::PubRel(PubResp {
        packet_id: pid,
        ..Default::default()
    })
}

pub fn pid_for_seq(seq: u64) -> u16 {
    (seq % 65535) as u16 + 1
}

struct InFlight {
    d: Delivery,
    /// QoS 2: PUBREC seen (and committed, for durable items); PUBREL sent.
    released: bool,
    /// When last sent, on the coarse clock: what retransmission times.
    sent_ms: u64,
    /// When it was first sent, among this connection's deliveries: resends
    /// go out in this order, whatever their packet ids.
    order: u64,
}

/// The deliveries sent and not yet acknowledged, by packet id. Every QoS
/// 1/2 delivery is one insert and one remove, so a hash map, with a cheap
/// hash: the ids are the broker's own, nothing a client can aim at.
type Window = HashMap<u16, InFlight, BuildHasherDefault<FxHasher>>;

pub struct Outbound {
    inflight: Window,
    /// The `order` of the next delivery sent.
    next_order: u64,
    waiting: VecDeque<(Delivery, bool)>,
    window: usize,
    max_waiting: i64,
    next_pid: u16,
    aliases: HashMap<String, u16>,
    alias_max: u16,
    /// Client's maximum packet size.
    max_packet: usize,
    /// What it did since the connection last counted it.
    pub counts: crate::metrics::OutboundCounts,
}

/// What a PUBACK or PUBCOMP settled: the queue sequence of the durable item
/// whose removal the connection commits, if it was one.
pub type Settled = Option<u64>;

/// What the connection must do after a PUBREC from the client.
pub enum AckEffect {
    None,
    /// Commit removal of this queue item.
    Commit(u64),
    /// Commit "received" for this durable QoS 2 item, then send PUBREL(pid).
    CommitReceived(u64, u16),
}

impl Outbound {
    pub fn new(window: usize, max_waiting: i64, alias_max: u16, max_packet: usize) -> Outbound {
        Outbound {
            inflight: Window::default(),
            next_order: 0,
            waiting: VecDeque::new(),
            window: window.clamp(1, 65535),
            max_waiting,
            next_pid: 1,
            aliases: HashMap::new(),
            alias_max,
            max_packet,
            counts: Default::default(),
        }
    }

    /// Deliveries sent and not yet acknowledged.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Gives back the window's and the waiting queue's memory when both are
    /// empty: for a connection that has gone idle.
    pub fn shrink(&mut self) {
        if self.inflight.is_empty() && self.inflight.capacity() > 0 {
            self.inflight = Window::default();
        }
        if self.waiting.is_empty() && self.waiting.capacity() > 0 {
            self.waiting = VecDeque::new();
        }
    }

    /// Messages waiting for room in the window.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences sent but not acknowledged (for DUP after a reconnect).
    pub fn unacked_seqs(&self) -> HashSet<u64> {
        self.inflight.values().filter_map(|f| f.d.seq).collect()
    }

    fn free_pid(&mut self) -> Option<u16> {
        for _ in 0..65535 {
            let p = self.next_pid;
            self.next_pid = if self.next_pid == 65535 {
                1
            } else {
                self.next_pid + 1
            };
            if !self.inflight.contains_key(&p) {
                return Some(p);
            }
        }
        None
    }

    /// Takes a message for the client: sends it now if the window allows,
    /// else queues it. `out` receives packets to write; `commit` receives
    /// queue sequences to drop (expired or undeliverable).
    pub fn offer(
        &mut self,
        d: Delivery,
        dup: bool,
        now_ms: u64,
        out: &mut impl Wire,
        commit: &mut Vec<u64>,
    ) {
        self.counts.offered += 1;
        if d.msg.expired(now_ms) {
            self.counts.expired += 1;
            commit.extend(d.seq);
            return;
        }
        if d.qos == 0 {
            self.send(d, dup, 0, now_ms, out, commit);
            return;
        }
        if self.inflight.len() < self.window && self.waiting.is_empty() {
            if let Some(pid) = self.pid_for(&d) {
                self.send(d, dup, pid, now_ms, out, commit);
                return;
            }
        }
        if d.seq.is_none() && self.max_waiting >= 0 && self.waiting.len() as i64 >= self.max_waiting
        {
            self.counts.dropped_online_limit += 1;
            return;
        }
        self.waiting.push_back((d, dup));
    }

    fn pid_for(&mut self, d: &Delivery) -> Option<u16> {
        match d.seq {
            Some(seq) => {
                let p = pid_for_seq(seq);
                (!self.inflight.contains_key(&p)).then_some(p)
            }
            None => self.free_pid(),
        }
    }

    /// Moves waiting messages into the window while it has room.
    pub fn fill(&mut self, now_ms: u64, out: &mut impl Wire, commit: &mut Vec<u64>) {
        while self.inflight.len() < self.window {
            let Some((d, dup)) = self.waiting.pop_front() else {
                break;
            };
            if d.msg.expired(now_ms) {
                commit.extend(d.seq);
                continue;
            }
            match self.pid_for(&d) {
                Some(pid) => self.send(d, dup, pid, now_ms, out, commit),
                None => {
                    self.waiting.push_front((d, dup));
                    break;
                }
            }
        }
    }

    fn send(
        &mut self,
        d: Delivery,
        dup: bool,
        pid: u16,
        now_ms: u64,
        out: &mut impl Wire,
        commit: &mut Vec<u64>,
    ) {
        if d.received {
            out.packet(pubrel(pid));
            self.hold(pid, d, true);
            return;
        }
        if !self.write_publish(&d, dup, pid, now_ms, out) {
            // The client said it cannot take a packet this large: drop it.
            self.counts.dropped_too_large += 1;
            commit.extend(d.seq);
            return;
        }
        self.counts.sent += 1;
        if d.qos > 0 {
            self.hold(pid, d, false);
        }
    }

    /// Keeps a delivery just sent as `pid` until the client acknowledges it.
    fn hold(&mut self, pid: u16, d: Delivery, released: bool) {
        let order = self.next_order;
        self.next_order += 1;
        self.inflight.insert(
            pid,
            InFlight {
                d,
                released,
                sent_ms: coarse_clock::now_ms(),
                order,
            },
        );
    }

    /// Writes `d` as PUBLISH `pid`, with the topic alias the client knows
    /// for its topic or a new one. False, and nothing written, if the
    /// client's maximum packet size does not allow it.
    fn write_publish(
        &mut self,
        d: &Delivery,
        dup: bool,
        pid: u16,
        now_ms: u64,
        out: &mut impl Wire,
    ) -> bool {
        let m = &d.msg;
        let mut topic = m.topic.as_str();
        let mut topic_alias = None;
        let mut new_alias = None;
        if self.alias_max > 0 {
            if let Some(a) = self.aliases.get(&m.topic) {
                topic_alias = Some(*a);
                topic = "";
            } else if self.aliases.len() < self.alias_max as usize {
                new_alias = Some(self.aliases.len() as u16 + 1);
                topic_alias = new_alias;
            }
        }
        let expiry = m
            .expires_ms
            .map(|e| (e.saturating_sub(now_ms).div_ceil(1000)).max(1) as u32);
        let properties = PublishProperties {
            payload_format_indicator: m.props.payload_format_indicator,
            message_expiry_interval: expiry,
            topic_alias,
            response_topic: m.props.response_topic.clone(),
            correlation_data: m.props.correlation_data.clone(),
            user_properties: m.props.user_properties.clone(),
            subscription_identifiers: d.sub_ids.clone(),
            content_type: m.props.content_type.clone(),
        };
        let p = PublishRef {
            dup: dup && d.qos > 0,
            qos: QoS::from_u8(d.qos).unwrap_or(QoS::AtMostOnce),
            retain: d.retain,
            topic,
            packet_id: if d.qos > 0 { pid } else { 0 },
            payload: &m.payload,
            properties: &properties,
        };
        // Only a client that set a maximum packet size needs the size check.
        if self.max_packet != usize::MAX
            && codec::publish_len(&p, codec::Protocol::V5) > self.max_packet
        {
            return false;
        }
        out.publish(&p);
        // A new alias is the client's only once a packet has carried it.
        if let Some(a) = new_alias {
            self.aliases.insert(m.topic.clone(), a);
        }
        true
    }

    /// PUBACK from the client.
    pub fn puback(&mut self, pid: u16) -> Settled {
        self.settle(pid, |f| f.d.qos == 1)
    }

    /// Ends delivery `pid` if it is in flight and `done` says this
    /// acknowledgement completes it.
    fn settle(&mut self, pid: u16, done: impl FnOnce(&InFlight) -> bool) -> Settled {
        match self.inflight.entry(pid) {
            Entry::Occupied(f) if done(f.get()) => f.remove().d.seq,
            _ => None,
        }
    }

    /// PUBREC from the client. `failed` = reason code >= 0x80.
    pub fn pubrec(&mut self, pid: u16, failed: bool, out: &mut impl Wire) -> AckEffect {
        let Some(f) = self.inflight.get_mut(&pid) else {
            // Unknown id: answer so the client can finish (spec 4.3.3).
            out.packet(Packet::PubRel(PubResp {
                packet_id: pid,
                reason: 0x92,
                ..Default::default()
            }));
            return AckEffect::None;
        };
        if f.d.qos != 2 {
            return AckEffect::None;
        }
        if failed {
            // A failed PUBREC ends the delivery, as a PUBACK does.
            return self
                .settle(pid, |_| true)
                .map_or(AckEffect::None, AckEffect::Commit);
        }
        if f.released {
            out.packet(pubrel(pid));
            return AckEffect::None;
        }
        match f.d.seq {
            Some(seq) => AckEffect::CommitReceived(seq, pid),
            None => {
                f.released = true;
                f.sent_ms = coarse_clock::now_ms();
                out.packet(pubrel(pid));
                AckEffect::None
            }
        }
    }

    /// The "received" state of a durable QoS 2 item is committed: PUBREL.
    pub fn released(&mut self, pid: u16, out: &mut impl Wire) {
        if let Some(f) = self.inflight.get_mut(&pid) {
            f.released = true;
            f.d.received = true;
            f.sent_ms = coarse_clock::now_ms();
            out.packet(pubrel(pid));
        }
    }

    /// PUBCOMP from the client.
    pub fn pubcomp(&mut self, pid: u16) -> Settled {
        self.settle(pid, |f| f.d.qos == 2 && f.released)
    }

    /// Resends what has waited longer than `after`, in the order first sent
    /// (MQTT 3 only: MQTT 5 forbids resending except on reconnect).
    pub fn retransmit(&mut self, after: Duration, now_ms: u64, out: &mut impl Wire) -> usize {
        let now = coarse_clock::now_ms();
        let after = after.as_millis() as u64;
        let mut due: Vec<(u64, u16)> = self
            .inflight
            .iter()
            .filter(|(_, f)| now.saturating_sub(f.sent_ms) >= after)
            .map(|(p, f)| (f.order, *p))
            .collect();
        due.sort_unstable();
        for (_, pid) in &due {
            let d = match self.inflight.get_mut(pid) {
                Some(f) => {
                    f.sent_ms = now;
                    (!f.released).then(|| f.d.clone())
                }
                None => continue,
            };
            match d {
                // It went out before, so it fits.
                Some(d) => {
                    self.write_publish(&d, true, *pid, now_ms, out);
                }
                None => out.packet(pubrel(*pid)),
            }
        }
        due.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use raftmq_raft::command::Message;

    use super::*;

    /// The packets written, as packets.
    impl Wire for Vec<Packet> {
        fn packet(&mut self, p: Packet) {
            self.push(p);
        }

        fn publish(&mut self, p: &PublishRef) {
            self.push(Packet::Publish(crate::codec::Publish {
                dup: p.dup,
                qos: p.qos,
                retain: p.retain,
                topic: p.topic.to_string(),
                packet_id: p.packet_id,
                payload: bytes::Bytes::copy_from_slice(p.payload),
                properties: p.properties.clone(),
            }));
        }
    }

    fn outbound() -> Outbound {
        Outbound::new(16, -1, 0, usize::MAX)
    }

    fn qos1() -> Delivery {
        let msg = Message::system("t".into(), "x".into(), false, 0);
        Delivery::live(Arc::new(msg), 1, false, Vec::new())
    }

    fn sent_ids(out: &[Packet]) -> Vec<u16> {
        out.iter()
            .map(|p| match p {
                Packet::Publish(p) => p.packet_id,
                other => panic!("not a PUBLISH: {other:?}"),
            })
            .collect()
    }

    /// Offers `n` QoS 1 deliveries; returns the packet ids they went out as.
    fn send(o: &mut Outbound, n: usize) -> Vec<u16> {
        let (mut out, mut commit) = (Vec::new(), Vec::new());
        for _ in 0..n {
            o.offer(qos1(), false, 0, &mut out, &mut commit);
        }
        sent_ids(&out)
    }

    #[test]
    fn resends_go_out_in_the_order_first_sent_across_a_packet_id_wrap() {
        let mut o = outbound();
        o.next_pid = 65534;
        let first = send(&mut o, 3);
        assert_eq!(first, vec![65534, 65535, 1]);
        let mut out = Vec::new();
        assert_eq!(o.retransmit(Duration::ZERO, 0, &mut out), 3);
        assert_eq!(sent_ids(&out), first);
        assert!(matches!(&out[0], Packet::Publish(p) if p.dup));
    }

    #[test]
    fn a_failed_pubrec_ends_the_delivery_and_commits_a_durable_items_removal() {
        let mut o = outbound();
        let (mut out, mut commit) = (Vec::new(), Vec::new());
        let qos2 = |seq| {
            let mut d = qos1();
            d.qos = 2;
            d.seq = seq;
            d
        };
        o.offer(qos2(None), false, 0, &mut out, &mut commit);
        o.offer(qos2(Some(7)), false, 0, &mut out, &mut commit);
        let ids = sent_ids(&out);
        let mut out = Vec::new();
        assert!(matches!(o.pubrec(ids[0], true, &mut out), AckEffect::None));
        assert!(matches!(
            o.pubrec(ids[1], true, &mut out),
            AckEffect::Commit(7)
        ));
        assert_eq!(o.inflight(), 0);
        assert!(out.is_empty(), "no PUBREL for a failed PUBREC: {out:?}");
    }

    #[test]
    fn a_puback_frees_its_packet_id_and_only_its_own() {
        let mut o = outbound();
        let ids = send(&mut o, 2);
        assert_eq!(o.puback(ids[0]), None, "a live delivery has no queue item");
        assert_eq!(o.inflight(), 1);
        assert_eq!(o.puback(ids[0]), None);
        assert_eq!(
            o.inflight(),
            1,
            "a second PUBACK for the same id frees nothing"
        );
        let mut out = Vec::new();
        o.retransmit(Duration::ZERO, 0, &mut out);
        assert_eq!(sent_ids(&out), vec![ids[1]]);
    }

    #[test]
    fn a_full_window_queues_and_an_ack_lets_the_next_in() {
        let mut o = Outbound::new(2, -1, 0, usize::MAX);
        assert_eq!(send(&mut o, 3).len(), 2);
        assert_eq!((o.inflight(), o.waiting()), (2, 1));
        o.puback(1);
        let (mut out, mut commit) = (Vec::new(), Vec::new());
        o.fill(0, &mut out, &mut commit);
        assert_eq!(sent_ids(&out), vec![3]);
        assert_eq!((o.inflight(), o.waiting()), (2, 0));
    }

    #[test]
    fn a_publish_too_large_for_the_client_leaves_the_topic_alias_unused() {
        let mut o = Outbound::new(16, -1, 2, 64);
        let big = Message::system("t".into(), "x".repeat(100), false, 0);
        let big = Delivery::live(Arc::new(big), 1, false, Vec::new());
        let (mut out, mut commit) = (Vec::new(), Vec::new());
        o.offer(big, false, 0, &mut out, &mut commit);
        assert!(out.is_empty());
        assert_eq!(o.counts.dropped_too_large, 1);
        o.offer(qos1(), false, 0, &mut out, &mut commit);
        o.offer(qos1(), false, 0, &mut out, &mut commit);
        let sent: Vec<(String, Option<u16>)> = out
            .iter()
            .map(|p| match p {
                Packet::Publish(p) => (p.topic.clone(), p.properties.topic_alias),
                other => panic!("not a PUBLISH: {other:?}"),
            })
            .collect();
        assert_eq!(sent, [("t".to_string(), Some(1)), (String::new(), Some(1))]);
    }

    #[test]
    fn an_emptied_window_gives_back_its_memory_when_shrunk() {
        let mut o = outbound();
        for pid in send(&mut o, 8) {
            o.puback(pid);
        }
        assert!(o.inflight.capacity() > 0);
        o.shrink();
        assert_eq!(o.inflight.capacity(), 0);
    }
}
