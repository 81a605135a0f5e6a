//! Threads: one pinned worker per allowed CPU, each with its own runtime and `Shard`; the caller's
//! thread supervises (signals, shutdown).
//!
//! [`start`] binds every listener up front (so a busy port fails the start), spawns the workers,
//! and waits for each to report its driver. [`Running::shutdown`] tells every worker to stop
//! accepting and drain; [`Running::join`] waits for them.

mod affinity;
mod control;
pub mod dns;
pub mod endpoints;
mod generation;
mod listener;
pub mod notify;
mod park;
mod preflight;
mod reload;
mod shard;
pub mod upgrade;
mod worker;

pub use affinity::allowed_cpus;
pub use control::{channel, collect_stats, ControlMsg, Inbox, Outbox, WorkerReport};
pub use generation::{Generation, SharedRates};
pub use listener::shutdown_fd;
pub use park::{ConnGuard, IdleFor, Parked, ParkingLot};
pub use preflight::preflight;
pub use reload::{Current, LastReload, ReloadError, Reloader};
pub use shard::{OpenConn, Shard};

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{Snapshot, Workers};

/// Outcome reports queued for the endpoint supervisor before new ones are dropped. The queue is
/// an unbounded channel checked against this length: a bounded one allocates (and touches) all
/// its slots up front, 3.5 MiB of resident memory for a queue that is empty nearly always.
pub(crate) const EVENT_QUEUE: usize = 65_536;

/// How long `start` waits for every worker to report in.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start: the config file (what a reload re-reads) and listening sockets inherited from
/// a process being upgraded.
#[derive(Default)]
pub struct StartOptions {
    pub path: Option<std::path::PathBuf>,
    pub inherited: Vec<upgrade::Inherited>,
}

/// A started gateway.
pub struct Running {
    /// Bound address of each `[[listener]]`, in config order (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    /// Driver each worker runs ("io_uring" or "legacy").
    pub drivers: Vec<&'static str>,
    /// Bound admin address, when `[admin]` is configured.
    pub admin_addr: Option<SocketAddr>,
    outboxes: Vec<control::Outbox>,
    handles: Vec<JoinHandle<()>>,
    /// Shared with the upgrade thread, which stops it once a new process took over.
    admin: Arc<std::sync::Mutex<Option<crate::admin::AdminHandle>>>,
    /// The running config and live reload (set once the workers are up).
    reloader: Option<Arc<Reloader>>,
    log_writer: Option<crate::metrics::LogWriter>,
    /// Set when the drain delay starts: `/healthz` answers 503 `draining`.
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Set once the workers have stopped: the DNS and cluster threads end then (not at the drain's
    /// start: requests served during the drain still need endpoints and cluster tokens).
    background_stop: Arc<std::sync::atomic::AtomicBool>,
}

/// An accepted client connection, as a worker hands it to its connection handler.
pub struct Accepted {
    /// Plain TCP when new; a connection back from the parking lot may be TLS.
    pub stream: crate::net::Stream,
    pub peer: SocketAddr,
    /// Index of the listener that accepted it, in the current config (a reload may renumber it;
    /// `usize::MAX` once the listener is removed).
    pub listener: std::rc::Rc<std::cell::Cell<usize>>,
    /// The connection's registration (count and descriptor) for as long as it is open; its
    /// `idle` flag is set while it waits for its next request with nothing buffered (a worker at
    /// its connection cap may close it). `None`: accepted over the worker's connection cap with
    /// no idle connection to close; the handler refuses it at once (it is not counted as open).
    pub guard: Option<ConnGuard>,
    /// `None` for a new connection; for one coming back from the parking lot (its socket
    /// readable), the requests served on it so far (0: it parked before its first request).
    pub served: Option<u32>,
}

/// What serves accepted connections (the proxy's request loop): the runtime knows nothing of
/// HTTP, so the caller hands it in (`ringway::start` wires the proxy).
pub type ConnHandler = fn(std::rc::Rc<Shard>, Accepted) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// Starts the workers (one per allowed CPU or as configured), the endpoint supervisor and the
/// admin endpoint; every accepted connection is served by `handler`. `path`: the config file a
/// reload re-reads (`None`: reloads only from text, [`Reloader::reload_text`]).
pub fn start(snapshot: Arc<Snapshot>, handler: ConnHandler, options: StartOptions) -> io::Result<Running> {
    let StartOptions { path, inherited } = options;
    let cpus = allowed_cpus();
    let workers = match snapshot.instance.workers {
        Workers::Auto => cpus.len(),
        Workers::Count(n) => n,
    };
    let (mut sockets, bound) = listener::bind_or_inherit(&snapshot.listeners, workers, &inherited)?;
    drop(inherited); // the workers hold their own descriptors
    let (report_tx, report_rx) = crossbeam_channel::unbounded();
    let (event_tx, event_rx) = crossbeam_channel::unbounded();
    let (log_tx, log_writer) = match &snapshot.access_log {
        Some(cfg) => {
            let (tx, handle) = crate::metrics::spawn_writer(cfg.target.clone())?;
            (Some(tx), Some(handle))
        }
        None => (None, None),
    };
    let rates = SharedRates::new(&snapshot, None);
    let mut outboxes = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for id in (0..workers).rev() {
        let (outbox, inbox) = control::channel();
        let spec = worker::WorkerSpec {
            id,
            workers,
            cpu: Some(cpus[id % cpus.len()]),
            listeners: sockets.pop().expect("one socket set per worker"),
            snapshot: snapshot.clone(),
            rates: rates.clone(),
            inbox,
            report: report_tx.clone(),
            log_tx: log_tx.clone(),
            events: event_tx.clone(),
            handler,
        };
        let handle = std::thread::Builder::new().name(format!("ringway-w{id}")).spawn(move || worker::run(spec))?;
        outboxes.push(outbox);
        handles.push(handle);
    }
    outboxes.reverse();
    handles.reverse();
    drop(log_tx); // the writer ends once every worker dropped its sender
    let mut running = Running {
        addrs: bound,
        drivers: vec![""; workers],
        admin_addr: None,
        outboxes,
        handles,
        admin: Arc::default(),
        reloader: None,
        log_writer,
        draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        background_stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let mut cpus_used = vec![None; workers];
    for _ in 0..workers {
        match report_rx.recv_timeout(START_TIMEOUT) {
            Ok(WorkerReport::Started { worker, driver, cpu }) => {
                running.drivers[worker] = driver;
                cpus_used[worker] = cpu;
            }
            Ok(WorkerReport::Failed { worker, error }) => {
                running.shutdown();
                running.join();
                return Err(io::Error::other(format!("worker {worker} failed to start: {error}")));
            }
            Err(_) => {
                running.shutdown();
                return Err(io::Error::other("workers did not start in time"));
            }
        }
    }
    let supervisor = endpoints::start(snapshot.clone(), running.outboxes.clone(), event_rx, event_tx, None)?;
    let status = supervisor.status.clone();
    let reloader = Arc::new(Reloader::new(
        path,
        snapshot.clone(),
        running.addrs.clone(),
        rates,
        running.outboxes.clone(),
        supervisor,
        running.draining.clone(),
    ));
    running.reloader = Some(reloader.clone());
    // DNS-named endpoints: resolved off the workers from now on (start-up does not wait)
    let dns = dns::start(reloader.clone(), running.background_stop.clone())?;
    // cluster-scoped caps: their node quotas are fed from Redis by a thread of their own
    let cluster = match snapshot.cluster.clone() {
        Some(cfg) => {
            let r = reloader.clone();
            let rules: crate::cluster::RuleSource = Box::new(move || {
                let (snapshot, rates) = r.running();
                rates.cluster_rules(&snapshot)
            });
            Some(crate::cluster::start(cfg, rules, running.background_stop.clone())?)
        }
        None => None,
    };
    if let Some(addr) = snapshot.admin {
        let state = crate::admin::AdminState {
            snapshot: snapshot.clone(),
            outboxes: running.outboxes.clone(),
            workers: cpus_used.into_iter().zip(running.drivers.iter().copied()).collect(),
            listener_addrs: running.addrs.clone(),
            endpoint_status: status,
            window_start: std::time::Instant::now(),
            window_base: None,
            reloader: Some(reloader),
            dns,
            cluster,
        };
        match crate::admin::start(addr, state, running.draining.clone()) {
            Ok(handle) => {
                tracing::info!(admin = %handle.addr, "Admin listening");
                running.admin_addr = Some(handle.addr);
                *running.admin.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
            }
            Err(e) => {
                running.shutdown();
                running.join();
                return Err(e);
            }
        }
    }
    Ok(running)
}

impl Running {
    /// Starts the drain delay: `/healthz` answers 503 `draining` so load balancers stop sending
    /// new traffic, while every listener keeps serving.
    pub fn begin_drain(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Reopens the access-log file (SIGUSR1, after logrotate moved it).
    pub fn reopen_logs(&self) {
        if let Some(w) = &self.log_writer {
            w.reopen();
        }
    }

    /// Asks every worker to stop accepting and drain in-flight requests.
    pub fn shutdown(&self) {
        for o in &self.outboxes {
            o.send(ControlMsg::Shutdown);
        }
    }

    /// Re-reads the config file and switches every worker to it (SIGHUP).
    pub fn reload(&self) -> Result<u64, ReloadError> {
        match &self.reloader {
            Some(r) => r.reload(),
            None => Err(ReloadError::Refused("not started".into())),
        }
    }

    /// Listens at `path` for a new process to upgrade to; `on_ready` runs once it serves on the
    /// sockets handed over (it should start this process's drain).
    pub fn serve_upgrades(&self, path: std::path::PathBuf, on_ready: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let reloader = self.reloader.clone();
        let listeners = move || {
            let Some(r) = &reloader else { return Vec::new() };
            let current = r.current();
            current
                .snapshot
                .listeners
                .iter()
                .zip(&current.listener_addrs)
                .map(|(l, bound)| (l.name.clone(), l.addr, *bound))
                .collect()
        };
        // the new process answers the admin address from now on (it shares the port)
        let admin = self.admin.clone();
        let handed_over = move || {
            if let Some(h) = admin.lock().unwrap_or_else(|e| e.into_inner()).take() {
                h.stop();
            }
            on_ready();
        };
        upgrade::serve(path, self.outboxes.clone(), listeners, handed_over)
    }

    /// The running config and live reload.
    pub fn reloader(&self) -> Option<&Arc<Reloader>> {
        self.reloader.as_ref()
    }

    /// Every worker's metrics (workers that do not answer within a second are left out).
    pub fn stats(&self) -> Vec<crate::metrics::MetricsSnapshot> {
        collect_stats(&self.outboxes, Duration::from_secs(1)).0
    }

    /// Waits for every worker thread to exit, then stops the admin endpoint and the log writer.
    pub fn join(mut self) {
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        self.background_stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(admin) = self.admin.lock().unwrap_or_else(|e| e.into_inner()).take() {
            admin.stop();
        }
        if let Some(r) = self.reloader.take() {
            r.stop();
        }
        if let Some(w) = self.log_writer.take() {
            w.stop();
        }
    }
}
