//! HTTP/2 for clients (docs/HTTP2.md): ALPN `h2` on HTTPS listeners, h2c by prior knowledge on
//! plain ones. The h2 crate speaks the protocol; every stream is translated to an HTTP/1.1
//! request and served by the same request phases as HTTP/1.1 (routing, limits, filters,
//! forwarding on the per-core HTTP/1.1 upstream pools, metrics, access log), through a byte
//! bridge that is the stream's `net::Stream`. The HTTP/1.1 codec is untouched.
//!
//! - [`conn`]: the connection (settings, accept loop, GOAWAY on drain, idle close, flood answer)
//! - [`guard`]: the frame-flood guard in front of h2's reads
//! - [`io`]: the connection's bytes through tokio's I/O traits, no buffer held while idle
//! - [`translate`]: HTTP/2 request → HTTP/1.1 head, HTTP/1.1 response head → HTTP/2
//! - [`bridge`]: a stream as a byte stream, with flow control both ways

pub mod bridge;
pub mod conn;
pub mod guard;
pub mod io;
pub mod translate;

pub use bridge::StreamIo;
pub use conn::serve;

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// GOAWAY(last stream 0, PROTOCOL_ERROR): the answer to a connection that negotiated h2 by
/// ALPN and then did not send the preface.
pub const GOAWAY_PROTOCOL_ERROR: &[u8] = &[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
