//! The workloads: clients that drive the cluster and record every operation
//! and delivery in the history. Shared here: the run's context (recorder,
//! node addresses, id counters) and connecting with retries.
//!
//! - [`delivery`]: QoS 1 queue and QoS 2 exactly-once publishers and
//!   persistent subscribers.
//! - [`registration`]: many connections racing for a few client ids.
//! - [`register`]: a retained value per topic, written and read.
//! - [`subscriptions`]: subscriptions made before the faults, probed after.

pub mod delivery;
pub mod register;
pub mod registration;
pub mod subscriptions;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::history::{Kind, Op, Recorder, Workload};
use crate::mqtt::{Client, Connack, ConnectOpts, Message, MqttError, SessionState, Version};

/// What every workload task gets.
#[derive(Clone)]
pub struct Ctx {
    pub rec: Recorder,
    /// MQTT addresses; node id `i + 1` at index `i`.
    pub nodes: Vec<SocketAddr>,
    pub seed: u64,
    ids: Arc<AtomicU64>,
}

impl Ctx {
    pub fn new(rec: Recorder, nodes: Vec<SocketAddr>, seed: u64) -> Ctx {
        Ctx {
            rec,
            nodes,
            seed,
            ids: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A message id or value unique in the run.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Node id of the node at `index` (mod the cluster size).
    pub fn node_id(&self, index: usize) -> u64 {
        (index % self.nodes.len()) as u64 + 1
    }

    pub fn addr(&self, node: u64) -> SocketAddr {
        self.nodes[(node as usize - 1) % self.nodes.len()]
    }
}

/// A failure is definite only when the broker said so.
pub fn outcome(e: &MqttError) -> Kind {
    if e.is_definite() {
        Kind::Fail
    } else {
        Kind::Info
    }
}

/// The message id a payload carries (`None`: not one of ours).
pub fn id_of(m: &Message) -> Option<u64> {
    std::str::from_utf8(&m.payload).ok()?.parse().ok()
}

/// Records that `client`, connected to `node`, received `m`.
pub fn delivered(ctx: &Ctx, workload: Workload, client: &str, node: u64, m: &Message) {
    ctx.rec.event(
        client,
        Op::Deliver {
            workload,
            client: client.to_string(),
            node,
            topic: m.topic.clone(),
            id: id_of(m).unwrap_or(u64::MAX),
            qos: m.qos,
            dup: m.dup,
        },
    );
}

/// The MQTT version a process uses: even processes 5, odd ones 3.1.1, so
/// every workload exercises both.
pub fn version_for(index: usize) -> Version {
    if index & 1 == 0 {
        Version::V5
    } else {
        Version::V311
    }
}

/// Connection options for a persistent (`clean` false) or clean session.
pub fn opts(addr: SocketAddr, client_id: &str, version: Version, clean: bool) -> ConnectOpts {
    let mut o = ConnectOpts::new(addr, client_id, version);
    o.clean = clean;
    o.session_expiry = if clean { 0 } else { u32::MAX };
    o.keep_alive = 10;
    o.timeout = Duration::from_secs(5);
    o
}

/// A client as a workload process keeps it across its connections: its id,
/// protocol version, session kind and session state.
#[derive(Clone)]
pub struct Identity {
    pub client_id: String,
    pub version: Version,
    pub clean: bool,
    pub state: SessionState,
}

impl Identity {
    pub fn new(client_id: impl Into<String>, version: Version, clean: bool) -> Identity {
        Identity {
            client_id: client_id.into(),
            version,
            clean,
            state: SessionState::default(),
        }
    }

    /// Connects once to `node`.
    pub async fn connect(&self, ctx: &Ctx, node: u64) -> Result<(Client, Connack), MqttError> {
        let o = opts(ctx.addr(node), &self.client_id, self.version, self.clean);
        Client::connect(&o, self.state.clone()).await
    }

    /// Connects to `node` first, then the other nodes in turn, until one
    /// accepts, `stop` is cancelled or `deadline` passes. Returns the client,
    /// its CONNACK and the node it reached. These attempts are plumbing, not
    /// recorded operations (the registration workload records its own).
    pub async fn connect_any(
        &self,
        ctx: &Ctx,
        node: u64,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Option<(Client, Connack, u64)> {
        let n = ctx.nodes.len() as u64;
        let mut attempt = 0u64;
        loop {
            let target = (node - 1 + attempt / 3) % n + 1;
            if let Ok((c, ack)) = self.connect(ctx, target).await {
                return Some((c, ack, target));
            }
            attempt += 1;
            if stop.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}
