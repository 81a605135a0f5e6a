//! Reading PEM certificate chains and keys, and the facts `/config` shows about a certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// What the admin endpoint shows for a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The file it was read from.
    pub file: String,
    pub subject: String,
    /// DNS names (and IP addresses) it is valid for.
    pub sans: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertInfo {
    /// Whole days until `not_after` (negative once expired).
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after - now_unix).div_euclid(86_400)
    }
}

/// Reads a PEM chain (leaf first). Errors name the file and what is wrong with it.
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&text).collect();
    match certs {
        Ok(c) if c.is_empty() => Err(format!("{} holds no PEM certificate", path.display())),
        Ok(c) => Ok(c),
        Err(e) => Err(format!("{} is not a valid PEM certificate chain: {e:?}", path.display())),
    }
}

/// Reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| format!("{} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e:?}", path.display()))
}

/// A chain and its key as a signing identity, checked to belong together.
pub(crate) fn certified_key(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, CertInfo), String> {
    let chain = read_chain(cert)?;
    let key_der = read_key(key)?;
    let signer = super::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("{}: unsupported private key: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| format!("{} does not match the certificate in {}: {e}", key.display(), cert.display()))?;
    let info = describe(&ck.cert[0], cert)?;
    Ok((Arc::new(ck), info))
}

/// Subject, SANs and expiry of a DER certificate.
pub(crate) fn describe(der: &CertificateDer<'_>, file: &Path) -> Result<CertInfo, String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("{}: cannot parse the certificate: {e}", file.display()))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(ip) => sans.push(match ip.len() {
                    4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(ip);
                        std::net::Ipv6Addr::from(b).to_string()
                    }
                    _ => continue,
                }),
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        file: file.display().to_string(),
        subject: cert.subject().to_string(),
        sans,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Reads a PEM bundle of CA certificates into a root store.
pub(crate) fn read_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_chain(path)? {
        roots.add(cert).map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
