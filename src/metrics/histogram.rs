//! Latency histograms per listener, service, API and upstream, for the total request time and
//! the upstream phases (connect, time to first byte). Microseconds, within 3.1% ([`LogHist`]).
//! Workers only ever add to them; a measurement window is the difference between two copies
//! (taken by the admin thread), so Prometheus series never go down.

use super::loghist::LogHist;
use crate::config::Snapshot;

type Histogram = LogHist;

/// Which part of a request a value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Complete request head received → last response byte written.
    Total,
    /// Dialing a new upstream connection (pool hits record nothing).
    Connect,
    /// Request fully sent upstream → response head parsed.
    FirstByte,
    /// Waiting on the WAF's verdict (connecting included). For the WAF's own upstream, the same
    /// calls are recorded under this phase.
    Waf,
}

/// Phases kept per API and per upstream, in [`Phase`] order.
pub const PHASES: usize = 4;

/// A histogram per (scope, phase). Scopes: listeners, services, APIs, upstreams.
#[derive(Debug, Clone)]
pub struct LatencySet {
    pub listeners: Vec<Histogram>,
    pub services: Vec<Histogram>,
    /// Per API: [total, connect, first byte, waf].
    pub apis: Vec<[Histogram; PHASES]>,
    /// Per upstream: [total, connect, first byte, waf].
    pub upstreams: Vec<[Histogram; PHASES]>,
}

fn hist() -> Histogram {
    Histogram::default()
}

fn phases() -> [Histogram; PHASES] {
    std::array::from_fn(|_| hist())
}

impl LatencySet {
    pub fn new(s: &Snapshot) -> Self {
        Self {
            listeners: s.listeners.iter().map(|_| hist()).collect(),
            services: s.services.iter().map(|_| hist()).collect(),
            apis: s.apis.iter().map(|_| phases()).collect(),
            upstreams: s.upstreams.iter().map(|_| phases()).collect(),
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
        self.listeners[listener].record(us);
        if let Some(s) = service {
            self.services[s].record(us);
        }
        if let Some(a) = api {
            self.apis[a][0].record(us);
        }
        if let Some(u) = upstream {
            self.upstreams[u][0].record(us);
        }
    }

    /// Records an upstream phase for an API and its upstream.
    pub fn record_phase(&mut self, phase: Phase, api: usize, upstream: usize, us: u64) {
        let i = phase as usize;
        self.apis[api][i].record(us);
        self.upstreams[upstream][i].record(us);
    }

    /// Adds `other` (same config) into `self`.
    pub fn add(&mut self, other: &LatencySet) {
        self.listeners.iter_mut().zip(&other.listeners).for_each(|(a, b)| a.add(b));
        self.services.iter_mut().zip(&other.services).for_each(|(a, b)| a.add(b));
        for (a, b) in self.apis.iter_mut().zip(&other.apis).chain(self.upstreams.iter_mut().zip(&other.upstreams)) {
            a.iter_mut().zip(b).for_each(|(x, y)| x.add(y));
        }
    }

    /// What was recorded since `earlier` (an older copy of the same set): a measurement window.
    pub fn since(&self, earlier: &LatencySet) -> LatencySet {
        let pairs = |a: &[Histogram], b: &[Histogram]| a.iter().zip(b).map(|(x, y)| x.since(y)).collect();
        let triples = |a: &[[Histogram; PHASES]], b: &[[Histogram; PHASES]]| {
            a.iter().zip(b).map(|(x, y)| std::array::from_fn(|i| x[i].since(&y[i]))).collect()
        };
        LatencySet {
            listeners: pairs(&self.listeners, &earlier.listeners),
            services: pairs(&self.services, &earlier.services),
            apis: triples(&self.apis, &earlier.apis),
            upstreams: triples(&self.upstreams, &earlier.upstreams),
        }
    }

    /// Bytes held by every histogram of the set.
    pub fn bytes(&self) -> usize {
        let singles = self.listeners.iter().chain(&self.services).map(Histogram::bytes).sum::<usize>();
        let triples = self.apis.iter().chain(&self.upstreams).flatten().map(Histogram::bytes).sum::<usize>();
        singles + triples
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
        let before = a.clone();
        a.add(&b);
        let h = &a.apis[0][0];
        assert_eq!(h.count(), 1000);
        assert!((872..=928).contains(&h.value_at_quantile(0.9)), "{}", h.value_at_quantile(0.9));
        assert!(h.value_at_quantile(0.99) > 9000);
        assert_eq!(a.since(&before).apis[0][0].count(), 100, "the window holds what came after the copy");
    }

    #[test]
    fn phases_land_in_api_and_upstream() {
        let s = snapshot();
        let mut l = LatencySet::new(&s);
        l.record_phase(Phase::Connect, 0, 0, 120);
        l.record_phase(Phase::FirstByte, 0, 0, 3000);
        assert_eq!((l.apis[0][1].count(), l.upstreams[0][2].count()), (1, 1));
        assert_eq!(l.apis[0][0].count(), 0);
    }
}
