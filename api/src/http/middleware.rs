//! Around every request: its id, its span, its metrics and its log line, and the rate-limit
//! headers.

use actix_web::HttpMessage as _;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};

use crate::engine::rate_limit::RateState;

/// The request id of a request: the client's `X-Request-Id` when it is 1 to 200 printable
/// ASCII characters, else a fresh UUID.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=200).contains(&v.len())
                && v.bytes().all(|b| (0x20..0x7f).contains(&b))
                && !v.trim().is_empty()
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

const REQUEST_ID: &str = "x-request-id";

/// Around every request: its id (taken or made, and returned as `X-Request-Id`), a root span
/// carrying that id so every log line written while serving it names it, the latency
/// histogram by method, route pattern and status, the idempotency outcome of keyed writes, and
/// one log line: method, path (never the query, which may carry identifiers), status and
/// duration. Headers are never logged, so neither is an API key.
pub fn observe_request<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    use tracing::Instrument as _;
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let started = std::time::Instant::now();
    let call = span.in_scope(|| srv.call(req));
    async move {
        let mut res = call.await?;
        let seconds = started.elapsed().as_secs_f64();
        let status = res.status().as_u16();
        crate::engine::metrics::http(method.as_str(), &route, status, seconds);
        let mark = res
            .response()
            .extensions()
            .get::<crate::http::answer::IdempotencyMark>()
            .copied();
        if let Some(mark) = mark {
            crate::engine::metrics::idempotency(mark.operation, mark.outcome);
        }
        let rate = res
            .request()
            .extensions()
            .get::<crate::engine::rate_limit::RateState>()
            .copied();
        if let Some(rate) = rate {
            rate_limit_headers(res.headers_mut(), rate);
        }
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id) {
            res.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(REQUEST_ID),
                value,
            );
        }
        tracing::info!(%path, status, ms = seconds * 1e3, "request");
        Ok(res)
    }
    .instrument(span)
}

/// Writes the `RateLimit-*` headers of `state` on an answer.
pub fn rate_limit_headers(headers: &mut actix_web::http::header::HeaderMap, state: RateState) {
    use actix_web::http::header::{HeaderName, HeaderValue};
    for (name, value) in [
        ("ratelimit-limit", u64::from(state.limit)),
        ("ratelimit-remaining", u64::from(state.remaining)),
        ("ratelimit-reset", state.reset_secs),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}
