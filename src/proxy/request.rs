//! The request context: one value per request, built when its head is parsed and handed to every
//! phase after that. It owns what the phases decide (route, client address, hash key) and the
//! [`Session`] record, so the parsed head (which borrows the read buffer) is only needed until
//! the upstream head is written.

use std::net::IpAddr;
use std::time::Instant;

use smallvec::SmallVec;

use super::headers::usable_request_id;
use super::session::{LogFields, Peer, Session};
use crate::config::{ApiId, UpstreamId};
use crate::filter::{Effects, HeadView, LocalResponse};
use crate::http::{BodyKind, NormalPath, Version};
use crate::limit::client_ip;
use crate::runtime::{Generation, Shard};

/// A request id: the client's `X-Request-Id` when usable (1–128 visible bytes), else ours.
pub(super) type RequestId = SmallVec<[u8; 48]>;

/// One request, from its parsed head to its last response byte.
pub(super) struct Request {
    pub(super) id: RequestId,
    pub(super) head_request: bool,
    pub(super) idempotent: bool,
    pub(super) version: Version,
    /// The connection may stay open after the response: the client's wish, unless the worker is
    /// draining or the connection has served `keepalive_requests`.
    pub(super) keep_alive: bool,
    pub(super) body: BodyKind,
    pub(super) expect_continue: bool,
    /// Protocols offered upstream in `Upgrade` (h2c removed), when the client asked to upgrade.
    pub(super) upgrade: Option<SmallVec<[u8; 32]>>,
    /// The client: the peer, or the address a trusted proxy forwarded for.
    pub(super) client: IpAddr,
    /// Consistent-hash key, for upstreams balanced by `hash(..)`.
    pub(super) hash_key: Option<u64>,
    /// What the request filters asked of the forwarded request.
    pub(super) effects: Effects,
    /// Who called (an API with `auth`), and where the credential was (removed upstream).
    pub(super) consumer: Option<(crate::policy::ConsumerId, crate::policy::auth::Via)>,
    /// The query sent upstream when it differs from the client's (an API key removed from it).
    pub(super) query_override: Option<Box<[u8]>>,
    /// The request's `Origin`, when the API's CORS policy allows it (the response gets the
    /// CORS fields).
    pub(super) cors_origin: Option<Box<[u8]>>,
    pub(super) session: Session,
}

/// Where routing sent a request.
pub(super) struct Routed {
    pub(super) api: ApiId,
    /// Bytes of the path taken by the service's `base_path`.
    pub(super) base_len: usize,
    /// For prefix APIs: bytes of the relative path the prefix matched.
    pub(super) prefix_len: Option<usize>,
    /// The normalised path when it differs from the client's spelling.
    pub(super) normal: Option<NormalPath>,
}

impl Routed {
    /// The path routing matched (and the upstream receives).
    pub(super) fn path<'a>(&'a self, head: &'a dyn HeadView) -> &'a [u8] {
        self.normal.as_deref().unwrap_or(head.path())
    }
}

/// What the request gets once the head phases have run.
pub(super) enum Action {
    Reject(crate::error::Error),
    /// `OPTIONS *`: the gateway answers for the server.
    ServerOptions,
    /// A CORS preflight for an API with a CORS policy: the gateway answers.
    Preflight(ApiId),
    Mock(ApiId),
    /// A filter answered instead of the upstream.
    Local(Box<LocalResponse>),
    /// Forward to the upstream (its request head is in the connection's scratch buffer).
    Proxy(UpstreamId),
}

impl Request {
    /// The context for `head`, on connection `peer` after `served` earlier requests.
    pub(super) fn new(
        shard: &Shard,
        gen: &Generation,
        peer: &Peer,
        served: u32,
        head: &crate::http::RequestHead<'_, '_>,
    ) -> Self {
        let snapshot = &gen.snapshot;
        let id = match head.header("x-request-id") {
            Some(v) if usable_request_id(v) => RequestId::from_slice(v),
            _ => RequestId::from_slice(&shard.next_request_id()),
        };
        // X-Forwarded-For only matters from a trusted proxy (decided once per connection)
        let client = match peer.trusted {
            true => client_ip(peer.addr, head.header("x-forwarded-for"), &snapshot.instance.trusted_proxies),
            false => peer.addr,
        };
        let mut session = Session::new(peer.listener.get(), Instant::now());
        session.http10 = head.version == Version::Http10;
        session.log = shard.access_log.as_ref().map(|_| {
            let mut query = SmallVec::new();
            let redact = snapshot.access_log.as_ref().map_or(&[][..], |c| &c.redact_query[..]);
            crate::metrics::redact_query(head.query.strip_prefix(b"?").unwrap_or(head.query), redact, &mut query);
            Box::new(LogFields {
                method: SmallVec::from_slice(head.method),
                path: SmallVec::from_slice(head.path),
                query,
                host: SmallVec::from_slice(head.authority.unwrap_or_default()),
            })
        });
        let keep_alive = head.keep_alive && !shard.draining.get() && served + 1 < snapshot.http.keepalive_requests;
        Self {
            id,
            head_request: head.method == b"HEAD",
            idempotent: matches!(head.method, b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE"),
            version: head.version,
            keep_alive,
            body: head.body,
            expect_continue: head.expect_continue,
            upgrade: head.upgrade.map(offered_upgrade).filter(|u| !u.is_empty()),
            client,
            hash_key: None,
            effects: Effects::default(),
            consumer: None,
            query_override: None,
            cors_origin: None,
            session,
        }
    }

    /// The routed API (set by the route phase).
    pub(super) fn api(&self) -> Option<ApiId> {
        self.session.api
    }
}

/// The client's `Upgrade` list without `h2c` (never offered upstream: h2c smuggling, F14).
fn offered_upgrade(value: &[u8]) -> SmallVec<[u8; 32]> {
    let mut out = SmallVec::new();
    for p in crate::http::list_items(value).filter(|p| !p.eq_ignore_ascii_case(b"h2c")) {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(p);
    }
    out
}

/// An owned copy of a request head, for phases that await (request filters): the raw bytes
/// (re-parsed when the upstream head is built) and the fields the filters read.
pub(super) struct OwnedHead {
    pub(super) raw: Vec<u8>,
    method: Vec<u8>,
    authority: Option<Vec<u8>>,
    path: Vec<u8>,
    query: Vec<u8>,
    fields: Vec<(String, Vec<u8>)>,
}

impl OwnedHead {
    pub(super) fn new(head: &crate::http::RequestHead<'_, '_>, raw: &[u8]) -> Self {
        Self {
            raw: raw.to_vec(),
            method: head.method.to_vec(),
            authority: head.authority.map(<[u8]>::to_vec),
            path: head.path.to_vec(),
            query: head.query.to_vec(),
            fields: head.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
        }
    }
}

impl HeadView for OwnedHead {
    fn method(&self) -> &[u8] {
        &self.method
    }
    fn authority(&self) -> Option<&[u8]> {
        self.authority.as_deref()
    }
    fn path(&self) -> &[u8] {
        &self.path
    }
    fn query(&self) -> &[u8] {
        &self.query
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| &v[..])
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (n, v) in &self.fields {
            f(n, v);
        }
    }
}
