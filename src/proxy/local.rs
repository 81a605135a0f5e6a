//! Responses the gateway makes itself: errors (through the error table), mock APIs, `OPTIONS *`
//! and filter answers. A request body is never read for them: when one is pending the
//! connection closes after a lingering read.

use super::io::{write_out, Conn};
use super::request::Request;
use super::respond::{answer, write_error};
use super::Next;
use crate::config::{ApiId, Target};
use crate::error::Error;
use crate::filter::LocalResponse;
use crate::http::{push_header, push_u64, BodyKind, Version};
use crate::runtime::Generation;

/// How a gateway-made error response is sent.
pub(super) struct ErrorReply<'a> {
    pub(super) head_only: bool,
    /// The connection closes after it whatever the error (the error table may add a close).
    pub(super) close: bool,
    pub(super) id: &'a [u8],
}

/// Sends the error's response (if any) as the error table says, and notes the error for the
/// access log. Returns how the connection ends.
pub(super) async fn respond_error(
    gen: &Generation,
    client: &mut Conn,
    out: &mut Vec<u8>,
    err: &Error,
    reply: ErrorReply<'_>,
    session: &mut super::session::Session,
) -> Next {
    let answer = answer(err);
    session.error = Some(answer.flag);
    let Some(status) = answer.status else {
        return Next::Close;
    };
    let ErrorReply { head_only, id, .. } = reply;
    let close = reply.close || answer.close;
    tracing::debug!(status, id = %String::from_utf8_lossy(id), error = %err, "Gateway response");
    out.clear();
    write_error(out, err, status, head_only, close, id);
    (session.status, session.bytes_out) = (status, out.len() as u64);
    match write_out(&mut client.stream, out, gen.snapshot.http.send_timeout).await {
        Ok(()) if close => Next::LingerClose,
        Ok(()) => Next::KeepAlive,
        Err(_) => Next::Close,
    }
}

/// A mock API: the pre-rendered response.
pub(super) async fn serve_mock(
    gen: &Generation,
    client: &mut Conn,
    out: &mut Vec<u8>,
    req: &mut Request,
    api: ApiId,
) -> Next {
    let Target::Mock(mock) = &gen.snapshot.apis[api].target else {
        return Next::Close;
    };
    out.clear();
    out.extend_from_slice(&mock.head);
    let policy = gen.snapshot.apis[api].policy.as_deref();
    super::headers::write_response_policy(
        out,
        super::headers::ResponsePolicy { policy, cors_origin: req.cors_origin.as_deref() },
    );
    send_local(gen, client, out, req, mock.status, &mock.body).await
}

/// `OPTIONS * HTTP/1.1`: 200 with the methods the gateway proxies, no body (RFC 9110 §9.3.7).
pub(super) async fn serve_server_options(
    gen: &Generation,
    client: &mut Conn,
    out: &mut Vec<u8>,
    req: &mut Request,
) -> Next {
    out.clear();
    crate::http::push_status_line(out, 200);
    out.extend_from_slice(b"allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\ncontent-length: 0\r\n");
    send_local(gen, client, out, req, 200, &[]).await
}

/// A CORS preflight for an API with a CORS policy: 204 with the `Access-Control-*` fields when
/// the origin is allowed, without them otherwise (the browser then refuses); never forwarded.
pub(super) async fn serve_preflight(
    gen: &Generation,
    client: &mut Conn,
    out: &mut Vec<u8>,
    req: &mut Request,
    api: ApiId,
) -> Next {
    out.clear();
    crate::http::push_status_line(out, 204);
    if let (Some(cors), Some(origin)) =
        (gen.snapshot.apis[api].policy.as_ref().and_then(|p| p.cors.as_deref()), req.cors_origin.as_deref())
    {
        cors.write_preflight(origin, out);
    }
    send_local(gen, client, out, req, 204, &[]).await
}

/// A request filter's answer, framed with Content-Length.
pub(super) async fn serve_filter_response(
    gen: &Generation,
    client: &mut Conn,
    out: &mut Vec<u8>,
    req: &mut Request,
    response: &LocalResponse,
) -> Next {
    out.clear();
    crate::http::push_status_line(out, response.status);
    for (name, value) in &response.headers {
        let framing = ["content-length", "transfer-encoding", "connection", "date", "x-request-id"];
        if !framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            push_header(out, name.as_bytes(), value);
        }
    }
    out.extend_from_slice(b"content-length: ");
    push_u64(out, response.body.len() as u64);
    out.extend_from_slice(b"\r\n");
    send_local(gen, client, out, req, response.status, &response.body).await
}

/// Finishes a response the gateway makes itself (`out` holds its status line and fields) and
/// sends it.
async fn send_local(
    gen: &Generation,
    client: &mut Conn,
    out: &mut Vec<u8>,
    req: &mut Request,
    status: u16,
    body: &[u8],
) -> Next {
    let keep_alive = req.keep_alive && req.body == BodyKind::None;
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&crate::http::date::now());
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(&req.id);
    out.extend_from_slice(b"\r\n");
    push_connection(out, keep_alive, req.version);
    out.extend_from_slice(b"\r\n");
    if !req.head_request {
        out.extend_from_slice(body);
    }
    (req.session.status, req.session.bytes_out) = (status, out.len() as u64);
    match write_out(&mut client.stream, out, gen.snapshot.http.send_timeout).await {
        Ok(()) if keep_alive => Next::KeepAlive,
        Ok(()) if req.body != BodyKind::None => Next::LingerClose,
        _ => Next::Close,
    }
}

/// The `Connection` field of a gateway response: `close` when the connection ends, `keep-alive`
/// for an HTTP/1.0 client that keeps it, nothing otherwise.
pub(super) fn push_connection(out: &mut Vec<u8>, keep_alive: bool, version: Version) {
    match (keep_alive, version) {
        (false, _) => out.extend_from_slice(b"connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
}
