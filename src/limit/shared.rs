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
}

impl SharedBucket {
    pub fn new(rate: Rate) -> Self {
        Self { rate, tat: AtomicU64::new(0) }
    }

    /// Tokens per lease: ~1 ms of the rate, at least 1, at most the burst.
    pub fn batch(&self) -> u64 {
        (self.rate.per_s * LEASE_SLICE_NS / NS).clamp(1, self.rate.burst)
    }

    /// Takes up to `want` tokens at `now`; returns how many were granted.
    pub fn lease(&self, now: u64, want: u64) -> u64 {
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
