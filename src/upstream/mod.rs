//! Upstreams as one shard sees them: balancing, idle-connection pools, dialing with an egress IP.
//!
//! Everything here is per core: a `Shard` owns one [`UpstreamState`] per configured upstream and
//! one [`Pool`]; no locks, no atomics. Connections never move between cores.

mod balance;
mod connect;
pub mod health;
pub mod outlier;
mod pool;

pub use balance::SmoothWeighted;
pub use connect::{connect, is_idle_and_open, peer_closed};
pub use pool::{Pool, PoolKey};

use std::cell::{Cell, RefCell};

use monoio::net::TcpStream;

use crate::config::Upstream;

/// An idle upstream connection with its (empty) read buffer, as the pool holds it.
pub struct UpstreamConn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// Requests already sent on this connection.
    pub requests: u32,
}

/// Per-shard state of one upstream.
#[derive(Debug)]
pub struct UpstreamState {
    pub balancer: RefCell<SmoothWeighted>,
    /// In rotation (healthy and not ejected), as last told by the endpoint supervisor.
    pub available: Vec<Cell<bool>>,
    /// This core's last report for the endpoint was a failure (so the next success is reported).
    pub reported_failure: Vec<Cell<bool>>,
}

impl UpstreamState {
    pub fn new(up: &Upstream) -> Self {
        let weights: Vec<u32> = up.endpoints.iter().map(|e| e.weight).collect();
        let n = up.endpoints.len();
        Self {
            balancer: RefCell::new(SmoothWeighted::new(&weights)),
            available: (0..n).map(|_| Cell::new(true)).collect(),
            reported_failure: (0..n).map(|_| Cell::new(false)).collect(),
        }
    }
}
