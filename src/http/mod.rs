//! HTTP/1.1 codec: strict parsing over `httparse`, chunked decoding, head serialisation. No I/O.
//!
//! Split like hyper's h1 codec: `parse` turns bytes into borrowed heads (or a [`ParseError`]),
//! `body` frames and decodes bodies incrementally, `encode` writes heads and chunk framing. The
//! proxy's connection loop (`proxy/`) owns the buffers and the sockets.
//!
//! Invariants:
//! - parsing never panics and never allocates per header; every refusal is a `ParseError`;
//! - a message is framed exactly one way (`BodyKind`); ambiguous framing is an error, not a guess.

mod body;
pub mod date;
mod encode;
mod error;
mod parse;
mod path;

pub use body::{BodyKind, ChunkedDecoder};
pub use encode::{push_chunk_header, push_header, push_status_line, push_u64, reason};
pub use error::ParseError;
pub use parse::{
    header_buf, list_items, parse_request, parse_response, HeadLimits, HeaderBuf, RequestHead, ResponseHead, Version,
    MAX_HEADERS_CAP,
};
pub use path::{normalize as normalize_path, EscapedSlashes, NormalPath, PathRules};

/// Case-insensitive ASCII comparison of a header name or token.
#[inline]
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether a 101 response's `Upgrade` value names a protocol the client offered (protocol names
/// compared case-insensitively, versions must match when the response gives one).
pub fn upgrade_accepted(offered: &[u8], chosen: &[u8]) -> bool {
    let chosen = list_items(chosen).next().unwrap_or_default();
    !chosen.is_empty()
        && list_items(offered).any(|o| {
            eq_ignore_case(o, chosen) || eq_ignore_case(o.split(|&b| b == b'/').next().unwrap_or_default(), chosen)
        })
}

/// RFC 9110 `tchar`.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
