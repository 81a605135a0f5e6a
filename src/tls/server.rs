//! HTTPS listeners: the rustls server config (versions, ALPN, SNI certificates, optional client
//! certificates, session tickets and cache) built from a listener's `tls` settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::ServerConfig;

use super::certs::{certified_key, now_unix, read_roots, CertInfo};
use super::sni::{covers, normal, Entry, SniResolver};

/// Sessions kept for TLS 1.2 session-id resumption, per listener (shared by all workers).
const SESSION_CACHE_ENTRIES: usize = 16_384;

/// Oldest protocol version a listener accepts (TLS 1.0 and 1.1 never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// One `[[listener.tls]]` entry, paths already resolved against the config file's directory.
#[derive(Debug, Clone)]
pub struct SniCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Names this certificate is chosen for; empty on the default (first) entry is fine.
    pub sni: Vec<String>,
}

/// A listener's TLS settings as configured.
#[derive(Debug, Clone)]
pub struct ListenerTlsSpec {
    pub certs: Vec<SniCert>,
    pub min_version: MinVersion,
    pub handshake_timeout: Duration,
    /// Require client certificates signed by these CAs.
    pub client_ca: Option<PathBuf>,
    /// Offer `h2` by ALPN (before `http/1.1`).
    pub http2: bool,
}

/// A listener's compiled TLS: the shared rustls config and what the request path needs.
#[derive(Debug)]
pub struct ListenerTls {
    pub config: Arc<ServerConfig>,
    pub handshake_timeout: Duration,
    /// One per `[[listener.tls]]` entry, in order.
    pub certs: Vec<CertInfo>,
    resolver: Arc<SniResolver>,
}

/// Which part of a spec an error is about, for the config error's key path.
#[derive(Debug)]
pub enum SpecError {
    /// `tls[i].cert` / `tls[i].key` / `tls[i].sni`
    Entry(usize, &'static str, String),
    ClientCa(String),
    Other(String),
}

impl ListenerTls {
    /// Loads every certificate and key and builds the rustls config. Warnings (an expired
    /// certificate) are returned beside it.
    pub fn build(spec: &ListenerTlsSpec) -> Result<(Self, Vec<String>), SpecError> {
        let mut entries = Vec::with_capacity(spec.certs.len());
        let mut infos = Vec::with_capacity(spec.certs.len());
        let mut warnings = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (i, c) in spec.certs.iter().enumerate() {
            let (key, info) = certified_key(&c.cert, &c.key).map_err(|m| {
                let field = if m.contains(&c.key.display().to_string()) { "key" } else { "cert" };
                SpecError::Entry(i, field, m)
            })?;
            let mut sni = Vec::new();
            for name in &c.sni {
                let n = normal(name);
                let valid = !n.is_empty()
                    && n.strip_prefix("*.")
                        .unwrap_or(&n)
                        .split('.')
                        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
                if !valid {
                    let msg = format!("\"{name}\" is not a DNS name or a one-label wildcard like \"*.example.com\"");
                    return Err(SpecError::Entry(i, "sni", msg));
                }
                if seen.contains(&n) {
                    return Err(SpecError::Entry(i, "sni", format!("\"{name}\" is already listed by another entry")));
                }
                seen.push(n.clone());
                sni.push(n);
            }
            if info.not_after < now_unix() {
                warnings.push(format!("certificate {} expired (not_after {})", info.file, info.not_after));
            }
            // what the certificate is valid for, and what it was configured to answer
            let mut covers: Vec<String> = info.sans.iter().map(|s| normal(s)).collect();
            covers.extend(sni.iter().cloned());
            entries.push(Entry { key, sni, covers });
            infos.push(info);
        }
        if entries.is_empty() {
            return Err(SpecError::Other("needs at least one [[listener.tls]] entry with cert and key".into()));
        }
        let resolver = Arc::new(SniResolver { entries });
        let versions: &[&rustls::SupportedProtocolVersion] = match spec.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let provider = super::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| SpecError::Other(e.to_string()))?;
        let builder = match &spec.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = read_roots(path).map_err(SpecError::ClientCa)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| SpecError::ClientCa(format!("{}: {e}", path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        // a client offering only protocols we lack is refused; with `ignore_client_order`, h2 wins
        // whenever the client offers it
        config.alpn_protocols = match spec.http2 {
            true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            false => vec![b"http/1.1".to_vec()],
        };
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| SpecError::Other(format!("session tickets: {e}")))?;
        config.ignore_client_order = true;
        let tls =
            ListenerTls { config: Arc::new(config), handshake_timeout: spec.handshake_timeout, certs: infos, resolver };
        Ok((tls, warnings))
    }

    /// The names covered by the certificate chosen for `server_name` (for the Host check);
    /// `None` when it names none (no SANs, no `sni`): nothing to check against.
    pub fn names_for(&self, server_name: Option<&str>) -> Option<&[String]> {
        let covers = &self.resolver.entries[self.resolver.choose(server_name)].covers;
        (!covers.is_empty()).then_some(&covers[..])
    }
}

/// Whether `host` (a Host value, port stripped here) is one of `names` (exact or wildcard).
pub fn host_covered(names: &[String], host: &[u8]) -> bool {
    let host = match host.first() {
        Some(b'[') => host.split(|&b| b == b']').next().map_or(host, |h| &h[1..]),
        _ => host.split(|&b| b == b':').next().unwrap_or(host),
    };
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let host = normal(host);
    names.iter().any(|n| covers(n, &host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_check_strips_ports_and_follows_wildcards() {
        let names = vec!["shop.example.com".to_string(), "*.shop.example.com".to_string(), "::1".to_string()];
        assert!(host_covered(&names, b"shop.example.com:8443"));
        assert!(host_covered(&names, b"API.Shop.Example.com"));
        assert!(host_covered(&names, b"[::1]:8443"));
        assert!(!host_covered(&names, b"other.example.com"));
        assert!(!host_covered(&names, b"a.b.shop.example.com"));
    }
}
