//! The local connection registry: which client ids have a connection on this
//! node, and the channel to each. It is the apply layer's [`EventSink`]:
//! deliveries and takeover notices for a session epoch reach the connection
//! that holds that epoch (or those still waiting to learn their epoch, which
//! filter them themselves).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use raftmq_raft::rpc::RemoteTarget;
use raftmq_raft::{ApplyEvent, Delivery, EventSink, Fanout, KickReason, Message};
use rustc_hash::FxHasher;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::codec::Protocol;
use crate::mailbox;

/// What a connection task receives besides its socket.
#[derive(Debug)]
pub enum ConnEvent {
    /// A message for the session of `epoch` (None: whatever epoch is current,
    /// used for QoS 0 routed outside the log).
    Deliver(Option<u64>, Delivery),
    /// Apply ended the connection of `epoch`: taken over by a newer
    /// connection, or disconnected by an operator.
    Kick(u64, KickReason),
    /// The registration of `epoch` was applied (sent to connections that
    /// registered during a netsplit: their session is now the log's).
    Registered(u64),
    /// An operator disconnected the client.
    Disconnect,
    /// `session show` asks how many deliveries are in flight (sent, not
    /// yet acknowledged) and waiting for room in the window.
    Describe(oneshot::Sender<Inflight>),
}

/// A connection's outgoing window as `session show` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Inflight {
    /// Sent and not yet acknowledged.
    pub inflight: usize,
    /// Waiting for room in the window.
    pub waiting: usize,
}

/// What is known about a connection from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: Option<SocketAddr>,
    pub protocol: Protocol,
    pub clean_start: bool,
}

impl Peer {
    /// The protocol as users name it.
    pub fn protocol_name(&self) -> &'static str {
        match self.protocol {
            Protocol::V31 => "3.1",
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5.0",
        }
    }
}

struct Slot {
    conn_id: u64,
    /// 0 until the registration is applied.
    epoch: u64,
    peer: Peer,
    tx: mailbox::Sender<ConnEvent>,
}

pub struct Registry {
    /// This node's id: registrations applied for it with no connection
    /// holding them are orphans.
    node_id: u64,
    clients: RwLock<HashMap<Arc<str>, Vec<Slot>>>,
    next_conn: AtomicU64,
    /// Queue sequences a finished connection had sent but not seen acked, so
    /// that the next connection of the session resends them with DUP set.
    sent_unacked: parking_lot::Mutex<HashMap<Arc<str>, std::collections::HashSet<u64>>>,
    orphans: mpsc::UnboundedSender<Orphan>,
    orphans_rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Orphan>>>,
}

/// A registration applied for this node that no connection holds (its
/// CONNECT gave up with the outcome unknown): its session must be ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub client_id: Arc<str>,
    pub epoch: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(0)
    }
}

impl Registry {
    pub fn new(node_id: u64) -> Registry {
        let (orphans, rx) = mpsc::unbounded_channel();
        Registry {
            node_id,
            clients: RwLock::default(),
            next_conn: AtomicU64::default(),
            sent_unacked: Default::default(),
            orphans,
            orphans_rx: parking_lot::Mutex::new(Some(rx)),
        }
    }

    /// The orphaned registrations, for the one task that ends them.
    pub fn take_orphans(&self) -> Option<mpsc::UnboundedReceiver<Orphan>> {
        self.orphans_rx.lock().take()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a connection for `client` whose registration is in progress.
    pub fn attach(
        &self,
        client: &Arc<str>,
        conn_id: u64,
        peer: Peer,
        tx: mailbox::Sender<ConnEvent>,
    ) {
        self.clients
            .write()
            .entry(client.clone())
            // One connection per client id is the rule; a takeover grows it.
            .or_insert_with(|| Vec::with_capacity(1))
            .push(Slot {
                conn_id,
                epoch: 0,
                peer,
                tx,
            });
    }

    /// The newest local connection of `client`: its peer, and a receiver
    /// for its window (None if the connection has ended).
    pub fn describe(&self, client: &str) -> Option<(Peer, Option<oneshot::Receiver<Inflight>>)> {
        let map = self.clients.read();
        let s = map.get(client)?.last()?;
        let (tx, rx) = oneshot::channel();
        let asked = s.tx.send(ConnEvent::Describe(tx)).is_ok();
        Some((s.peer, asked.then_some(rx)))
    }

    pub fn set_epoch(&self, client: &str, conn_id: u64, epoch: u64) {
        if let Some(slots) = self.clients.write().get_mut(client) {
            for s in slots.iter_mut().filter(|s| s.conn_id == conn_id) {
                s.epoch = epoch;
            }
        }
    }

    pub fn detach(&self, client: &str, conn_id: u64) {
        let mut map = self.clients.write();
        if let Some(slots) = map.get_mut(client) {
            slots.retain(|s| s.conn_id != conn_id);
            if slots.is_empty() {
                map.remove(client);
            }
        }
    }

    pub fn remember_sent(&self, client: &Arc<str>, seqs: std::collections::HashSet<u64>) {
        self.sent_unacked.lock().insert(client.clone(), seqs);
    }

    /// What the previous connection of `client` on this node had sent but
    /// not seen acked. `None` = unknown (the node restarted, or the session
    /// was elsewhere): the caller must assume every queued item may have been
    /// sent, and set DUP.
    pub fn take_sent(&self, client: &str) -> Option<std::collections::HashSet<u64>> {
        self.sent_unacked.lock().remove(client)
    }

    pub fn is_local(&self, client: &str) -> bool {
        self.clients.read().contains_key(client)
    }

    pub fn connected(&self) -> usize {
        self.clients.read().len()
    }

    /// Delivers outside the log (QoS 0) to the newest local connection of
    /// `client`. Returns false if there is none.
    pub fn deliver_local(&self, client: &str, d: Delivery) -> bool {
        let map = self.clients.read();
        match map.get(client).and_then(|v| v.last()) {
            Some(s) => s.tx.send(ConnEvent::Deliver(None, d)).is_ok(),
            None => false,
        }
    }

    /// Asks every local connection to disconnect; returns how many clients.
    pub fn disconnect_all(&self) -> usize {
        let map = self.clients.read();
        for s in map.values().flatten() {
            let _ = s.tx.send(ConnEvent::Disconnect);
        }
        map.len()
    }
}

impl EventSink for Registry {
    fn deliver_remote(&self, msg: Arc<Message>, targets: Vec<RemoteTarget>) {
        for t in targets {
            let d = Delivery::live(msg.clone(), 0, t.retain, t.sub_ids);
            self.deliver_local(&t.client_id, d);
        }
    }

    /// Apply hands over whole batches (`emit_all`); a single event is a
    /// batch of one.
    fn emit(&self, ev: ApplyEvent) {
        self.emit_all(vec![ev]);
    }

    /// A batch's events grouped by connection, each group sent under one
    /// lock with one wake-up: a fan-out batch holds many events for every
    /// subscriber's connection, and its connection task runs meanwhile on
    /// another thread. Each connection's events keep their order.
    ///
    /// Consecutive fan-outs to the same live sessions (one topic's messages)
    /// go out session by session: each session's connection is looked up
    /// once for the run, and gets the run's messages in order.
    fn emit_all(&self, events: Vec<ApplyEvent>) {
        let map = self.clients.read();
        let mut groups = Groups::default();
        let mut events = events.into_iter().peekable();
        let mut run = Vec::new();
        while let Some(ev) = events.next() {
            let ApplyEvent::Fanout(first) = ev else {
                self.route(&map, ev, &mut groups);
                continue;
            };
            run.clear();
            run.push(first);
            while let Some(ApplyEvent::Fanout(next)) =
                events.next_if(|e| matches!(e, ApplyEvent::Fanout(f) if run[0].same_sessions(f)))
            {
                run.push(next);
            }
            Self::fan_out(&map, &run, &mut groups);
        }
        groups.send();
    }
}

/// `emit_all`'s events by connection, in the order each connection was
/// first given one.
#[derive(Default)]
struct Groups<'a> {
    /// Connection ids are this node's own: a cheap hash is enough.
    by_conn: HashMap<u64, usize, BuildHasherDefault<FxHasher>>,
    groups: Vec<(&'a mailbox::Sender<ConnEvent>, Vec<ConnEvent>)>,
}

impl<'a> Groups<'a> {
    /// The events for `slot`'s connection so far, with room for `more`.
    fn of(&mut self, slot: &'a Slot, more: usize) -> &mut Vec<ConnEvent> {
        let i = *self.by_conn.entry(slot.conn_id).or_insert_with(|| {
            self.groups.push((&slot.tx, Vec::new()));
            self.groups.len() - 1
        });
        let group = &mut self.groups[i].1;
        group.reserve(more);
        group
    }

    /// Hands each connection its events.
    fn send(self) {
        for (tx, evs) in self.groups {
            let _ = tx.send_all(evs);
        }
    }
}

impl Registry {
    /// The connection a delivery for session `epoch` of `client_id` goes
    /// to: the one holding that epoch, else the newest one still waiting to
    /// learn its epoch (it filters itself).
    fn holder<'a>(
        map: &'a HashMap<Arc<str>, Vec<Slot>>,
        client_id: &str,
        epoch: u64,
    ) -> Option<&'a Slot> {
        let slots = map.get(client_id)?;
        slots
            .iter()
            .find(|s| s.epoch == epoch)
            .or_else(|| slots.iter().rev().find(|s| s.epoch == 0))
    }

    /// A run of fan-outs to the same sessions (`Fanout::same_sessions`),
    /// session by session: each session's connection is looked up once and
    /// given the run's messages in order.
    fn fan_out<'a>(map: &'a HashMap<Arc<str>, Vec<Slot>>, run: &[Fanout], groups: &mut Groups<'a>) {
        let Some(first) = run.first() else {
            return;
        };
        for (client_id, epoch, t) in first.targets() {
            if let Some(slot) = Self::holder(map, client_id, epoch) {
                groups.of(slot, run.len()).extend(
                    run.iter()
                        .map(|f| ConnEvent::Deliver(Some(epoch), f.delivery(t))),
                );
            }
        }
    }

    /// Which connection (or connections) an apply event is for, added to
    /// that connection's group as the connection receives it; a
    /// registration no connection holds is reported as an orphan.
    fn route<'a>(
        &self,
        map: &'a HashMap<Arc<str>, Vec<Slot>>,
        ev: ApplyEvent,
        groups: &mut Groups<'a>,
    ) {
        let mut send = |s: &'a Slot, ce: ConnEvent| groups.of(s, 1).push(ce);
        match ev {
            ApplyEvent::Deliver {
                client_id,
                epoch,
                delivery,
            } => {
                if let Some(s) = Self::holder(map, &client_id, epoch) {
                    send(s, ConnEvent::Deliver(Some(epoch), delivery));
                }
            }
            // `emit_all` gathers fan-outs into runs; a lone one is a run of one.
            ApplyEvent::Fanout(f) => Self::fan_out(map, std::slice::from_ref(&f), groups),
            ApplyEvent::Registered {
                client_id,
                epoch,
                node,
            } => {
                let slots = map.get(&client_id);
                let holder = slots.and_then(|v| v.iter().find(|s| s.epoch == epoch));
                let waiting = slots.is_some_and(|v| v.iter().any(|s| s.epoch == 0));
                if let Some(s) = holder {
                    send(s, ConnEvent::Registered(epoch));
                } else if node == self.node_id && !waiting {
                    let _ = self.orphans.send(Orphan { client_id, epoch });
                }
            }
            ApplyEvent::Kick {
                client_id,
                epoch,
                why,
            } => {
                if let Some(slots) = map.get(&client_id) {
                    // Also to connections still waiting to learn their
                    // epoch: the kicked registration may be theirs, applied
                    // before they recorded it here (they filter themselves).
                    // Missing it would leave a superseded connection live.
                    for s in slots.iter().filter(|s| s.epoch == epoch || s.epoch == 0) {
                        send(s, ConnEvent::Kick(epoch, why));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_raft::trie::Target;

    const PEER: Peer = Peer {
        addr: None,
        protocol: Protocol::V311,
        clean_start: true,
    };

    fn kick(r: &Registry, client: &str, epoch: u64) {
        r.emit(ApplyEvent::Kick {
            client_id: client.into(),
            epoch,
            why: KickReason::TakenOver,
        });
    }

    #[test]
    fn a_takeover_applied_before_the_connection_learns_its_epoch_still_reaches_it() {
        let r = Registry::default();
        let (tx, mut rx) = mailbox::channel();
        let c: Arc<str> = "dev".into();
        r.attach(&c, r.next_conn_id(), PEER, tx);
        kick(&r, "dev", 42);
        assert!(matches!(
            rx.try_recv(),
            Ok(ConnEvent::Kick(42, KickReason::TakenOver))
        ));
    }

    #[test]
    fn a_takeover_reaches_only_the_connection_holding_that_epoch() {
        let r = Registry::default();
        let c: Arc<str> = "dev".into();
        let (old_tx, mut old_rx) = mailbox::channel();
        let (new_tx, mut new_rx) = mailbox::channel();
        let (old, new) = (r.next_conn_id(), r.next_conn_id());
        r.attach(&c, old, PEER, old_tx);
        r.attach(&c, new, PEER, new_tx);
        r.set_epoch("dev", old, 7);
        r.set_epoch("dev", new, 9);
        kick(&r, "dev", 7);
        assert!(matches!(
            old_rx.try_recv(),
            Ok(ConnEvent::Kick(7, KickReason::TakenOver))
        ));
        assert!(new_rx.try_recv().is_err());
    }

    #[test]
    fn a_batchs_events_reach_each_connection_in_the_order_applied() {
        let r = Registry::default();
        let mut rxs = Vec::new();
        for (client, epoch) in [("a", 1), ("b", 2)] {
            let (tx, rx) = mailbox::channel();
            let id = r.next_conn_id();
            r.attach(&client.into(), id, PEER, tx);
            r.set_epoch(client, id, epoch);
            rxs.push(rx);
        }
        let deliver = |client: &str, epoch: u64, n: u64| ApplyEvent::Deliver {
            client_id: client.into(),
            epoch,
            delivery: Delivery {
                seq: Some(n),
                ..Delivery::live(
                    Arc::new(Message::system("t".into(), "".into(), false, 0)),
                    1,
                    false,
                    vec![],
                )
            },
        };
        // Interleaved as a fan-out applies them: message-major.
        let mut batch = Vec::new();
        for n in 0..3 {
            batch.push(deliver("a", 1, n));
            batch.push(deliver("b", 2, n));
        }
        batch.push(ApplyEvent::Kick {
            client_id: "a".into(),
            epoch: 1,
            why: KickReason::TakenOver,
        });
        r.emit_all(batch);
        let seen = |rx: &mut mailbox::Receiver<ConnEvent>| -> Vec<String> {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|ev| match ev {
                    ConnEvent::Deliver(_, d) => format!("deliver {}", d.seq.unwrap_or(99)),
                    ConnEvent::Kick(e, _) => format!("kick {e}"),
                    other => format!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            seen(&mut rxs[0]),
            ["deliver 0", "deliver 1", "deliver 2", "kick 1"]
        );
        assert_eq!(seen(&mut rxs[1]), ["deliver 0", "deliver 1", "deliver 2"]);
    }

    #[test]
    fn a_run_of_fanouts_reaches_each_sessions_connection_in_message_order() {
        let r = Registry::default();
        let mut rxs = Vec::new();
        // c's connection holds a newer epoch than the fan-outs name.
        for (client, epoch) in [("a", 1), ("b", 2), ("c", 4)] {
            let (tx, rx) = mailbox::channel();
            let id = r.next_conn_id();
            r.attach(&client.into(), id, PEER, tx);
            r.set_epoch(client, id, epoch);
            rxs.push(rx);
        }
        let target = |qos| Target {
            qos,
            ..Target::default()
        };
        let targets: raftmq_raft::routes::Targets = vec![
            ("a".into(), target(1)),
            ("b".into(), target(0)),
            ("c".into(), target(1)),
        ]
        .into();
        let fanout = |topic: &str, live: Vec<(u32, u64)>| {
            let m = Arc::new(Message {
                qos: 1,
                ..Message::system(topic.into(), "".into(), false, 0)
            });
            ApplyEvent::Fanout(Fanout::new(m, targets.clone(), live))
        };
        let all = vec![(0, 1), (1, 2), (2, 3)];
        r.emit_all(vec![
            fanout("m0", all.clone()),
            fanout("m1", all),
            // b went offline: a run of its own.
            fanout("m2", vec![(0, 1), (2, 3)]),
            ApplyEvent::Kick {
                client_id: "a".into(),
                epoch: 1,
                why: KickReason::TakenOver,
            },
        ]);
        let seen = |rx: &mut mailbox::Receiver<ConnEvent>| -> Vec<String> {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|ev| match ev {
                    ConnEvent::Deliver(e, d) => {
                        format!("{} qos {} epoch {e:?}", d.msg.topic, d.qos)
                    }
                    ConnEvent::Kick(e, _) => format!("kick {e}"),
                    other => format!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            seen(&mut rxs[0]),
            [
                "m0 qos 1 epoch Some(1)",
                "m1 qos 1 epoch Some(1)",
                "m2 qos 1 epoch Some(1)",
                "kick 1"
            ]
        );
        assert_eq!(
            seen(&mut rxs[1]),
            ["m0 qos 0 epoch Some(2)", "m1 qos 0 epoch Some(2)"]
        );
        assert!(seen(&mut rxs[2]).is_empty());
    }
}
