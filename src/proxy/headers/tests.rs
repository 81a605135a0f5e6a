use super::*;
use crate::http::{parse_request, parse_response, HeadLimits};

const LIMITS: HeadLimits = HeadLimits { max_request_line_bytes: 8192, max_header_bytes: 32768, max_headers: 100 };

fn upstream_head(raw: &[u8], rewrite: Rewrite, base_len: usize, prefix_len: Option<usize>) -> String {
    upstream_head_with(raw, rewrite, base_len, prefix_len, &[])
}

fn upstream_head_with(
    raw: &[u8],
    rewrite: Rewrite,
    base_len: usize,
    prefix_len: Option<usize>,
    extra: &[(String, Vec<u8>)],
) -> String {
    let mut h = crate::http::header_buf();
    let head = parse_request(raw, &mut h, &LIMITS).unwrap().unwrap();
    let cx = RequestContext {
        path: head.path,
        client_ip: b"10.1.2.3",
        scheme: "http",
        forwarded_for: None,
        upgrade: None,
        rewrite: &rewrite,
        base_len,
        prefix_len,
        default_host: "orders",
        extra,
        query: head.query,
        policy: None,
        auth: None,
    };
    let mut out = Vec::new();
    write_request_head(&mut out, &head, &cx, b"gen-id");
    String::from_utf8(out).unwrap()
}

#[test]
fn hop_by_hop_and_connection_named_fields_are_removed() {
    let raw = b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret, Host\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Keep: k\r\n\r\n";
    let out = upstream_head(raw, Rewrite::None, 0, None);
    assert!(out.starts_with("GET /a HTTP/1.1\r\n"));
    for gone in ["X-Secret", "Keep-Alive", "TE:", "Upgrade", "Connection"] {
        assert!(!out.contains(gone), "{gone} leaked: {out}");
    }
    assert!(out.contains("X-Keep: k\r\n"));
    assert!(out.contains("host: h\r\n"), "Connection cannot strip Host (F10)");
}

#[test]
fn forwarding_headers_are_set_not_trusted() {
    let raw =
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nVia: 1.0 fred\r\n\r\n";
    let out = upstream_head(raw, Rewrite::None, 0, None);
    assert!(out.contains("x-forwarded-for: 10.1.2.3\r\n"));
    assert!(!out.contains("6.6.6.6"));
    assert!(out.contains("x-forwarded-proto: http\r\n"));
    assert!(out.contains("x-forwarded-host: h\r\n"));
    assert!(out.contains("via: 1.0 fred, 1.1 ringway\r\n"));
    assert!(out.contains("x-request-id: gen-id\r\n"));
}

#[test]
fn client_request_id_is_kept() {
    // the caller passes the id it chose (the client's when usable); the client's field is not
    // forwarded beside it
    let out = upstream_head(b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc\r\n\r\n", Rewrite::None, 0, None);
    assert!(out.contains("x-request-id: gen-id\r\n"));
    assert_eq!(out.to_ascii_lowercase().matches("x-request-id").count(), 1, "{out}");
    assert!(usable_request_id(b"abc") && usable_request_id(&[b'a'; 128]));
    assert!(!usable_request_id(&[b'a'; 129]) && !usable_request_id(b"a b") && !usable_request_id(b""));
}

#[test]
fn framing_is_regenerated_with_crlf() {
    let out = upstream_head(
        b"POST / HTTP/1.1\nHost: h\nContent-Length: 005\nExpect: 100-continue\n\n",
        Rewrite::None,
        0,
        None,
    );
    assert!(out.contains("content-length: 5\r\n"));
    assert!(!out.contains("Expect"));
    assert!(!out.replace("\r\n", "").contains('\n'), "bare LF re-serialised as CRLF");
    let out =
        upstream_head(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", Rewrite::None, 0, None);
    assert!(out.contains("transfer-encoding: chunked\r\n"));
    assert!(!out.contains("Chunked"));
}

#[test]
fn absolute_form_rewrites_host_and_http10_gets_default_host() {
    let out = upstream_head(b"GET http://b.example/x HTTP/1.1\r\nHost: a\r\n\r\n", Rewrite::None, 0, None);
    assert!(out.starts_with("GET /x HTTP/1.1\r\n"));
    assert!(out.contains("host: b.example\r\n") && !out.contains("host: a\r\n"));
    let out = upstream_head(b"GET / HTTP/1.0\r\n\r\n", Rewrite::None, 0, None);
    assert!(out.contains("host: orders\r\n"));
}

#[test]
fn path_rewrites() {
    let raw = b"GET /shop/static/img/a.png?v=1 HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(upstream_head(raw, Rewrite::StripBase, 5, Some(7)).starts_with("GET /static/img/a.png?v=1 "));
    let out = upstream_head(raw, Rewrite::Replace("/assets".into()), 5, Some(7));
    assert!(out.starts_with("GET /assets/img/a.png?v=1 "), "{out}");
    let raw = b"GET /shop HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(upstream_head(raw, Rewrite::StripBase, 5, None).starts_with("GET / "));
}

#[test]
fn response_head_gets_fresh_framing() {
    let raw = b"HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nConnection: X-Up\r\nX-Up: 1\r\nX-Keep: 2\r\n\r\n";
    let mut h = crate::http::header_buf();
    let head = parse_response(raw, &mut h, 32768, false).unwrap().unwrap();
    let mut out = Vec::new();
    write_response_head(&mut out, &head, ResponseFraming::Chunked, Some(false), None, Default::default());
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text, "HTTP/1.1 200 Fine\r\nX-Keep: 2\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
}

#[test]
fn head_response_keeps_upstream_content_length() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    let mut h = crate::http::header_buf();
    let head = parse_response(raw, &mut h, 32768, true).unwrap().unwrap();
    let mut out = Vec::new();
    write_response_head(&mut out, &head, ResponseFraming::NoBody, None, Some(b"rid"), Default::default());
    assert!(String::from_utf8(out).unwrap().contains("Content-Length: 1234\r\n"));
}

#[test]
fn response_request_id_is_added_unless_the_upstream_set_one() {
    for (raw, want) in [
        (&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..], "x-request-id: rid\r\n"),
        (b"HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nContent-Length: 0\r\n\r\n", "X-Request-Id: theirs\r\n"),
    ] {
        let mut h = crate::http::header_buf();
        let head = parse_response(raw, &mut h, 32768, false).unwrap().unwrap();
        let mut out = Vec::new();
        write_response_head(&mut out, &head, ResponseFraming::Length(0), None, Some(b"rid"), Default::default());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(want), "{text}");
        assert_eq!(text.to_ascii_lowercase().matches("x-request-id").count(), 1, "{text}");
    }
}

#[test]
fn filter_fields_replace_what_the_client_sent() {
    let raw = b"GET /a HTTP/1.1\r\nHost: h\r\nX-Consumer: mallory\r\nX-Keep: k\r\n\r\n";
    let extra = [("x-consumer".to_string(), b"alice".to_vec())];
    let out = upstream_head_with(raw, Rewrite::None, 0, None, &extra);
    assert!(out.contains("x-consumer: alice\r\n"), "{out}");
    assert!(!out.contains("mallory"), "{out}");
    assert!(out.contains("X-Keep: k\r\n"));
}
