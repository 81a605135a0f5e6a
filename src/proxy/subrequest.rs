//! Requests the gateway makes itself (the WAF call): an endpoint of a configured upstream, a
//! pooled connection (or a new one), one request, the response status. The response body is
//! read and dropped so the connection can go back to the pool. Failures are reported to the
//! upstream's outlier detection like those of proxied requests.

use std::time::{Duration, Instant};

use super::io::{write_out, Conn};
use super::session::Session;
use super::upstream_side::{upstream_conn, UpSide};
use crate::config::UpstreamId;
use crate::error::{Error, Kind, Retry};
use crate::filter::{CallFuture, Upstreams};
use crate::http::{parse_response, BodyKind, ChunkedDecoder};
use crate::runtime::{Generation, Shard};
use crate::upstream::UpstreamConn;

/// Largest response body read to keep a connection (WAF block pages are small); a larger one
/// is not read: the connection closes instead.
const MAX_DRAIN_BYTES: u64 = 64 * 1024;

/// [`Upstreams`] on a worker: its pool and the request's config generation.
pub struct ShardCalls<'a> {
    pub shard: &'a Shard,
    pub gen: &'a Generation,
}

impl Upstreams for ShardCalls<'_> {
    fn call<'a>(&'a self, upstream: UpstreamId, request: &'a [u8], timeout: Duration) -> CallFuture<'a> {
        Box::pin(call(self.shard, self.gen, upstream, request, timeout))
    }
}

async fn call(
    shard: &Shard,
    gen: &Generation,
    uid: UpstreamId,
    request: &[u8],
    timeout: Duration,
) -> Result<u16, Error> {
    let deadline = Instant::now() + timeout;
    let timed_out = || Error::upstream(Kind::ReadTimeout, "no answer within the time budget");
    let mut session = Session::new(0, Instant::now());
    let mut use_pool = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut up =
            match monoio::time::timeout(left, upstream_conn(shard, gen, uid, None, use_pool, None, &mut session)).await
            {
                Ok(up) => up?,
                Err(_) => return Err(timed_out()),
            };
        let left = deadline.saturating_duration_since(Instant::now());
        shard.count(gen, |m| m.upstreams[uid].requests += 1);
        up.requests += 1;
        let max = gen.snapshot.http.max_header_bytes;
        let shaper = gen.rates.egress.as_deref().map(|rule| (&shard.egress, rule));
        match monoio::time::timeout(left, exchange(&mut up.conn, request, max, left, shaper)).await {
            Ok(Ok((status, reusable))) => {
                shard.report(gen, uid, up.ep, status >= 500);
                let up_cfg = &gen.snapshot.upstreams[uid];
                if reusable && up.requests < up_cfg.max_requests_per_connection && !shard.draining.get() {
                    let UpSide { conn, key, requests, slot, .. } = up;
                    let idle = UpstreamConn { slot, stream: conn.stream, buf: conn.buf, requests };
                    shard.pool_checkin(gen, key, idle, Instant::now());
                }
                return Ok(status);
            }
            // the WAF closed an idle pooled connection: once more on a new one
            Ok(Err(e)) if up.reused && e.retry == Retry::StaleConnection => use_pool = false,
            Ok(Err(e)) => {
                shard.report(gen, uid, up.ep, true);
                return Err(e);
            }
            Err(_) => {
                shard.report(gen, uid, up.ep, true);
                return Err(timed_out());
            }
        }
    }
}

/// Sends `request` and reads the response head and body. Returns the status and whether the
/// connection can be reused. `timeout` only bounds single reads (the caller bounds the whole).
async fn exchange(
    conn: &mut Conn,
    request: &[u8],
    max: usize,
    timeout: Duration,
    shaper: Option<(&crate::limit::bandwidth::Shaper, &crate::limit::RateRule)>,
) -> Result<(u16, bool), Error> {
    // the WAF is an upstream: its bytes count against the egress cap like any request's
    if let Some((shaper, rule)) = shaper {
        shaper.acquire(rule, request.len() as u64).await;
    }
    let mut out = request.to_vec();
    if let Err(e) = write_out(&mut conn.stream, &mut out, timeout).await {
        return Err(Error::upstream(Kind::UpstreamClosed, "sending").with_source(e).with_retry(Retry::StaleConnection));
    }
    let mut got_bytes = false;
    let (status, body, keep_alive) = loop {
        if !conn.pending().is_empty() {
            got_bytes = true;
            let mut headers = crate::http::header_buf();
            // the answer to a HEAD has no body, whatever its Content-Length says
            let parsed = parse_response(conn.pending(), &mut headers, max, request.starts_with(b"HEAD "))
                .map_err(|e| Error::upstream(Kind::BadUpstreamResponse(e), ""))?;
            if let Some((status, body, keep_alive, len)) = parsed.map(|h| (h.status, h.body, h.keep_alive, h.head_len))
            {
                conn.consume(len);
                if (100..200).contains(&status) {
                    continue;
                }
                break (status, body, keep_alive);
            }
        }
        match conn.fill(timeout, max + 1).await {
            Ok(0) | Err(_) => {
                let retry = if got_bytes { Retry::Never } else { Retry::StaleConnection };
                return Err(Error::upstream(Kind::UpstreamClosed, "before response head").with_retry(retry));
            }
            Ok(_) => {}
        }
    };
    let drained = match body {
        BodyKind::None => true,
        BodyKind::Length(n) if n <= MAX_DRAIN_BYTES => skip_length(conn, n, timeout).await,
        BodyKind::Chunked => skip_chunked(conn, max, timeout).await,
        _ => false,
    };
    Ok((status, keep_alive && drained && conn.pending().is_empty()))
}

async fn skip_length(conn: &mut Conn, mut n: u64, timeout: Duration) -> bool {
    loop {
        let have = (conn.pending().len() as u64).min(n);
        conn.consume(have as usize);
        n -= have;
        if n == 0 {
            return true;
        }
        if !matches!(conn.fill(timeout, super::STREAM_BUF_BYTES).await, Ok(1..)) {
            return false;
        }
    }
}

async fn skip_chunked(conn: &mut Conn, max: usize, timeout: Duration) -> bool {
    let mut decoder = ChunkedDecoder::new(MAX_DRAIN_BYTES, max);
    loop {
        match decoder.feed(conn.pending(), |_| {}) {
            Ok(used) => conn.consume(used),
            Err(_) => return false,
        }
        if decoder.is_done() {
            return true;
        }
        if !matches!(conn.fill(timeout, super::STREAM_BUF_BYTES).await, Ok(1..)) {
            return false;
        }
    }
}
