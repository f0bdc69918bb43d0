//! The deterministic MQTT state: sessions, subscriptions, retained messages,
//! per-session queues and inbound QoS 2 packet ids.
//!
//! `apply` turns committed commands into (a) one RocksDB batch of state
//! writes, (b) a result per command for the proposer, and (c) delivery events
//! for connections on this node. It never reads a clock or a random source:
//! times come inside commands, and choices (shared subscription members) are
//! derived from the message id. The in-memory maps are indexes, rebuilt from
//! RocksDB by [`MqttState::open`].
//!
//! # Layout
//! - this file: [`MqttState`], its read accessors, and apply: one dispatcher
//!   that hands each command to its handler.
//! - `records`: the rows as stored (sessions, queue items).
//! - `load`: rebuilding the indexes from RocksDB.
//! - `guard`: the live-session epoch check that stale commands fail.
//! - `sessions`: Register, Disconnect, NodeRestarted, Tick; wills and expiry.
//! - `subscriptions`: Subscribe and Unsubscribe.
//! - `publish`: Publish: inbound QoS 2 ids, retained changes, routing.
//! - `queues`: per-session queues and the stored messages they reference.
//! - `reclaim`: large queues of ended sessions, deleted a bounded amount per
//!   applied entry.
//! - `acks`: Ack, Received and Release.
//! - `meta`: Configure and SetSettings (the cluster settings by key),
//!   Identify, membership, last applied and the dedup sets.
//! - `snapshot`: state rows out of and into a snapshot.
//! - `auth`: users, the ACL and admin API keys (SetUser, DeleteUser,
//!   SetAcl, AddApiKey, DeleteApiKey), published as an [`AuthTable`].

mod acks;
mod auth;
#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod fixture;
mod guard;
mod load;
mod meta;
mod publish;
mod queues;
mod reclaim;
mod records;
mod sessions;
#[cfg(test)]
mod settings_tests;
mod snapshot;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use raftmq_storage::{StateBatch, Store};
use serde::Serialize;

use crate::command::{CmdResult, Command, Delivery, Message, Request, Response, SubOpts};
use crate::dedup::Dedup;
use crate::error::RaftError;
use crate::retain::RetainedIndex;
use crate::routes::Targets;
use crate::settings::ClusterConfig;
use crate::trie::{Target, Trie};
use crate::types::{Entry, LogId, Membership, NodeId};

pub use auth::{AclRec, ApiKeyRec, AuthHandle, AuthTable, UserRec};
pub(crate) use meta::read_identities;
pub(crate) use records::QueueRec;
pub use records::{QueueCounts, SessionRec};
pub use snapshot::Row;

/// What apply tells the connections of this node.
#[derive(Debug, Clone)]
pub enum ApplyEvent {
    /// Deliver to the connection of `client_id` if its session epoch is `epoch`.
    Deliver {
        client_id: Arc<str>,
        epoch: u64,
        delivery: Delivery,
    },
    /// The registration of `epoch` was applied: its session lives on
    /// `node`. The connection holding it (if one registered during a
    /// netsplit) reads the session's queue now; if `node` is this node and
    /// no connection holds it (its CONNECT gave up with the outcome
    /// unknown), the node ends the session's connection.
    Registered {
        client_id: Arc<str>,
        epoch: u64,
        node: u64,
    },
    /// Close the connection of this session epoch: it was taken over (MQTT
    /// 5 DISCONNECT 0x8E) or an operator disconnected it (0x98).
    Kick {
        client_id: Arc<str>,
        epoch: u64,
        why: KickReason,
    },
    /// One message for each of many sessions that take it live: a `Deliver`
    /// for each, in one event.
    Fanout(Fanout),
}

/// A message for the sessions among a topic's targets that take it live
/// (connected, and not queueing it). The targets are the route cache's,
/// shared; what is per session is an index and an epoch. A `Deliver` per
/// session copies a client id and a whole delivery for each subscriber of a
/// wide topic: the client ids' reference counts alone were about 15% of a
/// QoS 1 fan-out's broker CPU.
#[derive(Debug, Clone)]
pub struct Fanout {
    msg: Arc<Message>,
    targets: Targets,
    /// Index into `targets` and session epoch of each live session, in
    /// target order.
    live: Vec<(u32, u64)>,
}

impl Fanout {
    /// `msg` for the sessions of `targets` that `live` lists, each as its
    /// index in `targets` and its session epoch, in target order.
    pub fn new(msg: Arc<Message>, targets: Targets, live: Vec<(u32, u64)>) -> Fanout {
        Fanout { msg, targets, live }
    }

    /// Each live session's client id and epoch, and its target: what a
    /// `Deliver` would have said, in the same order.
    pub fn targets(&self) -> impl Iterator<Item = (&Arc<str>, u64, &Target)> + '_ {
        self.live.iter().filter_map(|&(i, epoch)| {
            let (c, t) = self.targets.get(i as usize)?;
            Some((c, epoch, t))
        })
    }

    /// Whether `other` goes to the same sessions, at the same epochs: the
    /// same topic's next message, no session having come or gone between.
    pub fn same_sessions(&self, other: &Fanout) -> bool {
        Arc::ptr_eq(&self.targets, &other.targets) && self.live == other.live
    }

    /// The delivery for `t`, one of [`Fanout::targets`].
    pub fn delivery(&self, t: &Target) -> Delivery {
        t.live_delivery(&self.msg)
    }
}

/// Why apply closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// A newer connection registered the client id.
    TakenOver,
    /// `session disconnect`.
    Administrative,
}

/// Receives apply events. Implemented by the broker's session registry; must
/// not block.
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, ev: ApplyEvent);
    /// A whole batch's events, in order. A sink may hand each receiver its
    /// share at once; by default, one `emit` each.
    fn emit_all(&self, events: Vec<ApplyEvent>) {
        for ev in events {
            self.emit(ev);
        }
    }
    /// QoS 0 routed here by another node (outside the log).
    fn deliver_remote(&self, _msg: Arc<Message>, _targets: Vec<crate::rpc::RemoteTarget>) {}
}

/// A sink that drops every event: for tests that look at the state, not at
/// what apply tells connections.
#[cfg(test)]
pub(crate) struct NoEvents;

#[cfg(test)]
impl EventSink for NoEvents {
    fn emit(&self, _: ApplyEvent) {}
}

/// Counters of what apply did, for metrics.
#[derive(Debug, Default, Clone)]
pub struct ApplyStats {
    /// QoS 1/2 messages not queued: the session was offline at
    /// `max_offline_messages`.
    pub dropped_offline_limit: u64,
    /// ... or online at `max_online_messages`.
    pub dropped_online_limit: u64,
    /// Publishes refused: a session they would be queued for is at its
    /// `max_queue_bytes`.
    pub refused_quota: u64,
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
    /// Items in the session's queue.
    pub queued: u64,
    /// Their payload bytes.
    pub queued_bytes: u64,
    /// Messages the queue limits dropped, by limit.
    pub dropped_offline_limit: u64,
    pub dropped_online_limit: u64,
    pub subscriptions: Vec<String>,
}

impl SessionInfo {
    /// The listing row of a stored session and its subscriptions.
    pub(crate) fn new(client_id: String, rec: &SessionRec, subscriptions: Vec<String>) -> Self {
        SessionInfo {
            client_id,
            epoch: rec.epoch,
            node: rec.node,
            expiry_s: rec.expiry_s,
            queued: rec.queue.items,
            queued_bytes: rec.queue.bytes,
            dropped_offline_limit: rec.queue.dropped_offline,
            dropped_online_limit: rec.queue.dropped_online,
            subscriptions,
        }
    }
}

pub struct MqttState {
    store: Store,
    sink: Arc<dyn EventSink>,
    /// Records boxed: the map keeps room for up to twice its sessions, and
    /// an empty slot then costs a pointer, not a 128 B record.
    sessions: HashMap<Arc<str>, Box<SessionRec>>,
    /// Shared with connections, which route QoS 0 by it directly.
    trie: Arc<RwLock<Trie>>,
    subs_by_client: HashMap<Arc<str>, BTreeMap<String, SubOpts>>,
    retained: RetainedIndex,
    /// Items in all queues (the sum of the sessions' counts), so the
    /// per-batch summary does not walk every session.
    queued: u64,
    /// Ended queues still being deleted, by client id (see `reclaim`).
    reclaim: BTreeMap<Arc<str>, reclaim::Span>,
    /// The last message id given to a queued message (ids are never
    /// reused: a message body is stored under its id).
    last_message_id: u64,
    /// Inbound QoS 2 packet ids awaiting PUBREL, per publisher.
    qos2_in: HashMap<Arc<str>, HashSet<u16>>,
    timers: BTreeSet<(u64, Arc<str>)>,
    timer_of: HashMap<Arc<str>, u64>,
    pub settings: ClusterConfig,
    pub last_applied: Option<LogId>,
    pub membership: Membership,
    /// Data-directory identities of the nodes that joined, by node id.
    pub identities: BTreeMap<NodeId, u128>,
    pub stats: ApplyStats,
    /// Per origin node: the command ids applied (duplicate guard).
    dedup: Dedup,
    /// Users, ACL and API keys; shared with the broker.
    auth: AuthHandle,
}

/// The per-batch scratch of apply: the one RocksDB batch every command of
/// the batch writes into, the sessions whose record changed and the message
/// reference counts it changed (both written once, at the end), and the
/// events for this node's connections (emitted once the batch is written,
/// so that a connection that reads RocksDB on an event finds what it
/// announces).
#[derive(Default)]
struct Ctx {
    batch: StateBatch,
    dirty: HashSet<Arc<str>>,
    refs: HashMap<u64, u32>,
    events: Vec<ApplyEvent>,
    /// The sessions that take the message being routed live (scratch).
    live: Vec<(u32, u64)>,
}

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
            queued: 0,
            reclaim: BTreeMap::new(),
            last_message_id: 0,
            qos2_in: HashMap::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
            settings: ClusterConfig::default(),
            last_applied: None,
            membership: Default::default(),
            identities: BTreeMap::new(),
            stats: ApplyStats::default(),
            dedup: Dedup::new(),
            auth: AuthHandle::default(),
        };
        st.load()?;
        Ok(st)
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

    /// Sessions whose client is connected to `node`. The in-memory answer,
    /// which the lock-free RocksDB view (`crate::view`) is tested against.
    #[cfg(test)]
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
            && self.queued == 0
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
    pub fn queued_count(&self) -> u64 {
        self.queued
    }

    /// A fresh message id, for a message that will be stored.
    fn new_message_id(&mut self) -> u64 {
        self.last_message_id += 1;
        self.last_message_id
    }

    /// Sessions (all, or `filter`'s), by client id. The in-memory answer,
    /// which the lock-free RocksDB view is tested against.
    #[cfg(test)]
    pub fn session_info(&self, filter: Option<&str>) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .sessions
            .iter()
            .filter(|(c, _)| filter.is_none_or(|f| f == &***c))
            .map(|(c, r)| {
                let subs = self
                    .subs_by_client
                    .get(c)
                    .map(|s| s.keys().cloned().collect())
                    .unwrap_or_default();
                SessionInfo::new(c.to_string(), r, subs)
            })
            .collect();
        v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        v
    }

    /// Retained messages matching `filter`. The in-memory answer, which the
    /// lock-free RocksDB view is tested against.
    #[cfg(test)]
    pub fn retained_list(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained.matching(filter)
    }

    /// The session map's own `Arc` for `c` if it has one, so that every
    /// index shares one allocation per client id.
    fn intern(&self, c: &str) -> Arc<str> {
        match self.sessions.get_key_value(c) {
            Some((k, _)) => k.clone(),
            None => Arc::from(c),
        }
    }

    /// Applies a batch of committed entries: one RocksDB batch for all.
    pub fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<Vec<Response>, RaftError> {
        let mut ctx = Ctx::default();
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let resp = match entry.payload {
                openraft::EntryPayload::Blank => Response::default(),
                openraft::EntryPayload::Normal(req) => {
                    self.apply_request(entry.log_id.index, req, &mut ctx)?
                }
                openraft::EntryPayload::Membership(m) => {
                    self.apply_membership(entry.log_id, m, &mut ctx)?;
                    Response::default()
                }
            };
            self.reclaim_some(&mut ctx)?;
            self.last_applied = Some(entry.log_id);
            out.push(resp);
        }
        self.write_dirty_sessions(&mut ctx)?;
        self.write_refs(&mut ctx);
        self.write_progress(&mut ctx)?;
        self.store.write_state(ctx.batch)?;
        self.sink.emit_all(ctx.events);
        Ok(out)
    }

    /// Applies one proposer's batch of commands, skipping those applied
    /// before. Each command's id (its session epoch or message id) is the
    /// entry's `index << 16 | position`.
    fn apply_request(
        &mut self,
        index: u64,
        req: Request,
        ctx: &mut Ctx,
    ) -> Result<Response, RaftError> {
        // Taken out for the batch (apply_cmd borrows all of self) and put
        // back after it, also when a command fails.
        let mut seen = self.dedup.remove(&req.origin).unwrap_or_default();
        seen.raise_floor(req.floor);
        // The entry is shared with the log cache (and replication): its
        // commands are read in place, and only the rare kinds are copied.
        let results = req
            .cmds
            .iter()
            .enumerate()
            .map(|(pos, env)| {
                if env.seq != 0 && !seen.insert(env.seq) {
                    self.stats.duplicates += 1;
                    return Ok(CmdResult::Duplicate);
                }
                let id = (index << 16) | (pos as u64 & 0xffff);
                self.apply_cmd(id, &env.cmd, ctx)
            })
            .collect::<Result<Vec<_>, _>>();
        self.dedup.insert(req.origin, seen);
        Ok(Response { results: results? })
    }

    /// The dispatcher: every command is handled in its group's file. The
    /// commands of every message (publish, acks, release) are read where
    /// they lie; the others are copied for their handlers, which keep
    /// parts of them.
    fn apply_cmd(&mut self, id: u64, cmd: &Command, ctx: &mut Ctx) -> Result<CmdResult, RaftError> {
        match cmd {
            Command::Publish(c) => self.publish(id, c, ctx),
            Command::Ack(c) => self.ack(c, ctx),
            Command::Received(c) => self.received(c, ctx),
            Command::Release(c) => self.release(c, ctx),
            Command::GuardedPublish(g) => match self.live_session(&g.cmd.client_id, g.epoch) {
                Some(_) => self.publish(id, &g.cmd, ctx),
                None => Ok(CmdResult::Stale),
            },
            Command::GuardedRelease(g) => match self.live_session(&g.cmd.client_id, g.epoch) {
                Some(_) => self.release(&g.cmd, ctx),
                None => Ok(CmdResult::Stale),
            },
            Command::Register(c) => self.register(id, c.clone(), ctx),
            Command::Disconnect(c) => self.disconnect(id, c.clone(), ctx),
            Command::NodeRestarted(c) => self.node_restarted(id, c.clone(), ctx),
            Command::Tick(c) => self.tick(id, c.clone(), ctx),
            Command::Subscribe(c) => self.subscribe(c.clone(), ctx),
            Command::Unsubscribe(c) => self.unsubscribe(c.clone(), ctx),
            Command::Configure(s) => self.configure(id >> 16, s.clone(), ctx),
            Command::AdminDisconnect(c) => self.admin_disconnect(id, c.clone(), ctx),
            Command::SetSettings(s) => self.set_settings(id >> 16, s.clone(), ctx),
            Command::Identify(c) => self.identify(c.clone(), ctx),
            Command::RegisterHeld(c) => self.register_held(c.clone(), ctx),
            Command::SetUser(c) => self.set_user(c.clone(), ctx),
            Command::DeleteUser(c) => self.delete_user(c.clone(), ctx),
            Command::SetAcl(c) => self.set_acl(c.clone(), ctx),
            Command::AddApiKey(c) => self.add_api_key(c.clone(), ctx),
            Command::DeleteApiKey(c) => self.delete_api_key(c.clone(), ctx),
        }
    }
}
