//! Read-only views of the replicated state for admin reads (`/api/v1/...`,
//! `/metrics`, health), none of which takes the apply lock:
//!
//! - [`StateSummary`]: counts, settings and the next deadline, published by
//!   the state machine once per applied batch (an `Arc` swapped under a lock
//!   held only for the swap or a clone of the `Arc`).
//! - [`StateView`]: session and retained listings read from RocksDB, through
//!   a snapshot, so one listing sees one point in time and never waits for
//!   apply (apply writes each batch atomically), and point lookups (is an
//!   inbound QoS 2 packet id recorded).

use std::sync::Arc;

use parking_lot::RwLock;
use raftmq_storage::keys::{
    client_prefix, message_key, qos2_key, queue_key, queue_of, retained_key, retained_of,
    session_key, session_of, subscription_of, GROUP,
};
use raftmq_storage::{Store, Table};

use crate::command::{Delivery, Message};
use crate::error::{decode, RaftError};
use crate::settings::ClusterConfig;
use crate::state::{ApplyStats, MqttState, QueueRec, SessionInfo, SessionRec};
use crate::trie::filter_matches;
use crate::types::NodeId;

/// Which sessions a listing wants.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Only this client id.
    pub client_id: Option<String>,
    /// Only connected (true) or only disconnected (false) sessions.
    pub online: Option<bool>,
    /// Only sessions connected to this node.
    pub node: Option<NodeId>,
    /// At most this many.
    pub limit: usize,
}

/// A listing of sessions, by client id.
#[derive(Debug, Clone, Default)]
pub struct SessionPage {
    pub sessions: Vec<SessionInfo>,
    /// More sessions match than `limit`.
    pub more: bool,
}

/// The state's counts and settings as of the last applied batch.
#[derive(Debug, Clone, Default)]
pub struct StateSummary {
    pub sessions: u64,
    pub subscriptions: u64,
    pub retained: u64,
    /// Messages in persistent session queues.
    pub queued: u64,
    /// Items of ended sessions' queues not yet deleted (at most).
    pub reclaiming: u64,
    /// Apply-side counts since this process started.
    pub apply: ApplyStats,
    /// Index of the last applied log entry (0: none).
    pub last_applied: u64,
    /// The cluster-wide settings in effect, with their sources.
    pub settings: ClusterConfig,
    /// No sessions, subscriptions, retained or queued messages.
    pub empty: bool,
    /// The earliest pending will or expiry deadline (ms).
    pub next_deadline: Option<u64>,
}

impl StateSummary {
    fn of(st: &MqttState) -> StateSummary {
        StateSummary {
            sessions: st.session_count() as u64,
            subscriptions: st.subscription_count() as u64,
            retained: st.retained_count() as u64,
            queued: st.queued_count(),
            reclaiming: st.reclaim_pending(),
            apply: st.stats.clone(),
            last_applied: st.last_applied.map_or(0, |l| l.index),
            settings: st.settings.clone(),
            empty: st.is_empty(),
            next_deadline: st.next_deadline(),
        }
    }
}

/// Where the state machine publishes the [`StateSummary`]; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Published(Arc<RwLock<Arc<StateSummary>>>);

impl Published {
    /// Called with the apply lock held, once per applied batch.
    pub(crate) fn publish(&self, st: &MqttState) {
        let s = Arc::new(StateSummary::of(st));
        *self.0.write() = s;
    }

    pub(crate) fn get(&self) -> Arc<StateSummary> {
        self.0.read().clone()
    }
}

/// Items read from a session's queue.
#[derive(Debug, Default)]
pub struct QueuePage {
    pub items: Vec<Delivery>,
    /// The read stopped at its item or byte budget: more may follow.
    pub more: bool,
}

/// Session and retained listings from RocksDB.
#[derive(Clone)]
pub(crate) struct StateView {
    store: Store,
}

/// The prefix of every row of a table.
fn all_rows() -> Vec<u8> {
    GROUP.to_be_bytes().to_vec()
}

impl StateView {
    pub(crate) fn new(store: Store) -> StateView {
        StateView { store }
    }

    /// The sessions `q` asks for, by client id, at most `q.limit` of them,
    /// each with its subscriptions; `more` if others match too. Reads only
    /// the subscriptions of the sessions listed.
    pub(crate) fn session_page(&self, q: &SessionQuery) -> Result<SessionPage, RaftError> {
        let r = self.store.reader();
        let wanted = |rec: &SessionRec| {
            q.online.is_none_or(|o| o == rec.node.is_some())
                && q.node.is_none_or(|n| rec.node == Some(n))
        };
        let mut recs: Vec<(String, SessionRec)> = Vec::new();
        let mut more = false;
        match &q.client_id {
            Some(c) => {
                if let Some(v) = r.get(Table::Sessions, &session_key(c))? {
                    let rec: SessionRec = decode(&v)?;
                    if wanted(&rec) && q.limit > 0 {
                        recs.push((c.clone(), rec));
                    }
                }
            }
            None => {
                let mut err = None;
                let all = all_rows();
                r.scan_from(Table::Sessions, &all, &all, |k, v| {
                    let Some(c) = session_of(k) else {
                        return Ok(true);
                    };
                    match decode::<SessionRec>(v) {
                        Ok(rec) if wanted(&rec) => {
                            if recs.len() == q.limit {
                                more = true;
                                return Ok(false);
                            }
                            recs.push((c.to_string(), rec));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            err = Some(e);
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })?;
                if let Some(e) = err {
                    return Err(e);
                }
            }
        }
        let mut sessions = Vec::with_capacity(recs.len());
        for (c, rec) in recs {
            let mut subscriptions = Vec::new();
            r.scan_prefix(Table::Subscriptions, &client_prefix(&c), |k, _| {
                if let Some((_, f)) = subscription_of(k) {
                    subscriptions.push(String::from_utf8_lossy(f).to_string());
                }
                Ok(())
            })?;
            subscriptions.sort();
            sessions.push(SessionInfo::new(c, &rec, subscriptions));
        }
        Ok(SessionPage { sessions, more })
    }

    /// Up to `max_items` items of `client`'s queue from sequence `from` on
    /// (or, without `from`, from the queue's head), with their messages, and
    /// at most `max_bytes` of payload (but at least one item).
    pub(crate) fn queue_page(
        &self,
        client: &str,
        from: Option<u64>,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<QueuePage, RaftError> {
        let r = self.store.reader();
        let from = match from {
            Some(f) => f,
            None => match r.get(Table::Sessions, &session_key(client))? {
                Some(v) => decode::<SessionRec>(&v)?.queue.head,
                None => return Ok(QueuePage::default()),
            },
        };
        let mut items: Vec<(u64, QueueRec)> = Vec::new();
        let mut bytes = 0usize;
        let mut full = false;
        let mut err = None;
        r.scan_from(
            Table::Queues,
            &client_prefix(client),
            &queue_key(client, from),
            |k, v| {
                let Some((_, seq)) = queue_of(k) else {
                    return Ok(true);
                };
                match decode::<QueueRec>(v) {
                    Ok(item) => {
                        bytes += item.bytes as usize;
                        items.push((seq, item));
                    }
                    Err(e) => err = Some(e),
                }
                full = items.len() >= max_items || bytes >= max_bytes;
                Ok(err.is_none() && !full)
            },
        )?;
        if let Some(e) = err {
            return Err(e);
        }
        let mut out = Vec::with_capacity(items.len());
        for (seq, item) in items {
            let body = r
                .get(Table::Messages, &message_key(item.msg_id))?
                .ok_or_else(|| {
                    RaftError::Encode(format!(
                        "queue item {client}/{seq} references missing message {}",
                        item.msg_id
                    ))
                })?;
            out.push(item.delivery(seq, Arc::new(decode::<Message>(&body)?)));
        }
        Ok(QueuePage {
            items: out,
            more: full,
        })
    }

    /// Whether `client`'s inbound QoS 2 packet id is recorded (received, not
    /// yet released).
    pub(crate) fn inbound_qos2_recorded(
        &self,
        client: &str,
        packet_id: u16,
    ) -> Result<bool, RaftError> {
        Ok(self
            .store
            .get(Table::Qos2In, &qos2_key(client, packet_id))?
            .is_some())
    }

    /// Sessions whose client is connected to `node`.
    pub(crate) fn sessions_on(&self, node: NodeId) -> Result<usize, RaftError> {
        let r = self.store.reader();
        let mut n = 0;
        let mut err = None;
        r.scan_prefix(Table::Sessions, &all_rows(), |_, v| {
            match decode::<SessionRec>(v) {
                Ok(rec) if rec.node == Some(node) => n += 1,
                Ok(_) => {}
                Err(e) => err = Some(e),
            }
            Ok(())
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Every retained message whose topic matches `filter`, by topic.
    pub(crate) fn retained(&self, filter: &str) -> Result<Vec<Message>, RaftError> {
        let r = self.store.reader();
        let mut out: Vec<Message> = Vec::new();
        if !filter.contains(['+', '#']) {
            if let Some(v) = r.get(Table::Retained, &retained_key(filter))? {
                out.push(decode(&v)?);
            }
            return Ok(out);
        }
        let mut err = None;
        r.scan_prefix(Table::Retained, &all_rows(), |k, v| {
            let topic = String::from_utf8_lossy(retained_of(k));
            if filter_matches(filter, &topic) {
                match decode(v) {
                    Ok(m) => out.push(m),
                    Err(e) => err = Some(e),
                }
            }
            Ok(())
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Disconnect, MsgProps, Publish, Register, SubOpts, Subscribe};
    use crate::state::NoEvents;

    fn msg(topic: &str, payload: &str, retain: bool) -> Message {
        Message {
            topic: topic.into(),
            payload: bytes::Bytes::from(payload.to_string()),
            qos: 1,
            retain,
            publisher: "p".into(),
            props: MsgProps::default(),
            created_ms: 1,
            expires_ms: None,
        }
    }

    fn apply(st: &mut MqttState, index: u64, cmds: Vec<Command>) {
        let e = crate::types::test_entry(index, cmds);
        st.apply_entries(vec![e]).unwrap();
    }

    #[test]
    fn listings_and_summary_match_the_state_without_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut st = MqttState::open(store.clone(), Arc::new(NoEvents)).unwrap();
        let view = StateView::new(store);
        let published = Published::default();
        let register = |c: &str, node: u64| {
            Command::Register(Register {
                client_id: c.into(),
                node,
                clean_start: false,
                expiry_s: 3600,
                will: None,
                now_ms: 1,
            })
        };
        apply(
            &mut st,
            1,
            vec![register("a", 1), register("ab", 2), register("b", 1)],
        );
        let epoch = |st: &MqttState, c: &str| st.session_info(Some(c))[0].epoch;
        let (ea, eab) = (epoch(&st, "a"), epoch(&st, "ab"));
        apply(
            &mut st,
            2,
            vec![
                Command::Subscribe(Subscribe {
                    client_id: "a".into(),
                    epoch: ea,
                    filters: vec![
                        ("x/#".into(), SubOpts::with_qos(1)),
                        ("$SYS/#".into(), SubOpts::with_qos(0)),
                    ],
                }),
                Command::Subscribe(Subscribe {
                    client_id: "ab".into(),
                    epoch: eab,
                    filters: vec![("x/+".into(), SubOpts::with_qos(1))],
                }),
                Command::Disconnect(Disconnect {
                    client_id: "a".into(),
                    epoch: ea,
                    publish_will: false,
                    new_expiry_s: None,
                    now_ms: 2,
                }),
            ],
        );
        let publish = |m: Message| {
            Command::Publish(Publish {
                client_id: "p".into(),
                packet_id: 0,
                msg: m.into(),
            })
        };
        apply(
            &mut st,
            3,
            vec![
                publish(msg("x/1", "one", false)),
                publish(msg("x/2", "two", true)),
                publish(msg("x/2/3", "deep", true)),
                publish(msg("$SYS/up", "sys", true)),
                publish(msg("y", "why", true)),
            ],
        );
        published.publish(&st);

        let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
        let all = SessionQuery {
            limit: 100,
            ..Default::default()
        };
        let page = |q: SessionQuery| view.session_page(&q).unwrap();
        assert_eq!(
            dbg(&page(all.clone()).sessions),
            dbg(&st.session_info(None))
        );
        for c in ["a", "ab", "b", "none"] {
            let one = SessionQuery {
                client_id: Some(c.into()),
                ..all.clone()
            };
            assert_eq!(
                dbg(&page(one).sessions),
                dbg(&st.session_info(Some(c))),
                "{c}"
            );
        }
        let a = SessionQuery {
            client_id: Some("a".into()),
            ..all.clone()
        };
        assert!(page(a).sessions[0].queued > 0);
        // Filters and the limit: "a" is offline, "ab" and "b" online.
        let ids = |p: SessionPage| -> Vec<String> {
            p.sessions.into_iter().map(|s| s.client_id).collect()
        };
        let online = SessionQuery {
            online: Some(true),
            ..all.clone()
        };
        assert_eq!(ids(page(online)), ["ab", "b"]);
        let offline = SessionQuery {
            online: Some(false),
            ..all.clone()
        };
        assert_eq!(ids(page(offline)), ["a"]);
        let on_2 = SessionQuery {
            node: Some(2),
            ..all.clone()
        };
        assert_eq!(ids(page(on_2)), ["ab"]);
        let first = page(SessionQuery {
            limit: 1,
            ..all.clone()
        });
        assert!(first.more);
        assert_eq!(ids(first), ["a"]);
        assert!(!page(all.clone()).more);
        for f in [
            "#", "x/+", "x/#", "+/2", "$SYS/#", "+", "y", "x/2", "nothing",
        ] {
            let want: Vec<Message> = st.retained_list(f).iter().map(|m| (**m).clone()).collect();
            assert_eq!(view.retained(f).unwrap(), want, "{f}");
        }
        assert_eq!(view.sessions_on(1).unwrap(), st.sessions_on(1));
        assert_eq!(view.sessions_on(2).unwrap(), st.sessions_on(2));
        let s = published.get();
        assert_eq!(
            (s.sessions, s.subscriptions, s.retained, s.queued),
            (
                st.session_count() as u64,
                st.subscription_count() as u64,
                st.retained_count() as u64,
                st.queued_count() as u64
            )
        );
        assert_eq!((s.last_applied, s.empty), (3, false));
    }
}
