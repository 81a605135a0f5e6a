//! Crate-wide proxy error: which side failed, what kind of failure, whether a retry is safe.
//!
//! Every failure on the request path becomes an [`Error`]; `proxy/respond.rs` is the one table
//! that turns it into a client-visible status (or into no response at all for downstream
//! transport errors). Module errors (`ParseError`, `ConfigError`) convert into it.

use std::fmt;

use crate::http::ParseError;

/// Who caused the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: bad input, slow client, disconnect.
    Downstream,
    /// The backend: refused, timed out, bad response.
    Upstream,
    /// Us: a bug or resource exhaustion.
    Internal,
}

/// What failed. Closed set; each maps to one status in `proxy::respond`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Malformed or refused request.
    Parse(ParseError),
    /// No service or API matches.
    NoRoute,
    /// The path matches but not the method; carries the `Allow` value.
    MethodNotAllowed(String),
    /// The client address is denied (or not allowed) by an IP list.
    Forbidden,
    /// The request's Host is not a name of the certificate its TLS connection negotiated.
    Misdirected,
    /// No valid credential for an API with `auth`: 401 with `WWW-Authenticate`.
    Unauthorized(Box<Challenge>),
    /// A valid consumer that the API does not allow: 403.
    ConsumerNotAllowed,
    /// A QPS cap refused the request.
    RateLimited(crate::limit::Refusal),
    /// The API's concurrency cap is reached.
    Overloaded,
    /// The client did not send the head (or body) in time.
    ClientTimeout,
    /// The client went away.
    DownstreamClosed,
    /// Every endpoint failed or none is available.
    NoHealthyEndpoint,
    ConnectRefused,
    ConnectTimeout,
    /// No response head within the API timeout, or the body stalled.
    ReadTimeout,
    /// The upstream closed or reset before a complete response head.
    UpstreamClosed,
    /// The upstream's response was malformed.
    BadUpstreamResponse(ParseError),
    /// The TLS handshake with the upstream failed; names why for the access log
    /// (`tls_cert_expired`, `tls_cert_name_mismatch`, `tls_cert_unknown_issuer`, ...).
    UpstreamTls(&'static str),
    Internal,
}

/// What a 401 says: the accepted credentials, and why (for the access log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `auth_missing`, `auth_bad_key`, `auth_bad_token`, `auth_token_expired`.
    pub flag: &'static str,
    /// The API-key field, when API keys are accepted.
    pub key_header: Option<String>,
    pub jwt: bool,
}

impl Challenge {
    /// The `WWW-Authenticate` value: a `Bearer` challenge (RFC 6750, with `error="invalid_token"`
    /// for a token that did not verify) and/or an `ApiKey` one naming the field.
    pub fn header_value(&self) -> String {
        let mut v = Vec::new();
        if self.jwt {
            let bad = matches!(self.flag, "auth_bad_token" | "auth_token_expired");
            v.push(if bad {
                "Bearer realm=\"ringway\", error=\"invalid_token\"".to_string()
            } else {
                "Bearer realm=\"ringway\"".to_string()
            });
        }
        if let Some(h) = &self.key_header {
            v.push(format!("ApiKey realm=\"ringway\", header=\"{h}\""));
        }
        v.join(", ")
    }
}

/// Whether the request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing reached the upstream (connect failure): retry on another endpoint is safe.
    Safe,
    /// A connection reused from the pool failed before any response byte: most likely the
    /// origin closed it while idle (the stale-pool race) and never saw the request. An idempotent
    /// request without a body is sent once more on a new connection; this is not one of the
    /// API's configured `retries`.
    StaleConnection,
    Never,
}

/// A failure on the request path.
#[derive(Debug)]
pub struct Error {
    pub side: Side,
    pub kind: Kind,
    pub retry: Retry,
    /// Where it happened, e.g. "connect 127.0.0.1:9001 from 127.0.0.2".
    pub context: String,
    pub source: Option<std::io::Error>,
}

impl Error {
    pub fn new(side: Side, kind: Kind, context: impl Into<String>) -> Self {
        Self { side, kind, retry: Retry::Never, context: context.into(), source: None }
    }

    pub fn downstream(kind: Kind) -> Self {
        Self::new(Side::Downstream, kind, "")
    }

    pub fn upstream(kind: Kind, context: impl Into<String>) -> Self {
        Self::new(Side::Upstream, kind, context)
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_source(mut self, source: std::io::Error) -> Self {
        self.source = Some(source);
        self
    }
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::downstream(Kind::Parse(e))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}", self.side, self.kind)?;
        if !self.context.is_empty() {
            write!(f, " ({})", self.context)?;
        }
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
