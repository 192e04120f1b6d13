//! Why a use case did not happen: the one error type of the use cases. It says what went wrong
//! in the service's terms (a field that is invalid, a business refusal with its code, an
//! outcome that is unknown); the edge (`http::problem`) decides how that is answered.
//!
//! A server error carries its cause, to be logged, never sent: no SQL, no driver text, no other
//! tenant's data.

use persistence::PersistenceError;
use serde::Serialize;

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

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404; `code` is `NOT_FOUND` or a more precise one (`REWARD_NOT_FOUND`).
    #[error("not found: {detail}")]
    NotFound { code: &'static str, detail: String },
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
    /// 503: the database is unreachable, or a commit's outcome is unknown. Always retryable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation(vec![FieldError::new(field, message)])
    }

    /// A well-formed amount that the currency (or an exact decimal) cannot hold: more decimal
    /// places than it keeps, or too large. 422, since it depends on what is stored.
    pub fn not_representable(field: &str, reason: &str) -> Self {
        AppError::Unprocessable {
            code: "AMOUNT_NOT_REPRESENTABLE",
            detail: format!("{field} {reason}."),
            retryable: false,
        }
    }

    /// A currency code: malformed → 400 on `field`; well formed but not one of the program's
    /// currencies → 404 `CURRENCY_NOT_FOUND` (it names something that is not there).
    pub fn unknown_currency(field: &str, code: &str) -> Self {
        match domain::catalog::CurrencyCode::parse(code) {
            Err(e) => AppError::validation(field, e.message),
            Ok(_) => AppError::NotFound {
                code: "CURRENCY_NOT_FOUND",
                detail: "The program has no such currency.".into(),
            },
        }
    }

    pub fn not_found(what: &str) -> Self {
        AppError::NotFound {
            code: "NOT_FOUND",
            detail: format!("{what} not found"),
        }
    }
}

impl From<PersistenceError> for AppError {
    fn from(err: PersistenceError) -> Self {
        match err {
            PersistenceError::Other(cause) | PersistenceError::UniqueViolation(cause) => {
                AppError::Internal(cause)
            }
            PersistenceError::InvalidText(_) => AppError::validation(
                "request",
                "contains characters that cannot be stored (such as NUL)",
            ),
            PersistenceError::OutOfRange(_) => AppError::Unprocessable {
                code: "AMOUNT_OUT_OF_RANGE",
                detail: "The amount would take a balance or a count past what can be stored."
                    .into(),
                retryable: false,
            },
            other => AppError::Unavailable(other.to_string()),
        }
    }
}

impl From<crate::engine::group_commit::Unanswered> for AppError {
    /// A request a queue could not answer: its outcome is unknown, so a retry finds out.
    fn from(e: crate::engine::group_commit::Unanswered) -> Self {
        AppError::Unavailable(e.0.into())
    }
}
