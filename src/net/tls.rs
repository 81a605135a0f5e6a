//! TLS over a monoio TCP stream: rustls's record layer driven with buffers ringway owns.
//!
//! This replaced monoio-rustls 0.4 on the data path (bench/RESULTS.md §38). That crate holds two
//! 16 KiB record buffers for a connection's whole life, and its reads cannot be cancelled (a
//! dropped read loses the ciphertext in its private buffer), so an idle HTTPS keep-alive
//! connection cost ~61 KiB and could not park. Here:
//! - ciphertext is read into `rx`, which is given up when the connection parks
//!   ([`Tls::release`]). Every byte read is handed to rustls before a read goes back to the
//!   socket, so when a read waits on the socket nothing sits in a buffer rustls cannot see;
//! - a cancelled read (`CancelHandle`, the keep-alive wait) gets its buffer back with whatever
//!   the kernel had read, and rustls takes it: nothing is lost, so TLS connections park like
//!   plain ones;
//! - a write encrypts the caller's slice and sends all its records in one socket write.
//!
//! Reads and writes keep separate state (`rx`, `tx`, one busy flag each) and touch the rustls
//! connection only between awaits, so the two halves of a split stream (the tunnel, HTTP/2) may
//! run at once. A read or write dropped while its socket operation is in flight (a timeout) loses
//! its buffer and whatever it held: the stream remembers that and fails every later operation in
//! that direction.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent};
use monoio::net::TcpStream;
use monoio::BufResult;

/// Room for one TLS record (16 KiB of plaintext plus header and AEAD overhead) per socket read.
const RX_BYTES: usize = 16 * 1024 + 512;

/// A TLS connection (server or client side) and what its handshake settled.
pub struct Tls {
    tcp: TcpStream,
    conn: rustls::Connection,
    /// Ciphertext read from the socket and not yet taken by rustls: `rx[rx_pos..]`.
    rx: Vec<u8>,
    rx_pos: usize,
    /// Records being written (kept between writes for its capacity).
    tx: Vec<u8>,
    /// A read (write) is in flight, or was dropped in flight: see the module comment.
    read_busy: bool,
    write_busy: bool,
    pub version: Option<rustls::ProtocolVersion>,
    /// The SNI name the client sent (server side).
    pub server_name: Option<Box<str>>,
    /// ALPN settled on HTTP/2 (server side).
    pub h2: bool,
}

impl Tls {
    /// A server connection whose handshake `tls::handshake` finished (application data that
    /// came with the last flight is already inside `conn`).
    pub(crate) fn server(tcp: TcpStream, conn: rustls::ServerConnection) -> Self {
        let server_name = conn.server_name().map(Box::from);
        let h2 = conn.alpn_protocol() == Some(b"h2");
        Self::new(tcp, rustls::Connection::Server(conn), server_name, h2)
    }

    pub(crate) fn client(tcp: TcpStream, conn: rustls::ClientConnection) -> Self {
        Self::new(tcp, rustls::Connection::Client(conn), None, false)
    }

    fn new(tcp: TcpStream, conn: rustls::Connection, server_name: Option<Box<str>>, h2: bool) -> Self {
        let version = conn.protocol_version();
        let (rx, tx) = (Vec::new(), Vec::new());
        Self { tcp, conn, rx, rx_pos: 0, tx, read_busy: false, write_busy: false, version, server_name, h2 }
    }

    /// Reads plaintext into `buf`'s free space: 0 once the peer sent close_notify;
    /// `UnexpectedEof` when the socket closed without it. With `cancel`, the socket read can be
    /// cancelled; the read then fails with nothing lost (what the kernel had read is in rustls).
    pub(crate) async fn read<T: IoBufMut>(&mut self, mut buf: T, cancel: Option<CancelHandle>) -> BufResult<usize, T> {
        if self.read_busy {
            return (Err(lost()), buf);
        }
        self.read_busy = true;
        let (ptr, len) = (buf.write_ptr(), buf.bytes_total());
        let r = self.read_into(ptr, len, cancel).await;
        self.read_busy = false;
        if let Ok(n) = r {
            // SAFETY: `read_into` initialised `n` bytes from the start of the free space
            unsafe { buf.set_init(n) };
        }
        (r, buf)
    }

    async fn read_into(&mut self, dst: *mut u8, len: usize, cancel: Option<CancelHandle>) -> io::Result<usize> {
        loop {
            // SAFETY: `dst` is the free space (`len` bytes) of the buffer the caller's future owns
            let out = unsafe { std::slice::from_raw_parts_mut(dst, len) };
            match self.conn.reader().read(out) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.rx_pos < self.rx.len() {
                self.take_records()?;
                continue;
            }
            let mut rx = std::mem::take(&mut self.rx);
            rx.clear();
            self.rx_pos = 0;
            rx.reserve(RX_BYTES);
            let (res, rx) = match &cancel {
                Some(c) => self.tcp.cancelable_read(rx, c.clone()).await,
                None => self.tcp.read(rx).await,
            };
            self.rx = rx;
            match res? {
                // the peer closed: rustls decides whether that was clean (close_notify seen)
                0 => drop(self.conn.read_tls(&mut io::empty())),
                _ => self.take_records()?,
            }
        }
    }

    /// Hands buffered ciphertext to rustls, up to the first record that yields plaintext (so
    /// rustls's plaintext buffer never fills); protocol errors send rustls's alert if they can.
    fn take_records(&mut self) -> io::Result<()> {
        while self.rx_pos < self.rx.len() {
            let n = self.conn.read_tls(&mut &self.rx[self.rx_pos..])?;
            self.rx_pos += n;
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    self.send_pending_now();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            };
            if n == 0 || state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
                break;
            }
        }
        if self.rx_pos == self.rx.len() {
            self.rx.clear();
            self.rx_pos = 0;
        }
        Ok(())
    }

    /// Encrypts as much of `buf` as rustls takes (all of it up to 64 KiB) and sends the records.
    pub(crate) async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.write_busy {
            return (Err(lost()), buf);
        }
        self.write_busy = true;
        // SAFETY: the buffer's first `bytes_init` bytes are initialised and it outlives the call
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let r = match self.conn.writer().write(src) {
            Ok(n) => self.send_records().await.map(|()| n),
            Err(e) => Err(e),
        };
        self.write_busy = false;
        (r, buf)
    }

    /// Sends whatever records rustls has queued.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.write_busy {
            return Err(lost());
        }
        self.write_busy = true;
        let r = self.send_records().await;
        self.write_busy = false;
        r
    }

    /// Sends close_notify and shuts the TCP write side.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        if self.write_busy {
            return Err(lost());
        }
        self.write_busy = true;
        self.conn.send_close_notify();
        let r = match self.send_records().await {
            Ok(()) => self.tcp.shutdown().await,
            Err(e) => Err(e),
        };
        self.write_busy = false;
        r
    }

    async fn send_records(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut tx = std::mem::take(&mut self.tx);
            tx.clear();
            while self.conn.wants_write() {
                self.conn.write_tls(&mut tx)?;
            }
            let (res, tx) = self.tcp.write_all(tx).await;
            self.tx = tx;
            res?;
        }
        Ok(())
    }

    /// Sends queued records (an alert, close_notify) with one non-blocking `send(2)`, without
    /// waiting: for a connection about to close or park, whose socket buffer is empty. False
    /// when they did not all go (the stream is then unusable for writing).
    fn send_pending_now(&mut self) -> bool {
        if self.write_busy {
            return false;
        }
        if !self.conn.wants_write() {
            return true;
        }
        let mut out = Vec::new();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut out).is_err() {
                return false;
            }
        }
        // SAFETY: send(2) reads at most `out.len()` bytes from `out`
        let n =
            unsafe { libc::send(self.fd(), out.as_ptr().cast(), out.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        let sent = n >= 0 && n as usize == out.len();
        self.write_busy = !sent;
        sent
    }

    /// Sends close_notify if it fits the socket now (a parked connection closed at its deadline
    /// or by a stopping worker: an idle socket has room).
    pub(crate) fn close_now(&mut self) {
        self.conn.send_close_notify();
        self.send_pending_now();
    }

    /// Gives up the buffers of an idle connection (it is about to park): the socket read buffer,
    /// the write buffer, and rustls's own read buffer down to its 4 KiB floor. False when the
    /// connection is not idle (an operation in flight, ciphertext not yet taken, records that
    /// could not be sent now): it must not park then.
    pub(crate) fn release(&mut self) -> bool {
        if self.read_busy || self.rx_pos < self.rx.len() || !self.send_pending_now() {
            return false;
        }
        self.rx = Vec::new();
        self.rx_pos = 0;
        self.tx = Vec::new();
        // rustls sizes its read buffer for the next read before reading, shrinking it when it is
        // empty; a source that has nothing (`WouldBlock`) gets exactly that done and nothing else
        let _ = self.conn.read_tls(&mut Nothing);
        true
    }

    /// Whether input is held above the socket: ciphertext not yet taken by rustls, or plaintext
    /// not yet read. A connection holding any is not reused (pooled upstream connections): the
    /// socket checks at checkout cannot see it.
    pub(crate) fn buffered(&mut self) -> bool {
        self.rx_pos < self.rx.len() || self.conn.process_new_packets().map_or(true, |s| s.plaintext_bytes_to_read() > 0)
    }

    /// Waits until the socket is readable (what rustls holds is the caller's to check first).
    pub(crate) async fn socket_readable(&self) -> io::Result<()> {
        self.tcp.readable(false).await
    }

    fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl AsRawFd for Tls {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

/// A byte source with nothing to give yet.
struct Nothing;

impl Read for Nothing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

fn lost() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "TLS stream unusable after an interrupted operation")
}
