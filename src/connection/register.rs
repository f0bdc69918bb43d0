//! From CONNECT to a registered connection: the handshake read, admission,
//! the registration committed through the log (which takes over any older
//! connection of the client id, on any node), the CONNACK, and the session's
//! backlog, read from this node's RocksDB once it has applied the
//! registration. A refused client gets its CONNACK and a close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raftmq_raft::node::now_ms;
use raftmq_raft::{CmdResult, RaftError};
use tracing::{debug, info, warn};

use super::backlog::Backlog;
use super::connect::{self, Admission, Refusal};
use super::inbound::{Inbound, InboundLimits};
use super::replies::Replies;
use super::{commit, Conn, Exit, Io};
use crate::broker::Broker;
use crate::codec::{reason, ConnAck, ConnAckProperties, Connect, DecodeError, Packet, Protocol};
use crate::registry::Peer;
use crate::session::Outbound;

/// Reads the CONNECT, which must have arrived by `deadline` (the
/// listener's accept plus `connect_timeout`). Answers what cannot be served
/// (an unsupported protocol version) and returns the stream only for a
/// CONNECT.
pub(super) async fn handshake(
    mut io: Io,
    broker: &Broker,
    deadline: tokio::time::Instant,
) -> Option<(Io, Box<Connect>)> {
    match tokio::time::timeout_at(deadline, io.read_more()).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return None,
    }
    if io.buffered().starts_with(&TLS_HANDSHAKE) {
        broker.metrics.protocol_errors.inc();
        info!("TLS handshake on a plain MQTT listener: the client speaks TLS (mqtts) but this listener is plain TCP; closing");
        return None;
    }
    let first = match tokio::time::timeout_at(deadline, io.read_packet()).await {
        Err(_) | Ok(Ok(None)) => return None,
        Ok(Ok(Some(p))) => p,
        Ok(Err(DecodeError::UnsupportedProtocol { name, level })) => {
            info!(%name, level, "unsupported protocol version");
            let code = reason::UNSUPPORTED_PROTOCOL_VERSION;
            io.push(connack(code, false, ConnAckProperties::default()));
            let _ = io.flush().await;
            return None;
        }
        Ok(Err(e)) => {
            broker.metrics.protocol_errors.inc();
            debug!(error = %e, "malformed first packet");
            return None;
        }
    };
    let Packet::Connect(c) = first else {
        broker.metrics.protocol_errors.inc();
        info!("first packet is not CONNECT");
        return None;
    };
    io.set_protocol(c.protocol.unwrap_or(Protocol::V311));
    Some((io, c))
}

/// A TLS record of type handshake (22), protocol version 3.x: how every
/// TLS ClientHello starts, and no MQTT packet does on a new connection.
const TLS_HANDSHAKE: [u8; 2] = [0x16, 0x03];

fn connack(code: u8, session_present: bool, properties: ConnAckProperties) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        code,
        properties,
    })
}

impl Conn {
    /// Admits and registers the client through the log, sends the CONNACK
    /// and queues the session's backlog. `None`: refused (and told so).
    pub(super) async fn register(
        mut io: Io,
        broker: &Arc<Broker>,
        c: &Connect,
        addr: Option<SocketAddr>,
        cert_identity: Option<String>,
    ) -> Option<Conn> {
        let s = &broker.settings;
        // The cluster-wide values as this node has applied them, and the
        // node's live values, both read once per CONNECT.
        let cluster = broker.node.summary();
        let cluster = &cluster.settings;
        let live = broker.live.get();
        let now = now_ms();
        let fresh_id = || format!("raftmq-{:016x}", rand::random::<u64>());
        let admission = match connect::admit(c, s, cluster, &live, now, fresh_id) {
            Ok(a) => a,
            Err(r) => return refuse(io, r).await,
        };
        let user = match super::access::login(broker, c, cert_identity).await {
            Ok(u) => u,
            Err(r) => return refuse(io, r).await,
        };
        tracing::Span::current().record("client_id", admission.client_id.as_str());
        let client_id: Arc<str> = Arc::from(admission.client_id.as_str());
        let identity = crate::auth::Identity {
            user,
            client_id: client_id.clone(),
            addr: addr.map(|a| a.ip()),
        };
        let conn_id = broker.registry.next_conn_id();
        let (tx, events) = crate::mailbox::channel();
        let peer = Peer {
            addr,
            protocol: io.protocol(),
            clean_start: admission.clean_start,
        };
        broker.registry.attach(&client_id, conn_id, peer, tx);
        let overrides = s.listener_netsplit;
        let held = broker.node.in_netsplit()
            && super::netsplit::allowed(
                super::netsplit::Op::Register,
                cluster,
                &overrides,
                &c.properties.user_properties,
            );
        let registered = if held {
            hold_registration(broker, &admission, now).await
        } else {
            commit_registration(broker, &admission, now).await
        };
        let (epoch, session_present) = match registered {
            Ok(r) => r,
            // Refused only when that is final: the registration was never
            // proposed (this node is in netsplit), so it can never take over
            // a session later; or apply answered something else than a
            // registration.
            Err(e @ (Some(RaftError::NotCommitted(_)) | None)) => {
                broker.registry.detach(&client_id, conn_id);
                let why = match e {
                    Some(e) => {
                        warn!(error = %e, "registration not committed");
                        "this node cannot reach a quorum (netsplit); try another node"
                    }
                    None => "registration could not be committed",
                };
                return refuse(
                    io,
                    Refusal {
                        code: reason::SERVER_UNAVAILABLE,
                        why,
                    },
                )
                .await;
            }
            // The outcome is unknown: the registration may still commit, so
            // no CONNACK says it failed. The connection closes unanswered
            // and the client connects again; should the registration commit
            // after all, this node ends the session it made (the registry
            // sees no connection holding it).
            Err(Some(e)) => {
                broker.registry.detach(&client_id, conn_id);
                warn!(error = %e, "registration outcome unknown; closing without a CONNACK");
                io.close_write(Duration::from_secs(1)).await;
                return None;
            }
        };
        broker.registry.set_epoch(&client_id, conn_id, epoch);
        let v5 = io.protocol().is_v5();
        info!(
            epoch,
            session_present,
            proto = io.protocol().level(),
            "client connected"
        );
        let props = if v5 {
            connect::connack_properties(s, admission.assigned_id.clone())
        } else {
            ConnAckProperties::default()
        };
        io.push(connack(reason::SUCCESS, session_present, props));
        let limits = admission.outbound;
        let backlog = if held {
            Backlog::idle()
        } else {
            Backlog::resume(broker.registry.take_sent(&client_id))
        };
        let mut conn = Conn {
            broker: broker.clone(),
            io,
            client_id,
            conn_id,
            epoch,
            expiry_s: admission.expiry_s,
            new_expiry_s: None,
            keep_alive: admission.keep_alive,
            events,
            outbound: Outbound::new(
                limits.window,
                cluster.max_online_messages,
                limits.alias_max,
                limits.max_packet,
            ),
            inbound: Inbound::new(InboundLimits {
                v5,
                alias_max: s.topic_alias_max_broker,
                receive_max: s.receive_max_broker,
                max_message_size: live.max_message_size,
            }),
            replies: Replies::new(super::replies::answer_bound(s)),
            acks: Vec::new(),
            backlog,
            netsplit: overrides,
            identity,
            acl: Default::default(),
            rate: crate::auth::rate::RateLimit::new(s.auth.max_message_rate).map(Box::new),
        };
        if conn.flush().await.is_err() {
            conn.teardown(Exit::Closed).await;
            return None;
        }
        if held {
            info!("registered during a netsplit: the registration commits when quorum returns");
            return Some(conn);
        }
        // The session's queue is read from this node's RocksDB, which must
        // first hold the registration (on a follower it may lag the leader
        // that answered).
        let applied = broker.node.wait_applied(epoch >> 16, commit_timeout(s));
        if let Err(e) = applied.await {
            warn!(error = %e, "registration not applied here");
            let why = "this node has not applied the registration";
            conn.teardown(Exit::error(reason::SERVER_UNAVAILABLE, why))
                .await;
            return None;
        }
        Some(conn)
    }
}

fn commit_timeout(s: &crate::config::Settings) -> Duration {
    Duration::from_millis(s.commit_timeout_ms)
}

/// Commits the registration: the new epoch, and whether a session was
/// resumed.
async fn commit_registration(
    broker: &Broker,
    a: &Admission,
    now: u64,
) -> Result<(u64, bool), Option<RaftError>> {
    let reg = a.register(broker.settings.node_id, now);
    // A registration resent across a leader change may come back as
    // `Duplicate` (it was applied, its result went to the lost attempt):
    // register again; the session it made is resumed or replaced.
    let mut result = commit(broker, reg.clone()).await;
    if matches!(result, Ok(CmdResult::Duplicate)) {
        result = commit(broker, reg).await;
    }
    match result {
        Ok(CmdResult::Registered {
            epoch,
            session_present,
        }) => Ok((epoch, session_present)),
        Ok(_) => Err(None),
        Err(e) => Err(Some(e)),
    }
}

/// Accepts the registration locally during a netsplit
/// (`allow_register_during_netsplit`): it is on this node's disk, with an
/// epoch this node chose, and commits when quorum returns, where the newer
/// registration of the client id wins. The session starts empty here
/// (`session_present` is false): a session it resumes is the connection's
/// once the registration commits.
async fn hold_registration(
    broker: &Broker,
    a: &Admission,
    now: u64,
) -> Result<(u64, bool), Option<RaftError>> {
    let node = broker.settings.node_id;
    let epoch = raftmq_raft::held_epoch(node, rand::random());
    let rx = broker
        .node
        .submit_local(a.register_held(node, now, epoch))
        .await
        .map_err(Some)?;
    match super::replies::wait(rx, super::replies::answer_bound(&broker.settings)).await {
        Ok(_) => Ok((epoch, false)),
        Err(e) => Err(Some(e)),
    }
}

/// Answers a refused CONNECT and closes.
pub(super) async fn refuse(mut io: Io, r: Refusal) -> Option<Conn> {
    info!(code = r.code, why = r.why, "connection refused");
    let props = ConnAckProperties {
        reason_string: io.protocol().is_v5().then(|| r.why.to_string()),
        ..Default::default()
    };
    io.push(connack(r.code, false, props));
    io.close_write(Duration::from_secs(1)).await;
    io.drain().await;
    None
}
