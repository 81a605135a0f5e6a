//! One client HTTP/2 connection: the h2 handshake with ringway's settings, then a loop that
//! accepts streams (each served by a task of its own through the request phases), watches the
//! flood guard, closes an idle connection, and says GOAWAY when the worker drains or a reload
//! removed the listener (streams in flight finish first).

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::Reason;
use http::Request;

use super::bridge::StreamIo;
use super::guard::{Flood, GuardedIo, FLOOD_LIMITS};
use super::translate::request_head;
use crate::config::Http2Config;
use crate::metrics::{H2_CONNECTIONS, H2_FLOODS, H2_PROTOCOL_ERRORS, H2_STREAMS};
use crate::proxy::{InFlight, Peer};
use crate::runtime::Shard;

/// How often the loop looks at the drain flag, the listener and the idle time.
const TICK: Duration = Duration::from_millis(250);
/// The same once the connection has had no open stream for this long: idle connections are
/// most of an HTTP/2 listener's, and each tick is a task wake-up (2000 idle connections at 250 ms
/// cost ~6% of a core; bench/RESULTS.md §44). Drain, listener removal and the idle timeout are
/// then noticed up to this late.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Time allowed for GOAWAY to be written once the connection is closing for good.
const CLOSE_TIME: Duration = Duration::from_secs(1);
/// Response bytes h2 may hold per stream before the stream waits for the client's window.
const SEND_BUFFER_BYTES: usize = 64 * 1024;
/// The connection's receive window is the stream window times the stream limit, up to this.
const MAX_CONNECTION_WINDOW: u32 = 16 << 20;

/// The h2 settings for a connection under `c`.
fn builder(c: &Http2Config) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    let conn_window =
        (u64::from(c.initial_window_bytes) * u64::from(c.max_concurrent_streams)).min(u64::from(MAX_CONNECTION_WINDOW));
    b.max_concurrent_streams(c.max_concurrent_streams)
        .initial_window_size(c.initial_window_bytes)
        .initial_connection_window_size((conn_window as u32).max(c.initial_window_bytes))
        .max_header_list_size(c.max_header_list_bytes)
        .max_send_buffer_size(SEND_BUFFER_BYTES)
        // streams reset by the client before we accepted them (rapid reset): h2 answers GOAWAY
        // ENHANCE_YOUR_CALM past this many at once; the guard counts resets per second besides
        .max_pending_accept_reset_streams(FLOOD_LIMITS.resets as usize)
        .max_concurrent_reset_streams(c.max_concurrent_streams as usize);
    b
}

/// Serves HTTP/2 on an accepted connection. `replay`: bytes already read from it (the h2c
/// preface on a plain listener).
pub async fn serve(shard: Rc<Shard>, stream: crate::net::Stream, replay: Vec<u8>, peer: Peer) {
    let gen = shard.generation();
    let config = gen.snapshot.http2.clone();
    let handshake_timeout = gen.snapshot.http.header_timeout;
    let park_after = gen.snapshot.http.idle_park;
    drop(gen);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let tripped = Rc::new(Cell::new(None));
    let io = GuardedIo::new(stream, replay, FLOOD_LIMITS, tripped.clone(), park_after, shard.h2_idle.clone());
    let mut conn = match monoio::time::timeout(handshake_timeout, builder(&config).handshake::<_, Bytes>(io)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    shard.metrics.borrow_mut().h2[H2_CONNECTIONS] += 1;
    let peer = Rc::new(peer);
    let active = Rc::new(Cell::new(0usize));
    let mut idle_since = Some(Instant::now());
    let mut closing_guard = None;
    let tick = monoio::time::sleep(TICK);
    let mut tick = std::pin::pin!(tick);
    loop {
        let accepted = monoio::select! {
            a = poll_fn(|cx| match tripped.get() {
                Some(flood) => Poll::Ready(Err(flood)),
                None => conn.poll_accept(cx).map(Ok),
            }) => a,
            _ = &mut tick => {
                let now = Instant::now();
                match (active.get(), idle_since) {
                    (0, None) => idle_since = Some(now),
                    (0, Some(_)) => {}
                    (_, _) => idle_since = None,
                }
                // no open stream: a worker at its connection cap may close this one first
                peer.idle.set(idle_since.is_some());
                let idle = idle_since.is_some_and(|t| now.saturating_duration_since(t) >= config.idle_timeout);
                let removed = peer.listener.get() == usize::MAX;
                if closing_guard.is_none() && (idle || removed || shard.draining.get()) {
                    // GOAWAY: no new streams; those in flight finish, and the drain waits for the
                    // connection to write their last frames (a stream's task ends before that)
                    closing_guard = Some(InFlight::enter(&shard));
                    conn.graceful_shutdown();
                }
                let quiet = idle_since.is_some_and(|t| now.saturating_duration_since(t) >= IDLE_TICK);
                let next = if quiet && closing_guard.is_none() { IDLE_TICK } else { TICK };
                tick.as_mut().reset(monoio::time::Instant::now() + next);
                continue;
            }
        };
        match accepted {
            Ok(Some(Ok((req, respond)))) => {
                idle_since = None;
                peer.idle.set(false);
                shard.metrics.borrow_mut().h2[H2_STREAMS] += 1;
                active.set(active.get() + 1);
                let (shard, peer, active) = (shard.clone(), peer.clone(), active.clone());
                monoio::spawn(async move {
                    serve_stream(&shard, &peer, req, respond).await;
                    active.set(active.get() - 1);
                });
            }
            Ok(Some(Err(e))) => {
                // h2 has sent GOAWAY with the error's code where the protocol calls for one
                tracing::debug!(error = %e, "HTTP/2 connection error");
                count_error(&shard, &e);
                break;
            }
            Ok(None) => break,
            Err(flood) => {
                tracing::debug!(flood = flood.as_str(), client = %peer.addr, "HTTP/2 flood or bad opening; GOAWAY");
                shard.metrics.borrow_mut().h2
                    [if flood == Flood::NoSettingsFirst { H2_PROTOCOL_ERRORS } else { H2_FLOODS }] += 1;
                close_abruptly(&mut conn, flood).await;
                break;
            }
        }
    }
    // FIN after the last frame, so a client reading its GOAWAY sees it before any reset (the
    // fd is still open: `conn` owns it until the end of this function)
    crate::runtime::shutdown_fd(fd);
}

/// GOAWAY with the trip's code (ENHANCE_YOUR_CALM for floods), written within CLOSE_TIME.
async fn close_abruptly(conn: &mut h2::server::Connection<GuardedIo, Bytes>, flood: Flood) {
    conn.abrupt_shutdown(flood.reason());
    let _ = monoio::time::timeout(CLOSE_TIME, poll_fn(|cx| conn.poll_closed(cx))).await;
}

fn count_error(shard: &Shard, e: &h2::Error) {
    if e.is_go_away() || e.is_reset() {
        shard.metrics.borrow_mut().h2[H2_PROTOCOL_ERRORS] += 1;
    }
}

/// One stream: translated, served by the request phases, ended (or reset when the response was
/// cut short).
async fn serve_stream(shard: &Shard, peer: &Peer, req: Request<h2::RecvStream>, mut respond: SendResponse<Bytes>) {
    let (parts, recv) = req.into_parts();
    let mut head = Vec::with_capacity(256);
    let chunked = match request_head(&parts, !recv.is_end_stream(), &mut head) {
        Ok(chunked) => chunked,
        Err(m) => {
            // malformed (RFC 9113 §8.1.1): a stream error, never a request
            tracing::debug!(why = ?m, "Malformed HTTP/2 request");
            respond.send_reset(Reason::PROTOCOL_ERROR);
            return;
        }
    };
    let io = StreamIo::new(head, recv, respond, chunked, parts.method == http::Method::HEAD);
    let stream = crate::proxy::serve_stream(shard, crate::net::Stream::H2(Box::new(io)), peer).await;
    if let crate::net::Stream::H2(mut io) = stream {
        if !io.finished() {
            // a response cut short (upstream failed mid-body) or none at all
            io.reset(if io.answered() { Reason::INTERNAL_ERROR } else { Reason::CANCEL });
        }
    }
}
