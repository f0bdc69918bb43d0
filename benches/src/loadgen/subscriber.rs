//! Subscriber task: SUBSCRIBE, then receive and acknowledge deliveries,
//! measuring end-to-end latency from the publisher's intended send time and
//! tracking per-publisher sequence numbers for loss/duplicate detection.

use super::clock::{mono_ns, Pacer};
use super::codec::{self, Packet};
use super::conn::{io_kind, Conn};
use super::stats::{self, new_hist, record_ns, Counters, Errors, SeqTracker, Window, MAX_SEQ};
use super::Phase;
use hdrhistogram::Histogram;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::Interest;
use tokio::sync::{oneshot, watch};

#[derive(Clone, Debug)]
pub struct SubSpec {
    pub filter: String,
    pub qos: u8,
    pub keepalive: u16,
    /// bench: only this run's messages count; others are "stale".
    pub run_id: Option<u32>,
}

pub struct SubResult {
    pub received_total: u64,
    pub received_win: u64,
    /// Deliveries without a loadgen header (or with an absurd sequence number).
    pub foreign: u64,
    /// Deliveries from another loadgen run (e.g. a persistent session's backlog).
    pub stale: u64,
    pub e2e_hist: Histogram<u64>,
    /// Keyed by (run_id, publisher index).
    pub trackers: HashMap<(u32, u32), SeqTracker>,
    pub errors: Errors,
    /// True if the connection was still up when told to stop.
    pub stayed_connected: bool,
}

impl SubResult {
    pub fn duplicates(&self) -> u64 {
        self.trackers.values().map(|t| t.dups).sum()
    }
}

enum Ev {
    Ready(io::Result<tokio::io::Ready>),
    Timer(io::Result<()>),
    Ctl(bool),
}

/// Runs until told `Phase::Stop` (or the connection fails). `subscribed`
/// fires on SUBACK; `unique` counts distinct this-run messages received.
pub async fn run(
    spec: SubSpec,
    mut conn: Conn,
    mut ctl: watch::Receiver<Phase>,
    subscribed: oneshot::Sender<Result<(), String>>,
    unique: Arc<AtomicU64>,
    counters: Arc<Counters>,
) -> (SubResult, Option<Conn>) {
    let mut r = SubResult {
        received_total: 0,
        received_win: 0,
        foreign: 0,
        stale: 0,
        e2e_hist: new_hist(),
        trackers: HashMap::new(),
        errors: Errors::default(),
        stayed_connected: false,
    };
    let mut subscribed = Some(subscribed);
    let fail = |subscribed: &mut Option<oneshot::Sender<Result<(), String>>>, msg: String| {
        if let Some(tx) = subscribed.take() {
            let _ = tx.send(Err(msg));
        }
    };
    let pacer = match Pacer::new() {
        Ok(p) => p,
        Err(e) => {
            fail(&mut subscribed, format!("timerfd: {e}"));
            return (r, Some(conn));
        }
    };
    let version = conn.version;
    const SUB_PID: u16 = 1;
    codec::encode_subscribe(&mut conn.wbuf, version, SUB_PID, &spec.filter, spec.qos);
    let ka_ns = spec.keepalive as u64 * 500_000_000;
    let mut win = Window::NEVER;
    let mut qos2_pending: HashSet<u16> = HashSet::new();
    let mut uniq_local = 0u64;

    loop {
        if let Err(e) = conn.flush() {
            let k = format!("subscriber write: {}", io_kind(&e));
            fail(&mut subscribed, k.clone());
            r.errors.add(k);
            return (r, None);
        }
        let mut interest = Interest::READABLE;
        if conn.want_write() {
            interest |= Interest::WRITABLE;
        }
        let deadline = if ka_ns > 0 && !conn.want_write() {
            conn.last_write + ka_ns
        } else {
            u64::MAX
        };
        let ev = tokio::select! {
            rd = conn.stream.ready(interest) => Ev::Ready(rd),
            t = pacer.sleep_until(deadline), if deadline != u64::MAX => Ev::Timer(t),
            c = ctl.changed() => Ev::Ctl(c.is_ok()),
        };
        match ev {
            Ev::Ready(Err(e)) | Ev::Timer(Err(e)) => {
                let k = format!("subscriber: {e}");
                fail(&mut subscribed, k.clone());
                r.errors.add(k);
                return (r, None);
            }
            Ev::Timer(Ok(())) => {
                if !conn.want_write() && mono_ns() >= conn.last_write + ka_ns {
                    codec::encode_pingreq(&mut conn.wbuf);
                }
            }
            Ev::Ctl(alive) => {
                let phase = *ctl.borrow_and_update();
                match phase {
                    Phase::Run(tl) if alive => {
                        win = Window {
                            t0: tl.t0,
                            t1: tl.t1,
                        };
                    }
                    Phase::Waiting if alive => {}
                    _ => {
                        r.stayed_connected = true;
                        return (r, Some(conn));
                    }
                }
            }
            Ev::Ready(Ok(ready)) => {
                if !(ready.is_readable() || ready.is_read_closed()) {
                    continue;
                }
                match conn.read_some() {
                    Ok(true) => {}
                    Ok(false) => {
                        fail(&mut subscribed, "connection closed by broker".into());
                        r.errors.add("subscriber: connection closed by broker");
                        return (r, None);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        let k = format!("subscriber read: {}", io_kind(&e));
                        fail(&mut subscribed, k.clone());
                        r.errors.add(k);
                        return (r, None);
                    }
                }
                let now = mono_ns();
                let mut got = 0u64;
                let mut fatal = None;
                loop {
                    let (pkt, n) = match codec::parse(&conn.rbuf[conn.rstart..conn.rend], version) {
                        Ok(Some(x)) => x,
                        Ok(None) => break,
                        Err(e) => {
                            fatal = Some(format!("subscriber: {e}"));
                            break;
                        }
                    };
                    match pkt {
                        Packet::Publish {
                            qos, pid, payload, ..
                        } => {
                            let deliver =
                                codec::answer_publish(&mut conn.wbuf, qos, pid, &mut qos2_pending);
                            if deliver {
                                got += 1;
                                r.received_total += 1;
                                if win.contains(now) {
                                    r.received_win += 1;
                                }
                                match stats::read_header(payload) {
                                    Some(h) if h.seq < MAX_SEQ => {
                                        if spec.run_id.is_some_and(|id| id != h.run_id) {
                                            r.stale += 1;
                                        } else {
                                            let t = r
                                                .trackers
                                                .entry((h.run_id, h.publisher))
                                                .or_default();
                                            if t.record(h.seq) {
                                                uniq_local += 1;
                                            }
                                            if win.contains(h.ts) {
                                                record_ns(
                                                    &mut r.e2e_hist,
                                                    now.saturating_sub(h.ts),
                                                );
                                            }
                                        }
                                    }
                                    _ => r.foreign += 1,
                                }
                            }
                        }
                        Packet::PubRel { pid } => {
                            qos2_pending.remove(&pid);
                            codec::encode_ack(&mut conn.wbuf, codec::PUBCOMP, pid);
                        }
                        Packet::SubAck {
                            pid: SUB_PID,
                            codes,
                        } => {
                            let granted = codes.first().copied().unwrap_or(0x80);
                            if let Some(tx) = subscribed.take() {
                                let res = if granted >= 0x80 {
                                    Err(format!(
                                        "SUBACK refused '{}' (code 0x{granted:02x})",
                                        spec.filter
                                    ))
                                } else {
                                    Ok(())
                                };
                                if res.is_err() {
                                    r.errors.add("subscriber: SUBACK failure");
                                }
                                let _ = tx.send(res);
                            }
                        }
                        Packet::PingResp => {}
                        Packet::Disconnect { reason } => {
                            fatal = Some(format!(
                                "subscriber: broker sent DISCONNECT (reason 0x{reason:02x})"
                            ));
                        }
                        other => r.errors.add(format!("subscriber: unexpected {other:?}")),
                    }
                    conn.rstart += n;
                    if fatal.is_some() {
                        break;
                    }
                }
                counters.add(&counters.received, got);
                unique.store(uniq_local, Ordering::Relaxed);
                if let Some(k) = fatal {
                    fail(&mut subscribed, k.clone());
                    r.errors.add(k);
                    return (r, None);
                }
            }
        }
    }
}
