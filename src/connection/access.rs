//! A connection's access control: the login at CONNECT (argon2 runs off the
//! async runtime), the ACL's word on each PUBLISH and SUBSCRIBE filter
//! (read from the replicated rules at that moment, so a reload applies to
//! connected clients too), what a denied PUBLISH gets (`acl_deny_action`),
//! and `max_message_rate`.

use std::sync::Arc;
use std::time::Instant;

use raftmq_raft::trie::split_shared;
use tracing::info;

use super::connect::Refusal;
use super::{Conn, Exit};
use crate::auth::{Credentials, LoginError};
use crate::broker::Broker;
use crate::codec::{reason, Connect};
use crate::config::auth::DenyAction;

/// Checks the CONNECT's credentials: the authenticated user name, `None`
/// for an anonymous client, or the refusal.
pub(super) async fn login(
    broker: &Arc<Broker>,
    c: &Connect,
    cert_identity: Option<String>,
) -> Result<Option<String>, Refusal> {
    let creds = Credentials {
        username: c.username.clone(),
        password: c.password.as_ref().map(|p| p.to_vec()),
        cert_identity,
    };
    let b = broker.clone();
    let verdict = tokio::task::spawn_blocking(move || b.auth.login(&b.node.auth(), &creds)).await;
    match verdict {
        Ok(Ok(user)) => Ok(user),
        Ok(Err(e)) => Err(refusal(e)),
        Err(_) => Err(Refusal {
            code: reason::SERVER_UNAVAILABLE,
            why: "the login check failed",
        }),
    }
}

/// The CONNACK of a refused login.
pub(super) fn refusal(e: LoginError) -> Refusal {
    match e {
        LoginError::BadCredentials => Refusal {
            code: reason::BAD_USER_NAME_OR_PASSWORD,
            why: "authentication failed",
        },
        LoginError::NotAuthorized => Refusal {
            code: reason::NOT_AUTHORIZED,
            why: "authentication failed",
        },
    }
}

impl Conn {
    /// May this client publish to `topic`?
    pub(super) fn may_publish(&self, topic: &str) -> bool {
        let table = self.broker.node.auth();
        self.broker.auth.may_publish(&table, &self.identity, topic)
    }

    /// May this client subscribe to `filter` (shared or not)?
    pub(super) fn may_subscribe(&self, filter: &str) -> bool {
        let (_, f) = split_shared(filter);
        let table = self.broker.node.auth();
        self.broker.auth.may_subscribe(&table, &self.identity, f)
    }

    /// A PUBLISH the ACL denied: `disconnect` ends the connection (MQTT 5
    /// DISCONNECT 0x87); `ignore` drops the message and acknowledges it,
    /// MQTT 5 with 0x87, MQTT 3 positively (it has no negative ack).
    pub(super) fn publish_denied(
        &mut self,
        topic: &str,
        qos: u8,
        packet_id: u16,
    ) -> Result<(), Exit> {
        self.broker.metrics.acl_denied.inc();
        if self.broker.auth.settings().acl_deny_action == DenyAction::Disconnect {
            return Err(Exit::error(
                reason::NOT_AUTHORIZED,
                format!("publish to {topic} not authorized"),
            ));
        }
        info!(topic, "publish not authorized; dropped");
        self.inbound.close_flow(qos, packet_id);
        self.ack_publish(qos, packet_id, reason::NOT_AUTHORIZED);
        Ok(())
    }

    /// Counts a PUBLISH against `max_message_rate`.
    pub(super) fn within_rate(&mut self) -> Result<(), Exit> {
        let allowed = self.rate.as_mut().is_none_or(|r| r.take(Instant::now()));
        if allowed {
            Ok(())
        } else {
            Err(Exit::error(
                reason::MESSAGE_RATE_TOO_HIGH,
                "message rate too high",
            ))
        }
    }
}
