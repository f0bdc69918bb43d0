//! openraft's state machine over [`MqttState`]: apply in batches; build,
//! serve, receive and install snapshots, each one a file in the data
//! directory (format: [`crate::snapshot_file`]), never a copy in memory.
//!
//! # Files
//! - `snapshot.bin`: the current snapshot. A newer one replaces it by
//!   rename, so the old one is gone as soon as the new one is complete, and a
//!   transfer that already opened the old one reads it to its end. At start
//!   only its header is read, so a restarted node serves it again at once.
//! - `snapshot.build-N.tmp`, `snapshot.recv-N.tmp`: a snapshot being built,
//!   or being received from the leader. Removed when that fails, and at
//!   start.
//!
//! # Building does not block apply
//! Under the state lock the builder takes only a RocksDB snapshot (a
//! sequence number, taken in O(1)) and copies `last_applied` and the
//! membership. Apply writes each batch of entries, `last_applied` included,
//! in one atomic WriteBatch while it holds the same lock, so that RocksDB
//! snapshot is exactly the state at `last_applied`. The lock is then
//! released and the rows are streamed from the RocksDB snapshot to the file
//! while apply goes on. All of it runs in one blocking task that owns a
//! clone of the `Store` (an `Arc` of the DB): a RocksDB snapshot borrows the
//! DB, so creating it inside the task that iterates it is what lets it
//! outlive the lock without a self-referential type. (A RocksDB checkpoint
//! would also work, but costs hard links, a second open of the DB and its
//! removal afterwards.)
//!
//! # Installing
//! openraft writes the chunks it receives into a file from
//! `begin_receiving_snapshot`. `install_snapshot` then, in order: reads the
//! whole file and checks it (a truncated or corrupt file is an error that
//! has changed nothing); takes the state lock; writes the install marker
//! (synced); renames the file to `snapshot.bin`; replaces the state tables
//! from it in bounded batches, the Meta rows and the marker's removal last
//! ([`MqttState::fill`]); rebuilds the indexes. A crash before the rename
//! leaves the state untouched, and after it the file on disk is the one to
//! install: [`recover_install`], at start, does it again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, RaftSnapshotBuilder, Snapshot, StorageIOError, StoredMembership};
use parking_lot::Mutex;
use raftmq_storage::{Store, Table};
use tracing::{error, info, warn};

use crate::command::Response;
use crate::error::RaftError;
use crate::snapshot_file::{self, SnapshotError, SnapshotWriter};
use crate::state::MqttState;
use crate::types::{Entry, LogId, Membership, NodeId, SnapshotMeta, StorageErr, TypeConfig};
use crate::view::Published;

/// The current snapshot, in the data directory.
const CURRENT: &str = "snapshot.bin";

/// The current snapshot's file in data directory `dir`.
pub(crate) fn current_file(dir: &Path) -> PathBuf {
    dir.join(CURRENT)
}

#[derive(Clone)]
pub struct StateMachine {
    pub state: Arc<Mutex<MqttState>>,
    files: Arc<Files>,
    /// Counts and settings for readers that must not take the state lock;
    /// republished after every applied batch.
    summary: Published,
}

fn sm_err(e: impl std::fmt::Display) -> StorageErr {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn read_snapshot_err(e: impl std::fmt::Display) -> StorageErr {
    StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into()
}

fn write_snapshot_err(e: impl std::fmt::Display) -> StorageErr {
    StorageIOError::write_snapshot(None, AnyError::error(e.to_string())).into()
}

fn io(e: io::Error) -> RaftError {
    SnapshotError::Io(e).into()
}

/// The meta of a snapshot of the state at `last`.
fn snapshot_meta(last: Option<LogId>, membership: Membership) -> SnapshotMeta {
    let snapshot_id = match last {
        Some(l) => format!("{}-{}", l.leader_id, l.index),
        None => "empty".to_string(),
    };
    SnapshotMeta {
        last_log_id: last,
        last_membership: membership,
        snapshot_id,
    }
}

/// A temporary snapshot file, removed when dropped unless kept.
struct Temp(Option<PathBuf>);

impl Temp {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = std::fs::remove_file(&p) {
                warn!(path = %p.display(), error = %e, "cannot remove a temporary snapshot file");
            }
        }
    }
}

/// A file handed to openraft to receive a snapshot into: its path, and its
/// identity (device, inode) to recognise the handle openraft gives back.
struct Receiving {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// The snapshot files of a data directory.
struct Files {
    dir: PathBuf,
    /// The meta of `snapshot.bin`, if there is one. Held while that file is
    /// replaced or opened, so the file and its meta always match.
    current: Mutex<Option<SnapshotMeta>>,
    /// Files handed out to receive into, oldest first.
    receiving: Mutex<Vec<Receiving>>,
    /// Numbers temporary files.
    seq: AtomicU64,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Files {
    /// Removes what a stopped node left half-written and reads the header
    /// of the current snapshot, if any.
    fn open(dir: &Path) -> Files {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("snapshot.") && name.ends_with(".tmp") {
                    info!(file = %name, "removing an unfinished snapshot file");
                    if let Err(err) = std::fs::remove_file(e.path()) {
                        warn!(file = %name, error = %err, "cannot remove it");
                    }
                }
            }
        }
        let path = dir.join(CURRENT);
        let current = match snapshot_file::read_meta(&path) {
            Ok(meta) => {
                info!(snapshot = %meta.snapshot_id, "serving the snapshot on disk");
                Some(meta)
            }
            Err(SnapshotError::Io(e)) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "ignoring a snapshot file that cannot be read; a new one is built when needed");
                None
            }
        };
        Files {
            dir: dir.to_path_buf(),
            current: Mutex::new(current),
            receiving: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        }
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// A new temporary file, open for reading and writing.
    fn temp(&self, kind: &str) -> io::Result<(Temp, File)> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("snapshot.{kind}-{n}.tmp"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((Temp(Some(path)), file))
    }

    /// Makes `tmp` (complete and synced) the current snapshot, unless the
    /// current one is newer and `force` is not set (then `tmp` is removed).
    /// True if it became current.
    fn publish(&self, tmp: Temp, meta: &SnapshotMeta, force: bool) -> io::Result<bool> {
        let mut current = self.current.lock();
        if !force
            && current
                .as_ref()
                .is_some_and(|c| c.last_log_id > meta.last_log_id)
        {
            return Ok(false);
        }
        std::fs::rename(tmp.path(), self.current_path())?;
        tmp.keep();
        sync_dir(&self.dir)?;
        *current = Some(meta.clone());
        Ok(true)
    }

    /// The current snapshot's meta and a handle on its file.
    fn open_current(&self) -> io::Result<Option<(SnapshotMeta, File)>> {
        let current = self.current.lock();
        match &*current {
            None => Ok(None),
            Some(meta) => Ok(Some((meta.clone(), File::open(self.current_path())?))),
        }
    }

    /// A new file to receive a snapshot into.
    fn begin_receiving(&self) -> io::Result<File> {
        let (tmp, file) = self.temp("recv")?;
        let md = file.metadata()?;
        let mut receiving = self.receiving.lock();
        // openraft receives one snapshot at a time: a new one abandons the
        // one before, which may only still be waiting for its install (the
        // install and this call race to the state machine). Older files
        // are abandoned: removed, so failed transfers do not fill the disk.
        let abandoned = receiving.len().saturating_sub(1);
        for old in receiving.drain(..abandoned) {
            drop(Temp(Some(old.path)));
        }
        receiving.push(Receiving {
            path: tmp.keep(),
            dev: md.dev(),
            ino: md.ino(),
        });
        Ok(file)
    }

    /// The receive file `file` is, as a [`Temp`]. Receive files handed out
    /// before it belong to transfers openraft abandoned (it receives one at
    /// a time, and a new one replaces the old): they are removed.
    fn received(&self, file: &File) -> io::Result<Option<Temp>> {
        let md = file.metadata()?;
        let mut receiving = self.receiving.lock();
        let Some(i) = receiving
            .iter()
            .position(|r| r.dev == md.dev() && r.ino == md.ino())
        else {
            return Ok(None);
        };
        for old in receiving.drain(..i) {
            drop(Temp(Some(old.path)));
        }
        Ok(Some(Temp(Some(receiving.remove(0).path))))
    }
}

impl StateMachine {
    /// The state machine over `state`, with its snapshot files in `dir`.
    pub(crate) fn new(
        state: Arc<Mutex<MqttState>>,
        dir: &Path,
        summary: Published,
    ) -> StateMachine {
        StateMachine {
            state,
            files: Arc::new(Files::open(dir)),
            summary,
        }
    }

    /// Builds a snapshot of the state as of now into a new file and makes it
    /// the current one (see the module docs for why apply is not blocked).
    /// `after_row` runs after each row is written.
    fn build(&self, after_row: impl FnMut()) -> Result<(SnapshotMeta, File), RaftError> {
        let started = Instant::now();
        let (tmp, file) = self.files.temp("build").map_err(io)?;
        let st = self.state.lock();
        let locked = Instant::now();
        let store = st.store().clone();
        let reader = store.reader();
        let meta = snapshot_meta(st.last_applied, st.membership.clone());
        drop(st);
        let lock_held = locked.elapsed();
        let mut out =
            SnapshotWriter::new(BufWriter::with_capacity(1 << 20, file), &meta, &Table::ALL)?;
        MqttState::dump(&reader, &mut out, after_row)?;
        // Release the RocksDB snapshot: compaction may drop what it pinned.
        drop(reader);
        let (out, written) = out.finish()?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        let current = self.files.publish(tmp, &meta, false).map_err(io)?;
        crate::metrics::Timings::since(&crate::metrics::TIMINGS.snapshot_build, started);
        info!(
            snapshot = %meta.snapshot_id,
            rows = written.rows,
            bytes = written.bytes,
            lock_held_us = lock_held.as_micros() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            current,
            "snapshot built"
        );
        Ok((meta, file))
    }

    /// Installs the received snapshot in `file` (see the module docs).
    fn install(&self, meta: &SnapshotMeta, mut file: File) -> Result<(), RaftError> {
        let started = Instant::now();
        let tmp = match self.files.received(&file).map_err(io)? {
            Some(tmp) => tmp,
            None => {
                // Not a file this node handed out: copy it to one of ours.
                let (tmp, mut copy) = self.files.temp("recv").map_err(io)?;
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                io::copy(&mut file, &mut copy).map_err(io)?;
                file = copy;
                tmp
            }
        };
        let (got, rows) = snapshot_file::verify(&file)?;
        if got.snapshot_id != meta.snapshot_id || got.last_log_id != meta.last_log_id {
            return Err(SnapshotError::Corrupt(format!(
                "the file holds snapshot {}, expected {}",
                got.snapshot_id, meta.snapshot_id
            ))
            .into());
        }
        file.sync_all().map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        let checked_ms = started.elapsed().as_millis() as u64;
        info!(snapshot = %meta.snapshot_id, rows, bytes, checked_ms, "installing a snapshot");
        let mut st = self.state.lock();
        let store = st.store().clone();
        store.put_raft_meta(MqttState::INSTALLING, meta.snapshot_id.as_bytes(), true)?;
        self.files.publish(tmp, meta, true).map_err(io)?;
        let (mut reader, _) = snapshot_file::open_file(&file)?;
        st.install_snapshot(&mut reader)?;
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        self.summary.publish(&st);
        drop(st);
        info!(
            snapshot = %meta.snapshot_id,
            rows,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot installed"
        );
        Ok(())
    }
}

/// At start, before the state is loaded: finishes a snapshot install that a
/// crash interrupted (the install marker is still there). If `snapshot.bin`
/// is the snapshot the marker names, the install had begun, or could have:
/// it is done again from that file. Otherwise the file had not been renamed
/// into place, so the state tables were not touched: the marker goes.
pub(crate) fn recover_install(store: &Store, dir: &Path) -> Result<(), RaftError> {
    let Some(id) = store.raft_meta(MqttState::INSTALLING)? else {
        return Ok(());
    };
    let id = String::from_utf8_lossy(&id).into_owned();
    let path = dir.join(CURRENT);
    let damaged = |e: &dyn std::fmt::Display| {
        RaftError::Raft(format!(
            "the install of snapshot {id} was interrupted and {} cannot be read ({e}); \
             the state tables may be half replaced: wipe the data directory and join the cluster again",
            path.display()
        ))
    };
    let on_disk = match snapshot_file::read_meta(&path) {
        Ok(meta) => Some(meta.snapshot_id),
        Err(SnapshotError::Io(e)) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(damaged(&e)),
    };
    if on_disk.as_deref() != Some(id.as_str()) {
        info!(snapshot = %id, "a snapshot install was interrupted before it changed the state");
        store.delete_raft_meta(MqttState::INSTALLING)?;
        return Ok(());
    }
    warn!(snapshot = %id, "a snapshot install was interrupted; installing the snapshot again");
    let file = File::open(&path).map_err(|e| damaged(&e))?;
    snapshot_file::verify(&file).map_err(|e| damaged(&e))?;
    let (mut reader, _) = snapshot_file::open_file(&file)?;
    let rows = MqttState::fill(store, &mut reader)?;
    info!(snapshot = %id, rows, "interrupted snapshot install finished");
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageErr> {
        let this = self.clone();
        let (meta, file) = tokio::task::spawn_blocking(move || this.build(|| {}))
            .await
            .map_err(write_snapshot_err)?
            .map_err(|e| {
                error!(error = %e, "building a snapshot failed");
                write_snapshot_err(e)
            })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId>,
            StoredMembership<NodeId, crate::types::NodeInfo>,
        ),
        StorageErr,
    > {
        let st = self.state.lock();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageErr>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let _timer = crate::metrics::TIMINGS.apply(entries.len());
        let mut st = self.state.lock();
        let out = st.apply_entries(entries).map_err(sm_err);
        self.summary.publish(&st);
        out
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageErr> {
        let file = self.files.begin_receiving().map_err(write_snapshot_err)?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageErr> {
        // Waits for the writes openraft still has in flight.
        let file = snapshot.into_std().await;
        let this = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || this.install(&meta, file))
            .await
            .map_err(sm_err)?
            .map_err(|e| {
                error!(error = %e, "installing a snapshot failed");
                sm_err(e)
            })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageErr> {
        let current = self.files.open_current().map_err(read_snapshot_err)?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::mpsc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::command::*;
    use crate::state::{NoEvents, Row};

    /// A state machine on its own data directory.
    struct Node {
        dir: tempfile::TempDir,
        sm: StateMachine,
    }

    /// Opens the state machine of `dir` the way `RaftNode::start` does.
    fn open(dir: &Path) -> StateMachine {
        let store = Store::open(&dir.join("db")).expect("open db");
        recover_install(&store, dir).expect("recover");
        let st = MqttState::open(store, Arc::new(NoEvents)).expect("load");
        StateMachine::new(Arc::new(Mutex::new(st)), dir, Published::default())
    }

    fn entry(index: u64, cmds: Vec<Command>) -> Entry {
        crate::types::test_entry(index, cmds)
    }

    fn message(topic: &str, qos: u8, retain: bool, size: usize) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from(vec![b'x'; size]),
            qos,
            retain,
            publisher: "p".into(),
            props: MsgProps::default(),
            created_ms: 1000,
            expires_ms: None,
        }
    }

    fn publish(packet_id: u16, m: Message) -> Command {
        Command::Publish(Publish {
            client_id: "p".into(),
            packet_id,
            msg: m.into(),
        })
    }

    impl Node {
        fn new() -> Node {
            let dir = tempfile::tempdir().expect("tempdir");
            let sm = open(dir.path());
            Node { dir, sm }
        }

        /// Applies one entry, right after the last applied one.
        fn apply(&self, cmds: Vec<Command>) -> Vec<CmdResult> {
            let mut st = self.sm.state.lock();
            let index = st.last_applied.map_or(1, |l| l.index + 1);
            let mut out = st.apply_entries(vec![entry(index, cmds)]).expect("apply");
            out.remove(0).results
        }

        /// A state touching every table: a persistent session with a
        /// subscription and queued messages, retained messages, an inbound
        /// QoS 2 id, settings.
        fn fill(&self, retained: usize, size: usize) {
            let r = self.apply(vec![Command::Register(Register {
                client_id: "s".into(),
                node: 1,
                clean_start: false,
                expiry_s: NEVER,
                will: None,
                now_ms: 1000,
            })]);
            let CmdResult::Registered { epoch, .. } = r[0] else {
                panic!("{r:?}");
            };
            self.apply(vec![
                Command::Subscribe(Subscribe {
                    client_id: "s".into(),
                    epoch,
                    filters: vec![("q/#".into(), SubOpts::with_qos(1))],
                }),
                Command::Disconnect(Disconnect {
                    client_id: "s".into(),
                    epoch,
                    publish_will: false,
                    new_expiry_s: None,
                    now_ms: 2000,
                }),
            ]);
            self.apply(
                (0..5)
                    .map(|i| publish(0, message(&format!("q/{i}"), 1, false, size)))
                    .collect(),
            );
            self.apply(vec![publish(7, message("q/two", 2, false, 10))]);
            for chunk in (0..retained).collect::<Vec<_>>().chunks(500) {
                self.apply(
                    chunk
                        .iter()
                        .map(|i| publish(0, message(&format!("r/{i}"), 1, true, size)))
                        .collect(),
                );
            }
        }

        fn rows(&self) -> Vec<Row> {
            self.sm.state.lock().snapshot_rows().expect("rows")
        }

        fn last_applied(&self) -> Option<LogId> {
            self.sm.state.lock().last_applied
        }

        /// The files of the data directory, other than the database.
        fn files(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
                .expect("read dir")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "db")
                .collect();
            names.sort();
            names
        }

        /// `bytes` as a snapshot received by this node, then installed.
        fn receive(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), RaftError> {
            let mut f = self.sm.files.begin_receiving().expect("receive file");
            f.write_all(bytes).expect("write");
            self.sm.install(meta, f)
        }
    }

    /// The rows of a snapshot file, as `snapshot_rows` lists a state.
    fn file_rows(file: &File) -> (SnapshotMeta, Vec<Row>) {
        let (mut r, meta) = snapshot_file::open_file(file).expect("header");
        let mut rows = Vec::new();
        while let Some((t, k, v)) = r.next_row().expect("row") {
            let i = Table::ALL.iter().position(|x| *x == t).expect("table") as u8;
            rows.push((i, k.to_vec(), v.to_vec()));
        }
        (meta, rows)
    }

    fn file_bytes(file: &File) -> Vec<u8> {
        let mut f = file;
        let mut b = Vec::new();
        f.seek(SeekFrom::Start(0)).expect("seek");
        io::Read::read_to_end(&mut f, &mut b).expect("read");
        b
    }

    #[test]
    fn apply_goes_on_while_a_snapshot_is_written_and_the_snapshot_is_the_state_before_it() {
        let n = Node::new();
        n.fill(2000, 64);
        let (before, last) = (n.rows(), n.last_applied());
        let (mid_tx, mid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let sm = n.sm.clone();
        let build = std::thread::spawn(move || {
            let mut first = true;
            sm.build(move || {
                if std::mem::take(&mut first) {
                    // Stop in the middle of the dump until the test applied.
                    mid_tx.send(()).expect("signal");
                    go_rx.recv_timeout(Duration::from_secs(20)).expect("go");
                }
            })
        });
        mid_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the dump started");
        // The dump is between two rows: the lock must be free, and apply
        // (openraft's path, on a runtime) must finish.
        assert!(
            n.sm.state.try_lock_for(Duration::from_secs(5)).is_some(),
            "the state lock is held during the dump"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut sm = n.sm.clone();
        let index = last.map_or(1, |l| l.index + 1);
        let late = entry(index, vec![publish(0, message("late", 1, true, 8))]);
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), sm.apply(vec![late]))
                .await
                .expect("apply finished during the dump")
                .expect("apply");
        });
        go_tx.send(()).expect("go");
        let (meta, file) = build.join().expect("build thread").expect("build");
        assert_eq!(
            meta.last_log_id, last,
            "the snapshot is at the lock's point"
        );
        let (header, rows) = file_rows(&file);
        assert_eq!(header, meta);
        assert_eq!(rows, before, "every row as of that point, none after");
        assert_eq!(n.last_applied().map(|l| l.index), Some(index));
        assert_ne!(n.rows(), before, "the late publish is in the state");
    }

    #[test]
    fn a_snapshot_installed_on_an_empty_node_reproduces_every_table_row_by_row() {
        let a = Node::new();
        a.fill(300, 2000);
        let (meta, file) = a.sm.build(|| {}).expect("build");
        assert_eq!(a.files(), vec![CURRENT.to_string()]);
        let b = Node::new();
        b.receive(&meta, &file_bytes(&file)).expect("install");
        let (ra, rb) = (a.rows(), b.rows());
        assert!(ra.len() > 300);
        for (i, t) in Table::ALL.iter().enumerate() {
            let of = |rows: &[Row]| rows.iter().filter(|r| r.0 as usize == i).count();
            assert_eq!(of(&ra), of(&rb), "{t:?}");
        }
        assert_eq!(ra, rb);
        {
            let (sa, sb) = (a.sm.state.lock(), b.sm.state.lock());
            assert_eq!(sb.last_applied, sa.last_applied);
            assert_eq!(sb.membership, sa.membership);
            assert_eq!(sb.retained_count(), 300);
            assert_eq!(sb.session_count(), sa.session_count());
        }
        // B keeps the file as its own snapshot (the receive file was
        // renamed), serves it, and still serves it after a restart.
        assert_eq!(b.files(), vec![CURRENT.to_string()]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let Node { dir, sm } = b;
        drop(sm);
        let mut reopened = open(dir.path());
        let served = rt
            .block_on(reopened.get_current_snapshot())
            .expect("get")
            .expect("a snapshot");
        assert_eq!(served.meta, meta);
        let served = rt.block_on(served.snapshot.into_std());
        assert_eq!(file_bytes(&served), file_bytes(&file));
    }

    #[test]
    fn a_newer_snapshot_replaces_the_old_file_and_an_older_build_does_not() {
        let n = Node::new();
        n.fill(10, 10);
        let (old, _) = n.sm.build(|| {}).expect("build");
        n.apply(vec![publish(0, message("r/new", 1, true, 10))]);
        let (new, _) = n.sm.build(|| {}).expect("build");
        assert!(new.last_log_id > old.last_log_id);
        assert_eq!(n.files(), vec![CURRENT.to_string()]);
        assert_eq!(
            snapshot_file::read_meta(&n.dir.path().join(CURRENT)).expect("meta"),
            new
        );
        // An older snapshot finishing late (a build racing an install) is
        // dropped, not made current.
        let (tmp, _) = n.sm.files.temp("build").expect("temp");
        assert!(!n.sm.files.publish(tmp, &old, false).expect("publish"));
        assert_eq!(n.files(), vec![CURRENT.to_string()]);
        let current = n.sm.files.open_current().expect("open").expect("some");
        assert_eq!(current.0, new);
    }

    #[test]
    fn a_truncated_or_corrupt_snapshot_is_refused_and_changes_nothing() {
        let a = Node::new();
        a.fill(50, 100);
        let (meta, file) = a.sm.build(|| {}).expect("build");
        let good = file_bytes(&file);
        let b = Node::new();
        b.apply(vec![publish(0, message("mine", 1, true, 10))]);
        let (own, _) = b.sm.build(|| {}).expect("own snapshot");
        let (rows, last) = (b.rows(), b.last_applied());
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x01;
        let mut other = meta.clone();
        other.snapshot_id = "another".into();
        for (what, bytes, meta) in [
            ("truncated", &good[..good.len() / 2], &meta),
            ("no trailer", &good[..good.len() - 1], &meta),
            ("a flipped bit", &flipped[..], &meta),
            ("empty", &[][..], &meta),
            ("another snapshot's meta", &good[..], &other),
        ] {
            let err = b.receive(meta, bytes).expect_err(what);
            assert!(matches!(err, RaftError::Snapshot(_)), "{what}: {err}");
            assert_eq!(b.rows(), rows, "{what}: the state changed");
            assert_eq!(b.last_applied(), last, "{what}");
            let store = b.sm.state.lock().store().clone();
            assert!(store
                .raft_meta(MqttState::INSTALLING)
                .expect("meta")
                .is_none());
            assert_eq!(b.files(), vec![CURRENT.to_string()], "{what}: files left");
            let current = b.sm.files.open_current().expect("open").expect("some");
            assert_eq!(current.0, own, "{what}: the current snapshot changed");
        }
    }

    #[test]
    fn abandoned_receive_files_are_removed_and_leftovers_go_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tmp_files = || {
            std::fs::read_dir(dir.path())
                .expect("read dir")
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .count()
        };
        let files = Files::open(dir.path());
        for _ in 0..5 {
            files.begin_receiving().expect("receive file");
        }
        assert_eq!(tmp_files(), 2, "the newest and the one before it");
        // A build a crash interrupted.
        std::mem::forget(files.temp("build").expect("temp").0);
        assert_eq!(tmp_files(), 3);
        let _restarted = Files::open(dir.path());
        assert_eq!(tmp_files(), 0);
    }

    #[test]
    fn an_install_interrupted_after_the_rename_is_done_again_at_start() {
        let a = Node::new();
        a.fill(100, 100);
        let (meta, file) = a.sm.build(|| {}).expect("build");
        let b = Node::new();
        b.apply(vec![publish(0, message("mine", 1, true, 10))]);
        // What install did before a crash: the marker, the rename, and some
        // of the rows (the first batches, the old rows deleted).
        {
            let store = b.sm.state.lock().store().clone();
            store
                .put_raft_meta(MqttState::INSTALLING, meta.snapshot_id.as_bytes(), true)
                .expect("marker");
            std::fs::write(b.dir.path().join(CURRENT), file_bytes(&file)).expect("file");
            let mut half = store.replace_state(1).expect("replace");
            half.put(Table::Retained, b"half", b"x").expect("put");
            drop(half);
            let mut meta_rows = 0;
            store
                .for_each(Table::Meta, |_, _| {
                    meta_rows += 1;
                    Ok(())
                })
                .expect("meta");
            assert_eq!(meta_rows, 0, "a half install has no last_applied");
        }
        let Node { dir, sm } = b;
        drop(sm);
        let b = Node {
            sm: open(dir.path()),
            dir,
        };
        assert_eq!(b.rows(), a.rows());
        assert_eq!(b.last_applied(), a.last_applied());
        let store = b.sm.state.lock().store().clone();
        assert!(store
            .raft_meta(MqttState::INSTALLING)
            .expect("meta")
            .is_none());
    }

    #[test]
    fn an_install_interrupted_before_the_rename_left_the_state_as_it_was() {
        let b = Node::new();
        b.fill(10, 10);
        let (rows, last) = (b.rows(), b.last_applied());
        let store = b.sm.state.lock().store().clone();
        store
            .put_raft_meta(MqttState::INSTALLING, b"1-1-999", true)
            .expect("marker");
        drop(store);
        let Node { dir, sm } = b;
        drop(sm);
        let b = Node {
            sm: open(dir.path()),
            dir,
        };
        assert_eq!(b.rows(), rows);
        assert_eq!(b.last_applied(), last);
        let store = b.sm.state.lock().store().clone();
        assert!(store
            .raft_meta(MqttState::INSTALLING)
            .expect("meta")
            .is_none());
    }
}
