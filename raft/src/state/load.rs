//! Rebuilding the in-memory indexes from the state tables, at start and
//! after a snapshot is installed. Queues are not read: their counts are in
//! the session records, and their items stay on disk.

use std::sync::Arc;

use raftmq_storage::keys;
use raftmq_storage::{Store, Table};

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
        self.load_reclaim()?;
        self.load_auth()?;
        self.load_qos2_in()
    }

    fn clear_indexes(&mut self) {
        self.sessions.clear();
        *self.trie.write() = Trie::default();
        self.subs_by_client.clear();
        self.retained = RetainedIndex::default();
        self.queued = 0;
        self.reclaim.clear();
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
            self.queued += rec.queue.items;
            self.sessions.insert(c.clone(), Box::new(rec));
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
