//! HTTP/2 compilation: a listener's `http2` / `h2c` keys and the `[http2]` limits.

use std::time::Duration;

use toml::Spanned;

use super::Compiler;
use crate::config::error::ConfigError;
use crate::config::file::{FileHttp2, FileListener};
use crate::config::snapshot::Http2Config;

pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 128;
/// RFC 9113's initial window: what a client assumes before our SETTINGS arrive.
pub const DEFAULT_INITIAL_WINDOW_BYTES: u32 = 65_535;
pub const DEFAULT_MAX_HEADER_LIST_BYTES: u32 = 32_768;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;

impl Compiler<'_> {
    /// Whether the listener speaks HTTP/2: `http2` (default true) on HTTPS, `h2c` (default false)
    /// on plain HTTP; each key on the other kind of listener is an error.
    pub(super) fn listener_http2(&self, i: usize, l: &FileListener, tls: bool) -> Result<bool, ConfigError> {
        let base = format!("listener[{i}]");
        match (tls, &l.http2, &l.h2c) {
            (true, _, Some(h)) => Err(self.err(
                format!("{base}.h2c"),
                h.span(),
                "is for plain listeners; an HTTPS listener offers HTTP/2 by ALPN (`http2`)",
            )),
            (false, Some(h), _) => Err(self.err(
                format!("{base}.http2"),
                h.span(),
                "needs [[listener.tls]] (HTTP/2 by ALPN); for HTTP/2 without TLS set `h2c = true`",
            )),
            (true, h, None) => Ok(h.as_ref().is_none_or(|h| *h.get_ref())),
            (false, None, h) => Ok(h.as_ref().is_some_and(|h| *h.get_ref())),
        }
    }

    pub(super) fn http2(&self, f: Option<&Spanned<FileHttp2>>) -> Result<Http2Config, ConfigError> {
        let f = f.map(Spanned::get_ref);
        let bounded = |key: &str, v: Option<&Spanned<u32>>, default: u32, lo: u32, hi: u32| {
            self.bounded(&format!("http2.{key}"), v, default, lo, hi)
        };
        let idle_ms = match f.and_then(|f| f.idle_timeout_ms.as_ref()) {
            Some(t) if *t.get_ref() == 0 => {
                return Err(self.err("http2.idle_timeout_ms", t.span(), "must be at least 1"));
            }
            Some(t) => *t.get_ref(),
            None => DEFAULT_IDLE_TIMEOUT_MS,
        };
        Ok(Http2Config {
            max_concurrent_streams: bounded(
                "max_concurrent_streams",
                f.and_then(|f| f.max_concurrent_streams.as_ref()),
                DEFAULT_MAX_CONCURRENT_STREAMS,
                1,
                10_000,
            )?,
            // RFC 9113 §6.5.2: at most 2^31 - 1
            initial_window_bytes: bounded(
                "initial_window_bytes",
                f.and_then(|f| f.initial_window_bytes.as_ref()),
                DEFAULT_INITIAL_WINDOW_BYTES,
                1024,
                (1 << 31) - 1,
            )?,
            max_header_list_bytes: bounded(
                "max_header_list_bytes",
                f.and_then(|f| f.max_header_list_bytes.as_ref()),
                DEFAULT_MAX_HEADER_LIST_BYTES,
                1024,
                1 << 20,
            )?,
            idle_timeout: Duration::from_millis(idle_ms),
        })
    }
}
