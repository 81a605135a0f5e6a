//! JWT consumers: RS256/ES256 (and their larger siblings, EdDSA) against a JWKS file, HS256/384/512
//! against a shared secret. Verification is the `jsonwebtoken` crate's; this module only finds
//! which consumer and key a token is for, and caches tokens it verified, per core, until they
//! expire.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::ConsumerId;

/// Tokens longer than this are refused unparsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `nbf`, seconds.
pub const LEEWAY_S: u64 = 30;
/// Verified tokens remembered per core (two generations of half this each).
pub const CACHE_TOKENS: usize = 10_000;

/// One verification key with the algorithm it is for.
pub struct JwtKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

/// A consumer's `jwt = { .. }`.
#[derive(Debug)]
pub struct JwtRule {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub keys: Vec<JwtKey>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not a JWT, oversized, an algorithm no key is for, `alg: none`.
    Malformed,
    /// Signature, issuer, audience or `nbf` do not check out, or no consumer has a key for it.
    Invalid,
    Expired,
}

/// The keys of a JWKS document that ringway can use: RSA (RS256/384/512, PS256/384/512 when the
/// key says so), EC P-256/P-384 (ES256/ES384), Ed25519 (EdDSA). `Err` names why the document is
/// unusable; keys of other kinds are skipped (their `kid`s are returned in `.1`).
pub fn keys_from_jwks(json: &str) -> Result<(Vec<JwtKey>, Vec<String>), String> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let declared = jwk.common.key_algorithm.and_then(from_key_algorithm);
        let alg = match (&jwk.algorithm, declared) {
            (AlgorithmParameters::RSA(_), Some(a)) if is_rsa(a) => Some(a),
            (AlgorithmParameters::RSA(_), None) => Some(Algorithm::RS256),
            (AlgorithmParameters::EllipticCurve(p), _) => match p.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            (AlgorithmParameters::OctetKeyPair(_), _) => Some(Algorithm::EdDSA),
            _ => None,
        };
        match (alg, DecodingKey::from_jwk(jwk)) {
            (Some(alg), Ok(key)) => keys.push(JwtKey { kid, alg, key }),
            _ => skipped.push(kid.unwrap_or_else(|| "(no kid)".into())),
        }
    }
    if keys.is_empty() {
        return Err("no usable key (RSA, EC P-256/P-384 or Ed25519)".into());
    }
    Ok((keys, skipped))
}

fn is_rsa(a: Algorithm) -> bool {
    matches!(
        a,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512
    )
}

fn from_key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Parses an HMAC algorithm name ("HS256", "HS384", "HS512").
pub fn hmac_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
}

/// The `iss` claim, read without verifying anything (it only picks whose keys to try).
fn peek_issuer(token: &str) -> Result<Option<String>, JwtError> {
    use base64::Engine;
    let payload = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| JwtError::Malformed)?;
    let peek: Peek = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    Ok(peek.iss)
}

/// Verifies `token` against the consumers in `order` (those with a `jwt` rule, config order):
/// first those whose `issuer` is the token's `iss`, then those without an issuer. Returns the
/// consumer and the token's `exp`.
pub fn verify<'r>(
    token: &[u8],
    order: &[ConsumerId],
    rule_of: impl Fn(ConsumerId) -> Option<&'r JwtRule>,
) -> Result<(ConsumerId, u64), JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let token = std::str::from_utf8(token).map_err(|_| JwtError::Malformed)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    let iss = peek_issuer(token)?;
    let by_issuer = order.iter().filter(|&&c| rule_of(c).is_some_and(|r| r.issuer.is_some() && r.issuer == iss));
    let open = order.iter().filter(|&&c| rule_of(c).is_some_and(|r| r.issuer.is_none()));
    let mut worst = JwtError::Invalid;
    let mut any_key = false;
    for &c in by_issuer.chain(open) {
        let Some(rule) = rule_of(c) else { continue };
        let candidates = rule
            .keys
            .iter()
            .filter(|k| k.alg == header.alg && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid));
        for key in candidates {
            any_key = true;
            let mut v = Validation::new(key.alg);
            v.leeway = LEEWAY_S;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp"]);
            match &rule.issuer {
                Some(i) => v.set_issuer(&[i]),
                None => v.iss = None,
            }
            match &rule.audience {
                Some(a) => v.set_audience(&[a]),
                None => v.validate_aud = false,
            }
            match jsonwebtoken::decode::<Claims>(token, &key.key, &v) {
                Ok(data) => return Ok((c, data.claims.exp)),
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                    worst = JwtError::Expired
                }
                Err(_) => {}
            }
        }
    }
    if !any_key {
        // no consumer has a key for this algorithm (or key id): as good as malformed
        return Err(JwtError::Malformed);
    }
    Err(worst)
}

/// Tokens this core verified, until they expire: a hit skips the signature check. Bounded: two
/// generations of `CACHE_TOKENS / 2`; when the young one is full it becomes the old one.
#[derive(Default)]
pub struct TokenCache {
    young: HashMap<Box<[u8]>, (ConsumerId, u64), ahash::RandomState>,
    old: HashMap<Box<[u8]>, (ConsumerId, u64), ahash::RandomState>,
}

impl TokenCache {
    /// The consumer of a token verified earlier and not expired at `now_s` (Unix seconds).
    pub fn get(&mut self, token: &[u8], now_s: u64) -> Option<ConsumerId> {
        let hit = self.young.get(token).or_else(|| self.old.get(token)).copied();
        match hit {
            Some((c, exp)) if now_s <= exp + LEEWAY_S => Some(c),
            Some(_) => {
                self.young.remove(token);
                self.old.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn insert(&mut self, token: &[u8], consumer: ConsumerId, exp: u64) {
        if self.young.len() >= CACHE_TOKENS / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(token.into(), (consumer, exp));
    }
}
