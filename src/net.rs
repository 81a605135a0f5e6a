//! The transport seam: one stream type for every connection the gateway holds (client
//! connections, upstream connections, the body pump and the tunnel), plain TCP today. TLS
//! (issue #12) becomes a second variant; nothing above this module names `TcpStream`.
//!
//! With one variant every method forwards to the TCP stream's own future, so the seam costs
//! nothing on the request path; a second variant will need an either-future.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelHandle, CancelableAsyncReadRent};
use monoio::net::TcpStream;
use monoio::BufResult;

/// A connection's byte stream.
pub enum Stream {
    Plain(TcpStream),
}

impl Stream {
    /// The TCP socket underneath (socket options, readiness, peeking).
    #[inline]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
        }
    }

    /// The scheme spoken on this stream (`X-Forwarded-Proto`).
    pub fn scheme(&self) -> &'static str {
        match self {
            Stream::Plain(_) => "http",
        }
    }

    /// Waits until the socket is readable (bytes, FIN or an error).
    pub fn readable(&self, relaxed: bool) -> impl Future<Output = io::Result<()>> + '_ {
        self.tcp().readable(relaxed)
    }

    /// Splits into owned halves for a byte relay (the tunnel).
    pub fn into_split(self) -> (monoio::net::tcp::TcpOwnedReadHalf, monoio::net::tcp::TcpOwnedWriteHalf) {
        use monoio::io::Splitable;
        match self {
            Stream::Plain(s) => s.into_split(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncReadRent for Stream {
    #[inline]
    fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => s.read(buf),
        }
    }

    #[inline]
    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => s.readv(buf),
        }
    }
}

impl CancelableAsyncReadRent for Stream {
    #[inline]
    fn cancelable_read<T: IoBufMut>(&mut self, buf: T, c: CancelHandle) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => s.cancelable_read(buf, c),
        }
    }

    #[inline]
    fn cancelable_readv<T: IoVecBufMut>(
        &mut self,
        buf: T,
        c: CancelHandle,
    ) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => s.cancelable_readv(buf, c),
        }
    }
}

impl AsyncWriteRent for Stream {
    #[inline]
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => s.write(buf),
        }
    }

    #[inline]
    fn writev<T: IoVecBuf>(&mut self, buf_vec: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            Stream::Plain(s) => s.writev(buf_vec),
        }
    }

    #[inline]
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> {
        match self {
            Stream::Plain(s) => s.flush(),
        }
    }

    #[inline]
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        match self {
            Stream::Plain(s) => s.shutdown(),
        }
    }
}
