//! Integration-test harness: an in-process gateway, a scriptable HTTP/1.1 test origin on real
//! loopback sockets, and raw clients that read in loops (one read is one segment, never a message).
//!
//! No fixed ports (everything binds port 0), no sleeps to wait for state.
#![allow(dead_code)]

pub mod bin;
pub mod dns;
pub mod redis;
pub mod tls;
pub mod waf;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// I/O driver under test: `RINGWAY_TEST_DRIVER=legacy|io_uring|auto` (scripts/test.sh runs both).
pub fn driver() -> String {
    std::env::var("RINGWAY_TEST_DRIVER").unwrap_or_else(|_| "io_uring".into())
}

/// `RINGWAY_TEST_TLS=1`: test gateways listen with HTTPS (a test certificate for `localhost` and
/// 127.0.0.1) and [`Wire::connect`] speaks TLS to them, so wire-level suites run over TLS too.
pub fn tls_mode() -> bool {
    std::env::var("RINGWAY_TEST_TLS").is_ok_and(|v| v == "1")
}

/// Client TLS configs for the gateways started in TLS mode, by listener address.
static TLS_CLIENTS: Mutex<Vec<(SocketAddr, Arc<rustls::ClientConfig>)>> = Mutex::new(Vec::new());

/// A gateway running in this process with 2 workers, stopped on drop.
pub struct TestGateway {
    pub addr: SocketAddr,
    /// Admin address when the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    pub running: Option<ringway::runtime::Running>,
    /// TLS mode: the certificate files.
    _certs: Option<tls::TempDir>,
}

impl TestGateway {
    /// Starts a gateway from TOML (without `[instance]`; the harness adds it) on 127.0.0.1:0.
    pub fn start(body: &str) -> Self {
        Self::start_with_instance(body, "")
    }

    /// Same, with extra `[instance]` keys.
    pub fn start_with_instance(body: &str, instance_extra: &str) -> Self {
        Self::start_with_workers(body, instance_extra, 2)
    }

    /// Same, with a given number of workers.
    pub fn start_with_workers(body: &str, instance_extra: &str, workers: usize) -> Self {
        let (certs, client, tls_keys) = match tls_mode() {
            false => (None, None, String::new()),
            true => {
                let dir = tls::TempDir::new("gw-tls");
                let ca = tls::Ca::new("harness CA");
                let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], false).write(&dir, "gw");
                let keys = format!("\n[[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display());
                (Some(dir), Some(tls::ClientOpts::trusting(&ca).config()), keys)
            }
        };
        let text = format!(
            "[instance]\nworkers = {workers}\nio_driver = \"{}\"\ndrain_timeout_ms = 5000\n{instance_extra}\n\n[[listener]]\nlisten = \"127.0.0.1:0\"\n{tls_keys}\n{body}",
            driver()
        );
        let snapshot = ringway::config::compile(&text, 1).unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let running = ringway::start(Arc::new(snapshot)).expect("gateway starts");
        let addr = running.addrs[0];
        if let Some(c) = client {
            // a port reused from an earlier (stopped) gateway must not keep that one's CA
            let mut clients = TLS_CLIENTS.lock().unwrap();
            clients.retain(|(a, _)| *a != addr);
            clients.push((addr, c));
        }
        Self { addr, admin: running.admin_addr, running: Some(running), _certs: certs }
    }

    /// Shuts down (drain) and waits for the workers.
    pub fn stop(&mut self) {
        // only on the first call: a later one (the drop after an explicit stop) could remove the
        // entry of another gateway that has taken the port since
        if self._certs.is_some() && self.running.is_some() {
            TLS_CLIENTS.lock().unwrap_or_else(|e| e.into_inner()).retain(|(a, _)| *a != self.addr);
        }
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.join();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request as the test origin saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub body_len: u64,
    pub chunked: bool,
    pub peer: SocketAddr,
    /// Index of the origin connection it arrived on.
    pub conn: usize,
    /// When its head was complete.
    pub at: std::time::Instant,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the test origin does for one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A framed response (Content-Length added).
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Bytes written as-is; the connection stays open.
    Raw(Vec<u8>),
    /// Bytes written as-is, then the connection closes.
    RawThenClose(Vec<u8>),
    /// A chunked response with these chunks.
    Chunked(Vec<Vec<u8>>),
    /// `len` generated bytes with Content-Length, written in 64 KiB pieces.
    Large(u64),
    /// Wait, then reply.
    Delay(Duration, Box<Reply>),
    /// Close without answering.
    Close,
    /// Pieces written one after another, each after its delay; then the connection stays open
    /// (an origin that sends stray bytes after a response ended).
    Sequence(Vec<(Duration, Vec<u8>)>),
    /// Pieces as in `Sequence`, then the connection closes.
    SequenceThenClose(Vec<(Duration, Vec<u8>)>),
}

impl Reply {
    pub fn ok(body: &str) -> Self {
        Reply::Full { status: 200, headers: vec![], body: body.as_bytes().to_vec() }
    }

    pub fn status(status: u16, body: &str) -> Self {
        Reply::Full { status, headers: vec![], body: body.as_bytes().to_vec() }
    }
}

type Handler = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

/// A test origin: HTTP/1.1 over std sockets, one thread per connection, records what it sees.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    pub connections: Arc<AtomicUsize>,
    /// Replies written to the end (every piece of a `Sequence` included).
    written: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl MockUpstream {
    /// Answers every request with `handler`.
    pub fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0", handler)
    }

    pub fn start_on(bind: &str, handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind(bind).expect("bind origin");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, c, st, w) = (seen.clone(), connections.clone(), stop.clone(), written.clone());
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let idx = c.fetch_add(1, Ordering::SeqCst);
                        let (s, h, st, w) = (s.clone(), handler.clone(), st.clone(), w.clone());
                        thread::spawn(move || serve_origin_conn(stream, peer, idx, &s, &*h, &st, &w));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { addr, seen, connections, written, stop }
    }

    /// Echoes method, target and body length in the body.
    pub fn echo() -> Self {
        Self::start(|r| Reply::ok(&format!("{} {} {}", r.method, r.target, r.body_len)))
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Replies the origin has finished writing (a `Sequence` counts once its last piece is out).
    pub fn replies_written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_origin_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    conn: usize,
    seen: &Mutex<Vec<SeenRequest>>,
    handler: &Handler,
    stop: &AtomicBool,
    written: &AtomicUsize,
) {
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut buf: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let req = match read_origin_request(&mut stream, &mut buf, peer, conn, stop) {
            Some(r) => r,
            None => return,
        };
        let reply = handler(&req);
        seen.lock().unwrap().push(req);
        let open = write_reply(&mut stream, &reply);
        written.fetch_add(1, Ordering::SeqCst);
        if !open {
            return;
        }
    }
}

fn write_reply(stream: &mut TcpStream, reply: &Reply) -> bool {
    match reply {
        Reply::Full { status, headers, body } => {
            let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len()).into_bytes();
            for (n, v) in headers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
            stream.write_all(&out).is_ok()
        }
        Reply::Raw(bytes) => stream.write_all(bytes).is_ok(),
        Reply::RawThenClose(bytes) => {
            let _ = stream.write_all(bytes);
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
        Reply::Chunked(chunks) => {
            let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for c in chunks {
                out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            stream.write_all(&out).is_ok()
        }
        Reply::Large(len) => {
            if stream.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes()).is_err() {
                return false;
            }
            let piece = vec![b'x'; 64 * 1024];
            let mut left = *len;
            while left > 0 {
                let n = left.min(piece.len() as u64) as usize;
                if stream.write_all(&piece[..n]).is_err() {
                    return false;
                }
                left -= n as u64;
            }
            true
        }
        Reply::Delay(d, inner) => {
            thread::sleep(*d);
            write_reply(stream, inner)
        }
        Reply::Close => {
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
        Reply::Sequence(pieces) | Reply::SequenceThenClose(pieces) => {
            for (delay, bytes) in pieces {
                thread::sleep(*delay);
                if stream.write_all(bytes).is_err() {
                    return false;
                }
            }
            if matches!(reply, Reply::SequenceThenClose(_)) {
                let _ = stream.shutdown(Shutdown::Both);
                return false;
            }
            true
        }
    }
}

/// Body bytes kept per request (the rest is only counted).
const KEEP_BODY_BYTES: usize = 1 << 20;

fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, stop: &AtomicBool) -> bool {
    let mut tmp = [0u8; 65536];
    loop {
        match stream.read(&mut tmp) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return true;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

fn read_origin_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: SocketAddr,
    conn: usize,
    stop: &AtomicBool,
) -> Option<SeenRequest> {
    let (mut req, head_len, cl, chunked) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 128];
        let mut r = httparse::Request::new(&mut hs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let headers: Vec<(String, String)> =
                r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
            let cl = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse::<u64>().unwrap());
            let chunked =
                headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
            let req = SeenRequest {
                method: r.method.unwrap().to_string(),
                target: r.path.unwrap().to_string(),
                headers,
                body: Vec::new(),
                body_len: 0,
                chunked,
                peer,
                conn,
                at: std::time::Instant::now(),
            };
            break (req, n, cl, chunked);
        }
        if !fill(stream, buf, stop) {
            return None;
        }
    };
    buf.drain(..head_len);
    if let Some(len) = cl {
        let mut left = len;
        loop {
            let n = (buf.len() as u64).min(left) as usize;
            take_body(&mut req, &buf[..n]);
            buf.drain(..n);
            left -= n as u64;
            if left == 0 {
                break;
            }
            if !fill(stream, buf, stop) {
                return None;
            }
        }
    } else if chunked {
        loop {
            // a minimal decoder: the gateway's own output is what is being checked
            let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
                if !fill(stream, buf, stop) {
                    return None;
                }
                continue;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap().trim(), 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                if !fill(stream, buf, stop) {
                    return None;
                }
            }
            let data = buf[line_end + 2..line_end + 2 + size].to_vec();
            assert_eq!(&buf[line_end + 2 + size..line_end + 4 + size], b"\r\n", "chunk data must end in CRLF");
            buf.drain(..line_end + 4 + size);
            if size == 0 {
                break;
            }
            take_body(&mut req, &data);
        }
    }
    Some(req)
}

fn take_body(req: &mut SeenRequest, data: &[u8]) {
    req.body_len += data.len() as u64;
    let room = KEEP_BODY_BYTES.saturating_sub(req.body.len());
    req.body.extend_from_slice(&data[..data.len().min(room)]);
}

/// A parsed response from the gateway.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client's connection to a gateway: plain TCP, or TLS when the gateway was started in TLS
/// mode. Reads treat a TLS close without close_notify like a TCP close.
pub enum Wire {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Wire {
    /// Connects to `addr` (completing the TLS handshake for a TLS-mode gateway).
    pub fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).expect("connect to gateway");
        let config = TLS_CLIENTS.lock().unwrap().iter().find(|(a, _)| *a == addr).map(|(_, c)| c.clone());
        match config {
            None => Wire::Plain(tcp),
            Some(c) => {
                // by address: no SNI is sent, so the Host/SNI check (421) stays out of the wire tests
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let conn = rustls::ClientConnection::new(c, name).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock).expect("TLS handshake with the gateway");
                }
                Wire::Tls(Box::new(s))
            }
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) => s,
            Wire::Tls(s) => &s.sock,
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(t)
    }

    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        self.tcp().set_nonblocking(on)
    }

    /// Half-closes the client's side (TLS: close_notify first).
    pub fn shutdown_write(&mut self) {
        if let Wire::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(buf),
            Wire::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write(buf),
            Wire::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Wire::Plain(s) => s.flush(),
            Wire::Tls(s) => s.flush(),
        }
    }
}

/// A client connection that reads responses in a loop.
pub struct Client {
    pub stream: Wire,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        Self::from_wire(Wire::connect(addr))
    }

    /// Wraps an already connected TCP stream (plain HTTP).
    pub fn from_stream(stream: TcpStream) -> Self {
        Self::from_wire(Wire::Plain(stream))
    }

    fn from_wire(stream: Wire) -> Self {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.tcp().set_nodelay(true).unwrap();
        Self { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, raw: &[u8]) -> &mut Self {
        self.stream.write_all(raw).expect("write to gateway");
        self
    }

    /// Reads one response (`head_request`: no body follows).
    pub fn response(&mut self, head_request: bool) -> Response {
        self.try_response(head_request).expect("a complete response")
    }

    /// Reads one response; `None` if the connection closed first.
    pub fn try_response(&mut self, head_request: bool) -> Option<Response> {
        let (status, headers, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut r = httparse::Response::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                break (r.code.unwrap(), headers, n);
            }
            if !self.fill() {
                return None;
            }
        };
        self.buf.drain(..head_len);
        let mut res = Response { status, headers, body: Vec::new(), chunked: false };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Some(res);
        }
        if let Some(cl) = res.header("content-length") {
            let len: usize = cl.parse().unwrap();
            while self.buf.len() < len {
                if !self.fill() {
                    res.body = std::mem::take(&mut self.buf);
                    return Some(res); // truncated: the caller compares lengths
                }
            }
            res.body = self.buf.drain(..len).collect();
        } else if res.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            res.chunked = true;
            loop {
                let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                    if !self.fill() {
                        return Some(res);
                    }
                    continue;
                };
                let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16).unwrap();
                while self.buf.len() < line_end + 4 + size {
                    if !self.fill() {
                        return Some(res);
                    }
                }
                res.body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 4 + size);
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.fill() {}
            res.body = std::mem::take(&mut self.buf);
        }
        Some(res)
    }

    /// True if the gateway closed the connection (EOF within `wait`), with nothing else pending.
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut tmp = [0u8; 1024];
        let closed = matches!(self.stream.read(&mut tmp), Ok(0))
            || matches!(self.stream.read(&mut tmp), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        self.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        closed
    }

    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }
}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let head = raw.starts_with("HEAD ");
    Client::connect(addr).send(raw.as_bytes()).response(head)
}

/// `GET path` with `Host: host` on a fresh connection.
/// A metric's value summed over its series (workers), read from the gateway's admin `/metrics`.
pub fn gauge(gw: &TestGateway, name: &str) -> u64 {
    gauge_at(gw.admin.expect("admin configured"), name)
}

/// [`gauge`] from the admin listener at `admin`.
pub fn gauge_at(admin: SocketAddr, name: &str) -> u64 {
    let text = get(admin, "admin", "/metrics").text();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"))
}

/// `GET path` on a fresh connection: the status and the body as text.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = get(addr, "localhost", path);
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Polls `cond` until it holds or `limit` passes (no fixed sleeps to wait for state).
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// `[upstream.NAME]` with these endpoints.
pub fn upstream_toml(name: &str, addrs: &[SocketAddr]) -> String {
    let eps: Vec<String> = addrs.iter().map(|a| format!("{{ addr = \"{a}\" }}")).collect();
    format!("[upstream.{name}]\nendpoints = [{}]\n", eps.join(", "))
}

/// A catch-all service proxying every path to upstream `name`.
pub fn catch_all(name: &str, addrs: &[SocketAddr]) -> String {
    CatchAll::named(name, addrs).build()
}

/// A catch-all config (service `all`, API `all` on `/*`, one upstream) built key by key rather
/// than by editing TOML text: `CatchAll::new(&[addr]).api("timeout_ms = 500").build()`.
pub struct CatchAll {
    name: String,
    addrs: Vec<SocketAddr>,
    upstream_keys: Vec<String>,
    api_keys: Vec<String>,
}

impl CatchAll {
    /// Upstream named `o`.
    pub fn new(addrs: &[SocketAddr]) -> Self {
        Self::named("o", addrs)
    }

    pub fn named(name: &str, addrs: &[SocketAddr]) -> Self {
        Self { name: name.into(), addrs: addrs.to_vec(), upstream_keys: Vec::new(), api_keys: Vec::new() }
    }

    /// Adds `key = value` lines to the API.
    pub fn api(mut self, lines: &str) -> Self {
        self.api_keys.push(lines.trim_end().to_string());
        self
    }

    /// Adds `key = value` lines to the upstream.
    pub fn upstream(mut self, lines: &str) -> Self {
        self.upstream_keys.push(lines.trim_end().to_string());
        self
    }

    pub fn build(&self) -> String {
        let mut up = upstream_toml(&self.name, &self.addrs);
        for k in &self.upstream_keys {
            up.push_str(k);
            up.push('\n');
        }
        let mut api = format!(
            "[service.all]\n[[service.all.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"{}\"\n",
            self.name
        );
        for k in &self.api_keys {
            api.push_str(k);
            api.push('\n');
        }
        format!("{up}\n{api}")
    }
}

/// A loopback port where nothing listens, reserved for as long as this value lives: the socket
/// is bound but never listens, so connects are refused and no other test can take the port (a
/// freed port can be handed to a parallel test's listener).
pub struct DeadPort {
    pub addr: SocketAddr,
    _socket: socket2::Socket,
}

impl DeadPort {
    pub fn new() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        Self { addr, _socket: socket }
    }
}

impl Default for DeadPort {
    fn default() -> Self {
        Self::new()
    }
}
