//! Live reload: compile a new config off the workers, carry the shared state over by name, switch
//! every worker at a request boundary, restart the endpoint supervisor on the new config with the
//! health and ejection state of the endpoints that stayed.
//!
//! One reload at a time (a mutex): SIGHUP storms and concurrent `POST /reload`s queue and each
//! re-reads the file, so the last one wins. A config that does not compile, fails the host
//! checks, or changes what only a restart can change leaves the running config untouched; the
//! error is kept for `/config` (`last_reload`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::control::{ControlMsg, Outbox};
use super::endpoints::{self, Carried, StatusTable, Supervisor};
use super::SharedRates;
use crate::config::Snapshot;

/// How long a reload waits for every worker to switch.
const SWITCH_WAIT: Duration = Duration::from_secs(2);

/// Why a reload did not happen (or did not finish in time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The new config does not compile or does not fit this host (key and line named).
    Config(String),
    /// Not now, or not by reload: draining, no config file, a change that needs a restart.
    Refused(String),
    /// The switch was sent but these workers did not confirm within 2 s (they switch when they
    /// get to it).
    Slow(Vec<usize>),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Config(e) | ReloadError::Refused(e) => f.write_str(e),
            ReloadError::Slow(w) => write!(f, "worker(s) {w:?} did not switch within 2 s"),
        }
    }
}

/// The outcome of the last reload attempt, for `/config`.
#[derive(Debug, Clone)]
pub struct LastReload {
    pub ok: bool,
    pub error: Option<String>,
    pub at: SystemTime,
    /// The generation running after it.
    pub generation: u64,
}

/// What `/config` and `/metrics` read about the running config.
#[derive(Clone)]
pub struct Current {
    pub snapshot: Arc<Snapshot>,
    pub status: StatusTable,
    pub last: Option<LastReload>,
    /// Per worker: the generation it confirmed and when.
    pub switched: Vec<(u64, SystemTime)>,
    /// The bound address of each listener of the running config (port 0 resolved).
    pub listener_addrs: Vec<std::net::SocketAddr>,
}

struct State {
    path: Option<PathBuf>,
    snapshot: Arc<Snapshot>,
    rates: Arc<SharedRates>,
    outboxes: Vec<Outbox>,
    supervisor: Option<Supervisor>,
    last: Option<LastReload>,
    /// The outcome of the last reload, for requests it served together.
    last_result: Option<Result<u64, ReloadError>>,
    /// Reload requests up to this ticket have been served.
    served: u64,
    switched: Vec<(u64, SystemTime)>,
    listener_addrs: Vec<std::net::SocketAddr>,
    /// The addresses DNS names resolve to now (every compile expands names with them).
    resolved: crate::config::Resolutions,
}

/// The running config and the means to replace it.
pub struct Reloader {
    state: Mutex<State>,
    draining: Arc<AtomicBool>,
    /// Reload requests made so far (tickets).
    requested: std::sync::atomic::AtomicU64,
    /// The running snapshot and its rate buckets, readable without waiting for a reload in
    /// progress (the DNS and cluster threads read them many times a second).
    running: Mutex<(Arc<Snapshot>, Arc<SharedRates>)>,
}

impl Reloader {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        path: Option<PathBuf>,
        snapshot: Arc<Snapshot>,
        listener_addrs: Vec<std::net::SocketAddr>,
        rates: Arc<SharedRates>,
        outboxes: Vec<Outbox>,
        supervisor: Supervisor,
        draining: Arc<AtomicBool>,
    ) -> Self {
        let switched = vec![(snapshot.generation, SystemTime::now()); outboxes.len()];
        let state = State {
            path,
            snapshot,
            rates,
            outboxes,
            supervisor: Some(supervisor),
            last: None,
            last_result: None,
            served: 0,
            switched,
            listener_addrs,
            resolved: Default::default(),
        };
        let running = Mutex::new((state.snapshot.clone(), state.rates.clone()));
        Self { state: Mutex::new(state), draining, requested: Default::default(), running }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running config with its shared rate buckets, without waiting for a reload in progress.
    pub fn running(&self) -> (Arc<Snapshot>, Arc<SharedRates>) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The running config, without waiting for a reload in progress.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// The running config, its endpoint table and the last reload's outcome (waits for a
    /// reload in progress).
    pub fn current(&self) -> Current {
        let s = self.lock();
        let status = s.supervisor.as_ref().map_or_else(Default::default, |sup| sup.status.clone());
        Current {
            snapshot: s.snapshot.clone(),
            status,
            last: s.last.clone(),
            switched: s.switched.clone(),
            listener_addrs: s.listener_addrs.clone(),
        }
    }

    /// Re-reads the config file and switches to it. Returns the new generation. Requests that
    /// arrive while a reload runs are served together by the next one (a SIGHUP storm is a
    /// couple of reloads, each of the file as it is then).
    pub fn reload(&self) -> Result<u64, ReloadError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut s = self.lock();
        if s.served >= ticket {
            return s.last_result.clone().unwrap_or(Ok(s.snapshot.generation));
        }
        s.served = self.requested.load(Ordering::SeqCst);
        let Some(path) = s.path.clone() else {
            return Err(ReloadError::Refused("started without a config file: nothing to re-read".into()));
        };
        let dir =
            path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")).to_path_buf();
        let result = match std::fs::read_to_string(&path) {
            Ok(text) => self.switch(&mut s, &text, &dir),
            Err(e) => Err(ReloadError::Config(format!("cannot read {}: {e}", path.display()))),
        };
        Self::record(&mut s, &result);
        result
    }

    /// Compiles the running config's text again with new addresses for its DNS names and switches
    /// to it (a no-op when nothing changed). Not a reload: `last_reload` is not touched.
    pub fn refresh_dns(&self, resolved: &crate::config::Resolutions) -> Result<u64, ReloadError> {
        let mut s = self.lock();
        if s.snapshot.resolved == *resolved {
            return Ok(s.snapshot.generation);
        }
        s.resolved = resolved.clone();
        let source = s.snapshot.source.clone();
        let result = self.switch(&mut s, &source.text, &source.dir);
        if let Ok(generation) = &result {
            tracing::info!(generation, "Switched to the new DNS addresses");
        }
        result
    }

    /// Switches to the config `text` (relative paths from `dir`).
    pub fn reload_text(&self, text: &str, dir: &std::path::Path) -> Result<u64, ReloadError> {
        let mut s = self.lock();
        let result = self.switch(&mut s, text, dir);
        Self::record(&mut s, &result);
        result
    }

    fn record(s: &mut State, result: &Result<u64, ReloadError>) {
        match result {
            Ok(generation) => tracing::info!(generation, "Config reloaded"),
            Err(e) => tracing::error!(error = %e, "Reload failed; the running config stays"),
        }
        s.last = Some(LastReload {
            ok: result.is_ok(),
            error: result.as_ref().err().map(ToString::to_string),
            at: SystemTime::now(),
            generation: s.snapshot.generation,
        });
        s.last_result = Some(result.clone());
    }

    /// `PUT /config`: checks `text` as the next config (compiles, fits this host, changes
    /// nothing that needs a restart), writes it over the config file (a temporary file renamed
    /// over it; the previous file kept as `FILE.bak`), then reloads it.
    pub fn replace_file(&self, text: &str) -> Result<u64, ReloadError> {
        let path = self.lock().path.clone();
        let Some(path) = path else {
            return Err(ReloadError::Refused("started without a config file: nothing to write".into()));
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        {
            let old = self.lock().snapshot.clone();
            let next = crate::config::compile_in(text, old.generation + 1, dir)
                .map_err(|e| ReloadError::Config(e.to_string()))?;
            restart_only(&old, &next).map_err(ReloadError::Refused)?;
            super::preflight(&next).map_err(|e| ReloadError::Config(e.to_string()))?;
        }
        let tmp = path.with_extension("toml.tmp");
        let bak = path.with_extension("toml.bak");
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, text)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            if path.exists() {
                std::fs::copy(&path, &bak)?;
            }
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| ReloadError::Refused(format!("cannot write {}: {e}", path.display())))?;
        self.reload()
    }

    fn switch(&self, s: &mut State, text: &str, dir: &std::path::Path) -> Result<u64, ReloadError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(ReloadError::Refused("the gateway is draining; reload refused".into()));
        }
        let old = s.snapshot.clone();
        let t0 = std::time::Instant::now();
        let next = crate::config::compile_with(text, old.generation + 1, dir, &s.resolved)
            .map_err(|e| ReloadError::Config(e.to_string()))?;
        restart_only(&old, &next).map_err(ReloadError::Refused)?;
        let warnings = super::preflight(&next).map_err(|e| ReloadError::Config(e.to_string()))?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        // new or moved listeners are bound here, before anything changes: a port that cannot be
        // bound fails the reload with the old config still serving
        let (mut updates, bound) = plan_listeners(&old, &next, &s.listener_addrs, s.outboxes.len())?;
        let compiled_us = t0.elapsed().as_micros() as u64;
        let next = Arc::new(next);
        let map = Arc::new(crate::config::Remap::new(&old, &next));
        let rates = SharedRates::new(&next, Some((&s.rates, &map)));
        // the supervisor restarts on the new config; it starts from the old one's endpoint table
        let old_status = match s.supervisor.take() {
            Some(sup) => {
                let table = sup.status.lock().map(|t| t.clone()).unwrap_or_default();
                sup.stop();
                table
            }
            None => Vec::new(),
        };
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        for (o, listeners) in s.outboxes.iter().zip(updates.drain(..)) {
            o.send(ControlMsg::Reload {
                snapshot: next.clone(),
                rates: rates.clone(),
                map: map.clone(),
                events: event_tx.clone(),
                listeners,
                ack: ack_tx.clone(),
            });
        }
        s.listener_addrs = bound;
        drop(ack_tx);
        // from here requests start on the new config: the DNS and cluster threads follow it now
        // (a changed cluster-scoped rule's new bucket must be fed while workers switch)
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = (next.clone(), rates.clone());
        let deadline = std::time::Instant::now() + SWITCH_WAIT;
        let mut pending: Vec<usize> = (0..s.outboxes.len()).collect();
        while !pending.is_empty() {
            match ack_rx.recv_deadline(deadline) {
                Ok(w) => {
                    pending.retain(|p| *p != w);
                    if let Some(slot) = s.switched.get_mut(w) {
                        *slot = (next.generation, SystemTime::now());
                    }
                }
                Err(_) => break,
            }
        }
        let carried = Carried { snapshot: &old, status: old_status };
        let supervisor = endpoints::start(next.clone(), s.outboxes.clone(), event_rx, event_tx, Some(carried))
            .map_err(|e| ReloadError::Refused(format!("cannot start the endpoint supervisor: {e}")))?;
        s.supervisor = Some(supervisor);
        s.snapshot = next.clone();
        s.rates = rates;
        tracing::info!(
            generation = next.generation,
            compiled_us,
            switched_us = t0.elapsed().as_micros() as u64 - compiled_us,
            "Switched"
        );
        match pending.is_empty() {
            true => Ok(next.generation),
            false => Err(ReloadError::Slow(pending)),
        }
    }

    /// Stops the endpoint supervisor (at shutdown).
    pub(super) fn stop(&self) {
        if let Some(sup) = self.lock().supervisor.take() {
            sup.stop();
        }
    }
}

/// Per worker, what happens to each listener of `new` (kept by name and configured address, or
/// added with a socket bound here), and the bound address of each.
fn plan_listeners(
    old: &Snapshot,
    new: &Snapshot,
    old_bound: &[std::net::SocketAddr],
    workers: usize,
) -> Result<(Vec<Vec<super::control::ListenerUpdate>>, Vec<std::net::SocketAddr>), ReloadError> {
    use super::control::ListenerUpdate;
    let mut updates: Vec<Vec<ListenerUpdate>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(new.listeners.len());
    for (j, l) in new.listeners.iter().enumerate() {
        let kept = old.listeners.iter().position(|o| o.name == l.name && o.addr == l.addr);
        match kept.and_then(|i| old_bound.get(i)) {
            Some(addr) => {
                bound.push(*addr);
                updates.iter_mut().for_each(|u| u.push(ListenerUpdate::Keep { name: l.name.clone() }));
            }
            None => {
                let (sockets, addrs) = super::listener::bind_all(&[l.addr], workers)
                    .map_err(|e| ReloadError::Config(format!("listener[{j}].listen: {e}; the running config stays")))?;
                bound.push(addrs[0]);
                for (u, mut s) in updates.iter_mut().zip(sockets) {
                    let socket = s.pop().expect("one socket per worker");
                    u.push(ListenerUpdate::Add { name: l.name.clone(), socket });
                }
                tracing::info!(listener = %l.name, addr = %addrs[0], "Listener added");
            }
        }
    }
    Ok((updates, bound))
}

/// What a reload cannot change: the worker count and I/O driver (threads and rings are made at
/// start), the admin address and the access-log target. Says which, so the user knows to
/// restart. Listeners can change: added ones are bound, removed ones stop accepting.
fn restart_only(old: &Snapshot, new: &Snapshot) -> Result<(), String> {
    let mut changed = Vec::new();
    if old.instance.workers != new.instance.workers {
        changed.push("instance.workers");
    }
    if old.instance.io_driver != new.instance.io_driver {
        changed.push("instance.io_driver");
    }
    if old.admin != new.admin {
        changed.push("admin.listen");
    }
    if old.cluster != new.cluster {
        changed.push("cluster");
    }
    let log = |s: &Snapshot| s.access_log.as_ref().map(|l| format!("{:?}", l.target));
    if log(old) != log(new) {
        changed.push("access_log.path");
    }
    match changed.is_empty() {
        true => Ok(()),
        false => Err(format!("{} changed: these need a restart; the running config stays", changed.join(", "))),
    }
}
