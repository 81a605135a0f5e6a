//! Passive outlier ejection with Envoy's semantics, as a pure state machine over one upstream's
//! endpoints: `consecutive_failures` in a row eject an endpoint for `base × times ejected`
//! (capped at `max`), at most `max_ejected_percent` of endpoints at once (but at least one), and
//! never the last endpoint in rotation: passive ejection alone never empties an upstream (Envoy's
//! panic routing; only active health checks can take every endpoint out).
//!
//! Fed by the control thread with failure/success reports from every worker, so a failing
//! endpoint is ejected on every core, not just on the one that saw it. Time is passed in.

use std::time::{Duration, Instant};

/// `outlier = { .. }` of an upstream, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct EndpointOutlier {
    failures: u32,
    times_ejected: u32,
    ejected_until: Option<Instant>,
}

/// Outlier state of one upstream.
#[derive(Debug, Clone)]
pub struct Outlier {
    cfg: OutlierConfig,
    endpoints: Vec<EndpointOutlier>,
}

/// A decision to broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Eject { endpoint: usize, until: Instant },
    Readmit { endpoint: usize },
}

impl Outlier {
    pub fn new(cfg: OutlierConfig, endpoints: usize) -> Self {
        Self { cfg, endpoints: vec![EndpointOutlier::default(); endpoints] }
    }

    fn ejected_now(&self, now: Instant) -> usize {
        self.endpoints.iter().filter(|e| e.ejected_until.is_some_and(|u| u > now)).count()
    }

    /// Records one request outcome for `endpoint`; may eject it.
    pub fn observe(&mut self, endpoint: usize, failure: bool, now: Instant) -> Option<Verdict> {
        let n = self.endpoints.len();
        let max_ejected = (n * self.cfg.max_ejected_percent as usize / 100).max(1).min(n.saturating_sub(1));
        let ejected = self.ejected_now(now);
        let e = &mut self.endpoints[endpoint];
        if !failure {
            e.failures = 0;
            return None;
        }
        e.failures += 1;
        let already = e.ejected_until.is_some_and(|u| u > now);
        if e.failures < self.cfg.consecutive_failures || already || ejected >= max_ejected {
            return None;
        }
        e.times_ejected += 1;
        let time = (self.cfg.base_ejection * e.times_ejected).min(self.cfg.max_ejection);
        e.failures = 0;
        let until = now + time;
        e.ejected_until = Some(until);
        Some(Verdict::Eject { endpoint, until })
    }

    /// Ejections that have run out at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Verdict> {
        let mut out = Vec::new();
        for (i, e) in self.endpoints.iter_mut().enumerate() {
            if e.ejected_until.is_some_and(|u| u <= now) {
                e.ejected_until = None;
                out.push(Verdict::Readmit { endpoint: i });
            }
        }
        out
    }

    /// A successful active health check re-admits at once.
    pub fn readmit(&mut self, endpoint: usize) -> Option<Verdict> {
        let e = &mut self.endpoints[endpoint];
        e.failures = 0;
        e.ejected_until.take().map(|_| Verdict::Readmit { endpoint })
    }

    /// When the endpoint's current ejection ends, if it is ejected.
    pub fn ejected_until(&self, endpoint: usize, now: Instant) -> Option<Instant> {
        self.endpoints[endpoint].ejected_until.filter(|u| *u > now)
    }

    /// Restores an endpoint's ejection carried over a reload.
    pub fn restore(&mut self, endpoint: usize, until: Option<Instant>, times_ejected: u32) {
        let e = &mut self.endpoints[endpoint];
        e.ejected_until = until;
        e.times_ejected = times_ejected;
    }

    /// Consecutive failures counted for the endpoint.
    pub fn failures(&self, endpoint: usize) -> u32 {
        self.endpoints[endpoint].failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 10,
        }
    }

    #[test]
    fn five_consecutive_failures_eject_with_growing_backoff() {
        let clock = ManualClock::default();
        let mut o = Outlier::new(cfg(), 3);
        for _ in 0..4 {
            assert_eq!(o.observe(1, true, clock.now()), None);
        }
        assert_eq!(
            o.observe(1, true, clock.now()),
            Some(Verdict::Eject { endpoint: 1, until: clock.now() + Duration::from_secs(30) })
        );
        clock.advance(Duration::from_secs(30));
        assert_eq!(o.expire(clock.now()), vec![Verdict::Readmit { endpoint: 1 }]);
        for _ in 0..4 {
            o.observe(1, true, clock.now());
        }
        assert_eq!(
            o.observe(1, true, clock.now()),
            Some(Verdict::Eject { endpoint: 1, until: clock.now() + Duration::from_secs(60) }),
            "second ejection: 2 x base"
        );
    }

    #[test]
    fn successes_reset_the_count() {
        let clock = ManualClock::default();
        let mut o = Outlier::new(cfg(), 3);
        for _ in 0..20 {
            for _ in 0..4 {
                o.observe(0, true, clock.now());
            }
            o.observe(0, false, clock.now());
        }
        assert_eq!(o.ejected_until(0, clock.now()), None);
    }

    #[test]
    fn ejection_time_is_capped() {
        let clock = ManualClock::default();
        let mut o = Outlier::new(cfg(), 2);
        let mut last = Duration::ZERO;
        for _ in 0..15 {
            for _ in 0..5 {
                if let Some(Verdict::Eject { until, .. }) = o.observe(0, true, clock.now()) {
                    last = until - clock.now();
                }
            }
            clock.advance(Duration::from_secs(400));
            o.expire(clock.now());
        }
        assert_eq!(last, Duration::from_secs(300));
    }

    #[test]
    fn at_most_max_percent_but_at_least_one_is_ejected() {
        let clock = ManualClock::default();
        let mut o = Outlier::new(cfg(), 10);
        let mut ejections = 0;
        for ep in 0..9 {
            for _ in 0..5 {
                ejections += o.observe(ep, true, clock.now()).is_some() as u32;
            }
        }
        assert_eq!(ejections, 1, "10% of 10 endpoints");
        let mut small = Outlier::new(cfg(), 3);
        let mut n = 0;
        for ep in 0..3 {
            for _ in 0..5 {
                n += small.observe(ep, true, clock.now()).is_some() as u32;
            }
        }
        assert_eq!(n, 1, "at least one even when 10% rounds to zero");
        let mut single = Outlier::new(OutlierConfig { max_ejected_percent: 100, ..cfg() }, 1);
        let ejected = (0..20).filter(|_| single.observe(0, true, clock.now()).is_some()).count();
        assert_eq!(ejected, 0, "the only endpoint of an upstream is never ejected");
    }

    #[test]
    fn active_check_success_readmits() {
        let clock = ManualClock::default();
        let mut o = Outlier::new(cfg(), 2);
        for _ in 0..5 {
            o.observe(0, true, clock.now());
        }
        assert!(o.ejected_until(0, clock.now()).is_some());
        assert_eq!(o.readmit(0), Some(Verdict::Readmit { endpoint: 0 }));
        assert_eq!(o.ejected_until(0, clock.now()), None);
    }
}
