//! Request/response head cases written as input → expected outcome (docs/HTTP-EDGE-CASES.md ids).

use super::*;

const LIMITS: HeadLimits = HeadLimits { max_request_line_bytes: 8192, max_header_bytes: 32768, max_headers: 100 };

/// Parses `raw`, and checks that every prefix of it is either `Ok(None)` or the same error.
fn req(raw: &[u8]) -> Result<(BodyKind, bool, Vec<u8>), ParseError> {
    let full = parse_owned(raw);
    // every split point for normal-sized heads; the limit cases are checked whole
    let cuts = if raw.len() <= 4096 { 0..raw.len() } else { 0..0 };
    for cut in cuts {
        let mut h = crate::http::header_buf();
        match parse_request(&raw[..cut], &mut h, &LIMITS) {
            Ok(None) => {}
            Ok(Some(_)) => {} // a shorter prefix may already be a complete head (pipelining)
            Err(e) => assert_eq!(Err(e), full.clone().map(|_| ()), "prefix {cut} errs differently"),
        }
    }
    full
}

fn parse_owned(raw: &[u8]) -> Result<(BodyKind, bool, Vec<u8>), ParseError> {
    let mut h = crate::http::header_buf();
    let head = parse_request(raw, &mut h, &LIMITS)?.expect("complete head");
    Ok((head.body, head.keep_alive, head.authority.unwrap_or_default().to_vec()))
}

fn status(raw: &[u8]) -> u16 {
    match req(raw) {
        Ok(_) => 200,
        Err(e) => e.status(),
    }
}

#[test]
fn simple_get_is_keep_alive_without_body() {
    assert_eq!(req(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"), Ok((BodyKind::None, true, b"x".to_vec())));
}

#[test]
fn path_and_query_split() {
    let mut h = crate::http::header_buf();
    let raw = b"GET /a/b?c=d&e HTTP/1.1\r\nHost: x\r\n\r\n";
    let head = parse_request(raw, &mut h, &LIMITS).unwrap().unwrap();
    assert_eq!((head.path, head.query), (&b"/a/b"[..], &b"?c=d&e"[..]));
    assert_eq!(head.head_len, raw.len());
}

#[test]
fn http10_defaults_to_close_and_keep_alive_opts_in() {
    assert!(!req(b"GET / HTTP/1.0\r\n\r\n").unwrap().1);
    assert!(req(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().1);
    assert!(!req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap().1);
}

#[test]
fn framing_table_a() {
    let cases: &[(&[u8], u16)] = &[
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400), // A1
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),          // A2
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),                            // A2
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),          // A3
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),                              // A4
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1.5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400), // A6
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),          // A6/A7
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501), // A7
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400), // A8
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501), // A9
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", 400), // A11
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),             // A12
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400), // A13
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
    ];
    for (raw, want) in cases {
        assert_eq!(status(raw), *want, "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn valid_framing_variants_are_accepted() {
    let cl = |v: &str| req(format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n").as_bytes()).unwrap().0;
    assert_eq!(cl("005"), BodyKind::Length(5)); // A5
    assert_eq!(cl("0"), BodyKind::None);
    let te =
        |v: &str| req(format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n").as_bytes()).unwrap().0;
    assert_eq!(te("Chunked"), BodyKind::Chunked); // A10
    assert_eq!(te("chunked "), BodyKind::Chunked);
    // A14/A15: GET bodies are framed by CL; no CL/TE means no body
    assert_eq!(req(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap().0, BodyKind::Length(5));
}

#[test]
fn line_endings_and_whitespace_table_c() {
    assert_eq!(status(b"GET / HTTP/1.1\nHost: a\n\n"), 200); // C1 (re-serialised with CRLF)
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400); // C2
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n"), 400); // C3
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400); // C4
    assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400); // C5
    assert_eq!(status(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 200); // C6
    assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400); // C7
    assert_eq!(status(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn request_line_table_d() {
    assert_eq!(status(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400); // D1
    assert_eq!(status(b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n"), 200); // D2: routed, not folded
    let long_method = format!("{} / HTTP/1.1\r\nHost: a\r\n\r\n", "A".repeat(33));
    assert_eq!(status(long_method.as_bytes()), 501);
    assert_eq!(status(b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), 400); // D3
    assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    assert_eq!(status(b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"), 400); // D4
    assert_eq!(status(b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400); // D5
    assert_eq!(status(b"GET /a\0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20 * 1024));
    assert_eq!(status(long.as_bytes()), 414); // D6
    for v in ["HTTP/1.10", "HTTP/1", "http/1.1"] {
        assert_eq!(status(format!("GET / {v}\r\nHost: a\r\n\r\n").as_bytes()), 400, "{v}");
        // D7
    }
    assert_eq!(status(b"GET /\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505); // D8
    assert_eq!(status(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"), 501);
    // D10
}

#[test]
fn absolute_form_authority_wins_over_host() {
    let (_, _, authority) = req(b"GET http://b/x?y HTTP/1.1\r\nHost: a\r\n\r\n").unwrap(); // D9
    assert_eq!(authority, b"b");
    let mut h = crate::http::header_buf();
    let head = parse_request(b"GET http://b:81?q HTTP/1.1\r\nHost: a\r\n\r\n", &mut h, &LIMITS).unwrap().unwrap();
    assert_eq!((head.path, head.query, head.absolute_form), (&b"/"[..], &b"?q"[..], true));
}

#[test]
fn host_table_e() {
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400); // E1
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400); // E2
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    for bad in ["", "u@a", "a/b", "a, b", "a:99999", "a:x", "[zz]"] {
        assert_eq!(status(format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n").as_bytes()), 400, "{bad}");
        // E3
    }
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), 200);
    assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 200); // E4
}

#[test]
fn header_fields_table_f() {
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"), 400); // F1
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n"), 400); // F2
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHe(der: x\r\n\r\n"), 400); // F3
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), 400); // F4
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"), 400); // F5
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n"), 200); // F6
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1\r\n\r\n"), 400); // F7
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(status(format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes()), 431); // F8
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(70 * 1024));
    assert_eq!(status(big.as_bytes()), 431); // F9
    assert_eq!(status(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"), 200);
    assert_eq!(status(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n"), 417);
    // F12
}

#[test]
fn garbage_and_tls_hello_are_400() {
    assert_eq!(status(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 random bytes\r\n\r\n"), 400); // G3
    assert_eq!(status(b"\x00\x01\x02\x03\r\n\r\n"), 400);
}

fn resp(raw: &[u8], head_req: bool) -> Result<(u16, BodyKind, bool), ParseError> {
    let mut h = crate::http::header_buf();
    let r = parse_response(raw, &mut h, 32768, head_req)?.expect("complete");
    Ok((r.status, r.body, r.keep_alive))
}

#[test]
fn response_framing() {
    assert_eq!(resp(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false), Ok((200, BodyKind::Length(3), true)));
    assert_eq!(resp(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true), Ok((200, BodyKind::None, true)));
    assert_eq!(resp(b"HTTP/1.1 204 No Content\r\n\r\n", false), Ok((204, BodyKind::None, true)));
    assert_eq!(resp(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false), Ok((304, BodyKind::None, true)));
    assert_eq!(
        resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false),
        Ok((200, BodyKind::Chunked, true))
    );
    assert_eq!(resp(b"HTTP/1.1 200 OK\r\n\r\n", false), Ok((200, BodyKind::UntilClose, false)));
    assert_eq!(resp(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false), Ok((200, BodyKind::Length(1), false)));
    assert!(!resp(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false).unwrap().2);
}

#[test]
fn bad_responses_are_errors() {
    let bad: &[&[u8]] = &[
        b"garbage that is not HTTP\r\n\r\n",                                  // U6
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", // U7
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", // U8
        b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
    ];
    for raw in bad {
        assert!(resp(raw, false).is_err(), "{}", String::from_utf8_lossy(raw));
    }
    let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "v".repeat(40000));
    assert_eq!(resp(big.as_bytes(), false), Err(ParseError::HeaderTooLarge));
}

#[test]
fn valid_grammar_that_strict_parsers_used_to_refuse() {
    // RFC 9110 Content-Length = 1*DIGIT: leading zeros are valid; duplicates must still agree
    assert_eq!(
        req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000005\r\n\r\n").map(|r| r.0),
        Ok(BodyKind::Length(5))
    );
    assert_eq!(status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"), 400);
    assert_eq!(status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 05\r\nContent-Length: 5\r\n\r\n"), 400);
    // RFC 3986 reg-name: sub-delims are valid in Host (the comma stays refused: no lists)
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a!$&'()*+;=b\r\n\r\n"), 200);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a!$&'()*+;=b:8080\r\n\r\n"), 200);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"), 400);
}

#[test]
fn response_status_must_be_100_to_599() {
    for bad in [
        &b"HTTP/1.1 099 Odd\r\n\r\n"[..],
        b"HTTP/1.1 000 Zero\r\n\r\n",
        b"HTTP/1.1 600 Big\r\n\r\n",
        b"HTTP/1.1 50 X\r\n\r\n",
    ] {
        assert!(resp(bad, false).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(resp(b"HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n", false).map(|r| r.0), Ok(599));
}

#[test]
fn transfer_codings_before_chunked_are_kept() {
    let mut h = crate::http::header_buf();
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    let r = parse_response(raw, &mut h, 32768, false).unwrap().unwrap();
    assert_eq!((r.body, r.codings), (BodyKind::Chunked, &b"gzip"[..]));
    let mut h = crate::http::header_buf();
    let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &mut h, 32768, false);
    assert_eq!(r.unwrap().unwrap().codings, b"");
    // codings spread over two fields are refused rather than half-forwarded
    assert!(resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", false).is_err());
}
