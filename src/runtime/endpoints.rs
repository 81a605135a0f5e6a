//! The endpoint supervisor: one thread that owns every upstream's health and outlier state,
//! fed by probe results (one prober thread per upstream with `health`) and by failure reports
//! from the workers; it broadcasts each change of an endpoint's availability to every worker.
//!
//! Per-core vs shared: workers only keep a flag per endpoint (`UpstreamState::available`);
//! the decision (probe thresholds, Envoy-style ejection with backoff and the ejected-percent
//! cap) is made once here, so an ejected endpoint leaves rotation on every core at once.
//! `EndpointStatus` is shared with the admin thread behind a mutex (control path only).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::control::{ControlEvent, ControlMsg, Outbox};
use crate::config::Snapshot;
use crate::upstream::health::{probe, HealthState};
use crate::upstream::outlier::{Outlier, Verdict};

/// How often ejections are checked for expiry.
const TICK: Duration = Duration::from_millis(50);

/// What the admin endpoint shows for one endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointStatus {
    pub healthy: bool,
    pub last_probe: Option<String>,
    pub ejected_for_ms: Option<u64>,
    pub times_ejected: u32,
    pub consecutive_failures: u32,
}

/// Shared status table: `[upstream][endpoint]`.
pub type StatusTable = Arc<Mutex<Vec<Vec<EndpointStatus>>>>;

/// The running supervisor and its probers.
pub struct Supervisor {
    /// Dropped to stop: every thread waits on its receiver, so they all wake at once.
    stop: Sender<()>,
    thread: JoinHandle<()>,
    pub status: StatusTable,
}

impl Supervisor {
    /// Stops the supervisor thread and waits for it (it wakes at once). Probers are not waited
    /// for: one may be inside a probe (bounded by its timeout); it exits when the probe ends.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

struct UpstreamTrack {
    health: Vec<HealthState>,
    outlier: Option<Outlier>,
    available: Vec<bool>,
    times_ejected: Vec<u32>,
    /// Routing to ejected endpoints because ejection left none in rotation.
    panic: bool,
}

/// What a reload carries into the new supervisor: the old config and its endpoint table.
pub struct Carried<'a> {
    pub snapshot: &'a Snapshot,
    pub status: Vec<Vec<EndpointStatus>>,
}

/// Starts the supervisor thread and one prober per upstream with `health`. `carried`: after a
/// reload, endpoints that stay (same upstream name and address) keep their health and ejection.
pub fn start(
    snapshot: Arc<Snapshot>,
    outboxes: Vec<Outbox>,
    events: Receiver<ControlEvent>,
    tx: crossbeam_channel::Sender<ControlEvent>,
    carried: Option<Carried<'_>>,
) -> std::io::Result<Supervisor> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let status: StatusTable = Arc::new(Mutex::new(
        snapshot
            .upstreams
            .iter()
            .map(|u| vec![EndpointStatus { healthy: true, ..Default::default() }; u.endpoints.len()])
            .collect(),
    ));
    for (ui, up) in snapshot.upstreams.iter().enumerate() {
        let Some(cfg) = up.health.clone() else { continue };
        let tls = up.tls.clone();
        let generation = snapshot.generation;
        let (addrs, source, tx, stop) = (
            up.endpoints.iter().map(|e| e.addr).collect::<Vec<_>>(),
            up.egress_ips.first().copied(),
            tx.clone(),
            stopped.clone(),
        );
        let name = format!("ringway-hc-{}", up.name);
        std::thread::Builder::new().name(name).spawn(move || {
            let mut seed = (ui as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            loop {
                for (ei, addr) in addrs.iter().enumerate() {
                    let result = probe(*addr, source, &cfg, tls.as_deref());
                    if tx.send(ControlEvent::Probe { generation, upstream: ui, endpoint: ei, result }).is_err() {
                        return;
                    }
                }
                // interval ± 10% jitter, so probes from many instances do not align
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let jitter = (seed % 2001) as f64 / 10_000.0 - 0.1;
                let wait = cfg.interval.mul_f64(1.0 + jitter);
                if stop.recv_timeout(wait) != Err(RecvTimeoutError::Timeout) {
                    return; // the supervisor stopped
                }
            }
        })?;
    }
    let mut tracks: Vec<UpstreamTrack> = snapshot
        .upstreams
        .iter()
        .map(|u| UpstreamTrack {
            health: vec![HealthState::default(); u.endpoints.len()],
            outlier: u.outlier.map(|c| Outlier::new(c, u.endpoints.len())),
            available: vec![true; u.endpoints.len()],
            times_ejected: vec![0; u.endpoints.len()],
            panic: false,
        })
        .collect();
    if let Some(c) = &carried {
        carry(&snapshot, &mut tracks, c, &status);
    }
    let (st, snap) = (status.clone(), snapshot);
    let thread = std::thread::Builder::new().name("ringway-endpoints".into()).spawn(move || {
        loop {
            let now = Instant::now();
            crossbeam_channel::select! {
                recv(events) -> ev => match ev {
                    Ok(ev) => handle(&snap, &mut tracks, &st, ev, now),
                    Err(_) => return,
                },
                recv(stopped) -> _ => return, // only ever disconnected: stop
                default(TICK) => {}
            }
            for (ui, t) in tracks.iter_mut().enumerate() {
                if let Some(o) = &mut t.outlier {
                    for v in o.expire(Instant::now()) {
                        if let Verdict::Readmit { endpoint } = v {
                            tracing::info!(upstream = %snap.upstreams[ui].name, endpoint = %snap.upstreams[ui].endpoints[endpoint].addr, "Ejection over; endpoint back in rotation");
                        }
                    }
                }
                publish(&snap, ui, t, &st, &outboxes);
            }
        }
    })?;
    Ok(Supervisor { stop, thread, status })
}

fn handle(snap: &Snapshot, tracks: &mut [UpstreamTrack], status: &StatusTable, ev: ControlEvent, now: Instant) {
    match ev {
        // a report from a request that started on another config names other indices
        ControlEvent::Outcome { generation, .. } if generation != snap.generation => {}
        ControlEvent::Outcome { upstream, endpoint, failure, .. } => {
            let t = &mut tracks[upstream];
            if let Some(o) = &mut t.outlier {
                if let Some(Verdict::Eject { until, .. }) = o.observe(endpoint, failure, now) {
                    t.times_ejected[endpoint] += 1;
                    let up = &snap.upstreams[upstream];
                    tracing::warn!(upstream = %up.name, endpoint = %up.endpoints[endpoint].addr, ejected_ms = (until - now).as_millis() as u64, "Endpoint ejected after consecutive failures");
                }
            }
        }
        ControlEvent::Probe { generation, .. } if generation != snap.generation => {}
        ControlEvent::Probe { upstream, endpoint, result, .. } => {
            let t = &mut tracks[upstream];
            let Some(cfg) = &snap.upstreams[upstream].health else { return };
            let ok = result.is_ok();
            if let Some(flipped) = t.health[endpoint].observe(ok, cfg) {
                let up = &snap.upstreams[upstream];
                tracing::warn!(upstream = %up.name, endpoint = %up.endpoints[endpoint].addr, healthy = flipped, reason = ?result, "Health check changed state");
            }
            if ok {
                if let Some(o) = &mut t.outlier {
                    o.readmit(endpoint);
                }
            }
            if let Ok(mut s) = status.lock() {
                s[upstream][endpoint].last_probe = Some(match &result {
                    Ok(()) => "ok".into(),
                    Err(e) => e.clone(),
                });
            }
        }
    }
}

/// Seeds the new config's tracks from the old endpoint table, by upstream name and address.
fn carry(snap: &Snapshot, tracks: &mut [UpstreamTrack], c: &Carried<'_>, status: &StatusTable) {
    let now = Instant::now();
    for (ui, up) in snap.upstreams.iter().enumerate() {
        let Some(oi) = c.snapshot.upstreams.iter().position(|o| o.name == up.name) else { continue };
        for (ei, ep) in up.endpoints.iter().enumerate() {
            let Some(oe) = c.snapshot.upstreams[oi].endpoints.iter().position(|o| o.addr == ep.addr) else { continue };
            let Some(old) = c.status.get(oi).and_then(|s| s.get(oe)) else { continue };
            let t = &mut tracks[ui];
            t.health[ei] = crate::upstream::health::HealthState::with(old.healthy);
            t.times_ejected[ei] = old.times_ejected;
            if let Some(o) = &mut t.outlier {
                let until = old.ejected_for_ms.map(|ms| now + Duration::from_millis(ms));
                o.restore(ei, until, old.times_ejected);
            }
            t.available[ei] = old.healthy && old.ejected_for_ms.is_none();
            if let Ok(mut s) = status.lock() {
                s[ui][ei] = old.clone();
            }
        }
    }
}

/// Recomputes availability (healthy and not ejected), broadcasts changes, refreshes the table.
fn publish(snap: &Snapshot, ui: usize, t: &mut UpstreamTrack, status: &StatusTable, outboxes: &[Outbox]) {
    let now = Instant::now();
    // panic routing: when ejection (not health) has left no endpoint in rotation, the healthy
    // ejected ones serve rather than every request failing fast
    let ejected_of = |ei: usize| t.outlier.as_ref().and_then(|o| o.ejected_until(ei, now));
    let in_rotation = (0..t.available.len()).any(|ei| t.health[ei].healthy && ejected_of(ei).is_none());
    let panic = !in_rotation && (0..t.available.len()).any(|ei| t.health[ei].healthy);
    if panic != t.panic {
        t.panic = panic;
        match panic {
            true => {
                tracing::warn!(upstream = %snap.upstreams[ui].name, "Every healthy endpoint is ejected: routing to them anyway (panic mode)")
            }
            false => tracing::info!(upstream = %snap.upstreams[ui].name, "Left panic mode: endpoints back in rotation"),
        }
    }
    for ei in 0..t.available.len() {
        let ejected = ejected_of(ei);
        let available = t.health[ei].healthy && (ejected.is_none() || panic);
        if available != t.available[ei] {
            t.available[ei] = available;
            for o in outboxes {
                o.send(ControlMsg::Endpoint { generation: snap.generation, upstream: ui, endpoint: ei, available });
            }
        }
        if let Ok(mut s) = status.lock() {
            let e = &mut s[ui][ei];
            e.healthy = t.health[ei].healthy;
            e.ejected_for_ms = ejected.map(|u| (u - now).as_millis() as u64);
            e.times_ejected = t.times_ejected[ei];
            e.consecutive_failures = t.outlier.as_ref().map_or(0, |o| o.failures(ei));
        }
    }
    let _ = snap;
}
