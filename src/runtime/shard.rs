//! `Shard`: what one worker core owns for as long as it runs; never shared across threads.
//!
//! The worker-lived half: the idle-connection pool, the connection registry, connection and
//! in-flight counters, the drain flag, metrics, the access-log buffer and the request-id sequence.
//! Everything that belongs to one config (snapshot, upstream state, limiter) is a
//! [`Generation`] the shard points at and each request pins. Plain `Cell`/`RefCell`: one thread,
//! no atomics.

use std::cell::{Cell, RefCell};

use std::rc::Rc;

use super::generation::Generation;
use crate::metrics::{AccessLog, MetricsSnapshot, ShardMetrics};
use crate::upstream::{IdleConn, Pool, PoolKey, UpstreamConn};

/// A registered client connection.
pub struct OpenConn {
    pub fd: std::os::fd::RawFd,
    /// Waiting for its next request with nothing buffered (safe to close at the cap).
    pub idle: std::rc::Rc<Cell<bool>>,
}

/// One worker's state.
pub struct Shard {
    pub worker: usize,
    /// "io_uring" or "legacy".
    pub driver: &'static str,
    pub metrics: RefCell<ShardMetrics>,
    pub access_log: Option<AccessLog>,
    /// Workers in this instance (concurrency caps are split over them).
    pub workers: usize,
    /// The config generation new requests start on.
    current: RefCell<Rc<Generation>>,
    /// Hashes rate-limit keys; per shard, like the key tables.
    pub key_hasher: ahash::RandomState,
    /// Failure reports to the endpoint supervisor (outlier ejection).
    pub events: RefCell<Option<crossbeam_channel::Sender<super::control::ControlEvent>>>,
    /// Idle upstream connections, each watched for bytes or a close while it waits.
    pub pool: RefCell<Pool<IdleConn>>,
    /// Woken when a watch fires: the pool janitor's (a no-op until the janitor runs).
    pub pool_waker: RefCell<std::task::Waker>,
    /// Open client connections (parked ones included).
    pub connections: Cell<usize>,
    /// Idle keep-alive client connections held without a task (`park`).
    pub parked: RefCell<super::ParkingLot>,
    /// HTTP/2 client connections idle past `idle_park_ms`, holding no read buffer
    /// (`http2::io::ConnIo`).
    pub h2_idle: std::rc::Rc<Cell<usize>>,
    /// Requests between their first head byte and their last response byte.
    pub in_flight: Cell<usize>,
    /// Set on shutdown: finish the current request, then close.
    pub draining: Cell<bool>,
    /// Open client sockets by connection id (ids grow with age), so a stopping worker can end
    /// idle reads and a worker at its connection cap can close the oldest idle one.
    pub open_fds: RefCell<ahash::AHashMap<u64, OpenConn>>,
    pub next_conn_id: Cell<u64>,
    /// This worker's side of the egress bandwidth cap (and its byte count).
    pub egress: crate::limit::bandwidth::Shaper,
    request_seq: Cell<u64>,
    /// Connections opened, closed or parked (with `request_seq`: whether the worker was busy).
    churn: Cell<u64>,
    id_prefix: u64,
}

impl Shard {
    pub fn new(
        worker: usize,
        workers: usize,
        generation: Generation,
        driver: &'static str,
        access_log: Option<AccessLog>,
    ) -> Self {
        // unique per process start and worker; ids only need to be unique, not secret
        let id_prefix = ahash::RandomState::new().hash_one((worker, std::process::id()));
        Self {
            worker,
            driver,
            metrics: RefCell::new(ShardMetrics::new(&generation.snapshot)),
            access_log,
            workers: workers.max(1),
            current: RefCell::new(Rc::new(generation)),
            key_hasher: ahash::RandomState::new(),
            events: RefCell::new(None),
            pool: RefCell::new(Pool::default()),
            pool_waker: RefCell::new(std::task::Waker::noop().clone()),
            connections: Cell::new(0),
            parked: RefCell::new(super::ParkingLot::new()),
            h2_idle: Default::default(),
            in_flight: Cell::new(0),
            draining: Cell::new(false),
            open_fds: RefCell::default(),
            next_conn_id: Cell::new(0),
            egress: Default::default(),
            request_seq: Cell::new(0),
            churn: Cell::new(0),
            id_prefix,
        }
    }

    /// The generation a request starting now runs on (it keeps it until it ends).
    #[inline]
    pub fn generation(&self) -> Rc<Generation> {
        self.current.borrow().clone()
    }

    /// The worker's metrics, when they are keyed for `gen` (a request that started before a
    /// reload finishes on the old generation, whose indices no longer fit: its per-upstream
    /// counts are dropped; `session::finish` maps its request count by name).
    #[inline]
    pub fn metrics_for(&self, gen: &Generation) -> Option<std::cell::RefMut<'_, ShardMetrics>> {
        let m = self.metrics.borrow_mut();
        (m.generation == gen.id()).then_some(m)
    }

    /// Updates the worker's metrics for a request on `gen` (skipped when a reload re-keyed them
    /// since the request started).
    #[inline]
    pub fn count(&self, gen: &Generation, f: impl FnOnce(&mut ShardMetrics)) {
        if let Some(mut m) = self.metrics_for(gen) {
            f(&mut m);
        }
    }

    /// Makes `next` the generation new requests start on: metrics re-keyed by name, pooled
    /// connections re-tagged by upstream identity (those of removed upstreams closed). Requests
    /// in flight keep the generation they started on.
    pub fn switch(&self, next: Generation, map: &crate::config::Remap) {
        let old = std::mem::replace(&mut *self.metrics.borrow_mut(), ShardMetrics::new(&next.snapshot));
        *self.metrics.borrow_mut() = old.carry(&next.snapshot, map);
        let by_identity: ahash::AHashMap<u64, usize> =
            next.snapshot.upstreams.iter().enumerate().map(|(i, u)| (u.pool_identity, i)).collect();
        // an idle connection stays if its upstream (same identity) still has its address: an
        // address a reload or a DNS change removed gets no new request, pooled or not
        let ups = &next.snapshot.upstreams;
        self.pool.borrow_mut().retain_keyed(|key, idle| match by_identity.get(&key.identity) {
            Some(&i) if ups[i].endpoints.iter().any(|e| e.addr == key.endpoint) => {
                idle.upstream = i;
                true
            }
            _ => false,
        });
        *self.current.borrow_mut() = Rc::new(next);
    }

    /// A copy of this worker's metrics for the admin thread.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let gen = self.generation();
        let evicted_keys = gen.limiter.borrow().evicted_keys();
        MetricsSnapshot {
            worker: self.worker,
            driver: self.driver,
            generation: gen.id(),
            connections_active: self.connections.get(),
            connections_parked: self.parked.borrow().len(),
            h2_connections_idle: self.h2_idle.get(),
            in_flight: self.in_flight.get(),
            pool_idle: self.pool.borrow().total_idle(),
            metrics: self.metrics.borrow().clone(),
            evicted_keys,
            egress_bytes: self.egress.sent.get(),
            egress_waited_ns: self.egress.waited_ns.get(),
            log_dropped_blocks: self.access_log.as_ref().map_or(0, |l| l.dropped_blocks.get()),
        }
    }

    /// Puts a connection back in the pool (the janitor starts watching it after a tick).
    /// `gen`: the generation the request that used it ran on.
    pub fn pool_checkin(&self, gen: &Generation, mut key: PoolKey, conn: UpstreamConn, now: std::time::Instant) {
        let current = self.current.borrow();
        let gen: &Generation = if gen.id() == current.id() {
            gen
        } else {
            // the config changed during the request: the connection stays pooled if the new
            // config has an upstream of the same identity (name, egress IPs, TLS settings)
            let kept =
                current.snapshot.upstreams.iter().position(|u| {
                    u.pool_identity == key.identity && u.endpoints.iter().any(|e| e.addr == key.endpoint)
                });
            match kept {
                Some(i) => key.upstream = i,
                None => return,
            }
            &current
        };
        let up = &gen.snapshot.upstreams[key.upstream];
        let idle = IdleConn::new(key.upstream, conn);
        self.pool.borrow_mut().checkin(key, idle, now, up.pool_idle_timeout, up.pool_max_idle_per_endpoint);
    }

    /// The most recently pooled connection for `key` with nothing waiting on it; dirty ones are
    /// closed on the way.
    pub fn pool_checkout(&self, key: &PoolKey, now: std::time::Instant) -> Option<UpstreamConn> {
        let waker = self.pool_waker.borrow();
        let mut pool = self.pool.borrow_mut();
        while let Some(idle) = pool.checkout(key, now) {
            match idle.take(&waker) {
                Some(conn) => return Some(conn),
                None => {
                    if let Some(u) = self.metrics.borrow_mut().upstreams.get_mut(key.upstream) {
                        u.pool_dirty += 1;
                    }
                }
            }
        }
        None
    }

    /// The pool janitor's pass: closes expired connections, starts watching the ones checked in
    /// since the last tick, and, when a watch woke it, closes every connection whose watch fired.
    pub fn sweep_pool(&self, woken: bool, now: std::time::Instant, tick: std::time::Duration) {
        let waker = self.pool_waker.borrow();
        let mut pool = self.pool.borrow_mut();
        pool.expire(now);
        let mut m = self.metrics.borrow_mut();
        let mut dirty = |idle: &IdleConn, clean: bool| {
            if let (false, Some(u)) = (clean, m.upstreams.get_mut(idle.upstream)) {
                u.pool_dirty += 1;
            }
            clean
        };
        // only connections idle for a whole tick: the hot ones under load are never armed
        let idle_since = now.checked_sub(tick).unwrap_or(now);
        pool.retain_newest(IdleConn::is_fresh, idle_since, |idle| {
            let clean = idle.arm(&waker);
            dirty(idle, clean)
        });
        if woken {
            pool.retain(|idle| {
                let clean = idle.quiet(&waker);
                dirty(idle, clean)
            });
        }
    }

    /// Reports a request outcome on an endpoint to the supervisor: every failure, and the first
    /// success after a failure (so healthy traffic sends nothing across cores).
    pub fn report(&self, gen: &Generation, upstream: usize, endpoint: usize, failure: bool) {
        let events = self.events.borrow();
        let Some(tx) = events.as_ref() else { return };
        if gen.snapshot.upstreams[upstream].outlier.is_none() {
            return;
        }
        let flag = &gen.upstreams[upstream].reported_failure[endpoint];
        if failure || flag.get() {
            flag.set(failure);
            // a full queue drops the report: ejection is a statistical signal, never a blocker
            let event = super::control::ControlEvent::Outcome { generation: gen.id(), upstream, endpoint, failure };
            if tx.len() < super::EVENT_QUEUE {
                let _ = tx.send(event);
            }
        }
    }

    /// Closes the oldest idle keep-alive connection (shutdown; its task then ends). False when
    /// no connection is idle.
    pub fn evict_oldest_idle(&self) -> bool {
        let open = self.open_fds.borrow();
        let oldest = open.iter().filter(|(_, c)| c.idle.get()).min_by_key(|(id, _)| **id);
        match oldest {
            Some((_, c)) => {
                c.idle.set(false);
                super::listener::shutdown_fd(c.fd);
                self.metrics.borrow_mut().connections_evicted += 1;
                true
            }
            None => false,
        }
    }

    /// Counts a connection opened, closed or parked (for [`Shard::activity`]).
    pub fn note_churn(&self) {
        self.churn.set(self.churn.get() + 1);
    }

    /// Grows with every request, and every connection opened, closed or parked: unchanged over
    /// a while means the worker was quiet.
    pub fn activity(&self) -> u64 {
        self.request_seq.get().wrapping_add(self.churn.get())
    }

    /// A fresh 32-hex-digit request id.
    pub fn next_request_id(&self) -> [u8; 32] {
        let seq = self.request_seq.get().wrapping_add(1);
        self.request_seq.set(seq);
        let mut out = [0u8; 32];
        hex_into(&mut out[..16], self.id_prefix);
        hex_into(&mut out[16..], seq);
        out
    }
}

fn hex_into(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
impl Shard {
    /// A one-worker shard for unit tests, from `body` (TOML after a `[[listener]]` on port 0).
    pub(crate) fn for_test(body: &str) -> Rc<Shard> {
        let text = format!("[instance]\nworkers = 1\n\n[[listener]]\nlisten = \"127.0.0.1:0\"\n\n{body}");
        let snapshot = std::sync::Arc::new(crate::config::compile(&text, 1).expect("test config compiles"));
        let rates = super::SharedRates::new(&snapshot, None);
        Rc::new(Shard::new(0, 1, Generation::new(snapshot, rates), "test", None))
    }
}
