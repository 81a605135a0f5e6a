//! Header rewriting between the two sides: hop-by-hop removal (including fields named in
//! `Connection`), `X-Forwarded-*`, `Via`, `X-Request-Id`, path rewrite, and fresh framing headers.
//!
//! Requests and responses are re-serialised field by field, never forwarded as raw bytes, and
//! always with CRLF line endings.

use httparse::Header;
use smallvec::SmallVec;

use crate::config::Rewrite;
use crate::http::{eq_ignore_case, push_header, push_status_line, BodyKind, RequestHead, ResponseHead};

/// Fields that describe one hop and never cross the proxy (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&[u8]; 8] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"transfer-encoding",
    b"upgrade",
    b"trailer",
    b"proxy-authenticate",
];
/// Fields a client's `Connection` header may not remove: the gateway needs or sets them.
const PROTECTED: [&[u8]; 7] = [
    b"host",
    b"content-length",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"via",
];
/// Longest client-supplied request id we keep; longer or odd ones are replaced.
const MAX_REQUEST_ID_BYTES: usize = 128;
const VIA: &[u8] = b"1.1 ringway";

type Names<'b> = SmallVec<[&'b [u8]; 4]>;

/// Names listed in `Connection` headers (lower-case comparison happens at use).
fn connection_names<'b>(headers: &[Header<'b>]) -> Names<'b> {
    let mut names = Names::new();
    for h in headers.iter().filter(|h| eq_ignore_case(h.name.as_bytes(), b"connection")) {
        names.extend(crate::http::list_items(h.value));
    }
    names
}

fn is_in(name: &[u8], list: &[&[u8]]) -> bool {
    list.iter().any(|n| eq_ignore_case(name, n))
}

/// Whether a request field is hop-by-hop for a hop whose `Connection` fields list `named`: it
/// is not passed on (fields the gateway needs are never removed by `Connection`).
pub fn is_hop_by_hop(name: &[u8], named: &[&[u8]]) -> bool {
    is_in(name, &HOP_BY_HOP) || (is_in(name, named) && !is_in(name, &PROTECTED))
}

/// What the upstream request needs besides the parsed head.
pub struct RequestContext<'a> {
    /// The normalised path (what routing matched), sent instead of the client's spelling.
    pub path: &'a [u8],
    /// The client's address as text (rendered once per connection).
    pub client_ip: &'a [u8],
    /// The scheme the client spoke to the gateway (`X-Forwarded-Proto`): the connection knows it.
    pub scheme: &'a str,
    /// The incoming `X-Forwarded-For` when the peer is a trusted proxy: the chain is extended
    /// instead of replaced.
    pub forwarded_for: Option<&'a [u8]>,
    /// Protocols to offer upstream in `Upgrade` (with `Connection: upgrade`).
    pub upgrade: Option<&'a [u8]>,
    pub rewrite: &'a Rewrite,
    pub base_len: usize,
    pub prefix_len: Option<usize>,
    /// Host to send when the client sent none (HTTP/1.0): the upstream's name.
    pub default_host: &'a str,
    /// Fields the request filters add (lower-case names); they replace client fields of the same
    /// name, so a client cannot pose as what a filter asserts (`X-Consumer` and the like).
    pub extra: &'a [(String, Vec<u8>)],
    /// The query to send (the client's, or without an API key that was in it).
    pub query: &'a [u8],
    /// The API's policies: `request_headers` and `upstream_host`.
    pub policy: Option<&'a crate::policy::ApiPolicy>,
    /// For an API with `auth`: the credential field to drop (the API-key field, or
    /// `authorization` for a JWT), and the consumer field with the consumer's name (client
    /// fields of that name are dropped even for anonymous requests).
    pub auth: Option<AuthFields<'a>>,
}

/// What authentication changes in the upstream request.
#[derive(Clone, Copy)]
pub struct AuthFields<'a> {
    pub credential: Option<&'a str>,
    pub consumer_header: &'a str,
    pub consumer: Option<&'a str>,
}

/// Serialises the upstream request head into `out`, carrying `request_id` as `X-Request-Id`.
pub fn write_request_head(out: &mut Vec<u8>, head: &RequestHead<'_, '_>, cx: &RequestContext<'_>, request_id: &[u8]) {
    out.extend_from_slice(head.method);
    out.push(b' ');
    write_path(out, cx.path, cx);
    out.extend_from_slice(cx.query);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let named = connection_names(head.headers);
    let mut via: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    for h in head.headers {
        let name = h.name.as_bytes();
        if is_hop_by_hop(name, &named) {
            continue;
        }
        if is_in(name, &[b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"]) {
            continue;
        }
        if eq_ignore_case(name, b"host") {
            host = Some(h.value);
            continue;
        }
        if eq_ignore_case(name, b"via") {
            via = Some(h.value);
            continue;
        }
        if eq_ignore_case(name, b"x-request-id") {
            continue; // replaced by the request's id (the client's when usable): one id everywhere
        }
        if !cx.extra.is_empty() && cx.extra.iter().any(|(n, _)| eq_ignore_case(name, n.as_bytes())) {
            continue;
        }
        if let Some(a) = &cx.auth {
            let credential = a.credential.is_some_and(|c| eq_ignore_case(name, c.as_bytes()));
            if credential || eq_ignore_case(name, a.consumer_header.as_bytes()) {
                continue;
            }
        }
        if cx.policy.is_some_and(|p| p.request_headers.drops(name)) {
            continue;
        }
        push_header(out, name, h.value);
    }
    let sent_host = match (cx.policy.and_then(|p| p.upstream_host.as_deref()), head.absolute_form, head.authority, host)
    {
        (Some(h), ..) => h.as_bytes(),
        (None, true, Some(authority), _) => authority,
        (None, _, _, Some(h)) => h,
        _ => cx.default_host.as_bytes(),
    };
    push_header(out, b"host", sent_host);
    match head.body {
        BodyKind::Length(n) => push_content_length(out, n),
        BodyKind::Chunked => out.extend_from_slice(CHUNKED),
        BodyKind::None | BodyKind::UntilClose => {}
    }
    if let Some(protocols) = cx.upgrade {
        push_header(out, b"connection", b"upgrade");
        push_header(out, b"upgrade", protocols);
    }
    match cx.forwarded_for {
        Some(chain) => {
            out.extend_from_slice(b"x-forwarded-for: ");
            out.extend_from_slice(chain);
            out.extend_from_slice(b", ");
            out.extend_from_slice(cx.client_ip);
            out.extend_from_slice(b"\r\n");
        }
        None => push_header(out, b"x-forwarded-for", cx.client_ip),
    }
    push_header(out, b"x-forwarded-proto", cx.scheme.as_bytes());
    if let Some(h) = head.authority {
        push_header(out, b"x-forwarded-host", h);
    }
    push_header(out, b"x-request-id", request_id);
    for (name, value) in cx.extra {
        push_header(out, name.as_bytes(), value);
    }
    if let Some(AuthFields { consumer_header, consumer: Some(consumer), .. }) = cx.auth {
        push_header(out, consumer_header.as_bytes(), consumer.as_bytes());
    }
    if let Some(p) = cx.policy {
        for (name, value) in &p.request_headers.set {
            push_header(out, name.as_bytes(), value);
        }
    }
    match via {
        Some(v) => {
            out.extend_from_slice(b"via: ");
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
            out.extend_from_slice(VIA);
            out.extend_from_slice(b"\r\n");
        }
        None => push_header(out, b"via", VIA),
    }
    out.extend_from_slice(b"\r\n");
}

fn write_path(out: &mut Vec<u8>, path: &[u8], cx: &RequestContext<'_>) {
    let start = out.len();
    match cx.rewrite {
        Rewrite::None => out.extend_from_slice(path),
        Rewrite::StripBase => out.extend_from_slice(&path[cx.base_len.min(path.len())..]),
        Rewrite::Replace(new) => {
            out.extend_from_slice(new.as_bytes());
            if let Some(prefix_len) = cx.prefix_len {
                let rel = &path[cx.base_len.min(path.len())..];
                out.extend_from_slice(&rel[prefix_len.min(rel.len())..]);
            }
        }
    }
    if out.len() == start || out[start] != b'/' {
        out.insert(start, b'/');
    }
}

const CHUNKED: &[u8] = b"transfer-encoding: chunked\r\n";

/// Serialises a 101 head for an accepted upgrade: `Upgrade` and the protocol's own fields pass,
/// the other hop-by-hop fields and any framing do not.
pub fn write_switching_head(out: &mut Vec<u8>, head: &ResponseHead<'_, '_>) {
    push_status_line(out, 101);
    for h in head.headers {
        let name = h.name.as_bytes();
        if is_in(name, &HOP_BY_HOP) && !eq_ignore_case(name, b"upgrade") || eq_ignore_case(name, b"content-length") {
            continue;
        }
        push_header(out, name, h.value);
    }
    out.extend_from_slice(b"connection: upgrade\r\n\r\n");
}

fn push_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    crate::http::push_u64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// A client's `X-Request-Id` the gateway keeps (forwards, logs, returns): 1 to 128 visible
/// ASCII bytes. Anything else is replaced by a generated id.
pub fn usable_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_REQUEST_ID_BYTES && v.iter().all(|&b| b.is_ascii_graphic())
}

/// How the gateway frames the response body it sends downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body follows (HEAD, 204, 304); upstream's Content-Length is passed through as-is.
    NoBody,
    Length(u64),
    Chunked,
    /// Raw bytes until the gateway closes the connection (HTTP/1.0 clients).
    Close,
}

/// What the API's policies add to a response: `response_headers`, and the CORS fields for the
/// request's (allowed) origin.
#[derive(Clone, Copy, Default)]
pub struct ResponsePolicy<'a> {
    pub policy: Option<&'a crate::policy::ApiPolicy>,
    pub cors_origin: Option<&'a [u8]>,
}

/// The `response_headers` sets and the CORS fields (for responses the gateway makes, too).
pub fn write_response_policy(out: &mut Vec<u8>, rp: ResponsePolicy<'_>) {
    let Some(p) = rp.policy else { return };
    for (name, value) in &p.response_headers.set {
        push_header(out, name.as_bytes(), value);
    }
    if let (Some(cors), Some(origin)) = (p.cors.as_deref(), rp.cors_origin) {
        cors.write_response(origin, out);
    }
}

/// Serialises the downstream response head into `out`.
pub fn write_response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_, '_>,
    framing: ResponseFraming,
    client_keep_alive: Option<bool>,
    request_id: Option<&[u8]>,
    rp: ResponsePolicy<'_>,
) {
    if head.reason.is_empty() || head.reason == crate::http::reason(head.status).as_bytes() {
        push_status_line(out, head.status);
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        crate::http::push_u64(out, u64::from(head.status));
        out.push(b' ');
        out.extend_from_slice(head.reason);
        out.extend_from_slice(b"\r\n");
    }
    let named = connection_names(head.headers);
    for h in head.headers {
        let name = h.name.as_bytes();
        if is_in(name, &HOP_BY_HOP) || is_in(name, &named) {
            continue;
        }
        if eq_ignore_case(name, b"content-length") && (framing != ResponseFraming::NoBody || head.status == 204) {
            continue;
        }
        if rp.policy.is_some_and(|p| p.response_headers.drops(name)) {
            continue;
        }
        push_header(out, name, h.value);
    }
    write_response_policy(out, rp);
    // the id the upstream saw, unless the upstream answered with its own
    if let Some(id) =
        request_id.filter(|_| !head.headers.iter().any(|h| eq_ignore_case(h.name.as_bytes(), b"x-request-id")))
    {
        push_header(out, b"x-request-id", id);
    }
    match framing {
        ResponseFraming::Length(n) => push_content_length(out, n),
        ResponseFraming::Chunked if !head.codings.is_empty() => {
            // the body stays gzip- (or otherwise) coded: say so, then re-chunk it
            out.extend_from_slice(b"transfer-encoding: ");
            out.extend_from_slice(head.codings);
            out.extend_from_slice(b", chunked\r\n");
        }
        ResponseFraming::Chunked => out.extend_from_slice(CHUNKED),
        ResponseFraming::NoBody | ResponseFraming::Close => {}
    }
    match client_keep_alive {
        Some(false) => out.extend_from_slice(b"connection: close\r\n"),
        Some(true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        None => {}
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
