//! Upstream faults on loopback: each becomes the right status, and a connection with any framing
//! doubt is never reused (docs/HTTP-EDGE-CASES.md "Upstream faults").

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn refused_connection_is_502() {
    let dead = DeadPort::new();
    let gw = TestGateway::start(&catch_all("o", &[dead.addr]));
    assert_eq!(get(gw.addr, "a", "/").status, 502);
}

#[test]
fn refused_endpoint_is_retried_on_another() {
    let up = MockUpstream::echo();
    let dead = DeadPort::new();
    let gw = TestGateway::start(&catch_all("o", &[dead.addr, up.addr]));
    for _ in 0..6 {
        assert_eq!(get(gw.addr, "a", "/").status, 200, "connect failures retry once on the other endpoint");
    }
}

#[test]
fn connect_timeout_is_504() {
    // a listener with a full accept queue: further SYNs are dropped, so connect() hangs
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let _fill: Vec<_> =
        (0..2).filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()).collect();
    let body = CatchAll::new(&[addr]).upstream("connect_timeout_ms = 300").build();
    let gw = TestGateway::start(&body);
    let t0 = Instant::now();
    assert_eq!(get(gw.addr, "a", "/").status, 504);
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[test]
fn garbage_status_line_is_502_and_not_reused() {
    let up = MockUpstream::start(|_| Reply::Raw(b"garbage that is not HTTP\r\n\r\n".to_vec()));
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 502);
    assert_eq!(c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 502);
    assert_eq!(up.connection_count(), 2, "a connection that sent garbage is closed, never pooled");
}

#[test]
fn invalid_response_framing_is_502() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
    ] {
        let up = MockUpstream::start(move |_| Reply::RawThenClose(raw.to_vec()));
        let gw = TestGateway::start(&catch_all("o", &[up.addr]));
        assert_eq!(get(gw.addr, "a", "/").status, 502, "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn oversized_response_head_is_502() {
    let big = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n", "v".repeat(40 * 1024));
    let up = MockUpstream::start(move |_| Reply::Raw(big.clone().into_bytes()));
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    assert_eq!(get(gw.addr, "a", "/").status, 502);
}

#[test]
fn slow_response_head_is_504() {
    let up = MockUpstream::start(|_| Reply::Delay(Duration::from_secs(2), Box::new(Reply::ok("late"))));
    let gw = TestGateway::start(&CatchAll::new(&[up.addr]).api("timeout_ms = 200").build());
    let t0 = Instant::now();
    assert_eq!(get(gw.addr, "a", "/").status, 504);
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn crash_mid_body_truncates_and_closes_the_client() {
    let up =
        MockUpstream::start(|_| Reply::RawThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n1234567".to_vec()));
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let mut c = Client::connect(gw.addr);
    let r = c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false);
    assert_eq!((r.status, r.header("content-length")), (200, Some("100")));
    assert_eq!(r.body, b"1234567", "never padded or completed");
    assert!(c.is_closed(Duration::from_secs(2)));
}

#[test]
fn crash_mid_chunked_body_ends_without_last_chunk() {
    let up = MockUpstream::start(|_| {
        Reply::RawThenClose(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\nde".to_vec())
    });
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let mut c = Client::connect(gw.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut raw = Vec::new();
    use std::io::Read;
    let _ = c.stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("abc"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "an incomplete body must not be terminated: {text}");
}

#[test]
fn extra_bytes_after_content_length_are_dropped_and_connection_not_reused() {
    let up = MockUpstream::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n".to_vec())
    });
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let mut c = Client::connect(gw.addr);
    for _ in 0..2 {
        let r = c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false);
        assert_eq!(r.text(), "ok");
    }
    assert_eq!(up.connection_count(), 2, "a connection with unsolicited bytes is never reused");
}

#[test]
fn upstream_that_closes_idle_connections_is_redialed_transparently() {
    // answers, then closes without saying so: the pooled connection is stale on the next request
    let up = MockUpstream::start(|_| Reply::RawThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()));
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let mut c = Client::connect(gw.addr);
    for _ in 0..5 {
        let r = c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
}

#[test]
fn unsolicited_101_is_502() {
    let up =
        MockUpstream::start(|_| Reply::Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec()));
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    assert_eq!(get(gw.addr, "a", "/").status, 502);
}

#[test]
fn upstream_5xx_is_forwarded_unchanged() {
    let up = MockUpstream::start(|_| Reply::status(503, "busy"));
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let r = get(gw.addr, "a", "/");
    assert_eq!((r.status, r.text().as_str()), (503, "busy"));
}

#[test]
fn client_leaving_while_upstream_is_slow_closes_the_upstream_connection() {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    // an origin that reads one request, never answers, and reports how its connection ended
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        let t0 = Instant::now();
        let ended = matches!(s.read(&mut buf), Ok(0) | Err(_)) && t0.elapsed() < Duration::from_secs(4);
        tx.send(ended).unwrap();
    });
    let gw = TestGateway::start(&CatchAll::new(&[addr]).api("timeout_ms = 10000").build());
    let mut c = std::net::TcpStream::connect(gw.addr).unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100)); // let the request reach the origin
    drop(c);
    assert!(
        rx.recv_timeout(Duration::from_secs(6)).unwrap(),
        "the gateway closed the upstream connection promptly (U18)"
    );
}

#[test]
fn status_outside_100_to_599_is_502() {
    for line in ["HTTP/1.1 099 Odd", "HTTP/1.1 000 Zero", "HTTP/1.1 600 Big", "HTTP/1.1 50 X"] {
        let raw = format!("{line}\r\ncontent-length: 2\r\n\r\nok").into_bytes();
        let up = MockUpstream::start(move |_| Reply::Raw(raw.clone()));
        let gw = TestGateway::start(&catch_all("o", &[up.addr]));
        assert_eq!(get(gw.addr, "a", "/").status, 502, "{line}");
    }
}

#[test]
fn transfer_coded_chunked_body_keeps_its_coding() {
    let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec();
    let up = MockUpstream::start(move |_| Reply::Raw(raw.clone()));
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let r = get(gw.addr, "a", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("gzip, chunked"), "the gzip coding is not dropped");
    assert_eq!(r.body, b"abc", "the coded bytes pass through unchanged");
    // an HTTP/1.0 client can take neither chunked nor a transfer coding
    let r = request(gw.addr, "GET / HTTP/1.0\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 502);
}

/// An origin that accepts connections but never reads (a stuck backend); keeps its sockets.
fn stuck_origin() -> (SocketAddr, std::sync::mpsc::Receiver<std::net::TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            if tx.send(s).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// Starts a 50 MB upload on a thread that gives up once a write stalls for 300 ms; the returned
/// stream reads the response.
fn start_upload(gw: SocketAddr) -> std::net::TcpStream {
    start_upload_joined(gw).0
}

fn start_upload_joined(gw: SocketAddr) -> (std::net::TcpStream, std::thread::JoinHandle<()>) {
    let s = std::net::TcpStream::connect(gw).unwrap();
    let mut w = s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = w.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 52428800\r\n\r\n");
        let piece = vec![b'x'; 64 * 1024];
        for _ in 0..800 {
            if w.write_all(&piece).is_err() {
                return;
            }
        }
    });
    (s, writer)
}

/// A gateway in front of `origin` with the API's `timeout_ms` and a 60 s upstream read timeout.
fn upload_gateway(origin: SocketAddr, timeout_ms: u64) -> TestGateway {
    let toml = CatchAll::new(&[origin])
        .api(&format!("timeout_ms = {timeout_ms}\nmax_body_bytes = 0"))
        .upstream("read_timeout_ms = 60000")
        .build();
    TestGateway::start(&toml)
}

#[test]
fn stuck_upstream_during_upload_is_504_at_timeout_ms() {
    let (addr, _conns) = stuck_origin();
    let gw = upload_gateway(addr, 500);
    let t0 = Instant::now();
    let mut c = Client::from_stream(start_upload(gw.addr));
    let r = c.response(false);
    assert_eq!(r.status, 504, "timeout_ms bounds the exchange while the body is being sent");
    // 0.5 s, not the upstream's 60 s read timeout (a coarse bound, far from both)
    assert!(t0.elapsed() < Duration::from_secs(20), "took {:?}", t0.elapsed());
}

#[test]
fn client_leaving_mid_upload_aborts_the_exchange() {
    let (addr, conns) = stuck_origin();
    let gw = upload_gateway(addr, 60000);
    let (client, writer) = start_upload_joined(gw.addr);
    let origin_side = conns.recv_timeout(Duration::from_secs(5)).expect("the gateway dials the origin");
    // the upload stalls (buffers full), the client gives up: with its upload unsent, a FIN would
    // wait behind it, so leaving shows as a reset (close with SO_LINGER 0)
    writer.join().unwrap();
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);
    use std::os::fd::AsRawFd;
    assert!(
        eventually(Duration::from_secs(5), || ringway::upstream::peer_gone(origin_side.as_raw_fd())),
        "the gateway closes the upstream connection once the client has gone (not at a 60 s timeout)"
    );
}
