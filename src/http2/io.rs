//! A client connection's bytes as the h2 crate reads and writes them (tokio's poll-style I/O
//! traits over monoio's owned-buffer operations), holding no buffer while the connection is idle.
//!
//! A busy connection reads through the ring as any other: one read in flight into a buffer of
//! ours, whose bytes h2 then copies out. A read that has waited `[http] idle_park_ms` is
//! cancelled (nothing read is lost: a TLS read hands what the kernel had to rustls), the buffer
//! is freed, a TLS connection gives up its own buffers too (`Stream::release`), and the
//! connection waits for its socket to turn readable, which needs no buffer. The first bytes after
//! that start a buffered read again. The h2 connection's task looks at the wait every 250 ms
//! (its tick polls h2, which polls here), so the cancellation comes at most that late.
//!
//! Writes copy h2's bytes into a buffer made for that one write and freed when the ring has sent
//! it; a write that is still in flight makes the next write, flush or shutdown wait.
//!
//! This replaced monoio-compat's `StreamWrapper`, which held an 8 KiB read and an 8 KiB write
//! buffer for the connection's life and always had a read in flight (bench/RESULTS.md §39).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use monoio::io::{
    AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller, OwnedReadHalf, OwnedWriteHalf,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::Stream;

/// Bytes one read asks for: a TLS record's worth of plaintext.
const READ_BYTES: usize = 16 * 1024;

type ReadHalf = OwnedReadHalf<Stream>;
type WriteHalf = OwnedWriteHalf<Stream>;
type ReadOp = Pin<Box<dyn Future<Output = (ReadHalf, io::Result<usize>, Vec<u8>)>>>;
type WaitOp = Pin<Box<dyn Future<Output = (ReadHalf, io::Result<()>)>>>;
type WriteOp = Pin<Box<dyn Future<Output = (WriteHalf, io::Result<()>)>>>;

enum Reader {
    /// No operation in flight; `buf[pos..]` is read and not yet taken (an empty `buf` holds no
    /// memory: an idle connection).
    Ready { half: ReadHalf, buf: Vec<u8>, pos: usize },
    /// A ring read; `since`: when it started waiting (see the module comment).
    Reading { op: ReadOp, since: Instant, cancelled: bool },
    /// Idle: waiting for the socket to turn readable, no buffer held.
    Waiting(WaitOp),
    /// Between two states (a poll never leaves it here).
    Gone,
}

enum Writer {
    Ready(WriteHalf),
    Busy(WriteOp),
    Gone,
}

/// A client connection (plain or TLS) seen through tokio's I/O traits.
pub struct ConnIo {
    reader: Reader,
    writer: Writer,
    canceller: Canceller,
    /// `[http] idle_park_ms`; `None`: reads are never cancelled (buffers kept while idle).
    park_after: Option<Duration>,
    /// The worker's count of connections in `Reader::Waiting` (`ringway_h2_connections_idle`).
    idle_gauge: Rc<Cell<usize>>,
    /// TLS, and a read has run since the last write: rustls may have queued records of its own
    /// (a key update's answer), which a flush sends. A write sends them anyway.
    tls_unflushed: bool,
    tls: bool,
    shut: bool,
}

impl ConnIo {
    pub fn new(stream: Stream, park_after: Option<Duration>, idle_gauge: Rc<Cell<usize>>) -> Self {
        let tls = stream.tls().is_some();
        let (half, writer) = stream.into_split();
        let reader = Reader::Ready { half, buf: Vec::new(), pos: 0 };
        let writer = Writer::Ready(writer);
        let canceller = Canceller::new();
        Self { reader, writer, canceller, park_after, idle_gauge, tls_unflushed: false, tls, shut: false }
    }

    /// The read side of a connection whose read was cancelled while idle: its buffers freed
    /// and a wait for the socket, or, when the stream still holds input above the socket (TLS:
    /// a record the cancelled read brought in), ready to read it.
    fn idle(&self, half: ReadHalf) -> Reader {
        // SAFETY: the halves share the stream (monoio's `Split`, which `Stream` implements);
        // this runs inside a poll of the read half, between the write half's operations, on the
        // one thread that owns both. `release` declines when a write is in flight.
        let stream = unsafe { &mut *half.0.get() };
        if stream.buffered() {
            return Reader::Ready { half, buf: Vec::new(), pos: 0 };
        }
        stream.release();
        self.idle_gauge.set(self.idle_gauge.get() + 1);
        Reader::Waiting(Box::pin(async move {
            // SAFETY: as above; the wait only reads the socket's state
            let res = unsafe { &*half.0.get() }.socket_readable().await;
            (half, res)
        }))
    }

    /// The in-flight write's end, if one is in flight.
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.writer {
            Writer::Ready(_) => Poll::Ready(Ok(())),
            Writer::Gone => Poll::Ready(Err(gone())),
            Writer::Busy(op) => {
                let (half, res) = ready!(op.as_mut().poll(cx));
                self.writer = Writer::Ready(half);
                Poll::Ready(res)
            }
        }
    }

    /// Starts `op` on the write half (whose previous operation has ended) and polls it once, so
    /// that its ring entry goes out with this loop turn.
    fn start_write<F, Fut>(&mut self, cx: &mut Context<'_>, op: F) -> Poll<io::Result<()>>
    where
        F: FnOnce(WriteHalf) -> Fut,
        Fut: Future<Output = (WriteHalf, io::Result<()>)> + 'static,
    {
        let Writer::Ready(half) = std::mem::replace(&mut self.writer, Writer::Gone) else {
            return Poll::Ready(Err(gone()));
        };
        self.tls_unflushed = false;
        self.writer = Writer::Busy(Box::pin(op(half)));
        self.poll_written(cx)
    }

    /// Copies `bufs` into a write of their own and starts it; they count as written (h2 then
    /// flushes, which waits for the write).
    fn write_copy(&mut self, cx: &mut Context<'_>, bufs: &[&[u8]]) -> Poll<io::Result<usize>> {
        ready!(self.poll_written(cx))?;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let mut out = Vec::with_capacity(len);
        bufs.iter().for_each(|b| out.extend_from_slice(b));
        match self.start_write(cx, |mut half| async move {
            let (res, _) = half.write_all(out).await;
            (half, res.map(drop))
        }) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(len)),
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.reader {
                Reader::Ready { buf, pos, .. } if *pos < buf.len() => {
                    let n = (buf.len() - *pos).min(out.remaining());
                    out.put_slice(&buf[*pos..*pos + n]);
                    *pos += n;
                    return Poll::Ready(Ok(()));
                }
                Reader::Ready { .. } => {
                    let Reader::Ready { mut half, mut buf, .. } = std::mem::replace(&mut this.reader, Reader::Gone)
                    else {
                        unreachable!()
                    };
                    buf.clear();
                    buf.reserve(READ_BYTES);
                    let handle = this.canceller.handle();
                    let op: ReadOp = Box::pin(async move {
                        let (res, buf) = half.cancelable_read(buf, handle).await;
                        (half, res, buf)
                    });
                    this.reader = Reader::Reading { op, since: Instant::now(), cancelled: false };
                }
                Reader::Reading { op, since, cancelled } => {
                    let Poll::Ready((half, res, buf)) = op.as_mut().poll(cx) else {
                        if !*cancelled && this.park_after.is_some_and(|p| since.elapsed() >= p) {
                            // `cancel` consumes the canceller and hands back a fresh one
                            this.canceller = std::mem::take(&mut this.canceller).cancel();
                            *cancelled = true;
                            continue; // the read ends now, with or without bytes
                        }
                        return Poll::Pending;
                    };
                    let cancelled = *cancelled;
                    match res {
                        Ok(n) => {
                            this.tls_unflushed = this.tls;
                            this.reader = Reader::Ready { half, buf, pos: 0 };
                            if n == 0 {
                                return Poll::Ready(Ok(())); // end of stream
                            }
                        }
                        Err(_) if cancelled => this.reader = this.idle(half),
                        Err(e) => {
                            this.reader = Reader::Ready { half, buf, pos: 0 };
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                Reader::Waiting(op) => {
                    let (half, res) = ready!(op.as_mut().poll(cx));
                    this.idle_gauge.set(this.idle_gauge.get() - 1);
                    this.reader = Reader::Ready { half, buf: Vec::new(), pos: 0 };
                    res?;
                }
                Reader::Gone => return Poll::Ready(Err(gone())),
            }
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().write_copy(cx, &[buf])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let slices: smallvec::SmallVec<[&[u8]; 4]> = bufs.iter().map(|b| &**b).collect();
        self.get_mut().write_copy(cx, &slices)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_written(cx))?;
        if !this.tls_unflushed {
            return Poll::Ready(Ok(()));
        }
        this.start_write(cx, |mut half| async move {
            let res = half.flush().await;
            (half, res)
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_written(cx))?;
        if std::mem::replace(&mut this.shut, true) {
            return Poll::Ready(Ok(())); // the shutdown just polled to its end was this one
        }
        this.start_write(cx, |mut half| async move {
            let res = half.shutdown().await;
            (half, res)
        })
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if matches!(self.reader, Reader::Waiting(_)) {
            self.idle_gauge.set(self.idle_gauge.get() - 1);
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection unusable after an interrupted operation")
}
