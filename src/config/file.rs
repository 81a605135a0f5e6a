//! Serde structs that mirror the TOML file one to one.
//!
//! Nothing outside `config` sees these types: `compile.rs` validates them and turns them into a
//! [`Snapshot`](super::Snapshot). Every struct denies unknown keys so a typo is an error, not a
//! silently ignored setting. Defaults live in `compile.rs` (and `conf/ringway.toml` repeats them).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string or a list of strings (`egress_ip = "a"` or `egress_ip = ["a", "b"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub instance: FileInstance,
    #[serde(default)]
    pub http: FileHttp,
    pub admin: Option<FileAdmin>,
    pub access_log: Option<FileAccessLog>,
    #[serde(default)]
    pub listener: Vec<FileListener>,
    #[serde(default)]
    pub upstream: BTreeMap<String, FileUpstream>,
    #[serde(default)]
    pub service: BTreeMap<String, FileService>,
    #[serde(default)]
    pub waf: BTreeMap<String, Spanned<FileWaf>>,
    #[serde(default)]
    pub consumer: BTreeMap<String, Spanned<FileConsumer>>,
    pub cluster: Option<Spanned<FileCluster>>,
    pub http2: Option<Spanned<FileHttp2>>,
}

/// `[http2]`: limits for client HTTP/2 connections.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp2 {
    pub max_concurrent_streams: Option<Spanned<u32>>,
    pub initial_window_bytes: Option<Spanned<u32>>,
    pub max_header_list_bytes: Option<Spanned<u32>>,
    pub idle_timeout_ms: Option<Spanned<u64>>,
}

/// `[cluster]`: caps shared by every node using the same Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    pub redis: Option<Spanned<String>>,
    pub redis_cluster: Option<Spanned<Vec<String>>>,
    pub node: Option<Spanned<String>>,
    pub lease_ms: Option<Spanned<u64>>,
    /// "local_share" | "allow" | "deny".
    pub on_redis_error: Option<Spanned<String>>,
}

/// `[consumer.NAME]`: a named caller, identified by API keys or JWTs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConsumer {
    #[serde(default)]
    pub keys: Vec<Spanned<String>>,
    pub keys_file: Option<Spanned<String>>,
    pub key_qps: Option<Spanned<u64>>,
    pub key_burst: Option<Spanned<u64>>,
    pub jwt: Option<Spanned<FileJwt>>,
}

/// A consumer's `jwt = { .. }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJwt {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks_file: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    #[serde(default)]
    pub algorithms: Vec<Spanned<String>>,
}

/// `auth = { .. }` on a service or an API (an API's keys override the service's one by one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    /// "api_key", "jwt"; empty: public.
    pub methods: Option<Vec<Spanned<String>>>,
    pub key_header: Option<Spanned<String>>,
    pub key_query: Option<Spanned<String>>,
    pub consumer_header: Option<Spanned<String>>,
}

/// `request_headers` / `response_headers = { set = { .. }, remove = [..] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHeaderRules {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `cors = { .. }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCors {
    pub origins: Vec<String>,
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub max_age_s: Option<u32>,
    pub credentials: Option<bool>,
}

/// `[waf.NAME]`: an external web application firewall called over HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWaf {
    pub upstream: Spanned<String>,
    /// "block" | "monitor" | "off".
    pub mode: Option<Spanned<String>>,
    pub timeout_ms: Option<Spanned<u64>>,
    /// "allow" | "deny".
    pub on_error: Option<Spanned<String>>,
    pub send_body_bytes: Option<Spanned<usize>>,
    pub path: Option<Spanned<String>>,
}

/// `[instance]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInstance {
    /// "auto" (one per allowed CPU) or a positive integer.
    pub workers: Option<Spanned<toml::Value>>,
    /// "auto" | "io_uring" | "legacy".
    pub io_driver: Option<Spanned<String>>,
    /// Source address(es) bound for upstream connections: one IP or a list (a pool).
    pub egress_ip: Option<Spanned<OneOrMany>>,
    /// DNS servers ("IP" or "IP:port") for named endpoints; default: /etc/resolv.conf.
    pub resolver: Option<Spanned<Vec<String>>>,
    /// Cap on bytes sent to upstreams, whole instance.
    pub egress_bandwidth_bytes_per_s: Option<Spanned<u64>>,
    /// "instance" | "cluster": where `max_qps` holds.
    pub scope: Option<Spanned<String>>,
    /// Graceful-drain deadline on SIGTERM/SIGINT.
    pub drain_timeout_ms: Option<u64>,
    /// Time between the first SIGTERM and closing the listeners, with `/healthz` failing.
    pub drain_delay_ms: Option<u64>,
    /// Open client connections for the whole instance (split over workers).
    pub max_connections: Option<Spanned<usize>>,
    /// io_uring submission-queue entries per worker.
    pub uring_entries: Option<Spanned<u32>>,
    pub max_qps: Option<Spanned<u64>>,
    pub burst: Option<Spanned<u64>>,
    #[serde(default)]
    pub ip_allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub ip_deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
}

/// The per-key rate-limit keys of a service or an API, borrowed for compilation.
pub struct FileLimits<'a> {
    pub limit_by: &'a Option<Spanned<String>>,
    pub key_qps: &'a Option<Spanned<u64>>,
    pub key_burst: &'a Option<Spanned<u64>>,
    pub key_table_size: &'a Option<Spanned<usize>>,
}

macro_rules! limits_of {
    ($t:ty) => {
        impl $t {
            pub fn limits(&self) -> FileLimits<'_> {
                FileLimits {
                    limit_by: &self.limit_by,
                    key_qps: &self.key_qps,
                    key_burst: &self.key_burst,
                    key_table_size: &self.key_table_size,
                }
            }
        }
    };
}
limits_of!(FileService);
limits_of!(FileApi);

/// `[http]`: downstream HTTP/1.1 limits and timeouts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    pub header_timeout_ms: Option<u64>,
    pub keepalive_timeout_ms: Option<u64>,
    pub keepalive_requests: Option<u32>,
    pub body_timeout_ms: Option<u64>,
    pub body_min_rate_bytes_per_s: Option<u64>,
    pub body_min_rate_grace_ms: Option<u64>,
    pub send_timeout_ms: Option<u64>,
    pub max_request_line_bytes: Option<Spanned<usize>>,
    pub max_header_bytes: Option<Spanned<usize>>,
    pub max_headers: Option<Spanned<usize>>,
    pub max_connections_per_worker: Option<Spanned<usize>>,
    /// "keep" | "reject": `%2F` / `%5C` in request paths.
    pub escaped_slashes: Option<Spanned<String>>,
    pub merge_slashes: Option<bool>,
    /// Add the request's `X-Request-Id` to proxied responses that carry none.
    pub response_request_id: Option<bool>,
    /// A keep-alive connection idle this long frees its buffers (0 = never).
    pub idle_park_ms: Option<u64>,
}

/// `[admin]`: the admin HTTP endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    pub listen: Spanned<String>,
    /// A file holding the bearer token that state-changing admin requests must carry.
    pub token_file: Option<Spanned<String>>,
}

/// `[access_log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    pub enabled: Option<bool>,
    /// "stdout", "stderr" or a file path.
    pub path: Option<String>,
    /// "json" | "logfmt".
    pub format: Option<Spanned<String>>,
    /// Query parameters whose values are logged as REDACTED.
    pub redact_query: Option<Vec<String>>,
}

/// `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    pub name: Option<String>,
    pub listen: Spanned<String>,
    /// `[[listener.tls]]`: certificates; the listener speaks HTTPS when present.
    pub tls: Option<Spanned<Vec<FileListenerCert>>>,
    /// "1.2" (default) or "1.3".
    pub tls_min_version: Option<Spanned<String>>,
    pub tls_handshake_timeout_ms: Option<Spanned<u64>>,
    /// CA bundle: client certificates signed by it are required.
    pub tls_client_ca: Option<Spanned<String>>,
    /// HTTPS: offer `h2` by ALPN (default true).
    pub http2: Option<Spanned<bool>>,
    /// Plain HTTP: also accept HTTP/2 with prior knowledge (default false).
    pub h2c: Option<Spanned<bool>>,
}

/// One `[[listener.tls]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListenerCert {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    pub sni: Option<Spanned<Vec<String>>>,
}

/// An upstream's `tls = { .. }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamTls {
    pub sni: Option<String>,
    pub ca_file: Option<String>,
    pub verify: Option<bool>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

/// `[upstream.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub endpoints: Spanned<Vec<FileEndpoint>>,
    /// Re-resolve DNS-named endpoints this often.
    pub dns_refresh_ms: Option<Spanned<u64>>,
    pub balance: Option<Spanned<String>>,
    pub egress_ip: Option<Spanned<OneOrMany>>,
    pub connect_timeout_ms: Option<u64>,
    pub read_timeout_ms: Option<u64>,
    pub pool_idle_timeout_ms: Option<u64>,
    pub pool_max_idle_per_endpoint: Option<usize>,
    pub max_requests_per_connection: Option<u32>,
    pub max_connections: Option<Spanned<u32>>,
    pub retry_budget_percent: Option<Spanned<u32>>,
    pub health: Option<Spanned<FileHealth>>,
    pub outlier: Option<Spanned<FileOutlier>>,
    /// "fail_fast" | "try_all".
    pub when_all_down: Option<Spanned<String>>,
    /// TLS to the endpoints.
    pub tls: Option<Spanned<FileUpstreamTls>>,
}

/// `health = { .. }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealth {
    pub path: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub unhealthy_after: Option<u32>,
    pub healthy_after: Option<u32>,
    pub expected_status: Option<[u16; 2]>,
}

/// `outlier = { .. }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutlier {
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<u32>,
    pub base_ejection_ms: Option<u64>,
    pub max_ejection_ms: Option<u64>,
    pub max_ejected_percent: Option<u32>,
}

/// One element of `endpoints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEndpoint {
    pub addr: Spanned<String>,
    pub weight: Option<Spanned<u32>>,
}

/// `[service.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileService {
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    pub base_path: Option<Spanned<String>>,
    #[serde(default)]
    pub ip_allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub ip_deny: Vec<Spanned<String>>,
    pub max_qps: Option<Spanned<u64>>,
    pub burst: Option<Spanned<u64>>,
    /// "client_ip" | "header:NAME".
    pub limit_by: Option<Spanned<String>>,
    pub key_qps: Option<Spanned<u64>>,
    pub key_burst: Option<Spanned<u64>>,
    pub key_table_size: Option<Spanned<usize>>,
    /// A `[waf.NAME]` for every API of the service.
    pub waf: Option<Spanned<String>>,
    /// "instance" | "cluster": where `max_qps` holds.
    pub scope: Option<Spanned<String>>,
    pub auth: Option<Spanned<FileAuth>>,
    pub consumers: Option<Spanned<Vec<String>>>,
    pub request_headers: Option<Spanned<FileHeaderRules>>,
    pub response_headers: Option<Spanned<FileHeaderRules>>,
    pub cors: Option<Spanned<FileCors>>,
    #[serde(default)]
    pub api: Vec<FileApi>,
}

/// `[[service.NAME.api]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApi {
    pub name: Spanned<String>,
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    pub path: Spanned<String>,
    pub upstream: Option<Spanned<String>>,
    pub mock: Option<Spanned<FileMock>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub upstream_path: Option<Spanned<String>>,
    #[serde(default)]
    pub strip_base_path: bool,
    pub max_body_bytes: Option<u64>,
    pub max_in_flight: Option<Spanned<u32>>,
    pub retries: Option<Spanned<u32>>,
    pub retry_on_connection_error: Option<bool>,
    pub per_try_timeout_ms: Option<Spanned<u64>>,
    pub max_qps: Option<Spanned<u64>>,
    pub burst: Option<Spanned<u64>>,
    /// "client_ip" | "header:NAME".
    pub limit_by: Option<Spanned<String>>,
    pub key_qps: Option<Spanned<u64>>,
    pub key_burst: Option<Spanned<u64>>,
    pub key_table_size: Option<Spanned<usize>>,
    /// Overrides the service's `waf`; "" turns it off for this API.
    pub waf: Option<Spanned<String>>,
    /// "instance" | "cluster": where `max_qps` holds.
    pub scope: Option<Spanned<String>>,
    pub auth: Option<Spanned<FileAuth>>,
    pub consumers: Option<Spanned<Vec<String>>>,
    pub request_headers: Option<Spanned<FileHeaderRules>>,
    pub response_headers: Option<Spanned<FileHeaderRules>>,
    pub cors: Option<Spanned<FileCors>>,
    /// The Host sent upstream instead of the client's.
    pub upstream_host: Option<Spanned<String>>,
}

/// `mock = { status, headers, body }`: a static response served by the gateway itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMock {
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}
