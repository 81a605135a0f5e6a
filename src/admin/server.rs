//! The admin HTTP/1.1 server: an accept thread hands each connection to its own short-lived
//! thread, so a slow scraper or idle connections never delay a load balancer's `/healthz`.
//!
//! Per connection: one request, a deadline for the whole head ([`HEAD_DEADLINE`]), a write
//! timeout, `Connection: close`. At most [`MAX_CONNECTIONS`] are served at once; past that a
//! connection gets 503 from the accept thread and is closed. `/healthz` takes no lock; the other
//! endpoints share the admin state behind one mutex (a scrape is the slow part, and scrapes are
//! serialised on purpose: two concurrent scrapes would only ask the workers twice).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::handlers::{handle, AdminState, Reply};

/// Largest admin request head accepted.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Largest admin request body (a config for `PUT /config`).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Time allowed for a whole request head to arrive.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Time allowed for writing a response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// The running admin thread.
pub struct AdminHandle {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The listening socket, to end the blocking accept.
    listener: TcpListener,
}

impl AdminHandle {
    /// Stops accepting and joins the accept thread (connection threads end by their deadlines).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wakes the blocking accept (a connection would not do: with SO_REUSEPORT it may land
        // on another process's admin socket during an upgrade)
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What every connection thread shares.
struct Shared {
    state: Mutex<AdminState>,
    active: AtomicUsize,
    draining: Arc<AtomicBool>,
    /// For `POST /reload`, served outside the state lock so concurrent requests coalesce into
    /// one reload.
    reloader: Option<Arc<crate::runtime::Reloader>>,
}

/// The admin socket, with SO_REUSEPORT so a process taking over in a binary upgrade can bind it
/// while this one still serves.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// Binds `addr` and serves admin requests from new threads. `draining` turns `/healthz` into
/// 503 `draining` (set during the drain delay on shutdown).
pub fn start(addr: SocketAddr, state: AdminState, draining: Arc<AtomicBool>) -> io::Result<AdminHandle> {
    let listener = bind(addr).map_err(|e| io::Error::new(e.kind(), format!("admin bind {addr}: {e}")))?;
    let addr = listener.local_addr()?;
    let handle_listener = listener.try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let reloader = state.reloader.clone();
    let shared = Arc::new(Shared { state: Mutex::new(state), active: AtomicUsize::new(0), draining, reloader });
    let thread = std::thread::Builder::new().name("ringway-admin".into()).spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut stream) = conn else { continue };
            if shared.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                shared.active.fetch_sub(1, Ordering::SeqCst);
                let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = write_reply(&mut stream, &Reply::text(503, "too many admin connections\n"), false);
                continue;
            }
            let shared = shared.clone();
            let spawned = std::thread::Builder::new().name("ringway-admin-conn".into()).spawn(move || {
                if let Err(e) = serve(stream, &shared) {
                    tracing::debug!(error = %e, "Admin request failed");
                }
                shared.active.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "Could not start an admin connection thread");
            }
        }
    })?;
    Ok(AdminHandle { addr, stop, thread: Some(thread), listener: handle_listener })
}

fn serve(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 4096];
    let (method, target, authorization, body_len, head_len) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return write_reply(&mut stream, &Reply::text(408, "request head timeout\n"), false);
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut tmp) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return write_reply(&mut stream, &Reply::text(408, "request head timeout\n"), false)
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let field = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let body_len = match field("content-length").map(|v| v.trim().parse::<usize>()) {
                    None => 0,
                    Some(Ok(n)) if n <= MAX_BODY_BYTES => n,
                    Some(Ok(_)) => return write_reply(&mut stream, &Reply::text(413, "body too large\n"), false),
                    Some(Err(_)) => return write_reply(&mut stream, &Reply::text(400, "bad content-length\n"), false),
                };
                let (m, t) = (req.method.unwrap_or_default().to_string(), req.path.unwrap_or_default().to_string());
                break (m, t, field("authorization"), body_len, n);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_BYTES => continue,
            _ => return write_reply(&mut stream, &Reply::text(400, "bad request\n"), false),
        }
    };
    // the body (PUT /config), within the same deadline
    let mut body = buf.split_off(head_len.min(buf.len()));
    while body.len() < body_len {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return write_reply(&mut stream, &Reply::text(408, "request body timeout\n"), false);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut tmp) {
            Ok(0) => return Ok(()),
            Ok(n) => body.extend_from_slice(&tmp[..n]),
            Err(_) => return write_reply(&mut stream, &Reply::text(408, "request body timeout\n"), false),
        }
    }
    body.truncate(body_len);
    // HEAD is answered like GET, without the body
    let head_only = method == "HEAD";
    let method = if head_only { "GET" } else { method.as_str() };
    let path = target.split('?').next().unwrap_or_default();
    let reply = if method == "GET" && path == "/healthz" {
        // a load balancer's probe: never behind a scrape, never behind the state lock
        match shared.draining.load(Ordering::SeqCst) {
            true => Reply::text(503, "draining\n"),
            false => Reply::text(200, "ok\n"),
        }
    } else if let (Some(r), "POST", "/reload") = (&shared.reloader, method, path) {
        super::handlers::reload(r, authorization.as_deref())
    } else {
        let mut state = shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let req =
            super::handlers::Request { method, target: &target, authorization: authorization.as_deref(), body: &body };
        handle(&mut state, &req)
    };
    write_reply(&mut stream, &reply, head_only)
}

fn write_reply(stream: &mut TcpStream, r: &Reply, head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        r.status,
        crate::http::reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&r.body)?;
    }
    stream.flush()
}
