//! Authentication, before anything else of a request is looked at: a middleware finds the
//! organisation of the request's API key for every route that needs one, so an unknown key is
//! 401 whatever its body, content type or query (the body is never read), and the handler's
//! [`Tenant`](crate::http::extract::Tenant) is what it found.
//!
//! A failed authentication is cheap: a key found unknown is remembered as such for a moment
//! (see `cache`), and each client address may fail `LOYALTY_AUTH_FAILURES_PER_MINUTE` times a
//! minute on this instance. Past that, its requests are 429 with `Retry-After` without a
//! database query, except those whose key is active in this instance's memory or authenticated
//! here within the hour: a flood of bad keys slows neither other addresses nor the keys known
//! to work. The client's address is the connection's peer, or, with
//! `LOYALTY_TRUST_FORWARDED_FOR`, the last entry of `X-Forwarded-For` (set by the proxy in front).

use std::net::{IpAddr, Ipv6Addr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, ResponseError as _, web};

use crate::app::AppError;
use crate::app::AppState;
use crate::app::keys::KeyIdentity;
use crate::engine::cache::{CachedKey, key_digest};
use crate::http::extract::Tenant;
use crate::http::problem::HttpError;

/// The key a request presents: `X-API-KEY`, else `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-api-key") {
        return v.to_str().ok().map(|s| s.trim().to_owned());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Whether the request will reach a handler that needs a key: a route of `/v1/` and a method
/// it serves (a 404 or a 405 needs none, and costs no look-up).
fn needs_key(req: &ServiceRequest) -> bool {
    let Some(pattern) = req.match_pattern() else {
        return false;
    };
    if !pattern.starts_with("/v1/") {
        return false;
    }
    let method = req.method().as_str();
    crate::http::TABLE
        .iter()
        .find(|(path, _)| *path == pattern)
        .is_some_and(|(_, methods)| methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
}

/// The middleware: authenticates, then passes the request on with its [`Tenant`]; or answers
/// 401 (429, 503) itself.
pub async fn authenticate<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    if !needs_key(&req) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let outcome = match req.app_data::<web::Data<AppState>>().cloned() {
        Some(state) => check(&state, &req).await,
        None => Err(AppError::Internal("application state missing".into()).into()),
    };
    match outcome {
        Ok(tenant) => {
            req.extensions_mut().insert(tenant);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

async fn check(state: &AppState, req: &ServiceRequest) -> Result<Tenant, HttpError> {
    let address = client_address(req, state.settings.trust_forwarded_for);
    let key = presented_key(req.headers()).filter(|k| !k.is_empty() && k.len() <= 200);
    let digest = key.as_deref().map(key_digest);
    let cached = digest.map(|d| (d, state.caches.cached_key(&d)));
    if let Some((_, CachedKey::Active(who))) = cached {
        return admitted(state, req, who);
    }
    // Past its failures, an address is looked up only for keys known here to have worked.
    let known = matches!(cached, Some((d, CachedKey::Missing)) if state.caches.is_known_key(&d));
    if let Some(limit) = &state.auth_failures
        && !known
        && let Some(retry_after_secs) = limit.blocked(address)
    {
        tracing::debug!("failed authentications limited");
        return Err(HttpError::AuthenticationsLimited { retry_after_secs });
    }
    let found = match (key, cached) {
        (Some(key), Some((digest, CachedKey::Missing))) => state
            .caches
            .load_key(state.db.conn(), &key, digest)
            .await
            .map_err(AppError::from)?,
        _ => None,
    };
    match found {
        Some(who) => admitted(state, req, who),
        None => {
            // The key itself is never logged.
            tracing::debug!("API key not recognised");
            if let Some(limit) = &state.auth_failures {
                limit.failed(address);
            }
            Err(HttpError::Unauthorized)
        }
    }
}

/// A recognised key: its use is recorded (at most once a minute), and the organisation's rate
/// limit counted.
fn admitted(state: &AppState, req: &ServiceRequest, who: KeyIdentity) -> Result<Tenant, HttpError> {
    tracing::debug!(org_id = who.org_id, key_id = who.key_id, "authenticated");
    crate::app::keys::record_use(state, who.key_id);
    if let Some(limiter) = &state.rate_limiter {
        // Counted after authentication: an unknown key spends no organisation's budget.
        let rate = limiter.check(who.org_id).map_err(HttpError::RateLimited)?;
        req.extensions_mut().insert(rate);
    }
    Ok(Tenant {
        org_id: who.org_id,
        key_id: who.key_id,
    })
}

/// The client's address: the last `X-Forwarded-For` entry when trusted and well formed, else
/// the connection's peer. IPv6 addresses count by their /64 (what one client usually holds).
pub fn client_address(req: &ServiceRequest, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = trust_forwarded_for
        .then(|| req.headers().get_all("x-forwarded-for").last())
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    let address = forwarded
        .or_else(|| req.peer_addr().map(|a| a.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
        v4 => v4,
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
