//! `Session`: what one request did, filled in by the phases and recorded once at the end into the
//! shard's metrics and (when enabled) the access log.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use smallvec::SmallVec;

use crate::config::{ApiId, ServiceId, UpstreamId};

use crate::metrics::{Entry, Phase};
use crate::runtime::{Generation, Shard};

/// Per-request record.
pub struct Session {
    /// When the complete request head was available.
    pub started: Instant,
    pub listener: usize,
    pub service: Option<ServiceId>,
    pub api: Option<ApiId>,
    pub upstream: Option<UpstreamId>,
    pub endpoint: Option<SocketAddr>,
    /// Status sent to the client; 0 when no response was sent.
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_us: Option<u64>,
    pub first_byte_us: Option<u64>,
    /// Why the request failed, for the access log (`connect_timeout`, `response_timeout`, ...).
    pub error: Option<&'static str>,
    /// Method, path and host, captured only when the access log is on.
    pub log: Option<Box<LogFields>>,
    /// The WAF's verdict and time, when the API has one.
    pub waf: Option<crate::waf::WafRecord>,
    /// The authenticated consumer (or the one refused by `consumers`).
    pub consumer: Option<crate::policy::ConsumerId>,
    /// An HTTP/1.0 request (HTTP/1.1 otherwise, or h2 on an HTTP/2 connection).
    pub http10: bool,
}

/// Request fields kept for the access log.
pub struct LogFields {
    pub method: SmallVec<[u8; 8]>,
    pub path: SmallVec<[u8; 64]>,
    /// Query without `?`, redacted per `[access_log] redact_query`.
    pub query: SmallVec<[u8; 64]>,
    pub host: SmallVec<[u8; 32]>,
}

impl Session {
    pub fn new(listener: usize, started: Instant) -> Self {
        Self {
            started,
            listener,
            service: None,
            api: None,
            upstream: None,
            endpoint: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            connect_us: None,
            first_byte_us: None,
            error: None,
            log: None,
            waf: None,
            consumer: None,
            http10: false,
        }
    }
}

/// Microseconds since `t0`.
#[inline]
pub fn micros_since(t0: Instant) -> u64 {
    t0.elapsed().as_micros().min(u128::from(u64::MAX)) as u64
}

/// The client side of a connection, as the phases need it.
pub struct Peer {
    pub addr: IpAddr,
    /// Client IP as text (rendered once per connection).
    pub ip: Vec<u8>,
    /// Index of the listener that accepted the connection in the current config (read when a
    /// request starts; `usize::MAX` once a reload removed the listener).
    pub listener: std::rc::Rc<std::cell::Cell<usize>>,
    /// The peer is one of `instance.trusted_proxies`: its X-Forwarded-For is believed.
    pub trusted: bool,
    /// The scheme the client speaks on this connection ("http" or "https").
    pub scheme: &'static str,
    /// Set while the connection waits for its next request with nothing buffered: a worker at
    /// its connection cap may close it.
    pub idle: std::rc::Rc<std::cell::Cell<bool>>,
    /// TLS with SNI: the names the negotiated certificate covers; a request for another host
    /// gets 421 Misdirected Request.
    pub sni_names: Option<Vec<String>>,
    /// The connection speaks HTTP/2 (each request is one of its streams).
    pub h2: bool,
}

/// Phase 10 bookkeeping: per-core counters, latency histograms and the access-log line.
pub(super) fn finish(shard: &Shard, gen: &Generation, session: &Session, peer: &Peer, id: &[u8]) {
    let total_us = micros_since(session.started);
    let mut m = shard.metrics.borrow_mut();
    // a request that started before a reload is counted under the new config's names
    let current;
    let ids = if m.generation == gen.id() {
        Some((session.listener, session.service, session.api, session.upstream))
    } else {
        current = shard.generation();
        remap(&gen.snapshot, &current.snapshot, session)
    };
    let Some((listener, service, api, upstream)) = ids else { return };
    if listener >= m.latency.listeners.len() {
        return; // the listener was removed by a reload
    }
    m.count(api, session.status, session.bytes_in, session.bytes_out);
    // API and upstream curves show served requests only: a refusal (429, 403, 503 at a cap) or a
    // gateway error answers in microseconds and would drag an API's p50 down to that; the
    // listener's curve keeps every request (what clients experienced)
    let served = session.error.is_none() || session.first_byte_us.is_some();
    let (s_service, s_api, s_upstream) = match served {
        true => (service, api, upstream),
        false => (None, None, None),
    };
    m.latency.record_total(listener, s_service, s_api, s_upstream, total_us);
    if let (Some(api), Some(up)) = (api, upstream) {
        if let Some(c) = session.connect_us {
            m.latency.record_phase(Phase::Connect, api, up, c);
        }
        if let Some(f) = session.first_byte_us {
            m.latency.record_phase(Phase::FirstByte, api, up, f);
        }
    }
    if let (Some(c), true) = (session.consumer, m.generation == gen.id()) {
        m.consumers[c] += 1;
    }
    // the WAF phase: under the API and the WAF's own upstream (indices of the request's config)
    if let (Some(w), Some(api), true) = (session.waf, api, m.generation == gen.id()) {
        m.waf[w.waf][w.outcome.index()] += 1;
        m.latency.record_phase(Phase::Waf, api, gen.snapshot.wafs[w.waf].upstream, w.us);
    }
    drop(m);
    if let Some(log) = &shard.access_log {
        let snapshot = &gen.snapshot;
        let fields = session.log.as_ref();
        log.log(&Entry {
            request_id: id,
            client: &peer.ip,
            method: fields.map_or(&[][..], |f| &f.method),
            path: fields.map_or(&[][..], |f| &f.path),
            query: fields.map_or(&[][..], |f| &f.query),
            host: fields.map_or(&[][..], |f| &f.host),
            service: session.service.map_or("", |s| &snapshot.services[s].name),
            api: session.api.map_or("", |a| &snapshot.apis[a].name),
            endpoint: session.endpoint,
            // nginx's convention: 499 when the client went away before any response
            status: if session.status == 0 && session.error == Some("client_closed") { 499 } else { session.status },
            bytes_in: session.bytes_in,
            bytes_out: session.bytes_out,
            duration_us: total_us,
            connect_us: session.connect_us,
            first_byte_us: session.first_byte_us,
            error: session.error,
            waf: session.waf.map(|w| (w.outcome.as_str(), w.us)),
            consumer: session.consumer.map_or("", |c| &snapshot.consumers[c].name),
            proto: match (peer.h2, session.http10) {
                (true, _) => "h2",
                (false, true) => "http/1.0",
                (false, false) => "http/1.1",
            },
        });
    }
}

/// The indices in `new` of what `session` recorded under `old` (listener, service, API, upstream),
/// by name; `None` when its listener is gone.
#[allow(clippy::type_complexity)]
fn remap(
    old: &crate::config::Snapshot,
    new: &crate::config::Snapshot,
    session: &Session,
) -> Option<(usize, Option<ServiceId>, Option<ApiId>, Option<UpstreamId>)> {
    let name = &old.listeners.get(session.listener)?.name;
    let listener = new.listeners.iter().position(|l| l.name == *name)?;
    let service = session.service.and_then(|s| new.services.iter().position(|n| n.name == old.services[s].name));
    let api = session.api.and_then(|a| {
        let (name, svc) = (&old.apis[a].name, &old.services[old.apis[a].service].name);
        new.apis.iter().position(|n| n.name == *name && new.services[n.service].name == *svc)
    });
    let upstream = session.upstream.and_then(|u| new.upstreams.iter().position(|n| n.name == old.upstreams[u].name));
    Some((listener, service, api, upstream))
}

/// Counts a request against its API's concurrency cap for as long as it lives.
pub(super) struct ApiFlight<'a>(&'a Generation, ApiId);

impl<'a> ApiFlight<'a> {
    /// Takes a place under the cap `max`, or `None` when all are taken (check and enter are one
    /// step).
    pub(super) fn try_enter(gen: &'a Generation, api: ApiId, max: u32) -> Option<Self> {
        let mut counts = gen.api_in_flight.borrow_mut();
        if counts[api] >= max {
            return None;
        }
        counts[api] += 1;
        Some(Self(gen, api))
    }
}

impl Drop for ApiFlight<'_> {
    fn drop(&mut self) {
        self.0.api_in_flight.borrow_mut()[self.1] -= 1;
    }
}

/// Counts a request as in flight (the drain waits for these) for as long as it lives.
pub struct InFlight<'a>(&'a Shard);

impl<'a> InFlight<'a> {
    pub fn enter(shard: &'a Shard) -> Self {
        shard.in_flight.set(shard.in_flight.get() + 1);
        Self(shard)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}
