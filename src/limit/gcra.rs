//! GCRA (generic cell rate algorithm): a token bucket kept as one number, the theoretical arrival
//! time (TAT). Pure: time is nanoseconds passed in by the caller.
//!
//! A bucket with `rate` tokens/s and `burst` tokens admits a request at `now` when
//! `tat - now <= (burst - 1) * T` with `T = 1 s / rate`; admitting sets `tat = max(tat, now) + T`.

/// Nanoseconds per second.
pub const NS: u64 = 1_000_000_000;

/// Rate and burst of a bucket, precomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_s: u64,
    pub burst: u64,
    /// Nanoseconds per token.
    pub t_ns: u64,
    /// How far ahead of `now` the TAT may run: `(burst - 1) * T`.
    pub tolerance_ns: u64,
}

impl Rate {
    pub fn new(per_s: u64, burst: u64) -> Self {
        let per_s = per_s.max(1);
        let burst = burst.max(1);
        let t_ns = (NS / per_s).max(1);
        Self { per_s, burst, t_ns, tolerance_ns: (burst - 1).saturating_mul(t_ns) }
    }

    /// How many of `want` tokens a bucket at `tat` can give at `now`, and the new TAT.
    #[inline]
    pub fn take(&self, tat: u64, now: u64, want: u64) -> (u64, u64) {
        let base = tat.max(now);
        let room = (now + self.tolerance_ns + self.t_ns).saturating_sub(base);
        let k = (room / self.t_ns).min(want);
        (k, base + k * self.t_ns)
    }

    /// Nanoseconds until one token is available for a bucket at `tat`.
    pub fn wait_ns(&self, tat: u64, now: u64) -> u64 {
        (tat.max(now) + self.t_ns).saturating_sub(now + self.tolerance_ns + self.t_ns).max(1)
    }
}

/// A core-local bucket (per-key limits): no atomics.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBucket {
    pub tat: u64,
}

impl LocalBucket {
    /// Takes one token; `Err(wait_ns)` when empty.
    pub fn take(&mut self, rate: &Rate, now: u64) -> Result<(), u64> {
        let (k, tat) = rate.take(self.tat, now, 1);
        if k == 1 {
            self.tat = tat;
            Ok(())
        } else {
            Err(rate.wait_ns(self.tat, now))
        }
    }

    /// Whether one token is available (without taking it).
    pub fn has_token(&self, rate: &Rate, now: u64) -> bool {
        rate.take(self.tat, now, 1).0 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let r = Rate::new(10, 5);
        let mut b = LocalBucket::default();
        let now = 10 * NS;
        assert_eq!((0..8).filter(|_| b.take(&r, now).is_ok()).count(), 5, "burst of 5 at once");
        // over the next second exactly 10 more are admitted, one per 100 ms
        let admitted = (1..=1000).filter(|ms| b.take(&r, now + ms * 1_000_000).is_ok()).count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn wait_reports_time_to_next_token() {
        let r = Rate::new(10, 1);
        let mut b = LocalBucket::default();
        assert!(b.take(&r, NS).is_ok());
        let wait = b.take(&r, NS).unwrap_err();
        assert_eq!(wait, 100_000_000);
        assert!(b.take(&r, NS + wait).is_ok());
    }

    #[test]
    fn take_many_is_capped_by_room() {
        let r = Rate::new(1000, 100);
        let (k, tat) = r.take(0, NS, 500);
        assert_eq!(k, 100);
        assert_eq!(r.take(tat, NS, 1).0, 0);
        assert_eq!(r.take(tat, NS + 10_000_000, 50).0, 10, "10 ms later: 10 tokens");
    }
}
