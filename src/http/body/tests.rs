//! Chunked decoder cases (docs/HTTP-EDGE-CASES.md table B), each also fed at every split point and
//! one byte at a time.

use super::*;

/// Decodes `raw` in pieces of `step` bytes (carrying unconsumed bytes like the proxy does).
fn decode_in_steps(raw: &[u8], step: usize) -> Result<(Vec<u8>, usize), ParseError> {
    let mut d = ChunkedDecoder::new(1 << 20, 1024);
    let mut data = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    for piece in raw.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        let n = d.feed(&pending, |s| data.extend_from_slice(s))?;
        fed += n;
        pending.drain(..n);
        if d.is_done() {
            break;
        }
    }
    if !d.is_done() {
        return Err(ParseError::BadRequest("incomplete"));
    }
    Ok((data, fed))
}

/// Same result at every split point and byte by byte.
fn decode(raw: &[u8]) -> Result<(Vec<u8>, usize), ParseError> {
    let whole = decode_in_steps(raw, raw.len());
    assert_eq!(decode_in_steps(raw, 1), whole, "byte-by-byte differs");
    for cut in 1..raw.len() {
        let mut d = ChunkedDecoder::new(1 << 20, 1024);
        let mut data = Vec::new();
        let first = d.feed(&raw[..cut], |s| data.extend_from_slice(s));
        let split = first.and_then(|n| {
            let rest = [&raw[n..cut], &raw[cut..]].concat();
            let m = d.feed(&rest, |s| data.extend_from_slice(s))?;
            if d.is_done() {
                Ok((data, n + m))
            } else {
                Err(ParseError::BadRequest("incomplete"))
            }
        });
        assert_eq!(split, whole, "split at {cut} differs");
    }
    whole
}

#[test]
fn decodes_chunks_and_stops_at_the_end() {
    let raw = b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\nGET /next";
    assert_eq!(decode(&raw[..raw.len() - 9]), Ok((b"abc0123456789".to_vec(), raw.len() - 9)));
    let mut d = ChunkedDecoder::new(0, 1024);
    let n = d.feed(raw, |_| {}).unwrap();
    assert_eq!(&raw[n..], b"GET /next", "bytes after the body are left for the next request");
}

#[test]
fn bad_chunk_sizes_b1_b2_b3() {
    for raw in [&b"0x1\r\na\r\n0\r\n\r\n"[..], b"1_0\r\n", b"+1\r\na\r\n", b"-1\r\n", b" 1\r\na\r\n", b"\r\n\r\n"] {
        assert!(matches!(decode(raw), Err(ParseError::BadRequest(_))), "{}", String::from_utf8_lossy(raw));
    }
    assert!(decode(b"FFFFFFFFFFFFFFFFF1\r\n").is_err());
    assert!(decode(b"FFFFFFFFFFFFFFFF\r\n").is_err());
}

#[test]
fn chunk_sizes_with_leading_zeros_are_valid() {
    assert_eq!(decode(b"00000000000000005\r\nhello\r\n0000\r\n\r\n").map(|(d, _)| d), Ok(b"hello".to_vec()));
    assert!(decode(b"00000000000000000FFFFFFFFFFFFFFFF\r\n").is_err(), "the value still must fit");
}

#[test]
fn body_limit_is_413() {
    let mut d = ChunkedDecoder::new(4, 1024);
    assert_eq!(d.feed(b"5\r\nhello\r\n", |_| {}), Err(ParseError::BodyTooLarge));
}

#[test]
fn extensions_b4() {
    assert_eq!(decode(b"1;a=b\r\nZ\r\n0\r\n\r\n").unwrap().0, b"Z"); // B4a
    assert_eq!(decode(b"1 ; a = \"q\\\"x\"\r\nZ\r\n0;z\r\n\r\n").unwrap().0, b"Z");
    assert!(decode(b"1;\r\nZ\r\n0\r\n\r\n").is_err()); // B4b
    assert!(decode(b"1\r;a\r\nZ\r\n0\r\n\r\n").is_err()); // B4c
    assert!(decode(b"1;a\0\r\nZ\r\n0\r\n\r\n").is_err()); // B4d
    let long = format!("1;a={}\r\nZ\r\n0\r\n\r\n", "b".repeat(64 * 1024));
    let mut d = ChunkedDecoder::new(0, 1024);
    assert!(d.feed(long.as_bytes(), |_| {}).is_err()); // B4e
}

#[test]
fn bare_lf_and_bad_data_framing_b5_b6() {
    assert!(decode(b"1\nZ\r\n0\r\n\r\n").is_err()); // B5
    assert!(decode(b"1\r\nZZZ\r\n0\r\n\r\n").is_err()); // B6
    assert!(decode(b"1\r\nZ0\r\n\r\n").is_err());
}

#[test]
fn trailers_are_validated_and_dropped_b8_b9() {
    assert_eq!(decode(b"1\r\nZ\r\n0\r\nContent-Length: 5\r\nX: y\r\n\r\n").unwrap().0, b"Z");
    assert!(decode(b"1\r\nZ\r\n0\r\nno colon\r\n\r\n").is_err());
    let big = format!("0\r\nX: {}\r\n\r\n", "v".repeat(2000));
    assert_eq!(decode_in_steps(big.as_bytes(), 100), Err(ParseError::HeaderTooLarge));
}

#[test]
fn incomplete_body_is_not_done_b7() {
    let mut d = ChunkedDecoder::new(0, 1024);
    let n = d.feed(b"5\r\nabc", |_| {}).unwrap();
    assert_eq!(n, 6);
    assert!(!d.is_done());
}
