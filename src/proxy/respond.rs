//! The one table from [`Error`] to a client-visible status, and synthetic (gateway-made) responses.
//!
//! Gateway responses are always framed with Content-Length, carry `Connection: close` when the
//! connection will close, and have no body for HEAD. Downstream transport errors get no response.

use crate::error::{Error, Kind, Side};
use crate::http::{push_header, push_status_line, push_u64, reason};

/// How one error is answered: its status (`None`: no response can or should be sent, the
/// client is gone), whether the client connection must close whatever the state of the request
/// body, and the stable name the access log gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub close: bool,
    pub flag: &'static str,
}

/// THE table: one row per error kind. Client-side errors close the connection except a routing
/// miss or a refusal (their requests were read whole, so the connection stays usable).
pub fn answer(err: &Error) -> Answer {
    let (status, close, flag) = match &err.kind {
        Kind::Parse(p) => (Some(p.status()), true, "bad_request"),
        Kind::NoRoute => (Some(404), false, "no_route"),
        Kind::MethodNotAllowed(_) => (Some(405), false, "method_not_allowed"),
        Kind::Forbidden => (Some(403), false, "ip_denied"),
        Kind::Misdirected => (Some(421), false, "misdirected"),
        Kind::Unauthorized(c) => (Some(401), false, c.flag),
        Kind::ConsumerNotAllowed => (Some(403), false, "auth_consumer_not_allowed"),
        Kind::RateLimited(_) => (Some(429), false, "rate_limited"),
        Kind::Overloaded => (Some(503), false, "overloaded"),
        Kind::ClientTimeout => (Some(408), true, "client_timeout"),
        Kind::DownstreamClosed => (None, true, "client_closed"),
        Kind::NoHealthyEndpoint => (Some(503), false, "no_healthy_endpoint"),
        Kind::ConnectRefused => (Some(502), false, "connect_failed"),
        Kind::ConnectTimeout => (Some(504), false, "connect_timeout"),
        Kind::ReadTimeout => (Some(504), false, "response_timeout"),
        Kind::UpstreamClosed => (Some(502), false, "upstream_closed"),
        Kind::BadUpstreamResponse(_) => (Some(502), false, "bad_upstream_response"),
        Kind::UpstreamTls(flag) => (Some(502), false, *flag),
        Kind::Internal if err.side == Side::Internal => (Some(500), false, "internal"),
        Kind::Internal => (Some(502), false, "internal"),
    };
    Answer { status, close, flag }
}

/// The answer to a connection accepted over the worker's connection cap when no idle one could
/// make room (written before any request is read).
pub const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 24\r\nretry-after: 1\r\nconnection: close\r\n\r\n503 Service Unavailable\n";

/// Appends a complete gateway response for `status` to `out`.
pub fn write_error(out: &mut Vec<u8>, err: &Error, status: u16, head_only: bool, close: bool, request_id: &[u8]) {
    push_status_line(out, status);
    push_header(out, b"date", &crate::http::date::now());
    let body_len = 4 + reason(status).len() + 1; // "404 Not Found\n"
    push_header(out, b"content-type", b"text/plain; charset=utf-8");
    out.extend_from_slice(b"content-length: ");
    push_u64(out, body_len as u64);
    out.extend_from_slice(b"\r\n");
    if let Kind::MethodNotAllowed(allow) = &err.kind {
        push_header(out, b"allow", allow.as_bytes());
    }
    if let Kind::Unauthorized(c) = &err.kind {
        push_header(out, b"www-authenticate", c.header_value().as_bytes());
    }
    if let Kind::RateLimited(r) = &err.kind {
        out.extend_from_slice(b"retry-after: ");
        push_u64(out, r.retry_after_s);
        out.extend_from_slice(b"\r\nx-ratelimit-limit: ");
        push_u64(out, r.limit_per_s);
        out.extend_from_slice(b"\r\nx-ratelimit-remaining: 0\r\n");
    }
    if !request_id.is_empty() {
        push_header(out, b"x-request-id", request_id);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        push_u64(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason(status).as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ParseError;

    #[test]
    fn every_kind_maps_to_one_status() {
        let up = |k| Error::upstream(k, "");
        let table = [
            (Error::downstream(Kind::Parse(ParseError::HeaderTooLarge)), Some(431)),
            (Error::downstream(Kind::NoRoute), Some(404)),
            (Error::downstream(Kind::MethodNotAllowed("GET".into())), Some(405)),
            (Error::downstream(Kind::ClientTimeout), Some(408)),
            (Error::downstream(Kind::Forbidden), Some(403)),
            (Error::downstream(Kind::RateLimited(refusal())), Some(429)),
            (up(Kind::Overloaded), Some(503)),
            (Error::downstream(Kind::DownstreamClosed), None),
            (up(Kind::NoHealthyEndpoint), Some(503)),
            (up(Kind::ConnectRefused), Some(502)),
            (up(Kind::ConnectTimeout), Some(504)),
            (up(Kind::ReadTimeout), Some(504)),
            (up(Kind::UpstreamClosed), Some(502)),
            (up(Kind::BadUpstreamResponse(ParseError::HeaderTooLarge)), Some(502)),
            (Error::new(Side::Internal, Kind::Internal, ""), Some(500)),
        ];
        for (err, status) in table {
            assert_eq!(answer(&err).status, status, "{err}");
        }
    }

    fn refusal() -> crate::limit::Refusal {
        crate::limit::Refusal { level: crate::limit::Level::Api, limit_per_s: 50, retry_after_s: 2 }
    }

    #[test]
    fn rate_limited_response_has_retry_after_and_limit_headers() {
        let mut out = Vec::new();
        write_error(&mut out, &Error::downstream(Kind::RateLimited(refusal())), 429, false, false, b"");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(text.contains("retry-after: 2\r\nx-ratelimit-limit: 50\r\nx-ratelimit-remaining: 0\r\n"), "{text}");
        assert!(
            !answer(&Error::downstream(Kind::RateLimited(refusal()))).close,
            "429 keeps the connection when no body is pending"
        );
    }

    #[test]
    fn error_response_is_framed_and_head_has_no_body() {
        let err = Error::downstream(Kind::MethodNotAllowed("GET, HEAD".into()));
        let mut out = Vec::new();
        write_error(&mut out, &err, 405, false, false, b"abc");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("allow: GET, HEAD\r\n"));
        assert!(text.ends_with("\r\n\r\n405 Method Not Allowed\n"));
        let len: usize = text.split("content-length: ").nth(1).unwrap().split("\r\n").next().unwrap().parse().unwrap();
        assert_eq!(len, "405 Method Not Allowed\n".len());
        let mut head = Vec::new();
        write_error(&mut head, &err, 405, true, true, b"");
        assert!(String::from_utf8(head).unwrap().ends_with("connection: close\r\n\r\n"));
    }

    #[test]
    fn parse_errors_close_routing_misses_do_not() {
        assert!(answer(&Error::downstream(Kind::Parse(ParseError::BadRequest("x")))).close);
        assert!(!answer(&Error::downstream(Kind::NoRoute)).close);
        assert!(!answer(&Error::upstream(Kind::ConnectRefused, "")).close, "decided by the body state");
    }
}
