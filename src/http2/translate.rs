//! The two translations between an HTTP/2 stream and the HTTP/1.1 messages the request phases
//! speak (docs/HTTP2.md, "Translation rules"):
//!
//! - [`request_head`]: a stream's request (pseudo-headers and fields, already checked by the h2
//!   crate for connection-specific fields, `TE` other than `trailers`, pseudo-header order and
//!   `content-length` consistency) becomes an HTTP/1.1 head that `http::parse_request` then
//!   checks like any other. `:authority` becomes `Host`; a `Host` field that names another
//!   authority is malformed (RFC 9113 §8.3.1); `cookie` fields are joined with "; " (§8.2.3);
//!   `te: trailers` is dropped; a body without `content-length` is sent on as chunked.
//! - [`response_head`]: the HTTP/1.1 response head the phases wrote becomes a HEADERS frame's
//!   fields, without the connection-specific ones (§8.2.2), and its body framing.

use http::header::{HeaderName, HeaderValue};

/// Why a stream's request cannot become an HTTP/1.1 request.
#[derive(Debug, PartialEq, Eq)]
pub enum Malformed {
    /// `Host` and `:authority` differ.
    HostMismatch,
    /// `:authority` carries userinfo (`user@host`), which RFC 9113 §8.3.1 forbids.
    Userinfo,
    /// A field value or name that cannot appear in an HTTP/1.1 head.
    BadField,
}

/// Writes the HTTP/1.1 head for `parts` into `out`. `body`: the stream has a body (its HEADERS
/// frame did not end the stream). Returns whether the body must be framed as chunked.
pub fn request_head(parts: &http::request::Parts, body: bool, out: &mut Vec<u8>) -> Result<bool, Malformed> {
    let uri = &parts.uri;
    let authority = uri.authority().map(|a| a.as_str());
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(Malformed::Userinfo);
    }
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match (&parts.method, uri.path_and_query()) {
        (&http::Method::CONNECT, _) => out.extend_from_slice(authority.unwrap_or_default().as_bytes()),
        (_, Some(pq)) => out.extend_from_slice(pq.as_str().as_bytes()),
        (_, None) => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = parts.headers.get(http::header::HOST);
    match (authority, host) {
        (Some(a), Some(h)) if !a.as_bytes().eq_ignore_ascii_case(h.as_bytes()) => return Err(Malformed::HostMismatch),
        (Some(a), _) => push_field(out, b"host", a.as_bytes())?,
        (None, Some(h)) => push_field(out, b"host", h.as_bytes())?,
        (None, None) => {} // the HTTP/1.1 parser answers 400 for a request without a host
    }
    let mut cookies: Option<Vec<u8>> = None;
    let mut has_length = false;
    for (name, value) in &parts.headers {
        match name.as_str() {
            "host" | "te" => {}
            "cookie" => {
                let joined = cookies.get_or_insert_with(Vec::new);
                if !joined.is_empty() {
                    joined.extend_from_slice(b"; ");
                }
                joined.extend_from_slice(value.as_bytes());
            }
            n => {
                has_length |= n == "content-length";
                push_field(out, n.as_bytes(), value.as_bytes())?;
            }
        }
    }
    if let Some(c) = cookies {
        push_field(out, b"cookie", &c)?;
    }
    let chunked = body && !has_length;
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(chunked)
}

/// One `name: value` line. HPACK can carry bytes an HTTP/1.1 head cannot (the `http` crate lets
/// obs-text through, but never CR, LF or NUL); those are refused rather than passed on.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), Malformed> {
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) || name.is_empty() {
        return Err(Malformed::BadField);
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// How a response body is delimited on the HTTP/1.1 side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304, `content-length: 0`).
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed response head: the HTTP/2 response and its body framing, or an interim (1xx) one.
pub struct ResponseHead {
    pub response: http::Response<()>,
    pub framing: Framing,
    pub interim: bool,
}

/// Parses the complete HTTP/1.1 response head at the start of `raw` (written by the gateway's
/// own response writers). `head_request`: the request was HEAD (no body follows whatever the
/// fields say). `None` when `raw` holds no complete head yet; `Err` for a head that does not
/// parse (it was checked when read from the upstream, so this is a gateway bug).
pub fn response_head(raw: &[u8], head_request: bool) -> Result<Option<(ResponseHead, usize)>, String> {
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("response head: {e}")),
    };
    let status = parsed.code.unwrap_or(502);
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(status).map_err(|e| e.to_string())?;
    let (mut length, mut chunked) = (None, false);
    for f in parsed.headers.iter() {
        let name = f.name.as_bytes();
        // connection-specific fields (RFC 9113 §8.2.2) are the proxy's hop-by-hop ones
        if crate::proxy::is_hop_by_hop(name, &[]) {
            chunked |= name.eq_ignore_ascii_case(b"transfer-encoding");
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(f.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
        }
        // a field the http crate refuses (it was accepted by our stricter HTTP/1.1 parser, so
        // this is rare) is left out rather than failing the response; `from_bytes` lowercases
        if let (Ok(n), Ok(mut v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(f.value)) {
            // a value unique to each response (the request id) is never put in the HPACK table:
            // it would only evict the fields that do repeat
            v.set_sensitive(n == "x-request-id");
            response.headers_mut().append(n, v);
        }
    }
    let interim = (100..200).contains(&status);
    let framing = match () {
        _ if interim || head_request || status == 204 || status == 304 => Framing::Empty,
        _ if chunked => Framing::Chunked,
        _ => match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            // the writers always frame a body; an unframed one would end with the stream
            None => Framing::Chunked,
        },
    };
    Ok(Some((ResponseHead { response, framing, interim }, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(req: http::Request<()>, body: bool) -> Result<(String, bool), Malformed> {
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        let chunked = request_head(&parts, body, &mut out)?;
        Ok((String::from_utf8(out).unwrap(), chunked))
    }

    #[test]
    fn authority_becomes_host_and_cookies_are_joined() {
        let req = http::Request::get("https://api.example:8443/v1/x?y=1")
            .header("cookie", "a=1")
            .header("accept", "*/*")
            .header("cookie", "b=2")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (text, chunked) = head(req, false).unwrap();
        assert_eq!(text, "GET /v1/x?y=1 HTTP/1.1\r\nhost: api.example:8443\r\naccept: */*\r\ncookie: a=1; b=2\r\n\r\n");
        assert!(!chunked);
    }

    #[test]
    fn a_host_field_naming_another_authority_is_malformed() {
        let req = http::Request::get("https://a.example/").header("host", "b.example").body(()).unwrap();
        assert_eq!(head(req, false).unwrap_err(), Malformed::HostMismatch);
        let same = http::Request::get("https://a.example/").header("host", "A.example").body(()).unwrap();
        assert_eq!(head(same, false).unwrap().0, "GET / HTTP/1.1\r\nhost: a.example\r\n\r\n");
        let userinfo = http::Request::get("https://u:p@a.example/").body(()).unwrap();
        assert_eq!(head(userinfo, false).unwrap_err(), Malformed::Userinfo);
    }

    #[test]
    fn a_body_without_length_is_chunked_and_a_length_is_kept() {
        let post = http::Request::post("http://a/up").body(()).unwrap();
        let (text, chunked) = head(post, true).unwrap();
        assert!(chunked && text.ends_with("transfer-encoding: chunked\r\n\r\n"), "{text}");
        let sized = http::Request::post("http://a/up").header("content-length", "5").body(()).unwrap();
        let (text, chunked) = head(sized, true).unwrap();
        assert!(!chunked && text.contains("content-length: 5\r\n"), "{text}");
    }

    #[test]
    fn a_value_with_a_line_break_is_refused() {
        let mut req = http::Request::get("http://a/").body(()).unwrap();
        // the http crate refuses CR/LF itself; obs-text passes it and is forwarded as is
        req.headers_mut().insert("x-a", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(head(req, false).unwrap().0.contains("x-a: caf\u{e9}"));
        let mut out = Vec::new();
        assert_eq!(push_field(&mut out, b"x", b"a\r\nb"), Err(Malformed::BadField));
    }

    #[test]
    fn response_heads_lose_connection_fields_and_keep_their_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n3\r\nabc";
        let (h, len) = response_head(raw, false).unwrap().unwrap();
        assert_eq!(&raw[len..], b"3\r\nabc");
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(h.response.status(), 200);
        let names: Vec<_> = h.response.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type"]);
        let sized = b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\n";
        let (h, _) = response_head(sized, false).unwrap().unwrap();
        assert_eq!((h.framing, h.response.headers()["content-length"].as_bytes()), (Framing::Length(9), &b"9"[..]));
        let (h, _) = response_head(sized, true).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Empty, "HEAD");
        let (h, _) = response_head(b"HTTP/1.1 100 Continue\r\n\r\n", false).unwrap().unwrap();
        assert!(h.interim);
        assert!(response_head(b"HTTP/1.1 200 OK\r\nx: y\r\n", false).unwrap().is_none());
    }
}
