//! TLS to upstreams: the rustls client config of an upstream (`tls = { .. }`): which roots to
//! trust (a CA file, else the system's), the name to send and verify, an optional client
//! certificate, or no verification at all (allowed, and logged loudly at start).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::certs::{read_chain, read_key, read_roots};

/// An upstream's TLS settings as configured.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTlsSpec {
    /// Name sent as SNI and verified against the certificate; unset: the endpoint's IP address
    /// (no SNI is sent for an address, and the certificate must list it).
    pub sni: Option<String>,
    /// CA bundle to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// An upstream's compiled TLS.
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    pub server_name: Option<ServerName<'static>>,
    pub verify: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").field("server_name", &self.server_name).field("verify", &self.verify).finish()
    }
}

impl UpstreamTls {
    /// Errors name the setting (`sni`, `ca_file`, `client_cert`, `client_key`) and the reason.
    pub fn build(spec: &UpstreamTlsSpec) -> Result<Self, (&'static str, String)> {
        let server_name = match &spec.sni {
            None => None,
            Some(s) => Some(
                ServerName::try_from(s.clone())
                    .map_err(|_| ("sni", format!("\"{s}\" is not a DNS name or IP address")))?,
            ),
        };
        let provider = super::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ("tls", e.to_string()))?;
        let builder = if !spec.verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            let roots = match &spec.ca_file {
                Some(path) => read_roots(path).map_err(|m| ("ca_file", m))?,
                None => system_roots(),
            };
            builder.with_root_certificates(roots)
        };
        let config = match (&spec.client_cert, &spec.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_chain(cert).map_err(|m| ("client_cert", m))?;
                let key = read_key(key).map_err(|m| ("client_key", m))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| ("client_key", e.to_string()))?
            }
            (Some(_), None) => return Err(("client_key", "client_cert needs client_key".into())),
            (None, Some(_)) => return Err(("client_cert", "client_key needs client_cert".into())),
        };
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { config: Arc::new(config), server_name, verify: spec.verify })
    }

    /// The name to verify for a connection to `ip`.
    pub fn name_for(&self, ip: IpAddr) -> ServerName<'static> {
        self.server_name.clone().unwrap_or(ServerName::IpAddress(ip.into()))
    }
}

/// The host's trusted roots (Debian: /etc/ssl/certs); unreadable ones are skipped.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!("No system CA certificates found; upstream TLS without ca_file will fail verification");
    }
    roots
}

/// `verify = false`: any certificate is accepted; the handshake's signatures are still checked,
/// so the connection is encrypted to whoever holds the presented certificate's key.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
