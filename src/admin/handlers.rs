//! Admin request handlers: one function per endpoint, each returning a complete [`Reply`].

use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Snapshot;
use crate::metrics::{self, MetricsSnapshot};
use crate::runtime::Outbox;

/// What the admin thread knows about the running gateway.
pub struct AdminState {
    pub snapshot: Arc<Snapshot>,
    pub outboxes: Vec<Outbox>,
    /// (cpu, driver) per worker.
    pub workers: Vec<(Option<usize>, &'static str)>,
    /// Bound address of each listener.
    pub listener_addrs: Vec<std::net::SocketAddr>,
    /// Health and ejection state per endpoint, kept by the endpoint supervisor.
    pub endpoint_status: crate::runtime::endpoints::StatusTable,
    /// Start of the current latency window (process start or last `?reset=1`).
    pub window_start: Instant,
    /// The merged histograms at the last `?reset=1`: `/stats/latency` shows what came since.
    pub window_base: Option<crate::metrics::LatencySet>,
    /// The running config and live reload (`None` in unit tests).
    pub reloader: Option<Arc<crate::runtime::Reloader>>,
    /// What the DNS thread last learned of each name.
    pub dns: crate::runtime::dns::DnsTable,
    /// The cluster thread's view (with `[cluster]`).
    pub cluster: Option<crate::cluster::StatusHandle>,
}

impl AdminState {
    /// Picks up a config switched since the last request (the latency window restarts then:
    /// its base is keyed by the old config).
    fn refresh(&mut self) -> Option<crate::runtime::Current> {
        let current = self.reloader.as_ref()?.current();
        if current.snapshot.generation != self.snapshot.generation {
            self.snapshot = current.snapshot.clone();
            self.listener_addrs = current.listener_addrs.clone();
            self.endpoint_status = current.status.clone();
            self.window_base = None;
            self.window_start = Instant::now();
        }
        Some(current)
    }
}

/// A complete admin response.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: body.as_bytes().to_vec() }
    }

    fn json(body: String) -> Self {
        Self { status: 200, content_type: "application/json", body: body.into_bytes() }
    }
}

/// Routes one admin request.
/// One admin request.
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

pub fn handle(state: &mut AdminState, req: &Request<'_>) -> Reply {
    let current = state.refresh();
    let (method, target) = (req.method, req.target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let flag = |name: &str| query.split('&').any(|kv| kv == format!("{name}=1") || kv == name);
    let format_text = query.split('&').any(|kv| kv == "format=text");
    // requests that change state need the token when one is configured
    let changes = matches!((method, path), ("POST", "/reload") | ("PUT", "/config")) || flag("reset");
    if changes {
        if let Some(refused) = authorize(state, req.authorization) {
            return refused;
        }
    }
    match (method, path) {
        ("GET", "/healthz") => Reply::text(200, "ok\n"),
        ("GET", "/stats/latency") => latency(state, format_text, flag("reset")),
        ("GET", "/metrics") => {
            let (mut snaps, _) = scrape(state);
            // mid-reload, a worker may still count by the other config's indices
            snaps.retain(|s| s.metrics.generation == state.snapshot.generation);
            match metrics::merge(&snaps) {
                Some(m) => {
                    let mut text = metrics::prometheus(&state.snapshot, &m, &snaps);
                    super::process::append(&mut text, &state.snapshot, &state.endpoint_status);
                    if let Some(c) = &state.cluster {
                        cluster_metrics(&mut text, &c.lock().unwrap_or_else(|e| e.into_inner()));
                    }
                    Reply {
                        status: 200,
                        content_type: "text/plain; version=0.0.4; charset=utf-8",
                        body: text.into_bytes(),
                    }
                }
                None => Reply::text(503, "no worker answered\n"),
            }
        }
        ("GET", "/upstreams") => upstreams(state),
        ("GET", "/cluster") => match &state.cluster {
            Some(c) => Reply::json(cluster_json(&c.lock().unwrap_or_else(|e| e.into_inner()))),
            None => Reply::text(404, "no [cluster] section: caps hold per instance\n"),
        },
        ("GET", "/config") => Reply::json(config(state, current.as_ref())),
        ("GET", "/" | "/dashboard") => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: super::dashboard::PAGE.as_bytes().to_vec(),
        },
        ("PUT", "/config") => put_config(state, req.body),
        ("POST", "/reload") => match &state.reloader {
            None => Reply::text(501, "reload is not available here\n"),
            Some(r) => reload(r, req.authorization),
        },
        (
            _,
            "/healthz" | "/stats/latency" | "/metrics" | "/upstreams" | "/cluster" | "/config" | "/reload" | "/"
            | "/dashboard",
        ) => Reply::text(405, "method not allowed\n"),
        _ => Reply::text(
            404,
            "not found; see GET /healthz /stats/latency /metrics /upstreams /cluster /config /dashboard\n",
        ),
    }
}

/// `POST /reload`: re-reads the config file (requests made while one runs share the next one).
pub fn reload(r: &crate::runtime::Reloader, authorization: Option<&str>) -> Reply {
    if let Some(refused) = check_token(r.snapshot().admin_token.as_ref(), authorization) {
        return refused;
    }
    match r.reload() {
        Ok(generation) => Reply::json(format!("{{\"ok\":true,\"generation\":{generation}}}")),
        Err(e @ crate::runtime::ReloadError::Slow(_)) => Reply::text(503, &format!("{e}\n")),
        Err(e) => Reply::text(400, &format!("{e}\n")),
    }
}

/// `None` when the request may change state: no token configured, or the right bearer token.
fn authorize(state: &AdminState, authorization: Option<&str>) -> Option<Reply> {
    check_token(state.snapshot.admin_token.as_ref(), authorization)
}

fn check_token(token: Option<&crate::config::Secret>, authorization: Option<&str>) -> Option<Reply> {
    let token = token?;
    let given = authorization.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default().trim();
    // compare without an early exit, so the time taken does not tell how much matched
    let same =
        given.len() == token.0.len() && given.bytes().zip(token.0.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
    if same {
        return None;
    }
    Some(Reply::text(401, "this request needs Authorization: Bearer <the [admin] token_file token>\n"))
}

/// `PUT /config`: validates the TOML body as the next config; if it would reload, writes it over
/// the config file (atomically, the previous one kept as `.bak`) and reloads.
fn put_config(state: &AdminState, body: &[u8]) -> Reply {
    if state.snapshot.admin_token.is_none() {
        return Reply::text(403, "PUT /config is disabled: set [admin] token_file to enable it\n");
    }
    let Some(r) = &state.reloader else { return Reply::text(501, "reload is not available here\n") };
    let Ok(text) = std::str::from_utf8(body) else { return Reply::text(400, "the body is not UTF-8 TOML\n") };
    match r.replace_file(text) {
        Ok(generation) => Reply::json(format!("{{\"ok\":true,\"generation\":{generation}}}")),
        Err(e @ crate::runtime::ReloadError::Slow(_)) => Reply::text(503, &format!("{e}\n")),
        Err(e) => Reply::text(400, &format!("{e}\n")),
    }
}

/// Asks every worker for its metrics; returns the answers and the workers that missed the deadline.
fn scrape(state: &AdminState) -> (Vec<MetricsSnapshot>, Vec<usize>) {
    crate::runtime::collect_stats(&state.outboxes, super::SCRAPE_DEADLINE)
}

fn latency(state: &mut AdminState, text: bool, reset: bool) -> Reply {
    let (snaps, missing) = scrape(state);
    let window = state.window_start.elapsed().as_secs_f64();
    let Some(m) = metrics::merge(&snaps) else {
        return Reply::text(503, "no worker answered\n");
    };
    // workers only add; the window is the difference from the copy taken at the last reset
    let shown = match &state.window_base {
        Some(base) => m.latency.since(base),
        None => m.latency.clone(),
    };
    if reset {
        state.window_start = Instant::now();
        state.window_base = Some(m.latency);
    }
    if text {
        Reply::text(200, &metrics::latency_text(&state.snapshot, &shown, window, &missing))
    } else {
        Reply::json(metrics::latency_json(&state.snapshot, &shown, window, &missing))
    }
}

fn upstreams(state: &AdminState) -> Reply {
    let (snaps, missing) = scrape(state);
    let s = &state.snapshot;
    let mut out = format!("{{\"workers_missing\":{missing:?},\"upstreams\":[");
    for (i, u) in s.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let egress = ip_list(&u.egress_ips);
        let _ = write!(
            out,
            "{{\"name\":\"{}\",\"balance\":\"{}\",\"egress_ip\":{egress},",
            u.name,
            balance_name(&u.balance)
        );
        dns_names(&mut out, u, &state.dns);
        out.push_str("\"endpoints\":[");
        let table = state.endpoint_status.lock().map(|t| t[i].clone()).unwrap_or_default();
        for (j, e) in u.endpoints.iter().enumerate() {
            let sep = if j > 0 { "," } else { "" };
            let st = table.get(j).cloned().unwrap_or_default();
            let state_name = match (st.healthy, st.ejected_for_ms) {
                (_, Some(_)) => "ejected",
                (false, None) => "unhealthy",
                (true, None) => "healthy",
            };
            let probe = match (&u.health, &st.last_probe) {
                (None, _) => "not_checked".to_string(),
                (Some(_), None) => "pending".to_string(),
                (Some(_), Some(p)) => p.replace(['"', '\\'], "'"),
            };
            let ejected = st.ejected_for_ms.map_or("null".into(), |v| v.to_string());
            let from = e.from.as_ref().map_or("null".into(), |n| format!("\"{n}\""));
            let _ = write!(
                out,
                "{sep}{{\"addr\":\"{}\",\"weight\":{},\"state\":\"{state_name}\",\"last_probe\":\"{probe}\",\"ejected_for_ms\":{ejected},\"times_ejected\":{},\"consecutive_failures\":{},\"from\":{from}}}",
                e.addr, e.weight, st.times_ejected, st.consecutive_failures
            );
        }
        out.push_str("],\"per_worker\":[");
        for (k, w) in snaps.iter().enumerate() {
            let c = &w.metrics.upstreams[i];
            let sep = if k > 0 { "," } else { "" };
            let _ = write!(
                out,
                "{sep}{{\"worker\":{},\"requests\":{},\"connects\":{},\"connect_failures\":{},\"pool_hits\":{},\"failures\":{}}}",
                w.worker, c.requests, c.connects, c.connect_failures, c.pool_hits, c.failures
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    Reply::json(out)
}

/// `"names":[..],` for an upstream with DNS-named endpoints: each name, its addresses in use, the
/// TTL of the last good answer and the last attempt's result.
fn dns_names(out: &mut String, u: &crate::config::Upstream, dns: &crate::runtime::dns::DnsTable) {
    if u.names.is_empty() {
        return;
    }
    let table = dns.lock().unwrap_or_else(|e| e.into_inner());
    out.push_str("\"names\":[");
    for (i, n) in u.names.iter().enumerate() {
        let st = table.get(&n.host);
        let addresses = ip_list(st.map_or(&[][..], |s| &s.addresses));
        let ttl = st.and_then(|s| s.ttl_s).map_or("null".into(), |t| t.to_string());
        let last = match st.map(|s| &s.last) {
            None => "\"pending\"".to_string(),
            Some(Ok(())) => "\"ok\"".to_string(),
            Some(Err(e)) => format!("\"{}\"", e.replace(['"', '\\'], "'")),
        };
        let at = st.and_then(|s| s.at).map_or("null".into(), |t| format!("\"{}\"", rfc3339(unix(t))));
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(
            out,
            "{sep}{{\"name\":\"{}:{}\",\"weight\":{},\"addresses\":{addresses},\"ttl_s\":{ttl},\"last_resolution\":{last},\"resolved_at\":{at}}}",
            n.host, n.port, n.weight
        );
    }
    out.push_str("],");
}

/// `GET /cluster`: this node, its Redis health, the live nodes and the cluster-scoped rules.
fn cluster_json(c: &crate::cluster::Status) -> String {
    let esc = |v: &str| v.replace(['"', '\\'], "'");
    let mut out = format!(
        "{{\"node\":\"{}\",\"mode\":\"{}\",\"redis\":{{\"latency_us\":{},\"errors\":{}}},\"nodes\":[",
        esc(&c.node),
        c.mode,
        c.redis_latency_us,
        c.redis_errors
    );
    for (i, n) in c.live_nodes.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let heartbeat = rfc3339((n.last_heartbeat_ms / 1000) as i64);
        let rates: Vec<String> = (n.rates.split(',').filter(|r| !r.is_empty()))
            .filter_map(|r| r.rsplit_once('='))
            .map(|(k, v)| format!("\"{}\":{}", esc(k), v.parse::<f64>().unwrap_or(0.0)))
            .collect();
        let _ = write!(
            out,
            "{sep}{{\"name\":\"{}\",\"last_heartbeat\":\"{heartbeat}\",\"lease_rate_per_s\":{{{}}}}}",
            esc(&n.name),
            rates.join(",")
        );
    }
    out.push_str("],\"rules\":{");
    for (i, (rule, (leased, rate))) in c.rules.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(out, "{sep}\"{}\":{{\"leased_total\":{leased},\"lease_rate_per_s\":{rate:.1}}}", esc(rule));
    }
    out.push_str("}}");
    out
}

/// The cluster thread's numbers in Prometheus text.
fn cluster_metrics(o: &mut String, c: &crate::cluster::Status) {
    use crate::metrics::prometheus_header as header;
    header(o, "ringway_cluster_nodes", "gauge", "Live nodes sharing the cluster-scoped caps (by heartbeat).");
    let _ = writeln!(o, "ringway_cluster_nodes {}", c.live_nodes.len());
    header(o, "ringway_cluster_mode", "gauge", "1 for the mode in force: redis (leasing) or the on_redis_error mode.");
    for m in ["redis", "local_share", "allow", "deny"] {
        let _ = writeln!(o, "ringway_cluster_mode{{mode=\"{m}\"}} {}", u8::from(c.mode == m));
    }
    header(o, "ringway_cluster_redis_errors_total", "counter", "Failed or too slow Redis calls.");
    let _ = writeln!(o, "ringway_cluster_redis_errors_total {}", c.redis_errors);
    header(o, "ringway_cluster_redis_latency_seconds", "gauge", "Round trip of the last Redis call.");
    let _ = writeln!(o, "ringway_cluster_redis_latency_seconds {:.6}", c.redis_latency_us as f64 / 1e6);
    header(o, "ringway_cluster_leased_tokens_total", "counter", "Tokens this node leased from Redis, by rule.");
    for (rule, (leased, _)) in &c.rules {
        let _ = writeln!(o, "ringway_cluster_leased_tokens_total{{rule=\"{}\"}} {leased}", rule.replace('"', "'"));
    }
}

/// `["a","b"]` (empty when the kernel picks the source address).
fn ip_list(ips: &[std::net::IpAddr]) -> String {
    let items: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
    format!("[{}]", items.join(","))
}

fn balance_name(b: &crate::config::Balance) -> String {
    match b {
        crate::config::Balance::RoundRobin => "round_robin".into(),
        crate::config::Balance::LeastRequest => "least_request".into(),
        crate::config::Balance::Hash(crate::config::HashKey::ClientIp) => "hash(client_ip)".into(),
        crate::config::Balance::Hash(crate::config::HashKey::Header(h)) => format!("hash(header:{h})"),
    }
}

fn unix(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `2027-03-01T12:00:00Z` for a Unix time.
fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = crate::http::date::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn config(state: &AdminState, current: Option<&crate::runtime::Current>) -> String {
    let s = &state.snapshot;
    let mut out = format!("{{\"generation\":{},", s.generation);
    match current.and_then(|c| c.last.as_ref()) {
        None => out.push_str("\"last_reload\":null,"),
        Some(last) => {
            let _ = write!(out, "\"last_reload\":{{\"ok\":{},\"error\":", last.ok);
            match &last.error {
                Some(e) => crate::metrics::json_str(&mut out, e.as_bytes()),
                None => out.push_str("null"),
            }
            let _ = write!(out, ",\"at\":\"{}\",\"generation\":{}}},", rfc3339(unix(last.at)), last.generation);
        }
    }
    out.push_str("\"workers\":[");
    for (i, (cpu, driver)) in state.workers.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let cpu = cpu.map_or("null".into(), |c| c.to_string());
        let (generation, at) =
            current.and_then(|c| c.switched.get(i).copied()).unwrap_or((s.generation, std::time::SystemTime::now()));
        let _ = write!(
            out,
            "{sep}{{\"worker\":{i},\"cpu\":{cpu},\"driver\":\"{driver}\",\"generation\":{generation},\"switched_at\":\"{}\"}}",
            rfc3339(unix(at))
        );
    }
    out.push_str("],\"listeners\":[");
    for (i, (l, addr)) in s.listeners.iter().zip(&state.listener_addrs).enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(out, "{sep}{{\"name\":\"{}\",\"addr\":\"{addr}\"", l.name);
        if let Some(tls) = &l.tls {
            out.push_str(",\"tls\":{\"certificates\":[");
            let now = crate::tls::now_unix();
            for (j, c) in tls.certs.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"file\":");
                crate::metrics::json_str(&mut out, c.file.as_bytes());
                out.push_str(",\"subject\":");
                crate::metrics::json_str(&mut out, c.subject.as_bytes());
                out.push_str(",\"sans\":[");
                for (k, san) in c.sans.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    crate::metrics::json_str(&mut out, san.as_bytes());
                }
                let _ =
                    write!(out, "],\"not_after\":\"{}\",\"days_left\":{}}}", rfc3339(c.not_after), c.days_left(now));
            }
            out.push_str("]}");
        }
        out.push('}');
    }
    let egress = ip_list(&s.instance.egress_ips);
    let _ = write!(out, "],\"egress_ip\":{egress},\"upstream_egress\":{{");
    for (i, u) in s.upstreams.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let ip = ip_list(&u.egress_ips);
        let _ = write!(out, "{sep}\"{}\":{ip}", u.name);
    }
    let _ = write!(out, "}},\"services\":{},\"apis\":{}}}", s.services.len(), s.apis.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{MetricsSnapshot, ShardMetrics};
    use crate::runtime::ControlMsg;

    fn snapshot() -> Arc<Snapshot> {
        let text = "[[listener]]\nlisten = \"127.0.0.1:0\"\n[service.s]\n[[service.s.api]]\nname = \"a\"\npath = \"/\"\nmock = { body = \"x\" }\n";
        Arc::new(crate::config::compile(text, 1).unwrap())
    }

    #[test]
    fn a_stuck_worker_is_reported_missing_and_never_hangs_a_scrape() {
        let snap = snapshot();
        let (stuck_out, _stuck_in) = crate::runtime::channel(); // never read
        let (live_out, live_in) = crate::runtime::channel();
        let s2 = snap.clone();
        let answering = std::thread::spawn(move || {
            let t0 = Instant::now();
            while t0.elapsed() < std::time::Duration::from_secs(5) {
                if let Some(ControlMsg::Stats { reply, .. }) = live_in.try_recv() {
                    let m = ShardMetrics::new(&s2);
                    let snap = MetricsSnapshot {
                        worker: 1,
                        driver: "legacy",
                        generation: 1,
                        connections_active: 0,
                        connections_parked: 0,
                        h2_connections_idle: 0,
                        in_flight: 0,
                        pool_idle: 0,
                        evicted_keys: 0,
                        egress_bytes: 0,
                        egress_waited_ns: 0,
                        log_dropped_blocks: 0,
                        metrics: m,
                    };
                    let _ = reply.send(snap);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let mut state = AdminState {
            snapshot: snap.clone(),
            outboxes: vec![stuck_out, live_out],
            workers: vec![(None, "legacy"), (None, "legacy")],
            listener_addrs: vec!["127.0.0.1:1".parse().unwrap()],
            endpoint_status: Default::default(),
            window_start: Instant::now(),
            window_base: None,
            reloader: None,
            dns: Default::default(),
            cluster: None,
        };
        let t0 = Instant::now();
        let req = Request { method: "GET", target: "/stats/latency", authorization: None, body: &[] };
        let reply = handle(&mut state, &req);
        assert!(t0.elapsed() < super::super::SCRAPE_DEADLINE * 2, "the scrape waited {:?}", t0.elapsed());
        let body = String::from_utf8(reply.body).unwrap();
        assert_eq!(reply.status, 200);
        assert!(body.contains("\"workers_missing\":[0]"), "{body}");
        answering.join().unwrap();
    }
}
