//! [`Broker`]: one broker process under test on free ports with a fresh data
//! directory: start, wait for readiness, restart, SIGKILL, pause, its CLI and
//! admin API, its log; killed on drop. It runs the `raftmq` binary or, for
//! checking the tests themselves, Debian's `mosquitto`
//! (`RAFTMQ_TEST_BROKER=mosquitto`).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::http::http_get;
use super::process::{kill_and_reap, run_cmd, signal, wait_exit, CmdOutput};
use super::unique::free_port;

/// How long the broker gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

fn tail_of_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

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
    /// `--log-level` (None: the node's default filter).
    pub log_level: Option<String>,
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
        let mut b = Self::new(1, None, backend(), config);
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
        Self::new(node_id, join, Backend::Raftmq, config)
    }

    /// Not started yet: free ports and a fresh temporary directory.
    fn new(node_id: u64, join: Option<u16>, backend: Backend, config: Option<String>) -> Broker {
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
            log_level: None,
            backend,
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
        if let Err(f) = self.await_ready() {
            panic!(
                "node {} did not become ready (status {:?}); its log:\n{}",
                self.node_id, f.status, f.log
            );
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
            signal(c, if on { "-STOP" } else { "-CONT" });
        }
    }

    /// Sends the broker process a signal, e.g. "-TERM".
    pub fn signal(&self, sig: &str) {
        if let Some(c) = self.child.as_ref() {
            signal(c, sig);
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its status,
    /// or `None` if it is still running (it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_exit(self.child.as_mut()?, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Replaces the config file its next start uses (`None`: no file).
    pub fn set_config(&mut self, config: Option<&str>) {
        self.config = config.map(str::to_string);
    }

    /// Runs `raftmq ARGS --admin <this node's HTTP address>`.
    pub fn cli(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(broker_bin());
        cmd.args(args)
            .arg("--admin")
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
        let mut b = Self::new(1, None, backend(), Some(toml.to_string()));
        b.spawn().expect("spawn broker");
        let status = wait_exit(b.child.as_mut().unwrap(), timeout);
        if status.is_some() {
            b.child = None;
        } else {
            b.kill9();
        }
        let log = std::fs::read_to_string(b.log_path()).unwrap_or_default();
        (status, log)
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
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
            kill_and_reap(&mut c);
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
                if let Some(l) = &self.log_level {
                    cmd.arg("--log-level").arg(l);
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
        self.await_ready()
    }

    /// Waits until the started process is ready: `Err` if it has exited (or
    /// was never started), or is not ready within [`READY_TIMEOUT`] (then it
    /// is killed).
    fn await_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = match self.child.as_mut() {
                None => Some(None),
                Some(c) => c.try_wait().ok().flatten().map(Some),
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(StartFailure {
                    status,
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
