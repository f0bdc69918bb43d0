//! `raftmq dev-cluster`: three local nodes joined into one cluster, for trying
//! raftmq out. All three start together (node 1 bootstraps a new directory;
//! nodes 2 and 3 join it), so a second run on the same directory restarts the
//! same cluster with its data: each node needs the others for a quorum. The
//! ports a directory was made with and its cookie are kept in it, and said.
//! Each node is a child process running `raftmq start`; Ctrl-C or SIGTERM
//! stops them all, each with SIGTERM (its graceful stop), waiting for them to
//! exit. If dev-cluster itself dies (SIGKILL), the kernel sends each node
//! SIGTERM (PR_SET_PDEATHSIG), so no node outlives it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cli::Admin;

pub struct Ports {
    pub dir: PathBuf,
    pub mqtt: u16,
    pub http: u16,
    pub cluster: u16,
    pub config: Option<PathBuf>,
}

impl Ports {
    /// The ports as the directory records them.
    fn record(&self) -> String {
        format!(
            "mqtt={} http={} cluster={}\n",
            self.mqtt, self.http, self.cluster
        )
    }
}

/// How long the three nodes have to become healthy.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Stops the children when dropped (normal exit, error or Ctrl-C): SIGTERM
/// to each, then waits for them, past [`STOP_WAIT`] with SIGKILL.
struct Children(Vec<Child>);

/// A node's stop takes at most 10 s; a little more, then it is killed.
const STOP_WAIT: Duration = Duration::from_secs(12);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) on our own child's pid; no memory involved.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + STOP_WAIT;
        for c in &mut self.0 {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

pub fn run(p: Ports) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the raftmq binary")?;
    for base in [p.mqtt, p.http, p.cluster] {
        for port in base..base.saturating_add(3) {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!("port {port} is in use (another dev-cluster, or a node still running?); choose others with --mqtt-port, --http-port, --cluster-port");
            }
        }
    }
    std::fs::create_dir_all(&p.dir).with_context(|| format!("creating {}", p.dir.display()))?;
    let again = check_ports(&p)?;
    let (cookie, cookie_from) = cookie(&p.dir)?;
    println!(
        "raftmq dev-cluster: {} three nodes in {}",
        if again { "restarting the" } else { "starting" },
        p.dir.display()
    );
    let mut kids = Children(Vec::new());
    for i in 0..3u16 {
        let id = i + 1;
        let dir = p.dir.join(format!("node{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = std::fs::File::create(log_path(&p.dir, id))
            .with_context(|| format!("creating the log of node {id}"))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("start")
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--mqtt", &format!("127.0.0.1:{}", p.mqtt + i)])
            .args(["--http", &format!("127.0.0.1:{}", p.http + i)])
            .args(["--cluster", &format!("127.0.0.1:{}", p.cluster + i)])
            .env("RAFTMQ_COOKIE", &cookie)
            // Their own process group: a terminal's Ctrl-C reaches only
            // dev-cluster, which then stops each node once, with SIGTERM (a
            // second signal would make a node skip its graceful stop).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(c) = &p.config {
            cmd.arg("--config").arg(c);
        }
        // A dev-cluster that dies without stopping its nodes (SIGKILL, a
        // crash) takes them down too: each gets SIGTERM, its graceful stop.
        // SAFETY: prctl(2) between fork and exec, async-signal-safe; it
        // touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Only a new data directory joins; one with data ignores --join.
        if id > 1 {
            cmd.args(["--join", &format!("127.0.0.1:{}", p.cluster)]);
        }
        kids.0
            .push(cmd.spawn().with_context(|| format!("starting node {id}"))?);
    }
    wait_all_healthy(&p, &mut kids.0)?;
    println!("raftmq dev-cluster: 3 nodes up");
    println!("  node  mqtt             http             cluster          log");
    for i in 0..3u16 {
        println!(
            "  {}     127.0.0.1:{:<5}  127.0.0.1:{:<5}  127.0.0.1:{:<5}  {}",
            i + 1,
            p.mqtt + i,
            p.http + i,
            p.cluster + i,
            log_path(&p.dir, i + 1).display()
        );
    }
    println!("cookie: {cookie} ({cookie_from}); a node started by hand joins with RAFTMQ_COOKIE={cookie} raftmq start ... --join 127.0.0.1:{}", p.cluster);
    println!("try: raftmq cluster show --admin 127.0.0.1:{}", p.http);
    println!(
        "Ctrl-C stops the cluster; data stays in {} (run dev-cluster again to restart it)",
        p.dir.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut signals = crate::shutdown::Signals::install()?;
        let stop = signals.next();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => {
                    println!("stopping the nodes");
                    return Ok(());
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    for (i, c) in kids.0.iter_mut().enumerate() {
                        if let Some(st) = c.try_wait()? {
                            bail!("node {} exited ({st}); see {}", i + 1, log_path(&p.dir, i as u16 + 1).display());
                        }
                    }
                }
            }
        }
    })
}

fn log_path(dir: &Path, id: u16) -> PathBuf {
    dir.join(format!("node{id}.log"))
}

/// A directory made by an earlier run keeps its ports (its nodes' addresses
/// are in the cluster's membership): another set is refused, saying which.
/// Returns whether the directory holds an earlier cluster.
fn check_ports(p: &Ports) -> anyhow::Result<bool> {
    let file = p.dir.join("ports");
    match std::fs::read_to_string(&file) {
        Ok(old) if old == p.record() => Ok(true),
        Ok(old) => bail!(
            "{} holds a dev-cluster made with ports {} (its members know each other by those addresses); \
             run again with those ports, or use another --dir",
            p.dir.display(),
            old.trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if p.dir.join("node1").exists() {
                bail!(
                    "{} holds node directories but no record of their ports; use another --dir",
                    p.dir.display()
                );
            }
            std::fs::write(&file, p.record())
                .with_context(|| format!("writing {}", file.display()))?;
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// The cluster's cookie: `RAFTMQ_COOKIE` when set, else the one kept in the
/// directory (made at the first run). Returns it and where it came from.
fn cookie(dir: &Path) -> anyhow::Result<(String, String)> {
    if let Ok(c) = std::env::var("RAFTMQ_COOKIE") {
        if !c.is_empty() {
            return Ok((c, "from RAFTMQ_COOKIE".into()));
        }
    }
    let file = dir.join("cookie");
    match std::fs::read_to_string(&file) {
        Ok(c) if !c.trim().is_empty() => {
            Ok((c.trim().to_string(), format!("kept in {}", file.display())))
        }
        _ => {
            let c = format!("dev-{:016x}", rand::random::<u64>());
            std::fs::write(&file, format!("{c}\n"))
                .with_context(|| format!("writing {}", file.display()))?;
            Ok((c, format!("made now and kept in {}", file.display())))
        }
    }
}

/// Waits until every node answers `/health` with 200; a node that exits or
/// stays unhealthy fails the start, with the end of its log.
fn wait_all_healthy(p: &Ports, kids: &mut [Child]) -> anyhow::Result<()> {
    let start = Instant::now();
    let admins: Vec<Admin> = (0..3u16)
        .map(|i| Admin::new(format!("127.0.0.1:{}", p.http + i)))
        .collect();
    let mut healthy = [false; 3];
    while start.elapsed() < START_LIMIT {
        for (i, c) in kids.iter_mut().enumerate() {
            if let Some(st) = c.try_wait()? {
                bail!(
                    "node {} exited during start-up ({st}); the end of its log:\n{}",
                    i + 1,
                    log_tail(&log_path(&p.dir, i as u16 + 1))
                );
            }
            healthy[i] = healthy[i] || admins[i].is_healthy();
        }
        if healthy.iter().all(|h| *h) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let i = healthy.iter().position(|h| !*h).unwrap_or(0);
    bail!(
        "node {} was not healthy within {START_LIMIT:?}; the end of its log:\n{}",
        i + 1,
        log_tail(&log_path(&p.dir, i as u16 + 1))
    )
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
