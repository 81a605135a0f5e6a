//! The transport seam: one stream type for every connection the gateway holds (client
//! connections, upstream connections, the body pump and the tunnel): plain TCP, or TLS over TCP
//! (rustls's record layer driven by [`Tls`]; the handshake is `tls::handshake`'s).
//!
//! Plain reads and writes forward to the TCP stream's own futures (no extra state on the request
//! path). TLS operations are boxed futures: their state is paid for by TLS connections only.
//!
//! Unsafe code here: the `Split` marker, monoio's raw-buffer views for TLS `readv`/`writev`, and
//! the direct `recv(2)` and `send(2)` ([`Stream::recv_now`], [`Stream::send_now`]).
#![allow(unsafe_code)]

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelHandle, CancelableAsyncReadRent};
use monoio::net::TcpStream;
use monoio::BufResult;

/// A connection's byte stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<Tls>),
    /// One HTTP/2 stream, seen as a connection carrying one HTTP/1.1 request (`http2::bridge`).
    H2(Box<crate::http2::StreamIo>),
    /// Scripted reads and recorded writes, for driver tests without sockets.
    #[cfg(test)]
    Memory(Box<memory::MemoryIo>),
}

#[cfg(test)]
pub mod memory;
mod tls;

pub use tls::Tls;

/// An HTTP/2 stream's read into a monoio buffer.
async fn h2_read<T: IoBufMut>(h: &mut crate::http2::StreamIo, mut buf: T) -> BufResult<usize, T> {
    // SAFETY: the slice is the buffer's free space; `set_init` covers only what was written
    let dst = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
    let n = Box::pin(h.read(dst)).await;
    if let Ok(n) = n {
        // SAFETY: `n` bytes were just written from the start of the free space
        unsafe { buf.set_init(n) };
    }
    (n, buf)
}

impl Stream {
    /// The scheme spoken on this stream (`X-Forwarded-Proto`).
    pub fn scheme(&self) -> &'static str {
        match self {
            Stream::Tls(_) => "https",
            _ => "http",
        }
    }

    /// The TLS side of the connection, if it has one.
    pub fn tls(&self) -> Option<&Tls> {
        match self {
            Stream::Tls(t) => Some(t),
            _ => None,
        }
    }

    /// Whether a read in flight can be cancelled with nothing lost (plain TCP and TLS); an
    /// HTTP/2 stream's reads are dropped instead.
    pub fn cancellable_reads(&self) -> bool {
        matches!(self, Stream::Plain(_) | Stream::Tls(_))
    }

    /// Readies an idle connection for the parking lot: a TLS connection gives up its buffers
    /// ([`Tls::release`]). False when it cannot park (it is closed instead).
    pub fn release(&mut self) -> bool {
        match self {
            Stream::Plain(_) => true,
            Stream::Tls(t) => t.release(),
            _ => false,
        }
    }

    /// Whether input is held above the socket (TLS: [`Tls::buffered`]).
    pub fn buffered(&mut self) -> bool {
        match self {
            Stream::Tls(t) => t.buffered(),
            _ => false,
        }
    }

    /// A parked connection's last words before its socket closes: close_notify on TLS, if it
    /// fits the socket now.
    pub fn close_now(&mut self) {
        if let Stream::Tls(t) = self {
            t.close_now();
        }
    }

    /// A read that never waits, on the io_uring driver and plain TCP only: one `recv(2)` with
    /// `MSG_DONTWAIT` appending at most `max` bytes to `buf`'s spare capacity. `WouldBlock` when
    /// nothing is there, or for any other stream or driver (whose reads already try the socket
    /// first). On io_uring a ring read completes a loop turn later; where bytes are almost
    /// certainly waiting (a fresh connection's first read, a parked connection that just turned
    /// readable) this saves that turn (bench/RESULTS.md §26).
    pub fn recv_now(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let Stream::Plain(s) = self else { return Err(io::ErrorKind::WouldBlock.into()) };
        if monoio::utils::is_legacy() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let room = buf.spare_capacity_mut();
        let want = room.len().min(max);
        // SAFETY: recv(2) writes at most `want` bytes into `room`, which is that large.
        let n = unsafe { libc::recv(s.as_raw_fd(), room.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel initialised the `n` bytes it reported, all within the spare capacity.
        unsafe { buf.set_len(buf.len() + n as usize) };
        Ok(n as usize)
    }

    /// A write that never waits, on the epoll driver and plain TCP only: one `send(2)` with
    /// `MSG_DONTWAIT` of as much of `buf` as the socket buffer takes now. `WouldBlock` when it is
    /// full, or for any other stream or driver. On epoll a write that fits then needs no runtime
    /// operation and no write timer. Not on io_uring: there the ring's batched send is cheaper
    /// than a direct one (+3% to +25% CPU per request when tried, bench/RESULTS.md §35).
    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        let Stream::Plain(s) = self else { return Err(io::ErrorKind::WouldBlock.into()) };
        if !monoio::utils::is_legacy() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // SAFETY: send(2) reads at most `buf.len()` bytes from `buf`.
        let n = unsafe {
            libc::send(s.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Waits until the socket is readable (bytes, FIN or an error). `None` for TLS streams: their
    /// socket belongs to the TLS layer; callers poll the socket's state instead.
    pub fn readable(&self, relaxed: bool) -> Option<impl Future<Output = io::Result<()>> + '_> {
        match self {
            Stream::Plain(s) => Some(s.readable(relaxed)),
            _ => None,
        }
    }

    /// Waits until the socket itself is readable, TLS or not: for a connection whose reads run
    /// through its own state (HTTP/2's `ConnIo`), which knows what TLS holds above the socket.
    pub async fn socket_readable(&self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.readable(false).await,
            Stream::Tls(t) => t.socket_readable().await,
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// Whether the peer has gone: closed or reset the connection (one `getsockopt`), or for an
    /// HTTP/2 stream, reset the stream.
    pub fn gone(&self) -> bool {
        match self {
            Stream::H2(h) => h.gone(),
            s => crate::upstream::peer_gone(s.as_raw_fd()),
        }
    }

    /// Splits into owned halves for a byte relay (the tunnel).
    pub fn into_split(self) -> (monoio::io::OwnedReadHalf<Stream>, monoio::io::OwnedWriteHalf<Stream>) {
        monoio::io::Splitable::into_split(self)
    }
}

// SAFETY: `Split` promises that reads and writes may run concurrently on the two halves. Both
// variants keep that promise: monoio implements `Split` for `TcpStream`, and `Tls` keeps its read
// and write state apart (buffers and busy flags one per direction; the rustls connection is
// touched only between awaits).
unsafe impl monoio::io::Split for Stream {}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Plain(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.as_raw_fd(),
            Stream::H2(_) => -1,
            #[cfg(test)]
            Stream::Memory(_) => -1,
        }
    }
}

impl AsyncReadRent for Stream {
    #[inline]
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(t) => Box::pin(t.read(buf, None)).await,
            Stream::H2(h) => h2_read(h, buf).await,
            #[cfg(test)]
            Stream::Memory(m) => m.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.readv(buf).await,
            Stream::H2(_) => (Err(io::Error::from(io::ErrorKind::Unsupported)), buf),
            #[cfg(test)]
            Stream::Memory(_) => (Err(io::Error::from(io::ErrorKind::Unsupported)), buf),
            Stream::Tls(t) => {
                // SAFETY: the raw buffer points into `buf`, which outlives the read
                let raw = unsafe { RawBuf::new_from_iovec_mut(&mut buf) };
                let n = match raw {
                    Some(raw) => Box::pin(t.read(raw, None)).await.0,
                    None => Ok(0),
                };
                if let Ok(n) = n {
                    // SAFETY: the read initialised `n` bytes of the first buffer
                    unsafe { buf.set_init(n) };
                }
                (n, buf)
            }
        }
    }
}

impl CancelableAsyncReadRent for Stream {
    /// An HTTP/2 stream's reads cannot be cancelled: the handle is ignored there.
    async fn cancelable_read<T: IoBufMut>(&mut self, buf: T, c: CancelHandle) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.cancelable_read(buf, c).await,
            Stream::Tls(t) => Box::pin(t.read(buf, Some(c))).await,
            Stream::H2(h) => h2_read(h, buf).await,
            #[cfg(test)]
            Stream::Memory(m) => m.read(buf).await,
        }
    }

    async fn cancelable_readv<T: IoVecBufMut>(&mut self, buf: T, c: CancelHandle) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.cancelable_readv(buf, c).await,
            _ => self.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    #[inline]
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(t) => Box::pin(t.write(buf)).await,
            Stream::H2(h) => {
                // SAFETY: the buffer's first `bytes_init` bytes are initialised
                let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
                let n = Box::pin(h.write(src)).await;
                (n, buf)
            }
            #[cfg(test)]
            Stream::Memory(m) => m.write(buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf_vec: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.writev(buf_vec).await,
            Stream::H2(_) => (Err(io::Error::from(io::ErrorKind::Unsupported)), buf_vec),
            #[cfg(test)]
            Stream::Memory(_) => (Err(io::Error::from(io::ErrorKind::Unsupported)), buf_vec),
            Stream::Tls(t) => {
                // TLS frames one buffer at a time: write the first non-empty one
                // SAFETY: the raw buffer points into `buf_vec`, which outlives the write
                let raw = unsafe { RawBuf::new_from_iovec(&buf_vec) };
                let n = match raw {
                    Some(raw) => Box::pin(t.write(raw)).await.0,
                    None => Ok(0),
                };
                (n, buf_vec)
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(t) => t.flush().await,
            Stream::H2(_) => Ok(()),
            #[cfg(test)]
            Stream::Memory(_) => Ok(()),
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(t) => t.shutdown().await,
            Stream::H2(_) => Ok(()), // the stream ends with its response
            #[cfg(test)]
            Stream::Memory(m) => {
                m.shut = true;
                Ok(())
            }
        }
    }
}
