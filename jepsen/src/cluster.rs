//! A three-node raftmq cluster in its own network: started fresh for a run
//! (node 1 bootstraps, the others join it), waited on through `/health`,
//! and torn down (processes, then namespaces) on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::admin;
use crate::net::Network;
use crate::node::{Node, NodeSpec};

pub struct Cluster {
    /// `nodes[i]` has id `i + 1`. Declared before `net` so the processes
    /// stop before their namespaces go.
    pub nodes: Vec<Node>,
    pub net: Network,
}

/// How the cluster is started.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub size: usize,
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub config: Option<String>,
}

impl Cluster {
    /// Creates the network and starts every node; returns once each answers
    /// `/health` 200 and all are voters.
    pub fn start(spec: &ClusterSpec) -> anyhow::Result<Cluster> {
        let net = Network::create(spec.size).context("creating the network namespaces")?;
        let cookie = format!("jepsen-{}", std::process::id());
        let mut nodes = Vec::new();
        for id in 1..=spec.size as u64 {
            let dir = spec.dir.join(format!("n{id}"));
            std::fs::create_dir_all(&dir)?;
            nodes.push(Node::new(NodeSpec {
                id,
                addr: net.addr(id),
                namespace: net.namespace(id),
                binary: spec.binary.clone(),
                dir,
                join: None,
                config: spec.config.clone(),
                cookie: cookie.clone(),
            }));
        }
        let first = nodes[0].cluster();
        for n in nodes.iter_mut().skip(1) {
            n.spec.join = Some(first);
        }
        let mut c = Cluster { nodes, net };
        c.nodes[0].start()?;
        c.wait_healthy(&[1], Duration::from_secs(30))?;
        for i in 1..c.nodes.len() {
            c.nodes[i].start()?;
            let id = c.nodes[i].id();
            c.wait_healthy(&[id], Duration::from_secs(30))?;
        }
        c.wait_voters(spec.size, Duration::from_secs(30))?;
        Ok(c)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(Node::id).collect()
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// The MQTT addresses, in node order (node 1 first).
    pub fn mqtt_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(Node::mqtt).collect()
    }

    pub fn http_addrs(&self) -> Vec<(u64, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id(), n.http())).collect()
    }

    /// Waits until each of `ids` answers `/health` 200.
    pub fn wait_healthy(&mut self, ids: &[u64], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for &id in ids {
            loop {
                if admin::healthy(self.node(id).http()) {
                    break;
                }
                if !self.node_mut(id).is_running() {
                    bail!(
                        "node {id} exited; its log ends:\n{}",
                        self.node(id).log_tail(40)
                    );
                }
                if Instant::now() >= deadline {
                    bail!(
                        "node {id} not healthy within {timeout:?}; its log ends:\n{}",
                        self.node(id).log_tail(40)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Waits until `cluster show` lists `n` members.
    pub fn wait_voters(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            for node in &self.nodes {
                if let Ok((200, v)) = admin::call(
                    "GET",
                    node.http(),
                    "/api/v1/cluster/show",
                    Duration::from_secs(1),
                ) {
                    let members = v
                        .get("table")
                        .and_then(|t| t.as_array())
                        .map_or(0, Vec::len);
                    let changing = v
                        .get("membership_change_in_progress")
                        .and_then(|c| c.as_bool())
                        .unwrap_or(true);
                    if members == n && !changing {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!("the cluster did not reach {n} members within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The leader as some running node reports it.
    pub fn leader(&self) -> Option<u64> {
        self.nodes.iter().find_map(|n| {
            if n.is_paused() {
                return None;
            }
            admin::role(n.http()).ok().and_then(|r| r.leader)
        })
    }

    /// Stops every node gracefully, then the network goes on drop.
    pub fn stop(&mut self) {
        for n in &mut self.nodes {
            n.stop(Duration::from_secs(5));
        }
    }

    /// Copies each node's log into `dir` as `nodeN.log`.
    pub fn collect_logs(&self, dir: &Path) {
        for n in &self.nodes {
            let _ = std::fs::copy(n.log_path(), dir.join(format!("node{}.log", n.id())));
        }
    }
}
