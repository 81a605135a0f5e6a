//! One HTTP/2 stream as the byte stream of an HTTP/1.1 connection carrying one request: what
//! the request phases read is the translated head, then the DATA frames (chunk-framed when the
//! length is unknown); what they write is parsed back into HEADERS and DATA frames.
//!
//! Flow control holds both ways without extra buffers: received DATA is released to the client's
//! window only as the phases read it (so an upstream that reads slowly slows its own stream
//! only), and response bytes are handed to h2 only as the stream's send window opens (so a client
//! that reads one stream slowly stalls that stream's upstream read, not the connection).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::task::Context;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};

use super::translate::{response_head, Framing};
use crate::http::ChunkedDecoder;

/// The request side: translated head and body pieces waiting to be read.
struct Inbound {
    pieces: VecDeque<Bytes>,
    recv: RecvStream,
    chunked: bool,
    /// The stream's body ended (or it had none).
    done: bool,
}

/// The response side.
enum Outbound {
    /// Collecting the response head.
    Head(Vec<u8>),
    /// `sent`: some body bytes went to h2 already.
    Body { stream: SendStream<Bytes>, body: Body, sent: bool },
    /// The response ended (END_STREAM sent).
    Done,
}

enum Body {
    Length(u64),
    Chunked { decoder: ChunkedDecoder, carry: Vec<u8> },
}

/// A stream's bridge (lives in `net::Stream::H2`).
pub struct StreamIo {
    inbound: Inbound,
    respond: RefCell<SendResponse<Bytes>>,
    outbound: Outbound,
    head_request: bool,
    /// The client reset the stream (seen by `gone`).
    reset: Cell<bool>,
}

impl StreamIo {
    /// `head`: the translated HTTP/1.1 request head; `chunked`: frame the body as chunked.
    pub fn new(
        head: Vec<u8>,
        recv: RecvStream,
        respond: SendResponse<Bytes>,
        chunked: bool,
        head_request: bool,
    ) -> Self {
        let done = recv.is_end_stream();
        Self {
            inbound: Inbound { pieces: VecDeque::from([Bytes::from(head)]), recv, chunked, done },
            respond: RefCell::new(respond),
            outbound: Outbound::Head(Vec::new()),
            head_request,
            reset: Cell::new(false),
        }
    }

    /// The whole response went out (END_STREAM sent).
    pub fn finished(&self) -> bool {
        matches!(self.outbound, Outbound::Done)
    }

    /// A response head went out.
    pub fn answered(&self) -> bool {
        !matches!(self.outbound, Outbound::Head(_))
    }

    /// Whether the client has reset the stream (no waiting).
    pub fn gone(&self) -> bool {
        if !self.reset.get() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if self.respond.borrow_mut().poll_reset(&mut cx).is_ready() {
                self.reset.set(true);
            }
        }
        self.reset.get()
    }

    /// Ends the stream with RST_STREAM (a response cut short, or none at all).
    pub fn reset(&mut self, reason: h2::Reason) {
        match &mut self.outbound {
            Outbound::Body { stream, .. } => stream.send_reset(reason),
            _ => self.respond.get_mut().send_reset(reason),
        }
        self.outbound = Outbound::Done;
    }

    /// Copies request bytes into `dst`; 0 at the end of the body.
    pub async fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(piece) = self.inbound.pieces.front_mut() {
                let n = piece.len().min(dst.len());
                dst[..n].copy_from_slice(&piece[..n]);
                bytes::Buf::advance(piece, n);
                if piece.is_empty() {
                    self.inbound.pieces.pop_front();
                }
                return Ok(n);
            }
            if self.inbound.done {
                return Ok(0);
            }
            match poll_fn(|cx| self.inbound.recv.poll_data(cx)).await {
                Some(Ok(data)) => {
                    let n = data.len();
                    // released as it is taken: the window refills only as fast as it is read
                    let _ = self.inbound.recv.flow_control().release_capacity(n);
                    if n == 0 {
                        continue;
                    }
                    if self.inbound.chunked {
                        let mut line = Vec::with_capacity(18);
                        crate::http::push_chunk_header(&mut line, n);
                        self.inbound.pieces.push_back(Bytes::from(line));
                        self.inbound.pieces.push_back(data);
                        self.inbound.pieces.push_back(Bytes::from_static(b"\r\n"));
                    } else {
                        self.inbound.pieces.push_back(data);
                    }
                }
                None => {
                    self.inbound.done = true;
                    if self.inbound.chunked {
                        self.inbound.pieces.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
                Some(Err(e)) => {
                    self.reset.set(e.is_reset());
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, e));
                }
            }
        }
    }

    /// Takes response bytes; returns how many were taken (all of `src` unless the head ended in
    /// it, then the head's bytes: the caller writes the rest again).
    pub async fn write(&mut self, src: &[u8]) -> io::Result<usize> {
        match &mut self.outbound {
            Outbound::Head(buf) => {
                let before = buf.len();
                buf.extend_from_slice(src);
                let parsed = response_head(buf, self.head_request).map_err(io::Error::other)?;
                let Some((head, len)) = parsed else { return Ok(src.len()) };
                let taken = len - before;
                let respond = self.respond.get_mut();
                if head.interim {
                    // 100 Continue: the client may send its body now
                    let _ = respond.send_informational(head.response);
                    self.outbound = Outbound::Head(Vec::new());
                    return Ok(taken);
                }
                let end = head.framing == Framing::Empty;
                let stream = respond.send_response(head.response, end).map_err(h2_error)?;
                self.outbound = match head.framing {
                    Framing::Empty => Outbound::Done,
                    Framing::Length(n) => Outbound::Body { stream, body: Body::Length(n), sent: false },
                    Framing::Chunked => Outbound::Body {
                        stream,
                        body: Body::Chunked { decoder: ChunkedDecoder::new(0, 64 * 1024), carry: Vec::new() },
                        sent: false,
                    },
                };
                Ok(taken)
            }
            Outbound::Body { stream, body, sent } => {
                let first = !std::mem::replace(sent, true);
                let taken = match body {
                    Body::Length(left) => {
                        let n = (src.len() as u64).min(*left) as usize;
                        *left -= n as u64;
                        send(stream, &src[..n], *left == 0, first).await?;
                        (*left > 0).then_some(n)
                    }
                    Body::Chunked { decoder, carry } => {
                        carry.extend_from_slice(src);
                        let mut data = Vec::new();
                        let used = decoder
                            .feed(carry, |d| data.extend_from_slice(d))
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
                        carry.drain(..used);
                        let done = decoder.is_done();
                        if !data.is_empty() || done {
                            send(stream, &data, done, first).await?;
                        }
                        (!done).then_some(src.len())
                    }
                };
                match taken {
                    Some(n) => Ok(n),
                    None => {
                        self.outbound = Outbound::Done;
                        Ok(src.len()) // bytes past the end of the body are dropped
                    }
                }
            }
            Outbound::Done => Ok(src.len()),
        }
    }
}

/// Hands `data` to h2 as DATA (END_STREAM with it when `end`). Before each piece but the first,
/// waits until the stream has send capacity again: h2 holds what exceeds the window (at most
/// `max_send_buffer_size` plus one piece per stream), and a client that stops reading stalls
/// this stream's writer. The first piece goes at once, so a small response leaves in the same
/// flush as its HEADERS (capacity is only assigned once the connection task has run).
async fn send(stream: &mut SendStream<Bytes>, data: &[u8], end: bool, first: bool) -> io::Result<()> {
    if !first {
        stream.reserve_capacity(1);
        while stream.capacity() == 0 {
            match poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(h2_error(e)),
                None => return Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream closed")),
            }
        }
    }
    stream.send_data(Bytes::copy_from_slice(data), end).map_err(h2_error)
}

fn h2_error(e: h2::Error) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}
