//! Ends registrations that no connection holds. A CONNECT whose
//! registration had an unknown outcome (sent to a leader, no answer by its
//! deadline) is closed without a CONNACK; should the registration commit
//! after all, the session would say "connected here" with no connection
//! behind it, never expire and never send its will. The registry reports
//! each such registration as it is applied, and this task commits its
//! disconnect (guarded by its epoch: a newer registration is untouched).

use std::sync::Arc;

use raftmq_raft::command::{self as cmd, Command};
use raftmq_raft::node::now_ms;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::shutdown::Shutdown;

/// Runs until the node stops.
pub async fn end_orphans(broker: Arc<Broker>, life: Shutdown) {
    let Some(mut orphans) = broker.registry.take_orphans() else {
        return;
    };
    loop {
        let o = tokio::select! {
            _ = life.cancelled() => return,
            o = orphans.recv() => match o {
                Some(o) => o,
                None => return,
            },
        };
        info!(client_id = %o.client_id, epoch = o.epoch, "a registration committed after its connection gave up: ending it");
        let disconnect = Command::Disconnect(cmd::Disconnect {
            client_id: o.client_id.to_string(),
            epoch: o.epoch,
            publish_will: true,
            new_expiry_s: None,
            now_ms: now_ms(),
        });
        if let Err(e) = broker.node.submit_own(disconnect).await {
            warn!(error = %e, "cannot propose the disconnect of an orphaned registration");
        }
    }
}
