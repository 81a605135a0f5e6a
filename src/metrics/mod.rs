//! Per-core metrics: counters and HDR latency histograms recorded by one worker with no atomics
//! or locks, copied out on request and merged by the admin thread at scrape time.
//!
//! Per-core: [`ShardMetrics`] lives in the `Shard` (`RefCell`, touched only by its worker).
//! Crosses cores: a [`MetricsSnapshot`] (plain data, `Send`) per worker per scrape.
//!
//! Invariants: labels come only from configured names (indices into the snapshot), never from
//! raw paths or client addresses; recording never allocates.

mod access_log;
mod histogram;
mod loghist;
mod render;

pub use access_log::{json_str, redact_query, spawn_writer, AccessLog, Entry, LogFormat, LogTarget, LogWriter};
pub use histogram::{LatencySet, Phase};
pub use loghist::LogHist;
pub use render::{header as prometheus_header, latency_json, latency_text, prometheus};

use crate::config::Snapshot;

/// Status classes counted per API: 1xx..5xx, plus requests that got no response.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// Counters of one API (or of unrouted requests).
#[derive(Debug, Clone, Default)]
pub struct ApiCounters {
    pub by_class: [u64; 6],
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Counters of one upstream on one core.
#[derive(Debug, Clone, Default)]
pub struct UpstreamCounters {
    pub requests: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub pool_hits: u64,
    /// Idle pooled connections closed because the origin sent bytes or closed them while idle.
    pub pool_dirty: u64,
    pub failures: u64,
    pub retries: u64,
}

/// Everything one worker records; cloned into a [`MetricsSnapshot`] on scrape. Indexed like
/// config generation `generation`'s snapshot; a reload re-keys it by name ([`ShardMetrics::carry`]).
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    /// The config generation whose indices these vectors follow.
    pub generation: u64,
    pub apis: Vec<ApiCounters>,
    /// Requests that matched no API (404, 405, bad requests).
    pub unrouted: ApiCounters,
    pub upstreams: Vec<UpstreamCounters>,
    pub connections_total: u64,
    /// Connections answered 503 at the connection cap (no idle keep-alive one to close).
    pub connections_refused: u64,
    /// Idle keep-alive connections closed to make room at the connection cap.
    pub connections_evicted: u64,
    /// Rate-limit refusals per API, by level (instance, service, API, service key, API key, consumer).
    pub limited: Vec<[u64; 6]>,
    /// Requests refused by an API's `max_in_flight`.
    pub overloaded: Vec<u64>,
    /// Requests refused by a service's IP lists.
    pub denied: Vec<u64>,
    /// Requests refused by the instance's IP lists.
    pub denied_instance: u64,
    pub latency: LatencySet,
    /// TLS handshakes on HTTPS listeners: `[result][version]` ([`TLS_RESULTS`] × [`TLS_VERSIONS`]).
    pub tls_handshakes: [[u64; 3]; 7],
    /// Handshake time of successful client handshakes, microseconds.
    pub tls_handshake_us: LogHist,
    /// Successful client handshakes that resumed a session (ticket or session id).
    pub tls_resumed: u64,
    /// WAF calls per `[waf.NAME]`, by outcome ([`crate::waf::WAF_OUTCOMES`]).
    pub waf: Vec<[u64; 4]>,
    /// Requests per authenticated consumer (refused ones included).
    pub consumers: Vec<u64>,
    /// HTTP/2: connections after their handshake, streams accepted, connections closed for a
    /// frame flood (GOAWAY ENHANCE_YOUR_CALM) and for a protocol error.
    pub h2: [u64; 4],
}

/// Indices into `ShardMetrics::h2`.
pub const H2_CONNECTIONS: usize = 0;
pub const H2_STREAMS: usize = 1;
pub const H2_FLOODS: usize = 2;
pub const H2_PROTOCOL_ERRORS: usize = 3;

/// The HTTP/2 counters, in `ShardMetrics::h2` order.
pub const H2_COUNTERS: [(&str, &str); 4] = [
    ("ringway_http2_connections_total", "HTTP/2 client connections (after the connection preface), per worker."),
    ("ringway_http2_streams_total", "HTTP/2 streams accepted (each one request), per worker."),
    (
        "ringway_http2_floods_total",
        "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM for a frame flood, per worker.",
    ),
    ("ringway_http2_protocol_errors_total", "HTTP/2 connections ended by a protocol error, per worker."),
];

/// Outcomes of a client's TLS handshake, as counted.
pub const TLS_RESULTS: [&str; 7] =
    ["ok", "timeout", "plain_http", "closed", "protocol_version", "bad_certificate", "error"];
/// Negotiated versions, as counted ("none" when the handshake did not get that far).
pub const TLS_VERSIONS: [&str; 3] = ["TLSv1.2", "TLSv1.3", "none"];

impl ShardMetrics {
    pub fn new(snapshot: &Snapshot) -> Self {
        Self {
            generation: snapshot.generation,
            apis: vec![ApiCounters::default(); snapshot.apis.len()],
            unrouted: ApiCounters::default(),
            upstreams: vec![UpstreamCounters::default(); snapshot.upstreams.len()],
            connections_total: 0,
            connections_refused: 0,
            connections_evicted: 0,
            limited: vec![[0; 6]; snapshot.apis.len()],
            overloaded: vec![0; snapshot.apis.len()],
            denied: vec![0; snapshot.services.len()],
            denied_instance: 0,
            latency: LatencySet::new(snapshot),
            tls_handshakes: [[0; 3]; 7],
            tls_handshake_us: LogHist::default(),
            tls_resumed: 0,
            waf: vec![[0; 4]; snapshot.wafs.len()],
            consumers: vec![0; snapshot.consumers.len()],
            h2: [0; 4],
        }
    }

    /// The metrics for config `new`, taking over every series whose name is in both configs
    /// (`map`: new index → old index, by name): APIs by service and API name, services, upstreams
    /// and listeners by name. Series of removed names are gone; new names start at zero.
    pub fn carry(mut self, new: &Snapshot, map: &crate::config::Remap) -> Self {
        use std::mem::take;
        let mut m = ShardMetrics::new(new);
        for (j, i) in map.apis.iter().enumerate() {
            if let Some(i) = *i {
                m.apis[j] = take(&mut self.apis[i]);
                m.limited[j] = self.limited[i];
                m.overloaded[j] = self.overloaded[i];
                m.latency.apis[j] = take(&mut self.latency.apis[i]);
            }
        }
        for (j, i) in map.services.iter().enumerate() {
            if let Some(i) = *i {
                m.denied[j] = self.denied[i];
                m.latency.services[j] = take(&mut self.latency.services[i]);
            }
        }
        for (j, i) in map.upstreams.iter().enumerate() {
            if let Some(i) = *i {
                m.upstreams[j] = take(&mut self.upstreams[i]);
                m.latency.upstreams[j] = take(&mut self.latency.upstreams[i]);
            }
        }
        for (j, i) in map.listeners.iter().enumerate() {
            if let Some(i) = *i {
                m.latency.listeners[j] = take(&mut self.latency.listeners[i]);
            }
        }
        m.unrouted = self.unrouted;
        m.connections_total = self.connections_total;
        m.connections_refused = self.connections_refused;
        m.connections_evicted = self.connections_evicted;
        m.denied_instance = self.denied_instance;
        m.tls_handshakes = self.tls_handshakes;
        m.tls_handshake_us = self.tls_handshake_us;
        m.tls_resumed = self.tls_resumed;
        m.h2 = self.h2;
        for (j, i) in map.wafs.iter().enumerate() {
            if let Some(i) = *i {
                m.waf[j] = self.waf[i];
            }
        }
        for (j, i) in map.consumers.iter().enumerate() {
            if let Some(i) = *i {
                m.consumers[j] = self.consumers[i];
            }
        }
        m
    }

    /// Counts one finished request; `status` 0 means no response was sent.
    pub fn count(&mut self, api: Option<usize>, status: u16, bytes_in: u64, bytes_out: u64) {
        let c = match api {
            Some(a) => &mut self.apis[a],
            None => &mut self.unrouted,
        };
        let class = match status {
            100..=599 => usize::from(status / 100) - 1,
            _ => 5,
        };
        c.by_class[class] += 1;
        c.bytes_in += bytes_in;
        c.bytes_out += bytes_out;
    }
}

/// One worker's metrics at scrape time, plus its gauges.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub worker: usize,
    pub driver: &'static str,
    pub generation: u64,
    pub connections_active: usize,
    /// Idle keep-alive connections held without a task (the parking lot).
    pub connections_parked: usize,
    /// HTTP/2 connections idle without a read buffer.
    pub h2_connections_idle: usize,
    pub in_flight: usize,
    pub pool_idle: usize,
    /// Keys evicted from this worker's per-key rate tables.
    pub evicted_keys: u64,
    /// Access-log blocks dropped because the writer fell behind (cumulative).
    pub log_dropped_blocks: u64,
    /// Bytes written to upstreams under the egress cap, and the time writes waited for it (ns).
    pub egress_bytes: u64,
    pub egress_waited_ns: u64,
    pub metrics: ShardMetrics,
}

/// Sums counters and merges histograms over workers.
pub fn merge(snaps: &[MetricsSnapshot]) -> Option<ShardMetrics> {
    let mut it = snaps.iter();
    let mut total = it.next()?.metrics.clone();
    // a worker still on another config generation (mid-reload) has other indices: left out
    for s in it.filter(|s| s.metrics.generation == total.generation) {
        let m = &s.metrics;
        for (t, a) in total.apis.iter_mut().zip(&m.apis) {
            add_api(t, a);
        }
        add_api(&mut total.unrouted, &m.unrouted);
        for (t, u) in total.upstreams.iter_mut().zip(&m.upstreams) {
            t.requests += u.requests;
            t.connects += u.connects;
            t.connect_failures += u.connect_failures;
            t.pool_hits += u.pool_hits;
            t.pool_dirty += u.pool_dirty;
            t.failures += u.failures;
            t.retries += u.retries;
        }
        total.connections_total += m.connections_total;
        total.connections_refused += m.connections_refused;
        total.connections_evicted += m.connections_evicted;
        for (t, l) in total.limited.iter_mut().zip(&m.limited) {
            t.iter_mut().zip(l).for_each(|(a, b)| *a += b);
        }
        total.overloaded.iter_mut().zip(&m.overloaded).for_each(|(a, b)| *a += b);
        total.denied.iter_mut().zip(&m.denied).for_each(|(a, b)| *a += b);
        total.denied_instance += m.denied_instance;
        total.latency.add(&m.latency);
        for (t, r) in total.tls_handshakes.iter_mut().zip(&m.tls_handshakes) {
            t.iter_mut().zip(r).for_each(|(a, b)| *a += b);
        }
        total.tls_handshake_us.add(&m.tls_handshake_us);
        total.tls_resumed += m.tls_resumed;
        total.h2.iter_mut().zip(&m.h2).for_each(|(a, b)| *a += b);
        for (a, b) in total.waf.iter_mut().zip(&m.waf) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        total.consumers.iter_mut().zip(&m.consumers).for_each(|(a, b)| *a += b);
    }
    Some(total)
}

fn add_api(t: &mut ApiCounters, a: &ApiCounters) {
    for (x, y) in t.by_class.iter_mut().zip(a.by_class) {
        *x += y;
    }
    t.bytes_in += a.bytes_in;
    t.bytes_out += a.bytes_out;
}
