//! The WAF hook: a request filter that asks an external web application firewall for a verdict
//! over HTTP (like nginx's `auth_request`, Envoy's `ext_authz`), within a time budget.
//!
//! Protocol (docs/WAF.md): the WAF receives the client's method and target (after `path`'s
//! prefix), its header fields (hop-by-hop fields dropped) plus `X-Forwarded-For: <client>` and
//! the `X-Request-Id` the upstream will get, and up to `send_body_bytes` of the body, decoded and
//! framed with Content-Length (`X-Body-Truncated: 1` when more followed). A 2xx answer allows, a
//! 4xx blocks with that status; anything else (5xx, refused, timed out, every endpoint down) is
//! an error and `on_error` decides.

mod request;
#[cfg(test)]
mod tests;

use std::time::Instant;

use crate::config::{WafConfig, WafId, WafMode};
use crate::error::Error;
use crate::filter::{Effects, FilterFuture, FilterRequest, LocalResponse, RequestFilter, Verdict};

pub use request::write_request;

/// What a WAF call ended in, as the access log and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafOutcome {
    Allow,
    Block,
    /// No verdict (5xx, refused, timeout, down): `on_error` applied.
    Error,
    /// `mode = "monitor"`: the WAF would have blocked; the request went on.
    MonitorBlock,
}

/// Outcome names, in the order metrics count them.
pub const WAF_OUTCOMES: [&str; 4] = ["allow", "block", "error", "monitor_block"];

impl WafOutcome {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        WAF_OUTCOMES[self.index()]
    }
}

/// One request's WAF call, for the access log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WafRecord {
    pub waf: WafId,
    pub outcome: WafOutcome,
    /// Time spent waiting on the WAF (connecting included), microseconds.
    pub us: u64,
}

/// The filter for one `[waf.NAME]` (shared by every API that uses it, per generation).
pub struct WafFilter {
    id: WafId,
    config: WafConfig,
}

impl WafFilter {
    pub fn new(id: WafId, config: WafConfig) -> Self {
        Self { id, config }
    }
}

impl RequestFilter for WafFilter {
    fn name(&self) -> &str {
        "waf"
    }

    fn body_bytes(&self) -> usize {
        self.config.send_body_bytes
    }

    fn on_request<'a>(&'a self, req: &'a FilterRequest<'a>, effects: &'a mut Effects) -> FilterFuture<'a> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(1024 + req.body.len());
            write_request(&mut out, &self.config, req);
            let t0 = Instant::now();
            let answer = req.upstreams.call(self.config.upstream, &out, self.config.timeout).await;
            let us = crate::proxy::micros_since(t0);
            if let Err(e) = &answer {
                tracing::debug!(waf = %self.config.name, error = %e, "WAF gave no verdict");
            }
            let (outcome, verdict) = decide(&self.config, &answer, req.request_id);
            effects.waf = Some(WafRecord { waf: self.id, outcome, us });
            verdict
        })
    }
}

/// The verdict for a WAF's `answer` under `config`'s mode and `on_error`.
pub fn decide(config: &WafConfig, answer: &Result<u16, Error>, request_id: &[u8]) -> (WafOutcome, Verdict) {
    let monitor = config.mode == WafMode::Monitor;
    match *answer {
        Ok(200..=299) => (WafOutcome::Allow, Verdict::Continue),
        Ok(400..=499) if monitor => (WafOutcome::MonitorBlock, Verdict::Continue),
        Ok(status @ 400..=499) => (WafOutcome::Block, Verdict::Respond(blocked(status, request_id))),
        _ if config.deny_on_error && !monitor => (WafOutcome::Error, Verdict::Respond(blocked(503, request_id))),
        _ => (WafOutcome::Error, Verdict::Continue),
    }
}

/// The client's answer when the WAF blocks (its status) or fails closed (503).
fn blocked(status: u16, request_id: &[u8]) -> LocalResponse {
    let mut body = format!("{status} {}\n", crate::http::reason(status)).into_bytes();
    body.extend_from_slice(match status {
        503 => b"The request could not be checked by the web application firewall".as_slice(),
        _ => b"Blocked by the web application firewall".as_slice(),
    });
    body.extend_from_slice(b"; request id ");
    body.extend_from_slice(request_id);
    body.push(b'\n');
    LocalResponse { status, headers: vec![("content-type".into(), b"text/plain; charset=utf-8".to_vec())], body }
}
