//! Listener sockets: one SO_REUSEPORT socket per worker per `[[listener]]`, bound up front on the
//! main thread so a busy port fails the start, not a worker.
//!
//! Port 0 (tests): the first socket gets an ephemeral port and every other worker binds that same
//! port, so all workers serve one address.
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel accept backlog per socket.
const BACKLOG: i32 = 4096;

/// Binds `workers` sockets for each address. Returns `[worker][listener]` sockets and the bound
/// address of each listener.
pub fn bind_all(addrs: &[SocketAddr], workers: usize) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::with_capacity(addrs.len())).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let first = bind_one(addr).map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
        let actual = first.local_addr()?;
        bound.push(actual);
        per_worker[0].push(first);
        for sockets in per_worker.iter_mut().skip(1) {
            sockets.push(bind_one(actual).map_err(|e| io::Error::new(e.kind(), format!("bind {actual}: {e}")))?);
        }
    }
    Ok((per_worker, bound))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Takes one connection already queued on the (non-blocking) listening socket `fd`: `Ok(None)`
/// when none is (or it vanished before being taken). The accepted socket is in blocking mode, as
/// monoio's io_uring driver expects.
pub fn accept_queued(fd: std::os::fd::RawFd) -> io::Result<Option<(std::net::TcpStream, std::net::SocketAddr)>> {
    use std::os::fd::FromRawFd;
    loop {
        // SAFETY: accept4(2) on a listening socket; null address pointers are allowed.
        let c = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
        if c < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(None),
                // the connection was reset while queued: try the next one
                Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO) => continue,
                _ => Err(e),
            };
        }
        // SAFETY: `c` is a descriptor accept4 just created; nothing else owns it.
        let stream = unsafe { std::net::TcpStream::from_raw_fd(c) };
        match stream.peer_addr() {
            Ok(peer) => return Ok(Some((stream, peer))),
            Err(_) => continue, // gone already
        }
    }
}

/// `shutdown(fd, SHUT_RDWR)`: pending reads on the socket return EOF. Used on idle client
/// connections when a worker stops.
pub fn shutdown_fd(fd: std::os::fd::RawFd) {
    // SAFETY: shutdown(2) on a descriptor the caller registered as an open socket; it neither
    // closes nor invalidates the descriptor.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// A duplicate of the descriptor `fd` (a listening socket handed to an upgrading process).
pub fn dup_fd(fd: std::os::fd::RawFd) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: the caller's socket owns `fd` and outlives this call
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// Takes ownership of descriptors received from another process.
pub fn own_received(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was just received over SCM_RIGHTS: a new descriptor nothing else owns
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// The listening sockets for `listeners`: for each listener, the sockets inherited for it by
/// name and address (a binary upgrade; worker `i` takes inherited socket `i mod n`), else new
/// SO_REUSEPORT sockets. Returns `[worker][listener]` sockets and the bound addresses.
pub fn bind_or_inherit(
    listeners: &[crate::config::ListenerConfig],
    workers: usize,
    inherited: &[super::upgrade::Inherited],
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::with_capacity(listeners.len())).collect();
    let mut bound = Vec::with_capacity(listeners.len());
    for l in listeners {
        match inherited.iter().find(|h| h.name == l.name && h.configured == l.addr && !h.sockets.is_empty()) {
            Some(h) => {
                bound.push(h.bound);
                for (w, sockets) in per_worker.iter_mut().enumerate() {
                    let fd = h.sockets[w % h.sockets.len()].try_clone()?;
                    sockets.push(TcpListener::from(fd));
                }
            }
            None => {
                let (mut s, b) = bind_all(&[l.addr], workers)?;
                bound.push(b[0]);
                for (sockets, mut mine) in per_worker.iter_mut().zip(s.drain(..)) {
                    sockets.push(mine.pop().expect("one socket per worker"));
                }
            }
        }
    }
    Ok((per_worker, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_every_worker_the_same_port() {
        let (socks, bound) = bind_all(&["127.0.0.1:0".parse().unwrap()], 3).unwrap();
        assert_ne!(bound[0].port(), 0);
        for w in &socks {
            assert_eq!(w[0].local_addr().unwrap(), bound[0]);
        }
    }
}
