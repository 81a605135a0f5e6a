//! TLS compilation: listener certificates (`[[listener.tls]]`, `tls_*` keys) and upstream
//! `tls = { .. }`. Files are read and checked here, so `--check` finds every TLS error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::Compiler;
use crate::config::error::ConfigError;
use crate::config::file::{FileListener, FileUpstreamTls};
use crate::tls::{ListenerTls, ListenerTlsSpec, MinVersion, SniCert, UpstreamTls, UpstreamTlsSpec};

/// Default time allowed for a client's TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

impl Compiler<'_> {
    /// A config path made absolute against the config file's directory.
    fn file_path(&self, p: &str) -> PathBuf {
        let p = std::path::Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    pub(super) fn listener_tls(&self, i: usize, l: &FileListener) -> Result<Option<Arc<ListenerTls>>, ConfigError> {
        let base = format!("listener[{i}]");
        let Some(entries) = &l.tls else {
            let stray = [
                l.tls_min_version.as_ref().map(|s| ("tls_min_version", s.span())),
                l.tls_handshake_timeout_ms.as_ref().map(|s| ("tls_handshake_timeout_ms", s.span())),
                l.tls_client_ca.as_ref().map(|s| ("tls_client_ca", s.span())),
            ];
            if let Some((key, span)) = stray.into_iter().flatten().next() {
                return Err(self.err(format!("{base}.{key}"), span, "needs [[listener.tls]] certificates"));
            }
            return Ok(None);
        };
        let min_version = match l.tls_min_version.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("1.2", _)) => MinVersion::Tls12,
            Some(("1.3", _)) => MinVersion::Tls13,
            Some((v, span)) => {
                let msg = format!("\"{v}\" is not supported: \"1.2\" or \"1.3\" (TLS 1.0 and 1.1 are never offered)");
                return Err(self.err(format!("{base}.tls_min_version"), span, msg));
            }
        };
        let handshake_timeout = match &l.tls_handshake_timeout_ms {
            Some(t) if *t.get_ref() == 0 => {
                return Err(self.err(format!("{base}.tls_handshake_timeout_ms"), t.span(), "must be at least 1"))
            }
            Some(t) => Duration::from_millis(*t.get_ref()),
            None => Duration::from_millis(DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS),
        };
        let certs: Vec<SniCert> = entries
            .get_ref()
            .iter()
            .map(|e| SniCert {
                cert: self.file_path(e.cert.get_ref()),
                key: self.file_path(e.key.get_ref()),
                sni: e.sni.as_ref().map(|s| s.get_ref().clone()).unwrap_or_default(),
            })
            .collect();
        let spec = ListenerTlsSpec {
            certs,
            min_version,
            handshake_timeout,
            client_ca: l.tls_client_ca.as_ref().map(|c| self.file_path(c.get_ref())),
            http2: l.http2.as_ref().is_none_or(|h| *h.get_ref()),
        };
        use crate::tls::SpecError;
        let (tls, warnings) = ListenerTls::build(&spec).map_err(|e| match e {
            SpecError::Entry(n, field, msg) => {
                let entry = &entries.get_ref()[n];
                let span = match field {
                    "key" => entry.key.span(),
                    "sni" => entry.sni.as_ref().map_or(entry.cert.span(), Spanned::span),
                    _ => entry.cert.span(),
                };
                self.err(format!("{base}.tls[{n}].{field}"), span, msg)
            }
            SpecError::ClientCa(msg) => {
                let span = l.tls_client_ca.as_ref().map_or(entries.span(), Spanned::span);
                self.err(format!("{base}.tls_client_ca"), span, msg)
            }
            SpecError::Other(msg) => self.err(format!("{base}.tls"), entries.span(), msg),
        })?;
        self.warnings.borrow_mut().extend(warnings.into_iter().map(|w| format!("{base}.tls: {w}")));
        Ok(Some(Arc::new(tls)))
    }

    pub(super) fn upstream_tls(
        &self,
        base: &str,
        f: Option<&Spanned<FileUpstreamTls>>,
    ) -> Result<Option<Arc<UpstreamTls>>, ConfigError> {
        let Some(t) = f else { return Ok(None) };
        let v = t.get_ref();
        let spec = UpstreamTlsSpec {
            sni: v.sni.clone(),
            ca_file: v.ca_file.as_deref().map(|p| self.file_path(p)),
            verify: v.verify.unwrap_or(true),
            client_cert: v.client_cert.as_deref().map(|p| self.file_path(p)),
            client_key: v.client_key.as_deref().map(|p| self.file_path(p)),
        };
        if !spec.verify && spec.ca_file.is_some() {
            return Err(self.err(format!("{base}.tls.ca_file"), t.span(), "has no effect with verify = false"));
        }
        let tls =
            UpstreamTls::build(&spec).map_err(|(key, msg)| self.err(format!("{base}.tls.{key}"), t.span(), msg))?;
        if !spec.verify {
            self.warnings.borrow_mut().push(format!(
                "{base}.tls: verify = false: the upstream's certificate is NOT checked (anyone on the path can pose as it)"
            ));
        }
        Ok(Some(Arc::new(tls)))
    }
}
