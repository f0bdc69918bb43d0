//! One raftmq node under test: its process, started inside its network
//! namespace with `ip netns exec`, its data directory and log file, and the
//! process faults (SIGKILL, SIGSTOP/SIGCONT, a wiped data directory).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Ports every node uses on its own address.
pub const MQTT_PORT: u16 = 1883;
pub const HTTP_PORT: u16 = 8888;
pub const CLUSTER_PORT: u16 = 7000;

/// How a node is started: everything but the process.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    pub addr: Ipv4Addr,
    pub namespace: String,
    pub binary: PathBuf,
    /// Its directory: `data/` and `node.log` inside.
    pub dir: PathBuf,
    /// The inter-node address of a member to join when the data directory is
    /// new; `None` bootstraps a cluster.
    pub join: Option<SocketAddr>,
    /// Config file contents, if any.
    pub config: Option<String>,
    pub cookie: String,
}

pub struct Node {
    pub spec: NodeSpec,
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

impl Node {
    pub fn new(spec: NodeSpec) -> Node {
        Node {
            spec,
            child: None,
            paused: false,
            starts: 0,
        }
    }

    pub fn id(&self) -> u64 {
        self.spec.id
    }

    pub fn mqtt(&self) -> SocketAddr {
        SocketAddr::new(self.spec.addr.into(), MQTT_PORT)
    }

    pub fn http(&self) -> SocketAddr {
        SocketAddr::new(self.spec.addr.into(), HTTP_PORT)
    }

    pub fn cluster(&self) -> SocketAddr {
        SocketAddr::new(self.spec.addr.into(), CLUSTER_PORT)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.spec.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.spec.dir.join("node.log")
    }

    /// Starts the process (it is not waited on: see the cluster's health
    /// checks).
    pub fn start(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.data_dir())?;
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        writeln!(log, "===== raftmq-jepsen: start #{} =====", self.starts)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.spec.namespace])
            .arg(&self.spec.binary)
            .arg("start")
            .args(["--node-id", &self.spec.id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--mqtt", &self.mqtt().to_string()])
            .args(["--http", &self.http().to_string()])
            .args(["--cluster", &self.cluster().to_string()])
            .env("RAFTMQ_COOKIE", &self.spec.cookie);
        if let Some(j) = self.spec.join {
            cmd.args(["--join", &j.to_string()]);
        }
        if let Some(cfg) = &self.spec.config {
            let path = self.spec.dir.join("raftmq.toml");
            std::fs::write(&path, cfg)?;
            cmd.arg("--config").arg(path);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        self.child = Some(cmd.spawn()?);
        self.paused = false;
        Ok(())
    }

    /// Whether the process is alive (it may be paused).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on a pid we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// SIGTERM (a graceful stop), waiting up to `limit` before SIGKILL.
    pub fn stop(&mut self, limit: std::time::Duration) {
        if self.paused {
            self.resume();
        }
        self.signal(libc::SIGTERM);
        let deadline = std::time::Instant::now() + limit;
        while self.is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// Removes the data directory (the node must be stopped).
    pub fn wipe(&mut self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.data_dir()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        self.kill();
    }
}
