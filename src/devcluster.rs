//! `raftmq dev-cluster`: three local nodes joined into one cluster, for trying
//! raftmq out. Node 1 bootstraps; nodes 2 and 3 start with `--join` node 1.
//! Each is a child process running `raftmq start`; Ctrl-C or SIGTERM stops
//! them all, each with SIGTERM (its graceful stop), waiting for them to exit
//! (a SIGKILLed dev-cluster leaves them running).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub struct Ports {
    pub dir: PathBuf,
    pub mqtt: u16,
    pub http: u16,
    pub cluster: u16,
    pub config: Option<PathBuf>,
}

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
    let cookie = std::env::var("RAFTMQ_COOKIE").unwrap_or_else(|_| "raftmq-dev-cluster".into());
    let mut kids = Children(Vec::new());
    for i in 0..3u16 {
        let id = i + 1;
        let dir = p.dir.join(format!("node{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = std::fs::File::create(p.dir.join(format!("node{id}.log")))
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
        if id > 1 {
            cmd.args(["--join", &format!("127.0.0.1:{}", p.cluster)]);
        }
        kids.0
            .push(cmd.spawn().with_context(|| format!("starting node {id}"))?);
        // Node 1 first, so the others have a cluster to join.
        if id == 1 {
            wait_healthy(p.http, &mut kids.0[0], Duration::from_secs(60))?;
        }
    }
    for i in 1..3u16 {
        wait_healthy(p.http + i, &mut kids.0[i as usize], Duration::from_secs(60))?;
    }
    println!(
        "raftmq dev-cluster: 3 nodes up (logs in {}/nodeN.log)",
        p.dir.display()
    );
    println!("  node  mqtt             http             cluster");
    for i in 0..3u16 {
        println!(
            "  {}     127.0.0.1:{}   127.0.0.1:{}   127.0.0.1:{}",
            i + 1,
            p.mqtt + i,
            p.http + i,
            p.cluster + i
        );
    }
    println!("try: raftmq cluster show --node 127.0.0.1:{}", p.http);
    println!(
        "Ctrl-C stops the cluster; data stays in {}",
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
                            bail!("node {} exited ({st}); see its log", i + 1);
                        }
                    }
                }
            }
        }
    })
}

fn wait_healthy(port: u16, child: &mut Child, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let node = format!("127.0.0.1:{port}");
    while start.elapsed() < limit {
        if let Some(st) = child.try_wait()? {
            bail!("a node exited during start-up ({st}); see its log");
        }
        if crate::cli::is_healthy(&node) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the node on HTTP port {port} was not healthy within {limit:?}")
}
