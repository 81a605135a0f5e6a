//! THE request path: one request on one client connection, phases in a fixed order
//! (DESIGN.md §4). Long on purpose; read it top to bottom.
//!
//! | phase | here | fails as |
//! |---|---|---|
//! | 3 read + parse head | [`read_head`] → [`plan`] | 400/408/413/414/417/431/501/505 + close |
//! | 4 route | [`plan`] | 404 / 405 (keep-alive when no body is pending) |
//! | 7 pick endpoint | [`upstream_conn`] | — |
//! | 8 upstream connection (pool, else dial from the egress IP) | [`upstream_conn`] | 502 / 504 |
//! | 9 send head + body, read response head, stream body back | [`proxy`] | 502 / 504; truncate after head |
//! | 10 finish: pool check-in, keep-alive decision | [`proxy`] | — |
//!
//! Phases 5 (rate limit) and 6 (WAF hook) slot in after routing when they land.

use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use smallvec::SmallVec;

use super::headers::{write_request_head, write_response_head, write_switching_head, RequestContext, ResponseFraming};
use super::io::{pump, write_out, Conn, MinRate, PumpError, PumpOpts};
use super::respond::{must_close, status_for, write_error};
use super::session::{micros_since, LogFields, Session};
use crate::config::ServiceId;
use crate::config::{AllDown, ApiId, Balance, HashKey, RouteMatch, Target, UpstreamId};
use crate::error::{Error, Kind, Retry, Side};
use crate::http::{
    parse_request, parse_response, upgrade_accepted, BodyKind, HeadLimits, ParseError, RequestHead, Version,
};
use crate::limit::{client_ip, KeyRule, KeySource, Refusal, Rules};
use crate::metrics::{Entry, Phase};
use crate::runtime::Shard;
use crate::upstream::{connect, is_idle_and_open, ring_hash, PoolKey, UpstreamConn};
use std::net::IpAddr;

/// An upstream connection in use: its buffered half plus pool bookkeeping.
struct UpSide {
    conn: Conn,
    slot: crate::upstream::ConnSlot,
    /// Endpoint index in the upstream.
    ep: usize,
    key: PoolKey,
    requests: u32,
    /// Came from the pool: a close before any response byte may be the stale-pool race (U5).
    reused: bool,
}

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

/// After an upload fails, how long to look for a response the upstream sent early (U13).
const EARLY_RESPONSE_WAIT: Duration = Duration::from_millis(500);

/// Pooled connections idle for longer than this are checked for a peer close before reuse.
const STALE_CHECK_AFTER: Duration = Duration::from_millis(500);

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
            session.error = Some(error_flag(&err));
            let next = respond_error(shard, client, &mut s.out, &err, false, true, &[], &mut session).await;
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
            session.error = Some(error_flag(err));
            let close = !keep_alive || must_close(err) || plan.body != BodyKind::None;
            respond_error(shard, client, &mut s.out, err, plan.head_request, close, &plan.id, &mut session).await
        }
        Action::Mock(api) => {
            session.api = Some(*api);
            serve_mock(shard, client, &mut s.out, &plan, *api, keep_alive, &mut session).await
        }
        Action::Proxy { api, upstream } => {
            (session.api, session.upstream) = (Some(*api), Some(*upstream));
            match proxy(shard, client, s, &plan, *api, *upstream, keep_alive, &mut session).await {
                Ok(next) => next,
                Err((err, body_done)) => {
                    tracing::debug!(error = %err, "Request failed");
                    session.error = Some(error_flag(&err));
                    let close = !keep_alive || must_close(&err) || !body_done;
                    respond_error(shard, client, &mut s.out, &err, plan.head_request, close, &plan.id, &mut session)
                        .await
                }
            }
        }
    };
    finish(shard, &session, peer, &plan.id);
    next
}

/// The client side of a connection, as the phases need it.
pub struct Peer {
    pub addr: IpAddr,
    /// Client IP as text (rendered once per connection).
    pub ip: Vec<u8>,
    /// Index of the listener that accepted the connection.
    pub listener: usize,
}

/// Phase 10 bookkeeping: per-core counters, latency histograms and the access-log line.
fn finish(shard: &Shard, session: &Session, peer: &Peer, id: &[u8]) {
    let total_us = micros_since(session.started);
    let mut m = shard.metrics.borrow_mut();
    m.count(session.api, session.status, session.bytes_in, session.bytes_out);
    m.latency.record_total(session.listener, session.service, session.api, session.upstream, total_us);
    if let (Some(api), Some(up)) = (session.api, session.upstream) {
        if let Some(c) = session.connect_us {
            m.latency.record_phase(Phase::Connect, api, up, c);
        }
        if let Some(f) = session.first_byte_us {
            m.latency.record_phase(Phase::FirstByte, api, up, f);
        }
    }
    drop(m);
    if let Some(log) = &shard.access_log {
        let snapshot = &shard.snapshot;
        let fields = session.log.as_ref();
        log.log(&Entry {
            request_id: id,
            client: &peer.ip,
            method: fields.map_or(&[][..], |f| &f.method),
            path: fields.map_or(&[][..], |f| &f.path),
            host: fields.map_or(&[][..], |f| &f.host),
            service: session.service.map_or("", |s| &snapshot.services[s].name),
            api: session.api.map_or("", |a| &snapshot.apis[a].name),
            endpoint: session.endpoint,
            status: session.status,
            bytes_in: session.bytes_in,
            bytes_out: session.bytes_out,
            duration_us: total_us,
            connect_us: session.connect_us,
            first_byte_us: session.first_byte_us,
            error: session.error,
        });
    }
}

/// A short, stable name for the access log's `error` field.
fn error_flag(err: &Error) -> &'static str {
    match &err.kind {
        Kind::Parse(_) => "bad_request",
        Kind::NoRoute => "no_route",
        Kind::MethodNotAllowed(_) => "method_not_allowed",
        Kind::ClientTimeout => "client_timeout",
        Kind::DownstreamClosed => "client_closed",
        Kind::NoHealthyEndpoint => "no_healthy_endpoint",
        Kind::ConnectRefused => "connect_failed",
        Kind::ConnectTimeout => "connect_timeout",
        Kind::ReadTimeout => "response_timeout",
        Kind::UpstreamClosed => "upstream_closed",
        Kind::BadUpstreamResponse(_) => "bad_upstream_response",
        Kind::Forbidden => "ip_denied",
        Kind::RateLimited(_) => "rate_limited",
        Kind::Overloaded => "overloaded",
        Kind::Internal => "internal",
    }
}

/// Sends the error's response (if any). Returns how the connection ends.
#[allow(clippy::too_many_arguments)]
async fn respond_error(
    shard: &Shard,
    client: &mut Conn,
    out: &mut Vec<u8>,
    err: &Error,
    head_only: bool,
    close: bool,
    id: &[u8],
    session: &mut Session,
) -> Next {
    let Some(status) = status_for(err) else {
        return Next::Close;
    };
    tracing::debug!(status, error = %err, "Gateway response");
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
        } else if shard.draining.get() {
            return Ok(None);
        }
        let timeout = match started {
            Some(t0) => http.header_timeout.saturating_sub(t0.elapsed()),
            None if served == 0 => http.header_timeout,
            None => http.keepalive_timeout,
        };
        match client.fill(timeout.max(Duration::from_millis(1)), http.max_header_bytes + 1).await {
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
    let trusted = &snapshot.instance.trusted_proxies;
    let xff = head.headers.iter().find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for")).map(|h| h.value);
    let client = if trusted.is_empty() { peer.addr } else { client_ip(peer.addr, xff, trusted) };
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
            Box::new(LogFields {
                method: SmallVec::from_slice(head.method),
                path: SmallVec::from_slice(head.path),
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
    let (api_id, base_len, prefix_len) =
        match snapshot.routes.find(head.authority.unwrap_or_default(), head.method, head.path) {
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
                Balance::Hash(HashKey::ClientIp) => Some(ring_hash(client.to_string().as_bytes())),
                Balance::Hash(HashKey::Header(name)) => {
                    let v =
                        head.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map_or(&[][..], |h| h.value);
                    Some(ring_hash(v))
                }
                _ => None,
            };
            let trusted_peer = !trusted.is_empty() && trusted.iter().any(|c| c.contains(peer.addr));
            let cx = RequestContext {
                client_ip: &peer.ip,
                forwarded_for: if trusted_peer { xff } else { None },
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
                let v = head.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map_or(&[][..], |h| h.value);
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
    let given = head.headers.iter().find(|h| h.name.eq_ignore_ascii_case("x-request-id")).map(|h| h.value);
    match given {
        Some(v) if !v.is_empty() && v.len() <= 48 && v.iter().all(|b| b.is_ascii_graphic()) => RequestId::from_slice(v),
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
    let keep_alive = keep_alive && plan.body == BodyKind::None;
    out.clear();
    out.extend_from_slice(&mock.head);
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(&plan.id);
    out.extend_from_slice(b"\r\n");
    push_connection(out, keep_alive, plan.version);
    out.extend_from_slice(b"\r\n");
    if !plan.head_request {
        out.extend_from_slice(&mock.body);
    }
    (session.status, session.bytes_out) = (mock.status, out.len() as u64);
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

/// Phases 7–10 for an upstream API. `Err((error, request_body_fully_read))` when no response head
/// was sent yet; after the head went out, failures truncate and return `Ok(Next::Close)`.
#[allow(clippy::too_many_arguments)]
async fn proxy(
    shard: &Shard,
    client: &mut Conn,
    s: &mut Scratch,
    plan: &Plan,
    api_id: ApiId,
    uid: UpstreamId,
    keep_alive: bool,
    session: &mut Session,
) -> Result<Next, (Error, bool)> {
    let snapshot = &shard.snapshot;
    let (api, up) = (&snapshot.apis[api_id], &snapshot.upstreams[uid]);
    let body_done_before = plan.body == BodyKind::None;
    let mut attempt = 0;
    let (mut fresh, mut avoid) = (false, None);
    let state = &shard.upstreams[uid];
    state.count_request();
    // in flight on the chosen endpoint until this function returns (least_request)
    let mut _flight: Option<EndpointFlight<'_>> = None;
    let (mut upc, framing, up_keep_alive, head_at) = loop {
        attempt += 1;
        // phases 7 + 8: endpoint and connection (a stale pooled connection is retried fresh)
        let mut upc = upstream_conn(shard, uid, plan.hash_key, !fresh, avoid, session)
            .await
            .map_err(|e| (e, body_done_before))?;
        _flight = Some(EndpointFlight::enter(&shard.upstreams[uid], upc.ep)); // replaces a failed attempt's
        session.endpoint = Some(upc.key.endpoint);
        if plan.expect_continue && client.pending().is_empty() {
            s.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            write_out(&mut client.stream, &mut s.out, snapshot.http.send_timeout)
                .await
                .map_err(|_| (Error::downstream(Kind::DownstreamClosed), false))?;
        }
        // phase 9a: request head and body
        s.out.clear();
        s.out.extend_from_slice(&s.up_head);
        let opts = PumpOpts {
            read_timeout: snapshot.http.body_timeout,
            write_timeout: up.read_timeout,
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
        let sent = pump(client, &mut upc.conn.stream, plan.body, &mut s.out, opts).await;
        let sent_at = Instant::now();
        if let Ok(n) = sent {
            session.bytes_in = n;
        }
        if let Err(PumpError::Sink(_)) = &sent {
            // U13: the upstream may have answered early (413, 401...) and stopped reading; if a
            // complete response is waiting, forward it and close the client (its body is unread)
            if plan.body != BodyKind::None {
                let early =
                    read_response_head(shard, &mut upc, plan, EARLY_RESPONSE_WAIT, &mut s.out, false, &client.stream)
                        .await;
                if let Ok(((body_in, chunked_out, _), _, status)) = early {
                    (session.status, session.bytes_out) = (status, s.out.len() as u64);
                    session.error = Some("early_upstream_response");
                    let down = PumpOpts {
                        read_timeout: up.read_timeout,
                        write_timeout: snapshot.http.send_timeout,
                        chunked_out,
                        limit: 0,
                        max_trailer_bytes: snapshot.http.max_header_bytes,
                        min_rate: None,
                    };
                    let _ = pump(&mut upc.conn, &mut client.stream, body_in, &mut s.out, down).await;
                    return Ok(Next::LingerClose);
                }
            }
        }
        if let Err(e) = sent {
            let err = match e {
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
            return Err((err, false));
        }
        // phase 9b: response head
        let head =
            read_response_head(shard, &mut upc, plan, api.per_try_timeout, &mut s.out, keep_alive, &client.stream)
                .await;
        match &head {
            Ok((_, _, status)) => shard.report(uid, upc.ep, *status >= 500),
            Err(e) if e.side == Side::Upstream && e.retry != Retry::IfIdempotent => {
                shard.metrics.borrow_mut().upstreams[uid].failures += 1;
                shard.report(uid, upc.ep, true);
            }
            Err(_) => shard.metrics.borrow_mut().upstreams[uid].failures += 1,
        }
        // retries: another endpoint, idempotent requests without a body, within the budget
        let gateway_status = matches!(head, Ok((_, _, 502..=504)));
        let upstream_failed = matches!(&head, Err(e) if e.side == Side::Upstream && e.retry != Retry::IfIdempotent);
        if (gateway_status || upstream_failed)
            && attempt <= api.retries
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
            Ok((framing, up_keep_alive, status)) => {
                let head_at = Instant::now();
                session.first_byte_us = Some(head_at.saturating_duration_since(sent_at).as_micros() as u64);
                (session.status, session.bytes_out) = (status, s.out.len() as u64);
                break (upc, framing, up_keep_alive, head_at);
            }
            Err(err) if err.retry == Retry::IfIdempotent && !fresh && body_done_before && plan.idempotent => {
                fresh = true;
                continue;
            }
            Err(mut err) => {
                err.context = format!("{}: {}", upc.key.endpoint, err.context);
                return Err((err, true));
            }
        }
    };
    // phase 9c: response body (the head is in s.out and goes out with the first body bytes)
    let (body_in, chunked_out, client_keep_alive) = framing;
    let opts = PumpOpts {
        read_timeout: up.read_timeout,
        write_timeout: snapshot.http.send_timeout,
        chunked_out,
        limit: 0,
        max_trailer_bytes: snapshot.http.max_header_bytes,
        min_rate: None,
    };
    let result = pump(&mut upc.conn, &mut client.stream, body_in, &mut s.out, opts).await;
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
            return Ok(Next::Close);
        }
    }
    if session.status == 101 {
        // the 101 head is out; what follows is the upgraded protocol, relayed byte for byte
        return Ok(Next::Tunnel(Box::new(upc.conn)));
    }
    // extra bytes after the body (U12) or any framing doubt: never reuse
    let reusable = up_keep_alive && upc.conn.pending().is_empty() && upc.requests < up.max_requests_per_connection;
    if reusable && !shard.draining.get() {
        let UpSide { conn, key, requests, slot, .. } = upc;
        let idle = UpstreamConn { slot, stream: conn.stream, buf: conn.buf, requests };
        shard.pool.borrow_mut().checkin(key, idle, head_at, up.pool_max_idle_per_endpoint);
    }
    Ok(if client_keep_alive { Next::KeepAlive } else { Next::Close })
}

/// (how the body arrives, re-chunk for the client, keep the client connection)
type Framing = (BodyKind, bool, bool);

/// Reads the upstream response head within `timeout`, skipping interim 1xx responses, and writes
/// the downstream head into `out`. Returns the framing and whether the upstream allows reuse.
async fn read_response_head(
    shard: &Shard,
    up: &mut UpSide,
    plan: &Plan,
    timeout: Duration,
    out: &mut Vec<u8>,
    keep_alive: bool,
    client: &TcpStream,
) -> Result<(Framing, bool, u16), Error> {
    let mut deadline: Option<Instant> = None;
    let max = shard.snapshot.http.max_header_bytes;
    let stale_retry = if up.reused { Retry::IfIdempotent } else { Retry::Never };
    let upc = &mut up.conn;
    let mut got_bytes = false;
    loop {
        if !upc.pending().is_empty() {
            got_bytes = true;
            let mut headers = crate::http::header_buf();
            let parsed = parse_response(upc.pending(), &mut headers, max, plan.head_request)
                .map_err(|e| Error::upstream(Kind::BadUpstreamResponse(e), ""))?;
            if let Some(head) = parsed {
                let head_len = head.head_len;
                if head.status == 101 {
                    let chosen = head.headers.iter().find(|h| h.name.eq_ignore_ascii_case("upgrade")).map(|h| h.value);
                    return match (plan.upgrade.as_deref(), chosen) {
                        (Some(offered), Some(chosen)) if upgrade_accepted(offered, chosen) => {
                            out.clear();
                            write_switching_head(out, &head);
                            upc.consume(head_len);
                            Ok(((BodyKind::None, false, false), false, 101))
                        }
                        _ => Err(Error::upstream(
                            Kind::BadUpstreamResponse(ParseError::BadRequest(
                                "101 for a protocol the client did not offer",
                            )),
                            "",
                        )),
                    };
                }
                if (100..200).contains(&head.status) {
                    upc.consume(head_len);
                    continue;
                }
                let chunk_for_client = plan.version == Version::Http11;
                let (framing_out, chunked_out) = match head.body {
                    BodyKind::None => (ResponseFraming::NoBody, false),
                    BodyKind::Length(n) => (ResponseFraming::Length(n), false),
                    BodyKind::Chunked | BodyKind::UntilClose if chunk_for_client => (ResponseFraming::Chunked, true),
                    BodyKind::Chunked | BodyKind::UntilClose => (ResponseFraming::Close, false),
                };
                let client_keep_alive = keep_alive && !shard.draining.get() && framing_out != ResponseFraming::Close;
                let conn_header = match (client_keep_alive, plan.version) {
                    (false, _) => Some(false),
                    (true, Version::Http10) => Some(true),
                    (true, Version::Http11) => None,
                };
                out.clear();
                write_response_head(out, &head, framing_out, conn_header);
                let result = ((head.body, chunked_out, client_keep_alive), head.keep_alive, head.status);
                upc.consume(head_len);
                return Ok(result);
            }
        }
        // the common case is one read: only a head split over reads pays for the clock
        let left = match deadline {
            None => {
                deadline = Some(Instant::now() + timeout);
                timeout
            }
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        if left.is_zero() {
            return Err(Error::upstream(Kind::ReadTimeout, "response head"));
        }
        // while the upstream thinks, a client that goes away aborts the exchange (U18)
        match upc.fill_watching(left, max + 1, client).await {
            Ok(0) => {
                let retry = if got_bytes { Retry::Never } else { stale_retry };
                return Err(Error::upstream(Kind::UpstreamClosed, "before response head").with_retry(retry));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(Error::upstream(Kind::ReadTimeout, "response head"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Error::upstream(Kind::BadUpstreamResponse(ParseError::HeaderTooLarge), ""));
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
                return Err(Error::new(
                    Side::Downstream,
                    Kind::DownstreamClosed,
                    "client left while the upstream was busy",
                ));
            }
            Err(e) => {
                let retry = if got_bytes { Retry::Never } else { stale_retry };
                return Err(Error::upstream(Kind::UpstreamClosed, "reading response head")
                    .with_source(e)
                    .with_retry(retry));
            }
        }
    }
}

/// Phases 7 + 8: pick an endpoint, take a pooled connection or dial one. A failed dial is retried
/// once on another endpoint (nothing was sent, so this is safe for every method).
async fn upstream_conn(
    shard: &Shard,
    uid: UpstreamId,
    key: Option<u64>,
    use_pool: bool,
    avoid: Option<usize>,
    session: &mut Session,
) -> Result<UpSide, Error> {
    let up = &shard.snapshot.upstreams[uid];
    let state = &shard.upstreams[uid];
    // a retry avoids the endpoint that just failed, when there is another
    let others = avoid.is_some() && (0..up.endpoints.len()).any(|i| Some(i) != avoid && state.available[i].get());
    let available = |i: usize| state.available[i].get() && !(others && Some(i) == avoid);
    let try_all = up.when_all_down == AllDown::TryAll;
    let picked = state.choose(&up.balance, key, available);
    let first = match picked {
        Some(i) => i,
        None if try_all => state.choose(&up.balance, key, |_| true).unwrap_or(0),
        None => return Err(Error::upstream(Kind::NoHealthyEndpoint, format!("every endpoint of {} is down", up.name))),
    };
    match dial_or_reuse(shard, uid, first, use_pool, session).await {
        Ok(c) => Ok(c),
        Err(err) if err.retry == Retry::Safe && up.endpoints.len() > 1 => {
            tracing::debug!(error = %err, "Connect failed; retrying on another endpoint");
            let second = state.choose(&up.balance, key, |i| i != first && available(i)).or_else(|| {
                if try_all {
                    state.choose(&up.balance, key, |i| i != first)
                } else {
                    None
                }
            });
            match second {
                Some(second) => dial_or_reuse(shard, uid, second, use_pool, session).await,
                None => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}

async fn dial_or_reuse(
    shard: &Shard,
    uid: UpstreamId,
    ep: usize,
    use_pool: bool,
    session: &mut Session,
) -> Result<UpSide, Error> {
    let up = &shard.snapshot.upstreams[uid];
    let key = PoolKey { endpoint: up.endpoints[ep].addr, egress_policy: uid };
    if use_pool {
        // the request started microseconds ago: its timestamp is good enough for idle expiry
        let now = session.started;
        let mut pool = shard.pool.borrow_mut();
        while let Some((c, idle)) = pool.checkout(&key, now, up.pool_idle_timeout) {
            // a connection busy a moment ago is almost never stale; the peek costs a syscall, so
            // only long-idle ones pay it (a stale one is still caught by the idempotent retry)
            if idle < STALE_CHECK_AFTER || is_idle_and_open(&c.stream) {
                shard.metrics.borrow_mut().upstreams[uid].pool_hits += 1;
                return Ok(UpSide {
                    conn: Conn::new(c.stream, c.buf),
                    slot: c.slot,
                    ep,
                    key,
                    requests: c.requests,
                    reused: true,
                });
            }
        }
    }
    let state = &shard.upstreams[uid];
    if up.max_connections.is_some_and(|max| state.open.get() >= max) {
        // circuit cap: never queue, answer at once (U17)
        return Err(Error::upstream(Kind::Overloaded, format!("{}: max_connections reached", up.name)));
    }
    let slot = crate::upstream::ConnSlot::new(&state.open);
    let t0 = Instant::now();
    let source_ip = state.egress_for_new_connection(up, shard.worker);
    let dialed = connect(key.endpoint, source_ip, up.connect_timeout).await;
    let mut m = shard.metrics.borrow_mut();
    m.upstreams[uid].connects += 1;
    if dialed.is_err() {
        m.upstreams[uid].connect_failures += 1;
    }
    drop(m);
    if dialed.is_err() {
        shard.report(uid, ep, true);
    }
    match dialed {
        Ok(stream) => {
            session.connect_us = Some(micros_since(t0));
            Ok(UpSide {
                conn: Conn::new(stream, Vec::with_capacity(16 * 1024)),
                slot,
                ep,
                key,
                requests: 0,
                reused: false,
            })
        }
        Err(e) => {
            let kind =
                if e.kind() == std::io::ErrorKind::TimedOut { Kind::ConnectTimeout } else { Kind::ConnectRefused };
            let context = match source_ip {
                Some(ip) => format!("connect {} from {ip}", key.endpoint),
                None => format!("connect {}", key.endpoint),
            };
            Err(Error::new(Side::Upstream, kind, context).with_source(e).with_retry(Retry::Safe))
        }
    }
}

/// Counts a request as in flight on an endpoint (least_request) for as long as it lives.
struct EndpointFlight<'a>(&'a crate::upstream::UpstreamState, usize);

impl<'a> EndpointFlight<'a> {
    fn enter(state: &'a crate::upstream::UpstreamState, ep: usize) -> Self {
        state.in_flight[ep].set(state.in_flight[ep].get() + 1);
        Self(state, ep)
    }
}

impl Drop for EndpointFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight[self.1].set(self.0.in_flight[self.1].get() - 1);
    }
}

/// Counts a request against its API's concurrency cap for as long as it lives.
struct ApiFlight<'a>(&'a Shard, ApiId);

impl<'a> ApiFlight<'a> {
    fn enter(shard: &'a Shard, api: ApiId) -> Self {
        shard.api_in_flight.borrow_mut()[api] += 1;
        Self(shard, api)
    }
}

impl Drop for ApiFlight<'_> {
    fn drop(&mut self) {
        self.0.api_in_flight.borrow_mut()[self.1] -= 1;
    }
}

/// Counts a request as in flight (the drain waits for these) for as long as it lives.
struct InFlight<'a>(&'a Shard);

impl<'a> InFlight<'a> {
    fn enter(shard: &'a Shard) -> Self {
        shard.in_flight.set(shard.in_flight.get() + 1);
        Self(shard)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}
