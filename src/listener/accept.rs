//! A listener's accept loop, until it is stopped or the node closes its
//! listeners, and what each accepted connection goes through before MQTT:
//! the listener's limits (refused at once, counted), then within the
//! connect timeout the PROXY header, the TLS handshake and the WebSocket
//! upgrade, as the listener has them; then [`crate::connection::serve`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::transport::{Established, Stream, TransportInfo};
use super::{proxy, tls, ws, Listener, Refused};
use crate::broker::Broker;
use crate::config::listeners::ListenerKind;

/// Accepts connections until `stop` or the node's end of accepting.
pub(super) async fn run(
    socket: TcpListener,
    l: Arc<Listener>,
    broker: Arc<Broker>,
    stop: CancellationToken,
    generation: u64,
) {
    let id = l.config.id();
    loop {
        let accepted = tokio::select! {
            _ = broker.life.accept_ended() => break,
            _ = stop.cancelled() => break,
            r = socket.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let guard = match l.admit() {
                    Ok(g) => g,
                    Err(why) => {
                        // Counted, then closed at once: the client sees the
                        // connection end before any byte, and by then the
                        // refusal is in /metrics.
                        refused(&broker, &id, why);
                        drop(stream);
                        continue;
                    }
                };
                // `serve` itself is the task (no async block around it,
                // which would hold its arguments and its future apart), and
                // its name is one static string shared by every connection.
                let task = serve(stream, peer, l.clone(), broker.clone(), guard);
                broker.life.spawn(CONNECTION_TASK, task);
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                error!(listener = %id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    l.ended(generation);
    info!(listener = %id, "MQTT listener closed");
}

/// Counts (and logs at debug) a connection closed before MQTT.
fn refused(broker: &Broker, listener: &str, why: Refused) {
    debug!(%listener, reason = why.label(), "connection closed before MQTT");
    broker.metrics.listener_refused(listener, why.label());
}

/// What a stop that runs out of time calls the connection tasks it waits
/// for (counted: "MQTT connection (x120)").
const CONNECTION_TASK: &str = "MQTT connection";

/// One accepted connection, counted by the listener while `admitted` is
/// held: its transport handshakes, then MQTT.
///
/// A plain function around one `async` block, not an `async fn`: a task
/// keeps its `async fn`'s arguments (and copies of them) for its whole life,
/// while here the handshakes' state is boxed and gone once they finish, and
/// what stays beside the MQTT phase is three pointers.
fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    l: Arc<Listener>,
    broker: Arc<Broker>,
    admitted: super::OpenGuard,
) -> impl Future<Output = ()> + Send + 'static {
    let established = Box::pin(establish_in_time(tcp, peer, l, broker.clone()));
    async move {
        if let Some(est) = established.await {
            crate::connection::serve(est, broker).await;
        }
        drop(admitted);
    }
}

/// The transport handshakes within the connect timeout, or `None`: they
/// failed or timed out (counted as refused), or the node stopped first.
async fn establish_in_time(
    tcp: TcpStream,
    peer: SocketAddr,
    l: Arc<Listener>,
    broker: Arc<Broker>,
) -> Option<Box<Established>> {
    let _ = tcp.set_nodelay(true);
    let connect_by = Instant::now() + Duration::from_millis(broker.settings.connect_timeout_ms);
    let r = tokio::select! {
        r = tokio::time::timeout_at(connect_by, establish(tcp, peer, &l, &broker)) => r,
        _ = broker.life.cancelled() => return None,
    };
    match r {
        Ok(Ok((stream, info))) => Some(Box::new(Established {
            stream,
            info,
            connect_by,
        })),
        Ok(Err((why, detail))) => {
            debug!(%peer, error = %detail, "transport handshake failed");
            refused(&broker, &l.config.id(), why);
            None
        }
        Err(_) => {
            refused(&broker, &l.config.id(), Refused::ConnectTimeout);
            None
        }
    }
}

/// The listener's handshakes in order: PROXY header, TLS, WebSocket.
async fn establish(
    mut tcp: TcpStream,
    peer: SocketAddr,
    l: &Listener,
    broker: &Broker,
) -> Result<(Stream, TransportInfo), (Refused, String)> {
    let mut info = TransportInfo {
        listener: l.config.clone(),
        peer: Some(peer),
        identity: None,
    };
    if l.config.proxy_protocol {
        let from = proxy::read_header(&mut tcp)
            .await
            .map_err(|e| (Refused::ProxyHeader, e.to_string()))?;
        if let Some(from) = from {
            info.peer = Some(from);
        }
    }
    let ws_max = broker.settings.max_packet_size.max(64 * 1024);
    let ws_err = |e: std::io::Error| (Refused::WebSocketUpgrade, e.to_string());
    let stream = match (l.config.kind, &l.tls) {
        (ListenerKind::Tcp, _) => Stream::Tcp(tcp),
        (ListenerKind::Ws, _) => {
            Stream::Layered(Box::new(ws::accept(tcp, ws_max).await.map_err(ws_err)?))
        }
        (ListenerKind::Ssl | ListenerKind::Wss, Some(source)) => {
            let tls = source
                .acceptor()
                .accept(tcp)
                .await
                .map_err(|e| (Refused::TlsHandshake, e.to_string()))?;
            info.identity = tls::identity(tls.get_ref().1);
            if l.config.kind == ListenerKind::Wss {
                Stream::Layered(Box::new(ws::accept(tls, ws_max).await.map_err(ws_err)?))
            } else {
                Stream::Layered(Box::new(tls))
            }
        }
        (ListenerKind::Ssl | ListenerKind::Wss, None) => {
            return Err((Refused::TlsHandshake, "no TLS configuration".into()))
        }
    };
    Ok((stream, info))
}
