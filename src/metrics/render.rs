//! Rendering merged metrics: latency as JSON or an aligned text table, everything as Prometheus
//! text format 0.0.4. Runs on the admin thread only.

use std::fmt::Write;

use super::{LatencySet, LogHist, MetricsSnapshot, ShardMetrics, STATUS_CLASSES};
use crate::config::Snapshot;

/// Prometheus latency buckets, in seconds: from 25 µs (a gateway's p50 is tens of µs) to 10 s.
const BUCKETS_S: [f64; 18] = [
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];
const PHASES: [&str; super::histogram::PHASES] = ["total", "connect", "first_byte", "waf"];

/// One row of latency output.
struct Row<'a> {
    scope: &'static str,
    name: String,
    phase: &'static str,
    h: &'a LogHist,
}

fn rows<'a>(s: &Snapshot, latency: &'a LatencySet) -> Vec<Row<'a>> {
    let mut out = Vec::new();
    for (l, h) in s.listeners.iter().zip(&latency.listeners) {
        out.push(Row { scope: "listener", name: l.name.clone(), phase: "total", h });
    }
    for (sv, h) in s.services.iter().zip(&latency.services) {
        out.push(Row { scope: "service", name: sv.name.clone(), phase: "total", h });
    }
    for (i, hs) in latency.apis.iter().enumerate() {
        for (p, h) in PHASES.iter().zip(hs) {
            out.push(Row { scope: "api", name: s.api_label(i), phase: p, h });
        }
    }
    for (u, hs) in s.upstreams.iter().zip(&latency.upstreams) {
        for (p, h) in PHASES.iter().zip(hs) {
            out.push(Row { scope: "upstream", name: u.name.clone(), phase: p, h });
        }
    }
    out
}

fn stats(h: &LogHist) -> [u64; 7] {
    if h.count() == 0 {
        return [0; 7];
    }
    [
        h.min(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.mean().round() as u64,
    ]
}

/// `GET /stats/latency` as JSON: `{scope: {name: {phase: {count, min, p50, .., mean}}}}`, µs.
pub fn latency_json(s: &Snapshot, latency: &LatencySet, window_s: f64, missing: &[usize]) -> String {
    let mut out = format!("{{\"unit\":\"us\",\"window_s\":{window_s:.3},\"workers_missing\":{missing:?}");
    let mut current_scope = "";
    let mut current_name = String::new();
    for r in rows(s, latency) {
        if r.scope != current_scope {
            if !current_scope.is_empty() {
                out.push_str("}}");
            }
            let _ = write!(out, ",\"{}s\":{{", r.scope);
            current_scope = r.scope;
            current_name.clear();
        }
        if r.name != current_name {
            if !current_name.is_empty() {
                out.push_str("},");
            }
            super::access_log::json_str(&mut out, r.name.as_bytes());
            out.push_str(":{");
            current_name = r.name.clone();
        } else {
            out.push(',');
        }
        let [min, p50, p90, p99, p999, max, mean] = stats(r.h);
        let _ = write!(
            out,
            "\"{}\":{{\"count\":{},\"min\":{min},\"p50\":{p50},\"p90\":{p90},\"p99\":{p99},\"p999\":{p999},\"max\":{max},\"mean\":{mean}}}",
            r.phase,
            r.h.count()
        );
    }
    if !current_scope.is_empty() {
        out.push_str("}}");
    }
    out.push('}');
    out
}

/// `GET /stats/latency?format=text`: an aligned table for a terminal.
pub fn latency_text(s: &Snapshot, latency: &LatencySet, window_s: f64, missing: &[usize]) -> String {
    let mut out = format!("latency in microseconds over the last {window_s:.1} s");
    if !missing.is_empty() {
        let _ = write!(out, " (workers {missing:?} did not answer in time)");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<9} {:<28} {:<10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "scope", "name", "phase", "count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    for r in rows(s, latency) {
        let [min, p50, p90, p99, p999, max, mean] = stats(r.h);
        let _ = writeln!(
            out,
            "{:<9} {:<28} {:<10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
            r.scope,
            r.name,
            r.phase,
            r.h.count(),
            min,
            p50,
            p90,
            p99,
            p999,
            max,
            mean
        );
    }
    out
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub fn prometheus(s: &Snapshot, m: &ShardMetrics, workers: &[MetricsSnapshot]) -> String {
    let mut o = String::with_capacity(16 * 1024);
    header(&mut o, "ringway_requests_total", "counter", "Finished requests by service, API and status class.");
    for (i, c) in m.apis.iter().enumerate() {
        let (svc, api) = (&s.services[s.apis[i].service].name, &s.apis[i].name);
        for (class, n) in STATUS_CLASSES.iter().zip(c.by_class) {
            let _ = writeln!(
                o,
                "ringway_requests_total{{service=\"{}\",api=\"{}\",class=\"{class}\"}} {n}",
                esc(svc),
                esc(api)
            );
        }
    }
    for (class, n) in STATUS_CLASSES.iter().zip(m.unrouted.by_class) {
        let _ = writeln!(o, "ringway_requests_total{{service=\"\",api=\"\",class=\"{class}\"}} {n}");
    }
    for (name, help, pick) in [
        ("ringway_request_bytes_total", "Request body bytes received, by service and API.", 0),
        ("ringway_response_bytes_total", "Response bytes sent (head and body), by service and API.", 1),
    ] {
        header(&mut o, name, "counter", help);
        for (i, c) in m.apis.iter().enumerate() {
            let v = if pick == 0 { c.bytes_in } else { c.bytes_out };
            let (svc, api) = (&s.services[s.apis[i].service].name, &s.apis[i].name);
            let _ = writeln!(o, "{name}{{service=\"{}\",api=\"{}\"}} {v}", esc(svc), esc(api));
        }
    }
    admission_counters(&mut o, s, m, workers);
    upstream_counters(&mut o, s, m);
    worker_gauges(&mut o, s, workers);
    header(
        &mut o,
        "ringway_request_duration_seconds",
        "histogram",
        "Request time from complete head to last response byte.",
    );
    for (i, hs) in m.latency.apis.iter().enumerate() {
        let labels =
            format!("service=\"{}\",api=\"{}\"", esc(&s.services[s.apis[i].service].name), esc(&s.apis[i].name));
        histogram(&mut o, "ringway_request_duration_seconds", &labels, &hs[0]);
    }
    tls_series(&mut o, s, m);
    header(
        &mut o,
        "ringway_upstream_phase_seconds",
        "histogram",
        "Upstream connect time and time to first response byte (and WAF calls, for a WAF's upstream).",
    );
    for (ui, (u, hs)) in s.upstreams.iter().zip(&m.latency.upstreams).enumerate() {
        let is_waf = s.wafs.iter().any(|w| w.upstream == ui);
        for (phase, h) in PHASES.iter().zip(hs).skip(1).filter(|(p, _)| **p != "waf" || is_waf) {
            let labels = format!("upstream=\"{}\",phase=\"{phase}\"", esc(&u.name));
            histogram(&mut o, "ringway_upstream_phase_seconds", &labels, h);
        }
    }
    waf_series(&mut o, s, m);
    if !s.consumers.is_empty() {
        let name = "ringway_consumer_requests_total";
        header(&mut o, name, "counter", "Requests by authenticated consumer (configured names only).");
        for (c, n) in s.consumers.iter().zip(&m.consumers) {
            let _ = writeln!(o, "{name}{{consumer=\"{}\"}} {n}", esc(&c.name));
        }
    }
    o
}

/// WAF verdicts by outcome and the time calls took, per `[waf.NAME]`.
fn waf_series(o: &mut String, s: &Snapshot, m: &ShardMetrics) {
    if s.wafs.is_empty() {
        return;
    }
    let name = "ringway_waf_requests_total";
    header(o, name, "counter", "WAF calls by outcome (allow, block, error, monitor_block).");
    for (w, counts) in s.wafs.iter().zip(&m.waf) {
        for (outcome, n) in crate::waf::WAF_OUTCOMES.iter().zip(counts) {
            let _ = writeln!(o, "{name}{{waf=\"{}\",outcome=\"{outcome}\"}} {n}", esc(&w.name));
        }
    }
    let name = "ringway_waf_duration_seconds";
    header(o, name, "histogram", "Time waiting on the WAF's verdict, connecting included (per WAF upstream).");
    for w in &s.wafs {
        let labels = format!("waf=\"{}\"", esc(&w.name));
        histogram(o, name, &labels, &m.latency.upstreams[w.upstream][crate::metrics::Phase::Waf as usize]);
    }
}

fn admission_counters(o: &mut String, s: &Snapshot, m: &ShardMetrics, workers: &[MetricsSnapshot]) {
    header(
        o,
        "ringway_rate_limited_total",
        "counter",
        "Requests refused with 429, by service, API and the rule that refused.",
    );
    for (i, levels) in m.limited.iter().enumerate() {
        let (svc, api) = (&s.services[s.apis[i].service].name, &s.apis[i].name);
        for (level, n) in crate::limit::Level::ALL.iter().zip(levels) {
            let _ = writeln!(
                o,
                "ringway_rate_limited_total{{service=\"{}\",api=\"{}\",rule=\"{}\"}} {n}",
                esc(svc),
                esc(api),
                level.name()
            );
        }
    }
    header(o, "ringway_overloaded_total", "counter", "Requests refused with 503 by an API's max_in_flight.");
    for (i, n) in m.overloaded.iter().enumerate() {
        let (svc, api) = (&s.services[s.apis[i].service].name, &s.apis[i].name);
        let _ = writeln!(o, "ringway_overloaded_total{{service=\"{}\",api=\"{}\"}} {n}", esc(svc), esc(api));
    }
    header(
        o,
        "ringway_ip_denied_total",
        "counter",
        "Requests refused with 403 by IP allow/deny lists (service=\"\" for the instance lists).",
    );
    let _ = writeln!(o, "ringway_ip_denied_total{{service=\"\"}} {}", m.denied_instance);
    for (sv, n) in s.services.iter().zip(&m.denied) {
        let _ = writeln!(o, "ringway_ip_denied_total{{service=\"{}\"}} {n}", esc(&sv.name));
    }
    type Counter = (&'static str, &'static str, fn(&MetricsSnapshot) -> u64);
    let instance_counters: [Counter; 2] = [
        (
            "ringway_rate_limit_keys_evicted_total",
            "Per-key rate-limit entries evicted from the bounded key tables.",
            |w| w.evicted_keys,
        ),
        (
            "ringway_access_log_dropped_blocks_total",
            "Access-log blocks (up to 32 KiB of lines each) dropped because the writer fell behind.",
            |w| w.log_dropped_blocks,
        ),
    ];
    for (name, help, get) in instance_counters {
        header(o, name, "counter", help);
        let _ = writeln!(o, "{name} {}", workers.iter().map(get).sum::<u64>());
    }
}

fn upstream_counters(o: &mut String, s: &Snapshot, m: &ShardMetrics) {
    type Field = (&'static str, &'static str, fn(&super::UpstreamCounters) -> u64);
    let fields: [Field; 7] = [
        ("ringway_upstream_requests_total", "Requests sent upstream.", |u| u.requests),
        ("ringway_upstream_connects_total", "New upstream connections dialed.", |u| u.connects),
        ("ringway_upstream_connect_failures_total", "Upstream connect attempts that failed.", |u| u.connect_failures),
        ("ringway_upstream_pool_hits_total", "Requests sent on a pooled connection.", |u| u.pool_hits),
        (
            "ringway_upstream_pool_dirty_total",
            "Idle pooled connections closed because the origin sent bytes or closed them while idle.",
            |u| u.pool_dirty,
        ),
        ("ringway_upstream_failures_total", "Upstream errors after connecting (reset, timeout, bad response).", |u| {
            u.failures
        }),
        ("ringway_upstream_retries_total", "Requests retried on another endpoint.", |u| u.retries),
    ];
    for (name, help, get) in fields {
        header(o, name, "counter", help);
        for (u, c) in s.upstreams.iter().zip(&m.upstreams) {
            let _ = writeln!(o, "{name}{{upstream=\"{}\"}} {}", esc(&u.name), get(c));
        }
    }
}

fn worker_gauges(o: &mut String, s: &Snapshot, workers: &[MetricsSnapshot]) {
    type Series = (&'static str, &'static str, &'static str, fn(&MetricsSnapshot) -> u64);
    let series: [Series; 8] = [
        ("ringway_connections_active", "gauge", "Open client connections per worker.", |w| w.connections_active as u64),
        (
            "ringway_connections_parked",
            "gauge",
            "Idle keep-alive client connections parked without a task (included in connections_active), per worker.",
            |w| w.connections_parked as u64,
        ),
        (
            "ringway_h2_connections_idle",
            "gauge",
            "HTTP/2 client connections that have received nothing for idle_park_ms and hold no read buffer (included in connections_active), per worker.",
            |w| w.h2_connections_idle as u64,
        ),
        ("ringway_connections_total", "counter", "Client connections accepted per worker.", |w| {
            w.metrics.connections_total
        }),
        (
            "ringway_connections_evicted_total",
            "counter",
            "Idle keep-alive connections closed to make room at the connection cap, per worker.",
            |w| w.metrics.connections_evicted,
        ),
        (
            "ringway_connections_refused_total",
            "counter",
            "Connections answered 503 at the connection cap because none was idle, per worker.",
            |w| w.metrics.connections_refused,
        ),
        ("ringway_requests_in_flight", "gauge", "Requests being served per worker.", |w| w.in_flight as u64),
        ("ringway_upstream_pool_idle", "gauge", "Idle pooled upstream connections per worker.", |w| w.pool_idle as u64),
    ];
    for (name, kind, help, get) in series {
        header(o, name, kind, help);
        for w in workers {
            let _ = writeln!(o, "{name}{{worker=\"{}\"}} {}", w.worker, get(w));
        }
    }
    if let Some(cap) = s.instance.egress_bandwidth {
        let name = "ringway_egress_bandwidth_limit_bytes_per_second";
        header(o, name, "gauge", "The egress bandwidth cap (bytes written to upstreams, whole instance).");
        let _ = writeln!(o, "{name} {cap}");
        for (name, help, get) in [
            (
                "ringway_egress_bytes_total",
                "Bytes written to upstreams under the egress cap, per worker.",
                (|w| w.egress_bytes) as fn(&MetricsSnapshot) -> u64,
            ),
            (
                "ringway_egress_shaped_seconds_total",
                "Time upstream writes waited for the egress cap, per worker.",
                |w| w.egress_waited_ns,
            ),
        ] {
            header(o, name, "counter", help);
            for w in workers {
                let v = get(w);
                match name.ends_with("seconds_total") {
                    true => {
                        let _ = writeln!(o, "{name}{{worker=\"{}\"}} {:.6}", w.worker, v as f64 / 1e9);
                    }
                    false => {
                        let _ = writeln!(o, "{name}{{worker=\"{}\"}} {v}", w.worker);
                    }
                }
            }
        }
    }
    for (i, (name, help)) in crate::metrics::H2_COUNTERS.iter().enumerate() {
        header(o, name, "counter", help);
        for w in workers {
            let _ = writeln!(o, "{name}{{worker=\"{}\"}} {}", w.worker, w.metrics.h2[i]);
        }
    }
    header(o, "ringway_worker_info", "gauge", "One per worker, labelled with its I/O driver and config generation.");
    for w in workers {
        let _ = writeln!(
            o,
            "ringway_worker_info{{worker=\"{}\",driver=\"{}\",generation=\"{}\"}} 1",
            w.worker, w.driver, w.generation
        );
    }
    header(o, "ringway_config_generation", "gauge", "Generation of the running config.");
    let _ = writeln!(o, "ringway_config_generation {}", s.generation);
}

/// `# HELP` and `# TYPE` lines for one metric family.
pub fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Cumulative `le` buckets; a histogram bucket counts under `le` when all of it is at most `le`
/// (so a count may lag by the values within 3% below a bound).
/// Handshake counts and times, when a listener speaks TLS.
fn tls_series(o: &mut String, s: &Snapshot, m: &ShardMetrics) {
    if !s.listeners.iter().any(|l| l.tls.is_some()) {
        return;
    }
    let name = "ringway_tls_handshakes_total";
    header(o, name, "counter", "Client TLS handshakes by result and negotiated version.");
    for (result, row) in super::TLS_RESULTS.iter().zip(&m.tls_handshakes) {
        for (version, n) in super::TLS_VERSIONS.iter().zip(row) {
            let _ = writeln!(o, "{name}{{result=\"{result}\",version=\"{version}\"}} {n}");
        }
    }
    let name = "ringway_tls_handshakes_resumed_total";
    header(o, name, "counter", "Successful client TLS handshakes that resumed a session.");
    let _ = writeln!(o, "{name} {}", m.tls_resumed);
    let name = "ringway_tls_handshake_duration_seconds";
    header(o, name, "histogram", "Time of successful client TLS handshakes.");
    histogram(o, name, "listener=\"all\"", &m.tls_handshake_us);
}

fn histogram(o: &mut String, name: &str, labels: &str, h: &LogHist) {
    for le in BUCKETS_S {
        let n = if h.count() == 0 { 0 } else { h.count_at_most((le * 1e6).round() as u64) };
        let _ = writeln!(o, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(o, "{name}_sum{{{labels}}} {}", h.sum() as f64 / 1e6);
    let _ = writeln!(o, "{name}_count{{{labels}}} {}", h.count());
}

/// Prometheus label-value escaping.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
