//! A connection's access control: the login at CONNECT (argon2 runs off the
//! async runtime), the ACL's word on each PUBLISH and SUBSCRIBE filter
//! (by the replicated rules current at that moment, so a reload applies to
//! connected clients too: the connection keeps the parsed rules and checks
//! with one atomic load that the replicated table has not changed since),
//! what a denied PUBLISH gets (`acl_deny_action`), and `max_message_rate`.

use std::sync::Arc;
use std::time::Instant;

use raftmq_raft::trie::split_shared;
use tracing::info;

use super::connect::Refusal;
use super::{Conn, Exit};
use crate::auth::acl::Acl;
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

/// The ACL as a connection last read it, with the generation of the
/// replicated auth table it was read at (`None` until the first decision,
/// and again while the connection sleeps).
#[derive(Default)]
pub(super) struct AclSeen(Option<(u64, Arc<Acl>)>);

impl AclSeen {
    /// The current rules: those kept, unless the table changed since.
    fn current(&mut self, broker: &Broker) -> &Acl {
        let generation = broker.node.auth_generation();
        let seen = match self.0.take() {
            Some((g, acl)) if g == generation => (g, acl),
            // Read after the generation: at least as new as it.
            _ => (generation, broker.auth.acl(&broker.node.auth())),
        };
        &self.0.insert(seen).1
    }

    /// Gives the rules back (an idle connection holds no reference).
    pub(super) fn forget(&mut self) {
        self.0 = None;
    }
}

impl Conn {
    /// May this client publish to `topic`?
    pub(super) fn may_publish(&mut self, topic: &str) -> bool {
        let acl = self.acl.current(&self.broker);
        self.broker.auth.may_publish(acl, &self.identity, topic)
    }

    /// May this client subscribe to `filter` (shared or not)?
    pub(super) fn may_subscribe(&mut self, filter: &str) -> bool {
        let (_, f) = split_shared(filter);
        let acl = self.acl.current(&self.broker);
        self.broker.auth.may_subscribe(acl, &self.identity, f)
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
