//! Why a connection ends, and the teardown: the DISCONNECT an MQTT 5 client
//! is owed, a close that lets the client read it, what a later connection on
//! this node must resend with DUP, and the `Disconnect` committed so wills and
//! session expiry follow on every node.

use std::time::Duration;

use raftmq_raft::command as cmd;
use raftmq_raft::node::now_ms;
use raftmq_raft::{Command, NEVER};
use tracing::info;

use super::Conn;
use crate::codec::{self, reason, Packet};
use crate::resources::Limit;

/// Why the loop ended.
#[derive(Debug)]
pub enum Exit {
    /// DISCONNECT from the client; `will` = MQTT 5 "disconnect with will".
    Client {
        will: bool,
    },
    /// Socket closed or failed without DISCONNECT.
    Closed,
    /// We close with this reason code (protocol violation, limits).
    Error(u8, String),
    KeepAlive,
    TakenOver,
    /// `session disconnect`: apply already ended the connection (and
    /// published the will) on every node.
    Disconnected,
    /// This node left the cluster.
    Admin,
    /// The node is stopping (SIGTERM, SIGINT).
    ServerShutdown,
    /// An MQTT 3 publish refused by a resource limit: MQTT 3 has no refusal
    /// code, so the connection closes instead of acknowledging, and the
    /// client resends after reconnecting. Answers already due go out first.
    Refused(Limit),
    /// A command could not be committed, and MQTT 3 (or, when the outcome
    /// is unknown, any version) has no answer that tells the truth: the
    /// connection closes instead, so that the client resends after
    /// reconnecting. `unknown`: the command may still take effect.
    /// Answers already due go out first.
    Unavailable {
        unknown: bool,
    },
}

impl Exit {
    pub fn error(code: u8, why: impl Into<String>) -> Exit {
        Exit::Error(code, why.into())
    }

    /// The DISCONNECT reason code an MQTT 5 client is sent (none when the
    /// client ended it), and whether the will is published.
    fn reason_and_will(&self) -> (Option<u8>, bool) {
        match self {
            Exit::Client { will } => (None, *will),
            Exit::Closed => (None, true),
            Exit::Error(code, _) => (Some(*code), true),
            Exit::KeepAlive => (Some(reason::KEEP_ALIVE_TIMEOUT), true),
            Exit::TakenOver => (Some(reason::SESSION_TAKEN_OVER), false),
            // The will went with the AdminDisconnect entry.
            Exit::Disconnected => (Some(reason::ADMINISTRATIVE_ACTION), false),
            Exit::Admin => (Some(reason::ADMINISTRATIVE_ACTION), true),
            // A server-side close without the client's DISCONNECT: the will
            // is published, as for an administrative close.
            Exit::ServerShutdown => (Some(reason::SERVER_SHUTTING_DOWN), true),
            // Not the client's choice: its will is published.
            Exit::Refused(_) => (Some(reason::QUOTA_EXCEEDED), true),
            Exit::Unavailable { .. } => (Some(reason::SERVER_BUSY), true),
        }
    }
}

impl Conn {
    /// Ends the connection: answers the client, closes the socket, and
    /// commits the disconnect.
    pub(super) async fn teardown(&mut self, exit: Exit) {
        match &exit {
            Exit::Error(code, why) => {
                self.broker.metrics.protocol_errors.inc();
                info!(code, why = %why, "closing connection");
            }
            Exit::KeepAlive => info!("keepalive timeout"),
            Exit::TakenOver => info!("session taken over"),
            Exit::Disconnected => info!("disconnected by an operator (session disconnect)"),
            Exit::Refused(limit) => info!(
                limit = limit.name(),
                "publish refused by a resource limit: closing the MQTT 3 connection instead of acknowledging"
            ),
            Exit::Unavailable { unknown: true } => info!(
                "a command's outcome is unknown (no quorum answered in time): closing, so the client resends"
            ),
            Exit::Unavailable { unknown: false } => info!(
                "a command was refused (not committed) and MQTT 3 has no code to say so: closing, so the client resends"
            ),
            _ => {}
        }
        let (code, publish_will) = exit.reason_and_will();
        match code {
            Some(code) if self.v5() => self.io.push(Packet::Disconnect(codec::Disconnect {
                reason: code,
                ..Default::default()
            })),
            // The acknowledgements of the publishes before the refused one
            // were committed: they go out before the close.
            Some(_) if matches!(exit, Exit::Refused(_) | Exit::Unavailable { .. }) => {}
            // MQTT 3 has no server DISCONNECT: a protocol error just closes.
            // Nor after the client's DISCONNECT (its answers went out) or
            // a closed socket.
            Some(_) | None => self.io.discard_unwritten(),
        }
        // Our last packets (an MQTT 5 client's DISCONNECT) go out at once...
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        // Only a session that outlives this connection is resumed later. A
        // taken-over connection's successor has already read (and cleared)
        // the entry, so writing one now would leave stale data behind.
        let taken_over = matches!(exit, Exit::TakenOver);
        let persists = self.new_expiry_s.unwrap_or(self.expiry_s) > 0;
        if persists && !taken_over {
            self.broker
                .registry
                .remember_sent(&self.client_id, self.outbound.unacked_seqs());
        }
        self.broker.registry.detach(&self.client_id, self.conn_id);
        // ...but the end of the stream only after the disconnect is
        // committed: a client that reconnects once it sees the close finds
        // its session as this DISCONNECT left it (ended, expiry changed,
        // will published).
        // A disconnect apply already made needs no second entry.
        if !taken_over && !matches!(exit, Exit::Disconnected) {
            let disconnect = Command::Disconnect(cmd::Disconnect {
                client_id: self.client_id.to_string(),
                epoch: self.epoch,
                publish_will,
                new_expiry_s: self
                    .new_expiry_s
                    .map(|e| if e == u32::MAX { NEVER } else { e }),
                now_ms: now_ms(),
            });
            // The node's own command: held through a netsplit and committed
            // when quorum returns (its epoch guard makes a late one
            // harmless), so the session never stays registered to a
            // connection that is gone. The close waits for it a bounded
            // time.
            if let Err(e) = super::commit_held(&self.broker, disconnect).await {
                info!(error = %e, "disconnect not committed yet; it is held and committed when quorum returns");
            }
        }
        let written = self.io.close_write(Duration::from_secs(1)).await;
        self.count(written);
        if code.is_some() {
            self.io.drain().await;
        }
        info!(?exit, "client disconnected");
    }
}
