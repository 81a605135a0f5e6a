//! THE request path: one request on one client connection, phases in a fixed order
//! (docs/DESIGN.md §4). Long on purpose; read it top to bottom.
//!
//! | phase | here | fails as |
//! |---|---|---|
//! | 3 read + parse head | [`read_head`] → [`plan`] | 400/408/413/414/417/431/501/505 + close |
//! | 4 IP lists, route | [`plan`] | 403; 404 / 405 (keep-alive when no body is pending) |
//! | 5 rate limits, concurrency caps | [`plan`] → [`admit`] | 429 + Retry-After; 503 |
//! | 7 pick endpoint (health, ejection, balancer) | `upstream_side::upstream_conn` | 503 when all are down |
//! | 8 upstream connection (pool, else dial from the egress IP) | `upstream_side::upstream_conn` | 502 / 504 / 503 at max_connections |
//! | 9 send head + body, read response head, stream body back | [`proxy`], `upstream_side::read_response_head` | 502 / 504; truncate after head; retries |
//! | 10 finish: pool check-in, keep-alive, metrics, access log | [`proxy`], `session::finish` | — |
//!
//! Phase 6 (WAF hook) slots in after phase 5 when it lands.

use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::headers::{write_request_head, RequestContext};
use super::io::{pump, write_out, Conn, MinRate, PumpError, PumpOpts};
use super::respond::{answer, write_error};
use super::session::{finish, ApiFlight, InFlight, LogFields, Peer, Session};
use super::upstream_side::{
    read_response_head, upstream_conn, EndpointFlight, RequestFacts, ResponseStart, UpSide, EARLY_RESPONSE_WAIT,
};
use crate::config::ServiceId;
use crate::config::{ApiId, Balance, HashKey, RouteMatch, Target, UpstreamId};
use crate::error::{Error, Kind, Retry, Side};
use crate::http::{normalize_path, parse_request, BodyKind, HeadLimits, ParseError, RequestHead, Version};
use crate::limit::{client_ip, KeyRule, KeySource, Refusal, Rules};
use crate::runtime::Shard;
use crate::upstream::{ring_hash, UpstreamConn};
use std::net::IpAddr;

/// What the connection loop does after a request.
pub enum Next {
    KeepAlive,
    /// Close now (the response, if any, is complete or deliberately truncated).
    Close,
    /// Close after a lingering read so the error response is not lost to a TCP reset.
    LingerClose,
    /// The upstream switched protocols (101 to an offered upgrade): relay bytes both ways.
    Tunnel(Box<Conn>),
}

type RequestId = SmallVec<[u8; 48]>;

/// The owned outcome of the synchronous phases (parse, route); the head buffer is released.
struct Plan {
    id: RequestId,
    head_request: bool,
    idempotent: bool,
    version: Version,
    keep_alive: bool,
    body: BodyKind,
    expect_continue: bool,
    /// Protocols offered upstream in `Upgrade` (h2c removed), when the client asked to upgrade.
    upgrade: Option<SmallVec<[u8; 32]>>,
    /// Consistent-hash key, for upstreams balanced by `hash(..)`.
    hash_key: Option<u64>,
    action: Action,
    service: Option<ServiceId>,
    /// The routed API, also when the request was refused after routing.
    api: Option<ApiId>,
    log: Option<Box<LogFields>>,
}

enum Action {
    Reject(Error),
    /// `OPTIONS *`: the gateway answers for the server.
    ServerOptions,
    Mock(ApiId),
    /// The upstream request head was written into the connection's scratch buffer.
    Proxy {
        api: ApiId,
        upstream: UpstreamId,
    },
}

/// Per-connection buffers reused across requests.
pub struct Scratch {
    /// Bytes queued for the next write to either side.
    pub out: Vec<u8>,
    /// The serialised upstream request head.
    pub up_head: Vec<u8>,
}

/// Serves one request. `served` counts earlier requests on this connection.
pub async fn run(shard: &Shard, client: &mut Conn, peer: &Peer, served: u32, s: &mut Scratch) -> Next {
    // phase 3 + 4: read and parse the head, route it, serialise the upstream head
    let mut plan = match read_head(shard, client, peer, served, &mut s.up_head).await {
        Ok(Some(plan)) => plan,
        Ok(None) => return Next::Close,
        Err(err) => {
            let mut session = Session::new(peer.listener, Instant::now());
            let reply = ErrorReply { head_only: false, close: true, id: &[] };
            let next = respond_error(shard, client, &mut s.out, &err, reply, &mut session).await;
            finish(shard, &session, peer, &[]);
            return next;
        }
    };
    let _in_flight = InFlight::enter(shard);
    let _api_flight = match (&plan.action, plan.api) {
        (Action::Reject(_), _) | (_, None) => None,
        (_, Some(api)) => shard.snapshot.apis[api].max_in_flight.map(|_| ApiFlight::enter(shard, api)),
    };
    let mut session = Session::new(peer.listener, Instant::now());
    session.service = plan.service;
    session.api = plan.api;
    session.log = plan.log.take();
    let http = &shard.snapshot.http;
    let keep_alive = plan.keep_alive && !shard.draining.get() && served + 1 < http.keepalive_requests;
    let next = match &plan.action {
        Action::Reject(err) => {
            let close = !keep_alive || plan.body != BodyKind::None;
            let reply = ErrorReply { head_only: plan.head_request, close, id: &plan.id };
            respond_error(shard, client, &mut s.out, err, reply, &mut session).await
        }
        Action::ServerOptions => serve_server_options(shard, client, &mut s.out, &plan, keep_alive, &mut session).await,
        Action::Mock(api) => {
            session.api = Some(*api);
            serve_mock(shard, client, &mut s.out, &plan, *api, keep_alive, &mut session).await
        }
        Action::Proxy { api, upstream } => {
            (session.api, session.upstream) = (Some(*api), Some(*upstream));
            match proxy(shard, client, s, &plan, keep_alive, &mut session).await {
                Ok(next) => next,
                Err(Failure { error, body_read }) => {
                    tracing::debug!(id = %String::from_utf8_lossy(&plan.id), error = %error, "Request failed");
                    let close = !keep_alive || !body_read;
                    let reply = ErrorReply { head_only: plan.head_request, close, id: &plan.id };
                    respond_error(shard, client, &mut s.out, &error, reply, &mut session).await
                }
            }
        }
    };
    finish(shard, &session, peer, &plan.id);
    next
}

/// Sends the error's response (if any) as the error table says, and notes the error for the
/// access log. Returns how the connection ends.
async fn respond_error(
    shard: &Shard,
    client: &mut Conn,
    out: &mut Vec<u8>,
    err: &Error,
    reply: ErrorReply<'_>,
    session: &mut Session,
) -> Next {
    let answer = answer(err);
    session.error = Some(answer.flag);
    let Some(status) = answer.status else {
        return Next::Close;
    };
    let ErrorReply { head_only, id, .. } = reply;
    let close = reply.close || answer.close;
    tracing::debug!(status, id = %String::from_utf8_lossy(id), error = %err, "Gateway response");
    out.clear();
    write_error(out, err, status, head_only, close, id);
    (session.status, session.bytes_out) = (status, out.len() as u64);
    match write_out(&mut client.stream, out, shard.snapshot.http.send_timeout).await {
        Ok(()) if close => Next::LingerClose,
        Ok(()) => Next::KeepAlive,
        Err(_) => Next::Close,
    }
}

/// Phase 3: reads until a complete head is buffered, then plans it. `Ok(None)`: the client
/// closed or stayed idle past the keep-alive timeout (no response is due).
async fn read_head(
    shard: &Shard,
    client: &mut Conn,
    peer: &Peer,
    served: u32,
    up_head: &mut Vec<u8>,
) -> Result<Option<Plan>, Error> {
    let http = &shard.snapshot.http;
    let limits = HeadLimits {
        max_request_line_bytes: http.max_request_line_bytes,
        max_header_bytes: http.max_header_bytes,
        max_headers: http.max_headers,
    };
    let mut started: Option<Instant> = None;
    loop {
        if !client.pending().is_empty() {
            let mut headers = crate::http::header_buf();
            if let Some(head) = parse_request(client.pending(), &mut headers, &limits)? {
                let head_len = head.head_len;
                let plan = plan(shard, &head, peer, up_head);
                client.consume(head_len);
                return Ok(Some(plan));
            }
            started.get_or_insert_with(Instant::now);
        }
        // while draining, an idle keep-alive connection still waits: a request its client has
        // just written is served (with `Connection: close`); the worker ends the wait after its
        // idle grace
        let timeout = match started {
            Some(t0) => http.header_timeout.saturating_sub(t0.elapsed()),
            None if served == 0 => http.header_timeout,
            None => http.keepalive_timeout,
        };
        peer.idle.set(started.is_none() && served > 0);
        let filled = client.fill(timeout.max(Duration::from_millis(1)), http.max_header_bytes + 1).await;
        peer.idle.set(false);
        match filled {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && started.is_some() => {
                return Err(Error::downstream(Kind::ClientTimeout));
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(ParseError::HeaderTooLarge.into()),
            Err(_) => return Ok(None),
        }
    }
}

/// Phases 4 and 5 (and the head half of 9): IP lists, route, rate limits and concurrency caps,
/// then serialise the upstream request.
fn plan(shard: &Shard, head: &RequestHead<'_, '_>, peer: &Peer, up_head: &mut Vec<u8>) -> Plan {
    let snapshot = &shard.snapshot;
    let id = request_id(shard, head);
    // X-Forwarded-For only matters from a trusted proxy (decided once per connection)
    let xff = if peer.trusted { head.header("x-forwarded-for") } else { None };
    let client = if peer.trusted { client_ip(peer.addr, xff, &snapshot.instance.trusted_proxies) } else { peer.addr };
    let mut plan = Plan {
        id,
        head_request: head.method == b"HEAD",
        idempotent: matches!(head.method, b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE"),
        version: head.version,
        keep_alive: head.keep_alive,
        body: head.body,
        expect_continue: head.expect_continue,
        upgrade: head.upgrade.map(offered_upgrade).filter(|u| !u.is_empty()),
        hash_key: None,
        action: Action::Reject(Error::downstream(Kind::NoRoute)),
        service: None,
        api: None,
        log: shard.access_log.as_ref().map(|_| {
            let mut query = SmallVec::new();
            let redact = snapshot.access_log.as_ref().map_or(&[][..], |c| &c.redact_query[..]);
            crate::metrics::redact_query(head.query.strip_prefix(b"?").unwrap_or(head.query), redact, &mut query);
            Box::new(LogFields {
                method: SmallVec::from_slice(head.method),
                path: SmallVec::from_slice(head.path),
                query,
                host: SmallVec::from_slice(head.authority.unwrap_or_default()),
            })
        }),
    };
    // phase 4: instance IP lists before any other work, then the route, then the service's lists
    if !snapshot.instance.ip_filter.permits(client) {
        shard.metrics.borrow_mut().denied_instance += 1;
        plan.action = Action::Reject(Error::downstream(Kind::Forbidden));
        return plan;
    }
    if head.path == b"*" {
        // `OPTIONS *` asks about the server, not a resource: answered here, never forwarded
        plan.action = Action::ServerOptions;
        return plan;
    }
    // the path routing sees is the path the upstream gets: dot segments removed first
    let normal = match normalize_path(head.path, snapshot.http.path_rules) {
        Ok(n) => n,
        Err(e) => {
            plan.action = Action::Reject(e.into());
            return plan;
        }
    };
    let path = normal.as_deref().unwrap_or(head.path);
    let (api_id, base_len, prefix_len) =
        match snapshot.routes.find(head.authority.unwrap_or_default(), head.method, path) {
            RouteMatch::Found { api, base_len, prefix_len } => (api, base_len, prefix_len),
            RouteMatch::NotFound => return plan,
            RouteMatch::MethodNotAllowed(allow) => {
                plan.action = Action::Reject(Error::downstream(Kind::MethodNotAllowed(allow)));
                return plan;
            }
        };
    let api = &snapshot.apis[api_id];
    let svc = &snapshot.services[api.service];
    (plan.service, plan.api) = (Some(api.service), Some(api_id));
    if !svc.ip_filter.permits(client) {
        shard.metrics.borrow_mut().denied[api.service] += 1;
        plan.action = Action::Reject(Error::downstream(Kind::Forbidden));
        return plan;
    }
    // phase 5: instance → service → API → per-key rates, then the API's concurrency cap
    if let Err(refusal) = admit(shard, head, client, api_id) {
        shard.metrics.borrow_mut().limited[api_id][refusal.level as usize] += 1;
        plan.action = Action::Reject(Error::downstream(Kind::RateLimited(refusal)));
        return plan;
    }
    if let Some(max) = api.max_in_flight {
        let share = max.div_ceil(shard.workers as u32).max(1);
        if shard.api_in_flight.borrow()[api_id] >= share {
            shard.metrics.borrow_mut().overloaded[api_id] += 1;
            plan.action = Action::Reject(Error::upstream(Kind::Overloaded, "max_in_flight"));
            return plan;
        }
    }
    if let BodyKind::Length(n) = head.body {
        if api.max_body_bytes != 0 && n > api.max_body_bytes {
            plan.action = Action::Reject(ParseError::BodyTooLarge.into());
            return plan;
        }
    }
    plan.action = match &api.target {
        Target::Mock(_) => Action::Mock(api_id),
        Target::Upstream(uid) => {
            plan.hash_key = match &snapshot.upstreams[*uid].balance {
                // the peer's address is already rendered; only a client named by XFF is formatted
                Balance::Hash(HashKey::ClientIp) if client == peer.addr => Some(ring_hash(&peer.ip)),
                Balance::Hash(HashKey::ClientIp) => Some(ring_hash(client.to_string().as_bytes())),
                Balance::Hash(HashKey::Header(name)) => {
                    let v = head.header(name).unwrap_or_default();
                    Some(ring_hash(v))
                }
                _ => None,
            };
            let cx = RequestContext {
                path,
                client_ip: &peer.ip,
                scheme: peer.scheme,
                forwarded_for: xff,
                upgrade: plan.upgrade.as_deref(),
                rewrite: &api.rewrite,
                base_len,
                prefix_len,
                default_host: &snapshot.upstreams[*uid].name,
            };
            up_head.clear();
            write_request_head(up_head, head, &cx, &plan.id);
            Action::Proxy { api: api_id, upstream: *uid }
        }
    };
    plan
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

/// Phase 5: the rate rules that apply to `api`; `Err` names the level that refused.
fn admit(shard: &Shard, head: &RequestHead<'_, '_>, client: IpAddr, api_id: ApiId) -> Result<(), Refusal> {
    let snapshot = &shard.snapshot;
    let api = &snapshot.apis[api_id];
    let svc = &snapshot.services[api.service];
    let unlimited = snapshot.instance.limit.is_none()
        && svc.limit.is_none()
        && api.limit.is_none()
        && svc.key_limit.is_none()
        && api.key_limit.is_none();
    if unlimited {
        return Ok(());
    }
    let key = |rule: &KeyRule| -> u64 {
        match &rule.source {
            KeySource::ClientIp => shard.key_hasher.hash_one(client),
            KeySource::Header(name) => {
                let v = head.header(name).unwrap_or_default();
                shard.key_hasher.hash_one(v)
            }
        }
    };
    let rules = Rules {
        instance: snapshot.instance.limit.as_deref(),
        service: svc.limit.as_deref(),
        api: api.limit.as_deref(),
        service_key: svc.key_limit.as_ref().map(|k| (k, key(k))),
        api_key: api.key_limit.as_ref().map(|k| (k, key(k))),
    };
    shard.limiter.borrow_mut().check(api.service, api_id, &rules, Instant::now())
}

fn request_id(shard: &Shard, head: &RequestHead<'_, '_>) -> RequestId {
    let given = head.header("x-request-id");
    match given {
        Some(v) if super::headers::usable_request_id(v) => RequestId::from_slice(v),
        _ => RequestId::from_slice(&shard.next_request_id()),
    }
}

/// A mock API: the pre-rendered response. A request body is never read: the connection closes.
async fn serve_mock(
    shard: &Shard,
    client: &mut Conn,
    out: &mut Vec<u8>,
    plan: &Plan,
    api: ApiId,
    keep_alive: bool,
    session: &mut Session,
) -> Next {
    let Target::Mock(mock) = &shard.snapshot.apis[api].target else {
        return Next::Close;
    };
    out.clear();
    out.extend_from_slice(&mock.head);
    send_local(shard, client, out, plan, keep_alive, (mock.status, &mock.body), session).await
}

/// `OPTIONS * HTTP/1.1`: 200 with the methods the gateway proxies, no body (RFC 9110 §9.3.7).
async fn serve_server_options(
    shard: &Shard,
    client: &mut Conn,
    out: &mut Vec<u8>,
    plan: &Plan,
    keep_alive: bool,
    session: &mut Session,
) -> Next {
    out.clear();
    crate::http::push_status_line(out, 200);
    out.extend_from_slice(b"allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\ncontent-length: 0\r\n");
    send_local(shard, client, out, plan, keep_alive, (200, &[]), session).await
}

/// Finishes a response the gateway makes itself (`out` holds its status line and fields) and
/// sends it. A request body is never read: such a connection closes after a lingering read.
async fn send_local(
    shard: &Shard,
    client: &mut Conn,
    out: &mut Vec<u8>,
    plan: &Plan,
    keep_alive: bool,
    (status, body): (u16, &[u8]),
    session: &mut Session,
) -> Next {
    let keep_alive = keep_alive && plan.body == BodyKind::None;
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&crate::http::date::now());
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(&plan.id);
    out.extend_from_slice(b"\r\n");
    push_connection(out, keep_alive, plan.version);
    out.extend_from_slice(b"\r\n");
    if !plan.head_request {
        out.extend_from_slice(body);
    }
    (session.status, session.bytes_out) = (status, out.len() as u64);
    match write_out(&mut client.stream, out, shard.snapshot.http.send_timeout).await {
        Ok(()) if keep_alive => Next::KeepAlive,
        Ok(()) if plan.body != BodyKind::None => Next::LingerClose,
        _ => Next::Close,
    }
}

fn push_connection(out: &mut Vec<u8>, keep_alive: bool, version: Version) {
    match (keep_alive, version) {
        (false, _) => out.extend_from_slice(b"connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
}

/// An exchange that failed before any response head went to the client: the error to answer
/// with, and whether the request body was read whole (else the client connection must close).
struct Failure {
    error: Error,
    body_read: bool,
}

impl Failure {
    fn new(error: Error, body_read: bool) -> Self {
        Self { error, body_read }
    }
}

/// How a gateway-made error response is sent.
struct ErrorReply<'a> {
    head_only: bool,
    /// The connection closes after it whatever the error (the error table may add a close).
    close: bool,
    id: &'a [u8],
}

/// Phases 7–10 for an upstream API. `Err(Failure)` when no response head
/// was sent yet; after the head went out, failures truncate and return `Ok(Next::Close)`.
async fn proxy(
    shard: &Shard,
    client: &mut Conn,
    s: &mut Scratch,
    plan: &Plan,
    keep_alive: bool,
    session: &mut Session,
) -> Result<Next, Failure> {
    let Action::Proxy { api: api_id, upstream: uid } = plan.action else {
        return Err(Failure::new(Error::new(Side::Internal, Kind::Internal, "not an upstream API"), false));
    };
    let snapshot = &shard.snapshot;
    let (api, up) = (&snapshot.apis[api_id], &snapshot.upstreams[uid]);
    let facts = RequestFacts {
        head_request: plan.head_request,
        version: plan.version,
        upgrade: plan.upgrade.as_deref(),
        id: &plan.id,
    };
    let body_done_before = plan.body == BodyKind::None;
    let mut attempt = 0;
    let (mut fresh, mut avoid) = (false, None);
    // timeout_ms bounds the whole exchange up to the response head, over every try
    let deadline = session.started + api.timeout;
    let state = &shard.upstreams[uid];
    state.count_request();
    // in flight on the chosen endpoint until this function returns (least_request)
    let mut _flight: Option<EndpointFlight<'_>> = None;
    let (mut upc, start, head_at) = loop {
        attempt += 1;
        // phases 7 + 8: endpoint and connection (a stale pooled connection is retried fresh)
        let mut upc = upstream_conn(shard, uid, plan.hash_key, !fresh, avoid, session)
            .await
            .map_err(|e| Failure::new(e, body_done_before))?;
        _flight = Some(EndpointFlight::enter(&shard.upstreams[uid], upc.ep)); // replaces a failed attempt's
        session.endpoint = Some(upc.key.endpoint);
        if plan.expect_continue && client.pending().is_empty() {
            s.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            write_out(&mut client.stream, &mut s.out, snapshot.http.send_timeout)
                .await
                .map_err(|_| Failure::new(Error::downstream(Kind::DownstreamClosed), false))?;
        }
        // phase 9a: request head and body
        s.out.clear();
        s.out.extend_from_slice(&s.up_head);
        let opts = PumpOpts {
            read_timeout: snapshot.http.body_timeout,
            write_timeout: up.read_timeout.min(api.timeout),
            chunked_out: plan.body == BodyKind::Chunked,
            limit: api.max_body_bytes,
            max_trailer_bytes: snapshot.http.max_header_bytes,
            min_rate: (snapshot.http.body_min_rate_bytes_per_s > 0).then(|| MinRate {
                bytes_per_s: snapshot.http.body_min_rate_bytes_per_s,
                grace: snapshot.http.body_min_rate_grace,
            }),
        };
        upc.requests += 1;
        shard.metrics.borrow_mut().upstreams[uid].requests += 1;
        let sent = match plan.body {
            // a head alone fits the socket buffer of a fresh or idle connection: no watch needed
            BodyKind::None => pump(client, &mut upc.conn.stream, plan.body, &mut s.out, opts).await,
            _ => send_body(client, &mut upc.conn.stream, plan.body, &mut s.out, opts, deadline).await,
        };
        let sent_at = Instant::now();
        if let Ok(n) = sent {
            session.bytes_in = n;
        }
        if let Err(PumpError::Sink(_)) = &sent {
            // U13: the upstream may have answered early (413, 401...) and stopped reading; if a
            // complete response is waiting, forward it and close the client (its body is unread)
            if plan.body != BodyKind::None {
                let early =
                    read_response_head(shard, &mut upc, &facts, EARLY_RESPONSE_WAIT, &mut s.out, false, &client.stream)
                        .await;
                if let Ok(start) = early {
                    (session.status, session.bytes_out) = (start.status, s.out.len() as u64);
                    session.error = Some("early_upstream_response");
                    let down = response_opts(shard, uid, start.chunked_out);
                    let _ = pump(&mut upc.conn, &mut client.stream, start.body, &mut s.out, down).await;
                    return Ok(Next::LingerClose);
                }
            }
        }
        if let Err(e) = sent {
            let err = match e {
                PumpError::Deadline => {
                    Error::upstream(Kind::ReadTimeout, format!("{} did not take the request in time", upc.key.endpoint))
                }
                PumpError::ClientGone => Error::downstream(Kind::DownstreamClosed),
                PumpError::SourceTimeout => Error::downstream(Kind::ClientTimeout),
                PumpError::SourceFraming(p) => Error::downstream(Kind::Parse(p)),
                PumpError::SourceClosed | PumpError::SourceIo(_) => Error::downstream(Kind::DownstreamClosed),
                PumpError::Sink(io) => {
                    let retry = if upc.reused && body_done_before && plan.idempotent {
                        Retry::IfIdempotent
                    } else {
                        Retry::Never
                    };
                    Error::upstream(Kind::UpstreamClosed, format!("send to {}", upc.key.endpoint))
                        .with_source(io)
                        .with_retry(retry)
                }
            };
            if err.side == Side::Upstream {
                shard.metrics.borrow_mut().upstreams[uid].failures += 1;
            }
            if err.retry == Retry::IfIdempotent && !fresh {
                fresh = true; // the stale-pool race: once more on a new connection
                continue;
            }
            return Err(Failure::new(err, false));
        }
        // phase 9b: response head, within this try's timeout and what is left of the exchange's
        let left = deadline.saturating_duration_since(Instant::now());
        let try_timeout = api.per_try_timeout.min(left).max(Duration::from_millis(1));
        let head =
            read_response_head(shard, &mut upc, &facts, try_timeout, &mut s.out, keep_alive, &client.stream).await;
        match &head {
            Ok(start) => shard.report(uid, upc.ep, start.status >= 500),
            Err(e) if e.side == Side::Upstream && e.retry != Retry::IfIdempotent => {
                shard.metrics.borrow_mut().upstreams[uid].failures += 1;
                shard.report(uid, upc.ep, true);
            }
            Err(_) => shard.metrics.borrow_mut().upstreams[uid].failures += 1,
        }
        // retries: another endpoint, idempotent requests without a body, within the budget
        let gateway_status = matches!(head, Ok(ResponseStart { status: 502..=504, .. }));
        let upstream_failed = matches!(&head, Err(e) if e.side == Side::Upstream && e.retry != Retry::IfIdempotent);
        // a connection that closed or reset before any response byte is retried once elsewhere
        // by default (nginx's `proxy_next_upstream error`, HAProxy's `retry-on conn-failure`)
        let reset_before_response =
            upstream_failed && matches!(&head, Err(e) if matches!(e.kind, Kind::UpstreamClosed));
        let allowed = match reset_before_response && api.retry_on_connection_error && up.endpoints.len() > 1 {
            true => api.retries.max(1),
            false => api.retries,
        };
        if (gateway_status || upstream_failed)
            && attempt <= allowed
            && Instant::now() < deadline
            && plan.idempotent
            && body_done_before
            && state.try_retry(up.retry_budget_percent, Instant::now())
        {
            tracing::debug!(endpoint = %upc.key.endpoint, attempt, "Retrying on another endpoint");
            shard.metrics.borrow_mut().upstreams[uid].retries += 1;
            avoid = Some(upc.ep);
            continue;
        }
        match head {
            Ok(start) => {
                let head_at = Instant::now();
                session.first_byte_us = Some(head_at.saturating_duration_since(sent_at).as_micros() as u64);
                (session.status, session.bytes_out) = (start.status, s.out.len() as u64);
                break (upc, start, head_at);
            }
            Err(err) if err.retry == Retry::IfIdempotent && !fresh && body_done_before && plan.idempotent => {
                fresh = true;
                continue;
            }
            Err(mut err) => {
                err.context = format!("{}: {}", upc.key.endpoint, err.context);
                return Err(Failure::new(err, true));
            }
        }
    };
    // phase 9c: response body (the head is in s.out and goes out with the first body bytes)
    let opts = response_opts(shard, uid, start.chunked_out);
    let result = pump(&mut upc.conn, &mut client.stream, start.body, &mut s.out, opts).await;
    // phase 10: finish
    match result {
        Ok(n) => session.bytes_out += n,
        Err(e) => {
            tracing::debug!(error = ?e, endpoint = %upc.key.endpoint, "Response body failed; truncating");
            session.error = Some(match e {
                PumpError::Sink(_) => "client_closed",
                PumpError::SourceTimeout => "response_body_timeout",
                _ => "upstream_body_failed",
            });
            if !matches!(e, PumpError::Sink(_)) {
                shard.metrics.borrow_mut().upstreams[uid].failures += 1;
            }
            // the head leaves with the first body bytes: a body that fails before any of them
            // (bad first chunk, close or timeout right after the head) still gets a clean 502/504
            let head_unsent = s.out.starts_with(b"HTTP/1.");
            if head_unsent && !matches!(e, PumpError::Sink(_)) {
                let kind = match e {
                    PumpError::SourceTimeout => Kind::ReadTimeout,
                    PumpError::SourceFraming(p) => Kind::BadUpstreamResponse(p),
                    _ => Kind::UpstreamClosed,
                };
                s.out.clear();
                return Err(Failure::new(Error::upstream(kind, format!("{}: response body", upc.key.endpoint)), true));
            }
            return Ok(Next::Close);
        }
    }
    if session.status == 101 {
        // the 101 head is out; what follows is the upgraded protocol, relayed byte for byte
        return Ok(Next::Tunnel(Box::new(upc.conn)));
    }
    // extra bytes after the body (U12) or any framing doubt: never reuse
    let reusable =
        start.upstream_keep_alive && upc.conn.pending().is_empty() && upc.requests < up.max_requests_per_connection;
    if reusable && !shard.draining.get() {
        let UpSide { conn, key, requests, slot, .. } = upc;
        let idle = UpstreamConn { slot, stream: conn.stream, buf: conn.buf, requests };
        shard.pool_checkin(key, idle, head_at);
    }
    Ok(if start.client_keep_alive { Next::KeepAlive } else { Next::Close })
}

/// How often a stalled upload checks whether its client is still there.
const CLIENT_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Sends the request head and body upstream within the exchange `deadline` (a stuck upstream that
/// stops reading gets a 504 then, not after its read timeout), and gives up as soon as the client
/// has gone (its unread upload may still sit in our receive buffer, so its TCP state is checked).
async fn send_body(
    client: &mut Conn,
    upstream: &mut crate::net::Stream,
    body: BodyKind,
    out: &mut Vec<u8>,
    opts: PumpOpts,
    deadline: Instant,
) -> Result<u64, PumpError> {
    use std::os::fd::AsRawFd;
    let fd = client.stream.as_raw_fd();
    let client_gone = async {
        loop {
            monoio::time::sleep(CLIENT_CHECK_EVERY).await;
            if crate::upstream::peer_gone(fd) {
                return;
            }
        }
    };
    // a cut-short pump loses its buffers: both connections are closed after either error
    let sent = monoio::select! {
        r = pump(client, &mut *upstream, body, out, opts) => r,
        _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => Err(PumpError::Deadline),
        _ = client_gone => Err(PumpError::ClientGone),
    };
    if matches!(sent, Err(PumpError::Deadline | PumpError::ClientGone)) {
        crate::upstream::reset_on_close(upstream.tcp());
    }
    sent
}

/// Pump settings for a response body (upstream → client).
fn response_opts(shard: &Shard, uid: UpstreamId, chunked_out: bool) -> PumpOpts {
    PumpOpts {
        read_timeout: shard.snapshot.upstreams[uid].read_timeout,
        write_timeout: shard.snapshot.http.send_timeout,
        chunked_out,
        limit: 0,
        max_trailer_bytes: shard.snapshot.http.max_header_bytes,
        min_rate: None,
    }
}
