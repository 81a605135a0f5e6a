//! Reading the start of a request body ahead, for filters that inspect it (the WAF). The bytes
//! stay in the client connection's buffer, so forwarding later sends the whole body as usual;
//! the filters get a decoded copy.

use super::io::{write_out, Conn};
use super::request::Request;
use crate::error::{Error, Kind};
use crate::http::{BodyKind, ChunkedDecoder};
use crate::runtime::Generation;

/// Raw bytes buffered for a chunked body at most this many times what is wanted (plus a
/// little): a body of tiny chunks stops early and counts as truncated.
const CHUNKED_OVERHEAD: usize = 4;
const MIN_READ_AHEAD: usize = 16 * 1024;

/// Puts up to `want` body bytes of `req` into `body` (decoded), reading ahead as needed without
/// consuming anything. Returns whether more body followed. Sends `100 Continue` first when the
/// client waits for one (and forwarding then does not send another).
pub(super) async fn peek_body(
    gen: &Generation,
    client: &mut Conn,
    req: &mut Request,
    want: usize,
    body: &mut Vec<u8>,
) -> Result<bool, Error> {
    let http = &gen.snapshot.http;
    let has_body = !matches!(req.body, BodyKind::None | BodyKind::Length(0));
    if !has_body || want == 0 {
        return Ok(has_body);
    }
    if req.expect_continue && client.pending().is_empty() {
        let mut out = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        write_out(&mut client.stream, &mut out, http.send_timeout)
            .await
            .map_err(|_| Error::downstream(Kind::DownstreamClosed))?;
        req.expect_continue = false;
    }
    loop {
        let pending = client.pending();
        let cap = match req.body {
            BodyKind::Length(n) => {
                let need = usize::try_from(n).unwrap_or(usize::MAX).min(want);
                if pending.len() >= need {
                    body.extend_from_slice(&pending[..need]);
                    return Ok(n > want as u64);
                }
                need.max(MIN_READ_AHEAD)
            }
            _ => {
                // decode what is buffered so far (from the start: nothing is consumed)
                body.clear();
                let mut decoder = ChunkedDecoder::new(0, http.max_header_bytes);
                decoder.feed(pending, |data| {
                    let room = (want + 1).saturating_sub(body.len());
                    body.extend_from_slice(&data[..data.len().min(room)]);
                })?;
                let cap = (want * CHUNKED_OVERHEAD).max(MIN_READ_AHEAD);
                if decoder.is_done() || body.len() > want || pending.len() >= cap {
                    let truncated = !decoder.is_done() || body.len() > want;
                    body.truncate(want);
                    return Ok(truncated);
                }
                cap
            }
        };
        match client.fill(http.body_timeout, cap).await {
            Ok(0) => return Err(Error::downstream(Kind::DownstreamClosed)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(Error::downstream(Kind::ClientTimeout)),
            Err(_) => return Err(Error::downstream(Kind::DownstreamClosed)),
        }
    }
}
