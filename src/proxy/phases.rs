//! THE request path: one request on one client connection, its phases called in order from
//! [`run`]. Read it top to bottom.
//!
//! | phase | where | fails as |
//! |---|---|---|
//! | read head, parse | [`read_head`], `http::parse_request` | 400/408/413/414/417/431/501/505 + close |
//! | context | `request::Request::new` (id, client address, keep-alive, log fields) | — |
//! | route (IP lists, route table; CORS preflights answered) | `route::route` | 403; 404 / 405 (keep-alive when no body is pending); 204 |
//! | authenticate (consumer from API key or JWT; CORS origin) | `auth::authenticate` | 401 + WWW-Authenticate; 403 |
//! | admit (rates, concurrency and body caps; returns its guard) | `route::admit` | 429 + Retry-After; 503; 413 |
//! | filters (async: WAF, auth, policies; body read ahead for those that inspect it) | `body_peek`, `filter::run_chain` | the filter's own response; 400/408 for the body |
//! | upstream head | `route::upstream_head` | — |
//! | forward (endpoint, connection, send, response head, one retry loop) | `forward::forward` | 502 / 503 / 504; truncate after head |
//! | finish (metrics, access log) | `session::finish` | — |
//!
//! The request pins the worker's current config generation for its whole life. The parsed head
//! borrows the connection's read buffer until the upstream head is written; everything decided
//! about the request lives in its [`Request`] context.

use std::time::Duration;

use super::auth::authenticate;
use super::body_peek::peek_body;
use super::forward::{forward, Failure};
use super::io::{Conn, Idle};
use super::local::{
    respond_error, serve_filter_response, serve_mock, serve_preflight, serve_server_options, ErrorReply,
};
use super::request::{Action, OwnedHead, Request, Routed};
use super::route::{admit, route, upstream_head, Route};
use super::session::{finish, ApiFlight, InFlight, Peer, Session};
use super::subrequest::ShardCalls;
use crate::config::Target;
use crate::error::{Error, Kind};
use crate::filter::{run_chain, FilterRequest, Verdict};
use crate::http::{parse_request, BodyKind, HeadLimits, ParseError, RequestHead};
use crate::runtime::{Generation, Shard};

/// What the connection loop does after a request.
pub enum Next {
    KeepAlive,
    /// Close now (the response, if any, is complete or deliberately truncated).
    Close,
    /// Close after a lingering read so the error response is not lost to a TCP reset.
    LingerClose,
    /// The upstream switched protocols (101 to an offered upgrade): relay bytes both ways.
    Tunnel(Box<Conn>),
    /// Idle past `[http] idle_park_ms` with nothing buffered (plain TCP only): hand the socket to
    /// the worker's parking lot until it turns readable or this keep-alive deadline passes.
    Park(std::time::Instant),
}

/// Per-connection buffers reused across requests.
#[derive(Default)]
pub struct Scratch {
    /// Bytes queued for the next write to either side.
    pub out: Vec<u8>,
    /// The serialised upstream request head.
    pub up_head: Vec<u8>,
    /// Cancels the keep-alive read before the connection parks. One per connection: a monoio
    /// canceller costs an allocation and a hasher when made (~1 000 instructions per request
    /// when it was made per read, bench/callgrind.sh), and each cancellable read ~280 more.
    pub canceller: monoio::io::Canceller,
}

/// Serves one request. `served` counts earlier requests on this connection.
pub async fn run(shard: &Shard, client: &mut Conn, peer: &Peer, served: u32, s: &mut Scratch) -> Next {
    // read head (on the config current while waiting), then pin the generation current when the
    // head is complete: a keep-alive connection picks up a reload at its next request
    let waiting = shard.generation();
    let limits = head_limits(&waiting);
    let read = read_head(shard, &waiting, client, peer, served, &limits, s).await;
    drop(waiting);
    let gen = shard.generation();
    let gen = &*gen;
    let read = match read {
        Ok(Arrival::Head) => head_phases(shard, gen, client, peer, served, &limits, &mut s.up_head),
        Ok(Arrival::Closed) => return Next::Close,
        Ok(Arrival::Parked(deadline)) => return Next::Park(deadline),
        Err(err) => Err(err),
    };
    let (mut req, step, api_flight) = match read {
        Ok(parts) => parts,
        Err(err) => {
            let mut session = Session::new(peer.listener.get(), std::time::Instant::now());
            let reply = ErrorReply { head_only: false, close: true, id: &[] };
            let next = respond_error(gen, client, &mut s.out, &err, reply, &mut session).await;
            finish(shard, gen, &session, peer, &[]);
            return next;
        }
    };
    let _in_flight = InFlight::enter(shard);
    // filters (only APIs that have some await here), then the upstream head
    let action = match step {
        Step::Done(action) => action,
        // boxed: its state is only paid for by requests that run filters
        Step::Filter { routed, head } => {
            Box::pin(filter(shard, gen, client, peer, &mut req, &routed, &head, &limits, &mut s.up_head)).await
        }
    };
    // respond: forward, or answer here
    let next = match action {
        Action::Reject(err) => {
            let close = !req.keep_alive || req.body != BodyKind::None;
            let reply = ErrorReply { head_only: req.head_request, close, id: &req.id };
            respond_error(gen, client, &mut s.out, &err, reply, &mut req.session).await
        }
        Action::ServerOptions => serve_server_options(gen, client, &mut s.out, &mut req).await,
        Action::Preflight(api) => serve_preflight(gen, client, &mut s.out, &mut req, api).await,
        Action::Mock(api) => serve_mock(gen, client, &mut s.out, &mut req, api).await,
        Action::Local(response) => serve_filter_response(gen, client, &mut s.out, &mut req, &response).await,
        Action::Proxy(upstream) => {
            req.session.upstream = Some(upstream);
            match forward(shard, gen, client, s, &mut req, upstream).await {
                Ok(next) => next,
                Err(Failure { error, body_read }) => {
                    tracing::debug!(id = %String::from_utf8_lossy(&req.id), error = %error, "Request failed");
                    let close = !req.keep_alive || !body_read;
                    let reply = ErrorReply { head_only: req.head_request, close, id: &req.id };
                    respond_error(gen, client, &mut s.out, &error, reply, &mut req.session).await
                }
            }
        }
    };
    // finish
    drop(api_flight);
    finish(shard, gen, &req.session, peer, &req.id);
    next
}

/// Where the synchronous head phases leave a request.
enum Step {
    Done(Action),
    /// The API has request filters: they run on a copy of the head (the parsed head and its
    /// field array stay out of the connection task's state, which every connection pays for).
    Filter {
        routed: Routed,
        head: Box<OwnedHead>,
    },
}

/// The synchronous phases on the buffered head: parse, context, route, admit (its guard is
/// returned), then the upstream head unless the API has filters. The head leaves the read buffer.
fn head_phases<'g>(
    shard: &Shard,
    gen: &'g Generation,
    client: &mut Conn,
    peer: &Peer,
    served: u32,
    limits: &HeadLimits,
    up_head: &mut Vec<u8>,
) -> Result<(Request, Step, Option<ApiFlight<'g>>), Error> {
    let mut headers = crate::http::header_buf();
    let pending = client.pending();
    let head = parse_request(pending, &mut headers, limits)?.ok_or(ParseError::BadRequest("incomplete head"))?;
    let head_len = head.head_len;
    let mut req = Request::new(shard, gen, peer, served, &head);
    let mut flight = None;
    let step = match route(shard, gen, &head, peer, &mut req) {
        Err(err) => Step::Done(Action::Reject(err)),
        Ok(Route::ServerOptions) => Step::Done(Action::ServerOptions),
        Ok(Route::Preflight(api)) => {
            req.cors_origin = head.header("origin").map(Into::into);
            Step::Done(Action::Preflight(api))
        }
        Ok(Route::Api(routed)) => match authenticate(gen, &head, &mut req, routed.api)
            .and_then(|()| admit(shard, gen, &head, &req, routed.api))
        {
            Err(err) => Step::Done(Action::Reject(err)),
            Ok(guard) => {
                flight = guard;
                match gen.filters[routed.api].is_empty() {
                    true => Step::Done(target(gen, &head, peer, &mut req, &routed, up_head)),
                    false => Step::Filter { head: Box::new(OwnedHead::new(&head, &pending[..head_len])), routed },
                }
            }
        },
    };
    client.consume(head_len);
    Ok((req, step, flight))
}

/// The API's request filters, in order (after reading ahead the body they inspect); then the
/// upstream head from the copied head.
#[allow(clippy::too_many_arguments)]
async fn filter(
    shard: &Shard,
    gen: &Generation,
    client: &mut Conn,
    peer: &Peer,
    req: &mut Request,
    routed: &Routed,
    head: &OwnedHead,
    limits: &HeadLimits,
    up_head: &mut Vec<u8>,
) -> Action {
    let api = &gen.snapshot.apis[routed.api];
    let chain = &gen.filters[routed.api];
    let want = chain.iter().map(|f| f.body_bytes()).max().unwrap_or(0);
    let mut body = Vec::new();
    let body_truncated = match peek_body(gen, client, req, want, &mut body).await {
        Ok(truncated) => truncated,
        Err(err) => return Action::Reject(err),
    };
    let mut effects = std::mem::take(&mut req.effects);
    let view = FilterRequest {
        head,
        path: routed.path(head),
        client: req.client,
        service: &gen.snapshot.services[api.service].name,
        api: &api.name,
        request_id: &req.id,
        body: &body,
        body_truncated,
        upstreams: &ShardCalls { shard, gen },
    };
    let verdict = run_chain(chain, &view, &mut effects).await;
    req.session.waf = effects.waf;
    req.effects = effects;
    if let Verdict::Respond(response) = verdict {
        return Action::Local(Box::new(response));
    }
    let mut headers = crate::http::header_buf();
    match parse_request(&head.raw, &mut headers, limits) {
        Ok(Some(parsed)) => target(gen, &parsed, peer, req, routed, up_head),
        _ => Action::Reject(Error::new(crate::error::Side::Internal, Kind::Internal, "copied head does not parse")),
    }
}

/// What the routed API's target makes of the request: a mock answer, or the upstream head
/// written into `up_head` for forwarding.
fn target(
    gen: &Generation,
    head: &RequestHead<'_, '_>,
    peer: &Peer,
    req: &mut Request,
    routed: &Routed,
    up_head: &mut Vec<u8>,
) -> Action {
    match &gen.snapshot.apis[routed.api].target {
        Target::Mock(_) => Action::Mock(routed.api),
        Target::Upstream(uid) => {
            upstream_head(gen, head, peer, req, routed, *uid, up_head);
            Action::Proxy(*uid)
        }
    }
}

fn head_limits(gen: &Generation) -> HeadLimits {
    let http = &gen.snapshot.http;
    HeadLimits {
        max_request_line_bytes: http.max_request_line_bytes,
        max_header_bytes: http.max_header_bytes,
        max_headers: http.max_headers,
    }
}

/// How the wait for a request head ended.
enum Arrival {
    /// A complete head is buffered.
    Head,
    /// The client closed or stayed idle past the keep-alive timeout (no response is due).
    Closed,
    /// Idle past `[http] idle_park_ms`: the connection parks until this keep-alive deadline.
    Parked(std::time::Instant),
}

/// Reads until a complete head is buffered. A head that is malformed or over a limit is refused
/// as soon as its bytes show it, before it is complete.
async fn read_head(
    shard: &Shard,
    gen: &Generation,
    client: &mut Conn,
    peer: &Peer,
    served: u32,
    limits: &HeadLimits,
    s: &mut Scratch,
) -> Result<Arrival, Error> {
    let http = &gen.snapshot.http;
    let mut started: Option<std::time::Instant> = None;
    loop {
        let pending = client.pending();
        if !pending.is_empty() {
            // the common case: one read brought exactly one head (a GET without pipelining)
            if pending.ends_with(b"\r\n\r\n") && !pending.starts_with(b"\r\n") {
                return Ok(Arrival::Head);
            }
            // otherwise the parser decides (it also refuses bad or oversized partial heads)
            if parse_request(pending, &mut crate::http::header_buf(), limits)?.is_some() {
                return Ok(Arrival::Head);
            }
            started.get_or_insert_with(std::time::Instant::now);
        }
        // while draining, an idle keep-alive connection still waits: a request its client has
        // just written is served (with `Connection: close`); the worker ends the wait after its
        // idle grace
        let timeout = match started {
            Some(t0) => http.header_timeout.saturating_sub(t0.elapsed()),
            None if served == 0 => http.header_timeout,
            None => http.keepalive_timeout,
        };
        let idle = started.is_none() && served > 0;
        // (no head started means nothing is buffered: a partial head sets `started` above)
        if started.is_none() && client.buf.capacity() == 0 {
            // no buffer yet: a fresh connection (its request is usually already here), or one
            // back from the parking lot because its socket turned readable; one loop turn saved
            match client.fill_now(http.max_header_bytes + 1) {
                Ok(Some(0)) => return Ok(Arrival::Closed),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(ParseError::HeaderTooLarge.into()),
                Err(_) => return Ok(Arrival::Closed),
            }
        }
        // a wait with nothing buffered parks after `idle_park_ms`: between requests, and before
        // the first one (a pre-connected client; on TLS, after the handshake) until the header
        // timeout, after which it would be closed without an answer either way. (Parking needs
        // the worker's lot: its tick ends the wait, its epoll set holds the socket.)
        let park = http.idle_park.filter(|p| {
            started.is_none() && client.stream.cancellable_reads() && timeout > *p && shard.parked.borrow().open()
        });
        peer.idle.set(idle);
        let filled = match park {
            Some(park_after) => {
                let waiting = std::time::Instant::now();
                let park_after = crate::runtime::IdleFor::new(&shard.parked, waiting + park_after);
                match client.fill_or_park(park_after, http.max_header_bytes + 1, &mut s.canceller).await {
                    Ok(Idle::Read(n)) => Ok(n),
                    Ok(Idle::Parked) => return Ok(Arrival::Parked(waiting + timeout)),
                    Err(e) => Err(e),
                }
            }
            None => client.fill(timeout.max(Duration::from_millis(1)), http.max_header_bytes + 1).await,
        };
        peer.idle.set(false);
        match filled {
            Ok(0) => return Ok(Arrival::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && started.is_some() => {
                return Err(Error::downstream(Kind::ClientTimeout));
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(ParseError::HeaderTooLarge.into()),
            Err(_) => return Ok(Arrival::Closed),
        }
    }
}
