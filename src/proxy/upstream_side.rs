//! The upstream half of the request path: choosing an endpoint, taking a pooled connection or
//! dialing one, and reading the response head. Called only from `forward`.
//!
//! Per-core: everything here works on the worker's `Shard` (balancer state, pool, counters).

use std::time::{Duration, Instant};

use super::headers::{write_response_head, write_switching_head, ResponseFraming};
use super::io::Conn;
use super::session::{micros_since, Session};
use crate::config::{AllDown, UpstreamId};
use crate::error::{Error, Kind, Retry, Side};
use crate::http::{parse_response, upgrade_accepted, BodyKind, ParseError, Version};
use crate::runtime::{Generation, Shard};
use crate::upstream::{connect, PoolKey};

/// An upstream connection in use: its buffered half plus pool bookkeeping.
pub(super) struct UpSide {
    pub(super) conn: Conn,
    pub(super) slot: crate::upstream::ConnSlot,
    /// Endpoint index in the upstream.
    pub(super) ep: usize,
    pub(super) key: PoolKey,
    pub(super) requests: u32,
    /// Came from the pool: a close before any response byte may be the stale-pool race (U5).
    pub(super) reused: bool,
}

/// Initial read buffer of a new upstream connection (grows up to the stream buffer size).
const UPSTREAM_BUF_BYTES: usize = 16 * 1024;

/// After an upload fails, how long to look for a response the upstream sent early (U13).
pub(super) const EARLY_RESPONSE_WAIT: Duration = Duration::from_millis(500);

/// What a response head decides about the rest of the exchange.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResponseStart {
    pub(super) status: u16,
    /// How the body arrives from the upstream.
    pub(super) body: BodyKind,
    /// Re-frame the body as chunked for the client.
    pub(super) chunked_out: bool,
    /// The client connection stays open after this response.
    pub(super) client_keep_alive: bool,
    /// The upstream allows reusing its connection after the body.
    pub(super) upstream_keep_alive: bool,
}

/// What the response side needs to know about the request it answers.
pub(super) struct RequestFacts<'a> {
    pub(super) head_request: bool,
    pub(super) version: Version,
    /// Protocols offered upstream in `Upgrade`, when the client asked to upgrade.
    pub(super) upgrade: Option<&'a [u8]>,
    pub(super) id: &'a [u8],
    /// The client connection may stay open after the response.
    pub(super) keep_alive: bool,
    /// `response_headers` and CORS.
    pub(super) policy: super::headers::ResponsePolicy<'a>,
}

/// Reads the upstream response head within `timeout`, skipping interim 1xx responses, and writes
/// the downstream head into `out`.
pub(super) async fn read_response_head(
    shard: &Shard,
    gen: &Generation,
    up: &mut UpSide,
    facts: &RequestFacts<'_>,
    timeout: Duration,
    out: &mut Vec<u8>,
    client: &crate::net::Stream,
) -> Result<ResponseStart, Error> {
    let mut deadline: Option<Instant> = None;
    let max = gen.snapshot.http.max_header_bytes;
    let stale_retry = if up.reused { Retry::StaleConnection } else { Retry::Never };
    let upc = &mut up.conn;
    let mut got_bytes = false;
    loop {
        if !upc.pending().is_empty() {
            got_bytes = true;
            let mut headers = crate::http::header_buf();
            let parsed = parse_response(upc.pending(), &mut headers, max, facts.head_request)
                .map_err(|e| Error::upstream(Kind::BadUpstreamResponse(e), ""))?;
            if let Some(head) = parsed {
                let head_len = head.head_len;
                if head.status == 101 {
                    let chosen = head.header("upgrade");
                    return match (facts.upgrade, chosen) {
                        (Some(offered), Some(chosen)) if upgrade_accepted(offered, chosen) => {
                            out.clear();
                            write_switching_head(out, &head);
                            upc.consume(head_len);
                            Ok(ResponseStart {
                                status: 101,
                                body: BodyKind::None,
                                chunked_out: false,
                                client_keep_alive: false,
                                upstream_keep_alive: false,
                            })
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
                let chunk_for_client = facts.version == Version::Http11;
                if !head.codings.is_empty() && !chunk_for_client {
                    // a transfer-coded body (gzip, chunked) cannot be framed for HTTP/1.0
                    return Err(Error::upstream(
                        Kind::BadUpstreamResponse(ParseError::BadRequest(
                            "transfer coding an HTTP/1.0 client cannot take",
                        )),
                        "",
                    ));
                }
                let (framing_out, chunked_out) = match head.body {
                    BodyKind::None => (ResponseFraming::NoBody, false),
                    BodyKind::Length(n) => (ResponseFraming::Length(n), false),
                    BodyKind::Chunked | BodyKind::UntilClose if chunk_for_client => (ResponseFraming::Chunked, true),
                    BodyKind::Chunked | BodyKind::UntilClose => (ResponseFraming::Close, false),
                };
                let client_keep_alive =
                    facts.keep_alive && !shard.draining.get() && framing_out != ResponseFraming::Close;
                let conn_header = match (client_keep_alive, facts.version) {
                    (false, _) => Some(false),
                    (true, Version::Http10) => Some(true),
                    (true, Version::Http11) => None,
                };
                out.clear();
                let id = gen.snapshot.http.response_request_id.then_some(facts.id);
                write_response_head(out, &head, framing_out, conn_header, id, facts.policy);
                let result = ResponseStart {
                    status: head.status,
                    body: head.body,
                    chunked_out,
                    client_keep_alive,
                    upstream_keep_alive: head.keep_alive,
                };
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
pub(super) async fn upstream_conn(
    shard: &Shard,
    gen: &Generation,
    uid: UpstreamId,
    key: Option<u64>,
    use_pool: bool,
    avoid: Option<usize>,
    session: &mut Session,
) -> Result<UpSide, Error> {
    let up = &gen.snapshot.upstreams[uid];
    let state = &gen.upstreams[uid];
    if up.endpoints.is_empty() {
        // every endpoint is a DNS name that has not resolved yet (or resolved to nothing usable)
        return Err(Error::upstream(Kind::NoHealthyEndpoint, format!("{} has no address yet", up.name)));
    }
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
    match dial_or_reuse(shard, gen, uid, first, use_pool, session).await {
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
                Some(second) => dial_or_reuse(shard, gen, uid, second, use_pool, session).await,
                None => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}

async fn dial_or_reuse(
    shard: &Shard,
    gen: &Generation,
    uid: UpstreamId,
    ep: usize,
    use_pool: bool,
    session: &mut Session,
) -> Result<UpSide, Error> {
    let up = &gen.snapshot.upstreams[uid];
    let key = PoolKey { endpoint: up.endpoints[ep].addr, identity: up.pool_identity, upstream: uid };
    if use_pool {
        // the request started microseconds ago: its timestamp is good enough for idle expiry
        if let Some(c) = shard.pool_checkout(&key, session.started) {
            shard.count(gen, |m| m.upstreams[uid].pool_hits += 1);
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
    let state = &gen.upstreams[uid];
    if up.max_connections.is_some_and(|max| state.open.get() >= max) {
        // circuit cap: never queue, answer at once (U17)
        return Err(Error::upstream(Kind::Overloaded, format!("{}: max_connections reached", up.name)));
    }
    let slot = crate::upstream::ConnSlot::new(&state.open);
    let t0 = Instant::now();
    #[cfg(test)]
    if let Some(stream) = test_dial::next() {
        let conn = Conn::new(stream, Vec::new());
        return Ok(UpSide { conn, slot, ep, key, requests: 0, reused: false });
    }
    let source_ip = state.egress_for_new_connection(up, shard.worker);
    let dialed = connect(key.endpoint, source_ip, up.connect_timeout).await;
    let dialed = match (dialed, &up.tls) {
        (Ok(tcp), Some(tls)) => {
            let left = up.connect_timeout.saturating_sub(t0.elapsed()).max(std::time::Duration::from_millis(1));
            tls_connect(tcp, tls, key.endpoint, left).await.map_err(Dial::Tls)
        }
        (Ok(tcp), None) => Ok(crate::net::Stream::Plain(tcp)),
        (Err(e), _) => Err(Dial::Tcp(e)),
    };
    shard.count(gen, |m| {
        m.upstreams[uid].connects += 1;
        m.upstreams[uid].connect_failures += u64::from(dialed.is_err());
    });
    if dialed.is_err() {
        shard.report(gen, uid, ep, true);
    }
    match dialed {
        Ok(stream) => {
            session.connect_us = Some(micros_since(t0));
            Ok(UpSide {
                conn: Conn::new(stream, Vec::with_capacity(UPSTREAM_BUF_BYTES)),
                slot,
                ep,
                key,
                requests: 0,
                reused: false,
            })
        }
        Err(Dial::Tls(err)) => Err(err),
        Err(Dial::Tcp(e)) => {
            if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                // not the endpoint's fault: this host cannot use the egress address (or ran out of ports)
                tracing::warn!(endpoint = %key.endpoint, source_ip = ?source_ip, error = %e, "Cannot connect from the egress address");
            }
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

/// Why a new upstream connection could not be made.
enum Dial {
    Tcp(std::io::Error),
    /// The TLS handshake failed (already an error naming why).
    Tls(Error),
}

/// The client side of a TLS handshake to `endpoint`, within `timeout`. A failure is safe to
/// retry elsewhere (nothing was sent) and names its reason for the access log.
async fn tls_connect(
    mut tcp: monoio::net::TcpStream,
    tls: &crate::tls::UpstreamTls,
    endpoint: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Result<crate::net::Stream, Error> {
    let failed = |kind: Kind, msg: String| {
        Err(Error::new(Side::Upstream, kind, format!("TLS to {endpoint}: {msg}")).with_retry(Retry::Safe))
    };
    let mut conn = match rustls::ClientConnection::new(tls.config.clone(), tls.name_for(endpoint.ip())) {
        Ok(c) => c,
        Err(e) => return failed(Kind::UpstreamTls("tls_handshake_failed"), e.to_string()),
    };
    match monoio::time::timeout(timeout, crate::tls::handshake(&mut tcp, &mut conn, false)).await {
        Ok(Ok(())) => Ok(crate::net::Stream::Tls(Box::new(crate::net::Tls::client(tcp, conn)))),
        Ok(Err(e)) => {
            tracing::debug!(endpoint = %endpoint, error = %e, "Upstream TLS handshake failed");
            failed(Kind::UpstreamTls(crate::tls::upstream_flag(&e)), e.to_string())
        }
        Err(_) => failed(Kind::ConnectTimeout, "handshake timed out".into()),
    }
}

/// Counts a request as in flight on an endpoint (least_request) for as long as it lives.
pub(super) struct EndpointFlight<'a>(&'a crate::upstream::UpstreamState, usize);

impl<'a> EndpointFlight<'a> {
    pub(super) fn enter(state: &'a crate::upstream::UpstreamState, ep: usize) -> Self {
        state.in_flight[ep].set(state.in_flight[ep].get() + 1);
        Self(state, ep)
    }
}

impl Drop for EndpointFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight[self.1].set(self.0.in_flight[self.1].get() - 1);
    }
}

/// Driver tests: new upstream connections come from this queue (in-memory streams) while it
/// holds any, instead of being dialled.
#[cfg(test)]
pub(super) mod test_dial {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    thread_local! {
        static QUEUE: RefCell<VecDeque<crate::net::Stream>> = RefCell::default();
    }

    pub(in crate::proxy) fn push(stream: crate::net::Stream) {
        QUEUE.with(|q| q.borrow_mut().push_back(stream));
    }

    pub(in crate::proxy) fn next() -> Option<crate::net::Stream> {
        QUEUE.with(|q| q.borrow_mut().pop_front())
    }

    pub(in crate::proxy) fn left() -> usize {
        QUEUE.with(|q| q.borrow().len())
    }
}
