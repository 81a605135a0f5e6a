//! Forward: pick an endpoint and a connection, send the request, read the response head, and
//! retry, all in one loop that owns every retry decision ([`next_step`], a pure function); then
//! stream the response body back and hand the connection to the pool.
//!
//! Retries, in the order they are considered:
//! 1. a failed *dial* is retried once on another endpoint inside `upstream_conn` (nothing was
//!    sent, so that is safe for every method);
//! 2. a *reused* connection that fails before any response byte (the stale-pool race) sends an
//!    idempotent, bodiless request once more on a new connection; this is not one of the API's
//!    `retries`;
//! 3. a 502/503/504 answer, a reset or a timeout moves an idempotent, bodiless request to another
//!    endpoint up to `retries` times (at least once for a reset when `retry_on_connection_error`),
//!    within `timeout_ms` and the upstream's retry budget.

use std::time::{Duration, Instant};

use super::io::{pump, write_out, Conn, MinRate, PumpError, PumpOpts};
use super::request::Request;
use super::upstream_side::{
    read_response_head, upstream_conn, EndpointFlight, RequestFacts, ResponseStart, UpSide, EARLY_RESPONSE_WAIT,
};
use super::{Next, Scratch};
use crate::config::UpstreamId;
use crate::error::{Error, Kind, Retry, Side};
use crate::http::BodyKind;
use crate::runtime::{Generation, Shard};
use crate::upstream::UpstreamConn;

/// An exchange that failed before any response head went to the client: the error to answer
/// with, and whether the request body was read whole (else the client connection must close).
pub(super) struct Failure {
    pub(super) error: Error,
    pub(super) body_read: bool,
}

impl Failure {
    fn new(error: Error, body_read: bool) -> Self {
        Self { error, body_read }
    }
}

/// How one try ended, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TryEnd {
    /// A response head arrived with this status.
    Status(u16),
    /// A connection from the pool failed before any response byte.
    Stale,
    /// A new connection closed or reset before any response byte (or while taking the request).
    Reset,
    /// Another upstream failure: a timeout or a malformed response.
    Failed,
    /// Not the upstream's doing (the client went away or stalled): never retried.
    NotUpstream,
}

/// What the request allows.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryRules {
    /// The API's `retries`.
    pub(super) retries: u32,
    pub(super) retry_on_connection_error: bool,
    /// Endpoints in the upstream (a reset is only retried elsewhere when there is an elsewhere).
    pub(super) endpoints: usize,
    /// Idempotent method and no request body: sending it again is safe.
    pub(super) repeatable: bool,
}

/// What the loop did so far.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tries {
    /// Retries on another endpoint so far.
    pub(super) elsewhere: u32,
    /// The stale-connection retry was used.
    pub(super) stale_retried: bool,
}

/// The loop's next move after a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Answer the client with this try's outcome.
    Accept,
    /// Send again to the same choice of endpoint on a new connection.
    Fresh,
    /// Send again on another endpoint, if the retry budget allows.
    Elsewhere,
}

/// THE retry decision. `time_left`: the exchange's `timeout_ms` has not run out.
pub(super) fn next_step(rules: RetryRules, tries: Tries, end: TryEnd, time_left: bool) -> Step {
    if !rules.repeatable || !time_left {
        return Step::Accept;
    }
    let allowed = match end {
        TryEnd::Stale if !tries.stale_retried => return Step::Fresh,
        TryEnd::Status(502..=504) | TryEnd::Failed => rules.retries,
        // a reset before any response byte: retried elsewhere once by default (nginx's
        // `proxy_next_upstream error`, HAProxy's `retry-on conn-failure`)
        TryEnd::Reset | TryEnd::Stale if rules.retry_on_connection_error && rules.endpoints > 1 => rules.retries.max(1),
        TryEnd::Reset | TryEnd::Stale => rules.retries,
        TryEnd::Status(_) | TryEnd::NotUpstream => return Step::Accept,
    };
    if tries.elsewhere < allowed {
        Step::Elsewhere
    } else {
        Step::Accept
    }
}

/// One try's result.
enum Tried {
    Head(ResponseStart),
    /// The upstream answered before taking the whole upload; its response went out and the
    /// client connection closes (its body is unread).
    Early,
    Failed(Failure),
}

/// Forward the request to upstream `uid`. `Err(Failure)` when no response head was sent yet;
/// after the head went out, failures truncate and return `Ok(Next::Close)`.
pub(super) async fn forward(
    shard: &Shard,
    gen: &Generation,
    client: &mut Conn,
    s: &mut Scratch,
    req: &mut Request,
    uid: UpstreamId,
) -> Result<Next, Failure> {
    let snapshot = &gen.snapshot;
    let Some(api_id) = req.api() else {
        return Err(Failure::new(Error::new(Side::Internal, Kind::Internal, "no routed API"), false));
    };
    let (api, up, state) = (&snapshot.apis[api_id], &snapshot.upstreams[uid], &gen.upstreams[uid]);
    let bodiless = req.body == BodyKind::None;
    let rules = RetryRules {
        retries: api.retries,
        retry_on_connection_error: api.retry_on_connection_error,
        endpoints: up.endpoints.len(),
        repeatable: req.idempotent && bodiless,
    };
    let mut tries = Tries::default();
    // timeout_ms bounds the whole exchange up to the response head, over every try
    let deadline = req.session.started + api.timeout;
    state.count_request();
    // in flight on the chosen endpoint until this function returns (least_request)
    let mut _flight: Option<EndpointFlight<'_>> = None;
    let (mut fresh, mut avoid) = (false, None);
    let (mut upc, start) = loop {
        let mut upc = upstream_conn(shard, gen, uid, req.hash_key, !fresh, avoid, &mut req.session)
            .await
            .map_err(|e| Failure::new(e, bodiless))?;
        _flight = Some(EndpointFlight::enter(state, upc.ep)); // replaces a failed try's
        req.session.endpoint = Some(upc.key.endpoint);
        let tried = try_once(shard, gen, client, s, req, &mut upc, deadline).await;
        let end = match &tried {
            Tried::Early => return Ok(Next::LingerClose),
            Tried::Head(start) => TryEnd::Status(start.status),
            Tried::Failed(f) => classify(&f.error, upc.reused),
        };
        // health and metrics see every try
        match end {
            TryEnd::Status(status) => shard.report(gen, uid, upc.ep, status >= 500),
            TryEnd::NotUpstream => {}
            TryEnd::Stale => shard.count(gen, |m| m.upstreams[uid].failures += 1),
            TryEnd::Reset | TryEnd::Failed => {
                shard.count(gen, |m| m.upstreams[uid].failures += 1);
                shard.report(gen, uid, upc.ep, true);
            }
        }
        match next_step(rules, tries, end, Instant::now() < deadline) {
            Step::Fresh => {
                (tries.stale_retried, fresh) = (true, true);
                continue;
            }
            Step::Elsewhere if state.try_retry(up.retry_budget_percent, Instant::now()) => {
                tracing::debug!(endpoint = %upc.key.endpoint, tries = tries.elsewhere + 1, "Retrying on another endpoint");
                shard.count(gen, |m| m.upstreams[uid].retries += 1);
                tries.elsewhere += 1;
                avoid = Some(upc.ep);
                continue;
            }
            Step::Elsewhere | Step::Accept => {}
        }
        match tried {
            Tried::Head(start) => break (upc, start),
            Tried::Early => return Ok(Next::LingerClose),
            Tried::Failed(mut f) => {
                if f.error.side == Side::Upstream {
                    f.error.context = format!("{}: {}", upc.key.endpoint, f.error.context);
                }
                return Err(f);
            }
        }
    };
    let head_at = Instant::now();
    (req.session.status, req.session.bytes_out) = (start.status, s.out.len() as u64);
    // the response body (the head is in s.out and goes out with the first body bytes)
    let opts = response_opts(gen, uid, start.chunked_out);
    if let Err(e) = pump(&mut upc.conn, &mut client.stream, start.body, &mut s.out, opts).await.map(|n| {
        req.session.bytes_out += n;
    }) {
        return body_failed(shard, gen, req, s, &upc, e);
    }
    if req.session.status == 101 {
        // the 101 head is out; what follows is the upgraded protocol, relayed byte for byte
        return Ok(Next::Tunnel(Box::new(upc.conn)));
    }
    // extra bytes after the body (U12, also those still inside TLS) or any framing doubt: never reuse
    let reusable = start.upstream_keep_alive
        && upc.conn.pending().is_empty()
        && !upc.conn.stream.buffered()
        && upc.requests < up.max_requests_per_connection;
    if reusable && !shard.draining.get() {
        let UpSide { conn, key, requests, slot, .. } = upc;
        let idle = UpstreamConn { slot, stream: conn.stream, buf: conn.buf, requests };
        shard.pool_checkin(gen, key, idle, head_at);
    }
    Ok(if start.client_keep_alive { Next::KeepAlive } else { Next::Close })
}

/// Which retry class an error of one try falls in.
fn classify(err: &Error, reused: bool) -> TryEnd {
    match (err.side, &err.kind) {
        (Side::Upstream, _) if err.retry == Retry::StaleConnection && reused => TryEnd::Stale,
        (Side::Upstream, Kind::UpstreamClosed) => TryEnd::Reset,
        (Side::Upstream, _) => TryEnd::Failed,
        _ => TryEnd::NotUpstream,
    }
}

/// One try on connection `upc`: `100 Continue` when the client waits for it, the request head
/// and body, then the response head within this try's timeout and what is left of the exchange's.
async fn try_once(
    shard: &Shard,
    gen: &Generation,
    client: &mut Conn,
    s: &mut Scratch,
    req: &mut Request,
    upc: &mut UpSide,
    deadline: Instant,
) -> Tried {
    let snapshot = &gen.snapshot;
    let uid = upc.key.upstream;
    let api = &snapshot.apis[req.api().unwrap_or_default()];
    let facts = RequestFacts {
        head_request: req.head_request,
        version: req.version,
        upgrade: req.upgrade.as_deref(),
        id: &req.id,
        keep_alive: req.keep_alive,
        policy: super::headers::ResponsePolicy {
            policy: api.policy.as_deref(),
            cors_origin: req.cors_origin.as_deref(),
        },
    };
    if matches!(&client.stream, crate::net::Stream::H2(h) if h.gone()) {
        // an HTTP/2 stream the client reset before its request went upstream is never sent
        // (rapid reset, CVE-2023-44487)
        return Tried::Failed(Failure::new(Error::downstream(Kind::DownstreamClosed), false));
    }
    if req.expect_continue && client.pending().is_empty() {
        s.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        if write_out(&mut client.stream, &mut s.out, snapshot.http.send_timeout).await.is_err() {
            return Tried::Failed(Failure::new(Error::downstream(Kind::DownstreamClosed), false));
        }
    }
    s.out.clear();
    s.out.extend_from_slice(&s.up_head);
    let opts = PumpOpts {
        read_timeout: snapshot.http.body_timeout,
        write_timeout: snapshot.upstreams[uid].read_timeout.min(api.timeout),
        chunked_out: req.body == BodyKind::Chunked,
        limit: api.max_body_bytes,
        max_trailer_bytes: snapshot.http.max_header_bytes,
        min_rate: (snapshot.http.body_min_rate_bytes_per_s > 0).then(|| MinRate {
            bytes_per_s: snapshot.http.body_min_rate_bytes_per_s,
            grace: snapshot.http.body_min_rate_grace,
        }),
        // everything written to the upstream counts against the egress cap
        shaper: gen.rates.egress.as_deref().map(|rule| (&shard.egress, rule)),
    };
    upc.requests += 1;
    shard.count(gen, |m| m.upstreams[uid].requests += 1);
    let sent = match req.body {
        // a head alone fits the socket buffer of a fresh or idle connection: no watch needed
        BodyKind::None => pump(client, &mut upc.conn.stream, req.body, &mut s.out, opts).await,
        _ => send_body(client, &mut upc.conn.stream, req.body, &mut s.out, opts, deadline).await,
    };
    let sent_at = Instant::now();
    match sent {
        Ok(n) => req.session.bytes_in = n,
        Err(PumpError::Sink(io)) if req.body != BodyKind::None => {
            // U13: the upstream may have answered early (413, 401...) and stopped reading; if a
            // complete response is waiting, forward it and close the client (its body is unread)
            let facts = RequestFacts { keep_alive: false, ..facts };
            let early =
                read_response_head(shard, gen, upc, &facts, EARLY_RESPONSE_WAIT, &mut s.out, &client.stream).await;
            if let Ok(start) = early {
                (req.session.status, req.session.bytes_out) = (start.status, s.out.len() as u64);
                req.session.error = Some("early_upstream_response");
                let down = response_opts(gen, uid, start.chunked_out);
                let _ = pump(&mut upc.conn, &mut client.stream, start.body, &mut s.out, down).await;
                return Tried::Early;
            }
            return Tried::Failed(Failure::new(send_failed(upc, PumpError::Sink(io), false), false));
        }
        Err(e) => return Tried::Failed(Failure::new(send_failed(upc, e, req.body == BodyKind::None), false)),
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let try_timeout = api.per_try_timeout.min(left).max(Duration::from_millis(1));
    let head = read_response_head(shard, gen, upc, &facts, try_timeout, &mut s.out, &client.stream).await;
    match head {
        Ok(start) => {
            req.session.first_byte_us = Some(Instant::now().saturating_duration_since(sent_at).as_micros() as u64);
            Tried::Head(start)
        }
        Err(err) => Tried::Failed(Failure::new(err, true)),
    }
}

/// The error for a request that could not be sent.
fn send_failed(upc: &UpSide, e: PumpError, bodiless: bool) -> Error {
    match e {
        PumpError::Deadline => {
            Error::upstream(Kind::ReadTimeout, format!("{} did not take the request in time", upc.key.endpoint))
        }
        PumpError::ClientGone => Error::downstream(Kind::DownstreamClosed),
        PumpError::SourceTimeout => Error::downstream(Kind::ClientTimeout),
        PumpError::SourceFraming(p) => Error::downstream(Kind::Parse(p)),
        PumpError::SourceClosed | PumpError::SourceIo(_) => Error::downstream(Kind::DownstreamClosed),
        PumpError::Sink(io) => {
            // a pooled connection that cannot take a bodiless request is the stale-pool race
            let retry = if upc.reused && bodiless { Retry::StaleConnection } else { Retry::Never };
            Error::upstream(Kind::UpstreamClosed, "sending the request").with_source(io).with_retry(retry)
        }
    }
}

/// The response body failed after its head was read. A body that fails before any byte went out
/// (bad first chunk, close or timeout right after the head) still gets a clean 502/504;
/// otherwise the response is truncated and the connection closes.
fn body_failed(
    shard: &Shard,
    gen: &Generation,
    req: &mut Request,
    s: &mut Scratch,
    upc: &UpSide,
    e: PumpError,
) -> Result<Next, Failure> {
    let uid = upc.key.upstream;
    tracing::debug!(error = ?e, endpoint = %upc.key.endpoint, "Response body failed; truncating");
    req.session.error = Some(match e {
        PumpError::Sink(_) => "client_closed",
        PumpError::SourceTimeout => "response_body_timeout",
        _ => "upstream_body_failed",
    });
    if matches!(e, PumpError::Sink(_)) {
        return Ok(Next::Close);
    }
    shard.count(gen, |m| m.upstreams[uid].failures += 1);
    // the head leaves with the first body bytes
    if !s.out.starts_with(b"HTTP/1.") {
        return Ok(Next::Close);
    }
    let kind = match e {
        PumpError::SourceTimeout => Kind::ReadTimeout,
        PumpError::SourceFraming(p) => Kind::BadUpstreamResponse(p),
        _ => Kind::UpstreamClosed,
    };
    s.out.clear();
    Err(Failure::new(Error::upstream(kind, format!("{}: response body", upc.key.endpoint)), true))
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
    opts: PumpOpts<'_>,
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
        crate::upstream::reset_on_close(&*upstream);
    }
    sent
}

/// Pump settings for a response body (upstream → client).
fn response_opts(gen: &Generation, uid: UpstreamId, chunked_out: bool) -> PumpOpts<'static> {
    PumpOpts {
        read_timeout: gen.snapshot.upstreams[uid].read_timeout,
        write_timeout: gen.snapshot.http.send_timeout,
        chunked_out,
        limit: 0,
        max_trailer_bytes: gen.snapshot.http.max_header_bytes,
        min_rate: None,
        shaper: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: RetryRules =
        RetryRules { retries: 0, retry_on_connection_error: true, endpoints: 2, repeatable: true };

    #[test]
    fn a_stale_pooled_connection_is_retried_fresh_once_without_spending_retries() {
        let tries = Tries::default();
        assert_eq!(next_step(RULES, tries, TryEnd::Stale, true), Step::Fresh);
        let after = Tries { stale_retried: true, ..tries };
        // a second stale failure is a reset: once elsewhere (retry_on_connection_error)
        assert_eq!(next_step(RULES, after, TryEnd::Stale, true), Step::Elsewhere);
        let rules = RetryRules { retries: 2, ..RULES };
        assert_eq!(next_step(rules, tries, TryEnd::Stale, true), Step::Fresh, "retries are not consumed by it");
    }

    #[test]
    fn configured_retries_bound_the_moves_to_other_endpoints() {
        let rules = RetryRules { retries: 2, ..RULES };
        for end in [TryEnd::Status(502), TryEnd::Status(503), TryEnd::Status(504), TryEnd::Failed, TryEnd::Reset] {
            assert_eq!(next_step(rules, Tries::default(), end, true), Step::Elsewhere, "{end:?}");
            assert_eq!(next_step(rules, Tries { elsewhere: 1, ..Tries::default() }, end, true), Step::Elsewhere);
            assert_eq!(next_step(rules, Tries { elsewhere: 2, ..Tries::default() }, end, true), Step::Accept);
        }
        assert_eq!(next_step(RULES, Tries::default(), TryEnd::Status(502), true), Step::Accept, "retries = 0");
    }

    #[test]
    fn a_reset_is_retried_once_elsewhere_by_default_only_when_there_is_an_elsewhere() {
        assert_eq!(next_step(RULES, Tries::default(), TryEnd::Reset, true), Step::Elsewhere);
        let one = RetryRules { endpoints: 1, ..RULES };
        assert_eq!(next_step(one, Tries::default(), TryEnd::Reset, true), Step::Accept);
        let off = RetryRules { retry_on_connection_error: false, ..RULES };
        assert_eq!(next_step(off, Tries::default(), TryEnd::Reset, true), Step::Accept);
    }

    #[test]
    fn nothing_is_retried_that_is_unsafe_to_repeat_or_out_of_time() {
        let rules = RetryRules { retries: 3, ..RULES };
        let post = RetryRules { repeatable: false, ..rules };
        for end in [TryEnd::Stale, TryEnd::Reset, TryEnd::Status(502), TryEnd::Failed] {
            assert_eq!(next_step(post, Tries::default(), end, true), Step::Accept, "{end:?} with a body");
            assert_eq!(next_step(rules, Tries::default(), end, false), Step::Accept, "{end:?} after timeout_ms");
        }
        for end in [TryEnd::Status(200), TryEnd::Status(500), TryEnd::Status(404), TryEnd::NotUpstream] {
            assert_eq!(next_step(rules, Tries::default(), end, true), Step::Accept, "{end:?}");
        }
    }

    #[test]
    fn errors_classify_by_side_kind_and_reuse() {
        let stale = Error::upstream(Kind::UpstreamClosed, "").with_retry(Retry::StaleConnection);
        assert_eq!(classify(&stale, true), TryEnd::Stale);
        assert_eq!(classify(&Error::upstream(Kind::UpstreamClosed, ""), false), TryEnd::Reset);
        assert_eq!(classify(&Error::upstream(Kind::ReadTimeout, ""), false), TryEnd::Failed);
        assert_eq!(classify(&Error::downstream(Kind::DownstreamClosed), true), TryEnd::NotUpstream);
    }
}
