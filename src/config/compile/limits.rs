//! Rate-limit and IP-list compilation: shared QPS caps, per-key limits, CIDR lists.

use toml::Spanned;

use super::{Compiler, DEFAULT_BURST_DIVISOR, DEFAULT_KEY_TABLE_SIZE};
use crate::config::error::ConfigError;
use crate::config::file::FileLimits;
use crate::http::is_tchar;
use crate::limit::{Cidr, KeyRule, KeySource, Rate};

impl Compiler<'_> {
    pub(super) fn cidrs(&self, path: &str, list: &[Spanned<String>]) -> Result<Vec<Cidr>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, s)| Cidr::parse(s.get_ref()).map_err(|m| self.err(format!("{path}[{i}]"), s.span(), m)))
            .collect()
    }

    /// A shared QPS cap at `path` (`max_qps` + `burst`); `parent` is the nearest enclosing cap.
    pub(super) fn rate_rule(
        &self,
        path: &str,
        max_qps: &Option<Spanned<u64>>,
        burst: &Option<Spanned<u64>>,
        parent: Option<(&str, u64)>,
    ) -> Result<Option<Rate>, ConfigError> {
        let Some(qps) = max_qps else {
            if let Some(b) = burst {
                return Err(self.err(format!("{path}.burst"), b.span(), "needs max_qps"));
            }
            return Ok(None);
        };
        let v = *qps.get_ref();
        if v == 0 {
            return Err(self.err(format!("{path}.max_qps"), qps.span(), "must be at least 1"));
        }
        self.not_above(&format!("{path}.max_qps"), qps, parent)?;
        let b = self.burst(path, "burst", burst, v)?;
        Ok(Some(Rate::new(v, b)))
    }

    /// A child limit may only lower its parent's.
    pub(super) fn not_above(
        &self,
        key: &str,
        v: &Spanned<u64>,
        parent: Option<(&str, u64)>,
    ) -> Result<(), ConfigError> {
        match parent {
            Some((pkey, pv)) if *v.get_ref() > pv => {
                let msg = format!("{} is above {pkey} = {pv}; a child may only lower its parent's limit", v.get_ref());
                Err(self.err(key, v.span(), msg))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn burst(
        &self,
        path: &str,
        key: &str,
        burst: &Option<Spanned<u64>>,
        qps: u64,
    ) -> Result<u64, ConfigError> {
        match burst {
            Some(b) if *b.get_ref() == 0 => Err(self.err(format!("{path}.{key}"), b.span(), "must be at least 1")),
            Some(b) => Ok(*b.get_ref()),
            None => Ok((qps / DEFAULT_BURST_DIVISOR).max(1)),
        }
    }

    /// A per-key limit (`limit_by` + `key_qps`); `cap` is the nearest enclosing QPS cap.
    pub(super) fn key_rule(
        &self,
        path: &str,
        f: &FileLimits<'_>,
        cap: Option<(String, u64)>,
    ) -> Result<Option<KeyRule>, ConfigError> {
        let (by, qps) = match (f.limit_by, f.key_qps) {
            (None, None) => {
                for (k, s) in [
                    ("key_burst", f.key_burst.as_ref().map(|s| s.span())),
                    ("key_table_size", f.key_table_size.as_ref().map(|s| s.span())),
                ] {
                    if let Some(span) = s {
                        return Err(self.err(format!("{path}.{k}"), span, "needs limit_by and key_qps"));
                    }
                }
                return Ok(None);
            }
            (Some(by), Some(q)) => (by, q),
            (Some(by), None) => return Err(self.err(format!("{path}.limit_by"), by.span(), "needs key_qps")),
            (None, Some(q)) => return Err(self.err(format!("{path}.key_qps"), q.span(), "needs limit_by")),
        };
        let source = match by.get_ref().as_str() {
            "client_ip" => KeySource::ClientIp,
            "consumer" => KeySource::Consumer,
            h => match h.strip_prefix("header:") {
                Some(name) if !name.is_empty() && name.bytes().all(is_tchar) => {
                    KeySource::Header(name.to_ascii_lowercase())
                }
                _ => {
                    let msg = format!("\"{h}\" is not \"client_ip\", \"consumer\" or \"header:NAME\"");
                    return Err(self.err(format!("{path}.limit_by"), by.span(), msg));
                }
            },
        };
        let v = *qps.get_ref();
        if v == 0 {
            return Err(self.err(format!("{path}.key_qps"), qps.span(), "must be at least 1"));
        }
        self.not_above(&format!("{path}.key_qps"), qps, cap.as_ref().map(|(k, v)| (k.as_str(), *v)))?;
        let burst = self.burst(path, "key_burst", f.key_burst, v)?;
        let table_size = match f.key_table_size {
            Some(s) if *s.get_ref() < 2 => {
                return Err(self.err(format!("{path}.key_table_size"), s.span(), "must be at least 2"))
            }
            Some(s) => *s.get_ref(),
            None => DEFAULT_KEY_TABLE_SIZE,
        };
        Ok(Some(KeyRule { source, rate: Rate::new(v, burst), table_size }))
    }
}
