//! Validation and compilation: `FileConfig` (TOML shape) → `Snapshot` (what workers run).
//!
//! Pure: no I/O, no clock. Every error names the TOML key path and, where the parser kept a span,
//! the line. Defaults are the constants below; `conf/ringway.toml` documents the same values.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::file::*;
use super::route_table::{MethodSet, PathPattern, RouteTable};
use super::snapshot::*;
use crate::http::is_tchar;
use crate::limit::IpFilter;
use crate::metrics::{LogFormat, LogTarget};

pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 60_000;
/// A keep-alive connection idle this long frees its buffers (see `[http] idle_park_ms`).
pub const DEFAULT_IDLE_PARK_MS: u64 = 1_000;
pub const DEFAULT_KEEPALIVE_REQUESTS: u32 = 1000;
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_BODY_MIN_RATE_BYTES_PER_S: u64 = 1024;
pub const DEFAULT_BODY_MIN_RATE_GRACE_MS: u64 = 5_000;
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_MAX_CONNECTIONS_PER_WORKER: usize = 10_000;
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_URING_ENTRIES: u32 = 1024;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 60_000;
/// Below common backend keep-alive timeouts (nginx 75 s, Node 5 s is the outlier: lower it there).
pub const DEFAULT_POOL_IDLE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_POOL_MAX_IDLE_PER_ENDPOINT: usize = 1024;
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: u32 = 1000;
pub const DEFAULT_API_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 5_000;
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
pub const DEFAULT_HEALTHY_AFTER: u32 = 2;
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
pub const DEFAULT_BASE_EJECTION_MS: u64 = 30_000;
pub const DEFAULT_MAX_EJECTION_MS: u64 = 300_000;
pub const DEFAULT_MAX_EJECTED_PERCENT: u32 = 10;
pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// Default burst: a tenth of a second's worth of the rate (at least 1).
pub const DEFAULT_BURST_DIVISOR: u64 = 10;
pub const DEFAULT_KEY_TABLE_SIZE: usize = 10_000;
pub const DEFAULT_DNS_REFRESH_MS: u64 = 30_000;
/// Method names a lowercase spelling of which is certainly a mistake.
const STANDARD_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
/// Header limits above this are refused: the read buffer grows up to it.
const MAX_HEADER_BYTES_CAP: usize = 64 * 1024;

/// Parses and compiles `text`; `generation` is stamped on the snapshot. Relative file paths
/// (certificates, keys, CA bundles) are taken from the current directory.
pub fn compile(text: &str, generation: u64) -> Result<Snapshot, ConfigError> {
    compile_in(text, generation, std::path::Path::new("."))
}

/// Like [`compile`], with relative file paths taken from `dir` (the config file's directory).
/// Endpoints given by DNS name have no address yet (see [`compile_with`]).
pub fn compile_in(text: &str, generation: u64, dir: &std::path::Path) -> Result<Snapshot, ConfigError> {
    compile_with(text, generation, dir, &Resolutions::new())
}

/// Like [`compile_in`], with endpoints given by DNS name expanded to the addresses in `resolved`.
pub fn compile_with(
    text: &str,
    generation: u64,
    dir: &std::path::Path,
    resolved: &Resolutions,
) -> Result<Snapshot, ConfigError> {
    let src = Source::new(text);
    let file: FileConfig = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    let mut snapshot = Compiler { src, dir, resolved, warnings: Default::default() }.run(file, generation)?;
    snapshot.source = std::sync::Arc::new(SourceText { text: text.to_string(), dir: dir.to_path_buf() });
    snapshot.resolved = resolved.clone();
    Ok(snapshot)
}

struct Compiler<'a> {
    src: Source<'a>,
    /// Relative paths in the file are relative to this directory.
    dir: &'a std::path::Path,
    /// Addresses of DNS-named endpoints.
    resolved: &'a Resolutions,
    /// Warnings found on the way (besides the whole-config ones computed at the end).
    warnings: std::cell::RefCell<Vec<String>>,
}

impl Compiler<'_> {
    fn err(&self, path: impl Into<String>, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(path, Some(self.src.line(span.start)), msg)
    }

    /// A number key that must lie in `lo..=hi` ("must be from LO to HI" naming `path`), or
    /// `default` when absent.
    fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
        &self,
        path: &str,
        v: Option<&Spanned<T>>,
        default: T,
        lo: T,
        hi: T,
    ) -> Result<T, ConfigError> {
        match v {
            Some(s) if !(lo..=hi).contains(s.get_ref()) => {
                Err(self.err(path, s.span(), format!("must be from {lo} to {hi}")))
            }
            Some(s) => Ok(*s.get_ref()),
            None => Ok(default),
        }
    }

    fn run(&self, file: FileConfig, generation: u64) -> Result<Snapshot, ConfigError> {
        let cluster = self.cluster(file.cluster.as_ref())?;
        let mut instance = self.instance(&file.instance)?;
        instance.limit_cluster =
            self.scope("instance", &file.instance.scope, instance.limit.is_some(), cluster.is_some())?;
        let http = self.http(&file.http)?;
        let listeners = self.listeners(&file.listener)?;
        let http2 = self.http2(file.http2.as_ref())?;
        let admin = match &file.admin {
            Some(a) => Some(a.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
                let msg = format!("\"{}\" is not an IP:port address", a.listen.get_ref());
                self.err("admin.listen", a.listen.span(), msg)
            })?),
            None => None,
        };
        if let (Some(addr), Some(f)) = (admin, &file.admin) {
            if addr.port() != 0 && listeners.iter().any(|l| l.addr == addr) {
                let msg = format!("{addr} is also a listener address; the admin endpoint needs its own");
                return Err(self.err("admin.listen", f.listen.span(), msg));
            }
        }
        let access_log = self.access_log(file.access_log.as_ref())?;
        let mut upstream_ids = BTreeMap::new();
        let mut upstreams = Vec::new();
        for (name, up) in &file.upstream {
            upstream_ids.insert(name.clone(), upstreams.len());
            upstreams.push(self.upstream(name, up, &instance.egress_ips)?);
        }
        let (wafs, waf_ids) = self.wafs(&file.waf, &upstream_ids)?;
        let (consumers, credentials, consumer_ids) = self.consumers(&file.consumer)?;
        let mut services = Vec::new();
        let mut apis = Vec::new();
        let mut routes = RouteTable::default();
        for (name, svc) in &file.service {
            let sid = services.len();
            let mut service = self.service(name, svc, &instance)?;
            service.limit_cluster =
                self.scope(&format!("service.{name}"), &svc.scope, service.limit.is_some(), cluster.is_some())?;
            let shares_hosts =
                |a: &[String], b: &[String]| a.is_empty() && b.is_empty() || a.iter().any(|h| b.contains(h));
            if let Some(other) = services
                .iter()
                .find(|o: &&Service| o.base_path == service.base_path && shares_hosts(&o.hosts, &service.hosts))
            {
                let msg = format!(
                    "service \"{}\" already has the same hosts and base path: this service would never be reached",
                    other.name
                );
                let line = svc.base_path.as_ref().map(|b| self.src.line(b.span().start));
                return Err(ConfigError::new(format!("service.{name}"), line, msg));
            }
            routes.add_service(sid, &service.hosts, &service.base_path);
            for (i, api) in svc.api.iter().enumerate() {
                let path = format!("service.{name}.api[{i}]");
                if svc.api[..i].iter().any(|a| a.name.get_ref() == api.name.get_ref()) {
                    let msg = format!("duplicate API name \"{}\" in service \"{name}\"", api.name.get_ref());
                    return Err(self.err(format!("{path}.name"), api.name.span(), msg));
                }
                // no methods = every method
                let overlap = |a: &FileApi, b: &FileApi| {
                    a.methods.is_empty()
                        || b.methods.is_empty()
                        || a.methods.iter().any(|m| b.methods.iter().any(|n| n.get_ref() == m.get_ref()))
                };
                if let Some(j) =
                    (0..i).find(|&j| svc.api[j].path.get_ref() == api.path.get_ref() && overlap(&svc.api[j], api))
                {
                    let msg = format!(
                        "same path and method as service.{name}.api[{j}] (\"{}\"): this API would never be reached",
                        svc.api[j].name.get_ref()
                    );
                    return Err(self.err(format!("{path}.path"), api.path.span(), msg));
                }
                let (mut compiled, pattern, methods) = self.api(&path, sid, api, &upstream_ids, &instance, &service)?;
                compiled.waf = self.api_waf(&path, (name, svc), api, &waf_ids, &wafs)?;
                compiled.auth = self.auth_policy(&path, (name, svc), api, &consumer_ids)?;
                compiled.policy = self.api_policy(&path, (name, svc), api)?;
                compiled.limit_cluster = self.scope(&path, &api.scope, compiled.limit.is_some(), cluster.is_some())?;
                if compiled.key_limit.as_ref().is_some_and(|k| k.source == crate::limit::KeySource::Consumer)
                    && compiled.auth.is_none()
                {
                    let msg = "limit_by = \"consumer\" needs `auth` on the API or its service";
                    return Err(self.err(format!("{path}.limit_by"), api.name.span(), msg));
                }
                routes.add_api(sid, apis.len(), &pattern, methods);
                apis.push(compiled);
            }
            services.push(service);
        }
        routes.finish();
        let mut warnings = self.warnings.take();
        for (id, u) in upstreams.iter().enumerate() {
            let used_by_api = apis.iter().any(|a: &Api| matches!(a.target, Target::Upstream(u) if u == id));
            if !used_by_api && !wafs.iter().any(|w| w.upstream == id) {
                warnings.push(format!("upstream.{}: no API uses this upstream", u.name));
            }
        }
        let admin_token = self.admin_token(file.admin.as_ref())?;
        Ok(Snapshot {
            generation,
            admin_token,
            instance,
            http,
            http2,
            listeners,
            admin,
            access_log,
            upstreams,
            services,
            apis,
            routes,
            wafs,
            consumers,
            credentials,
            cluster,
            source: Default::default(),
            resolved: Resolutions::new(),
            warnings,
        })
    }

    /// Reads `[admin] token_file` (relative to the config file): one line, at least 16 characters.
    fn admin_token(&self, f: Option<&FileAdmin>) -> Result<Option<Secret>, ConfigError> {
        let Some(t) = f.and_then(|a| a.token_file.as_ref()) else { return Ok(None) };
        let path = self.dir.join(t.get_ref());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.err("admin.token_file", t.span(), format!("cannot read {}: {e}", path.display())))?;
        let token = text.trim();
        if token.len() < 16 || token.contains(char::is_whitespace) {
            let msg = format!("{} must hold one token of at least 16 characters", path.display());
            return Err(self.err("admin.token_file", t.span(), msg));
        }
        Ok(Some(Secret(token.to_string())))
    }

    fn instance(&self, f: &FileInstance) -> Result<Instance, ConfigError> {
        let workers = match &f.workers {
            None => Workers::Auto,
            Some(v) => match v.get_ref() {
                toml::Value::String(s) if s == "auto" => Workers::Auto,
                toml::Value::Integer(n) if (1..=1024).contains(n) => Workers::Count(*n as usize),
                other => {
                    let msg = format!("expected \"auto\" or an integer from 1 to 1024, found {other}");
                    return Err(self.err("instance.workers", v.span(), msg));
                }
            },
        };
        let io_driver = match f.io_driver.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("auto", _)) => IoDriver::Auto,
            Some(("io_uring", _)) => IoDriver::IoUring,
            Some(("legacy", _)) => IoDriver::Legacy,
            Some((other, span)) => {
                let msg = format!("unknown driver \"{other}\"; expected \"auto\", \"io_uring\" or \"legacy\"");
                return Err(self.err("instance.io_driver", span, msg));
            }
        };
        let egress_ips = self.ips("instance.egress_ip", f.egress_ip.as_ref())?;
        let uring_entries = match &f.uring_entries {
            Some(e) if !(16..=32768).contains(e.get_ref()) || !e.get_ref().is_power_of_two() => {
                return Err(self.err("instance.uring_entries", e.span(), "must be a power of two from 16 to 32768"));
            }
            Some(e) => *e.get_ref(),
            None => DEFAULT_URING_ENTRIES,
        };
        let drain_timeout = ms(f.drain_timeout_ms, DEFAULT_DRAIN_TIMEOUT_MS);
        let limit = self.rate_rule("instance", &f.max_qps, &f.burst, None)?;
        let ip_filter = IpFilter {
            allow: self.cidrs("instance.ip_allow", &f.ip_allow)?,
            deny: self.cidrs("instance.ip_deny", &f.ip_deny)?,
        };
        let trusted_proxies = self.cidrs("instance.trusted_proxies", &f.trusted_proxies)?;
        let drain_delay = ms(f.drain_delay_ms, 0);
        let max_connections = match &f.max_connections {
            Some(m) if *m.get_ref() == 0 => {
                return Err(self.err("instance.max_connections", m.span(), "must be at least 1"));
            }
            Some(m) => Some(*m.get_ref()),
            None => None,
        };
        let mut resolver = Vec::new();
        if let Some(list) = &f.resolver {
            for (i, r) in list.get_ref().iter().enumerate() {
                let addr = r
                    .parse::<SocketAddr>()
                    .or_else(|_| r.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
                match addr {
                    Ok(a) => resolver.push(a),
                    Err(_) => {
                        let msg = format!("\"{r}\" is not an IP or IP:port (a DNS server)");
                        return Err(self.err(format!("instance.resolver[{i}]"), list.span(), msg));
                    }
                }
            }
        }
        let egress_bandwidth = match &f.egress_bandwidth_bytes_per_s {
            Some(b) if !(1024..=100_000_000_000).contains(b.get_ref()) => {
                let msg = "must be from 1024 to 100000000000 (bytes per second)";
                return Err(self.err("instance.egress_bandwidth_bytes_per_s", b.span(), msg));
            }
            Some(b) => Some(*b.get_ref()),
            None => None,
        };
        Ok(Instance {
            limit_cluster: false, // set by the caller, which knows [cluster]
            resolver,
            egress_bandwidth,
            workers,
            io_driver,
            egress_ips,
            drain_timeout,
            drain_delay,
            max_connections,
            uring_entries,
            limit,
            ip_filter,
            trusted_proxies,
        })
    }

    fn http(&self, f: &FileHttp) -> Result<HttpLimits, ConfigError> {
        let bounded = |key: &str, v: &Option<Spanned<usize>>, default: usize, lo: usize, hi: usize| {
            self.bounded(&format!("http.{key}"), v.as_ref(), default, lo, hi)
        };
        let max_header_bytes =
            bounded("max_header_bytes", &f.max_header_bytes, DEFAULT_MAX_HEADER_BYTES, 1024, MAX_HEADER_BYTES_CAP)?;
        let max_request_line_bytes = bounded(
            "max_request_line_bytes",
            &f.max_request_line_bytes,
            DEFAULT_MAX_REQUEST_LINE_BYTES,
            256,
            max_header_bytes,
        )?;
        Ok(HttpLimits {
            header_timeout: ms(f.header_timeout_ms, DEFAULT_HEADER_TIMEOUT_MS),
            keepalive_timeout: ms(f.keepalive_timeout_ms, DEFAULT_KEEPALIVE_TIMEOUT_MS),
            keepalive_requests: f.keepalive_requests.unwrap_or(DEFAULT_KEEPALIVE_REQUESTS).max(1),
            body_timeout: ms(f.body_timeout_ms, DEFAULT_BODY_TIMEOUT_MS),
            body_min_rate_bytes_per_s: f.body_min_rate_bytes_per_s.unwrap_or(DEFAULT_BODY_MIN_RATE_BYTES_PER_S),
            body_min_rate_grace: ms(f.body_min_rate_grace_ms, DEFAULT_BODY_MIN_RATE_GRACE_MS),
            send_timeout: ms(f.send_timeout_ms, DEFAULT_SEND_TIMEOUT_MS),
            max_request_line_bytes,
            max_header_bytes,
            max_headers: bounded("max_headers", &f.max_headers, DEFAULT_MAX_HEADERS, 8, crate::http::MAX_HEADERS_CAP)?,
            max_connections_per_worker: bounded(
                "max_connections_per_worker",
                &f.max_connections_per_worker,
                DEFAULT_MAX_CONNECTIONS_PER_WORKER,
                1,
                1_000_000,
            )?,
            path_rules: crate::http::PathRules {
                escaped_slashes: match f.escaped_slashes.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
                    None | Some(("keep", _)) => crate::http::EscapedSlashes::Keep,
                    Some(("reject", _)) => crate::http::EscapedSlashes::Reject,
                    Some((other, span)) => {
                        return Err(self.err(
                            "http.escaped_slashes",
                            span,
                            format!("unknown action \"{other}\"; expected \"keep\" or \"reject\""),
                        ))
                    }
                },
                merge_slashes: f.merge_slashes.unwrap_or(false),
            },
            response_request_id: f.response_request_id.unwrap_or(true),
            idle_park: match f.idle_park_ms.unwrap_or(DEFAULT_IDLE_PARK_MS) {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
        })
    }

    fn listeners(&self, list: &[FileListener]) -> Result<Vec<ListenerConfig>, ConfigError> {
        if list.is_empty() {
            return Err(ConfigError::new("listener", None, "at least one [[listener]] with `listen` is required"));
        }
        let mut out: Vec<ListenerConfig> = Vec::new();
        for (i, l) in list.iter().enumerate() {
            let path = format!("listener[{i}].listen");
            let addr: SocketAddr = l.listen.get_ref().parse().map_err(|_| {
                let msg = format!(
                    "\"{}\" is not an IP:port address (e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")",
                    l.listen.get_ref()
                );
                self.err(&path, l.listen.span(), msg)
            })?;
            let name = l.name.clone().unwrap_or_else(|| format!("listener{i}"));
            check_name(&name).map_err(|m| self.err(format!("listener[{i}].name"), l.listen.span(), m))?;
            if out.iter().any(|o| o.name == name) {
                return Err(self.err(
                    format!("listener[{i}].name"),
                    l.listen.span(),
                    format!("duplicate listener name \"{name}\""),
                ));
            }
            if addr.port() != 0 && out.iter().any(|o| o.addr == addr) {
                return Err(self.err(
                    &path,
                    l.listen.span(),
                    format!("address {addr} is already used by another listener"),
                ));
            }
            let http2 = self.listener_http2(i, l, l.tls.is_some())?;
            let tls = self.listener_tls(i, l)?;
            out.push(ListenerConfig { name, addr, tls, http2 });
        }
        Ok(out)
    }

    fn access_log(&self, f: Option<&FileAccessLog>) -> Result<Option<AccessLogConfig>, ConfigError> {
        let Some(f) = f else { return Ok(None) };
        if !f.enabled.unwrap_or(true) {
            return Ok(None);
        }
        let format = match f.format.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("json", _)) => LogFormat::Json,
            Some(("logfmt", _)) => LogFormat::Logfmt,
            Some((other, span)) => {
                return Err(self.err(
                    "access_log.format",
                    span,
                    format!("unknown format \"{other}\"; expected \"json\" or \"logfmt\""),
                ));
            }
        };
        let target = match f.path.as_deref() {
            None | Some("stdout") => LogTarget::Stdout,
            Some("stderr") => LogTarget::Stderr,
            Some(p) => LogTarget::File(p.into()),
        };
        Ok(Some(AccessLogConfig { target, format, redact_query: f.redact_query.clone().unwrap_or_default() }))
    }

    fn service(&self, name: &str, f: &FileService, instance: &Instance) -> Result<Service, ConfigError> {
        let base = format!("service.{name}");
        check_name(name).map_err(|m| ConfigError::new(&base, None, m))?;
        let mut hosts = Vec::new();
        for (i, h) in f.hosts.iter().enumerate() {
            let host = h.get_ref().to_ascii_lowercase();
            check_host(&host).map_err(|m| self.err(format!("{base}.hosts[{i}]"), h.span(), m))?;
            hosts.push(host);
        }
        let base_path = match &f.base_path {
            None => String::new(),
            Some(p) => {
                let path = p.get_ref();
                if !matches!(PathPattern::parse(path), Ok(PathPattern::Exact(_))) {
                    let msg = format!("\"{path}\" must be a plain path starting with '/' (no '*', '{{}}', '?')");
                    return Err(self.err(format!("{base}.base_path"), p.span(), msg));
                }
                path.trim_end_matches('/').to_string()
            }
        };
        let parent = instance.limit.as_ref().map(|r| ("instance.max_qps", r.per_s));
        let limit = self.rate_rule(&base, &f.max_qps, &f.burst, parent)?;
        let cap =
            limit.as_ref().map(|r| (format!("{base}.max_qps"), r.per_s)).or(parent.map(|(k, v)| (k.to_string(), v)));
        let key_limit = self.key_rule(&base, &f.limits(), cap)?;
        let ip_filter = IpFilter {
            allow: self.cidrs(&format!("{base}.ip_allow"), &f.ip_allow)?,
            deny: self.cidrs(&format!("{base}.ip_deny"), &f.ip_deny)?,
        };
        Ok(Service { name: name.to_string(), hosts, base_path, limit, key_limit, ip_filter, limit_cluster: false })
    }

    fn api(
        &self,
        path: &str,
        service: ServiceId,
        f: &FileApi,
        upstream_ids: &BTreeMap<String, UpstreamId>,
        instance: &Instance,
        svc: &Service,
    ) -> Result<(Api, PathPattern, MethodSet), ConfigError> {
        check_name(f.name.get_ref()).map_err(|m| self.err(format!("{path}.name"), f.name.span(), m))?;
        let pattern =
            PathPattern::parse(f.path.get_ref()).map_err(|m| self.err(format!("{path}.path"), f.path.span(), m))?;
        let mut methods = if f.methods.is_empty() { MethodSet::any() } else { MethodSet::default() };
        for (i, m) in f.methods.iter().enumerate() {
            if m.get_ref().is_empty() || !m.get_ref().bytes().all(is_tchar) {
                return Err(self.err(
                    format!("{path}.methods[{i}]"),
                    m.span(),
                    format!("\"{}\" is not a method token", m.get_ref()),
                ));
            }
            let upper = m.get_ref().to_ascii_uppercase();
            if upper != *m.get_ref() && STANDARD_METHODS.contains(&upper.as_str()) {
                return Err(self.err(
                    format!("{path}.methods[{i}]"),
                    m.span(),
                    format!(
                        "methods are case-sensitive: \"{}\" would never match; did you mean \"{upper}\"?",
                        m.get_ref()
                    ),
                ));
            }
            methods.insert(m.get_ref());
        }
        let target = match (&f.upstream, &f.mock) {
            (Some(u), None) => match upstream_ids.get(u.get_ref()) {
                Some(&id) => Target::Upstream(id),
                None => {
                    return Err(self.err(
                        format!("{path}.upstream"),
                        u.span(),
                        format!("no upstream named \"{}\"", u.get_ref()),
                    ));
                }
            },
            (None, Some(m)) => Target::Mock(self.mock(&format!("{path}.mock"), m)?),
            (Some(u), Some(_)) => return Err(self.err(path, u.span(), "set either `upstream` or `mock`, not both")),
            (None, None) => {
                return Err(self.err(path, f.name.span(), "needs `upstream = \"NAME\"` or `mock = { .. }`"))
            }
        };
        let rewrite = match (&f.upstream_path, f.strip_base_path) {
            (Some(p), true) => {
                return Err(self.err(
                    format!("{path}.upstream_path"),
                    p.span(),
                    "conflicts with strip_base_path = true",
                ))
            }
            (Some(p), false) => match PathPattern::parse(p.get_ref()) {
                Ok(PathPattern::Exact(s)) => Rewrite::Replace(s.trim_end_matches('/').to_string()),
                _ => {
                    return Err(self.err(
                        format!("{path}.upstream_path"),
                        p.span(),
                        "must be a plain path starting with '/'",
                    ))
                }
            },
            (None, true) => Rewrite::StripBase,
            (None, false) => Rewrite::None,
        };
        let svc_key = format!("service.{}.max_qps", svc.name);
        let parent = match (&svc.limit, &instance.limit) {
            (Some(r), _) => Some((svc_key.as_str(), r.per_s)),
            (None, Some(r)) => Some(("instance.max_qps", r.per_s)),
            (None, None) => None,
        };
        let limit = self.rate_rule(path, &f.max_qps, &f.burst, parent)?;
        let cap =
            limit.as_ref().map(|r| (format!("{path}.max_qps"), r.per_s)).or(parent.map(|(k, v)| (k.to_string(), v)));
        let key_limit = self.key_rule(path, &f.limits(), cap)?;
        let max_in_flight = match &f.max_in_flight {
            Some(m) if *m.get_ref() == 0 => {
                return Err(self.err(format!("{path}.max_in_flight"), m.span(), "must be at least 1"))
            }
            Some(m) => Some(*m.get_ref()),
            None => None,
        };
        for (key, v) in [("timeout_ms", &f.timeout_ms), ("per_try_timeout_ms", &f.per_try_timeout_ms)] {
            if let Some(v) = v.as_ref().filter(|v| *v.get_ref() == 0) {
                let msg = "must be above 0 (every request would time out at once)";
                return Err(self.err(format!("{path}.{key}"), v.span(), msg));
            }
        }
        let timeout = ms(f.timeout_ms.as_ref().map(|v| *v.get_ref()), DEFAULT_API_TIMEOUT_MS);
        let retries = match &f.retries {
            Some(r) if *r.get_ref() > 5 => {
                return Err(self.err(format!("{path}.retries"), r.span(), "must be from 0 to 5"))
            }
            Some(r) => *r.get_ref(),
            None => 0,
        };
        let api = Api {
            retries,
            retry_on_connection_error: f.retry_on_connection_error.unwrap_or(true),
            per_try_timeout: f.per_try_timeout_ms.as_ref().map_or(timeout, |v| Duration::from_millis(*v.get_ref())),
            limit,
            key_limit,
            max_in_flight,
            name: f.name.get_ref().clone(),
            service,
            target,
            timeout,
            rewrite,
            max_body_bytes: f.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            // set by the caller, which knows the service's keys
            waf: None,
            auth: None,
            policy: None,
            limit_cluster: false,
        };
        Ok((api, pattern, methods))
    }

    fn mock(&self, path: &str, m: &Spanned<FileMock>) -> Result<MockResponse, ConfigError> {
        let f = m.get_ref();
        let status = f.status.unwrap_or(200);
        if !(200..=599).contains(&status) {
            return Err(self.err(format!("{path}.status"), m.span(), "must be from 200 to 599"));
        }
        let bodyless = status == 204 || status == 304;
        if bodyless && !f.body.is_empty() {
            return Err(self.err(format!("{path}.body"), m.span(), format!("a {status} response cannot have a body")));
        }
        let mut head = format!("HTTP/1.1 {status} {}\r\n", crate::http::reason(status)).into_bytes();
        for (name, value) in &f.headers {
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(self.err(format!("{path}.headers"), m.span(), format!("\"{name}\" is not a header name")));
            }
            if matches!(
                lower.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "upgrade"
            ) {
                return Err(self.err(
                    format!("{path}.headers.{name}"),
                    m.span(),
                    "is set by the gateway, not the mock",
                ));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(self.err(format!("{path}.headers.{name}"), m.span(), "value contains CR, LF or NUL"));
            }
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !bodyless {
            head.extend_from_slice(format!("content-length: {}\r\n", f.body.len()).as_bytes());
        }
        Ok(MockResponse { status, head, body: f.body.clone().into_bytes() })
    }
}

fn ms(v: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(v.unwrap_or(default))
}

/// Names become metric labels and log fields: keep them simple.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("name \"{name}\" must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'"))
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let plain = host.strip_prefix("*.").unwrap_or(host);
    let ok = !plain.is_empty()
        && plain.len() <= 253
        && (plain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            || (plain.starts_with('[') && plain.ends_with(']')));
    if ok {
        Ok(())
    } else {
        Err(format!("\"{host}\" is not a host name (use \"example.com\" or \"*.example.com\", without port)"))
    }
}

mod cluster;
mod http2;
mod limits;
mod policy;
mod tls;
mod upstream;
mod waf;

#[cfg(test)]
mod tests;
