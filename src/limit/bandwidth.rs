//! The egress bandwidth cap: bytes written to upstream sockets, whole instance, shaped (delayed,
//! never dropped) to `egress_bandwidth_bytes_per_s`.
//!
//! One shared GCRA bucket for the instance whose tokens are KiB (so its nanosecond clock stays
//! precise at high rates), leased by each worker in batches like the rate limiter's leases: a
//! worker spends its local balance in bytes with no atomics and leases again only when it runs
//! out; leftover balance goes back after [`LEASE_TTL_NS`]. A write waits until its bytes are
//! granted; waiting is the only effect.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::{Rate, RateRule, LEASE_TTL_NS, NS};

/// Bytes per token.
pub const UNIT: u64 = 1024;

/// The shared bucket's rate for a cap in bytes per second: KiB per second, a burst of 20 ms
/// worth (at least 16 KiB), so a 1 s window holds at most 2% more than the cap.
pub fn egress_rate(bytes_per_s: u64) -> Rate {
    let kib = bytes_per_s.div_ceil(UNIT).max(1);
    Rate::new(kib, (kib / 50).max(16))
}

/// One worker's side of the cap.
#[derive(Debug, Default)]
pub struct Shaper {
    /// Granted bytes not written yet.
    balance: Cell<u64>,
    /// When the balance goes back to the shared bucket if unused.
    expires: Cell<u64>,
    /// Bytes granted (and so written) through this worker.
    pub sent: Cell<u64>,
    /// Time writes spent waiting for their bytes, ns.
    pub waited_ns: Cell<u64>,
}

impl Shaper {
    /// Waits until `n` bytes may be written under `rule`'s cap.
    pub async fn acquire(&self, rule: &RateRule, n: u64) {
        let mut need = n;
        let batch = rule.bucket.batch();
        let burst = rule.bucket.rate.burst;
        loop {
            let now = rule.now_ns(Instant::now());
            if self.balance.get() > 0 && now >= self.expires.get() {
                rule.bucket.give_back(self.balance.get() / UNIT);
                self.balance.set(0);
            }
            let take = self.balance.get().min(need);
            self.balance.set(self.balance.get() - take);
            need -= take;
            if need == 0 {
                self.sent.set(self.sent.get() + n);
                return;
            }
            let want = need.div_ceil(UNIT).max(batch).min(burst);
            let got = rule.bucket.lease(now, want);
            if got > 0 {
                self.balance.set(self.balance.get() + got * UNIT);
                self.expires.set(now + LEASE_TTL_NS);
                continue;
            }
            let wait = Duration::from_nanos(rule.bucket.wait_ns(now).clamp(50_000, NS));
            let t0 = Instant::now();
            monoio::time::sleep(wait).await;
            self.waited_ns.set(self.waited_ns.get() + t0.elapsed().as_nanos() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_writes_stays_within_the_cap() {
        // two shapers (two workers) offering far more than 1 MB/s for 1 s
        let rule = RateRule::new(egress_rate(1_000_000));
        let (a, b) = (Shaper::default(), Shaper::default());
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
        let sent = rt.block_on(async {
            let t0 = Instant::now();
            let mut total = 0u64;
            while t0.elapsed() < Duration::from_secs(1) {
                a.acquire(&rule, 16 * 1024).await;
                b.acquire(&rule, 10 * 1024).await;
                total += 26 * 1024;
            }
            total
        });
        assert_eq!(sent, a.sent.get() + b.sent.get());
        // never more than the cap (976.6 KiB/s in tokens) plus one burst (20 ms) and the last
        // write, whatever the machine's load; the lower bound only says it is not stuck
        assert!((300_000..=1_080_000).contains(&sent), "{sent} bytes in 1 s under a 1 MB/s cap");
    }
}
