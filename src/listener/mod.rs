//! The node's MQTT listeners, VerneMQ style (`listener.tcp.NAME`,
//! `listener.ssl.NAME`, `listener.ws.NAME`, `listener.wss.NAME`), and what
//! happens to a connection before its CONNECT is read.
//!
//! # Layout
//! - this file: [`ListenerSet`], the listeners by name, their state and
//!   counts; start, stop, certificate reload (also on SIGHUP), and the
//!   per-listener limits (`max_connections`, `max_connection_rate`).
//! - [`accept`]: a listener's accept loop, and the transport handshakes of
//!   each accepted connection (PROXY header, TLS, WebSocket) within the
//!   connect timeout, before [`crate::connection::serve`].
//! - [`transport`]: the byte stream the connection reads and writes
//!   through, and [`TransportInfo`].
//! - [`tls`]: rustls configuration from PEM files, reload, client identity.
//! - [`ws`]: the WebSocket upgrade and messages as a byte stream.
//! - [`proxy`]: PROXY protocol v1 and v2 headers.

mod accept;
pub mod proxy;
pub mod tls;
pub mod transport;
pub mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::listeners::ListenerConfig;
use crate::config::Settings;
pub use transport::TransportInfo;

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("{0}")]
    Config(String),
    #[error("listener.{listener}: {source}")]
    Tls {
        listener: String,
        #[source]
        source: tls::TlsError,
    },
    #[error("no listener named `{0}` (see `raftmq listener show`)")]
    Unknown(String),
    #[error("`{0}` names several listeners; say KIND.NAME")]
    Ambiguous(String),
    #[error("binding listener.{listener} on {addr}: {source}")]
    Bind {
        listener: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why a connection was closed before its transport handshakes: the
/// `reason` label of `raftmq_listener_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    MaxConnections,
    MaxConnectionRate,
    ProxyHeader,
    TlsHandshake,
    WebSocketUpgrade,
    ConnectTimeout,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::MaxConnectionRate => "max_connection_rate",
            Refused::ProxyHeader => "proxy_protocol",
            Refused::TlsHandshake => "tls_handshake",
            Refused::WebSocketUpgrade => "websocket_upgrade",
            Refused::ConnectTimeout => "connect_timeout",
        }
    }
}

enum State {
    Stopped,
    Running {
        addr: SocketAddr,
        stop: CancellationToken,
        generation: u64,
    },
}

/// New connections in the current one-second window.
struct RateWindow {
    second: u64,
    count: u32,
}

/// One listener: its options, whether it accepts, and its connections.
pub struct Listener {
    pub config: Arc<ListenerConfig>,
    tls: Option<tls::TlsSource>,
    state: Mutex<State>,
    generation: AtomicU64,
    /// Connections open now (from accept to close).
    open: Arc<AtomicUsize>,
    rate: Mutex<RateWindow>,
    epoch: Instant,
    /// Connections accepted and let through the limits.
    accepted: AtomicU64,
}

/// Held by a connection while it is open: counts it in its listener.
pub struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Listener {
    fn new(config: ListenerConfig) -> Result<Listener, ListenerError> {
        let tls = if config.kind.tls() {
            Some(
                tls::TlsSource::load(&config).map_err(|source| ListenerError::Tls {
                    listener: config.id(),
                    source,
                })?,
            )
        } else {
            None
        };
        Ok(Listener {
            config: Arc::new(config),
            tls,
            state: Mutex::new(State::Stopped),
            generation: AtomicU64::new(0),
            open: Arc::new(AtomicUsize::new(0)),
            rate: Mutex::new(RateWindow {
                second: 0,
                count: 0,
            }),
            epoch: Instant::now(),
            accepted: AtomicU64::new(0),
        })
    }

    /// The limits' verdict on a connection just accepted: a guard that
    /// counts it while open, or why it is closed at once.
    pub fn admit(&self) -> Result<OpenGuard, Refused> {
        let rate = self.config.max_connection_rate;
        if rate > 0 {
            let second = self.epoch.elapsed().as_secs();
            let mut w = self.rate.lock();
            if w.second != second {
                *w = RateWindow { second, count: 0 };
            }
            if w.count >= rate {
                return Err(Refused::MaxConnectionRate);
            }
            w.count += 1;
        }
        let n = self.open.fetch_add(1, Ordering::AcqRel);
        let guard = OpenGuard(self.open.clone());
        let max = self.config.max_connections;
        if max > 0 && n >= max {
            return Err(Refused::MaxConnections);
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(guard)
    }

    fn is_running(&self) -> bool {
        matches!(*self.state.lock(), State::Running { .. })
    }

    /// Binds the listener's address and starts its accept loop.
    async fn start(self: &Arc<Self>, broker: &Arc<Broker>) -> Result<SocketAddr, ListenerError> {
        let id = self.config.id();
        let want = self.config.addr.ok_or_else(|| {
            ListenerError::Config(format!("listener.{id}: the listener has no address"))
        })?;
        if let State::Running { addr, .. } = *self.state.lock() {
            return Ok(addr);
        }
        let bind_error = |source| ListenerError::Bind {
            listener: id.clone(),
            addr: want,
            source,
        };
        let socket = bind(want).map_err(bind_error)?;
        let addr = socket.local_addr().map_err(bind_error)?;
        let stop = CancellationToken::new();
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        {
            let mut st = self.state.lock();
            if let State::Running { addr, .. } = *st {
                // Started by a concurrent call meanwhile.
                return Ok(addr);
            }
            *st = State::Running {
                addr,
                stop: stop.clone(),
                generation,
            };
        }
        info!(listener = %id, %addr, kind = self.config.kind.name(), "MQTT listener ready");
        broker.life.spawn(
            format!("MQTT listener {id}"),
            accept::run(socket, self.clone(), broker.clone(), stop, generation),
        );
        Ok(addr)
    }

    /// Stops accepting; open connections stay.
    fn stop(&self) {
        if let State::Running { stop, .. } = &*self.state.lock() {
            stop.cancel();
        }
        *self.state.lock() = State::Stopped;
    }

    /// The accept loop of `generation` ended (stopped, or the node closes
    /// its listeners).
    fn ended(&self, generation: u64) {
        let mut st = self.state.lock();
        if matches!(*st, State::Running { generation: g, .. } if g == generation) {
            *st = State::Stopped;
        }
    }

    /// How `listener show` lists it.
    fn describe(&self) -> Value {
        let (status, addr) = match &*self.state.lock() {
            State::Running { addr, .. } => ("running", addr.to_string()),
            State::Stopped => (
                "stopped",
                self.config.addr.map(|a| a.to_string()).unwrap_or_default(),
            ),
        };
        json!({
            "name": self.config.name,
            "kind": self.config.kind.name(),
            "address": addr,
            "status": status,
            "connections": self.open.load(Ordering::Acquire),
            "accepted": self.accepted.load(Ordering::Relaxed),
            // `key=value` words, those not at their default.
            "options": self
                .config
                .options()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }
}

/// Every MQTT listener of the node.
pub struct ListenerSet {
    listeners: Vec<Arc<Listener>>,
}

impl ListenerSet {
    /// The listeners the settings name, their TLS files read. An error
    /// names the listener and the key or file at fault.
    pub fn new(s: &Settings) -> Result<ListenerSet, ListenerError> {
        let configs = s.mqtt_listeners().map_err(ListenerError::Config)?;
        let listeners = configs
            .into_iter()
            .map(|c| Listener::new(c).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(ListenerSet { listeners })
    }

    /// Starts every enabled listener, and the certificate reload on SIGHUP.
    pub async fn start_all(&self, broker: &Arc<Broker>) -> Result<(), ListenerError> {
        for l in self.listeners.iter().filter(|l| l.config.enabled) {
            l.start(broker).await?;
        }
        if self.listeners.iter().any(|l| l.tls.is_some()) {
            reload_on_sighup(broker);
        }
        Ok(())
    }

    /// The listener `name` names: `KIND.NAME`, or `NAME` alone when only
    /// one listener has it.
    pub fn find(&self, name: &str) -> Result<&Arc<Listener>, ListenerError> {
        if let Some(l) = self.listeners.iter().find(|l| l.config.id() == name) {
            return Ok(l);
        }
        let mut by_name = self.listeners.iter().filter(|l| l.config.name == name);
        match (by_name.next(), by_name.next()) {
            (Some(l), None) => Ok(l),
            (Some(_), Some(_)) => Err(ListenerError::Ambiguous(name.into())),
            (None, _) => Err(ListenerError::Unknown(name.into())),
        }
    }

    /// `listener start NAME`: binds it again (a no-op when running).
    pub async fn start(&self, name: &str, broker: &Arc<Broker>) -> Result<Value, ListenerError> {
        let l = self.find(name)?;
        l.start(broker).await?;
        Ok(l.describe())
    }

    /// `listener stop NAME`: stops accepting; open connections stay.
    pub fn stop(&self, name: &str) -> Result<Value, ListenerError> {
        let l = self.find(name)?;
        if l.is_running() {
            l.stop();
            info!(listener = %l.config.id(), "MQTT listener stopped by request; open connections stay");
        }
        Ok(l.describe())
    }

    /// Re-reads every TLS listener's files; the errors, by listener.
    pub fn reload(&self) -> Vec<(String, Result<(), tls::TlsError>)> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.config.id(), l.tls.as_ref()?.reload())))
            .collect()
    }

    /// `listener show`: one row per listener.
    pub fn show(&self) -> Vec<Value> {
        self.listeners.iter().map(|l| l.describe()).collect()
    }
}

/// SIGHUP re-reads every TLS listener's certificate files.
fn reload_on_sighup(broker: &Arc<Broker>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGHUP; certificates reload on file change and `listener reload` only");
            return;
        }
    };
    let b = broker.clone();
    let life = broker.life.clone();
    broker.life.spawn("TLS reload on SIGHUP", async move {
        loop {
            tokio::select! {
                _ = life.cancelled() => break,
                s = hup.recv() => if s.is_none() { break },
            }
            for (listener, r) in b.listeners.reload() {
                match r {
                    Ok(()) => {}
                    Err(e) => warn!(%listener, error = %e, "SIGHUP: TLS files not reloaded; the previous certificate stays in use"),
                }
            }
        }
    });
}

/// An MQTT listener's accept queue (the kernel caps it at
/// `net.core.somaxconn`). tokio's `TcpListener::bind` asks for 1,024, which a
/// storm of a few thousand CONNECTs a second overflows while the accept loop
/// waits for a worker; each SYN dropped then costs its client a 1 s
/// retransmission.
const MQTT_BACKLOG: u32 = 8192;

/// Binds an MQTT listener as `TcpListener::bind` does (SO_REUSEADDR), with
/// [`MQTT_BACKLOG`].
fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(MQTT_BACKLOG)
}
