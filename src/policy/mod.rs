//! API policies, decided in fixed phases of the request path: who calls (consumers identified by
//! an API key or a JWT), whether they may call this API, what the upstream request and the client
//! response look like (header rewrites, the upstream Host), and CORS.
//!
//! Everything here is compiled from the config ([`crate::config`]) and immutable per generation,
//! except the per-core cache of verified tokens ([`jwt::TokenCache`]).
//!
//! | phase | where | answers |
//! |---|---|---|
//! | CORS preflight (after routing) | [`cors::preflight`] | 204, never forwarded |
//! | authenticate (before admission) | [`auth::authenticate`] | 401 + `WWW-Authenticate`; 403 |
//! | per-consumer rates | `limit` (consumer level, `limit_by = "consumer"`) | 429 |
//! | upstream head | `proxy::headers` (credential removed, consumer field, `request_headers`, `upstream_host`) | — |
//! | response head | `proxy::headers` (`response_headers`, CORS fields) | — |

pub mod auth;
pub mod cors;
pub mod jwt;
pub mod keys;

use std::sync::Arc;

use crate::limit::Rate;

/// Index into `Snapshot::consumers`.
pub type ConsumerId = usize;

/// `[consumer.NAME]`, compiled.
#[derive(Debug)]
pub struct Consumer {
    pub name: String,
    /// Its cap over every API it calls (`key_qps`, `key_burst`): one bucket for the instance.
    pub limit: Option<Rate>,
    pub jwt: Option<jwt::JwtRule>,
}

/// How an API identifies its callers (`auth = { .. }`; `None` on the API: public).
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub api_key: bool,
    pub jwt: bool,
    /// Request field that carries an API key (lower case).
    pub key_header: String,
    /// Query parameter that may carry an API key instead.
    pub key_query: Option<String>,
    /// Field that tells the upstream who called (lower case).
    pub consumer_header: String,
    /// `consumers = [..]`: only these may call (`None`: every consumer).
    pub allowed: Option<Vec<ConsumerId>>,
}

/// `set` / `remove` of a `request_headers` or `response_headers` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Lower-case names; a set field replaces every field of that name.
    pub set: Vec<(String, Vec<u8>)>,
    /// Lower-case names.
    pub remove: Vec<String>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// Whether a field of this name is replaced or removed.
    pub fn drops(&self, name: &[u8]) -> bool {
        let eq = |n: &str| crate::http::eq_ignore_case(name, n.as_bytes());
        self.remove.iter().any(|n| eq(n)) || self.set.iter().any(|(n, _)| eq(n))
    }
}

/// An API's policies besides authentication (`None` on the API when it has none).
#[derive(Debug, Default)]
pub struct ApiPolicy {
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    pub cors: Option<Arc<cors::Cors>>,
    /// `upstream_host`: the Host sent upstream instead of the client's.
    pub upstream_host: Option<String>,
}

/// The instance's credentials, built from every `[consumer.NAME]`.
#[derive(Debug, Default)]
pub struct Credentials {
    pub keys: keys::KeyTable,
    /// Consumers with a `jwt` rule, in config order.
    pub jwt_order: Vec<ConsumerId>,
}
