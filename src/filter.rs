//! Request filters: the async slot in the request path between admission and forwarding, where
//! the WAF hook, authentication and header policies plug in (docs/DESIGN.md §4).
//!
//! A filter sees the request head through [`HeadView`], a protocol-neutral view (HTTP/1.1 today,
//! HTTP/2 later), and answers [`Verdict::Continue`] or [`Verdict::Respond`] with a response the
//! gateway sends instead of forwarding. A filter that continues may add fields to the upstream
//! request through [`Effects`]. Each API has its own chain, built per config generation; an
//! empty chain costs one length check per request.
//!
//! A filter that inspects the body says how much it wants ([`RequestFilter::body_bytes`]): the
//! driver reads that much ahead into the connection's buffer (the upstream still receives all of
//! it) and hands it over decoded. A filter reaches other upstreams (the WAF) through
//! [`Upstreams`], so it can be tested without sockets.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::config::UpstreamId;
use crate::error::Error;

/// The request head as every phase reads it, whatever the protocol.
pub trait HeadView {
    fn method(&self) -> &[u8];
    /// The authority routed on (Host or the absolute-form target / `:authority`).
    fn authority(&self) -> Option<&[u8]>;
    /// The path as the client sent it (without the query).
    fn path(&self) -> &[u8];
    /// The query with its leading `?`, or empty.
    fn query(&self) -> &[u8];
    /// The first field named `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Every field in order, as (name, value).
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8]));
}

impl HeadView for crate::http::RequestHead<'_, '_> {
    fn method(&self) -> &[u8] {
        self.method
    }
    fn authority(&self) -> Option<&[u8]> {
        self.authority
    }
    fn path(&self) -> &[u8] {
        self.path
    }
    fn query(&self) -> &[u8] {
        self.query
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        crate::http::RequestHead::header(self, name)
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for h in self.headers {
            f(h.name, h.value);
        }
    }
}

/// What a filter knows about the request besides its head.
pub struct FilterRequest<'a> {
    pub head: &'a dyn HeadView,
    /// The path routing matched (normalised), which is what the upstream receives.
    pub path: &'a [u8],
    /// The client address (X-Forwarded-For resolved through trusted proxies).
    pub client: IpAddr,
    pub service: &'a str,
    pub api: &'a str,
    pub request_id: &'a [u8],
    /// The first bytes of the request body (decoded when chunked), as many as the chain's
    /// largest [`RequestFilter::body_bytes`]; empty when no filter asked.
    pub body: &'a [u8],
    /// More body followed what `body` holds.
    pub body_truncated: bool,
    /// Requests to other upstreams.
    pub upstreams: &'a dyn Upstreams,
}

/// The future of a call to an upstream: the response status.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<u16, Error>> + 'a>>;

/// Gateway-made requests to configured upstreams (pooled connections, health, outlier
/// reports as for proxied requests).
pub trait Upstreams {
    /// Sends `request` (a complete HTTP/1.1 request, framed with Content-Length) to `upstream`
    /// and returns the response status; the whole exchange, connecting included, within `timeout`.
    fn call<'a>(&'a self, upstream: UpstreamId, request: &'a [u8], timeout: Duration) -> CallFuture<'a>;
}

/// A response a filter makes instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    /// Extra fields (lower-case names); the gateway adds framing, `Date` and `X-Request-Id`.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// A filter's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Respond(LocalResponse),
}

/// What filters that continued ask of the forwarded request.
#[derive(Debug, Default)]
pub struct Effects {
    /// Fields appended to the upstream request head (name in lower case).
    pub upstream_headers: Vec<(String, Vec<u8>)>,
    /// The WAF's verdict and time, for the access log and metrics.
    pub waf: Option<crate::waf::WafRecord>,
}

/// The future a filter returns.
pub type FilterFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + 'a>>;

/// One request filter. Runs on the worker's thread (no `Send` needed); may await I/O.
pub trait RequestFilter {
    /// For logs and metrics.
    fn name(&self) -> &str;
    /// Request body bytes this filter inspects (read ahead before the chain runs).
    fn body_bytes(&self) -> usize {
        0
    }
    fn on_request<'a>(&'a self, req: &'a FilterRequest<'a>, effects: &'a mut Effects) -> FilterFuture<'a>;
}

/// The filters one API runs, in order.
pub type FilterChain = Rc<[Rc<dyn RequestFilter>]>;

/// Runs `chain` in order until a filter responds; `Continue` forwards the request (with `effects`).
pub async fn run_chain(chain: &[Rc<dyn RequestFilter>], req: &FilterRequest<'_>, effects: &mut Effects) -> Verdict {
    for filter in chain {
        if let Verdict::Respond(r) = filter.on_request(req, effects).await {
            tracing::debug!(filter = filter.name(), status = r.status, "Filter answered the request");
            return Verdict::Respond(r);
        }
    }
    Verdict::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Head;
    impl HeadView for Head {
        fn method(&self) -> &[u8] {
            b"GET"
        }
        fn authority(&self) -> Option<&[u8]> {
            Some(b"example.test")
        }
        fn path(&self) -> &[u8] {
            b"/a"
        }
        fn query(&self) -> &[u8] {
            b""
        }
        fn header(&self, name: &str) -> Option<&[u8]> {
            name.eq_ignore_ascii_case("x-token").then_some(&b"secret"[..])
        }
        fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
            f("x-token", b"secret");
        }
    }

    /// Adds a field when the token is present, else refuses with 401.
    struct Auth;
    impl RequestFilter for Auth {
        fn name(&self) -> &str {
            "auth"
        }
        fn on_request<'a>(&'a self, req: &'a FilterRequest<'a>, effects: &'a mut Effects) -> FilterFuture<'a> {
            Box::pin(async move {
                match req.head.header("x-token") {
                    Some(b"secret") => {
                        effects.upstream_headers.push(("x-consumer".into(), b"alice".to_vec()));
                        Verdict::Continue
                    }
                    _ => Verdict::Respond(LocalResponse { status: 401, headers: vec![], body: vec![] }),
                }
            })
        }
    }

    struct Deny;
    impl RequestFilter for Deny {
        fn name(&self) -> &str {
            "deny"
        }
        fn on_request<'a>(&'a self, _: &'a FilterRequest<'a>, _: &'a mut Effects) -> FilterFuture<'a> {
            Box::pin(async { Verdict::Respond(LocalResponse { status: 403, headers: vec![], body: b"no".to_vec() }) })
        }
    }

    struct NoUpstreams;
    impl Upstreams for NoUpstreams {
        fn call<'a>(&'a self, _: UpstreamId, _: &'a [u8], _: Duration) -> CallFuture<'a> {
            Box::pin(async { Err(Error::upstream(crate::error::Kind::ConnectRefused, "none")) })
        }
    }

    fn run(chain: &[Rc<dyn RequestFilter>]) -> (Verdict, Effects) {
        let req = FilterRequest {
            head: &Head,
            path: b"/a",
            client: "192.0.2.1".parse().unwrap(),
            service: "s",
            api: "a",
            request_id: b"id",
            body: b"",
            body_truncated: false,
            upstreams: &NoUpstreams,
        };
        let mut effects = Effects::default();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().unwrap();
        let verdict = rt.block_on(run_chain(chain, &req, &mut effects));
        (verdict, effects)
    }

    #[test]
    fn chain_runs_in_order_and_stops_at_the_first_response() {
        let (v, e) = run(&[Rc::new(Auth), Rc::new(Deny)]);
        assert!(matches!(v, Verdict::Respond(LocalResponse { status: 403, .. })));
        assert_eq!(e.upstream_headers, vec![("x-consumer".to_string(), b"alice".to_vec())]);
        let (v, e) = run(&[Rc::new(Deny), Rc::new(Auth)]);
        assert!(matches!(v, Verdict::Respond(LocalResponse { status: 403, .. })));
        assert!(e.upstream_headers.is_empty(), "a filter after a response never runs");
    }

    #[test]
    fn empty_chain_continues() {
        assert_eq!(run(&[]).0, Verdict::Continue);
        assert_eq!(run(&[Rc::new(Auth)]).0, Verdict::Continue);
    }
}
