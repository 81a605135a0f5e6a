//! Raw bytes in, status and connection state out, through the real gateway to a counting origin:
//! one row per case of docs/HTTP-EDGE-CASES.md tables A–G (ids in the names). Where a smuggled request
//! could hide, the origin must see exactly the requests the client meant.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

/// What the client saw: statuses of every response in order, and whether the gateway closed.
struct Seen {
    statuses: Vec<u16>,
    closed: bool,
}

/// Sends `raw`, then reads until the gateway closes or stays quiet for 600 ms.
fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> Seen {
    let mut s = Wire::connect(addr);
    s.set_read_timeout(Some(Duration::from_millis(600))).unwrap();
    let _ = s.write_all(raw);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let closed = loop {
        match s.read(&mut tmp) {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    Seen { statuses: statuses(&buf), closed }
}

/// Status codes of the responses in `buf` (heads found at message boundaries via Content-Length).
fn statuses(mut buf: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        let Ok(httparse::Status::Complete(n)) = r.parse(buf) else { return out };
        let code = r.code.unwrap();
        let len = if code == 100 {
            0
        } else {
            r.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
        };
        out.push(code);
        buf = &buf[(n + len).min(buf.len())..];
    }
}

fn gateway(up: &MockUpstream) -> TestGateway {
    TestGateway::start(&CatchAll::new(&[up.addr]).api("max_body_bytes = 1000000").build())
}

/// Rows: (id, raw request, expected status, expect close).
fn check(rows: &[(&str, &[u8], u16, bool)]) {
    let up = MockUpstream::echo();
    let gw = gateway(&up);
    for (id, raw, status, close) in rows {
        let seen = exchange(gw.addr, raw);
        assert_eq!(seen.statuses.first().copied(), Some(*status), "{id}: statuses {:?}", seen.statuses);
        assert_eq!(seen.statuses.len(), 1, "{id}: exactly one response, got {:?}", seen.statuses);
        if *close {
            assert!(seen.closed, "{id}: the gateway must close after {status}");
        } else {
            assert!(!seen.closed, "{id}: the connection should stay open after {status}");
        }
    }
    let smuggled: Vec<_> = up.requests().into_iter().filter(|r| r.target.contains("smuggled")).collect();
    assert!(smuggled.is_empty(), "a smuggled request reached the origin: {smuggled:?}");
}

const SMUGGLE: &str = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

fn with_body(head: &str) -> Vec<u8> {
    format!("{head}\r\n\r\n{SMUGGLE}").into_bytes()
}

#[test]
fn table_a_framing() {
    let rows: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        (
            "A1 CL+TE",
            with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"),
            400,
            true,
        ),
        (
            "A2 differing CLs",
            with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6"),
            400,
            true,
        ),
        ("A2 CL list", with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6"), 400, true),
        (
            "A3 identical CLs",
            with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5"),
            400,
            true,
        ),
        ("A4 CL +5", with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5"), 400, true),
        ("A4 CL -1", with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1"), 400, true),
        ("A4 CL 0x5", with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5"), 400, true),
        (
            "A4 CL overflow",
            with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999"),
            400,
            true,
        ),
        ("A5 CL 005", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nabcde".to_vec(), 200, false),
        ("A6 chunked not last", with_body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip"), 400, true),
        (
            "A7 unsupported coding",
            with_body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked"),
            501,
            true,
        ),
        (
            "A8 chunked twice",
            with_body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
            400,
            true,
        ),
        ("A9 identity", with_body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity"), 501, true),
        ("A9 not a token", with_body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked"), 400, true),
        (
            "A10 Chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n1\r\nZ\r\n0\r\n\r\n".to_vec(),
            200,
            false,
        ),
        ("A11 empty element", with_body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked"), 400, true),
        ("A12 HTTP/1.0 + TE", with_body("POST / HTTP/1.0\r\nTransfer-Encoding: chunked"), 400, true),
        ("A13 folded TE", with_body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked"), 400, true),
        ("A13 SP before colon", with_body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked"), 400, true),
    ];
    let rows: Vec<(&str, &[u8], u16, bool)> = rows.iter().map(|(a, b, c, d)| (*a, &b[..], *c, *d)).collect();
    check(&rows);
}

#[test]
fn a16_truncated_body_is_never_forwarded_as_complete() {
    let up = MockUpstream::echo();
    let gw = gateway(&up);
    let mut s = Wire::connect(gw.addr);
    s.write_all(b"POST /cut HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    s.shutdown_write();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    std::thread::sleep(Duration::from_millis(100)); // give a (wrong) forward time to land
    assert_eq!(up.request_count(), 0, "the origin never saw a complete request");
}

#[test]
fn table_b_chunked() {
    let long_ext = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a={}\r\nZ\r\n0\r\n\r\n",
        "b".repeat(64 * 1024)
    );
    let big_trailer = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\nX: {}\r\n\r\n",
        "v".repeat(40 * 1024)
    );
    let c = |body: &str| format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}").into_bytes();
    let rows: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("B1 0x1", c("0x1\r\nZ\r\n0\r\n\r\n"), 400, true),
        ("B1 leading SP", c(" 1\r\nZ\r\n0\r\n\r\n"), 400, true),
        ("B2 overflow", c("FFFFFFFFFFFFFFFFF1\r\n"), 400, true),
        ("B2 u64::MAX", c("FFFFFFFFFFFFFFFF\r\n"), 400, true),
        ("B3 empty size line", c(&format!("\r\n\r\n{SMUGGLE}")), 400, true),
        ("B4a extension", c("1;a=b\r\nZ\r\n0\r\n\r\n"), 200, false),
        ("B4b bare ;", c("1;\r\nZ\r\n0\r\n\r\n"), 400, true),
        ("B4c CR in extension", c("1\r;a\r\nZ\r\n0\r\n\r\n"), 400, true),
        ("B4d NUL in extension", c("1;a\0\r\nZ\r\n0\r\n\r\n"), 400, true),
        ("B4e 64 KiB extension", long_ext.into_bytes(), 400, true),
        ("B5 bare LF", c("1\nZ\r\n0\r\n\r\n"), 400, true),
        ("B6 data longer than size", c("1\r\nZZZ\r\n0\r\n\r\n"), 400, true),
        ("B8 trailer with CL", c("1\r\nZ\r\n0\r\nContent-Length: 50\r\n\r\n"), 200, false),
        ("B9 trailer over the limit", big_trailer.into_bytes(), 431, true),
    ];
    let rows: Vec<(&str, &[u8], u16, bool)> = rows.iter().map(|(a, b, c, d)| (*a, &b[..], *c, *d)).collect();
    check(&rows);
}

#[test]
fn b7_missing_last_chunk_never_completes_upstream() {
    let up = MockUpstream::echo();
    let gw = gateway(&up);
    let mut s = Wire::connect(gw.addr);
    s.write_all(b"POST /cut HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n").unwrap();
    s.shutdown_write();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(up.request_count(), 0, "no terminating chunk was fabricated");
}

#[test]
fn tables_c_d_e_f_g_head_cases() {
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let rows: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("C1 bare LF", b"GET / HTTP/1.1\nHost: a\n\n".to_vec(), 200, false),
        ("C2 bare CR", b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n".to_vec(), 400, true),
        ("C3 obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n".to_vec(), 400, true),
        ("C4 SP before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n".to_vec(), 400, true),
        ("C5 whitespace-led line", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n".to_vec(), 400, true),
        ("C6 leading empty lines", b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 200, false),
        ("C7 double SP", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        ("D1 method not a token", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        ("D2 extension method forwarded", b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 200, false),
        (
            "D2 method over 32 bytes",
            format!("{} / HTTP/1.1\r\nHost: a\r\n\r\n", "A".repeat(33)).into_bytes(),
            501,
            true,
        ),
        ("D3 not origin-form", b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        ("D3 * outside OPTIONS", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        ("D4 fragment", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        ("D5 non-ASCII target", b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        (
            "D6 20 KiB target",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20 * 1024)).into_bytes(),
            414,
            true,
        ),
        ("D7 HTTP/1.10", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        ("D7 lower-case version", b"GET / http/1.1\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        ("D8 HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n".to_vec(), 505, true),
        ("D10 CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".to_vec(), 501, true),
        ("E1 no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400, true),
        ("E2 two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".to_vec(), 400, true),
        ("E3 userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n".to_vec(), 400, true),
        ("E3 list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n".to_vec(), 400, true),
        ("E4 HTTP/1.0 without Host", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(), 200, false),
        ("F1 empty name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n".to_vec(), 400, true),
        ("F2 no colon", b"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n".to_vec(), 400, true),
        ("F3 bad name", b"GET / HTTP/1.1\r\nHost: a\r\nHe(der: x\r\n\r\n".to_vec(), 400, true),
        ("F4 NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n".to_vec(), 400, true),
        ("F5 CTL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n".to_vec(), 400, true),
        ("F6 obs-text value", b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n".to_vec(), 200, false),
        ("F7 underscore", b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1\r\n\r\n".to_vec(), 400, true),
        ("F8 150 fields", format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").into_bytes(), 431, true),
        (
            "F9 70 KiB field",
            format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(70 * 1024)).into_bytes(),
            431,
            true,
        ),
        ("F12 unknown Expect", with_body("POST / HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nContent-Length: 36"), 417, true),
        ("F13 TRACE", b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 405, false),
        ("G3 TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xaa\xbb\r\n\r\n".to_vec(), 400, true),
        ("G3 binary noise", (0u8..=255).cycle().take(3000).collect(), 400, true),
        ("G4 Connection: close", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec(), 200, true),
        (
            "G2 early 413 with a smuggled body",
            with_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000"),
            413,
            true,
        ),
    ];
    let rows: Vec<(&str, &[u8], u16, bool)> = rows.iter().map(|(a, b, c, d)| (*a, &b[..], *c, *d)).collect();
    check(&rows);
}

#[test]
fn d2_lower_case_method_is_not_case_folded() {
    let up = MockUpstream::echo();
    let gw = gateway(&up);
    assert_eq!(exchange(gw.addr, b"get / HTTP/1.1\r\nHost: a\r\n\r\n").statuses, vec![200]);
    assert_eq!(up.requests()[0].method, "get");
}

#[test]
fn f14_refused_upgrade_keeps_parsing_http() {
    let up = MockUpstream::echo();
    let gw = gateway(&up);
    let seen = exchange(gw.addr, b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(seen.statuses, vec![200, 200]);
    let reqs = up.requests();
    assert_eq!(reqs[0].header("upgrade"), Some("foo"), "the offer is forwarded; only a 101 would switch");
    assert_eq!(reqs[1].target, "/next", "the bytes after the head are the next request, under full policy");
}

#[test]
fn valid_grammar_is_accepted_with_exact_boundaries() {
    let up = MockUpstream::echo();
    let gw = gateway(&up);
    // Content-Length with leading zeros: exactly 5 body bytes reach the origin, then the next request
    let raw = b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000005\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(exchange(gw.addr, raw).statuses, vec![200, 200]);
    // chunk size with leading zeros
    let raw =
        b"POST /chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n";
    assert_eq!(exchange(gw.addr, raw).statuses, vec![200]);
    // a reg-name Host with sub-delims
    assert_eq!(exchange(gw.addr, b"GET /host HTTP/1.1\r\nHost: a!$&'()*+;=b\r\n\r\n").statuses, vec![200]);
    let seen = up.requests();
    let body_of = |t: &str| seen.iter().find(|r| r.target == t).map(|r| r.body.clone());
    assert_eq!(body_of("/cl"), Some(b"hello".to_vec()));
    assert_eq!(body_of("/chunk"), Some(b"hello".to_vec()));
    assert!(seen.iter().any(|r| r.target == "/next"));
    assert!(seen.iter().any(|r| r.target == "/host"));
}
