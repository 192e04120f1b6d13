//! One error type at the HTTP edge, answered as `application/problem+json` (RFC 9457).
//!
//! Client errors say precisely what is wrong. Server errors are logged with their cause and
//! answered with a generic message: no SQL, no driver text, no other tenant's data.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use persistence::PersistenceError;
use serde::Serialize;
use serde_json::json;

/// Seconds a client should wait before retrying a 503 or a 409.
pub const RETRY_AFTER_SECS: u32 = 1;

/// One invalid field: `{"field": "rewards[1].quantity", "message": "…"}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404; `code` is `NOT_FOUND` or a more precise one (`REWARD_NOT_FOUND`).
    #[error("not found: {detail}")]
    NotFound { code: &'static str, detail: String },
    #[error("payload too large")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("idempotency key reused with another payload")]
    IdempotencyKeyReused {
        /// The operation's name, for metrics.
        operation: &'static str,
        key: String,
        mismatched_fields: Vec<String>,
    },
    #[error("idempotency key in use")]
    IdempotencyKeyInUse {
        operation: &'static str,
        key: String,
    },
    /// A definite business refusal (422): `INSUFFICIENT_BALANCE`, `OUT_OF_STOCK` …
    #[error("{code}: {detail}")]
    Unprocessable {
        code: &'static str,
        detail: String,
        /// Whether the same request may succeed later unchanged (after a restock, say).
        retryable: bool,
    },
    /// 409: the object is no longer in a state that allows the request (`HOLD_NOT_ACTIVE`).
    #[error("{code}: {detail}")]
    Conflict { code: &'static str, detail: String },
    /// 429: the organisation sent more than its rate limit allows on this instance.
    #[error("rate limited")]
    RateLimited(crate::rate_limit::RateState),
    /// 429: the client's address failed authentication too often; no key is looked up for it
    /// until `retry_after_secs` have passed (keys known to this instance excepted).
    #[error("failed authentications limited")]
    AuthenticationsLimited { retry_after_secs: u64 },
    /// 503: the database is unreachable, or a commit's outcome is unknown. Always retryable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// A well-formed amount that the currency (or an exact decimal) cannot hold: more decimal
    /// places than it keeps, or too large. 422, since it depends on what is stored.
    pub fn not_representable(field: &str, reason: &str) -> Self {
        ApiError::Unprocessable {
            code: "AMOUNT_NOT_REPRESENTABLE",
            detail: format!("{field} {reason}."),
            retryable: false,
        }
    }

    /// A currency code: malformed → 400 on `field`; well formed but not one of the program's
    /// currencies → 404 `CURRENCY_NOT_FOUND` (it names something that is not there).
    pub fn unknown_currency(field: &str, code: &str) -> Self {
        match domain::catalog::CurrencyCode::parse(code) {
            Err(e) => ApiError::validation(field, e.message),
            Ok(_) => ApiError::NotFound {
                code: "CURRENCY_NOT_FOUND",
                detail: "The program has no such currency.".into(),
            },
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound {
            code: "NOT_FOUND",
            detail: format!("{what} not found"),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "VALIDATION_FAILED",
            ApiError::Unauthorized => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound { code, .. } => code,
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            ApiError::IdempotencyKeyInUse { .. } => "IDEMPOTENCY_KEY_IN_USE",
            ApiError::Unprocessable { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::RateLimited(_) | ApiError::AuthenticationsLimited { .. } => "RATE_LIMITED",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "The request is not valid",
            ApiError::Unauthorized => "Missing or invalid API key",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound { .. } => "Not found",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::IdempotencyKeyReused { .. } => {
                "Idempotency key reused with a different payload"
            }
            ApiError::IdempotencyKeyInUse { .. } => "Idempotency key in use",
            ApiError::Unprocessable { .. } => "The request cannot be carried out",
            ApiError::Conflict { .. } => "The request conflicts with the current state",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::RateLimited(_) | ApiError::AuthenticationsLimited { .. } => {
                "Too many requests"
            }
            ApiError::Internal(_) => "Internal server error",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Validation(errors) => match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                many => format!("{} fields are invalid", many.len()),
            },
            ApiError::Unauthorized => {
                "Send a valid API key in the X-API-KEY header (or Authorization: Bearer).".into()
            }
            ApiError::Forbidden(d) => d.clone(),
            ApiError::NotFound { detail, .. } => detail.clone(),
            ApiError::PayloadTooLarge { limit_bytes } => {
                format!("The body is larger than the limit of {limit_bytes} bytes.")
            }
            ApiError::UnsupportedMediaType => "Send the body as application/json.".into(),
            ApiError::MethodNotAllowed => "This resource does not answer that method.".into(),
            ApiError::IdempotencyKeyReused {
                mismatched_fields, ..
            } => format!(
                "This key was first used with a different request; these fields differ: {}.",
                mismatched_fields.join(", ")
            ),
            ApiError::IdempotencyKeyInUse { .. } => {
                "A request with this key is still being processed; retry shortly.".into()
            }
            ApiError::Unprocessable { detail, .. } | ApiError::Conflict { detail, .. } => {
                detail.clone()
            }
            ApiError::Unavailable(_) => {
                "The service cannot complete the request right now. Retrying with the same idempotency key is safe.".into()
            }
            ApiError::RateLimited(state) => format!(
                "This organisation sent more requests than its rate limit allows; retry in {} s.",
                state.reset_secs
            ),
            ApiError::AuthenticationsLimited { retry_after_secs } => format!(
                "Too many failed authentications from this address; retry in {retry_after_secs} s."
            ),
            ApiError::Internal(_) => "An unexpected error occurred.".into(),
        }
    }
}

impl From<PersistenceError> for ApiError {
    fn from(err: PersistenceError) -> Self {
        match err {
            PersistenceError::Other(cause) | PersistenceError::UniqueViolation(cause) => {
                ApiError::Internal(cause)
            }
            PersistenceError::InvalidText(_) => ApiError::validation(
                "request",
                "contains characters that cannot be stored (such as NUL)",
            ),
            PersistenceError::OutOfRange(_) => ApiError::Unprocessable {
                code: "AMOUNT_OUT_OF_RANGE",
                detail: "The amount would take a balance or a count past what can be stored."
                    .into(),
                retryable: false,
            },
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdempotencyKeyReused { .. } | ApiError::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::IdempotencyKeyInUse { .. } | ApiError::Conflict { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited(_) | ApiError::AuthenticationsLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(%cause, "answering 503"),
            _ => {}
        }
        let mut body = json!({
            "type": format!("https://loyalty.example/problems/{}", self.code().to_lowercase().replace('_', "-")),
            "title": self.title(),
            "status": status.as_u16(),
            "code": self.code(),
            "detail": self.detail(),
        });
        let retryable = match self {
            ApiError::Unavailable(_)
            | ApiError::IdempotencyKeyInUse { .. }
            | ApiError::RateLimited(_)
            | ApiError::AuthenticationsLimited { .. } => true,
            ApiError::Unprocessable { retryable, .. } => *retryable,
            _ => false,
        };
        let retry_after = matches!(
            self,
            ApiError::Unavailable(_) | ApiError::IdempotencyKeyInUse { .. }
        );
        match self {
            ApiError::Validation(errors) => body["errors"] = json!(errors),
            ApiError::IdempotencyKeyReused {
                key,
                mismatched_fields,
                ..
            } => {
                body["idempotencyKey"] = json!(key);
                body["mismatchedFields"] = json!(mismatched_fields);
            }
            ApiError::IdempotencyKeyInUse { key, .. } => body["idempotencyKey"] = json!(key),
            _ => {}
        }
        body["retryable"] = json!(retryable);
        let mut response = HttpResponse::build(status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if retry_after {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
        }
        if let ApiError::RateLimited(state) = self {
            response.insert_header((header::RETRY_AFTER, state.reset_secs.to_string()));
        }
        if let ApiError::AuthenticationsLimited { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        let mut response = response.body(body.to_string());
        if let ApiError::RateLimited(state) = self {
            crate::rate_limit::headers(response.headers_mut(), *state);
        }
        let mark = match self {
            ApiError::IdempotencyKeyReused { operation, .. } => Some((*operation, "key_reused")),
            ApiError::IdempotencyKeyInUse { operation, .. } => Some((*operation, "key_in_use")),
            _ => None,
        };
        if let Some((operation, outcome)) = mark {
            crate::idempotent::mark(&mut response, operation, outcome);
        }
        response
    }
}
