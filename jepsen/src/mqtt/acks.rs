//! [`Shared`]: the requests waiting for an acknowledgement, keyed by ack
//! kind and packet id, and whether the connection is over. The handle
//! registers a request before sending it; the connection task routes each
//! acknowledgement to it, and fails every waiter when the connection ends.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::codec::Packet;
use super::MqttError;

/// Which acknowledgement a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum AckKind {
    Puback,
    Pubrec,
    Pubcomp,
    Suback,
    Unsuback,
}

type Waiter = oneshot::Sender<Result<Packet, MqttError>>;

#[derive(Default)]
struct ConnState {
    waiters: HashMap<(AckKind, u16), Waiter>,
    /// Set once the connection has ended, with the broker's DISCONNECT
    /// reason if it sent one.
    closed: Option<Option<u8>>,
}

/// What the handle and the connection task share: the waiting requests and
/// whether the connection is over.
#[derive(Default)]
pub(super) struct Shared(Mutex<ConnState>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn register(
        &self,
        key: (AckKind, u16),
    ) -> Result<oneshot::Receiver<Result<Packet, MqttError>>, MqttError> {
        let mut s = self.lock();
        if let Some(reason) = s.closed {
            return Err(MqttError::Closed(reason));
        }
        let (tx, rx) = oneshot::channel();
        s.waiters.insert(key, tx);
        Ok(rx)
    }

    pub(super) fn forget(&self, key: (AckKind, u16)) {
        self.lock().waiters.remove(&key);
    }

    /// Hands `p` to whoever waits for it; late acknowledgements (their
    /// request already timed out) are dropped.
    pub(super) fn route(&self, key: (AckKind, u16), p: Packet) {
        if let Some(tx) = self.lock().waiters.remove(&key) {
            let _ = tx.send(Ok(p));
        }
    }

    pub(super) fn close(&self, reason: Option<u8>) {
        let mut s = self.lock();
        if s.closed.is_none() {
            s.closed = Some(reason);
        }
        let reason = s.closed.flatten();
        for (_, tx) in s.waiters.drain() {
            let _ = tx.send(Err(MqttError::Closed(reason)));
        }
    }

    pub(super) fn closed_error(&self) -> MqttError {
        MqttError::Closed(self.lock().closed.flatten())
    }
}
