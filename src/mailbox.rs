//! A connection's mailbox: the unbounded channel the registry (apply and the
//! router) sends a connection's events through, sized for many idle
//! connections.
//!
//! `tokio::sync::mpsc` allocates its first block of 32 slots when the channel
//! is made, about 2.3 KB for a `ConnEvent`, whether or not anything is ever
//! sent. Here the queue is a `VecDeque` that allocates on the first event,
//! grows with traffic and is given back by [`Receiver::shrink`] (the
//! connection calls it when idle): an idle connection's mailbox is one small
//! allocation.
//!
//! Semantics as `mpsc::unbounded_channel`: [`Sender::send`] fails once the
//! receiver is gone; [`Receiver::recv`] returns `None` once every sender is
//! gone and the queue is empty; `recv` is cancel safe.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

struct Shared<T> {
    state: Mutex<State<T>>,
    senders: AtomicUsize,
}

struct State<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    receiver_alive: bool,
}

/// The sending side; cloneable.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side, owned by the connection.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A new, empty mailbox (no queue allocated yet).
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            receiver_alive: true,
        }),
        senders: AtomicUsize::new(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `value`; gives it back if the receiver is gone.
    pub fn send(&self, value: T) -> Result<(), T> {
        self.queue(value, VecDeque::push_back)
    }

    /// Queues every value, in order, under one lock with one wake-up;
    /// gives them back if the receiver is gone.
    pub fn send_all(&self, values: Vec<T>) -> Result<(), Vec<T>> {
        self.queue(values, |q, v| q.extend(v))
    }

    /// `push`es `v` into the queue under the lock and wakes the receiver,
    /// or gives `v` back if the receiver is gone.
    fn queue<V>(&self, v: V, push: impl FnOnce(&mut VecDeque<T>, V)) -> Result<(), V> {
        let waker = {
            let mut st = self.shared.state.lock();
            if !st.receiver_alive {
                return Err(v);
            }
            push(&mut st.queue, v);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: a receiver waiting learns the mailbox closed.
            let waker = self.shared.state.lock().waker.take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    Disconnected,
}

impl<T> Receiver<T> {
    /// The next event; `None` once every sender is gone and the queue is
    /// empty. Cancel safe.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut st = self.shared.state.lock();
            if let Some(v) = st.queue.pop_front() {
                return Poll::Ready(Some(v));
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return Poll::Ready(None);
            }
            match &mut st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut st = self.shared.state.lock();
        match st.queue.pop_front() {
            Some(v) => Ok(v),
            None if self.shared.senders.load(Ordering::Acquire) == 0 => {
                Err(TryRecvError::Disconnected)
            }
            None => Err(TryRecvError::Empty),
        }
    }

    /// Gives back the queue's memory if it is empty: for an idle connection.
    pub fn shrink(&mut self) {
        let mut st = self.shared.state.lock();
        if st.queue.is_empty() && st.queue.capacity() > 0 {
            st.queue = VecDeque::new();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.receiver_alive = false;
        // Events queued for a connection that has ended are dropped now, not
        // when the last sender goes.
        st.queue = VecDeque::new();
        st.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_in_the_order_they_were_sent() {
        let (tx, mut rx) = channel();
        for i in 0..100 {
            tx.send(i).expect("receiver alive");
        }
        let got: Vec<i32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn events_sent_together_follow_those_sent_before_in_order() {
        let (tx, mut rx) = channel();
        tx.send(0).expect("receiver alive");
        tx.send_all((1..50).collect()).expect("receiver alive");
        tx.send(50).expect("receiver alive");
        let got: Vec<i32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, (0..=50).collect::<Vec<_>>());
    }

    #[test]
    fn a_send_after_the_receiver_is_gone_gives_the_event_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(7), Err(7));
        assert_eq!(tx.send_all(vec![8, 9]), Err(vec![8, 9]));
    }

    #[tokio::test]
    async fn recv_ends_once_every_sender_is_gone_and_the_queue_is_drained() {
        let (tx, mut rx) = channel();
        let tx2 = tx.clone();
        tx.send(1).expect("receiver alive");
        drop(tx);
        drop(tx2);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
        let (tx, mut rx) = channel();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send("hello").expect("receiver alive");
        assert_eq!(waiter.await.expect("task"), Some("hello"));
    }

    #[test]
    fn an_idle_mailbox_gives_its_queue_back_and_still_works() {
        let (tx, mut rx) = channel();
        for i in 0..1000 {
            tx.send(i).expect("receiver alive");
        }
        while rx.try_recv().is_ok() {}
        assert!(rx.shared.state.lock().queue.capacity() >= 1000);
        rx.shrink();
        assert_eq!(rx.shared.state.lock().queue.capacity(), 0);
        tx.send(5).expect("receiver alive");
        assert_eq!(rx.try_recv(), Ok(5));
    }

    #[test]
    fn a_mailbox_with_events_waiting_is_not_shrunk() {
        let (tx, mut rx) = channel();
        tx.send(1).expect("receiver alive");
        rx.shrink();
        assert_eq!(rx.try_recv(), Ok(1));
    }
}
