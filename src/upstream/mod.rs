//! Upstreams as one shard sees them: balancing, idle-connection pools, dialing with an egress IP.
//!
//! Everything here is per core: a `Shard` owns one [`UpstreamState`] per configured upstream and
//! one [`Pool`]; no locks, no atomics. Connections never move between cores.

mod balance;
mod connect;
mod pool;

pub use balance::SmoothWeighted;
pub use connect::{connect, is_idle_and_open, peer_closed};
pub use pool::{Pool, PoolKey};

use std::cell::RefCell;

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
}

impl UpstreamState {
    pub fn new(up: &Upstream) -> Self {
        let weights: Vec<u32> = up.endpoints.iter().map(|e| e.weight).collect();
        Self { balancer: RefCell::new(SmoothWeighted::new(&weights)) }
    }
}
