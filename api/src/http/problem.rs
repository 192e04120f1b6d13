//! Every refusal answered as `application/problem+json` (RFC 9457): the use cases' [`AppError`]
//! and the edge's own refusals ([`HttpError`]: no key, a body too large, a method the resource
//! does not serve, a rate limit), written by one function, [`answer`].
//!
//! Client errors say precisely what is wrong. Server errors are logged with their cause and
//! answered with a generic message.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value, json};

use crate::app::AppError;
use crate::engine::rate_limit::RateState;

/// Seconds a client should wait before retrying a 503 or a 409.
pub const RETRY_AFTER_SECS: u32 = 1;

/// A refusal of the edge, before or around a use case.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("unauthorized")]
    Unauthorized,
    #[error("payload too large")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 429: the organisation sent more than its rate limit allows on this instance.
    #[error("rate limited")]
    RateLimited(RateState),
    /// 429: the client's address failed authentication too often; no key is looked up for it
    /// until `retry_after_secs` have passed (keys known to this instance excepted).
    #[error("failed authentications limited")]
    AuthenticationsLimited { retry_after_secs: u64 },
}

/// What a problem document says, before it is written.
struct Problem {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    retryable: bool,
    /// `Retry-After`, in seconds.
    retry_after: Option<u64>,
    /// Members past the standard ones (`errors`, `idempotencyKey`, …).
    extra: Map<String, Value>,
    /// The idempotency outcome to count (`key_reused`, `key_in_use`) for the operation.
    mark: Option<(&'static str, &'static str)>,
    rate: Option<RateState>,
}

impl Problem {
    fn new(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            code,
            title,
            detail,
            retryable: false,
            retry_after: None,
            extra: Map::new(),
            mark: None,
            rate: None,
        }
    }
}

fn of_app(e: &AppError) -> Problem {
    use StatusCode as S;
    match e {
        AppError::Validation(errors) => {
            let detail = match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                many => format!("{} fields are invalid", many.len()),
            };
            let mut p = Problem::new(
                S::BAD_REQUEST,
                "VALIDATION_FAILED",
                "The request is not valid",
                detail,
            );
            p.extra.insert("errors".into(), json!(errors));
            p
        }
        AppError::Forbidden(d) => Problem::new(S::FORBIDDEN, "FORBIDDEN", "Forbidden", d.clone()),
        AppError::NotFound { code, detail } => {
            Problem::new(S::NOT_FOUND, code, "Not found", detail.clone())
        }
        AppError::IdempotencyKeyReused {
            operation,
            key,
            mismatched_fields,
        } => {
            let mut p = Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "Idempotency key reused with a different payload",
                format!(
                    "This key was first used with a different request; these fields differ: {}.",
                    mismatched_fields.join(", ")
                ),
            );
            p.extra.insert("idempotencyKey".into(), json!(key));
            p.extra
                .insert("mismatchedFields".into(), json!(mismatched_fields));
            p.mark = Some((operation, "key_reused"));
            p
        }
        AppError::IdempotencyKeyInUse { operation, key } => {
            let mut p = Problem::new(
                S::CONFLICT,
                "IDEMPOTENCY_KEY_IN_USE",
                "Idempotency key in use",
                "A request with this key is still being processed; retry shortly.".into(),
            );
            p.extra.insert("idempotencyKey".into(), json!(key));
            p.retryable = true;
            p.retry_after = Some(RETRY_AFTER_SECS.into());
            p.mark = Some((operation, "key_in_use"));
            p
        }
        AppError::Unprocessable {
            code,
            detail,
            retryable,
        } => {
            let mut p = Problem::new(
                S::UNPROCESSABLE_ENTITY,
                code,
                "The request cannot be carried out",
                detail.clone(),
            );
            p.retryable = *retryable;
            p
        }
        AppError::Conflict { code, detail } => Problem::new(
            S::CONFLICT,
            code,
            "The request conflicts with the current state",
            detail.clone(),
        ),
        AppError::Unavailable(_) => {
            let mut p = Problem::new(
                S::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service unavailable",
                "The service cannot complete the request right now. Retrying with the same idempotency key is safe.".into(),
            );
            p.retryable = true;
            p.retry_after = Some(RETRY_AFTER_SECS.into());
            p
        }
        AppError::Internal(_) => Problem::new(
            S::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal server error",
            "An unexpected error occurred.".into(),
        ),
    }
}

fn of_edge(e: &HttpError) -> Problem {
    use StatusCode as S;
    match e {
        HttpError::App(e) => of_app(e),
        HttpError::Unauthorized => Problem::new(
            S::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Missing or invalid API key",
            "Send a valid API key in the X-API-KEY header (or Authorization: Bearer).".into(),
        ),
        HttpError::PayloadTooLarge { limit_bytes } => Problem::new(
            S::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "Payload too large",
            format!("The body is larger than the limit of {limit_bytes} bytes."),
        ),
        HttpError::UnsupportedMediaType => Problem::new(
            S::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Unsupported media type",
            "Send the body as application/json.".into(),
        ),
        HttpError::MethodNotAllowed => Problem::new(
            S::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "Method not allowed",
            "This resource does not answer that method.".into(),
        ),
        HttpError::RateLimited(state) => {
            let mut p = Problem::new(
                S::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "Too many requests",
                format!(
                    "This organisation sent more requests than its rate limit allows; retry in {} s.",
                    state.reset_secs
                ),
            );
            p.retryable = true;
            p.retry_after = Some(state.reset_secs);
            p.rate = Some(*state);
            p
        }
        HttpError::AuthenticationsLimited { retry_after_secs } => {
            let mut p = Problem::new(
                S::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "Too many requests",
                format!(
                    "Too many failed authentications from this address; retry in {retry_after_secs} s."
                ),
            );
            p.retryable = true;
            p.retry_after = Some(*retry_after_secs);
            p
        }
    }
}

/// Writes `problem` as the answer.
fn answer(problem: Problem) -> HttpResponse {
    let mut body = Map::new();
    body.insert(
        "type".into(),
        json!(format!(
            "https://loyalty.example/problems/{}",
            problem.code.to_lowercase().replace('_', "-")
        )),
    );
    body.insert("title".into(), json!(problem.title));
    body.insert("status".into(), json!(problem.status.as_u16()));
    body.insert("code".into(), json!(problem.code));
    body.insert("detail".into(), json!(problem.detail));
    body.extend(problem.extra);
    body.insert("retryable".into(), json!(problem.retryable));
    let mut response = HttpResponse::build(problem.status);
    response.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    ));
    if let Some(seconds) = problem.retry_after {
        response.insert_header((header::RETRY_AFTER, seconds.to_string()));
    }
    let mut response = response.body(Value::Object(body).to_string());
    if let Some(state) = problem.rate {
        crate::http::middleware::rate_limit_headers(response.headers_mut(), state);
    }
    if let Some((operation, outcome)) = problem.mark {
        crate::http::answer::mark(&mut response, operation, outcome);
    }
    response
}

/// Logs the cause of a server error, which the answer never carries.
fn log(e: &AppError) {
    match e {
        AppError::Internal(cause) => tracing::error!(%cause, "internal error"),
        AppError::Unavailable(cause) => tracing::warn!(%cause, "answering 503"),
        _ => {}
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        of_app(self).status
    }

    fn error_response(&self) -> HttpResponse {
        log(self);
        answer(of_app(self))
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        of_edge(self).status
    }

    fn error_response(&self) -> HttpResponse {
        if let HttpError::App(e) = self {
            log(e);
        }
        answer(of_edge(self))
    }
}
