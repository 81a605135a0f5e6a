//! TLS with rustls (data path: `net::Tls`): HTTPS listeners with SNI certificates, TLS to
//! upstreams, certificate facts for the admin endpoint.
//!
//! Everything here runs when a config is compiled (`--check` sees every error: missing or
//! malformed files, keys that do not match their certificate, duplicate SNI names); the
//! results are `Arc`s shared read-only by every worker. Handshakes run on the worker that
//! accepted (or dialed) the connection. Session tickets come from one ticketer per listener,
//! shared by all workers, so a ticket issued on one core resumes on any other.
//!
//! Crypto provider: ring (see bench/RESULTS.md for the measurement behind the choice).

mod certs;
mod client;
mod handshake;
mod server;
mod sni;

pub use certs::{now_unix, CertInfo};
pub use client::{UpstreamTls, UpstreamTlsSpec};
pub use handshake::{handshake, upstream_flag, HandshakeError};
pub use server::{host_covered, ListenerTls, ListenerTlsSpec, MinVersion, SniCert, SpecError};

use std::sync::Arc;

/// The crypto provider every TLS config uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// "TLSv1.2" / "TLSv1.3" for logs and metrics.
pub fn version_name(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    }
}
