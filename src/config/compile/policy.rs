//! `[consumer.NAME]` sections and the policy keys of services and APIs: `auth`, `consumers`,
//! `request_headers`, `response_headers`, `cors`, `upstream_host`.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::{check_name, Compiler};
use crate::config::error::ConfigError;
use crate::config::file::{FileApi, FileAuth, FileConsumer, FileCors, FileHeaderRules, FileService};
use crate::http::is_tchar;
use crate::limit::Rate;
use crate::policy::cors::{is_origin, Cors};
use crate::policy::jwt::{hmac_algorithm, keys_from_jwks, JwtKey, JwtRule};
use crate::policy::keys::{check_key, parse_key_file};
use crate::policy::{ApiPolicy, AuthPolicy, Consumer, ConsumerId, Credentials, HeaderRules};

pub const DEFAULT_KEY_HEADER: &str = "x-api-key";
pub const DEFAULT_CONSUMER_HEADER: &str = "x-consumer";
pub const DEFAULT_CORS_MAX_AGE_S: u32 = 600;
/// Fields no rewrite may set or remove: framing, hop-by-hop, and Host (`upstream_host` does that).
const UNTOUCHABLE: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "host",
];

/// Consumer names to ids.
pub(super) type ConsumerIds = BTreeMap<String, ConsumerId>;

impl Compiler<'_> {
    /// Every `[consumer.NAME]`, the instance's key table and JWT order.
    pub(super) fn consumers(
        &self,
        list: &BTreeMap<String, Spanned<FileConsumer>>,
    ) -> Result<(Vec<Consumer>, Credentials, ConsumerIds), ConfigError> {
        let mut consumers = Vec::new();
        let mut creds = Credentials::default();
        let mut ids = ConsumerIds::new();
        for (name, f) in list {
            let base = format!("consumer.{name}");
            let span = f.span();
            let f = f.get_ref();
            check_name(name).map_err(|m| self.err(&base, span.clone(), m))?;
            let id = consumers.len();
            let mut keys: Vec<(String, std::ops::Range<usize>, String)> = Vec::new();
            for (i, k) in f.keys.iter().enumerate() {
                check_key(k.get_ref()).map_err(|m| self.err(format!("{base}.keys[{i}]"), k.span(), m))?;
                keys.push((k.get_ref().clone(), k.span(), format!("{base}.keys[{i}]")));
            }
            if let Some(file) = &f.keys_file {
                let path = self.dir.join(file.get_ref());
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err(format!("{base}.keys_file"), file.span(), format!("cannot read {}: {e}", path.display()))
                })?;
                let parsed = parse_key_file(&text).map_err(|(line, why)| {
                    self.err(format!("{base}.keys_file"), file.span(), format!("{} line {line}: {why}", path.display()))
                })?;
                keys.extend(parsed.into_iter().map(|k| (k, file.span(), format!("{base}.keys_file"))));
            }
            for (key, span, key_path) in keys {
                if let Err(other) = creds.keys.insert(key.as_bytes(), id) {
                    let owner = if other == id {
                        "this consumer".to_string()
                    } else {
                        format!("consumer \"{}\"", consumers_name(&consumers, other))
                    };
                    return Err(self.err(key_path, span, format!("this API key is also a key of {owner}")));
                }
            }
            let limit = match (&f.key_qps, &f.key_burst) {
                (None, None) => None,
                (None, Some(b)) => return Err(self.err(format!("{base}.key_burst"), b.span(), "needs key_qps")),
                (Some(q), burst) => {
                    if *q.get_ref() == 0 {
                        return Err(self.err(format!("{base}.key_qps"), q.span(), "must be at least 1"));
                    }
                    Some(Rate::new(*q.get_ref(), self.burst(&base, "key_burst", burst, *q.get_ref())?))
                }
            };
            let jwt = match &f.jwt {
                Some(j) => Some(self.jwt(&base, j)?),
                None => None,
            };
            if jwt.is_some() {
                creds.jwt_order.push(id);
            }
            if f.keys.is_empty() && f.keys_file.is_none() && jwt.is_none() {
                return Err(self.err(
                    &base,
                    span,
                    "needs `keys`, `keys_file` or `jwt`: nothing identifies this consumer",
                ));
            }
            ids.insert(name.clone(), id);
            consumers.push(Consumer { name: name.clone(), limit, jwt });
        }
        Ok((consumers, creds, ids))
    }

    fn jwt(&self, base: &str, j: &Spanned<crate::config::file::FileJwt>) -> Result<JwtRule, ConfigError> {
        let path = format!("{base}.jwt");
        let f = j.get_ref();
        let read = |key: &str, file: &Spanned<String>| {
            let p = self.dir.join(file.get_ref());
            std::fs::read(&p).map_err(|e| {
                self.err(format!("{path}.{key}"), file.span(), format!("cannot read {}: {e}", p.display()))
            })
        };
        let keys = match (&f.jwks_file, &f.secret_file) {
            (Some(jwks), None) => {
                let text = String::from_utf8(read("jwks_file", jwks)?)
                    .map_err(|_| self.err(format!("{path}.jwks_file"), jwks.span(), "not UTF-8 JSON"))?;
                let (mut keys, skipped) =
                    keys_from_jwks(&text).map_err(|m| self.err(format!("{path}.jwks_file"), jwks.span(), m))?;
                if !skipped.is_empty() {
                    self.warnings
                        .borrow_mut()
                        .push(format!("{path}.jwks_file: keys of unsupported kinds skipped: {}", skipped.join(", ")));
                }
                if !f.algorithms.is_empty() {
                    let names: Vec<&str> = f.algorithms.iter().map(|a| a.get_ref().as_str()).collect();
                    keys.retain(|k| names.contains(&format!("{:?}", k.alg).as_str()));
                    if keys.is_empty() {
                        let msg = format!("no key of the JWKS is for {}", names.join(", "));
                        return Err(self.err(format!("{path}.algorithms"), f.algorithms[0].span(), msg));
                    }
                }
                keys
            }
            (None, Some(secret)) => {
                let mut bytes = read("secret_file", secret)?;
                while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    bytes.pop();
                }
                if bytes.len() < 32 {
                    let msg = "an HMAC secret needs at least 32 bytes (256 bits)";
                    return Err(self.err(format!("{path}.secret_file"), secret.span(), msg));
                }
                let mut keys = Vec::new();
                let algs: Vec<(String, std::ops::Range<usize>)> = match f.algorithms.is_empty() {
                    true => vec![("HS256".into(), j.span())],
                    false => f.algorithms.iter().map(|a| (a.get_ref().clone(), a.span())).collect(),
                };
                for (name, span) in algs {
                    let alg = hmac_algorithm(&name).ok_or_else(|| {
                        let msg = format!("\"{name}\" is not an HMAC algorithm (HS256, HS384, HS512) for a secret");
                        self.err(format!("{path}.algorithms"), span, msg)
                    })?;
                    keys.push(JwtKey { kid: None, alg, key: jsonwebtoken::DecodingKey::from_secret(&bytes) });
                }
                keys
            }
            (Some(jwks), Some(_)) => {
                return Err(self.err(&path, jwks.span(), "set either `jwks_file` or `secret_file`, not both"))
            }
            (None, None) => return Err(self.err(&path, j.span(), "needs `jwks_file` or `secret_file`")),
        };
        Ok(JwtRule { issuer: f.issuer.clone(), audience: f.audience.clone(), keys })
    }

    /// An API's `auth` (its keys over its service's) and `consumers` (its own or its service's).
    pub(super) fn auth_policy(
        &self,
        path: &str,
        service: (&str, &FileService),
        api: &FileApi,
        ids: &ConsumerIds,
    ) -> Result<Option<Arc<AuthPolicy>>, ConfigError> {
        let (svc_path, svc) = (format!("service.{}", service.0), service.1);
        let empty = FileAuth::default();
        let (s, a) =
            (svc.auth.as_ref().map_or(&empty, |s| s.get_ref()), api.auth.as_ref().map_or(&empty, |a| a.get_ref()));
        if svc.auth.is_none() && api.auth.is_none() {
            if let Some(c) = api.consumers.as_ref().or(svc.consumers.as_ref()) {
                return Err(self.err(format!("{path}.consumers"), c.span(), "needs `auth` on the API or its service"));
            }
            return Ok(None);
        }
        let pick = |k: fn(&FileAuth) -> &Option<Spanned<String>>| match k(a) {
            Some(v) => Some((format!("{path}.auth"), v)),
            None => k(s).as_ref().map(|v| (format!("{svc_path}.auth"), v)),
        };
        let methods = match (&a.methods, &s.methods) {
            (Some(m), _) => Some((format!("{path}.auth.methods"), m)),
            (None, Some(m)) => Some((format!("{svc_path}.auth.methods"), m)),
            (None, None) => None,
        };
        let (mut api_key, mut jwt) = (methods.is_none(), methods.is_none());
        if let Some((key, list)) = &methods {
            if list.is_empty() {
                return Ok(None); // methods = []: public
            }
            for m in list.iter() {
                match m.get_ref().as_str() {
                    "api_key" => api_key = true,
                    "jwt" => jwt = true,
                    other => {
                        let msg = format!("\"{other}\" is not an auth method: use \"api_key\" or \"jwt\"");
                        return Err(self.err(key.clone(), m.span(), msg));
                    }
                }
            }
        }
        let field =
            |which: &str, v: Option<(String, &Spanned<String>)>, default: &str| -> Result<String, ConfigError> {
                match v {
                    None => Ok(default.to_string()),
                    Some((key, s)) => {
                        let name = s.get_ref();
                        if name.is_empty() || !name.bytes().all(is_tchar) {
                            return Err(self.err(
                                format!("{key}.{which}"),
                                s.span(),
                                format!("\"{name}\" is not a field name"),
                            ));
                        }
                        Ok(name.to_ascii_lowercase())
                    }
                }
            };
        let key_header = field("key_header", pick(|f| &f.key_header), DEFAULT_KEY_HEADER)?;
        let consumer_header = field("consumer_header", pick(|f| &f.consumer_header), DEFAULT_CONSUMER_HEADER)?;
        if UNTOUCHABLE.contains(&consumer_header.as_str()) || consumer_header == "authorization" {
            let (key, s) = pick(|f| &f.consumer_header).unwrap();
            return Err(self.err(
                format!("{key}.consumer_header"),
                s.span(),
                "cannot be a framing or credential field",
            ));
        }
        let key_query = match pick(|f| &f.key_query) {
            None => None,
            Some((key, s)) if s.get_ref().is_empty() || s.get_ref().contains(['&', '=', '#', ' ']) => {
                return Err(self.err(format!("{key}.key_query"), s.span(), "is not a query parameter name"))
            }
            Some((_, s)) => Some(s.get_ref().clone()),
        };
        let allowed = match api
            .consumers
            .as_ref()
            .map(|c| (path, c))
            .or(svc.consumers.as_ref().map(|c| (svc_path.as_str(), c)))
        {
            None => None,
            Some((at, list)) => {
                let mut out = Vec::new();
                for name in list.get_ref() {
                    let id = ids.get(name).ok_or_else(|| {
                        self.err(format!("{at}.consumers"), list.span(), format!("no [consumer.{name}] section"))
                    })?;
                    out.push(*id);
                }
                Some(out)
            }
        };
        if jwt && !api_key && ids.is_empty() {
            self.warnings.borrow_mut().push(format!("{path}: auth accepts only JWTs but no consumer has a `jwt` rule"));
        }
        Ok(Some(Arc::new(AuthPolicy { api_key, jwt, key_header, key_query, consumer_header, allowed })))
    }

    /// An API's header rewrites (its service's, then its own), CORS (its own or its service's) and
    /// `upstream_host`; `None` when it has none of them.
    pub(super) fn api_policy(
        &self,
        path: &str,
        service: (&str, &FileService),
        api: &FileApi,
    ) -> Result<Option<Arc<ApiPolicy>>, ConfigError> {
        let svc_path = format!("service.{}", service.0);
        let svc = service.1;
        let mut request_headers = HeaderRules::default();
        let mut response_headers = HeaderRules::default();
        // the service's rules first, then the API's on top
        let levels = [
            (svc_path.as_str(), &svc.request_headers, &svc.response_headers),
            (path, &api.request_headers, &api.response_headers),
        ];
        for (at, request, response) in levels {
            if let Some(r) = request {
                self.header_rules(&format!("{at}.request_headers"), r, &mut request_headers)?;
            }
            if let Some(r) = response {
                self.header_rules(&format!("{at}.response_headers"), r, &mut response_headers)?;
            }
        }
        let cors = match (&api.cors, &svc.cors) {
            (Some(c), _) => Some(self.cors(&format!("{path}.cors"), c)?),
            (None, Some(c)) => Some(self.cors(&format!("{svc_path}.cors"), c)?),
            (None, None) => None,
        };
        let upstream_host = match &api.upstream_host {
            None => None,
            Some(h) => {
                let v = h.get_ref();
                let ok = !v.is_empty()
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
                if !ok {
                    return Err(self.err(
                        format!("{path}.upstream_host"),
                        h.span(),
                        format!("\"{v}\" is not a host[:port]"),
                    ));
                }
                Some(v.clone())
            }
        };
        if request_headers.is_empty() && response_headers.is_empty() && cors.is_none() && upstream_host.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(ApiPolicy { request_headers, response_headers, cors, upstream_host })))
    }

    fn header_rules(&self, key: &str, f: &Spanned<FileHeaderRules>, into: &mut HeaderRules) -> Result<(), ConfigError> {
        let span = f.span();
        let check = |name: &str| -> Result<String, ConfigError> {
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(self.err(key, span.clone(), format!("\"{name}\" is not a field name")));
            }
            let lower = name.to_ascii_lowercase();
            if UNTOUCHABLE.contains(&lower.as_str()) {
                let msg =
                    format!("\"{name}\" cannot be set or removed (framing, hop-by-hop or Host; use upstream_host)");
                return Err(self.err(key, span.clone(), msg));
            }
            Ok(lower)
        };
        for (name, value) in &f.get_ref().set {
            let lower = check(name)?;
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(self.err(format!("{key}.set.{name}"), span.clone(), "value contains CR, LF or NUL"));
            }
            into.set.retain(|(n, _)| *n != lower);
            into.remove.retain(|n| *n != lower);
            into.set.push((lower, value.trim().as_bytes().to_vec()));
        }
        for name in &f.get_ref().remove {
            let lower = check(name)?;
            into.set.retain(|(n, _)| *n != lower);
            if !into.remove.contains(&lower) {
                into.remove.push(lower);
            }
        }
        Ok(())
    }

    fn cors(&self, key: &str, c: &Spanned<FileCors>) -> Result<Arc<Cors>, ConfigError> {
        let f = c.get_ref();
        let span = c.span();
        if f.origins.is_empty() {
            return Err(self.err(format!("{key}.origins"), span, "needs at least one origin (or \"*\")"));
        }
        let mut origins = Vec::new();
        let mut any_origin = false;
        for o in &f.origins {
            if o == "*" {
                any_origin = true;
            } else if is_origin(o) {
                origins.push(o.to_ascii_lowercase());
            } else {
                let msg = format!("\"{o}\" is not an origin (scheme://host[:port], no path) or \"*\"");
                return Err(self.err(format!("{key}.origins"), span, msg));
            }
        }
        let token_list = |what: &str, list: &[String]| -> Result<String, ConfigError> {
            for item in list {
                if item.is_empty() || !item.bytes().all(is_tchar) {
                    return Err(self.err(format!("{key}.{what}"), span.clone(), format!("\"{item}\" is not a token")));
                }
            }
            Ok(list.join(", "))
        };
        let methods = match &f.methods {
            Some(m) => token_list("methods", m)?,
            None => "GET, HEAD, POST".to_string(),
        };
        Ok(Arc::new(Cors {
            origins,
            any_origin,
            methods,
            headers: token_list("headers", &f.headers)?,
            expose_headers: token_list("expose_headers", &f.expose_headers)?,
            max_age_s: f.max_age_s.unwrap_or(DEFAULT_CORS_MAX_AGE_S),
            credentials: f.credentials.unwrap_or(false),
        }))
    }
}

fn consumers_name(consumers: &[Consumer], id: ConsumerId) -> &str {
    consumers.get(id).map_or("?", |c| c.name.as_str())
}
