//! One worker core: pin the thread, build its monoio runtime (io_uring, or epoll as fallback), turn
//! its listener sockets into accept loops, serve until told to stop, then drain.
//!
//! Per-core: the runtime, the `Shard`, the listeners. Crosses cores: only the control inbox and the
//! one-time start report.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use monoio::net::TcpListener;
use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::control::{ControlMsg, Inbox, WorkerReport};
use super::shard::Shard;
use crate::config::{IoDriver, Snapshot};
use crate::metrics::AccessLog;

/// Everything a worker thread needs, moved into it at spawn.
pub struct WorkerSpec {
    pub id: usize,
    /// How many workers the instance runs.
    pub workers: usize,
    pub cpu: Option<usize>,
    pub listeners: Vec<std::net::TcpListener>,
    pub snapshot: Arc<Snapshot>,
    /// The config's shared rate buckets (one set for every worker).
    pub rates: Arc<super::generation::SharedRates>,
    pub inbox: Inbox,
    pub report: Sender<WorkerReport>,
    /// Where the access log's blocks go, when it is enabled.
    pub log_tx: Option<Sender<Vec<u8>>>,
    /// Failure reports to the endpoint supervisor.
    pub events: Sender<super::control::ControlEvent>,
    /// Serves one accepted client connection (the proxy's request loop).
    pub handler: super::ConnHandler,
}

/// Thread body of a worker.
pub fn run(spec: WorkerSpec) {
    if let Some(cpu) = spec.cpu {
        if let Err(e) = super::affinity::pin_current_thread(cpu) {
            tracing::warn!(worker = spec.id, cpu, error = %e, "Could not pin worker");
        }
    }
    let entries = spec.snapshot.instance.uring_entries;
    match spec.snapshot.instance.io_driver {
        IoDriver::Legacy => run_legacy(spec),
        IoDriver::IoUring => match build_uring(entries) {
            Ok(mut rt) => rt.block_on(serve(spec, "io_uring")),
            Err(e) => {
                let _ = spec
                    .report
                    .send(WorkerReport::Failed { worker: spec.id, error: format!("io_uring unavailable: {e}") });
            }
        },
        IoDriver::Auto => match build_uring(entries) {
            Ok(mut rt) => rt.block_on(serve(spec, "io_uring")),
            Err(e) => {
                tracing::warn!(worker = spec.id, error = %e, "io_uring refused; falling back to epoll");
                run_legacy(spec);
            }
        },
    }
}

fn run_legacy(spec: WorkerSpec) {
    match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
        Ok(mut rt) => rt.block_on(serve(spec, "legacy")),
        Err(e) => {
            let _ = spec.report.send(WorkerReport::Failed { worker: spec.id, error: format!("epoll runtime: {e}") });
        }
    }
}

/// io_uring with COOP_TASKRUN | TASKRUN_FLAG (cheaper completions), or plain when the kernel
/// refuses those flags.
fn build_uring(entries: u32) -> io::Result<monoio::Runtime<TimeDriver<IoUringDriver>>> {
    let mut urb = io_uring::IoUring::builder();
    urb.setup_coop_taskrun().setup_taskrun_flag();
    let tuned = RuntimeBuilder::<IoUringDriver>::new().with_entries(entries).uring_builder(urb).enable_timer().build();
    match tuned {
        Ok(rt) => Ok(rt),
        Err(_) => RuntimeBuilder::<IoUringDriver>::new().with_entries(entries).enable_timer().build(),
    }
}

/// Stop signal for one accept loop (a single waker slot, replaced on each poll).
#[derive(Default)]
struct StopSlot {
    stopped: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// The task it stops has returned (an accept loop has taken its last queued connection).
    finished: Cell<bool>,
}

impl StopSlot {
    fn stop(&self) {
        self.stopped.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.stopped.get() {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

async fn serve(spec: WorkerSpec, driver: &'static str) {
    let WorkerSpec { id, workers, cpu, listeners, snapshot, rates, inbox, report, log_tx, events, handler } = spec;
    let log = match (&snapshot.access_log, log_tx) {
        (Some(cfg), Some(tx)) => Some(AccessLog::new(cfg.format, tx)),
        _ => None,
    };
    let shard = Shard::new(id, workers, super::Generation::new(snapshot, rates), driver, log);
    *shard.events.borrow_mut() = Some(events);
    let shard = Rc::new(shard);
    let mut accepting = Vec::with_capacity(listeners.len());
    for l in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => accepting.push(l),
            Err(e) => {
                let _ = report.send(WorkerReport::Failed { worker: id, error: format!("listener: {e}") });
                return;
            }
        }
    }
    tracing::info!(worker = id, cpu, driver, "Worker started");
    let _ = report.send(WorkerReport::Started { worker: id, cpu, driver });
    let names: Vec<String> = shard.generation().snapshot.listeners.iter().map(|l| l.name.clone()).collect();
    let mut slots: Vec<Accepting> = accepting
        .into_iter()
        .zip(names)
        .enumerate()
        .map(|(i, (l, name))| Accepting::spawn(&shard, l, name, i, handler))
        .collect();
    // the worker's own stop signal, for its background tasks
    let stopped = Rc::new(StopSlot::default());
    if shard.access_log.is_some() {
        monoio::spawn(flush_access_log(shard.clone(), stopped.clone()));
    }
    monoio::spawn(pool_janitor(shard.clone(), stopped.clone()));
    // parked keep-alive connections come back through it until the worker has drained
    monoio::spawn(super::park::tend(shard.clone(), handler));
    // `None` (supervisor gone) stops the worker like Shutdown
    while let Some(msg) = inbox.recv().await {
        match msg {
            ControlMsg::Stats { reply } => {
                let _ = reply.send(shard.metrics_snapshot());
            }
            ControlMsg::Reload { snapshot, rates, map, events, listeners, ack } => {
                let t0 = Instant::now();
                let generation = snapshot.generation;
                let next = super::Generation::carry(snapshot, rates, &shard.generation(), &map);
                shard.switch(next, &map);
                let removed;
                (slots, removed) = relisten(&shard, slots, listeners, handler);
                // a removed listener's socket is closed before the reload is confirmed: its
                // accept loop ends at its next poll, and the close is one more ring operation
                let settle = Instant::now() + CLOSE_WAIT;
                while removed.iter().any(|s| !s.finished.get()) && Instant::now() < settle {
                    monoio::time::sleep(CLOSE_POLL).await;
                }
                if !removed.is_empty() {
                    monoio::time::sleep(CLOSE_POLL).await;
                }
                *shard.events.borrow_mut() = Some(events);
                tracing::info!(
                    worker = id,
                    generation,
                    switch_us = t0.elapsed().as_micros() as u64,
                    "Switched to the new config"
                );
                let _ = ack.send(id);
            }
            ControlMsg::Endpoint { generation, upstream, endpoint, available } => {
                let gen = shard.generation();
                let flag = gen.upstreams.get(upstream).and_then(|u| u.available.get(endpoint));
                match flag {
                    Some(flag) if generation == gen.id() => flag.set(available),
                    _ => tracing::debug!(generation, "Endpoint change for another config generation ignored"),
                }
            }
            ControlMsg::ListenFds { reply } => {
                let fds = slots
                    .iter()
                    .filter_map(|a| super::listener::dup_fd(a.fd).ok().map(|fd| (a.name.clone(), fd)))
                    .collect();
                let _ = reply.send((id, fds));
            }
            ControlMsg::Shutdown => break,
        }
    }
    shard.draining.set(true);
    slots.iter().for_each(|s| s.stop.stop());
    stopped.stop();
    // the accept loops take what is queued and admit it before the drain counts connections:
    // otherwise a connection taken at the last moment would be dropped unanswered with the runtime
    let settle = Instant::now() + CLOSE_WAIT;
    while slots.iter().any(|s| !s.stop.finished.get()) && Instant::now() < settle {
        monoio::time::sleep(CLOSE_POLL).await;
    }
    let started = Instant::now();
    let drain_timeout = shard.generation().snapshot.instance.drain_timeout;
    let deadline = started + drain_timeout;
    // in-flight requests finish (their responses say `Connection: close`); keep-alive clients
    // that send their next request within the grace get it served with `Connection: close` too,
    // so a busy connection is never closed under a request the client has just written
    let grace = started + IDLE_GRACE.min(drain_timeout);
    while (shard.in_flight.get() > 0 || (shard.connections.get() > 0 && Instant::now() < grace))
        && Instant::now() < deadline
    {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    let unfinished = shard.in_flight.get();
    // what is left is idle keep-alive (or past the deadline): end the reads so the tasks close
    for c in shard.open_fds.borrow().values() {
        super::listener::shutdown_fd(c.fd);
    }
    let close_deadline = Instant::now() + CLOSE_WAIT;
    while shard.connections.get() > 0 && Instant::now() < close_deadline {
        monoio::time::sleep(CLOSE_POLL).await;
    }
    if let Some(log) = &shard.access_log {
        log.flush();
    }
    // tasks still parked when the runtime is dropped are not dropped by monoio 0.2.4; close the
    // pooled upstream connections and the parking lot's explicitly so an in-process stop leaks
    // no sockets (and the lot's guards, which hold the shard, are gone)
    shard.pool.borrow_mut().clear();
    shard.parked.borrow_mut().close_all();
    tracing::info!(worker = id, unfinished, "Worker stopped");
}

/// One listener this worker accepts on.
struct Accepting {
    name: String,
    /// The listening socket (a binary upgrade duplicates it).
    fd: RawFd,
    stop: Rc<StopSlot>,
    /// The listener's index in the current config (a reload may renumber it).
    index: Rc<Cell<usize>>,
}

impl Accepting {
    fn spawn(shard: &Rc<Shard>, l: TcpListener, name: String, index: usize, handler: super::ConnHandler) -> Self {
        let (stop, index) = (Rc::new(StopSlot::default()), Rc::new(Cell::new(index)));
        let fd = l.as_raw_fd();
        monoio::spawn(accept_loop(shard.clone(), l, index.clone(), stop.clone(), handler));
        Self { name, fd, stop, index }
    }
}

/// After a reload: keeps the listeners that stayed (renumbered), starts the added ones, stops
/// the removed ones (their open connections go on until they close).
fn relisten(
    shard: &Rc<Shard>,
    old: Vec<Accepting>,
    updates: Vec<super::control::ListenerUpdate>,
    handler: super::ConnHandler,
) -> (Vec<Accepting>, Vec<Rc<StopSlot>>) {
    use super::control::ListenerUpdate;
    let mut old: Vec<Option<Accepting>> = old.into_iter().map(Some).collect();
    let mut next = Vec::with_capacity(updates.len());
    for (index, u) in updates.into_iter().enumerate() {
        match u {
            ListenerUpdate::Keep { name } => {
                let kept = old.iter_mut().find(|a| a.as_ref().is_some_and(|a| a.name == name)).and_then(Option::take);
                match kept {
                    Some(a) => {
                        a.index.set(index);
                        next.push(a);
                    }
                    None => tracing::error!(listener = %name, "Reload kept a listener this worker does not have"),
                }
            }
            ListenerUpdate::Add { name, socket } => match TcpListener::from_std(socket) {
                Ok(l) => next.push(Accepting::spawn(shard, l, name, index, handler)),
                Err(e) => tracing::error!(listener = %name, error = %e, "Cannot accept on the new listener"),
            },
        }
    }
    let mut removed = Vec::new();
    for gone in old.into_iter().flatten() {
        tracing::info!(listener = %gone.name, "Listener removed: no longer accepting");
        gone.index.set(usize::MAX);
        gone.stop.stop();
        removed.push(gone.stop);
    }
    (next, removed)
}

/// How often a draining worker checks its in-flight count and connections.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How often a stopping worker checks that shut-down connections have closed.
const CLOSE_POLL: Duration = Duration::from_millis(1);
/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// During a drain, how long idle keep-alive connections may still bring one last request.
const IDLE_GRACE: Duration = Duration::from_millis(500);

/// How long a stopping worker waits for shut-down connections to close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Hands buffered access-log lines to the writer every [`LOG_FLUSH_EVERY`] until the worker stops.
async fn flush_access_log(shard: Rc<Shard>, stop: Rc<StopSlot>) {
    while !stop.stopped.get() {
        monoio::time::sleep(LOG_FLUSH_EVERY).await;
        if let Some(log) = &shard.access_log {
            log.flush();
        }
    }
}

/// Closes idle pooled connections whose watch fired (the origin sent bytes or closed) as soon as
/// it fires, and those past their idle timeout every sweep period, until the worker stops.
async fn pool_janitor(shard: Rc<Shard>, stop: Rc<StopSlot>) {
    poll_fn(|cx| {
        *shard.pool_waker.borrow_mut() = cx.waker().clone();
        Poll::Ready(())
    })
    .await;
    let every = janitor_period(&shard.generation().snapshot);
    while !stop.stopped.get() {
        let woken = monoio::select! {
            biased;
            _ = monoio::time::sleep(every) => false,
            _ = crate::upstream::WokenAgain::default() => true,
        };
        shard.sweep_pool(woken, Instant::now(), every);
    }
}

/// A quarter of the shortest pool idle timeout, between 10 ms and 50 ms: connections are closed
/// at most that late after they expire, and pooled connections are watched after that long.
fn janitor_period(snapshot: &Snapshot) -> Duration {
    let shortest = snapshot.upstreams.iter().map(|u| u.pool_idle_timeout).min().unwrap_or(Duration::from_secs(4));
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_millis(50))
}

/// Access-log lines reach the writer at most this late.
const LOG_FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Open client connections allowed on this worker: the per-worker cap, and this worker's share
/// of the instance cap.
fn connection_cap(shard: &Shard) -> usize {
    let gen = shard.generation();
    let per_worker = gen.snapshot.http.max_connections_per_worker;
    match gen.snapshot.instance.max_connections {
        Some(total) => per_worker.min(total.div_ceil(shard.workers).max(1)),
        None => per_worker,
    }
}

/// Serves an accepted connection. At the cap, first makes room by closing the oldest idle
/// keep-alive connection (as nginx does), else hands it over marked `over_cap` (the handler
/// answers 503 at once): no client is ever left waiting in the backlog.
fn admit(
    shard: &Rc<Shard>,
    stream: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    index: &Rc<Cell<usize>>,
    handler: super::ConnHandler,
    cap: usize,
) {
    shard.metrics.borrow_mut().connections_total += 1;
    if shard.connections.get() >= cap && !shard.evict_oldest_idle() {
        shard.metrics.borrow_mut().connections_refused += 1;
        let stream = crate::net::Stream::Plain(stream);
        let conn = super::Accepted { stream, peer, listener: index.clone(), guard: None, served: None };
        monoio::spawn(handler(shard.clone(), conn));
        return;
    }
    let guard = super::ConnGuard::new(shard.clone(), stream.as_raw_fd());
    let stream = crate::net::Stream::Plain(stream);
    let conn = super::Accepted { stream, peer, listener: index.clone(), guard: Some(guard), served: None };
    monoio::spawn(handler(shard.clone(), conn));
}

/// Accepts on `listener` until stopped. It waits for readiness and then takes every queued
/// connection with non-blocking accept4 calls, rather than keeping an accept operation in flight:
/// cancelling an in-flight io_uring accept at stop can lose a connection the kernel completed in
/// the meantime, and the listening socket may be shared with an upgrading process that keeps
/// serving it. Connections queued when the stop comes are taken and answered too.
async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    index: Rc<Cell<usize>>,
    stop: Rc<StopSlot>,
    handler: super::ConnHandler,
) {
    let cap = connection_cap(&shard);
    let legacy = monoio::utils::is_legacy();
    let fd = listener.as_raw_fd();
    // marks the loop finished however it returns
    struct Finished(Rc<StopSlot>);
    impl Drop for Finished {
        fn drop(&mut self) {
            self.0.finished.set(true);
        }
    }
    let _finished = Finished(stop.clone());
    loop {
        let ready = monoio::select! {
            r = listener.readable(false) => Some(r),
            _ = stop.wait() => None,
        };
        loop {
            match super::listener::accept_queued(fd) {
                Ok(Some((std_stream, peer))) => {
                    if legacy && std_stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if let Ok(stream) = monoio::net::TcpStream::from_std(std_stream) {
                        admit(&shard, stream, peer, &index, handler, cap);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "Accept failed");
                    // EMFILE and friends: back off instead of spinning
                    monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    break;
                }
            }
        }
        match ready {
            None => return,
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "Waiting for connections failed");
                monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}
