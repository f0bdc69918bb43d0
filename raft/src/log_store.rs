//! openraft's log storage over RocksDB, with group commit.
//!
//! `append` writes entries unsynced and hands the completion callback to a
//! flusher thread. The flusher takes every callback queued so far, syncs the
//! WAL once, and completes them all: one fsync per batch of appends, however
//! many there are, and openraft learns an entry is durable only after it is.
//! (openraft 0.9's core waits for each append's report before it goes on, so
//! in practice one append is queued at a time: the proposer's batching is
//! what puts many commands under one fsync.) The flusher runs at a raised
//! priority where the node may set one: it is on every commit's path.
//! The newest entries are also kept decoded in [`LogCache`], which serves
//! apply and replication without reading them back.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError, Vote};
use raftmq_storage::Store;

use crate::error::{decode, encode};
use crate::log_cache::LogCache;
use crate::metrics::{Timings, TIMINGS};
use crate::types::{Entry, LogId, NodeId, StorageErr, TypeConfig};

#[derive(Clone)]
pub struct LogStore {
    store: Store,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
    /// Bytes appended since this process started (read by the snapshot
    /// policy).
    appended: Arc<AtomicU64>,
    cache: Arc<LogCache>,
}

fn io_err(e: impl std::fmt::Display) -> StorageErr {
    StorageIOError::write_logs(openraft::AnyError::error(e.to_string())).into()
}
fn read_err(e: impl std::fmt::Display) -> StorageErr {
    StorageIOError::read_logs(openraft::AnyError::error(e.to_string())).into()
}

impl LogStore {
    pub fn new(store: Store) -> Result<LogStore, crate::RaftError> {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let s = store.clone();
        std::thread::Builder::new()
            .name("raftmq-log-flush".into())
            .spawn(move || flusher(s, rx))
            .map_err(|e| crate::RaftError::Raft(format!("spawning the log flusher thread: {e}")))?;
        Ok(LogStore {
            store,
            flusher: tx,
            appended: Arc::new(AtomicU64::new(0)),
            cache: Arc::new(LogCache::default()),
        })
    }

    /// The count of bytes appended, as it grows.
    pub fn appended(&self) -> Arc<AtomicU64> {
        self.appended.clone()
    }
}

/// The flusher's nice value: above the runtime's threads, so that a batch's
/// fsync is not kept waiting for a core while they run (it is on every
/// commit's path and uses little CPU itself).
const FLUSHER_NICE: i32 = -10;

/// Raises the calling thread's scheduling priority to [`FLUSHER_NICE`].
/// Without the privilege (CAP_SYS_NICE) the thread keeps the process's
/// priority, and the node runs as before.
fn raise_priority() {
    // SAFETY: gettid and setpriority have no memory preconditions; `who` is
    // this thread's id.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, FLUSHER_NICE)
    };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "the log flusher keeps the process's scheduling priority"
        );
    }
}

fn flusher(store: Store, rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    raise_priority();
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let res = Timings::time(&TIMINGS.fsync, || store.sync_wal());
        if let Err(e) = &res {
            tracing::error!(error = %e, "WAL sync failed; the node cannot make progress");
        }
        for cb in pending {
            let r = match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            cb.log_io_completed(r);
        }
    }
}

/// A bounded range as `[start, end)`.
fn cached_range(start: Bound<u64>, end: Bound<u64>) -> Option<(u64, u64)> {
    let start = match start {
        Bound::Included(i) => i,
        Bound::Excluded(i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match end {
        Bound::Included(i) => i.checked_add(1)?,
        Bound::Excluded(i) => i,
        Bound::Unbounded => return None,
    };
    Some((start, end))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageErr> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        if let Some(entries) = cached_range(start, end).and_then(|(a, b)| self.cache.get(a, b)) {
            return Ok(entries);
        }
        let rows = self.store.read_log(start, end).map_err(read_err)?;
        rows.into_iter()
            .map(|(_, b)| decode::<Entry>(&b).map_err(read_err))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageErr> {
        let purged: Option<LogId> = match self.store.raft_meta("purged").map_err(read_err)? {
            Some(b) => Some(decode(&b).map_err(read_err)?),
            None => None,
        };
        let last = match self.store.last_log().map_err(read_err)? {
            Some((_, b)) => Some(decode::<Entry>(&b).map_err(read_err)?.log_id),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageErr> {
        let b = encode(vote).map_err(io_err)?;
        self.store.put_raft_meta("vote", &b, true).map_err(io_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageErr> {
        match self.store.raft_meta("vote").map_err(read_err)? {
            Some(b) => Ok(Some(decode(&b).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageErr> {
        TIMINGS.committed(committed.map(|l| l.index));
        let b = encode(&committed).map_err(io_err)?;
        self.store
            .put_raft_meta("committed", &b, false)
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageErr> {
        match self.store.raft_meta("committed").map_err(read_err)? {
            Some(b) => decode(&b).map_err(read_err),
            None => Ok(None),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageErr>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut decoded = Vec::new();
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, encode(&e).map_err(io_err)?));
            decoded.push(e);
        }
        self.store
            .append_log(encoded.iter().map(|(i, b)| (*i, b.as_slice())))
            .map_err(io_err)?;
        let bytes: usize = encoded.iter().map(|(_, b)| b.len()).sum();
        self.appended.fetch_add(bytes as u64, Ordering::Relaxed);
        self.cache.append(
            decoded
                .into_iter()
                .zip(encoded.iter().map(|(_, b)| b.len())),
        );
        self.flusher
            .send(callback)
            .map_err(|_| io_err("log flusher stopped"))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageErr> {
        self.cache.truncate_from(log_id.index);
        self.store.truncate_log_from(log_id.index).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageErr> {
        self.cache.purge_upto(log_id.index);
        let b = encode(&log_id).map_err(io_err)?;
        self.store.purge_log_upto(log_id.index, &b).map_err(io_err)
    }
}
