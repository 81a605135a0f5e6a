//! Dialing upstreams from a chosen source (egress) IP, and a cheap liveness check for pooled
//! connections.
//!
//! monoio has no bind-before-connect API, so we build the socket with socket2: optional
//! `IP_BIND_ADDRESS_NO_PORT` + bind(egress_ip:0), non-blocking connect, hand the fd to monoio, wait
//! for writability under the connect timeout, then read `SO_ERROR`. monoio's own sockets are
//! blocking-mode under io_uring and non-blocking under the legacy driver; we match that.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use monoio::net::TcpStream;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Connects to `addr` from `source` (if any) within `timeout`.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = source {
        set_bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(ip, 0).into()).map_err(|e| with_source(e, ip))?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let legacy = monoio::utils::is_legacy();
    let std_stream: std::net::TcpStream = socket.into();
    let stream = TcpStream::from_std(std_stream)?;
    match monoio::time::timeout(timeout, stream.writable(false)).await {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
    with_sock(&stream, |sock| {
        if let Some(e) = sock.take_error()? {
            return Err(e);
        }
        if !legacy {
            sock.set_nonblocking(false)?;
        }
        sock.set_nodelay(true)
    })?;
    Ok(stream)
}

/// What one non-blocking `MSG_PEEK` says about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Open, nothing to read.
    Idle,
    /// Open with unread bytes.
    Pending,
    /// Closed or reset by the peer.
    Closed,
    /// The peek was interrupted: nothing is known.
    Unknown,
}

/// Peeks at a connection without consuming anything (one syscall).
pub fn peer_state(stream: &impl AsRawFd) -> PeerState {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    with_sock(stream, |sock| match sock.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(0) => PeerState::Closed,
        Ok(_) => PeerState::Pending,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => PeerState::Idle,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => PeerState::Unknown,
        Err(_) => PeerState::Closed,
    })
}

/// True when nothing is waiting on the connection: no byte, no FIN, no error. One `poll(2)` with
/// a zero timeout (lockless in the kernel: ~15% cheaper here than a `MSG_PEEK` recv, 330 vs
/// 410 ns); interrupted or failed polls count as not quiet.
pub fn peer_quiet(stream: &impl AsRawFd) -> bool {
    let mut p = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, owned by this frame; the fd is borrowed from `stream`.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 0
}

/// Whether the peer of the socket `fd` has closed or reset it (TCP state past ESTABLISHED), without
/// reading anything: a client that leaves while its unread upload still sits in our receive buffer
/// is seen too. One `getsockopt` call; used only while an exchange is stalled.
pub fn peer_gone(fd: std::os::fd::RawFd) -> bool {
    if fd < 0 {
        return false; // not a socket (the tests' in-memory streams)
    }
    // SAFETY: the caller owns a live socket with this fd for the duration of the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info points to a tcp_info of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len)
    };
    if rc != 0 {
        return true;
    }
    // SAFETY: zero-initialised and filled by the kernel.
    let state = unsafe { info.assume_init() }.tcpi_state;
    state != TCP_ESTABLISHED
}

/// `TCP_ESTABLISHED` from linux/tcp_states.h (libc does not export the enum).
const TCP_ESTABLISHED: u8 = 1;

/// Makes closing `stream` send a reset instead of a FIN: an aborted upload's unsent bytes would
/// otherwise hold the FIN back for as long as the peer's window stays closed.
pub fn reset_on_close(stream: &impl AsRawFd) {
    let _ = with_sock(stream, |sock| sock.set_linger(Some(Duration::ZERO)));
}

/// Runs `f` with socket2's view of the stream's fd (for options monoio does not expose).
pub(crate) fn with_sock<R>(stream: &impl AsRawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: the fd is owned by `stream`, which is borrowed for the whole call.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    f(SockRef::from(&fd))
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    if socket.domain()? != Domain::IPV4 {
        return Ok(());
    }
    let one: libc::c_int = 1;
    // SAFETY: valid fd, option value points to a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn with_source(e: io::Error, ip: IpAddr) -> io::Error {
    io::Error::new(e.kind(), format!("bind egress IP {ip}: {e}"))
}
