//! `sessions` mode: make persistent sessions that queue while away. Each one
//! connects with clean session false, subscribes to one filter, waits for its
//! SUBACK and disconnects.

use super::codec::{self, Packet};
use super::conn::Conn;
use std::io;
use std::time::Duration;

/// Subscribes `conn` to `filter` at `qos`, waits (up to `timeout`) for the
/// SUBACK and disconnects. Returns the granted QoS, or why it failed.
pub async fn subscribe_and_leave(
    mut conn: Conn,
    filter: &str,
    qos: u8,
    timeout: Duration,
) -> Result<u8, String> {
    const PID: u16 = 1;
    codec::encode_subscribe(&mut conn.wbuf, conn.version, PID, filter, qos);
    if let Err(e) = conn.flush_all(timeout).await {
        return Err(format!("SUBSCRIBE write: {e}"));
    }
    let granted = match tokio::time::timeout(timeout, suback(&mut conn, PID)).await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("timed out waiting for SUBACK".into()),
    };
    conn.close().await;
    if granted >= 0x80 {
        return Err(format!("SUBACK refused '{filter}' (code 0x{granted:02x})"));
    }
    Ok(granted)
}

/// Reads until the SUBACK for `pid`; returns its first code. Anything else
/// the broker sends first (a retained message, a queued one) is skipped.
async fn suback(conn: &mut Conn, pid: u16) -> Result<u8, String> {
    loop {
        loop {
            let (granted, n) = match codec::parse(conn.unread(), conn.version) {
                Ok(Some((Packet::SubAck { pid: p, codes }, n))) if p == pid => {
                    (Some(codes.first().copied().unwrap_or(0x80)), n)
                }
                Ok(Some((_, n))) => (None, n),
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            };
            conn.rstart += n;
            if let Some(g) = granted {
                return Ok(g);
            }
        }
        conn.stream
            .readable()
            .await
            .map_err(|e| format!("waiting for SUBACK: {e}"))?;
        match conn.read_some() {
            Ok(true) => {}
            Ok(false) => return Err("connection closed by broker before SUBACK".into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("waiting for SUBACK: {e}")),
        }
    }
}
