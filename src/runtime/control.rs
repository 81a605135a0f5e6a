//! Typed cross-core messages: control thread → worker, and worker → control reports.
//!
//! The inbox is a lock-free crossbeam channel plus a waker slot so an idle worker's runtime is
//! woken (monoio's `sync` feature makes cross-thread wakes safe). This is the only way cores talk;
//! it carries rare events, never per-request traffic.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

/// What a reload does to one of a worker's listeners, in the new config's order.
#[derive(Debug)]
pub enum ListenerUpdate {
    /// The listener stays (same name and address): keep accepting on its socket.
    Keep { name: String },
    /// A new (or moved) listener: accept on this socket, bound for this worker.
    Add { name: String, socket: std::net::TcpListener },
}

/// Control → worker.
#[derive(Debug)]
pub enum ControlMsg {
    /// Stop accepting, let in-flight requests finish (up to the drain deadline), then exit.
    Shutdown,
    /// A duplicate of each listening socket this worker accepts on, by listener name (a binary
    /// upgrade hands them to the new process).
    ListenFds { reply: Sender<(usize, Vec<(String, std::os::fd::OwnedFd)>)> },
    /// Send a copy of the worker's metrics (cumulative; windows are computed by the admin).
    Stats { reply: Sender<crate::metrics::MetricsSnapshot> },
    /// Switch to a new config (a reload): new requests start on it; the worker answers on `ack`
    /// with its id once switched. `events`: the endpoint supervisor's new inbox.
    Reload {
        snapshot: std::sync::Arc<crate::config::Snapshot>,
        rates: std::sync::Arc<super::SharedRates>,
        /// The new config's items by their index in the previous one (computed once).
        map: std::sync::Arc<crate::config::Remap>,
        events: crossbeam_channel::Sender<ControlEvent>,
        /// The new config's listeners, in order; listeners not named here stop accepting.
        listeners: Vec<ListenerUpdate>,
        ack: crossbeam_channel::Sender<usize>,
    },
    /// An endpoint enters or leaves rotation (health checks, outlier ejection). Indices are
    /// those of config `generation`; a worker on another generation ignores the message.
    Endpoint { generation: u64, upstream: usize, endpoint: usize, available: bool },
}

/// Worker / prober → endpoint supervisor.
#[derive(Debug, Clone)]
pub enum ControlEvent {
    /// A request outcome on an endpoint (sent for failures, and for the first success after one),
    /// with indices of config `generation`.
    Outcome { generation: u64, upstream: usize, endpoint: usize, failure: bool },
    /// An active health probe result, with indices of config `generation`.
    Probe { generation: u64, upstream: usize, endpoint: usize, result: Result<(), String> },
}

/// Worker → supervisor, once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerReport {
    /// The worker's runtime is up; names the driver it runs.
    Started { worker: usize, cpu: Option<usize>, driver: &'static str },
    /// The worker could not start.
    Failed { worker: usize, error: String },
}

struct Shared {
    waker: Mutex<Option<Waker>>,
}

/// Sending half, held by the supervisor.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<ControlMsg>,
    shared: Arc<Shared>,
}

/// Receiving half, owned by one worker.
pub struct Inbox {
    rx: Receiver<ControlMsg>,
    shared: Arc<Shared>,
}

/// Asks every worker for a copy of its metrics and waits at most `wait` for the answers.
/// Returns them in worker order, and the workers that did not answer in time.
pub fn collect_stats(
    outboxes: &[Outbox],
    wait: std::time::Duration,
) -> (Vec<crate::metrics::MetricsSnapshot>, Vec<usize>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let asked = outboxes.iter().filter(|o| o.send(ControlMsg::Stats { reply: tx.clone() })).count();
    drop(tx);
    let deadline = std::time::Instant::now() + wait;
    let mut snaps = Vec::with_capacity(asked);
    while snaps.len() < asked {
        match rx.recv_deadline(deadline) {
            Ok(s) => snaps.push(s),
            Err(_) => break,
        }
    }
    snaps.sort_by_key(|s| s.worker);
    let missing = (0..outboxes.len()).filter(|w| !snaps.iter().any(|s| s.worker == *w)).collect();
    (snaps, missing)
}

/// A connected outbox/inbox pair.
pub fn channel() -> (Outbox, Inbox) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared { waker: Mutex::new(None) });
    (Outbox { tx, shared: shared.clone() }, Inbox { rx, shared })
}

impl Outbox {
    /// Sends `msg` and wakes the worker; false if the worker is gone.
    pub fn send(&self, msg: ControlMsg) -> bool {
        let ok = self.tx.send(msg).is_ok();
        let waker = self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
        ok
    }
}

impl Inbox {
    /// Takes a message if one is waiting (for threads that are not a monoio runtime).
    pub fn try_recv(&self) -> Option<ControlMsg> {
        self.rx.try_recv().ok()
    }

    /// Waits for the next message; `None` once every outbox is dropped.
    pub async fn recv(&self) -> Option<ControlMsg> {
        poll_fn(|cx| {
            match self.rx.try_recv() {
                Ok(m) => return Poll::Ready(Some(m)),
                Err(TryRecvError::Disconnected) => return Poll::Ready(None),
                Err(TryRecvError::Empty) => {}
            }
            *self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // re-check after publishing the waker so a send in between is not lost
            match self.rx.try_recv() {
                Ok(m) => Poll::Ready(Some(m)),
                Err(TryRecvError::Disconnected) => Poll::Ready(None),
                Err(TryRecvError::Empty) => Poll::Pending,
            }
        })
        .await
    }
}
