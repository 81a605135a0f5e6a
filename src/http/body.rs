//! Body framing (`BodyKind`) and the incremental, strict chunked decoder (docs/HTTP-EDGE-CASES.md table B).
//!
//! The decoder is pure: it consumes what it can from the caller's buffer, hands out data slices,
//! and leaves an incomplete line unconsumed for the next call, so it works at any split point.
//! Chunk extensions and trailers are validated and dropped, never forwarded.

use super::error::ParseError;
use super::is_tchar;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    /// Response only: the body ends when the upstream closes.
    UntilClose,
}

/// A chunk-size line (size plus extensions) longer than this is refused.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// Extension bytes allowed over a whole message.
const MAX_EXTENSION_BYTES: usize = 16 * 1024;
/// Chunk sizes are refused above this even before the body limit applies (no u64 overflow games).
const MAX_CHUNK_SIZE: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data,
    DataEnd,
    Trailer,
    Done,
}

/// Incremental chunked-body decoder.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    remaining: u64,
    total: u64,
    limit: u64,
    ext_bytes: usize,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// `limit`: largest decoded body accepted (0 = unlimited); `max_trailer_bytes`: trailer section cap.
    pub fn new(limit: u64, max_trailer_bytes: usize) -> Self {
        Self { state: State::Size, remaining: 0, total: 0, limit, ext_bytes: 0, trailer_bytes: 0, max_trailer_bytes }
    }

    /// The terminating chunk and trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded body bytes so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Consumes bytes from `input`, calling `on_data` for each run of body bytes. Returns how many
    /// bytes were consumed; the rest (an incomplete line) must be offered again with more data.
    pub fn feed(&mut self, input: &[u8], mut on_data: impl FnMut(&[u8])) -> Result<usize, ParseError> {
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            let rest = &input[pos..];
            let used = match self.state {
                State::Size => self.size_line(rest)?,
                State::Data => {
                    let n = rest.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    on_data(&rest[..n]);
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataEnd;
                    }
                    Some(n)
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        self.state = State::Size;
                        Some(2)
                    }
                    [b'\r'] => None,
                    _ => return Err(ParseError::BadRequest("chunk data not followed by CRLF")),
                },
                State::Trailer => self.trailer_line(rest)?,
                State::Done => Some(0),
            };
            match used {
                Some(n) => pos += n,
                None => break,
            }
        }
        Ok(pos)
    }

    fn size_line(&mut self, rest: &[u8]) -> Result<Option<usize>, ParseError> {
        let Some(line_len) = find_crlf(rest, MAX_CHUNK_LINE_BYTES)? else {
            return Ok(None);
        };
        let line = &rest[..line_len];
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        // leading zeros are valid (`1*HEXDIG`); what is left must fit before the size check
        let zeros = line[..digits].iter().take_while(|&&b| b == b'0').count();
        if digits == 0 || digits - zeros > 16 {
            return Err(ParseError::BadRequest("invalid chunk size"));
        }
        let size = line[zeros..digits].iter().fold(0u64, |acc, &d| (acc << 4) | hex_val(d));
        if size > MAX_CHUNK_SIZE {
            return Err(ParseError::BadRequest("chunk size too large"));
        }
        let ext = &line[digits..];
        self.ext_bytes += ext.len();
        if self.ext_bytes > MAX_EXTENSION_BYTES {
            return Err(ParseError::BadRequest("chunk extensions too long"));
        }
        check_extensions(ext)?;
        self.total = self.total.saturating_add(size);
        if self.limit != 0 && self.total > self.limit {
            return Err(ParseError::BodyTooLarge);
        }
        self.remaining = size;
        self.state = if size == 0 { State::Trailer } else { State::Data };
        Ok(Some(line_len + 2))
    }

    fn trailer_line(&mut self, rest: &[u8]) -> Result<Option<usize>, ParseError> {
        let Some(line_len) = find_crlf(rest, usize::MAX)? else {
            if self.trailer_bytes + rest.len() > self.max_trailer_bytes {
                return Err(ParseError::HeaderTooLarge);
            }
            return Ok(None);
        };
        self.trailer_bytes += line_len + 2;
        if self.trailer_bytes > self.max_trailer_bytes {
            return Err(ParseError::HeaderTooLarge);
        }
        let line = &rest[..line_len];
        if line.is_empty() {
            self.state = State::Done;
        } else {
            check_trailer_field(line)?;
        }
        Ok(Some(line_len + 2))
    }
}

/// Length of the line before CRLF; `None` if incomplete; bare CR or LF is an error.
fn find_crlf(rest: &[u8], max: usize) -> Result<Option<usize>, ParseError> {
    for (i, &b) in rest.iter().enumerate() {
        if i > max {
            return Err(ParseError::BadRequest("chunk or trailer line too long"));
        }
        match b {
            b'\n' => return Err(ParseError::BadRequest("bare LF in chunked framing")),
            b'\r' => {
                return match rest.get(i + 1) {
                    Some(b'\n') => Ok(Some(i)),
                    Some(_) => Err(ParseError::BadRequest("bare CR in chunked framing")),
                    None => Ok(None),
                }
            }
            _ => {}
        }
    }
    if rest.len() > max {
        return Err(ParseError::BadRequest("chunk or trailer line too long"));
    }
    Ok(None)
}

fn hex_val(d: u8) -> u64 {
    u64::from(match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    })
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`
fn check_extensions(mut ext: &[u8]) -> Result<(), ParseError> {
    const BAD: ParseError = ParseError::BadRequest("invalid chunk extension");
    let skip_ws = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
    let token = |s: &[u8]| -> usize { s.iter().take_while(|&&b| is_tchar(b)).count() };
    loop {
        ext = &ext[skip_ws(ext)..];
        if ext.is_empty() {
            return Ok(());
        }
        if ext[0] != b';' {
            return Err(BAD);
        }
        ext = &ext[1..];
        ext = &ext[skip_ws(ext)..];
        let n = token(ext);
        if n == 0 {
            return Err(BAD);
        }
        ext = &ext[n..];
        let ws = skip_ws(ext);
        if ext.get(ws) != Some(&b'=') {
            continue;
        }
        ext = &ext[ws + 1..];
        ext = &ext[skip_ws(ext)..];
        if ext.first() == Some(&b'"') {
            ext = &ext[quoted_len(ext).ok_or(BAD)?..];
        } else {
            let n = token(ext);
            if n == 0 {
                return Err(BAD);
            }
            ext = &ext[n..];
        }
    }
}

/// Length of a quoted-string starting at `s[0] == '"'`, or `None` if invalid.
fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' if i + 1 < s.len() && (s[i + 1] == b'\t' || s[i + 1] >= 0x20) && s[i + 1] != 0x7f => i += 2,
            b'\t' | 0x20..=0x7e | 0x80..=0xff if s[i] != b'\\' => i += 1,
            _ => return None,
        }
    }
    None
}

fn check_trailer_field(line: &[u8]) -> Result<(), ParseError> {
    const BAD: ParseError = ParseError::BadRequest("invalid trailer field");
    let colon = line.iter().position(|&b| b == b':').ok_or(BAD)?;
    if colon == 0 || !line[..colon].iter().all(|&b| is_tchar(b)) {
        return Err(BAD);
    }
    if line[colon + 1..].iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(BAD);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
