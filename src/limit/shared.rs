//! Instance-wide rates across cores without per-request atomics: one shared GCRA per rule
//! ([`SharedBucket`], an `AtomicU64` TAT) from which each core *leases* small batches of tokens
//! ([`Lease`]) and spends them locally.
//!
//! Accuracy: every admitted request spends a token that was taken from the one shared bucket, so
//! the instance never admits more than `rate × window + burst` in any window, on any number of
//! cores and with any skew. A core's unspent tokens are returned when its lease expires
//! ([`LEASE_TTL_NS`]), so an idle core does not starve a busy one. Batches are ~1 ms of the rate,
//! so the shared atomic is touched about once per millisecond per busy core, not per request.

use std::sync::atomic::{AtomicU64, Ordering};

use super::gcra::{Rate, NS};

/// Unspent leased tokens go back to the shared bucket after this long.
pub const LEASE_TTL_NS: u64 = 5_000_000;
/// A lease is about this long a slice of the rate.
const LEASE_SLICE_NS: u64 = 1_000_000;

/// The shared side of one rate rule.
#[derive(Debug)]
pub struct SharedBucket {
    pub rate: Rate,
    tat: AtomicU64,
    /// Cluster scope: tokens come from this node quota (kept topped up by the cluster thread
    /// from a Redis-side bucket) instead of from the clock.
    pub feed: Option<Box<Feed>>,
}

/// A node's quota of a cluster-scoped cap: what the cluster thread leased from Redis and the
/// cores have not taken yet.
#[derive(Debug, Default)]
pub struct Feed {
    quota: AtomicU64,
    /// Tokens the cores took (minus what they gave back), for the demand estimate.
    spent: AtomicU64,
    /// Core leases that found the quota empty.
    starved: AtomicU64,
}

impl Feed {
    pub fn quota(&self) -> u64 {
        self.quota.load(Ordering::Relaxed)
    }

    pub fn set_quota(&self, n: u64) {
        self.quota.store(n, Ordering::Relaxed);
    }

    pub fn add_quota(&self, n: u64) {
        self.quota.fetch_add(n, Ordering::AcqRel);
    }

    /// Takes up to `n` tokens out of the quota; returns how many.
    pub fn take_quota(&self, n: u64) -> u64 {
        match self.quota.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |q| Some(q - q.min(n))) {
            Ok(q) | Err(q) => q.min(n),
        }
    }

    pub fn spent(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }

    pub fn starved(&self) -> u64 {
        self.starved.load(Ordering::Relaxed)
    }

    fn lease(&self, want: u64) -> u64 {
        let got = self.take_quota(want);
        match got {
            0 => self.starved.fetch_add(1, Ordering::Relaxed),
            n => self.spent.fetch_add(n, Ordering::Relaxed),
        };
        got
    }

    fn give_back(&self, n: u64) {
        self.quota.fetch_add(n, Ordering::AcqRel);
        let _ = self.spent.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| Some(s.saturating_sub(n)));
    }
}

impl SharedBucket {
    pub fn new(rate: Rate) -> Self {
        Self { rate, tat: AtomicU64::new(0), feed: None }
    }

    /// A cluster-scoped bucket: empty until the cluster thread feeds it.
    pub fn fed(rate: Rate) -> Self {
        Self { rate, tat: AtomicU64::new(0), feed: Some(Box::default()) }
    }

    /// Tokens per lease: ~1 ms of the rate, at least 1, at most the burst.
    pub fn batch(&self) -> u64 {
        (self.rate.per_s * LEASE_SLICE_NS / NS).clamp(1, self.rate.burst)
    }

    /// Takes up to `want` tokens at `now`; returns how many were granted.
    pub fn lease(&self, now: u64, want: u64) -> u64 {
        if let Some(feed) = &self.feed {
            return feed.lease(want);
        }
        let mut cur = self.tat.load(Ordering::Relaxed);
        loop {
            let (k, next) = self.rate.take(cur, now, want);
            if k == 0 {
                return 0;
            }
            match self.tat.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return k,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back `n` unspent tokens.
    pub fn give_back(&self, n: u64) {
        if let Some(feed) = &self.feed {
            return feed.give_back(n);
        }
        if n > 0 {
            let _ = self
                .tat
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| Some(t.saturating_sub(n * self.rate.t_ns)));
        }
    }

    /// Nanoseconds until the shared bucket has a token again (for Retry-After).
    pub fn wait_ns(&self, now: u64) -> u64 {
        self.rate.wait_ns(self.tat.load(Ordering::Relaxed), now)
    }
}

/// One core's leased tokens for one rule.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lease {
    tokens: u64,
    expires: u64,
}

impl Lease {
    /// Ensures at least one local token, leasing a batch if needed. `false`: the rule is exhausted.
    pub fn ensure(&mut self, shared: &SharedBucket, now: u64) -> bool {
        if self.tokens > 0 && now < self.expires {
            return true;
        }
        self.expire(shared, now);
        let got = shared.lease(now, shared.batch());
        if got == 0 {
            return false;
        }
        self.tokens = got;
        self.expires = now + LEASE_TTL_NS;
        true
    }

    /// Spends one token; call only after `ensure` returned true.
    pub fn spend(&mut self) {
        debug_assert!(self.tokens > 0);
        self.tokens -= 1;
    }

    /// Returns unspent tokens once the lease has expired.
    pub fn expire(&mut self, shared: &SharedBucket, now: u64) {
        if self.tokens > 0 && now >= self.expires {
            shared.give_back(self.tokens);
            self.tokens = 0;
        }
    }
}

#[cfg(test)]
mod tests;
