//! The proxy: one task per client connection running the request loop.
//!
//! [`serve_connection`] owns the client socket and its buffers and calls [`phases::run`] once per
//! request until the connection closes. Everything it touches is the worker's own `Shard`.

mod auth;
mod body_peek;
mod forward;
mod headers;
mod io;
mod local;
mod phases;
mod request;
mod respond;
mod route;
mod session;
mod subrequest;
mod tls_accept;
mod tunnel;
mod upstream_side;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

pub use headers::is_hop_by_hop;
pub use io::{Conn, STREAM_BUF_BYTES};
pub use phases::{Next, Scratch};
pub use session::{micros_since, InFlight, Peer};
pub use subrequest::ShardCalls;

use crate::runtime::Shard;

/// Lingering close: read and discard at most this much ...
const LINGER_BYTES: usize = 64 * 1024;
/// ... for at most this long, so the error response is not destroyed by a TCP reset.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// The upstream head the gateway would send for `head` (fuzzing's round-trip check).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn serialize_for_fuzz(head: &crate::http::RequestHead<'_, '_>) -> Vec<u8> {
    let cx = headers::RequestContext {
        path: head.path,
        client_ip: b"192.0.2.1",
        scheme: "http",
        forwarded_for: None,
        upgrade: None,
        rewrite: &crate::config::Rewrite::None,
        base_len: 0,
        prefix_len: None,
        default_host: "upstream",
        extra: &[],
        query: head.query,
        policy: None,
        auth: None,
    };
    let mut out = Vec::new();
    headers::write_request_head(&mut out, head, &cx, b"fuzz-id");
    out
}

/// The runtime's connection handler: the request loop for one accepted connection (after the
/// TLS handshake on an HTTPS listener).
pub fn handler(
    shard: std::rc::Rc<Shard>,
    conn: crate::runtime::Accepted,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    use tracing::Instrument;
    let span = tracing::debug_span!("conn", client = %conn.peer);
    Box::pin(
        async move {
            let crate::runtime::Accepted { stream, peer, listener, guard, served } = conn;
            if let Some(served) = served {
                // back from the parking lot (plain TCP, or TLS with its session)
                let Some(guard) = guard else { return };
                let sni_names = listener_tls(&shard, &listener).and_then(|tls| tls_accept::sni_names(&tls, &stream));
                let opened = Opened { peer, listener, guard, sni_names, served };
                return serve_connection(&shard, stream, opened).await;
            }
            let crate::net::Stream::Plain(stream) = stream else { return };
            let Some(guard) = guard else {
                // over the cap: on HTTPS no handshake is spent on a connection that gets nothing
                if listener_tls(&shard, &listener).is_none() {
                    let refusal = Box::pin(refuse(stream));
                    refusal.await;
                }
                return;
            };
            let _ = stream.set_nodelay(true);
            let (stream, sni_names) = match listener_tls(&shard, &listener) {
                None => (crate::net::Stream::Plain(stream), None),
                Some(tls) => {
                    let accepting = Box::pin(tls_accept::accept(&shard, stream, &tls));
                    match accepting.await {
                        Some(accepted) => accepted,
                        None => return,
                    }
                }
            };
            serve_connection(&shard, stream, Opened { peer, listener, guard, sni_names, served: 0 }).await
        }
        .instrument(span),
    )
}

/// The TLS settings of the listener at `index`, when it is an HTTPS listener.
fn listener_tls(shard: &Shard, index: &std::cell::Cell<usize>) -> Option<std::sync::Arc<crate::tls::ListenerTls>> {
    shard.generation().snapshot.listeners.get(index.get()).and_then(|l| l.tls.clone())
}

/// An open client connection's facts, as the handler hands them to [`serve_connection`].
pub struct Opened {
    pub peer: SocketAddr,
    pub listener: std::rc::Rc<std::cell::Cell<usize>>,
    pub guard: crate::runtime::ConnGuard,
    /// On a TLS connection whose client sent SNI, the names its certificate covers (the Host
    /// check).
    pub sni_names: Option<Vec<String>>,
    /// Requests served on it before (a connection back from the parking lot).
    pub served: u32,
}

/// Serves requests on one accepted client connection until it closes. Its task lives as long as
/// the connection is busy, and a future is as large as the largest state it can be in: the rare
/// or one-off states (TLS handshake, HTTP/2, tunnel, lingering close) are boxed, each bound with
/// `let` before its await (a temporary in an awaited expression keeps its storage in the state
/// across the await). A plain keep-alive connection idle past `[http] idle_park_ms` leaves its
/// task for the worker's parking lot, which holds it without one (docs/PERF.md, "Idle
/// connections").
pub async fn serve_connection(shard: &std::rc::Rc<Shard>, stream: crate::net::Stream, opened: Opened) {
    let Opened { peer: peer_addr, listener, guard, sni_names, mut served } = opened;
    let scheme = stream.scheme();
    // buffers are allocated on first use: a connection that never sends a request (an idle TLS
    // connection after its handshake, a pre-connected client pool) holds none
    let mut client = Conn::new(stream, Vec::new());
    let mut scratch = phases::Scratch::default();
    // HTTP/2: negotiated by ALPN, or by prior knowledge on an h2c listener (where the preface
    // tells it from HTTP/1.1 there; after ALPN h2 anything else is a protocol error)
    let alpn_h2 = client.stream.tls().is_some_and(|t| t.h2);
    let h2c = client.stream.tls().is_none()
        && served == 0
        && shard.generation().snapshot.listeners.get(listener.get()).is_some_and(|l| l.http2);
    let trusted = shard.generation().snapshot.instance.trusted_proxies.iter().any(|c| c.contains(peer_addr.ip()));
    let ip = peer_addr.ip().to_string().into_bytes();
    let idle = guard.idle.clone();
    let peer = session::Peer { addr: peer_addr.ip(), ip, listener, trusted, scheme, idle, sni_names, h2: false };
    if alpn_h2 || h2c {
        match read_preface(shard, &mut client).await {
            Some(true) => {
                let replay = std::mem::take(&mut client.buf);
                let peer = session::Peer { h2: true, ..peer };
                // a task of its own: this one's future is sized for the HTTP/1.1 request path
                // (~7.8 KiB), which an HTTP/2 connection would hold unused for its whole life
                // (the future is made inside the task's: one made outside and moved in would be
                // stored twice, as the captured value and as the value awaited)
                let (shard, stream) = (shard.clone(), client.stream);
                let span = tracing::Span::current();
                monoio::spawn(tracing::Instrument::instrument(
                    async move {
                        let _counted = guard;
                        crate::http2::serve(shard, stream, replay, peer).await
                    },
                    span,
                ));
                return;
            }
            Some(false) if alpn_h2 => {
                // RFC 9113 §3.4: a connection that does not open with the preface
                let mut out = crate::http2::GOAWAY_PROTOCOL_ERROR.to_vec();
                let _ = io::write_out(&mut client.stream, &mut out, REFUSE_WRITE_TIMEOUT).await;
                let _ = monoio::time::timeout(LINGER_TIME, client.stream.shutdown()).await;
                return;
            }
            Some(false) => {}
            None => return,
        }
    }
    loop {
        match phases::run(shard, &mut client, &peer, served, &mut scratch).await {
            Next::KeepAlive => served += 1,
            Next::Close => break,
            Next::LingerClose => {
                let lingering = Box::pin(linger(&mut client));
                lingering.await;
                break;
            }
            Next::Tunnel(upstream) => {
                let idle = shard.generation().snapshot.http.keepalive_timeout;
                let relay = Box::pin(tunnel::relay(client, *upstream, idle));
                relay.await;
                return;
            }
            Next::Park(deadline) => {
                // the task ends here; the connection waits in the lot (or closes if it cannot)
                let mut stream = client.stream;
                if stream.release() {
                    let listener = peer.listener;
                    let parked = crate::runtime::Parked { stream, guard, peer: peer_addr, listener, served };
                    shard.parked.borrow_mut().park(parked, deadline);
                }
                return;
            }
        }
    }
    if client.stream.tls().is_some() {
        // close_notify, so the client can tell a complete response from a cut connection
        let _ = monoio::time::timeout(LINGER_TIME, client.stream.shutdown()).await;
    }
}

/// Reads until the first bytes tell HTTP/2's connection preface from anything else (on an h2c
/// listener: an HTTP/1.1 request); the bytes stay buffered either way. `None`: the client left
/// or stayed silent past the header timeout.
async fn read_preface(shard: &Shard, client: &mut Conn) -> Option<bool> {
    let timeout = shard.generation().snapshot.http.header_timeout;
    let deadline = Instant::now() + timeout;
    loop {
        let pending = client.pending();
        let n = pending.len().min(crate::http2::PREFACE.len());
        if pending[..n] != crate::http2::PREFACE[..n] {
            return Some(false);
        }
        if n == crate::http2::PREFACE.len() {
            return Some(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match client.fill(left.max(std::time::Duration::from_millis(1)), STREAM_BUF_BYTES).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Serves the one request an HTTP/2 stream carries (`stream` is its bridge) through the request
/// phases; returns the stream so the caller can see whether the response completed.
pub async fn serve_stream(shard: &Shard, stream: crate::net::Stream, peer: &Peer) -> crate::net::Stream {
    let mut client = Conn::new(stream, Vec::new());
    let mut scratch = phases::Scratch::default();
    // a 101 cannot happen (no Upgrade is ever sent from a stream); every other outcome ends the
    // stream, and the bridge tells how. Boxed: the spawned stream task stays small, so spawning
    // it moves a few words instead of the whole request state (callgrind: ~3 000 instructions of
    // memcpy per stream otherwise).
    let _ = Box::pin(phases::run(shard, &mut client, peer, 0, &mut scratch)).await;
    client.stream
}

/// Time allowed for writing the over-capacity answer.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection over the worker's cap: 503 with `Retry-After`, then a lingering close (so the
/// answer is not lost to a reset).
async fn refuse(stream: TcpStream) {
    let mut client = Conn::new(crate::net::Stream::Plain(stream), Vec::new());
    let mut out = respond::OVER_CAPACITY.to_vec();
    if io::write_out(&mut client.stream, &mut out, REFUSE_WRITE_TIMEOUT).await.is_ok() {
        linger(&mut client).await;
    }
}

/// Shuts down our write side, then drains the client's input briefly before the socket closes.
async fn linger(client: &mut Conn) {
    let _ = client.stream.shutdown().await;
    let t0 = Instant::now();
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = LINGER_TIME.saturating_sub(t0.elapsed());
        if left.is_zero() {
            break;
        }
        client.buf.clear();
        client.pos = 0;
        match client.fill(left, STREAM_BUF_BYTES).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests;
