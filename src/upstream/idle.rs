//! Idle pooled connections watched on the worker's ring (nginx's keepalive close handler, done
//! with one armed poll per idle connection instead of a syscall per checkout).
//!
//! An origin must never send a byte on a connection that has no request outstanding. Bytes that
//! arrive anyway (a body after a HEAD or 204/304 answer, one response too many, a late
//! `0\r\n\r\n`) would become the *next* client's response if the connection were reused: that is
//! response-queue poisoning. So while a connection sits in the pool, a read-readiness poll is
//! armed on it; the poll firing (bytes, FIN, RST) means the connection is closed at once and never
//! reused. The worker's pool janitor is woken by the poll and closes the socket, so origin-closed
//! connections do not linger in CLOSE-WAIT; it also reaps connections past their idle timeout.
//!
//! Residual window (documented, as for nginx and HAProxy): bytes that arrive after the worker's
//! last completion batch and before the next request is written on that connection are not seen
//! by the poll yet. On io_uring that window is one event-loop iteration (microseconds).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use monoio::net::TcpStream;

use super::UpstreamConn;

type Watch = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// A pooled connection and the poll armed on it.
pub struct IdleConn {
    /// Upstream index (for counting dirty connections).
    pub upstream: usize,
    stream: Rc<TcpStream>,
    slot: super::ConnSlot,
    buf: Vec<u8>,
    requests: u32,
    watch: Watch,
}

impl IdleConn {
    /// Arms the watch. `None` when the connection is already readable (it is then closed).
    /// `waker` is woken when the watch fires later (the pool janitor's).
    pub fn watch(upstream: usize, conn: UpstreamConn, waker: &Waker) -> Option<Self> {
        let UpstreamConn { slot, stream, buf, requests } = conn;
        let stream = Rc::new(stream);
        let watched = stream.clone();
        let watch: Watch = Box::pin(async move { watched.readable(false).await });
        let mut idle = Self { upstream, stream, slot, buf, requests, watch };
        idle.quiet(waker).then_some(idle)
    }

    /// True while nothing arrived on the connection; polls the watch with `waker`.
    pub fn quiet(&mut self, waker: &Waker) -> bool {
        self.watch.as_mut().poll(&mut Context::from_waker(waker)).is_pending()
    }

    /// Disarms the watch and hands the connection back for a request. `None` when the watch has
    /// fired in the meantime (the connection is closed instead).
    pub fn take(mut self, waker: &Waker) -> Option<UpstreamConn> {
        if !self.quiet(waker) {
            return None;
        }
        // dropping the poll cancels it on the ring; the stream's only other owner goes with it
        drop(self.watch);
        let stream = Rc::try_unwrap(self.stream).ok()?;
        Some(UpstreamConn { slot: self.slot, stream, buf: self.buf, requests: self.requests })
    }
}

/// Resolves the second time it is polled: in a `select!`, it tells that the task was woken by
/// something other than the other branches (here, a watch firing).
#[derive(Default)]
pub struct WokenAgain(bool);

impl Future for WokenAgain {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}
