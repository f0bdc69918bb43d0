//! The cluster's network: one namespace per node, each joined by a veth pair
//! to a bridge in the root namespace, where the clients live (so clients
//! always reach every node). Partitions are iptables DROP rules inside the
//! nodes' namespaces, between node addresses only; healing flushes them.
//! Everything created is removed on drop.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("network namespaces need root (run as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN)")]
    NotRoot,
}

/// Runs a command; `Err` with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> Result<(), NetError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The nodes' network for one run.
pub struct Network {
    /// Short unique tag in every interface and namespace name.
    tag: String,
    subnet: [u8; 3],
    nodes: usize,
    /// Node pairs (lower id first) currently cut.
    cut: BTreeSet<(u64, u64)>,
}

static RUNS: AtomicU32 = AtomicU32::new(0);

impl Network {
    /// Creates the bridge, the namespaces and their links for `nodes` nodes
    /// (ids 1..=nodes).
    pub fn create(nodes: usize) -> Result<Network, NetError> {
        if unsafe { libc::geteuid() } != 0 {
            return Err(NetError::NotRoot);
        }
        let pid = std::process::id();
        let run_no = RUNS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("rj{}x{}", pid % 100_000, run_no % 100);
        // 10.(100..199).(0..255).0/24, varied by process and run so that
        // concurrent runs (parallel tests) do not share a subnet.
        let subnet = [
            10,
            100 + (pid % 100) as u8,
            ((pid / 100) as u8) ^ (run_no as u8).wrapping_mul(37),
        ];
        let net = Network {
            tag,
            subnet,
            nodes,
            cut: BTreeSet::new(),
        };
        net.build()?;
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// The namespace node `id` runs in.
    pub fn namespace(&self, id: u64) -> String {
        format!("{}n{id}", self.tag)
    }

    fn veth(&self, id: u64) -> String {
        format!("{}v{id}", self.tag)
    }

    /// Node `id`'s address (on the bridge's subnet).
    pub fn addr(&self, id: u64) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, id as u8)
    }

    fn host_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    fn build(&self) -> Result<(), NetError> {
        let br = self.bridge();
        run("ip", &["link", "add", &br, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", self.host_addr()),
                "dev",
                &br,
            ],
        )?;
        run("ip", &["link", "set", &br, "up"])?;
        // Bridged frames pass the root FORWARD chain when br_netfilter is
        // loaded; a host firewall's DROP policy must not cut the nodes off.
        run(
            "iptables",
            &["-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        )?;
        for id in 1..=self.nodes as u64 {
            let ns = self.namespace(id);
            let veth = self.veth(id);
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &veth, "master", &br])?;
            run("ip", &["link", "set", &veth, "up"])?;
            let addr = format!("{}/24", self.addr(id));
            self.exec(id, "ip", &["addr", "add", &addr, "dev", "eth0"])?;
            self.exec(id, "ip", &["link", "set", "eth0", "up"])?;
            self.exec(id, "ip", &["link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Runs a command inside node `id`'s namespace.
    pub fn exec(&self, id: u64, program: &str, args: &[&str]) -> Result<(), NetError> {
        let ns = self.namespace(id);
        let mut all = vec!["netns", "exec", ns.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Cuts the network so that only nodes in the same group talk; a node in
    /// no group keeps every link (a bridge). Adds to cuts already in place.
    pub fn partition(&mut self, groups: &[Vec<u64>]) -> Result<(), NetError> {
        let group_of = |n: u64| groups.iter().position(|g| g.contains(&n));
        let mut pairs = Vec::new();
        for a in 1..=self.nodes as u64 {
            for b in (a + 1)..=self.nodes as u64 {
                if let (Some(ga), Some(gb)) = (group_of(a), group_of(b)) {
                    if ga != gb {
                        pairs.push((a, b));
                    }
                }
            }
        }
        self.cut_pairs(&pairs)
    }

    /// Cuts the links between each pair of nodes (both directions).
    pub fn cut_pairs(&mut self, pairs: &[(u64, u64)]) -> Result<(), NetError> {
        for &(a, b) in pairs {
            let key = (a.min(b), a.max(b));
            if !self.cut.insert(key) {
                continue;
            }
            for (me, peer) in [(a, b), (b, a)] {
                let peer = self.addr(peer).to_string();
                self.exec(me, "iptables", &["-A", "INPUT", "-s", &peer, "-j", "DROP"])?;
                self.exec(me, "iptables", &["-A", "OUTPUT", "-d", &peer, "-j", "DROP"])?;
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> Result<(), NetError> {
        for id in 1..=self.nodes as u64 {
            self.exec(id, "iptables", &["-F", "INPUT"])?;
            self.exec(id, "iptables", &["-F", "OUTPUT"])?;
        }
        self.cut.clear();
        Ok(())
    }

    /// The pairs cut now, e.g. "1-2 1-3".
    pub fn describe_cuts(&self) -> String {
        self.cut
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for id in 1..=self.nodes as u64 {
            let _ = run("ip", &["netns", "del", &self.namespace(id)]);
        }
        let br = self.bridge();
        let _ = run(
            "iptables",
            &["-D", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        );
        let _ = run("ip", &["link", "del", &br]);
    }
}
