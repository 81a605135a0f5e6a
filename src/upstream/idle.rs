//! Idle pooled connections are never reused dirty (response-queue poisoning).
//!
//! An origin must never send a byte on a connection that has no request outstanding. Bytes that
//! arrive anyway (a body after a HEAD or 204/304 answer, one response too many, a late
//! `0\r\n\r\n`) would become the *next* client's response if the connection were reused. Two
//! checks keep that from happening, chosen by measurement (bench/RESULTS.md §5):
//!
//! - **At checkout**, one zero-timeout `poll(2)`: a connection with any byte, FIN or RST waiting
//!   is closed, never reused. Definitive (it looks at the socket right before the request is
//!   written) and cheaper than arming and cancelling a ring poll per request (same-run A/B at
//!   1000 connections: +14% CPU per request for the ring poll, +3% for the check).
//! - **While it waits**, the pool janitor arms a read-readiness poll on the worker's ring for every
//!   connection that has stayed idle past one janitor tick. The poll firing (bytes, FIN, RST)
//!   closes the connection at once, so origin-closed connections do not linger in CLOSE-WAIT and
//!   dirty ones leave the pool without waiting for a checkout. Connections reused within a tick
//!   (the hot ones under load) never pay for a poll.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::net::Stream;

use super::{peer_quiet, ConnSlot, UpstreamConn};

type Watch = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// A pooled connection, watched on the ring once it has been idle for a janitor tick.
pub struct IdleConn {
    /// Upstream index (for counting dirty connections).
    pub upstream: usize,
    state: State,
}

enum State {
    /// Checked in since the janitor's last tick: not watched yet.
    Fresh(UpstreamConn),
    Watched {
        stream: Rc<Stream>,
        slot: ConnSlot,
        buf: Vec<u8>,
        requests: u32,
        watch: Watch,
    },
    /// Being rearranged (never observed outside a method).
    Gone,
}

impl IdleConn {
    pub fn new(upstream: usize, conn: UpstreamConn) -> Self {
        Self { upstream, state: State::Fresh(conn) }
    }

    /// Not watched yet.
    pub fn is_fresh(&self) -> bool {
        matches!(self.state, State::Fresh(_))
    }

    /// Arms the watch on a fresh connection; `waker` is woken when it fires. False when the
    /// connection is already readable (the caller closes it). TLS connections are not watched
    /// (their socket belongs to the TLS layer): the check at checkout and the idle timeout
    /// still apply.
    ///
    /// A connection gets here after a janitor tick in the pool, so it also gives up its buffers
    /// (its read buffer, up to 64 KiB after a streamed body, and TLS's record buffers): a pool
    /// that a burst filled would otherwise hold them until the idle timeout. Connections reused
    /// within a tick (the hot ones) keep theirs.
    pub fn arm(&mut self, waker: &Waker) -> bool {
        match &mut self.state {
            // (TLS connections stay fresh, and come here every tick: once is enough)
            State::Fresh(conn) if conn.buf.capacity() > 0 => {
                // a pooled connection has nothing pending: its buffer is empty
                conn.buf = Vec::new();
                conn.stream.release();
            }
            _ => {}
        }
        self.state = match std::mem::replace(&mut self.state, State::Gone) {
            State::Fresh(conn) if conn.stream.tls().is_some() => State::Fresh(conn),
            State::Fresh(UpstreamConn { slot, stream, buf, requests }) => {
                let stream = Rc::new(stream);
                let watched = stream.clone();
                let watch: Watch = Box::pin(async move {
                    match watched.readable(false) {
                        Some(ready) => ready.await,
                        None => std::future::pending().await,
                    }
                });
                State::Watched { stream, slot, buf, requests, watch }
            }
            other => other,
        };
        self.quiet(waker)
    }

    /// False once the watch has fired (something arrived). A fresh connection is not known yet.
    pub fn quiet(&mut self, waker: &Waker) -> bool {
        match &mut self.state {
            State::Watched { watch, .. } => watch.as_mut().poll(&mut Context::from_waker(waker)).is_pending(),
            _ => true,
        }
    }

    /// Hands the connection back for a request if nothing is waiting on it (watch quiet, and a
    /// peek finds no byte, FIN or RST). `None`: it is dirty and is closed.
    pub fn take(mut self, waker: &Waker) -> Option<UpstreamConn> {
        if !self.quiet(waker) {
            return None;
        }
        let conn = match std::mem::replace(&mut self.state, State::Gone) {
            State::Fresh(conn) => conn,
            State::Watched { stream, slot, buf, requests, watch } => {
                // dropping the poll cancels it on the ring; the stream's only other owner goes with it
                drop(watch);
                let stream = Rc::try_unwrap(stream).ok()?;
                UpstreamConn { slot, stream, buf, requests }
            }
            State::Gone => return None,
        };
        peer_quiet(&conn.stream).then_some(conn)
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::net::memory::{MemoryIo, Step};

    #[test]
    fn a_connection_idle_for_a_tick_gives_up_its_read_buffer() {
        let open = Rc::new(Cell::new(0));
        let (io, _) = MemoryIo::new(vec![Step::Hang]);
        let stream = Stream::Memory(Box::new(io));
        // a streamed body grew the buffer to its cap; the response was read to its end
        let conn = UpstreamConn { slot: ConnSlot::new(&open), stream, buf: Vec::with_capacity(64 * 1024), requests: 1 };
        let mut idle = IdleConn::new(0, conn);
        assert!(idle.arm(Waker::noop()), "nothing arrived: still clean");
        let State::Watched { buf, .. } = &idle.state else { panic!("a plain connection is watched once armed") };
        // (the next request reads into a new one: `Conn::prepare_read` sizes it)
        assert_eq!(buf.capacity(), 0);
    }
}
