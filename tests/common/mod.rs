//! Test harness shared by every integration test binary.
//!
//! * [`Broker`]: starts the `raftmq` binary (or, for checking the tests
//!   themselves, Debian's `mosquitto`: `RAFTMQ_TEST_BROKER=mosquitto`) on free
//!   ports with a fresh data dir, waits for readiness, kills it on drop.
//! * [`RawClient`]: a blocking MQTT client on a plain `TcpStream`, built on
//!   `raftmq::codec`, for exact protocol checks and malformed input.
//! * [`run_cmd`], [`BgProcess`], [`MosqSub`], [`mosquitto_pub`], [`python`]:
//!   external clients, every wait bounded.
//!
//! Every wait in here has a deadline; nothing blocks forever.

// Each test binary uses a different subset of the harness and its re-exports.
#![allow(dead_code, unused_imports)]

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
pub use raftmq::codec::{
    decode, encode, AckProperties, ConnAck, Connect, ConnectProperties, Disconnect,
    DisconnectProperties, LastWill, Packet, Protocol, PubResp, Publish, PublishProperties, QoS,
    SubAck, SubOptions, Subscribe, SubscribeFilter, SubscribeProperties, UnsubAck, Unsubscribe,
    WillProperties,
};

/// How long the broker gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound for "this packet should arrive".
pub const WAIT: Duration = Duration::from_secs(5);
/// Default bound for "nothing should arrive" checks.
pub const QUIET: Duration = Duration::from_millis(700);
/// The largest packet the raw client accepts (the MQTT maximum).
pub const MAX_PACKET: usize = 268_435_455;

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// A name unique within this test process (and across processes by pid).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port that was free a moment ago; never the same port twice per process.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        drop(l);
        if used_ports().lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// The first of `n` consecutive ports that were free a moment ago, all
/// reserved like [`free_port`]'s.
pub fn free_port_run(n: u16) -> u16 {
    loop {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let mut used = used_ports().lock().unwrap();
        let rest_free = (1..n).all(|i| {
            !used.contains(&(base + i)) && TcpListener::bind(("127.0.0.1", base + i)).is_ok()
        });
        if rest_free {
            used.extend((1..n).map(|i| base + i));
            return base;
        }
    }
}

/// Polls `cond` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn tail_of_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

// ---------------------------------------------------------------------------
// The broker under test
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Raftmq,
    /// Debian's mosquitto, to check the tests' client side. Only MQTT behaviour
    /// is comparable; raftmq's config keys, HTTP API, $SYS layout and
    /// durability are not.
    Mosquitto,
}

pub fn backend() -> Backend {
    match std::env::var("RAFTMQ_TEST_BROKER").as_deref() {
        Ok("mosquitto") => Backend::Mosquitto,
        _ => Backend::Raftmq,
    }
}

/// The broker binary: `$RAFTMQ_BIN` or the one cargo built for this test.
pub fn broker_bin() -> PathBuf {
    match std::env::var_os("RAFTMQ_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_raftmq")),
    }
}

pub struct Broker {
    pub node_id: u64,
    pub mqtt_port: u16,
    pub http_port: u16,
    /// Inter-node (Raft transport) port.
    pub cluster_port: u16,
    /// Cluster port of the member to join when the data directory is new.
    pub join: Option<u16>,
    /// distributed_cookie (None: the harness default).
    pub cookie: Option<String>,
    backend: Backend,
    dir: tempfile::TempDir,
    config: Option<String>,
    child: Option<Child>,
    starts: u32,
}

/// Why a broker did not become ready.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit status if the process exited; `None` if it was still running at
    /// the deadline (and was killed).
    pub status: Option<ExitStatus>,
    /// Its stderr/stdout.
    pub log: String,
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_inner(None)
    }

    pub fn start_with_config(toml: &str) -> Broker {
        Self::start_inner(Some(toml.to_string()))
    }

    fn start_inner(config: Option<String>) -> Broker {
        match Self::try_start(config) {
            Ok(b) => b,
            Err(f) => panic!(
                "broker did not become ready (status {:?}); its log:\n{}",
                f.status, f.log
            ),
        }
    }

    /// Starts a broker; `Err` if it exits or is not ready within [`READY_TIMEOUT`].
    pub fn try_start(config: Option<String>) -> Result<Broker, StartFailure> {
        let dir = tempfile::Builder::new()
            .prefix("raftmq-test-")
            .tempdir()
            .expect("tempdir");
        let mut b = Broker {
            node_id: 1,
            mqtt_port: free_port(),
            http_port: free_port(),
            cluster_port: free_port(),
            join: None,
            cookie: None,
            backend: backend(),
            dir,
            config,
            child: None,
            starts: 0,
        };
        b.spawn_and_wait()?;
        Ok(b)
    }

    /// A cluster node: `join` is the cluster port of a member to join (None
    /// bootstraps a new cluster). Waits until it is ready (in a quorum and
    /// accepting MQTT).
    pub fn try_start_node(
        node_id: u64,
        join: Option<u16>,
        config: Option<String>,
    ) -> Result<Broker, StartFailure> {
        let mut b = Self::unstarted_node(node_id, join, config);
        b.spawn_and_wait()?;
        Ok(b)
    }

    /// A cluster node, not started yet (see [`Broker::start_no_wait`]).
    pub fn unstarted_node(node_id: u64, join: Option<u16>, config: Option<String>) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("raftmq-test-")
            .tempdir()
            .expect("tempdir");
        Broker {
            node_id,
            mqtt_port: free_port(),
            http_port: free_port(),
            cluster_port: free_port(),
            join,
            cookie: None,
            backend: Backend::Raftmq,
            dir,
            config,
            child: None,
            starts: 0,
        }
    }

    /// Starts the process without waiting for it to become ready.
    pub fn start_no_wait(&mut self) {
        self.spawn().expect("spawn broker");
    }

    /// Waits until it is ready; panics with its log if it is not.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.is_ready() {
            assert!(
                Instant::now() < deadline && self.is_running(),
                "node {} did not become ready; its log:\n{}",
                self.node_id,
                self.log_tail(60)
            );
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// Kills the node and deletes its data directory.
    pub fn wipe(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(self.data_dir());
    }

    /// SIGSTOP / SIGCONT: the process freezes (as if partitioned) / resumes.
    pub fn pause(&self, on: bool) {
        if let Some(c) = self.child.as_ref() {
            let sig = if on { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Runs `raftmq ARGS --node <this node's HTTP address>`.
    pub fn cli(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(broker_bin());
        cmd.args(args)
            .arg("--node")
            .arg(format!("127.0.0.1:{}", self.http_port));
        run_cmd(&mut cmd, Duration::from_secs(60))
    }

    /// GET an admin API path and parse its JSON answer.
    pub fn api(&self, path: &str) -> (u16, serde_json::Value) {
        match http_get(self.http_port, path, Duration::from_secs(5)) {
            Ok((code, body)) => (code, serde_json::from_str(&body).unwrap_or_default()),
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    /// Runs the broker with `toml` as its config file and waits (bounded) for
    /// it to exit. Returns the exit status (`None` if it did not exit within
    /// `timeout`, in which case it was killed) and its log.
    pub fn run_expecting_exit(toml: &str, timeout: Duration) -> (Option<ExitStatus>, String) {
        let dir = tempfile::Builder::new()
            .prefix("raftmq-test-")
            .tempdir()
            .expect("tempdir");
        let mut b = Broker {
            node_id: 1,
            mqtt_port: free_port(),
            http_port: free_port(),
            cluster_port: free_port(),
            join: None,
            cookie: None,
            backend: backend(),
            dir,
            config: Some(toml.to_string()),
            child: None,
            starts: 0,
        };
        b.spawn().expect("spawn broker");
        let deadline = Instant::now() + timeout;
        let status = loop {
            match b.child.as_mut().unwrap().try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(25)),
                _ => break None,
            }
        };
        if status.is_some() {
            b.child = None;
        } else {
            b.kill9();
        }
        let log = std::fs::read_to_string(b.log_path()).unwrap_or_default();
        (status, log)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.mqtt_port))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log_path(), lines)
    }

    /// True while the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, then reap. No shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same data dir, ports and config.
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(f) = self.spawn_and_wait() {
            panic!(
                "broker did not become ready after restart (status {:?}); its log:\n{}",
                f.status, f.log
            );
        }
    }

    fn spawn(&mut self) -> io::Result<()> {
        std::fs::create_dir_all(self.data_dir())?;
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        writeln!(log, "===== harness: start #{} =====", self.starts)?;
        let log2 = log.try_clone()?;
        let mut cmd = match self.backend {
            Backend::Raftmq => {
                let mut cmd = Command::new(broker_bin());
                cmd.arg("start")
                    .arg("--node-id")
                    .arg(self.node_id.to_string())
                    .arg("--data-dir")
                    .arg(self.data_dir())
                    .arg("--mqtt")
                    .arg(format!("127.0.0.1:{}", self.mqtt_port))
                    .arg("--http")
                    .arg(format!("127.0.0.1:{}", self.http_port))
                    .arg("--cluster")
                    .arg(format!("127.0.0.1:{}", self.cluster_port))
                    .env(
                        "RAFTMQ_COOKIE",
                        self.cookie.as_deref().unwrap_or("raftmq-test-cookie"),
                    );
                if let Some(j) = self.join {
                    cmd.arg("--join").arg(format!("127.0.0.1:{j}"));
                }
                if let Some(cfg) = &self.config {
                    let path = self.dir.path().join("raftmq.toml");
                    std::fs::write(&path, cfg)?;
                    cmd.arg("--config").arg(path);
                }
                if std::env::var_os("RUST_LOG").is_none() {
                    cmd.env("RUST_LOG", "info");
                }
                cmd
            }
            Backend::Mosquitto => {
                let path = self.dir.path().join("mosquitto.conf");
                std::fs::write(&path, self.mosquitto_conf())?;
                let mut cmd = Command::new("/usr/sbin/mosquitto");
                cmd.arg("-c").arg(path);
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log));
        self.child = Some(cmd.spawn()?);
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        if let Err(e) = self.spawn() {
            return Err(StartFailure {
                status: None,
                log: format!("cannot spawn {}: {e}", broker_bin().display()),
            });
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(st)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                return Err(StartFailure {
                    status: Some(st),
                    log: self.log_tail(60),
                });
            }
            if self.is_ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill9();
                return Err(StartFailure {
                    status: None,
                    log: self.log_tail(60),
                });
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    fn is_ready(&self) -> bool {
        if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(300)).is_err() {
            return false;
        }
        match self.backend {
            Backend::Raftmq => matches!(
                http_get(self.http_port, "/health", Duration::from_secs(2)),
                Ok((200, _))
            ),
            Backend::Mosquitto => true,
        }
    }

    /// A rough translation of the raftmq config keys that mosquitto shares.
    fn mosquitto_conf(&self) -> String {
        let mut out = format!(
            "listener {} 127.0.0.1\npersistence false\nallow_anonymous true\n",
            self.mqtt_port
        );
        let mut users = Vec::new();
        let mut in_users = false;
        for line in self.config.as_deref().unwrap_or("").lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_users = line == "[users]";
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            if in_users {
                users.push((k.to_string(), v.to_string()));
                continue;
            }
            let key = match k {
                "allow_anonymous" | "max_inflight_messages" | "max_packet_size" => k,
                "max_offline_messages" => "max_queued_messages",
                "server_keep_alive" => "max_keepalive",
                _ => continue,
            };
            out.push_str(&format!("{key} {v}\n"));
        }
        if !users.is_empty() {
            let pw = self.dir.path().join("passwd");
            std::fs::write(&pw, "").unwrap();
            for (u, p) in users {
                let _ = Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg(&pw)
                    .arg(u)
                    .arg(p)
                    .status();
            }
            out.push_str(&format!("password_file {}\n", pw.display()));
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "----- broker log tail ({}) -----\n{}\n----- end of broker log -----",
                self.log_path().display(),
                self.log_tail(80)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// `GET path` on 127.0.0.1:port over HTTP/1.1; returns (status, body).
/// Handles Content-Length, chunked and close-delimited bodies.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_txt = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_txt.split(';').next().unwrap().trim(), 16)
                .map_err(|e| io::Error::other(format!("bad chunk size: {e}")))?;
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        body = out;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

// ---------------------------------------------------------------------------
// External processes
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct CmdOutput {
    /// `None` when the process was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// Panics with everything the process printed unless it succeeded.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.success(),
            "{what} failed (status {:?}, timed out: {})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.timed_out,
            self.stdout,
            self.stderr
        );
    }
}

fn reader_thread<R: Read + Send + 'static>(r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut r = r;
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` to completion, killing it at `timeout`.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let out = reader_thread(child.stdout.take().unwrap());
    let err = reader_thread(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    CmdOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    }
}

/// A background process whose stdout lines are collected as they come.
/// Killed (SIGKILL) on drop.
pub struct BgProcess {
    name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl BgProcess {
    pub fn spawn(cmd: &mut Command) -> BgProcess {
        let name = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let stderr = Some(reader_thread(child.stderr.take().unwrap()));
        BgProcess {
            name,
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits (bounded) for a stdout line satisfying `pred`; returns it.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return Some(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    /// Every stdout line seen so far (including ones consumed by waits).
    pub fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    /// Sends a signal (`kill SIG pid`), e.g. "-TERM".
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }

    /// Kills the process and returns its stderr.
    pub fn kill_and_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn describe(&mut self) -> String {
        let seen = self.drain().join("\n");
        let err = self.kill_and_stderr();
        format!(
            "{}\n--- stdout ---\n{seen}\n--- stderr ---\n{err}",
            self.name
        )
    }
}

impl Drop for BgProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// mosquitto_pub / mosquitto_sub
// ---------------------------------------------------------------------------

/// Runs `mosquitto_pub -h 127.0.0.1 -p PORT ARGS...` (10 s bound).
pub fn mosquitto_pub(port: u16, args: &[&str]) -> CmdOutput {
    run_cmd(
        Command::new("mosquitto_pub")
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .args(args),
        Duration::from_secs(10),
    )
}

/// One message as printed by [`MosqSub`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosqMsg {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// `%P`: user properties as `k:v` separated by spaces (MQTT 5 only).
    pub user_props: String,
    /// `%C` content type, `%R` response topic, `%E` message expiry.
    pub content_type: String,
    pub response_topic: String,
    pub expiry: String,
    pub payload: String,
}

/// A running `mosquitto_sub` that has received its SUBACK.
pub struct MosqSub {
    pub proc: BgProcess,
}

const MOSQ_FORMAT: &str = "MSG\u{1}%t\u{1}%q\u{1}%r\u{1}%P\u{1}%C\u{1}%R\u{1}%E\u{1}%p";

impl MosqSub {
    /// Starts `mosquitto_sub -d -F ... ARGS` and waits (10 s) for its SUBACK.
    pub fn start(port: u16, args: &[&str]) -> MosqSub {
        // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe.
        let mut proc = BgProcess::spawn(
            Command::new("stdbuf")
                .arg("-oL")
                .arg("mosquitto_sub")
                .arg("-h")
                .arg("127.0.0.1")
                .arg("-p")
                .arg(port.to_string())
                .arg("-d")
                .arg("-F")
                .arg(MOSQ_FORMAT)
                .args(args),
        );
        if proc
            .wait_for_line(Duration::from_secs(10), |l| l.starts_with("Subscribed"))
            .is_none()
        {
            panic!("mosquitto_sub did not subscribe: {}", proc.describe());
        }
        MosqSub { proc }
    }

    /// Waits (bounded) for `n` messages; returns what arrived (maybe fewer).
    pub fn messages(&mut self, n: usize, timeout: Duration) -> Vec<MosqMsg> {
        let deadline = Instant::now() + timeout;
        let mut out = self.parsed();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || self
                    .proc
                    .wait_for_line(left, |l| l.starts_with("MSG\u{1}"))
                    .is_none()
            {
                break;
            }
            out = self.parsed();
        }
        out
    }

    fn parsed(&mut self) -> Vec<MosqMsg> {
        self.proc
            .drain()
            .iter()
            .filter_map(|l| l.strip_prefix("MSG\u{1}"))
            .map(|rest| {
                let f: Vec<&str> = rest.splitn(8, '\u{1}').collect();
                let g = |i: usize| f.get(i).copied().unwrap_or("").to_string();
                MosqMsg {
                    topic: g(0),
                    qos: g(1).parse().unwrap_or(255),
                    retain: g(2) == "1",
                    user_props: g(3),
                    content_type: g(4),
                    response_topic: g(5),
                    expiry: g(6),
                    payload: g(7),
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Python (paho-mqtt)
// ---------------------------------------------------------------------------

/// A python3 that can `import paho.mqtt.client`: `$RAFTMQ_PYTHON`, else
/// `python3` on PATH, else Debian's `/usr/bin/python3`.
pub fn python_interpreter() -> PathBuf {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("RAFTMQ_PYTHON") {
            candidates.push(p.into());
        }
        candidates.push("python3".into());
        candidates.push("/usr/bin/python3".into());
        candidates.into_iter().find(|py| {
            run_cmd(
                Command::new(py).arg("-c").arg("import paho.mqtt.client"),
                Duration::from_secs(20),
            )
            .success()
        })
    })
    .clone()
    .expect("no python3 with paho-mqtt (install python3-paho-mqtt, or set RAFTMQ_PYTHON)")
}

pub fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py")
        .join(name)
}

/// Runs `python3 tests/py/<script> ARGS...`, bounded by `timeout`.
pub fn python(script: &str, args: &[&str], timeout: Duration) -> CmdOutput {
    run_cmd(
        Command::new(python_interpreter())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-u")
            .arg(py_script(script))
            .args(args),
        timeout,
    )
}

// ---------------------------------------------------------------------------
// Raw MQTT client on raftmq::codec
// ---------------------------------------------------------------------------

/// What a bounded read produced.
#[derive(Debug)]
pub enum Recv {
    Packet(Packet),
    Timeout,
    /// EOF or reset: the broker closed the connection.
    Closed,
    /// The bytes from the broker did not decode.
    Error(String),
}

pub struct RawClient {
    stream: TcpStream,
    rbuf: BytesMut,
    pub proto: Protocol,
    pending: VecDeque<Packet>,
    next_pid: u16,
    /// The largest packet the client accepts when decoding.
    pub max_packet_size: usize,
    /// Topic aliases the broker established towards this client (MQTT 5).
    aliases: std::collections::HashMap<u16, String>,
}

impl RawClient {
    /// Opens a TCP connection; sends nothing.
    pub fn open(port: u16, proto: Protocol) -> RawClient {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, WAIT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        RawClient {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            proto,
            pending: VecDeque::new(),
            next_pid: 1,
            max_packet_size: MAX_PACKET,
            aliases: Default::default(),
        }
    }

    /// Connects with `connect` (encoded for `proto`) and returns the CONNACK.
    /// Panics unless the first packet back is a CONNACK.
    pub fn connect(port: u16, proto: Protocol, connect: Connect) -> (RawClient, ConnAck) {
        let mut c = RawClient::open(port, proto);
        c.send(&Packet::Connect(Box::new(connect)));
        match c.recv(WAIT) {
            Recv::Packet(Packet::ConnAck(ack)) => (c, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Like [`connect`](Self::connect) but never panics: for clients that
    /// retry while the broker is down.
    pub fn try_connect(
        port: u16,
        proto: Protocol,
        connect: Connect,
        timeout: Duration,
    ) -> Result<(RawClient, ConnAck), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut c = RawClient {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            proto,
            pending: VecDeque::new(),
            next_pid: 1,
            max_packet_size: MAX_PACKET,
            aliases: Default::default(),
        };
        c.try_send(&Packet::Connect(Box::new(connect)))
            .map_err(|e| e.to_string())?;
        match c.recv(timeout) {
            Recv::Packet(Packet::ConnAck(ack)) if ack.code == 0 => Ok((c, ack)),
            other => Err(format!("no accepting CONNACK: {other:?}")),
        }
    }

    /// Connects and asserts the CONNACK accepted the connection.
    pub fn connect_ok(port: u16, proto: Protocol, connect: Connect) -> (RawClient, ConnAck) {
        let (c, ack) = RawClient::connect(port, proto, connect);
        assert_eq!(ack.code, 0, "CONNACK refused: {ack:?}");
        (c, ack)
    }

    /// MQTT 3.1.1 client, keepalive 60 s.
    pub fn v3(port: u16, client_id: &str, clean: bool) -> (RawClient, ConnAck) {
        RawClient::connect_ok(port, Protocol::V311, v3_connect(client_id, clean))
    }

    /// MQTT 5 client, keepalive 60 s, with the given session expiry.
    pub fn v5(
        port: u16,
        client_id: &str,
        clean_start: bool,
        session_expiry: Option<u32>,
    ) -> (RawClient, ConnAck) {
        RawClient::connect_ok(
            port,
            Protocol::V5,
            v5_connect(client_id, clean_start, session_expiry),
        )
    }

    pub fn pid(&mut self) -> u16 {
        let p = self.next_pid;
        self.next_pid = if p == u16::MAX { 1 } else { p + 1 };
        p
    }

    pub fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        encode(p, self.proto, &mut out).unwrap_or_else(|e| panic!("encode {p:?}: {e:?}"));
        self.stream
            .write_all(&out)
            .unwrap_or_else(|e| panic!("write {p:?}: {e}"));
    }

    /// Like [`send`](Self::send) but returns write errors (the broker may
    /// already have closed the connection).
    pub fn try_send(&mut self, p: &Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        encode(p, self.proto, &mut out).unwrap_or_else(|e| panic!("encode {p:?}: {e:?}"));
        self.stream.write_all(&out)
    }

    /// Writes raw bytes (for malformed input).
    pub fn send_bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b)
    }

    /// Encodes a packet to bytes without sending it.
    pub fn encode_bytes(&self, p: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(p, self.proto, &mut out).unwrap_or_else(|e| panic!("encode {p:?}: {e:?}"));
        out.to_vec()
    }

    /// The next packet (queued ones first), bounded by `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Recv {
        if let Some(p) = self.pending.pop_front() {
            return Recv::Packet(p);
        }
        self.recv_wire(timeout)
    }

    fn recv_wire(&mut self, timeout: Duration) -> Recv {
        let deadline = Instant::now() + timeout;
        loop {
            match decode(&mut self.rbuf, self.proto, self.max_packet_size as _) {
                Ok(Some(p)) => {
                    self.learn_alias(&p);
                    return Recv::Packet(p);
                }
                Ok(None) => {}
                Err(e) => return Recv::Error(format!("{e:?}")),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Recv::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Recv::Closed,
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    if Instant::now() >= deadline {
                        return Recv::Timeout;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Recv::Closed,
            }
        }
    }

    fn learn_alias(&mut self, p: &Packet) {
        if let Packet::Publish(publ) = p {
            if let Some(a) = publ.properties.topic_alias {
                if !publ.topic.is_empty() {
                    self.aliases.insert(a, publ.topic.clone());
                }
            }
        }
    }

    /// The topic of a received PUBLISH, resolving a topic alias the broker
    /// set up earlier on this connection. Panics on an unknown alias.
    pub fn resolved_topic(&self, p: &Publish) -> String {
        if !p.topic.is_empty() {
            return p.topic.clone();
        }
        let a = p
            .properties
            .topic_alias
            .unwrap_or_else(|| panic!("PUBLISH with empty topic and no alias: {p:?}"));
        self.aliases
            .get(&a)
            .cloned()
            .unwrap_or_else(|| panic!("PUBLISH uses topic alias {a} never set up: {p:?}"))
    }

    /// The next packet; panics on timeout, close or decode error.
    pub fn expect_packet(&mut self, timeout: Duration) -> Packet {
        match self.recv(timeout) {
            Recv::Packet(p) => p,
            other => panic!("expected a packet within {timeout:?}, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub fn expect_publish(&mut self, timeout: Duration) -> Publish {
        match self.expect_packet(timeout) {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Receives PUBLISHes until `n` arrived or `timeout` passed, acking each
    /// (QoS 1: PUBACK; QoS 2: PUBREC, and PUBCOMP for PUBRELs that arrive).
    pub fn collect_publishes(&mut self, n: usize, timeout: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left) {
                Recv::Packet(Packet::Publish(p)) => {
                    self.ack_start(&p);
                    out.push(p);
                }
                Recv::Packet(Packet::PubRel(r)) => {
                    self.send(&Packet::PubComp(pubresp(r.packet_id)))
                }
                Recv::Packet(Packet::PingResp) => {}
                Recv::Packet(other) => panic!("unexpected packet while collecting: {other:?}"),
                Recv::Timeout => break,
                other => panic!("connection failed while collecting publishes: {other:?}"),
            }
        }
        out
    }

    /// Asserts that no PUBLISH arrives within `dur` (other packets are kept).
    pub fn expect_no_publish(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        let mut keep = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left) {
                Recv::Packet(Packet::Publish(p)) => panic!("unexpected PUBLISH: {p:?}"),
                Recv::Packet(p) => keep.push(p),
                Recv::Timeout => break,
                // A closed connection would make "nothing arrived" vacuous.
                Recv::Closed => panic!("connection closed while checking that no PUBLISH arrives"),
                Recv::Error(e) => panic!("decode error: {e}"),
            }
        }
        self.pending.extend(keep);
    }

    /// Reads until the broker closes the connection; returns the packets it
    /// sent before closing. Panics if it stays open for `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration) -> Vec<Packet> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Packet> = self.pending.drain(..).collect();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_wire(left) {
                Recv::Packet(p) => got.push(p),
                Recv::Closed => return got,
                Recv::Timeout => {
                    panic!("connection still open after {timeout:?}; received before: {got:?}")
                }
                Recv::Error(e) => {
                    panic!("undecodable bytes from broker: {e}; received before: {got:?}")
                }
            }
        }
    }

    /// Asserts the broker closes the connection, MQTT 5 with a DISCONNECT
    /// carrying `reason` as its last packet. For 3.x, only the close.
    pub fn expect_disconnect(&mut self, reason: u8, timeout: Duration) {
        let got = self.expect_closed(timeout);
        if self.proto.is_v5() {
            match got.last() {
                Some(Packet::Disconnect(d)) => assert_eq!(
                    d.reason, reason,
                    "DISCONNECT reason 0x{:02x}, expected 0x{reason:02x}; all: {got:?}",
                    d.reason
                ),
                _ => {
                    panic!("connection closed without DISCONNECT 0x{reason:02x}; received: {got:?}")
                }
            }
        }
    }

    /// Waits for a packet matching `pred`, queueing the others for later.
    pub fn wait_for<F: FnMut(&Packet) -> bool>(
        &mut self,
        timeout: Duration,
        mut pred: F,
    ) -> Packet {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        // Queued packets first.
        let queued: Vec<Packet> = self.pending.drain(..).collect();
        let mut found = None;
        for p in queued {
            if found.is_none() && pred(&p) {
                found = Some(p);
            } else {
                skipped.push(p);
            }
        }
        if let Some(p) = found {
            self.pending.extend(skipped);
            return p;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_wire(left) {
                Recv::Packet(p) if pred(&p) => {
                    self.pending.extend(skipped);
                    return p;
                }
                Recv::Packet(p) => skipped.push(p),
                other => panic!(
                    "awaited packet did not arrive within {timeout:?}: {other:?}; other packets: {skipped:?}"
                ),
            }
        }
    }

    /// SUBSCRIBE and wait for its SUBACK.
    pub fn subscribe_with(&mut self, mut sub: Subscribe) -> SubAck {
        if sub.packet_id == 0 {
            sub.packet_id = self.pid();
        }
        let pid = sub.packet_id;
        self.send(&Packet::Subscribe(sub));
        match self.wait_for(
            WAIT,
            |p| matches!(p, Packet::SubAck(a) if a.packet_id == pid),
        ) {
            Packet::SubAck(a) => a,
            _ => unreachable!(),
        }
    }

    /// Subscribes to one filter and asserts the granted QoS.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        let ack = self.subscribe_with(subscribe_packet(filter, qos));
        assert_eq!(
            ack.reason_codes,
            vec![qos as u8],
            "SUBACK for {filter}: {ack:?}"
        );
        ack
    }

    pub fn unsubscribe(&mut self, filters: &[&str]) -> UnsubAck {
        let pid = self.pid();
        self.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: pid,
            filters: filters.iter().map(|s| s.to_string()).collect(),
            user_properties: vec![],
        }));
        match self.wait_for(
            WAIT,
            |p| matches!(p, Packet::UnsubAck(a) if a.packet_id == pid),
        ) {
            Packet::UnsubAck(a) => a,
            _ => unreachable!(),
        }
    }

    /// Publishes and completes the QoS flow; returns the final ack (PUBACK
    /// for QoS 1, PUBCOMP for QoS 2). Other packets are queued.
    pub fn publish_with(&mut self, mut p: Publish) -> Option<PubResp> {
        if p.qos != QoS::AtMostOnce && p.packet_id == 0 {
            p.packet_id = self.pid();
        }
        let pid = p.packet_id;
        let qos = p.qos;
        self.send(&Packet::Publish(p));
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => {
                match self.wait_for(
                    WAIT,
                    |p| matches!(p, Packet::PubAck(a) if a.packet_id == pid),
                ) {
                    Packet::PubAck(a) => Some(a),
                    _ => unreachable!(),
                }
            }
            QoS::ExactlyOnce => {
                let rec = match self.wait_for(
                    WAIT,
                    |p| matches!(p, Packet::PubRec(a) if a.packet_id == pid),
                ) {
                    Packet::PubRec(a) => a,
                    _ => unreachable!(),
                };
                if rec.reason >= 0x80 {
                    return Some(rec);
                }
                self.send(&Packet::PubRel(pubresp(pid)));
                match self.wait_for(
                    WAIT,
                    |p| matches!(p, Packet::PubComp(a) if a.packet_id == pid),
                ) {
                    Packet::PubComp(a) => Some(a),
                    _ => unreachable!(),
                }
            }
        }
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let mut p = publish_packet(topic, qos, payload);
        p.retain = retain;
        if let Some(ack) = self.publish_with(p) {
            assert!(ack.reason < 0x80, "publish to {topic} refused: {ack:?}");
        }
    }

    /// Sends the receiver's first ack for `p`: PUBACK (QoS 1) or PUBREC (QoS 2).
    pub fn ack_start(&mut self, p: &Publish) {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PubAck(pubresp(p.packet_id))),
            QoS::ExactlyOnce => self.send(&Packet::PubRec(pubresp(p.packet_id))),
        }
    }

    /// Acks `p` completely: PUBACK, or PUBREC + await PUBREL + PUBCOMP.
    pub fn ack(&mut self, p: &Publish) {
        self.ack_start(p);
        if p.qos == QoS::ExactlyOnce {
            let pid = p.packet_id;
            self.wait_for(
                WAIT,
                |x| matches!(x, Packet::PubRel(r) if r.packet_id == pid),
            );
            self.send(&Packet::PubComp(pubresp(pid)));
        }
    }

    pub fn ping(&mut self) {
        self.send(&Packet::PingReq);
        self.wait_for(WAIT, |p| matches!(p, Packet::PingResp));
    }

    /// Sends DISCONNECT (reason 0) and closes the socket.
    pub fn disconnect(mut self) {
        let _ = self.try_send(&Packet::Disconnect(Disconnect::default()));
        let _ = self.stream.shutdown(Shutdown::Write);
        // Wait (bounded) for the broker to close, so the disconnect is processed.
        let _ = self.drain_until_closed(WAIT);
    }

    /// Sends DISCONNECT with `reason` (MQTT 5) and closes.
    pub fn disconnect_with(mut self, d: Disconnect) {
        let _ = self.try_send(&Packet::Disconnect(d));
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self.drain_until_closed(WAIT);
    }

    fn drain_until_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_wire(left) {
                Recv::Closed => return true,
                Recv::Timeout => return false,
                Recv::Error(_) => return false,
                Recv::Packet(_) => {}
            }
        }
    }

    /// Closes the TCP connection without DISCONNECT (abrupt close).
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

// ---------------------------------------------------------------------------
// Packet builders
// ---------------------------------------------------------------------------

pub fn v3_connect(client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol: Some(Protocol::V311),
        clean_start: clean,
        keep_alive: 60,
        client_id: client_id.to_string(),
        ..Default::default()
    }
}

pub fn v5_connect(client_id: &str, clean_start: bool, session_expiry: Option<u32>) -> Connect {
    Connect {
        protocol: Some(Protocol::V5),
        clean_start,
        keep_alive: 60,
        client_id: client_id.to_string(),
        properties: ConnectProperties {
            session_expiry_interval: session_expiry,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn will(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic.to_string(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

pub fn publish_packet(topic: &str, qos: QoS, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_string(),
        packet_id: 0,
        payload: Bytes::copy_from_slice(payload),
        properties: PublishProperties::default(),
    }
}

pub fn sub_opts(qos: QoS) -> SubOptions {
    SubOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    }
}

pub fn subscribe_packet(filter: &str, qos: QoS) -> Subscribe {
    Subscribe {
        packet_id: 0,
        filters: vec![SubscribeFilter {
            filter: filter.to_string(),
            options: sub_opts(qos),
        }],
        properties: SubscribeProperties::default(),
    }
}

pub fn pubresp(packet_id: u16) -> PubResp {
    PubResp {
        packet_id,
        reason: 0,
        properties: AckProperties::default(),
    }
}

/// Hand-encodes an MQTT variable byte integer (for malformed packets).
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// Hand-encodes an MQTT UTF-8 string / binary field (for malformed packets).
pub fn mqtt_str(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// Payloads as strings, for readable asserts.
pub fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// Reads the whole file (for logs in asserts).
pub fn read_file(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

// ---------------------------------------------------------------------------
// A cluster of raftmq processes
// ---------------------------------------------------------------------------

/// Nodes of one cluster; `nodes[i]` has node id `i + 1`. Node 1 bootstraps,
/// the others join it. Every process is killed on drop.
pub struct Cluster {
    pub nodes: Vec<Broker>,
    config: Option<String>,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Self::start_with_config(n, None)
    }

    pub fn start_with_config(n: usize, config: Option<&str>) -> Cluster {
        let config = config.map(str::to_string);
        let first = Broker::try_start_node(1, None, config.clone())
            .unwrap_or_else(|f| panic!("node 1 did not start: {:?}\n{}", f.status, f.log));
        let mut c = Cluster {
            nodes: vec![first],
            config,
        };
        for _ in 1..n {
            c.add_node();
        }
        c.wait_voters(n);
        c
    }

    /// Starts one more node that joins through node 1 (or the first running
    /// node); returns its index.
    pub fn add_node(&mut self) -> usize {
        let id = self.nodes.len() as u64 + 1;
        let via = self.any_running().cluster_port;
        let b = Broker::try_start_node(id, Some(via), self.config.clone())
            .unwrap_or_else(|f| panic!("node {id} did not join: {:?}\n{}", f.status, f.log));
        self.nodes.push(b);
        self.nodes.len() - 1
    }

    pub fn node(&self, id: u64) -> &Broker {
        &self.nodes[id as usize - 1]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Broker {
        &mut self.nodes[id as usize - 1]
    }

    fn any_running(&mut self) -> &Broker {
        let i = (0..self.nodes.len())
            .find(|&i| self.nodes[i].is_running())
            .expect("no node is running");
        &self.nodes[i]
    }

    /// `cluster show` as JSON, asked of a running node.
    pub fn show(&mut self) -> serde_json::Value {
        let n = self.any_running();
        n.api("/api/v1/cluster/show").1
    }

    /// The leader's node id, as the running nodes agree on it.
    pub fn leader(&mut self) -> Option<u64> {
        self.show().get("leader").and_then(|l| l.as_u64())
    }

    pub fn wait_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                if self.node_mut(l).is_running() {
                    return l;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Voter ids, per `cluster show`.
    pub fn voters(&mut self) -> Vec<u64> {
        let v = self.show();
        let mut ids: Vec<u64> = v["table"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["role"] == "voter")
                    .filter_map(|r| r["node"].as_u64())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub fn wait_voters(&mut self, n: usize) {
        let ok = wait_until(Duration::from_secs(20), || self.voters().len() == n);
        let v = self.show();
        assert!(ok, "expected {n} voters: {v}");
    }

    /// A node that is not the leader (and is running).
    pub fn follower(&mut self) -> u64 {
        let l = self.wait_leader(Duration::from_secs(10));
        (1..=self.nodes.len() as u64)
            .find(|&i| i != l && self.node_mut(i).is_running())
            .expect("a running follower")
    }
}
