//! The head phases, synchronous and in order: route (with the IP lists), admit (rate limits,
//! concurrency and body caps, returning the guard that holds the request's place), and build the
//! upstream request head. Each takes the request context and the parsed head; none does I/O.

use std::time::Instant;

use super::headers::{write_request_head, AuthFields, RequestContext};
use super::request::{Request, Routed};
use super::session::{ApiFlight, Peer};
use crate::config::{ApiId, Balance, HashKey, RouteMatch, UpstreamId};
use crate::error::{Error, Kind};
use crate::http::{normalize_path, BodyKind, ParseError, RequestHead};
use crate::limit::{KeyRule, KeySource, Refusal, Rules};
use crate::policy::auth::Via;
use crate::runtime::{Generation, Shard};
use crate::upstream::ring_hash;

/// Where the route phase sends a request.
pub(super) enum Route {
    /// `OPTIONS *` asks about the server, not a resource: answered by the gateway.
    ServerOptions,
    /// A CORS preflight for an API with a CORS policy: answered by the gateway.
    Preflight(ApiId),
    Api(Routed),
}

/// Route: the instance IP lists before any other work, the Host against the TLS certificate
/// (421), then the route table on the normalised path, then the service's IP lists. Sets the
/// service and API on the session.
pub(super) fn route(
    shard: &Shard,
    gen: &Generation,
    head: &RequestHead<'_, '_>,
    peer: &Peer,
    req: &mut Request,
) -> Result<Route, Error> {
    let snapshot = &gen.snapshot;
    if !snapshot.instance.ip_filter.permits(req.client) {
        shard.count(gen, |m| m.denied_instance += 1);
        return Err(Error::downstream(Kind::Forbidden));
    }
    if let Some(names) = &peer.sni_names {
        // a connection set up for one name must not serve another (HTTP-EDGE-CASES E5)
        if !crate::tls::host_covered(names, head.authority.unwrap_or_default()) {
            return Err(Error::downstream(Kind::Misdirected));
        }
    }
    if head.path == b"*" {
        return Ok(Route::ServerOptions);
    }
    // the path routing sees is the path the upstream gets: dot segments removed first
    let normal = normalize_path(head.path, snapshot.http.path_rules)?;
    let path = normal.as_deref().unwrap_or(head.path);
    let authority = head.authority.unwrap_or_default();
    // a CORS preflight is routed by the method it asks about; answered here if that API has CORS
    if let Some(asked) = preflight_method(head) {
        if let RouteMatch::Found { api, .. } = snapshot.routes.find(authority, asked, path) {
            if snapshot.apis[api].policy.as_ref().is_some_and(|p| p.cors.is_some()) {
                let service = snapshot.apis[api].service;
                (req.session.service, req.session.api) = (Some(service), Some(api));
                if !snapshot.services[service].ip_filter.permits(req.client) {
                    shard.count(gen, |m| m.denied[service] += 1);
                    return Err(Error::downstream(Kind::Forbidden));
                }
                return Ok(Route::Preflight(api));
            }
        }
    }
    let (api, base_len, prefix_len) = match snapshot.routes.find(authority, head.method, path) {
        RouteMatch::Found { api, base_len, prefix_len } => (api, base_len, prefix_len),
        RouteMatch::NotFound => return Err(Error::downstream(Kind::NoRoute)),
        RouteMatch::MethodNotAllowed(allow) => return Err(Error::downstream(Kind::MethodNotAllowed(allow))),
    };
    let service = snapshot.apis[api].service;
    (req.session.service, req.session.api) = (Some(service), Some(api));
    if !snapshot.services[service].ip_filter.permits(req.client) {
        shard.count(gen, |m| m.denied[service] += 1);
        return Err(Error::downstream(Kind::Forbidden));
    }
    Ok(Route::Api(Routed { api, base_len, prefix_len, normal }))
}

/// The method a CORS preflight asks about (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`).
fn preflight_method<'b>(head: &RequestHead<'_, 'b>) -> Option<&'b [u8]> {
    if head.method != b"OPTIONS" || head.header("origin").is_none() {
        return None;
    }
    head.header("access-control-request-method").filter(|m| !m.is_empty())
}

/// Admit: instance → service → API → per-key rates, then the API's concurrency cap (checked and
/// entered in one step: the returned guard holds the place until the request ends), then the
/// declared body size.
pub(super) fn admit<'g>(
    shard: &Shard,
    gen: &'g Generation,
    head: &RequestHead<'_, '_>,
    req: &Request,
    api_id: ApiId,
) -> Result<Option<ApiFlight<'g>>, Error> {
    let api = &gen.snapshot.apis[api_id];
    if let Err(refusal) = spend_rates(shard, gen, head, req, api_id) {
        shard.count(gen, |m| m.limited[api_id][refusal.level as usize] += 1);
        return Err(Error::downstream(Kind::RateLimited(refusal)));
    }
    let flight = match api.max_in_flight {
        None => None,
        Some(max) => {
            let share = max.div_ceil(shard.workers as u32).max(1);
            match ApiFlight::try_enter(gen, api_id, share) {
                Some(f) => Some(f),
                None => {
                    shard.count(gen, |m| m.overloaded[api_id] += 1);
                    return Err(Error::upstream(Kind::Overloaded, "max_in_flight"));
                }
            }
        }
    };
    if let BodyKind::Length(n) = head.body {
        if api.max_body_bytes != 0 && n > api.max_body_bytes {
            return Err(ParseError::BodyTooLarge.into());
        }
    }
    Ok(flight)
}

/// The rate rules that apply to `api`; `Err` names the level that refused.
fn spend_rates(
    shard: &Shard,
    gen: &Generation,
    head: &RequestHead<'_, '_>,
    req: &Request,
    api_id: ApiId,
) -> Result<(), Refusal> {
    let snapshot = &gen.snapshot;
    let api = &snapshot.apis[api_id];
    let svc = &snapshot.services[api.service];
    let rates = &gen.rates;
    let (instance, service, api_rate) =
        (rates.instance.as_deref(), rates.services[api.service].as_deref(), rates.apis[api_id].as_deref());
    let consumer = req.consumer.and_then(|(c, _)| rates.consumers[c].as_deref().map(|r| (r, c)));
    let unlimited = instance.is_none()
        && service.is_none()
        && api_rate.is_none()
        && svc.key_limit.is_none()
        && api.key_limit.is_none()
        && consumer.is_none();
    if unlimited {
        return Ok(());
    }
    let key = |rule: &KeyRule| -> u64 {
        match &rule.source {
            KeySource::ClientIp => shard.key_hasher.hash_one(req.client),
            KeySource::Header(name) => shard.key_hasher.hash_one(head.header(name).unwrap_or_default()),
            // anonymous requests (a public API) share one key
            KeySource::Consumer => shard.key_hasher.hash_one(req.consumer.map(|(c, _)| c)),
        }
    };
    let rules = Rules {
        instance,
        service,
        api: api_rate,
        service_key: svc.key_limit.as_ref().map(|k| (k, key(k))),
        api_key: api.key_limit.as_ref().map(|k| (k, key(k))),
        consumer,
    };
    gen.limiter.borrow_mut().check(api.service, api_id, &rules, Instant::now())
}

/// Build the upstream head: the consistent-hash key, then the serialised request (with the
/// fields the filters added, `req.effects`) into `out`.
pub(super) fn upstream_head(
    gen: &Generation,
    head: &RequestHead<'_, '_>,
    peer: &Peer,
    req: &mut Request,
    routed: &Routed,
    upstream: UpstreamId,
    out: &mut Vec<u8>,
) {
    let snapshot = &gen.snapshot;
    let up = &snapshot.upstreams[upstream];
    req.hash_key = match &up.balance {
        // the peer's address is already rendered; only a client named by XFF is formatted
        Balance::Hash(HashKey::ClientIp) if req.client == peer.addr => Some(ring_hash(&peer.ip)),
        Balance::Hash(HashKey::ClientIp) => Some(ring_hash(req.client.to_string().as_bytes())),
        Balance::Hash(HashKey::Header(name)) => Some(ring_hash(head.header(name).unwrap_or_default())),
        _ => None,
    };
    let api = &snapshot.apis[routed.api];
    let cx = RequestContext {
        path: routed.path(head),
        client_ip: &peer.ip,
        scheme: peer.scheme,
        forwarded_for: if peer.trusted { head.header("x-forwarded-for") } else { None },
        upgrade: req.upgrade.as_deref(),
        rewrite: &api.rewrite,
        base_len: routed.base_len,
        prefix_len: routed.prefix_len,
        default_host: &up.name,
        extra: &req.effects.upstream_headers,
        query: req.query_override.as_deref().unwrap_or(head.query),
        policy: api.policy.as_deref(),
        auth: api.auth.as_deref().map(|a| AuthFields {
            credential: match req.consumer {
                Some((_, Via::KeyHeader)) => Some(a.key_header.as_str()),
                Some((_, Via::Bearer)) => Some("authorization"),
                _ => None,
            },
            consumer_header: &a.consumer_header,
            consumer: req.consumer.map(|(c, _)| snapshot.consumers[c].name.as_str()),
        }),
    };
    out.clear();
    write_request_head(out, head, &cx, &req.id);
}
