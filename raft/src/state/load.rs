//! Rebuilding the in-memory indexes from the state tables, at start and
//! after a snapshot is installed.

use std::collections::HashMap;
use std::sync::Arc;

use raftmq_storage::keys;
use raftmq_storage::{Store, Table};

use super::records::{QItem, QueueRec};
use super::{MqttState, SessionRec};
use crate::command::{Message, SubOpts};
use crate::error::{decode, RaftError};
use crate::retain::RetainedIndex;
use crate::trie::Trie;

/// A stored row: key and value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// Every row of `table`, in key order.
fn rows(store: &Store, table: Table) -> Result<Vec<KeyValue>, RaftError> {
    let mut rows = Vec::new();
    store.for_each(table, |k, v| {
        rows.push((k.to_vec(), v.to_vec()));
        Ok(())
    })?;
    Ok(rows)
}

impl MqttState {
    /// Replaces every index with what RocksDB holds.
    pub(super) fn load(&mut self) -> Result<(), RaftError> {
        self.clear_indexes();
        self.load_meta()?;
        self.load_sessions()?;
        self.load_subscriptions()?;
        self.load_retained()?;
        self.load_queues()?;
        self.load_qos2_in()
    }

    fn clear_indexes(&mut self) {
        self.sessions.clear();
        *self.trie.write() = Trie::default();
        self.subs_by_client.clear();
        self.retained = RetainedIndex::default();
        self.queues.clear();
        self.queued = 0;
        self.msg_refs.clear();
        self.qos2_in.clear();
        self.timers.clear();
        self.timer_of.clear();
    }

    fn load_sessions(&mut self) -> Result<(), RaftError> {
        for (k, v) in rows(&self.store, Table::Sessions)? {
            let c: Arc<str> = Arc::from(keys::session_of(&k).unwrap_or_default());
            let rec: SessionRec = decode(&v)?;
            if let Some(n) = rec.node {
                self.trie.write().set_location(&c, Some(n));
            }
            self.sessions.insert(c.clone(), rec);
            self.reschedule(&c);
        }
        Ok(())
    }

    fn load_subscriptions(&mut self) -> Result<(), RaftError> {
        for (k, v) in rows(&self.store, Table::Subscriptions)? {
            let Some((c, f)) = keys::subscription_of(&k) else {
                continue;
            };
            let f = String::from_utf8_lossy(f).to_string();
            let opts: SubOpts = decode(&v)?;
            let c = self.intern(c);
            self.trie.write().insert(&f, &c, opts);
            self.subs_by_client.entry(c).or_default().insert(f, opts);
        }
        Ok(())
    }

    fn load_retained(&mut self) -> Result<(), RaftError> {
        for (k, v) in rows(&self.store, Table::Retained)? {
            let m: Message = decode(&v)?;
            debug_assert_eq!(m.topic.as_bytes(), keys::retained_of(&k));
            self.retained.insert(Arc::new(m));
        }
        Ok(())
    }

    /// The queues with the messages they reference (each stored once).
    fn load_queues(&mut self) -> Result<(), RaftError> {
        let mut msgs: HashMap<u64, Arc<Message>> = HashMap::new();
        for (k, v) in rows(&self.store, Table::Messages)? {
            if let Some(id) = keys::message_of(&k) {
                msgs.insert(id, Arc::new(decode(&v)?));
            }
        }
        for (k, v) in rows(&self.store, Table::Queues)? {
            let Some((c, seq)) = keys::queue_of(&k) else {
                continue;
            };
            let r: QueueRec = decode(&v)?;
            let Some(msg) = msgs.get(&r.msg_id) else {
                return Err(RaftError::Encode(format!(
                    "queue item {c}/{seq} references missing message {}",
                    r.msg_id
                )));
            };
            *self.msg_refs.entry(r.msg_id).or_default() += 1;
            let item = QItem::new(r, msg.clone());
            let c = self.intern(c);
            if self
                .queues
                .entry(c)
                .or_default()
                .insert(seq, item)
                .is_none()
            {
                self.queued += 1;
            }
        }
        Ok(())
    }

    fn load_qos2_in(&mut self) -> Result<(), RaftError> {
        for (k, _) in rows(&self.store, Table::Qos2In)? {
            if let Some((c, pid)) = keys::qos2_of(&k) {
                let c = self.intern(c);
                self.qos2_in.entry(c).or_default().insert(pid);
            }
        }
        Ok(())
    }
}
