//! The authenticate phase (between routing and admission): which consumer sent the request, for
//! APIs with `auth`; and the request's CORS origin, for APIs with a CORS policy. No I/O.

use super::request::Request;
use crate::config::ApiId;
use crate::error::{Challenge, Error, Kind};
use crate::http::RequestHead;
use crate::policy::auth::{authenticate as identify, strip_query_param, AuthFailure, Presented, Via};
use crate::runtime::Generation;

/// Identifies the consumer of an API with `auth` (401 / 403 otherwise) and notes what the upstream
/// request must drop; notes an allowed CORS origin.
pub(super) fn authenticate(
    gen: &Generation,
    head: &RequestHead<'_, '_>,
    req: &mut Request,
    api_id: ApiId,
) -> Result<(), Error> {
    let snapshot = &gen.snapshot;
    let api = &snapshot.apis[api_id];
    if let Some(cors) = api.policy.as_ref().and_then(|p| p.cors.as_deref()) {
        if let Some(origin) = head.header("origin").filter(|o| cors.allows(o)) {
            req.cors_origin = Some(origin.into());
        }
    }
    let Some(policy) = &api.auth else { return Ok(()) };
    let presented = Presented {
        key_header: head.header(&policy.key_header),
        query: head.query,
        authorization: head.header("authorization"),
    };
    // the clock only matters for a token's expiry: API-key requests do not read it
    let now_s = match policy.jwt && presented.authorization.is_some() {
        true => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        false => 0,
    };
    let mut tokens = gen.tokens.borrow_mut();
    match identify(policy, &presented, &snapshot.credentials, &snapshot.consumers, &mut tokens, now_s) {
        Ok((consumer, via)) => {
            req.consumer = Some((consumer, via));
            req.session.consumer = Some(consumer);
            if via == Via::KeyQuery {
                let mut query = Vec::with_capacity(head.query.len());
                strip_query_param(head.query, policy.key_query.as_deref().unwrap_or_default(), &mut query);
                req.query_override = Some(query.into());
            }
            Ok(())
        }
        Err(AuthFailure::NotAllowed(consumer)) => {
            req.session.consumer = Some(consumer);
            Err(Error::downstream(Kind::ConsumerNotAllowed))
        }
        Err(failure) => Err(Error::downstream(Kind::Unauthorized(Box::new(Challenge {
            flag: failure.flag(),
            key_header: policy.api_key.then(|| policy.key_header.clone()),
            jwt: policy.jwt,
        })))),
    }
}
