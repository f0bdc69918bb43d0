//! The MQTT TCP listener: accepts connections and gives each its own task.

use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{error, info};

use crate::broker::Broker;

/// Accepts connections forever.
pub async fn run(listener: TcpListener, broker: Arc<Broker>) {
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "MQTT listener ready");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(crate::connection::serve(stream, broker.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                error!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
