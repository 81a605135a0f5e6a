//! `Snapshot`: the compiled, immutable config that workers run on.
//!
//! Built once per load/reload by `compile.rs` and shared read-only with every worker (`Arc`); workers
//! build their per-core state (`Shard`) from it and never see TOML structs. Indices (`ApiId`,
//! `UpstreamId`) point into the vectors here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::limit::{Cidr, IpFilter, KeyRule, Rate};

use super::route_table::RouteTable;

/// Index of an API in [`Snapshot::apis`].
pub type ApiId = usize;
/// Index of an upstream in [`Snapshot::upstreams`].
pub type UpstreamId = usize;
/// Index of a service in [`Snapshot::services`].
pub type ServiceId = usize;

/// Compiled config.
#[derive(Debug)]
pub struct Snapshot {
    /// Monotonic version; 1 for the first load.
    pub generation: u64,
    /// `[admin] token_file`'s token: state-changing admin requests need `Authorization: Bearer`.
    pub admin_token: Option<Secret>,
    pub instance: Instance,
    pub http: HttpLimits,
    pub http2: Http2Config,
    pub listeners: Vec<ListenerConfig>,
    /// Admin endpoint address, if configured.
    pub admin: Option<SocketAddr>,
    /// Access log, if enabled.
    pub access_log: Option<AccessLogConfig>,
    pub upstreams: Vec<Upstream>,
    pub services: Vec<Service>,
    pub apis: Vec<Api>,
    pub routes: RouteTable,
    /// `[waf.NAME]` sections (`mode = "off"` ones included: APIs just do not call them).
    pub wafs: Vec<WafConfig>,
    /// `[consumer.NAME]` sections, in name order.
    pub consumers: Vec<crate::policy::Consumer>,
    /// Every consumer's API keys and the JWT consumers, for lookups.
    pub credentials: crate::policy::Credentials,
    /// `[cluster]`: Redis and this node's name, when cluster-scoped caps are used.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The text and directory it was compiled from, and the DNS addresses it expanded names to.
    pub source: std::sync::Arc<SourceText>,
    pub resolved: Resolutions,
    /// Things that are valid but probably not meant (printed by `--check` and at start-up).
    pub warnings: Vec<String>,
}

/// How many workers to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One per CPU in the process's allowed set.
    Auto,
    Count(usize),
}

/// Which monoio driver workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring, falling back to epoll when the kernel or a seccomp filter refuses it.
    Auto,
    IoUring,
    Legacy,
}

/// `[instance]`, compiled.
#[derive(Debug, Clone)]
pub struct Instance {
    pub workers: Workers,
    pub io_driver: IoDriver,
    /// Default source IPs for upstream connections, spread over per core (empty: the kernel
    /// chooses).
    pub egress_ips: Vec<IpAddr>,
    pub drain_timeout: Duration,
    /// On SIGTERM: keep serving this long with `/healthz` at 503 before closing the listeners.
    pub drain_delay: Duration,
    /// Open client connections for the instance, split evenly over workers.
    pub max_connections: Option<usize>,
    pub uring_entries: u32,
    /// Instance-wide QPS cap.
    pub limit: Option<Rate>,
    pub ip_filter: IpFilter,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// DNS servers for named endpoints (empty: the host's /etc/resolv.conf).
    pub resolver: Vec<SocketAddr>,
    /// Cap on bytes written to upstream sockets by the whole instance, per second.
    pub egress_bandwidth: Option<u64>,
    /// `max_qps` holds for the whole cluster (`scope = "cluster"`).
    pub limit_cluster: bool,
}

/// `[http]`, compiled: downstream limits and timeouts.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Total deadline for a request head once its first byte arrived (408).
    pub header_timeout: Duration,
    /// Idle time allowed between requests on a keep-alive connection.
    pub keepalive_timeout: Duration,
    /// Requests served on one client connection before it is closed.
    pub keepalive_requests: u32,
    /// Idle time allowed between reads of a request body (408).
    pub body_timeout: Duration,
    /// Slowest average request-body rate accepted after the grace period (408); 0 = off.
    pub body_min_rate_bytes_per_s: u64,
    pub body_min_rate_grace: Duration,
    /// Idle time allowed while a write to the client makes no progress.
    pub send_timeout: Duration,
    pub max_request_line_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections_per_worker: usize,
    /// How request paths are normalised before routing.
    pub path_rules: crate::http::PathRules,
    /// Proxied responses carry the request's `X-Request-Id` (unless the upstream set one).
    pub response_request_id: bool,
    /// A plain keep-alive connection waiting this long for its next request cancels its read
    /// and frees its buffers until the socket is readable; `None`: never.
    pub idle_park: Option<Duration>,
}

/// `[access_log]`, compiled.
#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    pub target: crate::metrics::LogTarget,
    pub format: crate::metrics::LogFormat,
    /// Query parameters whose values are masked in the log.
    pub redact_query: Vec<String>,
}

/// `[[listener]]`, compiled.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub addr: SocketAddr,
    /// HTTPS: certificates, versions, handshake deadline (shared by every worker).
    pub tls: Option<std::sync::Arc<crate::tls::ListenerTls>>,
    /// Clients may speak HTTP/2: by ALPN on HTTPS, by prior knowledge (h2c) on plain HTTP.
    pub http2: bool,
}

/// `[http2]`, compiled: limits for client HTTP/2 connections.
#[derive(Debug, Clone)]
pub struct Http2Config {
    /// Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Receive window per stream, bytes (SETTINGS_INITIAL_WINDOW_SIZE); the connection's window
    /// is this times the stream limit, capped at 16 MiB.
    pub initial_window_bytes: u32,
    /// Decoded size of one header block, bytes (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub max_header_list_bytes: u32,
    /// A connection with no open stream this long is closed with GOAWAY.
    pub idle_timeout: Duration,
}

/// Balancing policy of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's algorithm).
    RoundRobin,
    /// Power of two choices on per-core in-flight requests (weighted).
    LeastRequest,
    /// Consistent hashing (ketama ring) on a request key.
    Hash(HashKey),
}

/// What `balance = "hash(..)"` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// A request header, lower-case; requests without it hash the empty value.
    Header(String),
}

/// One upstream address.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    /// The DNS name this address was resolved from (`None`: configured as an address).
    pub from: Option<std::sync::Arc<str>>,
}

/// An endpoint configured by DNS name: every address it resolves to is an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsName {
    /// Lower case, without a trailing dot.
    pub host: String,
    pub port: u16,
    /// The entry's weight, split among its addresses (each gets `max(1, weight / addresses)`).
    pub weight: u32,
}

/// Addresses of DNS names as last resolved, by host (what a compile expands names to).
pub type Resolutions = std::collections::BTreeMap<String, Vec<IpAddr>>;

/// What a snapshot was compiled from, so a DNS change can compile it again.
#[derive(Debug, Default)]
pub struct SourceText {
    pub text: String,
    pub dir: std::path::PathBuf,
}

/// `[upstream.NAME]`, compiled.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// Configured addresses, then the current addresses of its DNS names.
    pub endpoints: Vec<Endpoint>,
    /// Endpoints configured by name.
    pub names: Vec<DnsName>,
    pub dns_refresh: Duration,
    pub balance: Balance,
    /// Effective source IPs (a pool): the upstream's override, else the instance's.
    pub egress_ips: Vec<IpAddr>,
    pub connect_timeout: Duration,
    /// Idle time allowed between reads of the response body.
    pub read_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_endpoint: usize,
    pub max_requests_per_connection: u32,
    /// Open connections per worker to this upstream (in use + idle); at the cap a request that
    /// needs a new connection gets 503 at once (never queued).
    pub max_connections: Option<u32>,
    /// Retries allowed as a percentage of requests (per worker, over a ~1 s decaying window).
    pub retry_budget_percent: u32,
    /// Active health checks, if configured.
    pub health: Option<crate::upstream::health::HealthConfig>,
    /// Passive outlier ejection (on by default).
    pub outlier: Option<crate::upstream::outlier::OutlierConfig>,
    pub when_all_down: AllDown,
    /// TLS to the endpoints, when configured.
    pub tls: Option<std::sync::Arc<crate::tls::UpstreamTls>>,
    /// Pooled connections are shared between upstreams (and config generations) with the same
    /// identity: name, egress addresses and TLS settings.
    pub pool_identity: u64,
}

/// What to do when no endpoint of an upstream is healthy and in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDown {
    /// 503 at once.
    FailFast,
    /// Ignore health and ejection and try the endpoints anyway.
    TryAll,
}

/// `[service.NAME]`, compiled (its routes live in the route table).
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub hosts: Vec<String>,
    /// Normalised: no trailing slash; empty for "/".
    pub base_path: String,
    pub limit: Option<Rate>,
    pub key_limit: Option<KeyRule>,
    pub ip_filter: IpFilter,
    /// `max_qps` holds for the whole cluster.
    pub limit_cluster: bool,
}

/// How the upstream path is derived from the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Send the original path.
    None,
    /// Send the path with the service's `base_path` removed.
    StripBase,
    /// Replace the part matched by the API path with this; a prefix API keeps the remainder.
    Replace(String),
}

/// What serves an API.
#[derive(Debug, Clone)]
pub enum Target {
    Upstream(UpstreamId),
    Mock(MockResponse),
}

/// A static response; head bytes are pre-rendered without the `Connection` header.
#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: u16,
    /// Status line and headers (each ending in CRLF), without the blank line.
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

/// `[[service.NAME.api]]`, compiled.
#[derive(Debug, Clone)]
pub struct Api {
    pub name: String,
    pub service: ServiceId,
    pub target: Target,
    /// Time allowed from sending the request to receiving the response head (504).
    pub timeout: Duration,
    pub rewrite: Rewrite,
    /// Largest request body accepted (413); 0 = unlimited.
    pub max_body_bytes: u64,
    pub limit: Option<Rate>,
    pub key_limit: Option<KeyRule>,
    /// Concurrent requests per worker (503 above it); the configured value split over workers.
    pub max_in_flight: Option<u32>,
    /// Extra tries on another endpoint after a 502/503/504 or an upstream failure (idempotent
    /// requests without a body only; connect failures are always retried once).
    pub retries: u32,
    /// One retry on another endpoint, even with `retries = 0`, when a connection closed or reset
    /// before any response byte (idempotent requests without a body; nginx's and HAProxy's
    /// default too).
    pub retry_on_connection_error: bool,
    /// Response-head timeout of each try.
    pub per_try_timeout: Duration,
    /// The WAF this API's requests are checked by (none when unset, "" or `mode = "off"`).
    pub waf: Option<WafId>,
    /// Who may call (its service's `auth` and `consumers`, overridden by its own); `None`: public.
    pub auth: Option<std::sync::Arc<crate::policy::AuthPolicy>>,
    /// Header rewrites, CORS and `upstream_host`; `None` when there are none.
    pub policy: Option<std::sync::Arc<crate::policy::ApiPolicy>>,
    /// `max_qps` holds for the whole cluster.
    pub limit_cluster: bool,
}

/// Index into [`Snapshot::wafs`].
pub type WafId = usize;

/// What a WAF's verdict does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafMode {
    /// A 4xx verdict is sent to the client.
    Block,
    /// Verdicts are logged and counted; the request always goes on.
    Monitor,
    /// Not called.
    Off,
}

/// `[waf.NAME]`, compiled.
#[derive(Debug, Clone)]
pub struct WafConfig {
    pub name: String,
    /// The upstream the WAF is reached through (pools, health checks, TLS).
    pub upstream: UpstreamId,
    pub mode: WafMode,
    /// Budget for the WAF's answer, connecting included; then `on_error` applies.
    pub timeout: Duration,
    /// Fail closed (503) instead of open when the WAF cannot give a verdict.
    pub deny_on_error: bool,
    /// Request body bytes sent for inspection (0: the head only).
    pub send_body_bytes: usize,
    /// Prefix put before the original target ("" for `path = "/"`).
    pub path_prefix: String,
}

impl Snapshot {
    /// `service/api` label of an API, for logs and metrics.
    pub fn api_label(&self, id: ApiId) -> String {
        let api = &self.apis[id];
        format!("{}/{}", self.services[api.service].name, api.name)
    }
}

/// How a new config's items map to the previous config's, by name (computed once per reload,
/// off the workers): for each item of the new snapshot, its index in the old one.
#[derive(Debug, Default)]
pub struct Remap {
    pub apis: Vec<Option<ApiId>>,
    pub services: Vec<Option<ServiceId>>,
    pub upstreams: Vec<Option<UpstreamId>>,
    pub listeners: Vec<Option<usize>>,
    pub wafs: Vec<Option<WafId>>,
    pub consumers: Vec<Option<crate::policy::ConsumerId>>,
    /// Per new upstream: each endpoint's index in the old upstream (same address).
    pub endpoints: Vec<Vec<Option<usize>>>,
}

impl Remap {
    pub fn new(old: &Snapshot, new: &Snapshot) -> Self {
        use std::collections::HashMap;
        let services: HashMap<&str, usize> =
            old.services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        let apis: HashMap<(&str, &str), usize> = old
            .apis
            .iter()
            .enumerate()
            .map(|(i, a)| ((old.services[a.service].name.as_str(), a.name.as_str()), i))
            .collect();
        let upstreams: HashMap<&str, usize> =
            old.upstreams.iter().enumerate().map(|(i, u)| (u.name.as_str(), i)).collect();
        let listeners: HashMap<&str, usize> =
            old.listeners.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        let up_of_new: Vec<Option<usize>> =
            new.upstreams.iter().map(|u| upstreams.get(u.name.as_str()).copied()).collect();
        Self {
            apis: new
                .apis
                .iter()
                .map(|a| apis.get(&(new.services[a.service].name.as_str(), a.name.as_str())).copied())
                .collect(),
            services: new.services.iter().map(|s| services.get(s.name.as_str()).copied()).collect(),
            listeners: new.listeners.iter().map(|l| listeners.get(l.name.as_str()).copied()).collect(),
            wafs: new.wafs.iter().map(|w| old.wafs.iter().position(|o| o.name == w.name)).collect(),
            consumers: new.consumers.iter().map(|c| old.consumers.iter().position(|o| o.name == c.name)).collect(),
            endpoints: new
                .upstreams
                .iter()
                .zip(&up_of_new)
                .map(|(u, old_i)| {
                    u.endpoints
                        .iter()
                        .map(|e| old_i.and_then(|i| old.upstreams[i].endpoints.iter().position(|o| o.addr == e.addr)))
                        .collect()
                })
                .collect(),
            upstreams: up_of_new,
        }
    }
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}
