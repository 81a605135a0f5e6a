//! Latency histograms per listener, service, API and upstream, for the total request time and
//! the upstream phases (connect, time to first byte). Microseconds, 3 significant digits.

use hdrhistogram::Histogram;

use crate::config::Snapshot;

/// Longest latency tracked exactly (1 hour in µs); larger values are clamped to it.
const MAX_TRACKABLE_US: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;

/// Which part of a request a value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Complete request head received → last response byte written.
    Total,
    /// Dialing a new upstream connection (pool hits record nothing).
    Connect,
    /// Request fully sent upstream → response head parsed.
    FirstByte,
}

/// A histogram per (scope, phase). Scopes: listeners, services, APIs, upstreams.
#[derive(Debug, Clone)]
pub struct LatencySet {
    pub listeners: Vec<Histogram<u64>>,
    pub services: Vec<Histogram<u64>>,
    /// Per API: [total, connect, first byte].
    pub apis: Vec<[Histogram<u64>; 3]>,
    /// Per upstream: [total, connect, first byte].
    pub upstreams: Vec<[Histogram<u64>; 3]>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, SIGFIG).expect("static histogram bounds are valid")
}

fn triple() -> [Histogram<u64>; 3] {
    [hist(), hist(), hist()]
}

impl LatencySet {
    pub fn new(s: &Snapshot) -> Self {
        Self {
            listeners: s.listeners.iter().map(|_| hist()).collect(),
            services: s.services.iter().map(|_| hist()).collect(),
            apis: s.apis.iter().map(|_| triple()).collect(),
            upstreams: s.upstreams.iter().map(|_| triple()).collect(),
        }
    }

    /// Records a finished request's total time.
    pub fn record_total(
        &mut self,
        listener: usize,
        service: Option<usize>,
        api: Option<usize>,
        upstream: Option<usize>,
        us: u64,
    ) {
        let us = us.clamp(1, MAX_TRACKABLE_US);
        self.listeners[listener].saturating_record(us);
        if let Some(s) = service {
            self.services[s].saturating_record(us);
        }
        if let Some(a) = api {
            self.apis[a][0].saturating_record(us);
        }
        if let Some(u) = upstream {
            self.upstreams[u][0].saturating_record(us);
        }
    }

    /// Records an upstream phase for an API and its upstream.
    pub fn record_phase(&mut self, phase: Phase, api: usize, upstream: usize, us: u64) {
        let i = match phase {
            Phase::Total => 0,
            Phase::Connect => 1,
            Phase::FirstByte => 2,
        };
        let us = us.clamp(1, MAX_TRACKABLE_US);
        self.apis[api][i].saturating_record(us);
        self.upstreams[upstream][i].saturating_record(us);
    }

    /// Adds `other` (same config) into `self`.
    pub fn add(&mut self, other: &LatencySet) {
        let add = |a: &mut Histogram<u64>, b: &Histogram<u64>| {
            let _ = a.add(b);
        };
        self.listeners.iter_mut().zip(&other.listeners).for_each(|(a, b)| add(a, b));
        self.services.iter_mut().zip(&other.services).for_each(|(a, b)| add(a, b));
        for (a, b) in self.apis.iter_mut().zip(&other.apis).chain(self.upstreams.iter_mut().zip(&other.upstreams)) {
            a.iter_mut().zip(b).for_each(|(x, y)| add(x, y));
        }
    }

    /// Empties every histogram (a new measurement window).
    pub fn reset(&mut self) {
        self.listeners.iter_mut().chain(self.services.iter_mut()).for_each(Histogram::reset);
        for t in self.apis.iter_mut().chain(self.upstreams.iter_mut()) {
            t.iter_mut().for_each(Histogram::reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let text = "[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.u]\nendpoints = [{ addr = \"127.0.0.1:1\" }]\n[service.s]\n[[service.s.api]]\nname = \"a\"\npath = \"/\"\nupstream = \"u\"\n";
        crate::config::compile(text, 1).unwrap()
    }

    #[test]
    fn merged_percentiles_cover_both_cores() {
        let s = snapshot();
        let (mut a, mut b) = (LatencySet::new(&s), LatencySet::new(&s));
        for v in 1..=900 {
            a.record_total(0, Some(0), Some(0), Some(0), v);
        }
        for v in 901..=1000 {
            b.record_total(0, Some(0), Some(0), Some(0), v * 10);
        }
        a.add(&b);
        let h = &a.apis[0][0];
        assert_eq!(h.len(), 1000);
        assert!((895..=905).contains(&h.value_at_quantile(0.9)), "{}", h.value_at_quantile(0.9));
        assert!(h.value_at_quantile(0.99) > 9000);
        a.reset();
        assert_eq!(a.apis[0][0].len(), 0);
    }

    #[test]
    fn phases_land_in_api_and_upstream() {
        let s = snapshot();
        let mut l = LatencySet::new(&s);
        l.record_phase(Phase::Connect, 0, 0, 120);
        l.record_phase(Phase::FirstByte, 0, 0, 3000);
        assert_eq!((l.apis[0][1].len(), l.upstreams[0][2].len()), (1, 1));
        assert_eq!(l.apis[0][0].len(), 0);
    }
}
