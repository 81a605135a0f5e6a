//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and by `cargo test`, which
//! replays the committed seed corpus (`fuzz/corpus/<target>/`) through the same functions. Each
//! function must never panic on any input, except where it asserts a property (a finding).
#![doc(hidden)]

use crate::config::{compile, MethodSet, PathPattern, RouteTable};
use crate::http::{header_buf, parse_request, parse_response, BodyKind, ChunkedDecoder, HeadLimits};

const LIMITS: HeadLimits = HeadLimits { max_request_line_bytes: 8192, max_header_bytes: 32768, max_headers: 100 };

/// Request head parser, then re-serialisation: a parsed head written out by the gateway must
/// parse again to the same method, path, query and framing.
pub fn parse_request_roundtrip(data: &[u8]) {
    let mut headers = header_buf();
    let Ok(Some(head)) = parse_request(data, &mut headers, &LIMITS) else { return };
    let out = crate::proxy::serialize_for_fuzz(&head);
    // the gateway adds up to 6 fields (Host, X-Forwarded-*, X-Request-Id, Via) and their bytes
    let grown =
        HeadLimits { max_headers: LIMITS.max_headers + 8, max_header_bytes: LIMITS.max_header_bytes + 1024, ..LIMITS };
    let mut again = header_buf();
    match parse_request(&out, &mut again, &grown) {
        Ok(Some(h2)) => {
            assert_eq!(h2.method, head.method);
            assert_eq!(h2.query, head.query);
            assert_eq!(h2.body, head.body);
            assert_eq!(h2.head_len, out.len());
        }
        other => panic!("re-serialised head does not parse: {other:?}\n{}", String::from_utf8_lossy(&out)),
    }
}

/// Response head parser (with and without a HEAD request).
pub fn parse_response_any(data: &[u8]) {
    for head_request in [false, true] {
        let mut headers = header_buf();
        if let Ok(Some(h)) = parse_response(data, &mut headers, 32768, head_request) {
            assert!(h.head_len <= data.len());
            if head_request {
                assert_eq!(h.body, BodyKind::None);
            }
        }
    }
}

/// Chunked decoder: the first two bytes pick split points; decoding in pieces must give the same
/// data and the same outcome as decoding at once.
pub fn chunked_split_invariance(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let (a, b) = (usize::from(data[0]), usize::from(data[1]));
    let body = &data[2..];
    let whole = decode(body, &[body.len()]);
    let split = decode(body, &[a.min(body.len()), (a + b).min(body.len()), body.len()]);
    assert_eq!(whole, split, "split at {a},{} changed the result", a + b);
}

fn decode(body: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool), crate::http::ParseError> {
    let mut d = ChunkedDecoder::new(1 << 20, 4096);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        pending.extend_from_slice(&body[start..cut.max(start)]);
        start = cut.max(start);
        let n = d.feed(&pending, |s| out.extend_from_slice(s))?;
        pending.drain(..n);
        if d.is_done() {
            break;
        }
    }
    Ok((out, d.is_done()))
}

/// Router: arbitrary host, method and path against a fixed table.
pub fn route_any(data: &[u8]) {
    thread_local! {
        static TABLE: RouteTable = {
            let mut t = RouteTable::default();
            t.add_service(0, &["shop.example.com".into(), "*.example.org".into()], "/shop");
            t.add_service(1, &[], "");
            for (i, p) in ["/orders", "/orders/{id}", "/static/*", "/a/{b}/c"].iter().enumerate() {
                t.add_api(0, i, &PathPattern::parse(p).unwrap(), MethodSet::any());
            }
            t.add_api(1, 4, &PathPattern::parse("/*").unwrap(), MethodSet::default());
            t.finish();
            t
        };
    }
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (host, method, path) =
        (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    TABLE.with(|t| {
        let _ = t.find(host, method, path);
    });
}

/// Config compiler: arbitrary text never panics; errors always name a line or a key.
pub fn config_any(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = compile(text, 1) {
        assert!(!e.message.is_empty());
    }
}

/// Path normalisation: the first byte picks the rules; the result is a path, has no `.` or `..`
/// segment, and normalising it again changes nothing.
pub fn normalize_path(data: &[u8]) {
    use crate::http::{normalize_path, EscapedSlashes, PathRules};
    let Some((&pick, rest)) = data.split_first() else { return };
    let rules = PathRules {
        escaped_slashes: if pick & 1 == 0 { EscapedSlashes::Keep } else { EscapedSlashes::Reject },
        merge_slashes: pick & 2 != 0,
    };
    let mut path = vec![b'/'];
    path.extend_from_slice(rest);
    let Ok(once) = normalize_path(&path, rules) else { return };
    let once = once.map_or(path.clone(), |p| p.to_vec());
    assert_eq!(once.first(), Some(&b'/'), "{}", String::from_utf8_lossy(&once));
    assert!(
        !once.split(|&b| b == b'/').any(|seg| seg == b"." || seg == b".."),
        "dot segment left in {}",
        String::from_utf8_lossy(&once)
    );
    let twice = normalize_path(&once, rules).expect("a normalised path stays valid");
    assert!(twice.is_none_or(|t| t[..] == once[..]), "not idempotent: {}", String::from_utf8_lossy(&once));
}

/// A public ES256 key (JWKS) and an HMAC secret the credentials target verifies against.
const FUZZ_JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "Dsj3YrfhwnCywdUhVRS1pec1ArwrRiJdDYNCvgUAydg", "y": "j2gzkX94DLgKp5Ak-GfLnoLAvfhBsiYmcGQcZiuO2XY", "kid": "es-1", "alg": "ES256", "use": "sig"}]}"#;

/// Credentials: the first byte picks the parser. Tokens never panic the verifier and never
/// verify (nobody but the key holder can sign); key files and JWKS documents never panic;
/// `Authorization` and query parsing never panic.
pub fn credentials_any(data: &[u8]) {
    use crate::policy::jwt::{keys_from_jwks, verify, JwtKey, JwtRule};
    let Some((&pick, rest)) = data.split_first() else { return };
    match pick % 4 {
        0 => {
            let (keys, _) = keys_from_jwks(FUZZ_JWKS).expect("the fuzz JWKS is valid");
            let mut hs = vec![JwtKey {
                kid: None,
                alg: jsonwebtoken::Algorithm::HS256,
                key: jsonwebtoken::DecodingKey::from_secret(b"fuzz-secret-fuzz-secret-fuzz-secret!"),
            }];
            hs.extend(keys);
            let rule = JwtRule { issuer: None, audience: None, keys: hs };
            let result = verify(rest, &[0], |_| Some(&rule));
            assert!(result.is_err(), "an unsigned input verified: {}", String::from_utf8_lossy(rest));
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = keys_from_jwks(text);
            }
        }
        2 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(keys) = crate::policy::keys::parse_key_file(text) {
                    assert!(keys.iter().all(|k| crate::policy::keys::check_key(k).is_ok()));
                }
            }
        }
        _ => {
            let _ = crate::policy::auth::bearer(rest);
            let _ = crate::policy::auth::query_param(rest, "apikey");
            let mut out = Vec::new();
            crate::policy::auth::strip_query_param(rest, "apikey", &mut out);
            assert!(crate::policy::auth::query_param(&out, "apikey").is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every committed seed through its target.
    #[test]
    fn seed_corpus_replays_without_panics() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus");
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 7] = [
            ("parse_request", parse_request_roundtrip),
            ("parse_response", parse_response_any),
            ("chunked", chunked_split_invariance),
            ("route", route_any),
            ("config", config_any),
            ("normalize_path", normalize_path),
            ("credentials", credentials_any),
        ];
        let mut replayed = 0;
        for (name, f) in targets {
            let dir = std::path::Path::new(root).join(name);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                f(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed >= 25, "seed corpus too small: {replayed}");
    }
}
