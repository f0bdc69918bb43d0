//! What the netsplit tests share: a three-node cluster in network
//! namespaces (clients reach every node; iptables DROP cuts node-to-node
//! traffic only), waits on each node's own view of the split, admin calls,
//! and MQTT clients of either version.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_jepsen::admin;
use raftmq_jepsen::cluster::{Cluster, ClusterSpec};
use raftmq_jepsen::mqtt::{
    Client, Connack, ConnectOpts, MqttError, Publish, SessionState, Version,
};
use serde_json::Value;

use crate::common::raftmq_bin;

/// `netsplit_wait` in the tests' config (the default is 2 s).
pub const NETSPLIT_WAIT: Duration = Duration::from_millis(1000);
/// `commit_timeout` in the tests' config (the default): every refusal must
/// come well before it.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running cluster and the directory that holds its nodes.
pub struct Split {
    pub c: Cluster,
    _dir: tempfile::TempDir,
}

impl Split {
    /// Three nodes, every switch as `extra` config lines set it (off by
    /// default), `netsplit_wait` = [`NETSPLIT_WAIT`].
    pub fn start(extra: &str) -> Split {
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the netsplit tests need root (network namespaces, iptables)"
        );
        let dir = tempfile::Builder::new()
            .prefix("raftmq-netsplit-")
            .tempdir()
            .expect("tempdir");
        // RAFTMQ_NO_NETSPLIT_WAIT leaves the key out, to run these tests
        // against a build that predates it (a negative control).
        let wait = match std::env::var_os("RAFTMQ_NO_NETSPLIT_WAIT") {
            Some(_) => String::new(),
            None => format!("netsplit_wait = {}\n", NETSPLIT_WAIT.as_millis()),
        };
        let config = format!(
            "{wait}commit_timeout = {}\n{extra}\n",
            COMMIT_TIMEOUT.as_millis()
        );
        let spec = ClusterSpec {
            size: 3,
            binary: raftmq_bin(),
            dir: dir.path().to_path_buf(),
            config: Some(config),
        };
        let c = Cluster::start(&spec).expect("cluster starts");
        Split { c, _dir: dir }
    }

    pub fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.c.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A node that is not the leader.
    pub fn follower(&self) -> u64 {
        let l = self.leader();
        (1..=3).find(|id| *id != l).expect("a follower")
    }

    pub fn mqtt(&self, id: u64) -> SocketAddr {
        self.c.node(id).mqtt()
    }

    pub fn http(&self, id: u64) -> SocketAddr {
        self.c.node(id).http()
    }

    /// Cuts `alone` off from the two other nodes and waits until it says it
    /// is in netsplit.
    pub fn isolate(&mut self, alone: u64) {
        let others: Vec<u64> = (1..=3).filter(|id| *id != alone).collect();
        self.c
            .net
            .partition(&[vec![alone], others])
            .expect("partition");
        self.wait_netsplit(alone, true, Duration::from_secs(10));
    }

    /// Heals every cut and waits until every node is healthy.
    pub fn heal(&mut self) -> Duration {
        self.c.net.heal().expect("heal");
        let t = Instant::now();
        self.c
            .wait_healthy(&[1, 2, 3], Duration::from_secs(30))
            .expect("healthy after the heal");
        t.elapsed()
    }

    /// Heals every cut and watches every node's `/health` until all have
    /// answered 200 without a break for `steady`: returns how long after
    /// the heal the last non-200 answer came (zero if none did), by node.
    pub fn heal_until_stable(&mut self, steady: Duration) -> Vec<(u64, Duration)> {
        self.c.net.heal().expect("heal");
        let healed = Instant::now();
        let mut last_bad = [Some(healed); 3];
        let deadline = healed + Duration::from_secs(60);
        loop {
            for id in 1..=3u64 {
                if health(self.http(id)).0 != 200 {
                    last_bad[id as usize - 1] = Some(Instant::now());
                }
            }
            let now = Instant::now();
            let stable = last_bad
                .iter()
                .all(|b| b.is_none_or(|t| now.duration_since(t) >= steady));
            if stable {
                break;
            }
            assert!(now < deadline, "not stable within 60 s of the heal");
            std::thread::sleep(Duration::from_millis(50));
        }
        (1..=3u64)
            .map(|id| {
                let t =
                    last_bad[id as usize - 1].map_or(Duration::ZERO, |t| t.duration_since(healed));
                (id, t)
            })
            .collect()
    }

    /// Waits until node `id`'s `/health` says `netsplit` is `want`.
    pub fn wait_netsplit(&self, id: u64, want: bool, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let (code, h) = health(self.http(id));
            // A build without the field (a negative control) says it with
            // /health's code alone.
            let split = h
                .get("netsplit")
                .and_then(Value::as_bool)
                .unwrap_or(code == 503);
            if split == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: netsplit never became {want}: {h}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `raftmq set KEY=VALUE` through node `via` (cluster-wide keys go
    /// through the log).
    pub fn set(&self, via: u64, key: &str, value: &str) {
        let (code, v) = admin::call(
            "POST",
            self.http(via),
            &format!("/api/v1/set?{key}={value}"),
            Duration::from_secs(15),
        )
        .expect("set answers");
        assert_eq!(code, 200, "set {key}={value}: {v}");
    }

    /// Node `id`'s sessions: client id → subscription filters.
    pub fn sessions(&self, id: u64) -> std::collections::BTreeMap<String, Vec<String>> {
        admin::state(self.http(id)).expect("state").0
    }

    /// The node a session is connected to, as node `id` sees it.
    pub fn session_node(&self, id: u64, client: &str) -> Option<u64> {
        let (_, v) = admin::call(
            "GET",
            self.http(id),
            &format!("/api/v1/session/show?client_id={client}"),
            Duration::from_secs(5),
        )
        .expect("session show");
        v["table"].as_array()?.first()?.get("node")?.as_u64()
    }
}

pub fn health(node: SocketAddr) -> (u16, Value) {
    admin::call("GET", node, "/health", Duration::from_secs(2)).unwrap_or((0, Value::Null))
}

pub fn metric(node: SocketAddr, name: &str) -> Option<f64> {
    let text = ureq::get(&format!("http://{node}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Connects a persistent session (clean = false).
pub async fn connect(
    addr: SocketAddr,
    id: &str,
    v: Version,
) -> Result<(Client, Connack), MqttError> {
    connect_with(addr, id, v, SessionState::new()).await
}

pub async fn connect_with(
    addr: SocketAddr,
    id: &str,
    v: Version,
    state: SessionState,
) -> Result<(Client, Connack), MqttError> {
    let mut o = ConnectOpts::new(addr, id, v);
    o.timeout = COMMIT_TIMEOUT + Duration::from_secs(5);
    let r = Client::connect(&o, state).await;
    r.map(|(mut c, a)| {
        c.set_op_timeout(COMMIT_TIMEOUT + Duration::from_secs(5));
        (c, a)
    })
}

pub fn msg(topic: &str, payload: &str, qos: u8) -> Publish {
    Publish {
        topic: topic.into(),
        payload: Bytes::from(payload.to_string()),
        qos,
        retain: false,
        pkid: None,
        dup: false,
    }
}

/// Every payload received within `quiet` of the last one.
pub async fn drain(c: &mut Client, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Some(m)) = c.recv_timeout(quiet).await {
        out.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    out
}

/// Sends a bare CONNECT (clean, keep alive 60) and returns every byte the
/// broker sends until it closes the connection (or 15 s pass).
pub fn raw_connect(addr: SocketAddr, client_id: &str, v5: bool) -> Vec<u8> {
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        if v5 { 5 } else { 4 },
        0x02,
        0,
        60,
    ];
    if v5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut pkt = vec![0x10, body.len() as u8];
    pkt.extend_from_slice(&body);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("tcp connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(&pkt).expect("send CONNECT");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}
