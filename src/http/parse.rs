//! Request and response head parsing: httparse for the grammar, our own checks for everything a
//! proxy must refuse (docs/HTTP-EDGE-CASES.md tables A, C, D, E, F).
//!
//! Both parsers borrow the caller's buffer and header array and return `Ok(None)` while the head is
//! incomplete. Size limits are enforced on partial input too, so a slow or endless head is refused
//! as soon as it crosses the limit.

use std::mem::MaybeUninit;

use httparse::{Header, Status};

use super::body::BodyKind;
use super::eq_ignore_case;
use super::error::ParseError;

/// The most header fields a head may carry (the parse array's size).
pub const MAX_HEADERS_CAP: usize = 128;
/// Methods longer than this get 501 (docs/HTTP-EDGE-CASES.md D2).
const MAX_METHOD_BYTES: usize = 32;

/// Uninitialised header storage for one parse (no 4 KiB memset per message).
pub type HeaderBuf<'b> = [MaybeUninit<Header<'b>>; MAX_HEADERS_CAP];

/// Fresh header storage for [`parse_request`] / [`parse_response`].
#[inline(always)]
pub fn header_buf<'b>() -> HeaderBuf<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS_CAP]
}

/// Size limits for a head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_request_line_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// HTTP/1.x minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed, validated request head borrowing the read buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b [u8],
    /// Path without the query, from origin-form or absolute-form.
    pub path: &'b [u8],
    /// The query including its leading '?', or empty.
    pub query: &'b [u8],
    pub version: Version,
    pub headers: &'h [Header<'b>],
    /// Authority to route on: the absolute-form authority, else the Host header.
    pub authority: Option<&'b [u8]>,
    /// True when the target was absolute-form (the Host header is then replaced upstream).
    pub absolute_form: bool,
    pub body: BodyKind,
    /// The client asked to keep the connection open (version default plus `Connection`).
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// The protocols offered for an upgrade (`Upgrade` value, with `Connection: upgrade`), on an
    /// HTTP/1.1 request without a body.
    pub upgrade: Option<&'b [u8]>,
    /// Bytes of the head, including the final blank line.
    pub head_len: usize,
}

/// A parsed, validated response head borrowing the upstream read buffer.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub status: u16,
    pub version: Version,
    pub reason: &'b [u8],
    pub headers: &'h [Header<'b>],
    pub body: BodyKind,
    /// The upstream allows reusing the connection after this response.
    pub keep_alive: bool,
    /// Transfer codings applied before `chunked` (`gzip` in `gzip, chunked`), or empty: they are
    /// part of the body's bytes and must be forwarded with it.
    pub codings: &'b [u8],
    pub head_len: usize,
}

impl<'b> RequestHead<'_, 'b> {
    /// The first field named `name` (case-insensitive).
    #[inline]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        field(self.headers, name)
    }
}

impl<'b> ResponseHead<'_, 'b> {
    /// The first field named `name` (case-insensitive).
    #[inline]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        field(self.headers, name)
    }
}

fn field<'b>(headers: &[Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// Parses a request head from `buf`.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<Header<'b>>],
    limits: &HeadLimits,
) -> Result<Option<RequestHead<'h, 'b>>, ParseError> {
    let n_headers = limits.max_headers.min(headers.len());
    let mut req = httparse::Request::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers[..n_headers],
    ) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return partial_limits(buf, limits).map(|_| None),
        Err(e) => return Err(request_error(e, buf, limits)),
    };
    check_request_line_len(buf, limits)?;
    if head_len > limits.max_header_bytes {
        return Err(ParseError::HeaderTooLarge);
    }
    let method = req.method.unwrap_or_default().as_bytes();
    let target = req.path.unwrap_or_default().as_bytes();
    let version = if req.version == Some(0) { Version::Http10 } else { Version::Http11 };
    if method.len() > MAX_METHOD_BYTES {
        return Err(ParseError::NotImplemented("method too long"));
    }
    if method == b"CONNECT" {
        return Err(ParseError::NotImplemented("CONNECT tunnels are not supported"));
    }
    let (path, query, target_authority) = split_target(method, target)?;
    let fields = scan_fields(req.headers, FieldRole::Request)?;
    if fields.host_count > 1 {
        return Err(ParseError::BadRequest("more than one Host"));
    }
    if let Some(host) = fields.host {
        check_authority(host)?;
    } else if version == Version::Http11 {
        return Err(ParseError::BadRequest("HTTP/1.1 request without Host"));
    }
    if fields.expect_other {
        return Err(ParseError::ExpectationFailed);
    }
    let body = request_body(&fields, version)?;
    let keep_alive = match version {
        Version::Http11 => !fields.conn_close,
        Version::Http10 => fields.conn_keep_alive && !fields.conn_close,
    };
    Ok(Some(RequestHead {
        method,
        path,
        query,
        version,
        headers: req.headers,
        authority: target_authority.or(fields.host),
        absolute_form: target_authority.is_some(),
        body,
        keep_alive,
        expect_continue: fields.expect_continue && body != BodyKind::None,
        upgrade: fields.upgrade.filter(|_| fields.conn_upgrade && version == Version::Http11 && body == BodyKind::None),
        head_len,
    }))
}

/// Parses a response head; `head_request` and the status decide whether a body follows.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<Header<'b>>],
    max_header_bytes: usize,
    head_request: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, ParseError> {
    let mut res = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, headers) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) if buf.len() > max_header_bytes => return Err(ParseError::HeaderTooLarge),
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeaderTooLarge),
        Err(_) => return Err(ParseError::BadRequest("malformed response head")),
    };
    if head_len > max_header_bytes {
        return Err(ParseError::HeaderTooLarge);
    }
    // httparse takes exactly three digits; 000-099 and 600-999 are not statuses (RFC 9110 §15)
    let status = res.code.unwrap_or_default();
    if !(100..=599).contains(&status) {
        return Err(ParseError::BadRequest("response status outside 100-599"));
    }
    let version = if res.version == Some(0) { Version::Http10 } else { Version::Http11 };
    let fields = scan_fields(res.headers, FieldRole::Response)?;
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        BodyKind::None
    } else if fields.te_present {
        if fields.content_length.is_some() {
            return Err(ParseError::BadRequest("response has both Content-Length and Transfer-Encoding"));
        }
        match fields.te {
            TeState::Chunked if fields.te_fields > 1 && fields.te_unknown_coding => {
                return Err(ParseError::BadRequest("response transfer codings split over several fields"))
            }
            TeState::Chunked => BodyKind::Chunked,
            _ => return Err(ParseError::BadRequest("response transfer coding does not end in chunked")),
        }
    } else {
        match fields.content_length {
            Some(n) => BodyKind::Length(n),
            None => BodyKind::UntilClose,
        }
    };
    let keep_alive = body != BodyKind::UntilClose
        && match version {
            Version::Http11 => !fields.conn_close,
            Version::Http10 => fields.conn_keep_alive && !fields.conn_close,
        };
    let codings = match (body, fields.te_unknown_coding, fields.te_value) {
        (BodyKind::Chunked, true, Some(v)) => chunked_prefix(v),
        _ => &[][..],
    };
    Ok(Some(ResponseHead {
        status,
        version,
        codings,
        reason: res.reason.unwrap_or_default().as_bytes(),
        headers: res.headers,
        body,
        keep_alive,
        head_len,
    }))
}

fn partial_limits(buf: &[u8], limits: &HeadLimits) -> Result<(), ParseError> {
    check_request_line_len(buf, limits)?;
    if buf.len() > limits.max_header_bytes {
        return Err(ParseError::HeaderTooLarge);
    }
    Ok(())
}

/// 414 when the first non-empty line is (or is becoming) longer than the limit.
fn check_request_line_len(buf: &[u8], limits: &HeadLimits) -> Result<(), ParseError> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line = &buf[start..];
    let len = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    if len > limits.max_request_line_bytes {
        return Err(ParseError::UriTooLong);
    }
    Ok(())
}

fn request_error(e: httparse::Error, buf: &[u8], limits: &HeadLimits) -> ParseError {
    if check_request_line_len(buf, limits).is_err() {
        return ParseError::UriTooLong;
    }
    match e {
        httparse::Error::TooManyHeaders => ParseError::HeaderTooLarge,
        httparse::Error::Version if is_other_major_version(buf) => ParseError::VersionNotSupported,
        httparse::Error::Version => ParseError::BadRequest("malformed HTTP version"),
        httparse::Error::Token => ParseError::BadRequest("invalid method"),
        httparse::Error::HeaderName => ParseError::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => ParseError::BadRequest("invalid header value"),
        httparse::Error::NewLine => ParseError::BadRequest("invalid line ending"),
        httparse::Error::Status => ParseError::BadRequest("invalid request line"),
    }
}

/// `HTTP/<d>.<d>` with a major version other than 1 (505, not 400).
fn is_other_major_version(buf: &[u8]) -> bool {
    let line_end = buf.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let v = match line.iter().rposition(|&b| b == b' ') {
        Some(i) => &line[i + 1..],
        None => return false,
    };
    v.len() >= 6 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[5] != b'1'
}

/// Splits the request target into (path, query, absolute-form authority).
/// (path, query, absolute-form authority)
type TargetParts<'b> = (&'b [u8], &'b [u8], Option<&'b [u8]>);

fn split_target<'b>(method: &[u8], target: &'b [u8]) -> Result<TargetParts<'b>, ParseError> {
    if target.contains(&b'#') {
        return Err(ParseError::BadRequest("fragment in request target"));
    }
    if target.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return Err(ParseError::BadRequest("control, space or non-ASCII byte in request target"));
    }
    if target == b"*" {
        return if method == b"OPTIONS" {
            Ok((b"*", b"", None))
        } else {
            Err(ParseError::BadRequest("'*' target outside OPTIONS"))
        };
    }
    let (origin, authority) = if target.first() == Some(&b'/') {
        (target, None)
    } else {
        let rest =
            strip_scheme(target).ok_or(ParseError::BadRequest("request target is not origin-form or absolute-form"))?;
        let end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
        let authority = &rest[..end];
        check_authority(authority)?;
        let origin: &[u8] = if end == rest.len() { b"/" } else { &rest[end..] };
        (origin, Some(authority))
    };
    if origin.first() != Some(&b'/') {
        // absolute-form with only a query ("http://a?x"): path is "/" and the query follows
        return Ok((b"/", origin, authority));
    }
    match origin.iter().position(|&b| b == b'?') {
        Some(q) => Ok((&origin[..q], &origin[q..], authority)),
        None => Ok((origin, b"", authority)),
    }
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && eq_ignore_case(&target[..scheme.len()], scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// `host[:port]` with a reg-name (RFC 3986: unreserved, pct-encoded, sub-delims except `,`) or a
/// bracketed IPv6 host; no userinfo, no path, no list (a comma is refused so no backend can read
/// the field as two hosts).
fn check_authority(a: &[u8]) -> Result<(), ParseError> {
    const BAD: ParseError = ParseError::BadRequest("invalid Host or authority");
    let (host, port) = if a.first() == Some(&b'[') {
        let end = a.iter().position(|&b| b == b']').ok_or(BAD)?;
        let inner = &a[1..end];
        if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(BAD);
        }
        match &a[end + 1..] {
            [] => (&a[..=end], None),
            [b':', port @ ..] => (&a[..=end], Some(port)),
            _ => return Err(BAD),
        }
    } else {
        match a.iter().position(|&b| b == b':') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host[0] == b'['
            || host.iter().all(|&b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
                    || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b';' | b'=')
            }));
    let port_ok = match port {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 5
                && p.iter().all(u8::is_ascii_digit)
                && parse_u64(p).is_some_and(|v| v <= 65535)
        }
    };
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(BAD)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldRole {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum TeState {
    #[default]
    Absent,
    Chunked,
    /// Codings present but not ending in `chunked`.
    NotChunked,
}

/// What one pass over the header fields found.
#[derive(Debug, Default)]
struct Fields<'b> {
    content_length: Option<u64>,
    te_present: bool,
    /// Transfer-Encoding fields seen, and the last one's value.
    te_fields: usize,
    te_value: Option<&'b [u8]>,
    te: TeState,
    te_unknown_coding: bool,
    host: Option<&'b [u8]>,
    host_count: usize,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    upgrade: Option<&'b [u8]>,
    expect_continue: bool,
    expect_other: bool,
}

fn scan_fields<'b>(headers: &[Header<'b>], role: FieldRole) -> Result<Fields<'b>, ParseError> {
    let mut f = Fields::default();
    for h in headers {
        let name = h.name.as_bytes();
        if role == FieldRole::Request && name.contains(&b'_') {
            return Err(ParseError::BadRequest("underscore in header name"));
        }
        if eq_ignore_case(name, b"content-length") {
            if f.content_length.is_some() {
                return Err(ParseError::BadRequest("more than one Content-Length"));
            }
            f.content_length = Some(parse_u64(h.value).ok_or(ParseError::BadRequest("invalid Content-Length"))?);
        } else if eq_ignore_case(name, b"transfer-encoding") {
            f.te_present = true;
            f.te_fields += 1;
            f.te_value = Some(h.value);
            scan_transfer_encoding(h.value, &mut f)?;
        } else if eq_ignore_case(name, b"host") {
            f.host_count += 1;
            f.host = Some(h.value);
        } else if eq_ignore_case(name, b"connection") {
            for token in list_items(h.value) {
                f.conn_close |= eq_ignore_case(token, b"close");
                f.conn_keep_alive |= eq_ignore_case(token, b"keep-alive");
                f.conn_upgrade |= eq_ignore_case(token, b"upgrade");
            }
        } else if eq_ignore_case(name, b"upgrade") {
            f.upgrade = Some(h.value);
        } else if role == FieldRole::Request && eq_ignore_case(name, b"expect") {
            if eq_ignore_case(trim_ows(h.value), b"100-continue") {
                f.expect_continue = true;
            } else {
                f.expect_other = true;
            }
        }
    }
    Ok(f)
}

/// Transfer-Encoding list: only `chunked`, once, last; empty elements and non-tokens are 400,
/// other codings 501 (requests) or not-chunked (responses).
fn scan_transfer_encoding(value: &[u8], f: &mut Fields<'_>) -> Result<(), ParseError> {
    for item in value.split(|&b| b == b',') {
        let coding = trim_ows(item);
        if coding.is_empty() {
            return Err(ParseError::BadRequest("empty transfer coding"));
        }
        if !coding.iter().all(|&b| super::is_tchar(b)) {
            return Err(ParseError::BadRequest("transfer coding is not a token"));
        }
        if f.te == TeState::Chunked {
            // anything after chunked, including a second chunked, is invalid framing
            return Err(ParseError::BadRequest("transfer coding after chunked"));
        }
        if eq_ignore_case(coding, b"chunked") {
            f.te = TeState::Chunked;
        } else {
            f.te = TeState::NotChunked;
            f.te_unknown_coding = true;
        }
    }
    Ok(())
}

fn request_body(f: &Fields<'_>, version: Version) -> Result<BodyKind, ParseError> {
    if f.te_present {
        if version == Version::Http10 {
            return Err(ParseError::BadRequest("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if f.content_length.is_some() {
            return Err(ParseError::BadRequest("both Content-Length and Transfer-Encoding"));
        }
        return match f.te {
            TeState::Chunked if !f.te_unknown_coding => Ok(BodyKind::Chunked),
            TeState::Chunked => Err(ParseError::NotImplemented("transfer coding other than chunked")),
            _ if f.te_unknown_coding => Err(ParseError::NotImplemented("transfer coding other than chunked")),
            _ => Err(ParseError::BadRequest("transfer coding does not end in chunked")),
        };
    }
    Ok(match f.content_length {
        Some(0) | None => BodyKind::None,
        Some(n) => BodyKind::Length(n),
    })
}

/// The codings of a `…, chunked` list before the final `chunked` (trimmed), e.g. `gzip`.
fn chunked_prefix(v: &[u8]) -> &[u8] {
    match v.iter().rposition(|&b| b == b',') {
        Some(i) => trim_ows(&v[..i]),
        None => &[],
    }
}

/// Strict decimal (RFC 9110 `1*DIGIT`): ASCII digits only, no sign, no spaces inside; leading
/// zeros are allowed, the value must fit in a u64.
pub(crate) fn parse_u64(v: &[u8]) -> Option<u64> {
    let v = trim_ows(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
    &v[start..end]
}

/// Comma-separated list items, trimmed, empty ones skipped.
pub fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
