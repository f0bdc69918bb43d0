//! The MQTT TCP listener: accepts connections and gives each its own task,
//! until the node stops (or the cluster removed it).

use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{error, info};

use crate::broker::Broker;
use crate::shutdown::Shutdown;

/// Accepts connections until `life` says the listener must close.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, life: Shutdown) {
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "MQTT listener ready");
    loop {
        let accepted = tokio::select! {
            _ = life.accept_ended() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                life.spawn(
                    format!("MQTT connection from {peer}"),
                    crate::connection::serve(stream, broker.clone(), life.clone()),
                );
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                error!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    info!("MQTT listener closed");
}
