//! The deterministic MQTT state: sessions, subscriptions, retained messages,
//! per-session queues and inbound QoS 2 packet ids.
//!
//! `apply` turns committed commands into (a) one RocksDB batch of state
//! writes, (b) a result per command for the proposer, and (c) delivery events
//! for connections on this node. It never reads a clock or a random source:
//! times come inside commands, and choices (shared subscription members) are
//! derived from the message id. The in-memory maps are indexes, rebuilt from
//! RocksDB by [`MqttState::open`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use raftmq_storage::keys::{key, str_part, take_str};
use raftmq_storage::{StateBatch, Store, Table};
use serde::{Deserialize, Serialize};

use crate::command::*;
use crate::dedup::Dedup;
use crate::error::{decode, encode, RaftError};
use crate::retain::RetainedIndex;
use crate::trie::{split_shared, Target, Trie};
use crate::types::{LogId, NodeId};

/// One state row in a snapshot: (table index in `Table::ALL`, key, value).
pub type Row = (u8, Vec<u8>, Vec<u8>);

/// What apply tells the connections of this node.
#[derive(Debug, Clone)]
pub enum ApplyEvent {
    /// Deliver to the connection of `client_id` if its session epoch is `epoch`.
    Deliver {
        client_id: Arc<str>,
        epoch: u64,
        delivery: Delivery,
    },
    /// The connection of this session epoch was taken over: close it (MQTT 5
    /// DISCONNECT 0x8E).
    Kick { client_id: Arc<str>, epoch: u64 },
}

/// Receives apply events. Implemented by the broker's session registry; must
/// not block.
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, ev: ApplyEvent);
    /// QoS 0 routed here by another node (outside the log).
    fn deliver_remote(&self, _msg: Arc<Message>, _targets: Vec<crate::rpc::RemoteTarget>) {}
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRec {
    pub epoch: u64,
    /// The node the client is connected to, if connected.
    pub node: Option<NodeId>,
    pub expiry_s: u32,
    pub will: Option<Will>,
    pub connected_ms: u64,
    pub disconnected_ms: Option<u64>,
    /// When a delayed will fires.
    pub will_at_ms: Option<u64>,
    /// Next queue sequence number.
    pub next_seq: u64,
}

impl SessionRec {
    fn persistent(&self) -> bool {
        self.expiry_s > 0
    }
    fn expires_at(&self) -> Option<u64> {
        match (self.disconnected_ms, self.expiry_s) {
            (Some(_), NEVER) => None,
            (Some(d), s) => Some(d + s as u64 * 1000),
            (None, _) => None,
        }
    }
    fn deadline(&self) -> Option<u64> {
        match (self.will_at_ms, self.expires_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A queue item as stored: the message is referenced by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueueRec {
    msg_id: u64,
    qos: u8,
    retain: bool,
    sub_ids: Vec<u32>,
    received: bool,
}

#[derive(Debug, Clone)]
struct QItem {
    msg_id: u64,
    msg: Arc<Message>,
    qos: u8,
    retain: bool,
    sub_ids: Vec<u32>,
    received: bool,
}

impl QItem {
    fn delivery(&self, seq: u64) -> Delivery {
        Delivery {
            seq: Some(seq),
            msg: self.msg.clone(),
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            received: self.received,
        }
    }
    fn rec(&self) -> QueueRec {
        QueueRec {
            msg_id: self.msg_id,
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            received: self.received,
        }
    }
}

/// Counters of what apply did, for metrics.
#[derive(Debug, Default, Clone)]
pub struct ApplyStats {
    pub dropped_queue_full: u64,
    pub wills_published: u64,
    pub sessions_expired: u64,
    /// Commands applied before and skipped (retried proposals).
    pub duplicates: u64,
}

/// A read-only view for the broker: sessions and retained messages.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub client_id: String,
    pub epoch: u64,
    pub node: Option<NodeId>,
    pub expiry_s: u32,
    pub queued: usize,
    pub subscriptions: Vec<String>,
}

pub struct MqttState {
    store: Store,
    sink: Arc<dyn EventSink>,
    sessions: HashMap<Arc<str>, SessionRec>,
    /// Shared with connections, which route QoS 0 by it directly.
    trie: Arc<RwLock<Trie>>,
    subs_by_client: HashMap<Arc<str>, BTreeMap<String, SubOpts>>,
    retained: RetainedIndex,
    queues: HashMap<Arc<str>, BTreeMap<u64, QItem>>,
    msg_refs: HashMap<u64, u32>,
    /// Inbound QoS 2 packet ids awaiting PUBREL, per publisher.
    qos2_in: HashMap<Arc<str>, HashSet<u16>>,
    timers: BTreeSet<(u64, Arc<str>)>,
    timer_of: HashMap<Arc<str>, u64>,
    pub settings: ClusterSettings,
    pub last_applied: Option<LogId>,
    pub membership: openraft::StoredMembership<NodeId, crate::types::NodeInfo>,
    pub stats: ApplyStats,
    /// Per origin node: the command ids applied (duplicate guard).
    dedup: Dedup,
}

/// The per-batch scratch of apply.
struct Ctx {
    batch: StateBatch,
    dirty: HashSet<Arc<str>>,
}

/// splitmix64: spreads message ids (log index << 16 | position, so their low
/// bits are often all zero) evenly over shared group members, the same way
/// on every replica.
fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn queue_key(client: &str, seq: u64) -> Vec<u8> {
    key(&[&str_part(client), &seq.to_be_bytes()])
}
fn sub_key(client: &str, filter: &str) -> Vec<u8> {
    key(&[&str_part(client), filter.as_bytes()])
}
fn qos2_key(client: &str, pid: u16) -> Vec<u8> {
    key(&[&str_part(client), &pid.to_be_bytes()])
}
fn msg_key(id: u64) -> Vec<u8> {
    key(&[&id.to_be_bytes()])
}
fn plain_key(s: &str) -> Vec<u8> {
    key(&[s.as_bytes()])
}
fn strip_group(k: &[u8]) -> &[u8] {
    k.get(2..).unwrap_or(&[])
}

const META_APPLIED: &str = "last_applied";
const META_MEMBERSHIP: &str = "membership";
const META_SETTINGS: &str = "settings";
const META_DEDUP: &str = "dedup";

impl MqttState {
    /// Loads the state from RocksDB and rebuilds every index.
    pub fn open(store: Store, sink: Arc<dyn EventSink>) -> Result<MqttState, RaftError> {
        let mut st = MqttState {
            store,
            sink,
            sessions: HashMap::new(),
            trie: Arc::new(RwLock::new(Trie::default())),
            subs_by_client: HashMap::new(),
            retained: RetainedIndex::default(),
            queues: HashMap::new(),
            msg_refs: HashMap::new(),
            qos2_in: HashMap::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
            settings: ClusterSettings::default(),
            last_applied: None,
            membership: Default::default(),
            stats: ApplyStats::default(),
            dedup: Dedup::new(),
        };
        st.load()?;
        Ok(st)
    }

    fn load(&mut self) -> Result<(), RaftError> {
        self.sessions.clear();
        *self.trie.write() = Trie::default();
        self.subs_by_client.clear();
        self.retained = RetainedIndex::default();
        self.queues.clear();
        self.msg_refs.clear();
        self.qos2_in.clear();
        self.timers.clear();
        self.timer_of.clear();
        let store = self.store.clone();
        let get_meta = |name: &str| store.get(Table::Meta, &plain_key(name));
        // Stored as the `Option<LogId>` it is (see `apply_entries`); decoding
        // it as a bare `LogId` would misread every field.
        self.last_applied = match get_meta(META_APPLIED)? {
            Some(b) => decode::<Option<LogId>>(&b)?,
            None => None,
        };
        self.membership = get_meta(META_MEMBERSHIP)?
            .map(|b| decode(&b))
            .transpose()?
            .unwrap_or_default();
        self.settings = get_meta(META_SETTINGS)?
            .map(|b| decode(&b))
            .transpose()?
            .unwrap_or_default();
        self.dedup = get_meta(META_DEDUP)?
            .map(|b| decode(&b))
            .transpose()?
            .unwrap_or_default();

        let mut sessions = Vec::new();
        store.for_each(Table::Sessions, |k, v| {
            let c = std::str::from_utf8(strip_group(k))
                .unwrap_or_default()
                .to_string();
            sessions.push((c, v.to_vec()));
            Ok(())
        })?;
        for (c, v) in sessions {
            let rec: SessionRec = decode(&v)?;
            let c: Arc<str> = Arc::from(c);
            if let Some(n) = rec.node {
                self.trie.write().set_location(&c, Some(n));
            }
            self.sessions.insert(c.clone(), rec);
            self.reschedule(&c);
        }
        let mut subs = Vec::new();
        store.for_each(Table::Subscriptions, |k, v| {
            if let Some((c, f)) = take_str(strip_group(k)) {
                subs.push((
                    c.to_string(),
                    String::from_utf8_lossy(f).to_string(),
                    v.to_vec(),
                ));
            }
            Ok(())
        })?;
        for (c, f, v) in subs {
            let opts: SubOpts = decode(&v)?;
            let c = self.intern(&c);
            self.trie.write().insert(&f, &c, opts);
            self.subs_by_client.entry(c).or_default().insert(f, opts);
        }
        let mut rows = Vec::new();
        store.for_each(Table::Retained, |k, v| {
            rows.push((
                String::from_utf8_lossy(strip_group(k)).to_string(),
                v.to_vec(),
            ));
            Ok(())
        })?;
        for (t, v) in rows {
            let m: Message = decode(&v)?;
            debug_assert_eq!(m.topic, t);
            self.retained.insert(Arc::new(m));
        }
        let mut msgs: HashMap<u64, Arc<Message>> = HashMap::new();
        let mut rows = Vec::new();
        store.for_each(Table::Messages, |k, v| {
            if let Ok(b) = <[u8; 8]>::try_from(strip_group(k)) {
                rows.push((u64::from_be_bytes(b), v.to_vec()));
            }
            Ok(())
        })?;
        for (id, v) in rows {
            msgs.insert(id, Arc::new(decode(&v)?));
        }
        let mut rows = Vec::new();
        store.for_each(Table::Queues, |k, v| {
            if let Some((c, rest)) = take_str(strip_group(k)) {
                if let Ok(b) = <[u8; 8]>::try_from(rest) {
                    rows.push((c.to_string(), u64::from_be_bytes(b), v.to_vec()));
                }
            }
            Ok(())
        })?;
        for (c, seq, v) in rows {
            let r: QueueRec = decode(&v)?;
            let Some(msg) = msgs.get(&r.msg_id) else {
                return Err(RaftError::Encode(format!(
                    "queue item {c}/{seq} references missing message {}",
                    r.msg_id
                )));
            };
            *self.msg_refs.entry(r.msg_id).or_default() += 1;
            let c = self.intern(&c);
            self.queues.entry(c).or_default().insert(
                seq,
                QItem {
                    msg_id: r.msg_id,
                    msg: msg.clone(),
                    qos: r.qos,
                    retain: r.retain,
                    sub_ids: r.sub_ids,
                    received: r.received,
                },
            );
        }
        let mut rows = Vec::new();
        store.for_each(Table::Qos2In, |k, _| {
            if let Some((c, rest)) = take_str(strip_group(k)) {
                if let Ok(b) = <[u8; 2]>::try_from(rest) {
                    rows.push((c.to_string(), u16::from_be_bytes(b)));
                }
            }
            Ok(())
        })?;
        for (c, pid) in rows {
            let c = self.intern(&c);
            self.qos2_in.entry(c).or_default().insert(pid);
        }
        Ok(())
    }

    /// The shared subscription index, for QoS 0 routing.
    pub fn trie(&self) -> Arc<RwLock<Trie>> {
        self.trie.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The earliest pending will or expiry deadline (ms), for the ticker.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.iter().next().map(|(d, _)| *d)
    }

    /// Sessions whose client is connected to `node`.
    pub fn sessions_on(&self, node: NodeId) -> usize {
        self.sessions
            .values()
            .filter(|r| r.node == Some(node))
            .count()
    }

    /// No sessions, subscriptions, retained messages or queued messages.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.subs_by_client.is_empty()
            && self.retained_count() == 0
            && self.msg_refs.is_empty()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }
    pub fn subscription_count(&self) -> usize {
        self.trie.read().len()
    }
    pub fn queued_count(&self) -> usize {
        self.queues.values().map(|q| q.len()).sum()
    }

    pub fn session_info(&self, filter: Option<&str>) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .sessions
            .iter()
            .filter(|(c, _)| filter.is_none_or(|f| f == &***c))
            .map(|(c, r)| SessionInfo {
                client_id: c.to_string(),
                epoch: r.epoch,
                node: r.node,
                expiry_s: r.expiry_s,
                queued: self.queues.get(c).map_or(0, |q| q.len()),
                subscriptions: self
                    .subs_by_client
                    .get(c)
                    .map(|s| s.keys().cloned().collect())
                    .unwrap_or_default(),
            })
            .collect();
        v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        v
    }

    pub fn retained_list(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained.matching(filter)
    }

    fn intern(&self, c: &str) -> Arc<str> {
        match self.sessions.get_key_value(c) {
            Some((k, _)) => k.clone(),
            None => Arc::from(c),
        }
    }

    fn reschedule(&mut self, c: &Arc<str>) {
        if let Some(old) = self.timer_of.remove(c) {
            self.timers.remove(&(old, c.clone()));
        }
        if let Some(d) = self.sessions.get(c).and_then(|r| r.deadline()) {
            self.timers.insert((d, c.clone()));
            self.timer_of.insert(c.clone(), d);
        }
    }

    /// Applies a batch of committed entries: one RocksDB batch for all.
    pub fn apply_entries(
        &mut self,
        entries: Vec<crate::types::Entry>,
    ) -> Result<Vec<Response>, RaftError> {
        let mut ctx = Ctx {
            batch: StateBatch::default(),
            dirty: HashSet::new(),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let index = entry.log_id.index;
            let mut resp = Response::default();
            match entry.payload {
                openraft::EntryPayload::Blank => {}
                openraft::EntryPayload::Normal(req) => {
                    resp.results.reserve(req.cmds.len());
                    // Taken out for the batch (apply_cmd borrows all of
                    // self) and put back after it.
                    let mut seen = self.dedup.remove(&req.origin).unwrap_or_default();
                    seen.raise_floor(req.floor);
                    for (pos, env) in req.cmds.into_iter().enumerate() {
                        let id = (index << 16) | (pos as u64 & 0xffff);
                        if env.seq != 0 && !seen.insert(env.seq) {
                            self.stats.duplicates += 1;
                            resp.results.push(CmdResult::Duplicate);
                            continue;
                        }
                        match self.apply_cmd(id, env.cmd, &mut ctx) {
                            Ok(r) => resp.results.push(r),
                            Err(e) => {
                                self.dedup.insert(req.origin, seen);
                                return Err(e);
                            }
                        }
                    }
                    self.dedup.insert(req.origin, seen);
                }
                openraft::EntryPayload::Membership(m) => {
                    self.membership = openraft::StoredMembership::new(Some(entry.log_id), m);
                    ctx.batch.put(
                        Table::Meta,
                        plain_key(META_MEMBERSHIP),
                        encode(&self.membership)?,
                    );
                }
            }
            self.last_applied = Some(entry.log_id);
            out.push(resp);
        }
        for c in ctx.dirty.drain() {
            match self.sessions.get(&c) {
                Some(r) => ctx.batch.put(Table::Sessions, plain_key(&c), encode(r)?),
                None => ctx.batch.delete(Table::Sessions, plain_key(&c)),
            }
        }
        ctx.batch.put(
            Table::Meta,
            plain_key(META_APPLIED),
            encode(&self.last_applied)?,
        );
        ctx.batch
            .put(Table::Meta, plain_key(META_DEDUP), encode(&self.dedup)?);
        self.store.write_state(ctx.batch)?;
        Ok(out)
    }

    fn apply_cmd(&mut self, id: u64, cmd: Command, ctx: &mut Ctx) -> Result<CmdResult, RaftError> {
        Ok(match cmd {
            Command::Register {
                client_id,
                node,
                clean_start,
                expiry_s,
                will,
                now_ms,
            } => self.register(
                id,
                client_id,
                node,
                clean_start,
                expiry_s,
                will,
                now_ms,
                ctx,
            )?,
            Command::Disconnect {
                client_id,
                epoch,
                publish_will,
                new_expiry_s,
                now_ms,
            } => {
                let c = self.intern(&client_id);
                match self.sessions.get(&c) {
                    Some(r) if r.epoch == epoch && r.node.is_some() => {
                        self.disconnect(id, &c, publish_will, new_expiry_s, now_ms, ctx)?;
                        CmdResult::Done
                    }
                    _ => CmdResult::Stale,
                }
            }
            Command::Subscribe {
                client_id,
                epoch,
                filters,
            } => self.subscribe(&client_id, epoch, filters, ctx)?,
            Command::Unsubscribe {
                client_id,
                epoch,
                filters,
            } => {
                let c = self.intern(&client_id);
                if self.sessions.get(&c).map(|r| r.epoch) != Some(epoch) {
                    return Ok(CmdResult::Stale);
                }
                let mut codes = Vec::with_capacity(filters.len());
                for f in filters {
                    let existed = self.trie.write().remove(&f, &c);
                    if let Some(m) = self.subs_by_client.get_mut(&c) {
                        m.remove(&f);
                    }
                    ctx.batch.delete(Table::Subscriptions, sub_key(&c, &f));
                    codes.push(if existed { 0x00 } else { 0x11 });
                }
                CmdResult::Unsubscribed { codes }
            }
            Command::Publish {
                client_id,
                packet_id,
                msg,
            } => {
                if msg.qos == 2 && packet_id != 0 {
                    let c = self.intern(&client_id);
                    if !self.qos2_in.entry(c.clone()).or_default().insert(packet_id) {
                        return Ok(CmdResult::Published {
                            duplicate: true,
                            matched: 0,
                        });
                    }
                    ctx.batch
                        .put(Table::Qos2In, qos2_key(&c, packet_id), Vec::new());
                }
                let matched = self.publish(id, msg, ctx)?;
                CmdResult::Published {
                    duplicate: false,
                    matched,
                }
            }
            Command::Release {
                client_id,
                packet_id,
            } => {
                let c = self.intern(&client_id);
                let found = match self.qos2_in.get_mut(&c) {
                    Some(ids) => {
                        let found = ids.remove(&packet_id);
                        if ids.is_empty() {
                            self.qos2_in.remove(&c);
                        }
                        found
                    }
                    None => false,
                };
                if found {
                    ctx.batch.delete(Table::Qos2In, qos2_key(&c, packet_id));
                }
                CmdResult::Released { found }
            }
            Command::Ack {
                client_id,
                epoch,
                seqs,
            } => {
                let c = self.intern(&client_id);
                if self.sessions.get(&c).map(|r| r.epoch) != Some(epoch) {
                    return Ok(CmdResult::Stale);
                }
                for seq in seqs {
                    self.dequeue(&c, seq, ctx);
                }
                CmdResult::Done
            }
            Command::Received {
                client_id,
                epoch,
                seqs,
            } => {
                let c = self.intern(&client_id);
                if self.sessions.get(&c).map(|r| r.epoch) != Some(epoch) {
                    return Ok(CmdResult::Stale);
                }
                if let Some(q) = self.queues.get_mut(&c) {
                    for seq in seqs {
                        if let Some(item) = q.get_mut(&seq) {
                            item.received = true;
                            ctx.batch
                                .put(Table::Queues, queue_key(&c, seq), encode(&item.rec())?);
                        }
                    }
                }
                CmdResult::Done
            }
            Command::Tick { now_ms } => {
                self.tick(id, now_ms, ctx)?;
                CmdResult::Done
            }
            Command::NodeRestarted { node, now_ms } => {
                let mut owned: Vec<Arc<str>> = self
                    .sessions
                    .iter()
                    .filter(|(_, r)| r.node == Some(node))
                    .map(|(c, _)| c.clone())
                    .collect();
                owned.sort();
                for c in owned {
                    self.disconnect(id, &c, true, None, now_ms, ctx)?;
                }
                CmdResult::Done
            }
            Command::Configure(s) => {
                ctx.batch
                    .put(Table::Meta, plain_key(META_SETTINGS), encode(&s)?);
                self.settings = s;
                CmdResult::Done
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        id: u64,
        client_id: String,
        node: NodeId,
        clean_start: bool,
        expiry_s: u32,
        will: Option<Will>,
        now_ms: u64,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let c = self.intern(&client_id);
        let mut session_present = false;
        let mut next_seq = 0;
        if let Some(old) = self.sessions.get(&c).cloned() {
            let expired = old.expires_at().is_some_and(|e| e <= now_ms);
            let resumes = !clean_start && !expired && old.persistent();
            if old.node.is_some() {
                self.sink.emit(ApplyEvent::Kick {
                    client_id: c.clone(),
                    epoch: old.epoch,
                });
                // The taken-over connection's will: suppressed if configured,
                // kept back if the session continues and the will is delayed.
                if let Some(w) = old.will.clone() {
                    let delay = w.delay_s.min(self.settings.max_last_will_delay);
                    if !(self.settings.suppress_lwt_on_session_takeover || (resumes && delay > 0)) {
                        self.publish_will(id, &c, w, now_ms, ctx)?;
                    }
                }
            } else if let Some(w) = old.will.clone() {
                // Disconnected with a delayed will still pending: a new
                // connection to the same session cancels it; a new session
                // ends the old one, which sends it.
                if !resumes && old.will_at_ms.is_some() {
                    self.publish_will(id, &c, w, now_ms, ctx)?;
                }
            }
            if resumes {
                session_present = true;
                next_seq = old.next_seq;
            } else {
                self.drop_session_state(&c, ctx);
            }
        }
        let rec = SessionRec {
            epoch: id,
            node: Some(node),
            expiry_s,
            will,
            connected_ms: now_ms,
            disconnected_ms: None,
            will_at_ms: None,
            next_seq,
        };
        self.sessions.insert(c.clone(), rec);
        self.trie.write().set_location(&c, Some(node));
        ctx.dirty.insert(c.clone());
        self.reschedule(&c);
        let queue = self
            .queues
            .get(&c)
            .map(|q| q.iter().map(|(seq, item)| item.delivery(*seq)).collect())
            .unwrap_or_default();
        Ok(CmdResult::Registered {
            epoch: id,
            session_present,
            queue,
        })
    }

    fn disconnect(
        &mut self,
        id: u64,
        c: &Arc<str>,
        publish_will: bool,
        new_expiry_s: Option<u32>,
        now_ms: u64,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let Some(rec) = self.sessions.get_mut(c) else {
            return Ok(());
        };
        rec.node = None;
        self.trie.write().set_location(c, None);
        rec.disconnected_ms = Some(now_ms);
        if let Some(e) = new_expiry_s {
            rec.expiry_s = e;
        }
        let expiry_s = rec.expiry_s;
        let mut fire = None;
        if !publish_will {
            rec.will = None;
        } else if let Some(w) = rec.will.clone() {
            let delay = w.delay_s.min(self.settings.max_last_will_delay);
            if delay == 0 || expiry_s == 0 {
                rec.will = None;
                fire = Some(w);
            } else {
                rec.will_at_ms = Some(now_ms + delay as u64 * 1000);
            }
        }
        ctx.dirty.insert(c.clone());
        if let Some(w) = fire {
            self.publish_will(id, c, w, now_ms, ctx)?;
        }
        if expiry_s == 0 {
            self.remove_session(c, ctx);
        } else {
            self.reschedule(c);
        }
        Ok(())
    }

    fn tick(&mut self, id: u64, now_ms: u64, ctx: &mut Ctx) -> Result<(), RaftError> {
        let due: Vec<Arc<str>> = self
            .timers
            .iter()
            .take_while(|(d, _)| *d <= now_ms)
            .map(|(_, c)| c.clone())
            .collect();
        for c in due {
            let Some(rec) = self.sessions.get(&c).cloned() else {
                self.reschedule(&c);
                continue;
            };
            let expired = rec.expires_at().is_some_and(|e| e <= now_ms);
            let will_due = rec.will_at_ms.is_some_and(|w| w <= now_ms) || expired;
            if will_due && rec.node.is_none() {
                if let Some(w) = rec.will.clone() {
                    if let Some(r) = self.sessions.get_mut(&c) {
                        r.will = None;
                        r.will_at_ms = None;
                    }
                    ctx.dirty.insert(c.clone());
                    self.publish_will(id, &c, w, now_ms, ctx)?;
                }
            }
            if expired && rec.node.is_none() {
                self.stats.sessions_expired += 1;
                self.remove_session(&c, ctx);
            } else {
                self.reschedule(&c);
            }
        }
        Ok(())
    }

    fn publish_will(
        &mut self,
        id: u64,
        c: &Arc<str>,
        w: Will,
        now_ms: u64,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        if let Some(r) = self.sessions.get_mut(c) {
            r.will = None;
            r.will_at_ms = None;
            ctx.dirty.insert(c.clone());
        }
        let mut msg = w.msg;
        msg.created_ms = now_ms;
        msg.expires_ms = w.expiry_s.map(|s| now_ms + s as u64 * 1000);
        self.stats.wills_published += 1;
        self.publish(id, msg, ctx)?;
        Ok(())
    }

    fn remove_session(&mut self, c: &Arc<str>, ctx: &mut Ctx) {
        self.drop_session_state(c, ctx);
        self.sessions.remove(c);
        ctx.dirty.insert(c.clone());
        self.reschedule(c);
    }

    /// Removes a session's subscriptions, queue and QoS 2 ids.
    fn drop_session_state(&mut self, c: &Arc<str>, ctx: &mut Ctx) {
        if let Some(subs) = self.subs_by_client.remove(c) {
            let mut trie = self.trie.write();
            for f in subs.keys() {
                trie.remove(f, c);
                ctx.batch.delete(Table::Subscriptions, sub_key(c, f));
            }
        }
        if let Some(q) = self.queues.remove(c) {
            for (seq, item) in q {
                ctx.batch.delete(Table::Queues, queue_key(c, seq));
                self.release_msg(item.msg_id, ctx);
            }
        }
        for p in self.qos2_in.remove(c).unwrap_or_default() {
            ctx.batch.delete(Table::Qos2In, qos2_key(c, p));
        }
    }

    fn dequeue(&mut self, c: &Arc<str>, seq: u64, ctx: &mut Ctx) {
        let Some(q) = self.queues.get_mut(c) else {
            return;
        };
        let Some(item) = q.remove(&seq) else { return };
        if q.is_empty() {
            self.queues.remove(c);
        }
        ctx.batch.delete(Table::Queues, queue_key(c, seq));
        self.release_msg(item.msg_id, ctx);
    }

    fn release_msg(&mut self, msg_id: u64, ctx: &mut Ctx) {
        if let Some(n) = self.msg_refs.get_mut(&msg_id) {
            *n -= 1;
            if *n == 0 {
                self.msg_refs.remove(&msg_id);
                ctx.batch.delete(Table::Messages, msg_key(msg_id));
            }
        }
    }

    fn subscribe(
        &mut self,
        client_id: &str,
        epoch: u64,
        filters: Vec<(String, SubOpts)>,
        ctx: &mut Ctx,
    ) -> Result<CmdResult, RaftError> {
        let c = self.intern(client_id);
        if self.sessions.get(&c).map(|r| r.epoch) != Some(epoch) {
            return Ok(CmdResult::Stale);
        }
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained = Vec::new();
        for (f, opts) in filters {
            let existed = self.trie.write().insert(&f, &c, opts);
            self.subs_by_client
                .entry(c.clone())
                .or_default()
                .insert(f.clone(), opts);
            ctx.batch
                .put(Table::Subscriptions, sub_key(&c, &f), encode(&opts)?);
            codes.push(opts.qos);
            let (group, plain) = split_shared(&f);
            let send = group.is_none()
                && (opts.retain_handling == 0 || (opts.retain_handling == 1 && !existed));
            if send {
                for m in self.retained.matching(plain) {
                    retained.push(Delivery {
                        seq: None,
                        qos: m.qos.min(opts.qos),
                        msg: m,
                        retain: true,
                        sub_ids: opts.sub_id.into_iter().collect(),
                        received: false,
                    });
                }
            }
        }
        Ok(CmdResult::Subscribed { codes, retained })
    }

    /// Stores a retained change and routes the message to every matching
    /// subscription. Returns the number of sessions it was routed to.
    fn publish(&mut self, id: u64, msg: Message, ctx: &mut Ctx) -> Result<u32, RaftError> {
        let msg = Arc::new(msg);
        if msg.retain {
            if msg.payload.is_empty() {
                if self.retained.remove(&msg.topic) {
                    ctx.batch.delete(Table::Retained, plain_key(&msg.topic));
                }
            } else {
                self.retained.insert(msg.clone());
                ctx.batch
                    .put(Table::Retained, plain_key(&msg.topic), encode(&*msg)?);
            }
        }
        let targets = self.targets(id, &msg);
        let n = targets.len() as u32;
        for (c, t) in targets {
            self.enqueue(id, &c, &msg, t, ctx)?;
        }
        Ok(n)
    }

    /// Resolves matching subscriptions to one target per session. A shared
    /// group delivers to one member chosen by the message id, among its
    /// connected members if it has any.
    fn targets(&self, id: u64, msg: &Message) -> Vec<(Arc<str>, Target)> {
        let sessions = &self.sessions;
        let trie = self.trie.read();
        let picked = trie.targets(&msg.topic, &msg.publisher, |members| {
            let online: Vec<&Arc<str>> = members
                .keys()
                .filter(|c| sessions.get(*c).is_some_and(|r| r.node.is_some()))
                .collect();
            let pool: Vec<&Arc<str>> = if online.is_empty() {
                members.keys().collect()
            } else {
                online
            };
            pool.get((mix(id) % pool.len().max(1) as u64) as usize)
                .map(|c| (*c).clone())
        });
        picked.into_iter().collect()
    }

    fn enqueue(
        &mut self,
        id: u64,
        c: &Arc<str>,
        msg: &Arc<Message>,
        t: Target,
        ctx: &mut Ctx,
    ) -> Result<(), RaftError> {
        let Some(rec) = self.sessions.get_mut(c) else {
            return Ok(());
        };
        let qos = msg.qos.min(t.qos);
        let retain = msg.retain && t.retain_as_published;
        let online = rec.node.is_some();
        if rec.persistent() && qos > 0 {
            let qlen = self.queues.get(c).map_or(0, |q| q.len()) as i64;
            let s = &self.settings;
            let limit = if online {
                if s.max_online_messages < 0 || s.max_inflight_messages == 0 {
                    -1
                } else {
                    s.max_online_messages + s.max_inflight_messages as i64
                }
            } else {
                s.max_offline_messages
            };
            if limit >= 0 && qlen >= limit {
                self.stats.dropped_queue_full += 1;
                return Ok(());
            }
            let seq = rec.next_seq;
            rec.next_seq += 1;
            let epoch = rec.epoch;
            ctx.dirty.insert(c.clone());
            let item = QItem {
                msg_id: id,
                msg: msg.clone(),
                qos,
                retain,
                sub_ids: t.sub_ids,
                received: false,
            };
            ctx.batch
                .put(Table::Queues, queue_key(c, seq), encode(&item.rec())?);
            let refs = self.msg_refs.entry(id).or_default();
            if *refs == 0 {
                ctx.batch.put(Table::Messages, msg_key(id), encode(&**msg)?);
            }
            *refs += 1;
            let d = item.delivery(seq);
            self.queues.entry(c.clone()).or_default().insert(seq, item);
            if online {
                self.sink.emit(ApplyEvent::Deliver {
                    client_id: c.clone(),
                    epoch,
                    delivery: d,
                });
            }
        } else if online {
            let d = Delivery {
                seq: None,
                msg: msg.clone(),
                qos,
                retain,
                sub_ids: t.sub_ids,
                received: false,
            };
            self.sink.emit(ApplyEvent::Deliver {
                client_id: c.clone(),
                epoch: rec.epoch,
                delivery: d,
            });
        }
        Ok(())
    }

    /// Every state row, for a snapshot.
    pub fn snapshot_rows(&self) -> Result<Vec<Row>, RaftError> {
        let mut rows = Vec::new();
        for (i, t) in Table::ALL.iter().enumerate() {
            self.store.for_each(*t, |k, v| {
                rows.push((i as u8, k.to_vec(), v.to_vec()));
                Ok(())
            })?;
        }
        Ok(rows)
    }

    /// Replaces all state with a snapshot's rows and rebuilds the indexes.
    pub fn install_rows(&mut self, rows: Vec<Row>) -> Result<(), RaftError> {
        let rows = rows
            .into_iter()
            .filter_map(|(t, k, v)| Table::ALL.get(t as usize).map(|t| (*t, k, v)))
            .collect();
        self.store.replace_state(rows)?;
        self.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use openraft::{CommittedLeaderId, EntryPayload};
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<ApplyEvent>>);
    impl EventSink for Recorder {
        fn emit(&self, ev: ApplyEvent) {
            self.0.lock().push(ev);
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        st: MqttState,
        sink: Arc<Recorder>,
        index: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let sink = Arc::new(Recorder::default());
            let st = MqttState::open(Store::open(dir.path()).unwrap(), sink.clone()).unwrap();
            Fixture {
                _dir: dir,
                st,
                sink,
                index: 0,
            }
        }

        /// Applies one entry; returns its results and the epoch-like id of
        /// its first command.
        fn apply(&mut self, cmds: Vec<Command>) -> (Vec<CmdResult>, u64) {
            let r = self.apply_numbered(1, 0, cmds.into_iter().map(|c| (0, c)).collect());
            (r, self.index << 16)
        }

        /// Applies one entry of numbered commands from `origin`.
        fn apply_numbered(
            &mut self,
            origin: u64,
            floor: u64,
            cmds: Vec<(u64, Command)>,
        ) -> Vec<CmdResult> {
            self.index += 1;
            let e = crate::types::Entry {
                log_id: openraft::LogId::new(CommittedLeaderId::new(1, 1), self.index),
                payload: EntryPayload::Normal(Request {
                    origin,
                    floor,
                    cmds: cmds
                        .into_iter()
                        .map(|(seq, cmd)| Envelope { seq, cmd })
                        .collect(),
                }),
            };
            self.st.apply_entries(vec![e]).unwrap().remove(0).results
        }

        fn register(&mut self, client: &str, expiry_s: u32, will: Option<Will>) -> u64 {
            let (r, _) = self.apply(vec![Command::Register {
                client_id: client.into(),
                node: 1,
                clean_start: false,
                expiry_s,
                will,
                now_ms: 1000,
            }]);
            match &r[0] {
                CmdResult::Registered { epoch, .. } => *epoch,
                other => panic!("{other:?}"),
            }
        }

        fn subscribe(&mut self, client: &str, epoch: u64, filter: &str, qos: u8) {
            self.apply(vec![Command::Subscribe {
                client_id: client.into(),
                epoch,
                filters: vec![(filter.into(), SubOpts::with_qos(qos))],
            }]);
        }

        fn disconnect(&mut self, client: &str, epoch: u64, publish_will: bool, now_ms: u64) {
            self.apply(vec![Command::Disconnect {
                client_id: client.into(),
                epoch,
                publish_will,
                new_expiry_s: None,
                now_ms,
            }]);
        }

        fn delivered(&self, client: &str) -> Vec<Delivery> {
            self.sink
                .0
                .lock()
                .iter()
                .filter_map(|e| match e {
                    ApplyEvent::Deliver {
                        client_id,
                        delivery,
                        ..
                    } if &**client_id == client => Some(delivery.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    fn msg(topic: &str, qos: u8, publisher: &str) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"p"),
            qos,
            retain: false,
            publisher: publisher.into(),
            props: MsgProps::default(),
            created_ms: 1000,
            expires_ms: None,
        }
    }

    fn publish(client: &str, pid: u16, m: Message) -> Command {
        Command::Publish {
            client_id: client.into(),
            packet_id: pid,
            msg: m,
        }
    }

    #[test]
    fn resent_qos2_publish_is_routed_once_until_released() {
        let mut f = Fixture::new();
        let e = f.register("s", 60, None);
        f.subscribe("s", e, "t", 2);
        let (r, _) = f.apply(vec![
            publish("p", 9, msg("t", 2, "p")),
            publish("p", 9, msg("t", 2, "p")),
        ]);
        assert_eq!(
            r[0],
            CmdResult::Published {
                duplicate: false,
                matched: 1
            }
        );
        assert_eq!(
            r[1],
            CmdResult::Published {
                duplicate: true,
                matched: 0
            }
        );
        let (r, _) = f.apply(vec![Command::Release {
            client_id: "p".into(),
            packet_id: 9,
        }]);
        assert_eq!(r[0], CmdResult::Released { found: true });
        let (r, _) = f.apply(vec![publish("p", 9, msg("t", 2, "p"))]);
        assert_eq!(
            r[0],
            CmdResult::Published {
                duplicate: false,
                matched: 1
            }
        );
        assert_eq!(f.delivered("s").len(), 2);
    }

    #[test]
    fn persistent_queue_survives_reopen_and_acks_remove_items() {
        let mut f = Fixture::new();
        let e = f.register("s", NEVER, None);
        f.subscribe("s", e, "q/#", 1);
        f.disconnect("s", e, false, 2000);
        f.apply(
            (0..5)
                .map(|i| publish("p", 0, msg(&format!("q/{i}"), 1, "p")))
                .collect(),
        );
        let store = f.st.store().clone();
        let reopened = MqttState::open(store, Arc::new(Recorder::default())).unwrap();
        assert_eq!(reopened.queued_count(), 5);
        let e2 = f.register("s", NEVER, None);
        f.apply(vec![Command::Ack {
            client_id: "s".into(),
            epoch: e2,
            seqs: vec![0, 1, 2],
        }]);
        assert_eq!(f.st.queued_count(), 2);
        // An ack for an older epoch is ignored.
        let (r, _) = f.apply(vec![Command::Ack {
            client_id: "s".into(),
            epoch: e,
            seqs: vec![3, 4],
        }]);
        assert_eq!(r[0], CmdResult::Stale);
        assert_eq!(f.st.queued_count(), 2);
    }

    #[test]
    fn reopen_restores_last_applied_and_membership_exactly() {
        let mut f = Fixture::new();
        for _ in 0..3 {
            f.apply(vec![publish("p", 0, msg("t", 1, "p"))]);
        }
        let before = f.st.last_applied;
        assert_eq!(before.map(|l| l.index), Some(3));
        let reopened =
            MqttState::open(f.st.store().clone(), Arc::new(Recorder::default())).unwrap();
        assert_eq!(reopened.last_applied, before);
        assert_eq!(reopened.membership, f.st.membership);
        assert_eq!(reopened.settings, f.st.settings);
    }

    #[test]
    fn offline_queue_limit_drops_beyond_max_offline_messages() {
        let mut f = Fixture::new();
        f.apply(vec![Command::Configure(ClusterSettings {
            max_offline_messages: 3,
            ..Default::default()
        })]);
        let e = f.register("s", NEVER, None);
        f.subscribe("s", e, "t", 1);
        f.disconnect("s", e, false, 2000);
        f.apply((0..10).map(|_| publish("p", 0, msg("t", 1, "p"))).collect());
        assert_eq!(f.st.queued_count(), 3);
        assert_eq!(f.st.stats.dropped_queue_full, 7);
    }

    #[test]
    fn delayed_will_fires_on_tick_not_before() {
        let mut f = Fixture::new();
        let e = f.register("watcher", 0, None);
        f.subscribe("watcher", e, "will/#", 0);
        let will = Will {
            msg: msg("will/w", 0, "w"),
            expiry_s: None,
            delay_s: 5,
        };
        let ew = f.register("w", 60, Some(will));
        f.disconnect("w", ew, true, 10_000);
        assert_eq!(f.st.next_deadline(), Some(15_000));
        f.apply(vec![Command::Tick { now_ms: 14_999 }]);
        assert!(f.delivered("watcher").is_empty());
        f.apply(vec![Command::Tick { now_ms: 15_000 }]);
        assert_eq!(f.delivered("watcher").len(), 1);
    }

    #[test]
    fn apply_is_deterministic_across_replicas() {
        let script = |f: &mut Fixture| {
            let e = f.register("a", NEVER, None);
            let eb = f.register("b", NEVER, None);
            f.apply(vec![
                Command::Subscribe {
                    client_id: "a".into(),
                    epoch: e,
                    filters: vec![("$share/g/t/+".into(), SubOpts::with_qos(1))],
                },
                Command::Subscribe {
                    client_id: "b".into(),
                    epoch: eb,
                    filters: vec![("$share/g/t/+".into(), SubOpts::with_qos(1))],
                },
            ]);
            f.apply(
                (0..20)
                    .map(|i| publish("p", 0, msg(&format!("t/{i}"), 1, "p")))
                    .collect(),
            );
            // One publish per entry, as a publisher waiting for each ack makes.
            for i in 0..20 {
                f.apply(vec![publish("p", 0, msg(&format!("t/{i}"), 1, "p"))]);
            }
            f.st.snapshot_rows().unwrap()
        };
        let (mut x, mut y) = (Fixture::new(), Fixture::new());
        let (rx, ry) = (script(&mut x), script(&mut y));
        assert_eq!(rx, ry);
        // The shared group spread the 40 messages over both members.
        let (a, b) = (x.delivered("a").len(), x.delivered("b").len());
        assert_eq!(a + b, 40);
        assert!(a >= 8 && b >= 8, "a={a} b={b}");
    }

    #[test]
    fn a_resent_command_is_applied_once_and_answers_duplicate() {
        let mut f = Fixture::new();
        let e = f.register("sub", 3600, None);
        f.subscribe("sub", e, "t", 1);
        let p = publish("pub", 0, msg("t", 1, "pub"));
        let first = f.apply_numbered(7, 0, vec![(100, p.clone())]);
        assert!(
            matches!(first[0], CmdResult::Published { matched: 1, .. }),
            "{first:?}"
        );
        // The same command again (a retry after a leader change).
        let again = f.apply_numbered(7, 0, vec![(100, p.clone())]);
        assert_eq!(again, vec![CmdResult::Duplicate]);
        assert_eq!(f.delivered("sub").len(), 1, "delivered once");
        // The same sequence number from another origin is another command.
        let other = f.apply_numbered(8, 0, vec![(100, p)]);
        assert!(matches!(other[0], CmdResult::Published { .. }));
        assert_eq!(f.delivered("sub").len(), 2);
    }

    #[test]
    fn a_resent_earlier_batch_committed_after_a_later_one_still_applies() {
        let mut f = Fixture::new();
        let e = f.register("sub", 3600, None);
        f.subscribe("sub", e, "#", 1);
        let p = |i: u8| publish("pub", 0, msg(&format!("t{i}"), 1, "pub"));
        let later = f.apply_numbered(7, 10, vec![(12, p(2)), (13, p(3))]);
        assert!(later
            .iter()
            .all(|r| matches!(r, CmdResult::Published { .. })));
        let earlier = f.apply_numbered(7, 10, vec![(10, p(0)), (11, p(1))]);
        assert!(
            earlier
                .iter()
                .all(|r| matches!(r, CmdResult::Published { .. })),
            "not mistaken for duplicates: {earlier:?}"
        );
        assert_eq!(f.delivered("sub").len(), 4);
        // Once the proposer's floor passes them, old ids count as seen and
        // the applied set is pruned.
        let late = f.apply_numbered(7, 14, vec![(11, p(1))]);
        assert_eq!(late, vec![CmdResult::Duplicate]);
        assert_eq!(f.delivered("sub").len(), 4);
    }
}
