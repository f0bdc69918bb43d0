//! A node's life, in the manner of tokio's mini-redis: one [`Shutdown`]
//! handle, cloned into every task of the node, which each task selects on;
//! the owner ([`crate::server::run`]) starts the node, serves until a
//! [`LifecycleRequest`] arrives (a signal, or an HTTP handler asking for a
//! restart to join a cluster), then stops it: it closes the MQTT listener,
//! cancels the handle so every connection ends (committing its disconnect),
//! waits for the tracked tasks to finish, and shuts the Raft node down.
//!
//! Signals are handled here and nowhere else in a node ([`watch_signals`]):
//! the first SIGTERM or SIGINT asks for a graceful stop; a second one during
//! the stop exits at once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// What the owner of a node is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleRequest {
    /// Stop gracefully and exit (SIGTERM, SIGINT).
    Stop,
    /// Stop gracefully, give up this node's (empty) cluster of one and
    /// re-execute the process with `--join` this discovery address.
    RestartToJoin(String),
}

/// The exit status when a second signal interrupts a graceful stop.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The lifecycle handle every task of a node holds. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    /// Cancelled when the node stops: every task ends.
    stop: CancellationToken,
    /// Cancelled when the MQTT listener must close: when the node stops, or
    /// when the cluster removed it (it keeps answering HTTP).
    accept: CancellationToken,
    /// The tasks the stop waits for.
    tracker: TaskTracker,
    running: Arc<Running>,
    requests: mpsc::UnboundedSender<LifecycleRequest>,
}

/// How many tracked tasks of each name are still running, for the log of a
/// stop that ran out of time. Counted by name, not kept per task: the many
/// tasks of one kind (connections) share one entry and one static name.
#[derive(Default)]
struct Running {
    names: Mutex<BTreeMap<Cow<'static, str>, usize>>,
}

/// Counts a task out of its name when the task ends (or is dropped).
struct NameGuard(Arc<Running>, Cow<'static, str>);

impl Drop for NameGuard {
    fn drop(&mut self) {
        let mut names = self.0.names.lock();
        if let Some(n) = names.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                names.remove(&self.1);
            }
        }
    }
}

/// What only the owner holds: the receiving end of the requests.
pub struct Requests(mpsc::UnboundedReceiver<LifecycleRequest>);

impl Requests {
    /// The next request (never ends: the handle keeps a sender).
    pub async fn next(&mut self) -> LifecycleRequest {
        self.0.recv().await.unwrap_or(LifecycleRequest::Stop)
    }
}

impl Shutdown {
    pub fn new() -> (Shutdown, Requests) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let s = Shutdown {
            accept: stop.child_token(),
            stop,
            tracker: TaskTracker::new(),
            running: Arc::default(),
            requests: tx,
        };
        (s, Requests(rx))
    }

    /// Completes when the node begins to stop.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Completes when the MQTT listener must stop accepting.
    pub fn accept_ended(&self) -> WaitForCancellationFuture<'_> {
        self.accept.cancelled()
    }

    /// Spawns a task the stop waits for; `name` says what it is if the stop
    /// runs out of time.
    pub fn spawn<F>(&self, name: impl Into<Cow<'static, str>>, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = name.into();
        *self.running.names.lock().entry(name.clone()).or_default() += 1;
        let guard = NameGuard(self.running.clone(), name);
        // `map`, not `async move { ..; task.await }`: an async block keeps
        // the captured future and the one it awaits in separate slots,
        // doubling every connection task's size.
        self.tracker.spawn(task.map(move |out| {
            drop(guard);
            out
        }))
    }

    /// Asks the owner for a stop or a restart; returns at once.
    pub fn request(&self, r: LifecycleRequest) {
        let _ = self.requests.send(r);
    }

    /// The MQTT listener closes; everything else keeps running (a node the
    /// cluster removed).
    pub(crate) fn close_listener(&self) {
        self.accept.cancel();
    }

    /// The owner begins the stop: the listener closes and every task is told.
    pub(crate) fn begin_stop(&self) {
        self.stop.cancel();
    }

    /// Waits up to `limit` for every tracked task to finish. On time-out,
    /// logs what is still running and returns false.
    pub(crate) async fn drain(&self, limit: Duration) -> bool {
        self.tracker.close();
        if tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        let still: Vec<String> = self
            .running
            .names
            .lock()
            .iter()
            .map(|(name, &n)| {
                if n > 1 {
                    format!("{name} (x{n})")
                } else {
                    name.to_string()
                }
            })
            .collect();
        warn!(
            tasks = self.tracker.len(),
            running = %still.join(", "),
            "tasks still running after {limit:?}; stopping without them"
        );
        false
    }
}

/// SIGTERM and SIGINT (ctrl-c), installed together.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs both handlers: from here on these signals no longer end the
    /// process outright.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next of either signal, by name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The node's one signal handler: the first SIGTERM or SIGINT asks the owner
/// for a graceful stop, a second one exits at once. Runs until the process
/// exits; not tracked (it must outlive the stop).
pub fn watch_signals(life: &Shutdown) {
    // Installed now, before anything is started.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install the signal handlers");
            return;
        }
    };
    let life = life.clone();
    tokio::spawn(async move {
        let first = signals.next().await;
        info!(
            signal = first,
            "stopping gracefully (a second signal exits at once)"
        );
        life.request(LifecycleRequest::Stop);
        let second = signals.next().await;
        warn!(
            signal = second,
            "second signal during the stop: exiting at once"
        );
        std::process::exit(EXIT_INTERRUPTED);
    });
}
