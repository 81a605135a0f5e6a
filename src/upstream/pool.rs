//! Per-core idle-connection pool, LIFO per key, with idle expiry, a per-key cap and a sweep.
//!
//! The key includes the upstream's identity (name, egress addresses, TLS settings) so a
//! connection dialled from one egress address or under one TLS configuration is never reused for
//! an upstream that needs another; equal identities across config generations share the pool. Pure over the connection type and `now`,
//! so its logic is tested without sockets; [`super::idle`] supplies the watched connection type.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// Which idle connections are interchangeable: same endpoint, same upstream identity.
#[derive(Debug, Clone, Copy)]
pub struct PoolKey {
    pub endpoint: SocketAddr,
    /// `Upstream::pool_identity`: name, egress addresses, TLS settings (equal across reloads
    /// when those are unchanged).
    pub identity: u64,
    /// The upstream's index in the config generation that made the key (for its settings and
    /// counters); not part of the key's identity.
    pub upstream: usize,
}

impl PartialEq for PoolKey {
    fn eq(&self, other: &Self) -> bool {
        self.endpoint == other.endpoint && self.identity == other.identity
    }
}

impl Eq for PoolKey {}

impl std::hash::Hash for PoolKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.endpoint.hash(h);
        self.identity.hash(h);
    }
}

struct Entry<C> {
    conn: C,
    since: Instant,
    expires: Instant,
}

/// Idle connections of one shard.
pub struct Pool<C> {
    idle: AHashMap<PoolKey, VecDeque<Entry<C>>>,
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Self { idle: AHashMap::new() }
    }
}

impl<C> Pool<C> {
    /// Takes the most recently used connection that has not expired; expired ones are dropped
    /// (closed) on the way.
    pub fn checkout(&mut self, key: &PoolKey, now: Instant) -> Option<C> {
        let list = self.idle.get_mut(key)?;
        // oldest entries sit at the front: drop the expired ones first
        while list.front().is_some_and(|e| now >= e.expires) {
            list.pop_front();
        }
        list.pop_back().map(|e| e.conn)
    }

    /// Returns a connection that may stay idle for `idle_timeout`; when the key already holds
    /// `max_idle`, the oldest one is closed.
    pub fn checkin(&mut self, key: PoolKey, conn: C, now: Instant, idle_timeout: Duration, max_idle: usize) {
        if max_idle == 0 || idle_timeout.is_zero() {
            return;
        }
        let list = self.idle.entry(key).or_default();
        if list.len() >= max_idle {
            list.pop_front();
        }
        list.push_back(Entry { conn, since: now, expires: now + idle_timeout });
    }

    /// Closes expired connections (cheap: only list fronts are looked at). Returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut closed = 0;
        for list in self.idle.values_mut() {
            while list.front().is_some_and(|e| now >= e.expires) {
                list.pop_front();
                closed += 1;
            }
        }
        self.idle.retain(|_, list| !list.is_empty());
        closed
    }

    /// Closes every connection for which `alive` says no. Returns how many.
    pub fn retain(&mut self, mut alive: impl FnMut(&mut C) -> bool) -> usize {
        let mut closed = 0;
        for list in self.idle.values_mut() {
            let before = list.len();
            list.retain_mut(|e| alive(&mut e.conn));
            closed += before - list.len();
        }
        self.idle.retain(|_, list| !list.is_empty());
        closed
    }

    /// Visits, per key, the newest connections for which `newest` holds (they sit at the back:
    /// checkouts take from there, check-ins push there) that have been idle since `idle_since`
    /// or earlier, and closes those `keep` rejects. Younger ones are left for a later visit.
    pub fn retain_newest(
        &mut self,
        newest: impl Fn(&C) -> bool,
        idle_since: Instant,
        mut keep: impl FnMut(&mut C) -> bool,
    ) -> usize {
        let mut closed = 0;
        for list in self.idle.values_mut() {
            let fresh = list.iter().rev().take_while(|e| newest(&e.conn)).count();
            let start = list.len() - fresh;
            let mut i = start;
            // the run is ordered oldest first: stop at the first one idle for less than asked
            while i < list.len() && list[i].since <= idle_since {
                if keep(&mut list[i].conn) {
                    i += 1;
                } else {
                    list.remove(i);
                    closed += 1;
                }
            }
        }
        self.idle.retain(|_, list| !list.is_empty());
        closed
    }

    /// Closes every idle connection.
    /// Keeps the connections `keep` accepts (it may update them); returns how many it closed.
    pub fn retain_keyed(&mut self, mut keep: impl FnMut(&PoolKey, &mut C) -> bool) -> usize {
        let mut closed = 0;
        for (key, list) in self.idle.iter_mut() {
            let before = list.len();
            list.retain_mut(|e| keep(key, &mut e.conn));
            closed += before - list.len();
        }
        self.idle.retain(|_, list| !list.is_empty());
        closed
    }

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

    const IDLE: Duration = Duration::from_secs(1);

    fn key(port: u16) -> PoolKey {
        PoolKey { endpoint: SocketAddr::from(([127, 0, 0, 1], port)), identity: 0, upstream: 0 }
    }

    #[test]
    fn checkout_is_lifo() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        pool.checkin(key(1), "a", clock.now(), IDLE, 8);
        pool.checkin(key(1), "b", clock.now(), IDLE, 8);
        assert_eq!(pool.checkout(&key(1), clock.now()), Some("b"));
        assert_eq!(pool.checkout(&key(1), clock.now()), Some("a"));
        assert_eq!(pool.checkout(&key(1), clock.now()), None);
    }

    #[test]
    fn expired_connections_are_dropped() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        pool.checkin(key(1), "old", clock.now(), IDLE, 8);
        clock.advance(Duration::from_millis(900));
        pool.checkin(key(1), "new", clock.now(), IDLE, 8);
        clock.advance(Duration::from_millis(200));
        assert_eq!(pool.checkout(&key(1), clock.now()), Some("new"));
        assert_eq!(pool.idle_count(&key(1)), 0, "the expired one was closed");
    }

    #[test]
    fn expire_reaps_without_a_checkout() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        pool.checkin(key(1), "a", clock.now(), IDLE, 8);
        pool.checkin(key(2), "b", clock.now(), Duration::from_secs(5), 8);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(pool.expire(clock.now()), 1);
        assert_eq!(pool.total_idle(), 1, "only the connection past its own timeout is closed");
    }

    #[test]
    fn retain_closes_what_the_watch_calls_dead() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        for c in ["ok", "dead", "ok2"] {
            pool.checkin(key(1), c, clock.now(), IDLE, 8);
        }
        assert_eq!(pool.retain(|c| *c != "dead"), 1);
        assert_eq!(pool.checkout(&key(1), clock.now()), Some("ok2"));
        assert_eq!(pool.checkout(&key(1), clock.now()), Some("ok"));
    }

    #[test]
    fn retain_newest_visits_only_the_newest_run() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        for c in ["old1", "old2", "new1", "new2"] {
            pool.checkin(key(1), c, clock.now(), IDLE, 8);
        }
        let mut seen = Vec::new();
        let closed = pool.retain_newest(
            |c| c.starts_with("new"),
            clock.now(),
            |c| {
                seen.push(*c);
                *c != "new1"
            },
        );
        assert_eq!((closed, seen), (1, vec!["new1", "new2"]));
        assert_eq!(pool.idle_count(&key(1)), 3);
        // connections checked in after `idle_since` are not visited yet
        let earlier = clock.now();
        clock.advance(Duration::from_millis(10));
        pool.checkin(key(1), "new3", clock.now(), IDLE, 8);
        let mut seen = Vec::new();
        pool.retain_newest(
            |c| c.starts_with("new"),
            earlier,
            |c| {
                seen.push(*c);
                true
            },
        );
        assert_eq!(seen, vec!["new2"], "new3 has not been idle long enough");
    }

    #[test]
    fn keys_with_another_egress_policy_do_not_share() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        pool.checkin(key(1), "a", clock.now(), IDLE, 8);
        let other = PoolKey { identity: 1, ..key(1) };
        assert_eq!(pool.checkout(&other, clock.now()), None);
        assert_eq!(pool.checkout(&key(2), clock.now()), None);
    }

    #[test]
    fn cap_evicts_the_oldest() {
        let clock = ManualClock::default();
        let mut pool = Pool::default();
        for c in ["a", "b", "c"] {
            pool.checkin(key(1), c, clock.now(), IDLE, 2);
        }
        assert_eq!(pool.idle_count(&key(1)), 2);
        assert_eq!(pool.checkout(&key(1), clock.now()), Some("c"));
        assert_eq!(pool.checkout(&key(1), clock.now()), Some("b"));
    }
}
