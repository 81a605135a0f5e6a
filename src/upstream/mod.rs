//! Upstreams as one shard sees them: balancing, idle-connection pools, dialing with an egress IP.
//!
//! Everything here is per core: a `Shard` owns one [`UpstreamState`] per configured upstream and
//! one [`Pool`]; no locks, no atomics. Connections never move between cores.

mod balance;
mod connect;
pub mod health;
mod idle;
pub mod outlier;
mod pool;

pub use balance::{p2c, ring_hash, Ring, SmoothWeighted};
pub use connect::{connect, peer_gone, peer_quiet, peer_state, reset_on_close, PeerState};
pub use idle::{IdleConn, WokenAgain};
pub use pool::{Pool, PoolKey};

use std::cell::{Cell, RefCell};

use crate::config::{Balance, Upstream};

/// An upstream connection between requests, with its (empty) read buffer.
pub struct UpstreamConn {
    /// Counts against the upstream's `max_connections` while the connection exists.
    pub slot: ConnSlot,
    pub stream: crate::net::Stream,
    pub buf: Vec<u8>,
    /// Requests already sent on this connection.
    pub requests: u32,
}

/// Requests assumed in the window when there were fewer, so a quiet upstream can still retry.
const MIN_BUDGET_REQUESTS: f64 = 10.0;

#[derive(Debug)]
struct RetryBudget {
    requests: f64,
    retries: f64,
    last: std::time::Instant,
}

/// One open upstream connection, counted per core for `max_connections`.
#[derive(Debug)]
pub struct ConnSlot(std::rc::Rc<Cell<u32>>);

impl ConnSlot {
    pub fn new(open: &std::rc::Rc<Cell<u32>>) -> Self {
        open.set(open.get() + 1);
        Self(open.clone())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Per-shard state of one upstream.
#[derive(Debug)]
pub struct UpstreamState {
    pub balancer: RefCell<SmoothWeighted>,
    /// In rotation (healthy and not ejected), as last told by the endpoint supervisor.
    pub available: Vec<Cell<bool>>,
    /// This core's last report for the endpoint was a failure (so the next success is reported).
    pub reported_failure: Vec<Cell<bool>>,
    /// Requests in flight per endpoint on this core (least_request).
    pub in_flight: Vec<Cell<u32>>,
    /// Open connections to this upstream on this core (in use + pooled).
    pub open: std::rc::Rc<Cell<u32>>,
    budget: RefCell<RetryBudget>,
    /// Next index into the upstream's egress pool for a new connection.
    next_egress: Cell<usize>,
    /// Consistent-hash ring (hash balancing).
    pub ring: Option<Ring>,
    weights: Vec<u32>,
    rng: Cell<u64>,
}

impl UpstreamState {
    pub fn new(up: &Upstream) -> Self {
        let weights: Vec<u32> = up.endpoints.iter().map(|e| e.weight).collect();
        let n = up.endpoints.len();
        let ring = match up.balance {
            Balance::Hash(_) => {
                Some(Ring::new(&up.endpoints.iter().map(|e| e.addr.to_string()).collect::<Vec<_>>(), &weights))
            }
            _ => None,
        };
        Self {
            balancer: RefCell::new(SmoothWeighted::new(&weights)),
            available: (0..n).map(|_| Cell::new(true)).collect(),
            reported_failure: (0..n).map(|_| Cell::new(false)).collect(),
            in_flight: (0..n).map(|_| Cell::new(0)).collect(),
            open: std::rc::Rc::new(Cell::new(0)),
            budget: RefCell::new(RetryBudget { requests: 0.0, retries: 0.0, last: std::time::Instant::now() }),
            next_egress: Cell::new(0),
            ring,
            rng: Cell::new(ahash::RandomState::new().hash_one(n) | 1),
            weights,
        }
    }

    /// The source IP for a new connection: the egress pool in turn (cores start at different
    /// offsets, so together they spread over the whole pool).
    pub fn egress_for_new_connection(&self, up: &Upstream, worker: usize) -> Option<std::net::IpAddr> {
        if up.egress_ips.is_empty() {
            return None;
        }
        let n = self.next_egress.get();
        self.next_egress.set(n.wrapping_add(1));
        Some(up.egress_ips[(n + worker) % up.egress_ips.len()])
    }

    /// Counts a request for the retry budget.
    pub fn count_request(&self) {
        self.budget.borrow_mut().requests += 1.0;
    }

    /// Takes a retry from the budget if `percent` of recent requests allows it.
    pub fn try_retry(&self, percent: u32, now: std::time::Instant) -> bool {
        let mut b = self.budget.borrow_mut();
        // halve both counts per elapsed second: a ~1 s window without timers
        let secs = now.saturating_duration_since(b.last).as_secs_f64();
        if secs >= 1.0 {
            let f = 0.5f64.powf(secs);
            b.requests *= f;
            b.retries *= f;
            b.last = now;
        }
        let allowed = (b.requests.max(MIN_BUDGET_REQUESTS) * f64::from(percent) / 100.0) >= b.retries + 1.0;
        if allowed {
            b.retries += 1.0;
        }
        allowed
    }

    /// Picks an endpoint by the upstream's policy among those `allowed` admits.
    pub fn choose(&self, balance: &Balance, key: Option<u64>, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        match balance {
            Balance::RoundRobin => self.balancer.borrow_mut().pick_where(allowed),
            Balance::LeastRequest => {
                let mut rng = self.rng.get();
                let pick = p2c(&mut rng, &self.weights, |i| self.in_flight[i].get(), allowed);
                self.rng.set(rng);
                pick
            }
            Balance::Hash(_) => self.ring.as_ref()?.pick(key.unwrap_or(0), allowed),
        }
    }
}
