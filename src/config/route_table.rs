//! `RouteTable`: host → service (longest `base_path`) → API (method + path), precompiled.
//!
//! Built by `compile.rs`, read by every worker in the route phase of the request path (`proxy/route.rs`). Matching allocates
//! nothing: hosts are lower-cased into a stack buffer, paths are compared as byte slices.
//!
//! Invariants:
//! - host tiers are tried in order exact → longest `*.suffix` → any-host; the first tier that knows
//!   the host wins (like nginx `server_name`), then the longest `base_path` on a segment boundary;
//! - inside a service: exact path → `{param}` pattern → longest `/prefix/*`; an API whose path
//!   matches but whose methods don't yields 405 with `Allow`, never a fall-through to another API.

use ahash::AHashMap;
use smallvec::SmallVec;

use super::snapshot::{ApiId, ServiceId};

const STD_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];

/// Allowed methods of one API. GET implies HEAD.
#[derive(Debug, Clone, Default)]
pub struct MethodSet {
    any: bool,
    bits: u16,
    extension: Vec<Box<[u8]>>,
}

impl MethodSet {
    /// Every method except TRACE and CONNECT, which an API must list explicitly (TRACE enables
    /// cross-site tracing; CONNECT opens tunnels).
    pub fn any() -> Self {
        Self { any: true, ..Self::default() }
    }

    /// Adds a method (case-sensitive, as RFC 9110 §9.1 requires).
    pub fn insert(&mut self, method: &str) {
        match STD_METHODS.iter().position(|m| *m == method) {
            Some(i) => self.bits |= 1 << i,
            None => self.extension.push(method.as_bytes().into()),
        }
        if method == "GET" {
            self.bits |= 1 << 1;
        }
    }

    /// Whether `method` is allowed.
    pub fn allows(&self, method: &[u8]) -> bool {
        if self.any {
            return method != b"TRACE" && method != b"CONNECT";
        }
        match STD_METHODS.iter().position(|m| m.as_bytes() == method) {
            Some(i) => self.bits & (1 << i) != 0,
            None => self.extension.iter().any(|m| &**m == method),
        }
    }

    fn append_to(&self, out: &mut Vec<String>) {
        let names = STD_METHODS
            .iter()
            .enumerate()
            .filter(|(i, m)| (self.any && !matches!(**m, "TRACE" | "CONNECT")) || self.bits & (1 << i) != 0);
        for (_, m) in names {
            push_unique(out, m);
        }
        for m in &self.extension {
            push_unique(out, &String::from_utf8_lossy(m));
        }
    }
}

fn push_unique(out: &mut Vec<String>, m: &str) {
    if !out.iter().any(|x| x == m) {
        out.push(m.to_string());
    }
}

/// One path segment of a `{param}` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<[u8]>),
    Param,
}

#[derive(Debug, Clone)]
struct Entry {
    api: ApiId,
    methods: MethodSet,
}

/// Routes of one service.
#[derive(Debug, Default)]
struct ServiceRoutes {
    base_path: Box<[u8]>,
    exact: AHashMap<Box<[u8]>, SmallVec<[Entry; 2]>>,
    params: Vec<(Vec<Segment>, Entry)>,
    /// Longest prefix first.
    prefixes: Vec<(Box<[u8]>, Entry)>,
}

/// The result of a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    Found {
        api: ApiId,
        /// Bytes of the path taken by the service's `base_path`.
        base_len: usize,
        /// For prefix APIs: bytes of the relative path the prefix matched.
        prefix_len: Option<usize>,
    },
    NotFound,
    /// The path matched, the method did not; carries the `Allow` value.
    MethodNotAllowed(String),
}

/// Compiled matcher.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact_hosts: AHashMap<Box<[u8]>, Vec<ServiceId>>,
    wildcard_hosts: Vec<(Box<[u8]>, Vec<ServiceId>)>,
    any_host: Vec<ServiceId>,
    services: Vec<ServiceRoutes>,
}

/// A route path as written in config, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    /// `/x/*`: stored without the `/*`.
    Prefix(String),
    Params(String),
}

impl PathPattern {
    /// Classifies a config path; `Err` says why it is invalid.
    pub fn parse(path: &str) -> Result<Self, String> {
        if !path.starts_with('/') {
            return Err(format!("path \"{path}\" must start with '/'"));
        }
        if path.bytes().any(|b| b <= b' ' || b >= 0x7f || b == b'?' || b == b'#') {
            return Err(format!("path \"{path}\" contains a space, control, '?', '#' or non-ASCII byte"));
        }
        if let Some(prefix) = path.strip_suffix("/*") {
            if prefix.contains(['*', '{', '}']) {
                return Err(format!("path \"{path}\": a prefix path cannot also hold '*' or '{{param}}'"));
            }
            return Ok(Self::Prefix(prefix.to_string()));
        }
        if path.contains('*') {
            return Err(format!("path \"{path}\": '*' is only allowed as a final \"/*\""));
        }
        if path.contains(['{', '}']) {
            for seg in path.split('/').skip(1) {
                let is_param = seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2;
                let well_formed = is_param && !seg[1..seg.len() - 1].contains(['{', '}']);
                if seg.contains(['{', '}']) && !well_formed {
                    return Err(format!("path \"{path}\": a parameter must be a whole segment like {{id}}"));
                }
            }
            return Ok(Self::Params(path.to_string()));
        }
        Ok(Self::Exact(path.to_string()))
    }
}

impl RouteTable {
    /// Registers a service; returns nothing, the service id is its position.
    pub(crate) fn add_service(&mut self, id: ServiceId, hosts: &[String], base_path: &str) {
        debug_assert_eq!(id, self.services.len());
        self.services.push(ServiceRoutes { base_path: base_path.as_bytes().into(), ..Default::default() });
        if hosts.is_empty() {
            self.any_host.push(id);
        }
        for host in hosts {
            let host = host.to_ascii_lowercase();
            if let Some(suffix) = host.strip_prefix('*') {
                match self.wildcard_hosts.iter_mut().find(|(s, _)| **s == *suffix.as_bytes()) {
                    Some((_, ids)) => ids.push(id),
                    None => self.wildcard_hosts.push((suffix.as_bytes().into(), vec![id])),
                }
            } else {
                self.exact_hosts.entry(host.as_bytes().into()).or_default().push(id);
            }
        }
    }

    /// Registers an API path (relative to the service's base path) with its methods.
    pub(crate) fn add_api(&mut self, service: ServiceId, api: ApiId, pattern: &PathPattern, methods: MethodSet) {
        let routes = &mut self.services[service];
        let entry = Entry { api, methods };
        match pattern {
            PathPattern::Exact(p) => routes.exact.entry(p.as_bytes().into()).or_default().push(entry),
            PathPattern::Prefix(p) => routes.prefixes.push((p.as_bytes().into(), entry)),
            PathPattern::Params(p) => {
                let segs = p
                    .split('/')
                    .skip(1)
                    .map(|s| if s.starts_with('{') { Segment::Param } else { Segment::Literal(s.as_bytes().into()) })
                    .collect();
                routes.params.push((segs, entry));
            }
        }
    }

    /// Sorts candidate lists; call once after all services and APIs are added.
    pub(crate) fn finish(&mut self) {
        let lens: Vec<usize> = self.services.iter().map(|s| s.base_path.len()).collect();
        let by_base = |ids: &mut Vec<ServiceId>| ids.sort_by_key(|&id| std::cmp::Reverse(lens[id]));
        self.exact_hosts.values_mut().for_each(by_base);
        self.wildcard_hosts.iter_mut().for_each(|(_, ids)| by_base(ids));
        by_base(&mut self.any_host);
        self.wildcard_hosts.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        for s in &mut self.services {
            s.prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        }
    }

    /// Matches a request. `host` may carry a port; `path` must not carry the query.
    pub fn find(&self, host: &[u8], method: &[u8], path: &[u8]) -> RouteMatch {
        let mut buf = [0u8; 256];
        let host = lower_host(host, &mut buf);
        let services = self.services_for(host);
        let Some((sid, base_len)) = services.iter().find_map(|&sid| {
            let base = &self.services[sid].base_path;
            is_segment_prefix(path, base).then_some((sid, base.len()))
        }) else {
            return RouteMatch::NotFound;
        };
        let rel: &[u8] = if path.len() == base_len { b"/" } else { &path[base_len..] };
        self.services[sid].find(method, rel, base_len)
    }

    fn services_for(&self, host: Option<&[u8]>) -> &[ServiceId] {
        if let Some(host) = host {
            if let Some(ids) = self.exact_hosts.get(host) {
                return ids;
            }
            if let Some((_, ids)) =
                self.wildcard_hosts.iter().find(|(suffix, _)| host.ends_with(suffix) && host.len() > suffix.len())
            {
                return ids;
            }
        }
        &self.any_host
    }
}

impl ServiceRoutes {
    fn find(&self, method: &[u8], rel: &[u8], base_len: usize) -> RouteMatch {
        let mut allow: Option<Vec<String>> = None;
        let mut consider = |entry: &Entry, prefix_len: Option<usize>| {
            if entry.methods.allows(method) {
                return Some(RouteMatch::Found { api: entry.api, base_len, prefix_len });
            }
            entry.methods.append_to(allow.get_or_insert_with(Vec::new));
            None
        };
        if let Some(entries) = self.exact.get(rel) {
            if let Some(m) = entries.iter().find_map(|e| consider(e, None)) {
                return m;
            }
        }
        for (segs, entry) in &self.params {
            if params_match(segs, rel) {
                if let Some(m) = consider(entry, None) {
                    return m;
                }
            }
        }
        for (prefix, entry) in &self.prefixes {
            if is_segment_prefix(rel, prefix) {
                if let Some(m) = consider(entry, Some(prefix.len())) {
                    return m;
                }
            }
        }
        match allow {
            Some(methods) => RouteMatch::MethodNotAllowed(methods.join(", ")),
            None => RouteMatch::NotFound,
        }
    }
}

/// `prefix` is empty, equal to `path`, or followed in `path` by '/'.
fn is_segment_prefix(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix) && (path.len() == prefix.len() || prefix.is_empty() || path[prefix.len()] == b'/')
}

fn params_match(segs: &[Segment], rel: &[u8]) -> bool {
    let mut parts = rel.split(|&b| b == b'/').skip(1);
    for seg in segs {
        match (seg, parts.next()) {
            (Segment::Literal(l), Some(p)) if **l == *p => {}
            (Segment::Param, Some(p)) if !p.is_empty() => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

/// Lower-cases `host` without its port into `buf`; `None` when it does not fit.
fn lower_host<'b>(host: &[u8], buf: &'b mut [u8; 256]) -> Option<&'b [u8]> {
    let host = strip_port(host);
    if host.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(host) {
        *d = s.to_ascii_lowercase();
    }
    Some(&buf[..host.len()])
}

fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

#[cfg(test)]
mod tests;
