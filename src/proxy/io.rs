//! Buffered connection halves and the body pump: the only code on the request path that reads or
//! writes sockets.
//!
//! A [`Conn`] owns a socket and its read buffer (`buf[pos..]` is unconsumed input). Reads and writes
//! use monoio's owned-buffer API; every read and write runs under a timeout. A timed-out operation
//! loses its buffer (monoio 0.2.4 on io_uring), so a timeout always ends the connection.

use std::io;
use std::time::Duration;

use crate::net::Stream;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};

use crate::http::{push_chunk_header, BodyKind, ChunkedDecoder, ParseError};

/// How long an upstream read runs before the client is also watched for going away.
const WATCH_AFTER: Duration = Duration::from_millis(20);
/// The buffer a connection's first read allocates (connections start without one).
const FIRST_READ_BYTES: usize = 8 * 1024;
/// Smallest free space worth a read syscall.
const MIN_READ_BYTES: usize = 4 * 1024;
/// Body data is streamed through buffers of at most this size (bounded memory per connection).
pub const STREAM_BUF_BYTES: usize = 64 * 1024;
/// Runs of body bytes this large are written straight from the read buffer, not copied.
const DIRECT_WRITE_BYTES: usize = 16 * 1024;

/// How an idle wait ended ([`Conn::fill_or_park`]).
pub enum Idle {
    /// A read completed with this many bytes (0: the peer closed).
    Read(usize),
    /// Nothing arrived in time: the read was cancelled and the buffer freed.
    Parked,
}

/// A socket with its read buffer.
///
/// The buffer grows adaptively (as hyper's does): a connection starts small (a head fits), and
/// only a read that filled all the free space it was given makes the next one larger, up to
/// `STREAM_BUF_BYTES`. Heads never grow it; a streamed body reaches 64 KiB reads within a few
/// reads (an 8 KiB buffer for a 1 GiB upload cost one ring entry per 4 KiB: bench/RESULTS.md §25).
pub struct Conn {
    pub stream: Stream,
    pub buf: Vec<u8>,
    pub pos: usize,
    /// The last read filled its whole range: give the next one more room.
    grow: bool,
}

impl Conn {
    pub fn new(stream: Stream, buf: Vec<u8>) -> Self {
        Self { stream, buf, pos: 0, grow: false }
    }

    /// Takes back the buffer a read used (`len..cap` was its range) and notes whether it filled it.
    #[inline]
    fn end_read(&mut self, buf: Vec<u8>, len: usize, cap: usize) {
        self.grow = buf.len() == cap && cap > len;
        self.buf = buf;
    }

    /// Unconsumed input.
    #[inline]
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.buf.len());
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more input, keeping at most `max_pending` unconsumed bytes. Returns the bytes read
    /// (0 = the peer closed). `InvalidData` when the buffer is full; `TimedOut` after `timeout`.
    pub async fn fill(&mut self, timeout: Duration, max_pending: usize) -> io::Result<usize> {
        let (buf, len, cap) = self.prepare_read(max_pending)?;
        let (res, slice) = match monoio::time::timeout(timeout, self.stream.read(buf.slice_mut(len..cap))).await {
            Ok(r) => r,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out")),
        };
        self.end_read(slice.into_inner(), len, cap);
        res
    }

    /// Reads what the socket holds right now without a ring operation ([`Stream::recv_now`]):
    /// `Ok(None)` when nothing is there (or the stream cannot), `Ok(Some(0))` when the peer closed.
    pub fn fill_now(&mut self, max_pending: usize) -> io::Result<Option<usize>> {
        let (mut buf, len, cap) = self.prepare_read(max_pending)?;
        let res = self.stream.recv_now(&mut buf, cap - len);
        self.end_read(buf, len, cap);
        match res {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The wait for a keep-alive connection's next request (plain TCP): like [`Conn::fill`]
    /// without a deadline, but when nothing arrived by `park_after` (the worker's parking lot says
    /// when the wait has lasted `idle_park_ms`) the read is cancelled and its buffer freed
    /// (`Idle::Parked`: the caller hands the connection to the parking lot). Nothing read is
    /// lost: a read that completed before the cancellation took keeps its bytes (or its end of
    /// stream).
    pub async fn fill_or_park(
        &mut self,
        park_after: crate::runtime::IdleFor<'_>,
        max_pending: usize,
        canceller: &mut Canceller,
    ) -> io::Result<Idle> {
        let (buf, len, cap) = self.prepare_read(max_pending)?;
        let mut cancelled = false;
        let (res, slice) = {
            let read = self.stream.cancelable_read(buf.slice_mut(len..cap), canceller.handle());
            let mut read = std::pin::pin!(read);
            monoio::select! {
                r = &mut read => r,
                _ = park_after => {
                    // `cancel` consumes the canceller and hands back a fresh one
                    *canceller = std::mem::take(canceller).cancel();
                    cancelled = true;
                    read.await
                }
            }
        };
        self.end_read(slice.into_inner(), len, cap);
        match res {
            Ok(n) => Ok(Idle::Read(n)),
            Err(_) if cancelled && self.buf.len() == len && len == self.pos => {
                // cancelled (or failed meanwhile: the next read reports it) with nothing buffered
                self.buf = Vec::new();
                self.pos = 0;
                Ok(Idle::Parked)
            }
            Err(e) => Err(e),
        }
    }

    /// Like [`Conn::fill`], but also watches `client`: if the client closes while we wait, the
    /// read is given up and `ConnectionAborted` is returned. Pipelined client bytes are not an
    /// abort: watching stops and the read goes on.
    /// A read given up (client gone, or `timeout`) is dropped, not cancelled: its buffer and
    /// anything it got are lost, so the caller must retire this connection after any error
    /// (the request path does: only a complete response returns an upstream connection to the
    /// pool). A cancellable read would keep them, but monoio 0.2.4 registers every cancellable
    /// operation in a SipHash `HashSet`: ~870 instructions per request for a rare case
    /// (bench/RESULTS.md §27).
    pub async fn fill_watching(&mut self, timeout: Duration, max_pending: usize, client: &Stream) -> io::Result<usize> {
        let (buf, len, cap) = self.prepare_read(max_pending)?;
        let ended = {
            let read = self.stream.read(buf.slice_mut(len..cap));
            let mut read = std::pin::pin!(read);
            // one timer serves both waits: first until WATCH_AFTER, then reset to the deadline
            // (a second timer made per request cost ~220 instructions, bench/RESULTS.md §32)
            let start = monoio::time::Instant::now();
            let timer = monoio::time::sleep_until(start + WATCH_AFTER.min(timeout));
            let mut timer = std::pin::pin!(timer);
            // most upstreams answer within microseconds: only a wait longer than WATCH_AFTER pays
            // for arming a poll on the client socket (an extra io_uring op and its cancellation)
            let quick = monoio::select! {
                r = &mut read => Some(r),
                _ = &mut timer => None,
            };
            match quick {
                Some(r) => Ok(r),
                None => {
                    timer.as_mut().reset(start + timeout);
                    let mut watching = true;
                    loop {
                        monoio::select! {
                            r = &mut read => break Ok(r),
                            _ = &mut timer => break Err(io::ErrorKind::TimedOut),
                            closed = client_closed(client), if watching => {
                                if closed {
                                    break Err(io::ErrorKind::ConnectionAborted);
                                }
                                watching = false; // pipelined bytes: the next request, not an abort
                            }
                        }
                    }
                }
            }
        };
        // the read future is gone here: a given-up read was dropped with its buffer
        match ended {
            Ok((res, slice)) => {
                self.end_read(slice.into_inner(), len, cap);
                res
            }
            Err(kind) => Err(io::Error::new(kind, "read ended early")),
        }
    }

    /// Compacts/grows the buffer for a read; returns it (taken out of `self`) with the free range.
    fn prepare_read(&mut self, max_pending: usize) -> io::Result<(Vec<u8>, usize, usize)> {
        let pending = self.buf.len() - self.pos;
        if pending >= max_pending {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "read buffer full"));
        }
        if self.pos > 0 && self.buf.capacity() - self.buf.len() < MIN_READ_BYTES {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(pending);
            self.pos = 0;
        }
        let want = (max_pending - pending).clamp(1, STREAM_BUF_BYTES);
        if self.buf.capacity() == 0 {
            // first read on a connection: a head fits; bodies grow the buffer below
            self.buf.reserve_exact(want.min(FIRST_READ_BYTES));
        } else if self.buf.capacity() - self.buf.len() < want.min(MIN_READ_BYTES) {
            self.buf.reserve(want);
        } else if self.grow && self.buf.capacity() < STREAM_BUF_BYTES {
            // the last read filled its room: double it (streamed bodies), up to the cap
            let target = (self.buf.capacity() * 2).min(STREAM_BUF_BYTES).max(self.buf.len() + MIN_READ_BYTES);
            self.buf.reserve_exact(target - self.buf.len());
        }
        let len = self.buf.len();
        let cap = self.buf.capacity().min(len + want.max(MIN_READ_BYTES));
        Ok((std::mem::take(&mut self.buf), len, cap))
    }
}

/// How often a TLS client (whose socket cannot be polled for readiness here) is checked for
/// having gone away while its upstream is busy.
const TLS_CLIENT_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Resolves when the client's socket shows something: `true` when it closed or reset, `false`
/// for bytes (a pipelined request).
async fn client_closed(client: &Stream) -> bool {
    match client.readable(false) {
        Some(ready) => {
            let _ = ready.await;
            crate::upstream::peer_state(client) == crate::upstream::PeerState::Closed
        }
        None => loop {
            monoio::time::sleep(TLS_CLIENT_CHECK_EVERY).await;
            if client.gone() {
                return true;
            }
        },
    }
}

/// Writes all of `out` (then clears it) within `timeout`.
pub async fn write_out(stream: &mut Stream, out: &mut Vec<u8>, timeout: Duration) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    match send_now(stream, out)? {
        0 => {}
        n if n == out.len() => {
            out.clear();
            return Ok(());
        }
        n => {
            out.drain(..n);
        }
    }
    let buf = std::mem::take(out);
    match monoio::time::timeout(timeout, stream.write_all(buf)).await {
        Ok((res, mut buf)) => {
            buf.clear();
            *out = buf;
            res.map(|_| ())
        }
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    }
}

/// What the socket takes of `bytes` right now ([`Stream::send_now`]): 0 when it takes nothing or
/// the stream cannot be written that way; errors other than a full buffer are the write's.
fn send_now(stream: &Stream, bytes: &[u8]) -> io::Result<usize> {
    match stream.send_now(bytes) {
        Ok(n) => Ok(n),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes `src.buf[src.pos..src.pos + n]` without copying, then consumes it.
async fn write_direct(dst: &mut Stream, src: &mut Conn, n: usize, timeout: Duration) -> io::Result<()> {
    let sent = send_now(dst, &src.buf[src.pos..src.pos + n])?;
    src.consume(sent);
    let n = n - sent;
    if n == 0 {
        return Ok(());
    }
    let buf = std::mem::take(&mut src.buf);
    let (start, end) = (src.pos, src.pos + n);
    let res = match monoio::time::timeout(timeout, dst.write_all(buf.slice(start..end))).await {
        Ok((res, slice)) => {
            src.buf = slice.into_inner();
            res
        }
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    };
    src.consume(n);
    res.map(|_| ())
}

/// Why a body could not be moved.
#[derive(Debug)]
pub enum PumpError {
    /// The source closed before the body was complete.
    SourceClosed,
    SourceTimeout,
    SourceIo(#[allow(dead_code)] io::Error),
    /// The source's framing was invalid (or over the limit).
    SourceFraming(ParseError),
    /// Writing to the destination failed or timed out.
    Sink(#[allow(dead_code)] io::Error),
    /// The exchange's deadline passed before the request was sent.
    Deadline,
    /// The client went away while the request was being sent.
    ClientGone,
}

/// Per-direction knobs of [`pump`].
#[derive(Clone, Copy)]
pub struct PumpOpts<'a> {
    /// Idle time allowed for one read from the source.
    pub read_timeout: Duration,
    /// Time allowed for one write to the destination.
    pub write_timeout: Duration,
    /// Re-frame as chunked (else raw bytes, delimited by length or by closing).
    pub chunked_out: bool,
    /// Decoded-size limit for chunked input (0 = unlimited).
    pub limit: u64,
    /// Trailer section cap for chunked input.
    pub max_trailer_bytes: usize,
    /// Slowest acceptable average source rate (request bodies), after a grace period.
    pub min_rate: Option<MinRate>,
    /// The egress bandwidth cap, for writes to an upstream: every write waits for its bytes.
    pub shaper: Option<(&'a crate::limit::bandwidth::Shaper, &'a crate::limit::RateRule)>,
}

/// Waits until `n` bytes may be written (when the destination is shaped).
#[inline]
async fn shape(o: &PumpOpts<'_>, n: usize) {
    if let (Some((shaper, rule)), true) = (o.shaper, n > 0) {
        shaper.acquire(rule, n as u64).await;
    }
}

/// A minimum average transfer rate: below it the source counts as timed out (408 for clients).
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub bytes_per_s: u64,
    /// Source-wait time before the rate is enforced.
    pub grace: Duration,
}

/// What a pump has read from its source, and how long it waited for it.
#[derive(Debug, Default)]
struct Received {
    bytes: u64,
    waited: Duration,
}

/// Streams a body framed as `kind` from `src` to `dst`, after first sending whatever the caller
/// left in `out` (typically the message head). Always flushes `out`. Returns body bytes moved.
pub async fn pump(
    src: &mut Conn,
    dst: &mut Stream,
    kind: BodyKind,
    out: &mut Vec<u8>,
    o: PumpOpts<'_>,
) -> Result<u64, PumpError> {
    let moved = match kind {
        BodyKind::None => 0,
        BodyKind::Length(n) => pump_length(src, dst, n, out, o).await?,
        BodyKind::Chunked => pump_chunked(src, dst, out, o).await?,
        BodyKind::UntilClose => pump_until_close(src, dst, out, o).await?,
    };
    shape(&o, out.len()).await;
    write_out(dst, out, o.write_timeout).await.map_err(PumpError::Sink)?;
    Ok(moved)
}

/// Appends body bytes to `out`, as one chunk when re-framing as chunked.
fn emit(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        push_chunk_header(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

async fn read_more(src: &mut Conn, o: &PumpOpts<'_>, seen: &mut Received) -> Result<usize, PumpError> {
    let t0 = o.min_rate.map(|_| std::time::Instant::now());
    match src.fill(o.read_timeout, STREAM_BUF_BYTES).await {
        Ok(n) => {
            seen.bytes += n as u64;
            if let (Some(m), Some(t0)) = (o.min_rate, t0) {
                // only time spent waiting for the source counts: our own write stalls
                // (upstream backpressure) must not be blamed on the client
                seen.waited += t0.elapsed();
                let waited = seen.waited.as_secs_f64();
                if seen.waited > m.grace && (seen.bytes as f64) < m.bytes_per_s as f64 * waited {
                    return Err(PumpError::SourceTimeout);
                }
            }
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(PumpError::SourceTimeout),
        Err(e) => Err(PumpError::SourceIo(e)),
    }
}

async fn pump_length(
    src: &mut Conn,
    dst: &mut Stream,
    len: u64,
    out: &mut Vec<u8>,
    o: PumpOpts<'_>,
) -> Result<u64, PumpError> {
    let mut received = Received::default();
    let mut remaining = len;
    while remaining > 0 {
        let avail = (src.pending().len() as u64).min(remaining) as usize;
        if avail >= DIRECT_WRITE_BYTES {
            shape(&o, out.len() + avail).await;
            write_out(dst, out, o.write_timeout).await.map_err(PumpError::Sink)?;
            write_direct(dst, src, avail, o.write_timeout).await.map_err(PumpError::Sink)?;
        } else if avail > 0 {
            out.extend_from_slice(&src.pending()[..avail]);
            src.consume(avail);
        }
        remaining -= avail as u64;
        if remaining == 0 {
            break;
        }
        shape(&o, out.len()).await;
        write_out(dst, out, o.write_timeout).await.map_err(PumpError::Sink)?;
        if read_more(src, &o, &mut received).await? == 0 {
            return Err(PumpError::SourceClosed);
        }
    }
    Ok(len)
}

async fn pump_chunked(src: &mut Conn, dst: &mut Stream, out: &mut Vec<u8>, o: PumpOpts<'_>) -> Result<u64, PumpError> {
    let mut received = Received::default();
    let mut decoder = ChunkedDecoder::new(o.limit, o.max_trailer_bytes);
    loop {
        let consumed =
            decoder.feed(src.pending(), |data| emit(out, data, o.chunked_out)).map_err(PumpError::SourceFraming)?;
        src.consume(consumed);
        if decoder.is_done() {
            if o.chunked_out {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            return Ok(decoder.total());
        }
        shape(&o, out.len()).await;
        write_out(dst, out, o.write_timeout).await.map_err(PumpError::Sink)?;
        if read_more(src, &o, &mut received).await? == 0 {
            return Err(PumpError::SourceClosed);
        }
    }
}

async fn pump_until_close(
    src: &mut Conn,
    dst: &mut Stream,
    out: &mut Vec<u8>,
    o: PumpOpts<'_>,
) -> Result<u64, PumpError> {
    let mut received = Received::default();
    let mut moved = 0u64;
    loop {
        let data = src.pending();
        if !data.is_empty() {
            emit(out, data, o.chunked_out);
            moved += data.len() as u64;
            let n = data.len();
            src.consume(n);
        }
        shape(&o, out.len()).await;
        write_out(dst, out, o.write_timeout).await.map_err(PumpError::Sink)?;
        if read_more(src, &o, &mut received).await? == 0 {
            if o.chunked_out {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            return Ok(moved);
        }
    }
}
