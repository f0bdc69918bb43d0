//! `conn` mode: open N connections on an open-loop timetable and measure
//! connect latency (TCP connect + CONNECT→CONNACK), failures, and drops while
//! the connections are held open.

use super::clock::mono_ns;
use super::codec;
use super::conn::{self, io_kind, ClientCfg};
use super::Phase;
use std::io;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};

pub struct Attempt {
    pub latency_ns: Option<u64>,
    pub error: Option<String>,
}

/// One connection's life: connect, report, hold until `Stop`. Returns a drop
/// reason if the broker closed it while held.
pub async fn one(
    cfg: ClientCfg,
    id: String,
    intended: u64,
    report: mpsc::UnboundedSender<Attempt>,
    mut ctl: watch::Receiver<Phase>,
) -> Option<String> {
    let mut c = match conn::connect(&cfg, &id).await {
        Ok(c) => {
            let _ = report.send(Attempt {
                latency_ns: Some(mono_ns().saturating_sub(intended)),
                error: None,
            });
            c
        }
        Err(e) => {
            let _ = report.send(Attempt {
                latency_ns: None,
                error: Some(e.kind()),
            });
            return None;
        }
    };
    drop(report);
    let ka_ns = cfg.keepalive as u64 * 500_000_000;
    loop {
        if let Err(e) = c.flush() {
            return Some(format!("held connection write: {}", io_kind(&e)));
        }
        let deadline = if ka_ns > 0 && !c.want_write() {
            c.last_write + ka_ns
        } else {
            u64::MAX
        };
        tokio::select! {
            rd = c.stream.ready(Interest::READABLE) => {
                if let Err(e) = rd {
                    return Some(format!("held connection: {e}"));
                }
                match c.read_some() {
                    Ok(true) => {
                        // Discard whatever arrives (PINGRESP); a DISCONNECT is a drop.
                        while let Ok(Some((p, n))) = codec::parse(c.unread(), c.version) {
                            if let codec::Packet::Disconnect { reason } = p {
                                return Some(format!("broker sent DISCONNECT (reason 0x{reason:02x})"));
                            }
                            c.rstart += n;
                        }
                    }
                    Ok(false) => return Some("held connection closed by broker".into()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Some(format!("held connection read: {}", io_kind(&e))),
                }
            }
            // Keepalive needs no sub-millisecond pacing: tokio's timer, not a
            // timerfd per held connection (which would double the descriptors).
            _ = tokio::time::sleep(std::time::Duration::from_nanos(deadline.saturating_sub(mono_ns()))),
                if deadline != u64::MAX => {
                if !c.want_write() {
                    codec::encode_pingreq(&mut c.wbuf);
                }
            }
            ch = ctl.changed() => {
                if ch.is_err() || matches!(*ctl.borrow(), Phase::Stop) {
                    c.close().await;
                    return None;
                }
            }
        }
    }
}
