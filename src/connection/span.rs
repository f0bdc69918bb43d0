//! The connection's tracing span (`conn{peer, listener, client_id}`), held
//! only while the connection has work: an idle connection gives its span
//! back, and the span is made again, with the same fields, the next time the
//! connection wakes. Every log line of a connection carries its fields as
//! before; an idle connection no longer pays for a live span (about 420 B in
//! the subscriber: the registry slot, its extensions map and the formatted
//! fields).
//!
//! The connection's loop says when it sleeps (its retransmission tick has
//! stopped, see `Timers`) through a flag; [`WhileAwake`] polls the loop
//! inside the span and gives the span back when a poll ends asleep.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::Span;

use crate::config::listeners::ListenerConfig;

/// What the span says, and the span while it is held.
pub struct ConnSpan {
    span: Option<Span>,
    peer: Option<SocketAddr>,
    listener: Arc<ListenerConfig>,
    /// Known once the client is registered.
    client_id: Option<Arc<str>>,
}

impl ConnSpan {
    /// The span of a connection from `peer` accepted on `listener`; made at
    /// once (the handshake runs in it).
    pub fn new(peer: Option<SocketAddr>, listener: Arc<ListenerConfig>) -> ConnSpan {
        let mut s = ConnSpan {
            span: None,
            peer,
            listener,
            client_id: None,
        };
        s.get();
        s
    }

    /// The client is registered as `client_id`: a span made from now on
    /// says so (the registration recorded it in the current one).
    pub fn registered(&mut self, client_id: Arc<str>) {
        self.client_id = Some(client_id);
    }

    /// The span, made again if it was given back.
    pub fn current(&mut self) -> Span {
        self.get().clone()
    }

    fn get(&mut self) -> &Span {
        if self.span.is_none() {
            let span = tracing::info_span!(
                "conn",
                peer = %self.peer.map(|p| p.to_string()).unwrap_or_default(),
                listener = %self.listener.id(),
                client_id = tracing::field::Empty
            );
            if let Some(c) = &self.client_id {
                span.record("client_id", &**c);
            }
            self.span = Some(span);
        }
        self.span.get_or_insert_with(Span::none)
    }

    /// Polls `fut` inside the span, giving the span back whenever a poll
    /// ends with `asleep` set.
    pub fn while_awake<'a, F: Future>(
        &'a mut self,
        fut: Pin<&'a mut F>,
        asleep: &'a AtomicBool,
    ) -> WhileAwake<'a, F> {
        WhileAwake {
            span: self,
            fut,
            asleep,
        }
    }
}

/// See [`ConnSpan::while_awake`].
pub struct WhileAwake<'a, F> {
    span: &'a mut ConnSpan,
    fut: Pin<&'a mut F>,
    asleep: &'a AtomicBool,
}

impl<F: Future> Future for WhileAwake<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let out = {
            let _entered = this.span.get().enter();
            this.fut.as_mut().poll(cx)
        };
        if out.is_pending() && this.asleep.load(Ordering::Relaxed) {
            this.span.span = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::listeners::ListenerKind;

    fn listener() -> Arc<ListenerConfig> {
        Arc::new(ListenerConfig::new(ListenerKind::Tcp, "default"))
    }

    /// A future that is pending until its third poll, saying it sleeps in
    /// between when told to.
    struct Sleeper<'a> {
        polls: u32,
        asleep: &'a AtomicBool,
        sleep: bool,
    }

    impl Future for Sleeper<'_> {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls += 1;
            if self.polls == 3 {
                return Poll::Ready(self.polls);
            }
            self.asleep.store(self.sleep, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn run(sleep: bool) -> (ConnSpan, Vec<bool>) {
        let mut span = ConnSpan::new(None, listener());
        let asleep = AtomicBool::new(false);
        let mut held = Vec::new();
        let mut fut = std::pin::pin!(Sleeper {
            polls: 0,
            asleep: &asleep,
            sleep,
        });
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        {
            let mut w = span.while_awake(fut.as_mut(), &asleep);
            while Pin::new(&mut w).poll(&mut cx).is_pending() {
                held.push(w.span.span.is_some());
            }
        }
        (span, held)
    }

    #[test]
    fn a_sleeping_connection_gives_its_span_back() {
        let (_, held) = run(true);
        assert_eq!(held, [false, false]);
    }

    #[test]
    fn an_awake_connection_keeps_its_span() {
        let (_, held) = run(false);
        assert_eq!(held, [true, true]);
    }
}
