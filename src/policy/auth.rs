//! Authentication: which consumer sent a request, from an API key (a header or a query
//! parameter) or a JWT (`Authorization: Bearer`), and whether that consumer may call the API.

use super::jwt::{JwtError, TokenCache};
use super::{AuthPolicy, Consumer, ConsumerId, Credentials};
use crate::http::eq_ignore_case;

/// Where the credential was found (it is removed before the request goes upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    KeyHeader,
    KeyQuery,
    Bearer,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential of an accepted kind: 401.
    Missing,
    /// An API key that belongs to nobody: 401.
    BadKey,
    /// A token that does not verify: 401.
    BadToken(JwtError),
    /// A valid consumer this API does not allow: 403.
    NotAllowed(ConsumerId),
}

impl AuthFailure {
    /// For the access log's `error`.
    pub fn flag(self) -> &'static str {
        match self {
            AuthFailure::Missing => "auth_missing",
            AuthFailure::BadKey => "auth_bad_key",
            AuthFailure::BadToken(JwtError::Expired) => "auth_token_expired",
            AuthFailure::BadToken(_) => "auth_bad_token",
            AuthFailure::NotAllowed(_) => "auth_consumer_not_allowed",
        }
    }
}

/// What the request presented, found in its head.
pub struct Presented<'h> {
    pub key_header: Option<&'h [u8]>,
    pub query: &'h [u8],
    pub authorization: Option<&'h [u8]>,
}

/// Identifies the consumer. `now_s`: Unix seconds (token expiry).
pub fn authenticate(
    policy: &AuthPolicy,
    presented: &Presented<'_>,
    creds: &Credentials,
    consumers: &[Consumer],
    cache: &mut TokenCache,
    now_s: u64,
) -> Result<(ConsumerId, Via), AuthFailure> {
    let found = identify(policy, presented, creds, consumers, cache, now_s)?;
    match &policy.allowed {
        Some(allowed) if !allowed.contains(&found.0) => Err(AuthFailure::NotAllowed(found.0)),
        _ => Ok(found),
    }
}

fn identify(
    policy: &AuthPolicy,
    presented: &Presented<'_>,
    creds: &Credentials,
    consumers: &[Consumer],
    cache: &mut TokenCache,
    now_s: u64,
) -> Result<(ConsumerId, Via), AuthFailure> {
    if policy.api_key {
        let key = match (presented.key_header, &policy.key_query) {
            (Some(k), _) => Some((k, Via::KeyHeader)),
            (None, Some(name)) => query_param(presented.query, name).map(|k| (k, Via::KeyQuery)),
            (None, None) => None,
        };
        if let Some((key, via)) = key {
            // a key that is presented decides: a wrong one is not retried as something else
            return creds.keys.find(key).map(|c| (c, via)).ok_or(AuthFailure::BadKey);
        }
    }
    if policy.jwt {
        if let Some(token) = presented.authorization.and_then(bearer) {
            if let Some(c) = cache.get(token, now_s) {
                return Ok((c, Via::Bearer));
            }
            let rule_of = |c: ConsumerId| consumers.get(c).and_then(|c| c.jwt.as_ref());
            let (c, exp) = super::jwt::verify(token, &creds.jwt_order, rule_of).map_err(AuthFailure::BadToken)?;
            cache.insert(token, c, exp);
            return Ok((c, Via::Bearer));
        }
    }
    Err(AuthFailure::Missing)
}

/// The token of `Bearer <token>` (scheme case-insensitive).
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !eq_ignore_case(scheme, b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The value of the first `name=` parameter of `query` (with or without its leading `?`), as sent.
pub fn query_param<'q>(query: &'q [u8], name: &str) -> Option<&'q [u8]> {
    let q = query.strip_prefix(b"?").unwrap_or(query);
    q.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        (k == name.as_bytes()).then_some(v)
    })
}

/// `query` (with its `?`) without every `name=` parameter; `?` dropped when nothing is left.
pub fn strip_query_param(query: &[u8], name: &str, out: &mut Vec<u8>) {
    let q = query.strip_prefix(b"?").unwrap_or(query);
    for pair in q.split(|&b| b == b'&') {
        let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
        if key == name.as_bytes() || pair.is_empty() {
            continue;
        }
        out.push(if out.is_empty() { b'?' } else { b'&' });
        out.extend_from_slice(pair);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_found_and_removed() {
        assert_eq!(query_param(b"?a=1&apikey=k-1&b=2", "apikey"), Some(&b"k-1"[..]));
        assert_eq!(query_param(b"?apikeyx=1", "apikey"), None);
        let mut out = Vec::new();
        strip_query_param(b"?a=1&apikey=k-1&b=2", "apikey", &mut out);
        assert_eq!(out, b"?a=1&b=2");
        out.clear();
        strip_query_param(b"?apikey=k-1", "apikey", &mut out);
        assert_eq!(out, b"");
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(b"Bearer abc.def.ghi"), Some(&b"abc.def.ghi"[..]));
        assert_eq!(bearer(b"bearer   t "), Some(&b"t"[..]));
        assert_eq!(bearer(b"Basic dXNlcg=="), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer"), None);
    }
}
