//! Request-path normalisation before routing (RFC 3986 §6.2.2): the path the router matches is the
//! path the upstream receives, so a base path is an access boundary (`/public/../admin` cannot
//! reach `/admin` through an API routed on `/public`).
//!
//! Steps, in order: percent-encoded *unreserved* characters are decoded (`%2e` → `.`, `%41` →
//! `A`); `%2F` / `%5C` (encoded slash, backslash) are kept encoded or refused, by config, like
//! Envoy's `path_with_escaped_slashes_action`; other escapes stay as they are; optionally `//`
//! runs are merged; then dot segments are removed (§5.2.4). Invalid escapes (`%zz`, a `%` at the
//! end) are refused. The result never contains a `.` or `..` segment, and normalising it again
//! gives the same bytes (fuzzed: `fuzz_logic::normalize_path`).
//!
//! Pure and allocation-free for paths that are already normal (the common case).

use smallvec::SmallVec;

use super::ParseError;

/// What to do with `%2F` and `%5C` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Forward them encoded (they never split segments, so they never climb directories).
    #[default]
    Keep,
    /// Answer 400.
    Reject,
}

/// Normalisation settings (`[http]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathRules {
    pub escaped_slashes: EscapedSlashes,
    pub merge_slashes: bool,
}

/// A normalised path: borrowed when nothing changed.
pub type NormalPath = SmallVec<[u8; 128]>;

/// `Ok(None)`: `path` is already normal (use it as is). `Ok(Some(p))`: use `p`.
pub fn normalize(path: &[u8], rules: PathRules) -> Result<Option<NormalPath>, ParseError> {
    if is_normal(path, rules) {
        return Ok(None);
    }
    let decoded = decode_unreserved(path, rules)?;
    let merged = if rules.merge_slashes { merge_slashes(&decoded) } else { decoded };
    Ok(Some(remove_dot_segments(&merged)))
}

/// Fast check: no escapes, no dot segments, no `//` when merging. Anything else (including an
/// escaped slash to refuse) goes through the full normalisation.
fn is_normal(path: &[u8], rules: PathRules) -> bool {
    path.iter().enumerate().all(|(i, &b)| match b {
        b'%' => false,
        b'.' if path[..i].ends_with(b"/") => {
            let rest = &path[i..];
            !(rest == b"." || rest == b".." || rest.starts_with(b"./") || rest.starts_with(b"../"))
        }
        b'/' => !(rules.merge_slashes && path[..i].ends_with(b"/")),
        _ => true,
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode_unreserved(path: &[u8], rules: PathRules) -> Result<NormalPath, ParseError> {
    let mut out = NormalPath::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] != b'%' {
            out.push(path[i]);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (path.get(i + 1).copied().and_then(hex), path.get(i + 2).copied().and_then(hex))
        else {
            return Err(ParseError::BadRequest("invalid percent-encoding in path"));
        };
        let byte = hi << 4 | lo;
        if rules.escaped_slashes == EscapedSlashes::Reject && matches!(byte, b'/' | b'\\') {
            return Err(ParseError::BadRequest("escaped slash in path"));
        }
        if is_unreserved(byte) {
            out.push(byte);
        } else {
            // kept encoded, with upper-case hex digits (RFC 3986 §6.2.2.1)
            out.extend_from_slice(&[b'%', path[i + 1].to_ascii_uppercase(), path[i + 2].to_ascii_uppercase()]);
        }
        i += 3;
    }
    Ok(out)
}

fn merge_slashes(path: &[u8]) -> NormalPath {
    let mut out = NormalPath::with_capacity(path.len());
    for &b in path {
        if !(b == b'/' && out.last() == Some(&b'/')) {
            out.push(b);
        }
    }
    out
}

/// RFC 3986 §5.2.4 on an absolute path (starts with `/`): `.` segments vanish, `..` removes the
/// segment before it and never climbs above the root.
fn remove_dot_segments(path: &[u8]) -> NormalPath {
    let mut out = NormalPath::with_capacity(path.len());
    // segments after the leading '/'; a trailing "." or ".." leaves a trailing '/'
    let body = path.strip_prefix(b"/").unwrap_or(path);
    let segments: SmallVec<[&[u8]; 16]> = body.split(|&b| b == b'/').collect();
    let mut kept: SmallVec<[&[u8]; 16]> = SmallVec::new();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            b"." => trailing_slash = i == last,
            b".." => {
                kept.pop();
                trailing_slash = i == last;
            }
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    out.push(b'/');
    for (i, seg) in kept.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(seg);
    }
    if trailing_slash && !kept.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests;
