//! The request ringway sends a WAF: the client's request line and fields, the real client and
//! the request id, and the inspected body framed with Content-Length.

use crate::config::WafConfig;
use crate::filter::FilterRequest;
use crate::http::{push_header, push_u64};

/// Fields never passed on besides the hop-by-hop ones (the WAF connection is ours, and the rule
/// is the upstream head's, `proxy::is_hop_by_hop`): framing (the body is re-framed) and the two
/// the gateway sets itself.
const DROPPED: [&str; 4] = ["content-length", "expect", "x-forwarded-for", "x-request-id"];

/// Writes the WAF request for `req` into `out`.
pub fn write_request(out: &mut Vec<u8>, config: &WafConfig, req: &FilterRequest<'_>) {
    let head = req.head;
    out.extend_from_slice(head.method());
    out.push(b' ');
    out.extend_from_slice(config.path_prefix.as_bytes());
    // the target as the client sent it: a WAF judges the spelling, not the normalised path
    out.extend_from_slice(head.path());
    out.extend_from_slice(head.query());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // every `Connection` field counts, as for the upstream head
    let mut named: Vec<Vec<u8>> = Vec::new();
    head.for_each_header(&mut |name, value| {
        if name.eq_ignore_ascii_case("connection") {
            named.extend(crate::http::list_items(value).map(<[u8]>::to_vec));
        }
    });
    let named: Vec<&[u8]> = named.iter().map(Vec::as_slice).collect();
    head.for_each_header(&mut |name, value| {
        let hop = crate::proxy::is_hop_by_hop(name.as_bytes(), &named);
        if !hop && !DROPPED.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            push_header(out, name.as_bytes(), value);
        }
    });
    if head.header("host").is_none() {
        if let Some(authority) = head.authority() {
            push_header(out, b"host", authority); // absolute-form target
        }
    }
    push_header(out, b"x-forwarded-for", req.client.to_string().as_bytes());
    push_header(out, b"x-request-id", req.request_id);
    if req.body_truncated {
        push_header(out, b"x-body-truncated", b"1");
    }
    out.extend_from_slice(b"content-length: ");
    push_u64(out, req.body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(req.body);
}
