//! Upstream compilation: endpoints, egress pools, balancing, health checks, outlier ejection.

use std::net::{IpAddr, SocketAddr};

use toml::Spanned;

use super::*;
use crate::config::error::ConfigError;
use crate::config::file::{FileHealth, FileOutlier, FileUpstream, OneOrMany};
use crate::upstream::health::HealthConfig;
use crate::upstream::outlier::OutlierConfig;

impl Compiler<'_> {
    /// One IP or a list of IPs, all of one address family.
    pub(super) fn ips(&self, path: &str, v: Option<&Spanned<OneOrMany>>) -> Result<Vec<IpAddr>, ConfigError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let list: Vec<&String> = match v.get_ref() {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(l) => l.iter().collect(),
        };
        let mut out = Vec::new();
        for s in list {
            let ip: IpAddr =
                s.parse().map_err(|_| self.err(path, v.span(), format!("\"{s}\" is not an IP address")))?;
            if out.first().is_some_and(|f: &IpAddr| f.is_ipv4() != ip.is_ipv4()) {
                return Err(self.err(path, v.span(), "mixes IPv4 and IPv6 addresses"));
            }
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        if out.is_empty() {
            return Err(self.err(path, v.span(), "needs at least one IP address"));
        }
        Ok(out)
    }

    pub(super) fn upstream(
        &self,
        name: &str,
        f: &FileUpstream,
        default_egress: &[IpAddr],
    ) -> Result<Upstream, ConfigError> {
        let base = format!("upstream.{name}");
        check_name(name).map_err(|m| ConfigError::new(&base, None, m))?;
        let list = f.endpoints.get_ref();
        if list.is_empty() {
            return Err(self.err(format!("{base}.endpoints"), f.endpoints.span(), "needs at least one endpoint"));
        }
        let own_egress = self.ips(&format!("{base}.egress_ip"), f.egress_ip.as_ref())?;
        let egress_ips = if own_egress.is_empty() { default_egress.to_vec() } else { own_egress };
        let mut endpoints = Vec::with_capacity(list.len());
        let mut names = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let path = format!("{base}.endpoints[{i}]");
            let weight = match &e.weight {
                Some(w) if !(1..=1000).contains(w.get_ref()) => {
                    return Err(self.err(format!("{path}.weight"), w.span(), "must be from 1 to 1000"));
                }
                Some(w) => *w.get_ref(),
                None => 1,
            };
            let text = e.addr.get_ref();
            let addr: SocketAddr = match text.parse() {
                Ok(a) => a,
                Err(_) => match dns_name(text) {
                    Some((host, port)) => {
                        if names.iter().any(|n: &DnsName| n.host == host && n.port == port) {
                            return Err(self.err(
                                format!("{path}.addr"),
                                e.addr.span(),
                                format!("\"{text}\" is listed twice"),
                            ));
                        }
                        names.push(DnsName { host, port, weight });
                        continue;
                    }
                    None => {
                        let msg = format!("\"{text}\" is not an IP:port address or a host name with a port");
                        return Err(self.err(format!("{path}.addr"), e.addr.span(), msg));
                    }
                },
            };
            if let Some(ip) = egress_ips.first() {
                if ip.is_ipv4() != addr.is_ipv4() {
                    let msg = format!("{addr} cannot be reached from egress IP {ip} (address families differ)");
                    return Err(self.err(format!("{path}.addr"), e.addr.span(), msg));
                }
            }
            endpoints.push(Endpoint { addr, weight, from: None });
        }
        // each name expands to its current addresses (those the egress family can reach), its
        // weight split among them
        for n in &names {
            let ips: Vec<IpAddr> = (self.resolved.get(&n.host).into_iter().flatten())
                .filter(|ip| egress_ips.first().is_none_or(|e| e.is_ipv4() == ip.is_ipv4()))
                .copied()
                .collect();
            let from: std::sync::Arc<str> = n.host.as_str().into();
            let weight = (n.weight / ips.len().max(1) as u32).max(1);
            for ip in ips {
                let addr = SocketAddr::new(ip, n.port);
                if !endpoints.iter().any(|e: &Endpoint| e.addr == addr) {
                    endpoints.push(Endpoint { addr, weight, from: Some(from.clone()) });
                }
            }
        }
        let dns_refresh = match &f.dns_refresh_ms {
            Some(v) if *v.get_ref() < 100 => {
                return Err(self.err(format!("{base}.dns_refresh_ms"), v.span(), "must be at least 100"))
            }
            Some(v) => Duration::from_millis(*v.get_ref()),
            None => Duration::from_millis(DEFAULT_DNS_REFRESH_MS),
        };
        let balance = match f.balance.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
            None | Some(("round_robin", _)) => Balance::RoundRobin,
            Some(("least_request", _)) => Balance::LeastRequest,
            Some(("hash(client_ip)", _)) => Balance::Hash(HashKey::ClientIp),
            Some((other, span)) => match other.strip_prefix("hash(header:").and_then(|r| r.strip_suffix(')')) {
                Some(name) if !name.is_empty() && name.bytes().all(is_tchar) => {
                    Balance::Hash(HashKey::Header(name.to_ascii_lowercase()))
                }
                _ => {
                    let msg = format!(
                        "unknown balance policy \"{other}\"; supported: \"round_robin\", \"least_request\", \"hash(client_ip)\", \"hash(header:NAME)\""
                    );
                    return Err(self.err(format!("{base}.balance"), span, msg));
                }
            },
        };
        let tls = self.upstream_tls(&base, f.tls.as_ref())?;
        // what makes a pooled connection reusable for this upstream, stable across reloads:
        // the name, the source addresses and the TLS settings (the file's words, not the Arc)
        let pool_identity = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            name.hash(&mut h);
            egress_ips.hash(&mut h);
            f.tls
                .as_ref()
                .map(|t| {
                    let t = t.get_ref();
                    (&t.sni, &t.ca_file, t.verify, &t.client_cert, &t.client_key)
                })
                .hash(&mut h);
            h.finish()
        };
        Ok(Upstream {
            pool_identity,
            name: name.to_string(),
            endpoints,
            names,
            dns_refresh,
            balance,
            egress_ips,
            connect_timeout: ms(f.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS),
            read_timeout: ms(f.read_timeout_ms, DEFAULT_READ_TIMEOUT_MS),
            pool_idle_timeout: ms(f.pool_idle_timeout_ms, DEFAULT_POOL_IDLE_TIMEOUT_MS),
            pool_max_idle_per_endpoint: f.pool_max_idle_per_endpoint.unwrap_or(DEFAULT_POOL_MAX_IDLE_PER_ENDPOINT),
            max_requests_per_connection: f
                .max_requests_per_connection
                .unwrap_or(DEFAULT_MAX_REQUESTS_PER_CONNECTION)
                .max(1),
            retry_budget_percent: match &f.retry_budget_percent {
                Some(p) if *p.get_ref() > 100 => {
                    return Err(self.err(format!("{base}.retry_budget_percent"), p.span(), "must be from 0 to 100"))
                }
                Some(p) => *p.get_ref(),
                None => DEFAULT_RETRY_BUDGET_PERCENT,
            },
            max_connections: match &f.max_connections {
                Some(m) if *m.get_ref() == 0 => {
                    return Err(self.err(format!("{base}.max_connections"), m.span(), "must be at least 1"))
                }
                Some(m) => Some(*m.get_ref()),
                None => None,
            },
            tls,
            health: self.health(&base, f.health.as_ref())?,
            outlier: self.outlier(&base, f.outlier.as_ref())?,
            when_all_down: match f.when_all_down.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
                None | Some(("fail_fast", _)) => AllDown::FailFast,
                Some(("try_all", _)) => AllDown::TryAll,
                Some((other, span)) => {
                    let msg = format!("\"{other}\" is not \"fail_fast\" or \"try_all\"");
                    return Err(self.err(format!("{base}.when_all_down"), span, msg));
                }
            },
        })
    }

    pub(super) fn health(
        &self,
        base: &str,
        f: Option<&Spanned<FileHealth>>,
    ) -> Result<Option<HealthConfig>, ConfigError> {
        let Some(h) = f else { return Ok(None) };
        let span = h.span();
        let h = h.get_ref();
        if let Some(p) = &h.path {
            if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b >= 0x7f) {
                return Err(self.err(
                    format!("{base}.health.path"),
                    span,
                    format!("\"{p}\" must be a path starting with '/'"),
                ));
            }
        }
        let expected_status = match h.expected_status {
            Some([lo, hi]) if lo < 100 || hi > 599 || lo > hi => {
                return Err(self.err(
                    format!("{base}.health.expected_status"),
                    span,
                    "must be [low, high] within 100-599",
                ));
            }
            Some([lo, hi]) => (lo, hi),
            None => (200, 399),
        };
        let interval = ms(h.interval_ms, DEFAULT_HEALTH_INTERVAL_MS);
        let timeout = ms(h.timeout_ms, DEFAULT_HEALTH_TIMEOUT_MS);
        if interval.is_zero() || timeout.is_zero() {
            return Err(self.err(format!("{base}.health"), span, "interval_ms and timeout_ms must be above 0"));
        }
        Ok(Some(HealthConfig {
            path: h.path.clone(),
            interval,
            timeout,
            unhealthy_after: h.unhealthy_after.unwrap_or(DEFAULT_UNHEALTHY_AFTER).max(1),
            healthy_after: h.healthy_after.unwrap_or(DEFAULT_HEALTHY_AFTER).max(1),
            expected_status,
        }))
    }

    pub(super) fn outlier(
        &self,
        base: &str,
        f: Option<&Spanned<FileOutlier>>,
    ) -> Result<Option<OutlierConfig>, ConfigError> {
        let default = FileOutlier {
            enabled: None,
            consecutive_failures: None,
            base_ejection_ms: None,
            max_ejection_ms: None,
            max_ejected_percent: None,
        };
        let (o, span) = match f {
            Some(o) => (o.get_ref(), o.span()),
            None => (&default, 0..0),
        };
        if o.enabled == Some(false) {
            return Ok(None);
        }
        let pct = o.max_ejected_percent.unwrap_or(DEFAULT_MAX_EJECTED_PERCENT);
        if pct > 100 {
            return Err(self.err(format!("{base}.outlier.max_ejected_percent"), span, "must be from 0 to 100"));
        }
        Ok(Some(OutlierConfig {
            consecutive_failures: o.consecutive_failures.unwrap_or(DEFAULT_CONSECUTIVE_FAILURES).max(1),
            base_ejection: ms(o.base_ejection_ms, DEFAULT_BASE_EJECTION_MS),
            max_ejection: ms(o.max_ejection_ms, DEFAULT_MAX_EJECTION_MS),
            max_ejected_percent: pct,
        }))
    }
}

/// `host:port` with a DNS host name (letters, digits, `-`, `.`; not an address), lower-cased,
/// without a trailing dot.
fn dns_name(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let ok = host.len() <= 253
        && host.split('.').all(label_ok)
        && host.bytes().any(|b| b.is_ascii_alphabetic())
        && host.parse::<IpAddr>().is_err();
    ok.then_some((host, port))
}
