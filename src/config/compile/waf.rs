//! `[waf.NAME]` sections and the `waf` keys of services and APIs.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::{check_name, Compiler};
use crate::config::error::ConfigError;
use crate::config::file::{FileApi, FileService, FileWaf};
use crate::config::snapshot::{UpstreamId, WafConfig, WafId, WafMode};

pub const DEFAULT_WAF_TIMEOUT_MS: u64 = 50;
pub const DEFAULT_WAF_SEND_BODY_BYTES: usize = 8 * 1024;
/// Body bytes held for inspection are buffered per request: keep that bounded.
const MAX_WAF_SEND_BODY_BYTES: usize = 1024 * 1024;

impl Compiler<'_> {
    /// Every `[waf.NAME]`, in name order, and their ids by name.
    pub(super) fn wafs(
        &self,
        list: &BTreeMap<String, Spanned<FileWaf>>,
        upstream_ids: &BTreeMap<String, UpstreamId>,
    ) -> Result<(Vec<WafConfig>, BTreeMap<String, WafId>), ConfigError> {
        let mut wafs = Vec::new();
        let mut ids = BTreeMap::new();
        for (name, f) in list {
            let base = format!("waf.{name}");
            let span = f.span();
            let f = f.get_ref();
            check_name(name).map_err(|m| self.err(&base, span.clone(), m))?;
            let upstream = *upstream_ids.get(f.upstream.get_ref()).ok_or_else(|| {
                self.err(
                    format!("{base}.upstream"),
                    f.upstream.span(),
                    format!("no upstream named \"{}\"", f.upstream.get_ref()),
                )
            })?;
            let mode = match f.mode.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("block") => WafMode::Block,
                Some("monitor") => WafMode::Monitor,
                Some("off") => WafMode::Off,
                Some(other) => {
                    let msg = format!("\"{other}\" is not a mode: use \"block\", \"monitor\" or \"off\"");
                    return Err(self.err(format!("{base}.mode"), f.mode.as_ref().unwrap().span(), msg));
                }
            };
            let deny_on_error = match f.on_error.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("allow") => false,
                Some("deny") => true,
                Some(other) => {
                    let msg = format!("\"{other}\" is not an on_error action: use \"allow\" or \"deny\"");
                    return Err(self.err(format!("{base}.on_error"), f.on_error.as_ref().unwrap().span(), msg));
                }
            };
            let timeout_ms = match &f.timeout_ms {
                Some(t) if !(1..=60_000).contains(t.get_ref()) => {
                    return Err(self.err(format!("{base}.timeout_ms"), t.span(), "must be from 1 to 60000"))
                }
                Some(t) => *t.get_ref(),
                None => DEFAULT_WAF_TIMEOUT_MS,
            };
            let send_body_bytes = match &f.send_body_bytes {
                Some(b) if *b.get_ref() > MAX_WAF_SEND_BODY_BYTES => {
                    let msg = format!("must be at most {MAX_WAF_SEND_BODY_BYTES} (bytes held per request)");
                    return Err(self.err(format!("{base}.send_body_bytes"), b.span(), msg));
                }
                Some(b) => *b.get_ref(),
                None => DEFAULT_WAF_SEND_BODY_BYTES,
            };
            let path_prefix = match &f.path {
                None => String::new(),
                Some(p) => {
                    let v = p.get_ref();
                    let ok = v.starts_with('/') && v.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
                    if !ok {
                        let msg = "must be a plain path starting with '/' (no query)";
                        return Err(self.err(format!("{base}.path"), p.span(), msg));
                    }
                    v.trim_end_matches('/').to_string()
                }
            };
            ids.insert(name.clone(), wafs.len());
            wafs.push(WafConfig {
                name: name.clone(),
                upstream,
                mode,
                timeout: Duration::from_millis(timeout_ms),
                deny_on_error,
                send_body_bytes,
                path_prefix,
            });
        }
        Ok((wafs, ids))
    }

    /// The WAF an API runs: its own `waf` key ("" = none) or else its service's; `None` also
    /// for a WAF in `mode = "off"`.
    pub(super) fn api_waf(
        &self,
        path: &str,
        service: (&str, &FileService),
        api: &FileApi,
        ids: &BTreeMap<String, WafId>,
        wafs: &[WafConfig],
    ) -> Result<Option<WafId>, ConfigError> {
        let (key, name) = match (&api.waf, &service.1.waf) {
            (Some(n), _) => (format!("{path}.waf"), n),
            (None, Some(n)) => (format!("service.{}.waf", service.0), n),
            (None, None) => return Ok(None),
        };
        if name.get_ref().is_empty() {
            return Ok(None);
        }
        match ids.get(name.get_ref()) {
            Some(&id) => Ok((wafs[id].mode != WafMode::Off).then_some(id)),
            None => Err(self.err(key, name.span(), format!("no [waf.{}] section", name.get_ref()))),
        }
    }
}
