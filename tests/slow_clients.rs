//! Slow and abusive clients: deadlines, minimum body rate, keep-alive limits, the per-worker
//! connection cap. Timeouts are shortened in the config so the behaviour shows quickly; nothing
//! here asserts how fast the gateway is.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn gateway(up: &MockUpstream, http: &str) -> TestGateway {
    TestGateway::start(&format!("[http]\n{http}\n{}", catch_all("o", &[up.addr])))
}

/// Reads everything until the gateway closes (at most `limit`); returns the bytes and whether it closed.
fn read_until_close(s: &mut Wire, limit: Duration) -> (String, bool) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[test]
fn incomplete_head_past_the_deadline_is_408_and_closed() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "header_timeout_ms = 300");
    let mut s = Wire::connect(gw.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ").unwrap();
    let (text, closed) = read_until_close(&mut s, Duration::from_secs(5));
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("connection: close") && closed);
}

#[test]
fn stalled_body_is_408_and_never_forwarded_complete() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "body_timeout_ms = 300");
    let mut s = Wire::connect(gw.addr);
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    let (text, closed) = read_until_close(&mut s, Duration::from_secs(5));
    assert!(text.starts_with("HTTP/1.1 408 ") && closed, "{text}");
    assert_eq!(up.request_count(), 0);
}

#[test]
fn body_below_the_minimum_rate_is_408() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "body_min_rate_bytes_per_s = 1000\nbody_min_rate_grace_ms = 200");
    let mut s = Wire::connect(gw.addr);
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n").unwrap();
    let t0 = Instant::now();
    let mut refused = false;
    while t0.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"x").is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50)); // 20 B/s, far below 1000 B/s
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 64];
        let got = s.read(&mut b);
        s.set_nonblocking(false).unwrap();
        if let Ok(n) = got {
            assert!(n == 0 || String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 408 "), "{:?}", &b[..n]);
            refused = true;
            break;
        }
    }
    assert!(refused, "a 20 B/s upload was not refused");
    assert_eq!(up.request_count(), 0);
}

#[test]
fn idle_keep_alive_connection_is_closed_silently() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "keepalive_timeout_ms = 200");
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 200);
    let (text, closed) = read_until_close(&mut c.stream, Duration::from_secs(5));
    assert!(closed && text.is_empty(), "closed without a response: {text:?}");
}

#[test]
fn keepalive_requests_caps_requests_per_connection() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "keepalive_requests = 3");
    let mut c = Client::connect(gw.addr);
    for i in 1..=3 {
        let r = c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false);
        assert_eq!(r.header("connection"), if i == 3 { Some("close") } else { None }, "request {i}");
    }
    assert!(c.is_closed(Duration::from_secs(2)));
}

#[test]
fn connection_cap_closes_the_oldest_idle_connection_to_make_room() {
    let up = MockUpstream::echo();
    let body = format!("[http]\nmax_connections_per_worker = 2\n{}", catch_all("o", &[up.addr]));
    let gw = TestGateway::start_with_workers(&body, "", 1);
    let mut old = Client::connect(gw.addr);
    assert_eq!(old.send(b"GET /old HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 200);
    let mut newer = Client::connect(gw.addr);
    assert_eq!(newer.send(b"GET /newer HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 200);
    // both idle keep-alive: a third client gets served, and the oldest idle one is closed
    let mut third = Client::connect(gw.addr);
    assert_eq!(third.send(b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 200);
    assert!(old.is_closed(Duration::from_secs(2)), "the oldest idle connection made room");
    assert_eq!(newer.send(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 200);
}

#[test]
fn connection_cap_answers_503_when_no_connection_is_idle() {
    // the origin holds every request for a while: connections at the cap are busy, not idle
    let up = MockUpstream::start(|_| Reply::Delay(Duration::from_millis(800), Box::new(Reply::ok("slow"))));
    let gw = TestGateway::start_with_workers(&catch_all("o", &[up.addr]), "max_connections = 2", 1);
    let mut busy: Vec<Client> = (0..2).map(|_| Client::connect(gw.addr)).collect();
    for c in busy.iter_mut() {
        c.send(b"GET /busy HTTP/1.1\r\nHost: a\r\n\r\n");
    }
    assert!(eventually(Duration::from_secs(2), || up.request_count() == 2), "both requests in flight");
    if tls_mode() {
        // HTTPS: no handshake is spent at the cap; the connection is closed at once
        let tcp = std::net::TcpStream::connect(gw.addr).unwrap();
        let mut c = Client::from_stream(tcp);
        assert!(c.is_closed(Duration::from_secs(2)), "closed at once, never left in the backlog");
    } else {
        let refused = Client::connect(gw.addr).send(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n").response(false);
        assert_eq!(refused.status, 503, "answered at once, never left in the backlog");
        assert_eq!(refused.header("connection"), Some("close"));
    }
    for mut c in busy {
        assert_eq!(c.response(false).status, 200, "the busy ones finish");
    }
}

#[test]
fn early_upstream_response_to_an_upload_reaches_the_client() {
    use std::net::TcpListener;
    // a well-behaved origin: answers 413 after the head, half-closes, drains the body (lingering)
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        s.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!").unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut sink = [0u8; 65536];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    });
    let gw = TestGateway::start(&catch_all("o", &[addr]));
    let mut c = Client::connect(gw.addr);
    let body = vec![b'u'; 2 * 1024 * 1024];
    c.send(format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    let _ = c.stream.write_all(&body);
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (413, "big!"), "U13: the upstream's answer, not a 502");
}

#[test]
fn upstream_reset_before_response_is_502() {
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let sock = socket2::SockRef::from(&s);
            sock.set_linger(Some(Duration::ZERO)).unwrap(); // close = RST (U4)
        }
    });
    let gw = TestGateway::start(&catch_all("o", &[addr]));
    assert_eq!(request(gw.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi").status, 502);
}

#[test]
fn upstream_stalling_mid_body_truncates_after_the_read_timeout() {
    let up = MockUpstream::start(|_| Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec()));
    let body = CatchAll::new(&[up.addr]).upstream("read_timeout_ms = 300").build();
    let gw = TestGateway::start(&body);
    let mut c = Client::connect(gw.addr);
    let r = c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]), "U11: truncated, never completed");
    assert!(c.is_closed(Duration::from_secs(3)));
}

#[test]
fn client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    let up = MockUpstream::start(|_| Reply::Large(64 * 1024 * 1024));
    let gw = gateway(&up, "send_timeout_ms = 300");
    let mut s = Wire::connect(gw.addr);
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // a slow reader: kernel buffers fill, writes stall
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < 64 * 1024 * 1024, "the gateway gave up on the stalled client ({total} bytes delivered)");
}
