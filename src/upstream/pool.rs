//! Per-core idle-connection pool, LIFO per key, with idle expiry and a per-key cap.
//!
//! The key includes the source (egress) IP so a connection dialled from one egress address is
//! never reused for an upstream that must use another (STYLE.md §18). Pure over the connection
//! type and `now`, so its logic is tested without sockets.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// Which idle connections are interchangeable: same endpoint, dialled under the same egress
/// policy (the upstream's source-IP pool), so a connection from another upstream's egress IP is
/// never reused. `source_ip` is the address this connection was bound to (for errors and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub endpoint: SocketAddr,
    pub egress_policy: usize,
}

/// Idle connections of one shard.
pub struct Pool<C> {
    idle: AHashMap<PoolKey, VecDeque<(C, Instant)>>,
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Self { idle: AHashMap::new() }
    }
}

impl<C> Pool<C> {
    /// Takes the most recently used connection that has been idle for less than `idle_timeout`,
    /// with how long it was idle; older ones are dropped (closed) on the way.
    pub fn checkout(&mut self, key: &PoolKey, now: Instant, idle_timeout: Duration) -> Option<(C, Duration)> {
        let list = self.idle.get_mut(key)?;
        // oldest entries sit at the front: drop the expired ones first
        while list.front().is_some_and(|(_, since)| now.saturating_duration_since(*since) >= idle_timeout) {
            list.pop_front();
        }
        list.pop_back().map(|(c, since)| (c, now.saturating_duration_since(since)))
    }

    /// Returns a connection; when the key already holds `max_idle`, the oldest one is closed.
    pub fn checkin(&mut self, key: PoolKey, conn: C, now: Instant, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let list = self.idle.entry(key).or_default();
        if list.len() >= max_idle {
            list.pop_front();
        }
        list.push_back((conn, now));
    }

    /// Closes every idle connection.
    pub fn clear(&mut self) {
        self.idle.clear();
    }

    /// Idle connections held for every key.
    pub fn total_idle(&self) -> usize {
        self.idle.values().map(VecDeque::len).sum()
    }

    /// Idle connections held for `key`.
    pub fn idle_count(&self, key: &PoolKey) -> usize {
        self.idle.get(key).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn key(port: u16) -> PoolKey {
        PoolKey { endpoint: SocketAddr::from(([127, 0, 0, 1], port)), egress_policy: 0 }
    }

    #[test]
    fn checkout_is_lifo() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        pool.checkin(key(1), "a", clock.now(), 8);
        pool.checkin(key(1), "b", clock.now(), 8);
        assert_eq!(pool.checkout(&key(1), clock.now(), Duration::from_secs(1)).map(|(c, _)| c), Some("b"));
        assert_eq!(pool.checkout(&key(1), clock.now(), Duration::from_secs(1)).map(|(c, _)| c), Some("a"));
        assert_eq!(pool.checkout(&key(1), clock.now(), Duration::from_secs(1)).map(|(c, _)| c), None);
    }

    #[test]
    fn expired_connections_are_dropped() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        pool.checkin(key(1), "old", clock.now(), 8);
        clock.advance(Duration::from_millis(900));
        pool.checkin(key(1), "new", clock.now(), 8);
        clock.advance(Duration::from_millis(200));
        assert_eq!(pool.checkout(&key(1), clock.now(), Duration::from_secs(1)).map(|(c, _)| c), Some("new"));
        assert_eq!(pool.idle_count(&key(1)), 0, "the expired one was closed");
    }

    #[test]
    fn keys_with_another_egress_policy_do_not_share() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        pool.checkin(key(1), "a", clock.now(), 8);
        let other = PoolKey { egress_policy: 1, ..key(1) };
        assert_eq!(pool.checkout(&other, clock.now(), Duration::from_secs(1)).map(|(c, _)| c), None);
        assert_eq!(pool.checkout(&key(2), clock.now(), Duration::from_secs(1)).map(|(c, _)| c), None);
    }

    #[test]
    fn cap_evicts_the_oldest() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        for c in ["a", "b", "c"] {
            pool.checkin(key(1), c, clock.now(), 2);
        }
        assert_eq!(pool.idle_count(&key(1)), 2);
        assert_eq!(pool.checkout(&key(1), clock.now(), Duration::from_secs(1)).map(|(c, _)| c), Some("c"));
        assert_eq!(pool.checkout(&key(1), clock.now(), Duration::from_secs(1)).map(|(c, _)| c), Some("b"));
    }
}
