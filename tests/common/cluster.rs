//! [`Cluster`]: several raftmq processes joined into one Raft cluster.

use std::thread;
use std::time::{Duration, Instant};

use super::broker::Broker;
use super::wait::wait_until;

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

    /// SIGKILLs every node, then starts them all again on their data
    /// directories and waits until each is ready (in a quorum again). They
    /// start together: none can be ready before a majority is up.
    pub fn sigkill_all_and_restart(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        for n in &mut self.nodes {
            n.start_no_wait();
        }
        for n in &mut self.nodes {
            n.wait_ready();
        }
    }

    /// A node that is not the leader (and is running).
    pub fn follower(&mut self) -> u64 {
        let l = self.wait_leader(Duration::from_secs(10));
        (1..=self.nodes.len() as u64)
            .find(|&i| i != l && self.node_mut(i).is_running())
            .expect("a running follower")
    }
}
