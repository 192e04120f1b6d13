//! How a write's outcome is answered: 201 (or 200, 204) for an effect that happened now, 202 for
//! a replay, with `idempotentReplayed` and `idempotencyKey` in the body and the
//! `Idempotent-Replayed` header; and the mark the metrics middleware counts.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use domain::idempotency::{IdempotencyKey, Operation};
use serde_json::Value;

use crate::app::write::{Done, Outcome, Stored, with_flags};

/// The status of a first answer.
pub fn status(done: Done) -> StatusCode {
    match done {
        Done::Created => StatusCode::CREATED,
        Done::Updated => StatusCode::OK,
        Done::Removed => StatusCode::NO_CONTENT,
    }
}

/// 201 for a new effect, 202 for a replay, with `idempotentReplayed` and `idempotencyKey` in the
/// body and the `Idempotent-Replayed` header.
pub fn respond(
    operation: Operation,
    outcome: Outcome,
    key: Option<&IdempotencyKey>,
) -> HttpResponse {
    let (mut response, outcome) = match outcome {
        Outcome::Created(done, body) => {
            (json_with_flags(status(done), body, false, key), "created")
        }
        Outcome::CreatedText(done, body) => {
            (text_with_flags(status(done), body, false, key), "created")
        }
        Outcome::Replayed(stored) => (
            text_with_flags(StatusCode::ACCEPTED, stored, true, key),
            "replayed",
        ),
    };
    mark(&mut response, operation.as_str(), outcome);
    response
}

/// 204 for a deletion or revocation (nothing to show), with `Idempotent-Replayed` saying
/// whether it happened now or is the replay of an earlier one.
pub fn no_content(operation: Operation, outcome: Outcome) -> HttpResponse {
    let replayed = matches!(outcome, Outcome::Replayed(_));
    let mut response = HttpResponse::NoContent()
        .insert_header((
            "Idempotent-Replayed",
            if replayed { "true" } else { "false" },
        ))
        .finish();
    mark(
        &mut response,
        operation.as_str(),
        if replayed { "replayed" } else { "created" },
    );
    response
}

/// What a keyed write's answer was, for the metrics middleware to count
/// (`loyalty_idempotency_outcomes_total{operation, outcome}`) once the answer is final.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyMark {
    pub operation: &'static str,
    pub outcome: &'static str,
}

/// Marks `response` as a keyed write's `outcome`.
pub fn mark(response: &mut HttpResponse, operation: &'static str, outcome: &'static str) {
    response
        .extensions_mut()
        .insert(IdempotencyMark { operation, outcome });
}

/// [`json_with_flags`] for a body already written as text.
fn text_with_flags(
    status: StatusCode,
    body: Stored,
    replayed: bool,
    key: Option<&IdempotencyKey>,
) -> HttpResponse {
    match body.with_flags(replayed, key) {
        Ok(body) => HttpResponse::build(status)
            .insert_header((
                "Idempotent-Replayed",
                if replayed { "true" } else { "false" },
            ))
            .insert_header(actix_web::http::header::ContentType::json())
            .body(body),
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

pub fn json_with_flags(
    status: StatusCode,
    body: Value,
    replayed: bool,
    key: Option<&IdempotencyKey>,
) -> HttpResponse {
    let body = with_flags(body, replayed, key);
    HttpResponse::build(status)
        .insert_header((
            "Idempotent-Replayed",
            if replayed { "true" } else { "false" },
        ))
        .json(body)
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
