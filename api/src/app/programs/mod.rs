//! The catalog's programs with their currencies, award strategies and expiry strategies:
//! created (each exactly once per idempotency key), read, listed, and the stored strategies
//! decoded into the rules allocations and activations apply.

use std::collections::BTreeSet;

use domain::catalog::{CurrencyCode, parse_name};
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::money::Scale;
use persistence::Page;
use persistence::catalog::{self, Program};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::app::error::{AppError, FieldError};
use crate::app::write::{Effect, Outcome, execute};
use crate::engine::format::{to_json, ts};

mod award;
mod expiry;

pub use award::{
    AwardAsk, AwardStrategyView, CapAsk, EarnCapView, award_rule, award_view,
    create_award_strategy, earn_caps, list_award_strategies,
};
pub use expiry::{
    ExpiryAsk, ExpiryStrategyView, create_expiry_strategy, expiry_rule, expiry_view,
    list_expiry_strategies,
};

/// A value as the request carried it: the value, or why it cannot be used (a decimal with more
/// places than can be held exactly, say). The edge reads it; the use case reports the error
/// where its checks come to that field, so that the first error answered stays the same.
pub type Sent<T> = Result<T, AppError>;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Program, example = json!({
    "programId": 1, "name": "Coffee Club",
    "currencies": [{"code": "POINTS", "scale": 2}],
    "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct ProgramView {
    pub program_id: i64,
    pub name: String,
    pub currencies: Vec<CurrencyView>,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Currency)]
pub struct CurrencyView {
    pub code: String,
    /// Decimal places kept.
    pub scale: i16,
}

pub fn program_view(p: &Program) -> ProgramView {
    ProgramView {
        program_id: p.row.id,
        name: p.row.name.clone(),
        currencies: p
            .currencies
            .iter()
            .map(|c| CurrencyView {
                code: c.code.clone(),
                scale: c.scale,
            })
            .collect(),
        created_at: ts(p.row.created_at),
    }
}

/// One currency of a new program, as asked.
#[derive(Debug, Clone)]
pub struct CurrencyAsk {
    pub code: String,
    pub scale: i64,
}

/// Creates a program with its currencies. Every field is checked (all errors reported
/// together) before the currencies are compared with each other.
pub async fn create(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    name: &str,
    asked: &[CurrencyAsk],
) -> Result<Outcome, AppError> {
    let mut errors = Vec::new();
    let name = parse_name(name)
        .map_err(|e| errors.push(FieldError::new("name", e.message)))
        .ok();
    let mut currencies: Vec<(String, i16)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut twice = None;
    for (i, c) in asked.iter().enumerate() {
        match CurrencyCode::parse(&c.code) {
            Ok(code) if !seen.insert(code.as_str().to_owned()) => {
                twice.get_or_insert_with(|| code.as_str().to_owned());
            }
            Ok(code) => match Scale::new(c.scale) {
                Ok(scale) => currencies.push((code.as_str().to_owned(), scale.get() as i16)),
                Err(e) => errors.push(FieldError::new(format!("currencies[{i}].scale"), e.message)),
            },
            Err(e) => errors.push(FieldError::new(format!("currencies[{i}].code"), e.message)),
        }
    }
    let Some(name) = name.filter(|_| errors.is_empty()) else {
        return Err(AppError::Validation(errors));
    };
    // Each field is well formed, but two of them clash: a refusal of the whole (422), which
    // a JSON schema cannot state for the fields one by one.
    if let Some(code) = twice {
        return Err(AppError::Unprocessable {
            code: "CURRENCY_DUPLICATED",
            detail: format!("The currency {code} appears more than once."),
            retryable: false,
        });
    }
    let canonical_currencies: Vec<String> =
        currencies.iter().map(|(c, s)| format!("{c}:{s}")).collect();
    let meaning = RequestMeaning::new()
        .with("name", Some(&name))
        .with("currencies", Some(canonical_currencies.join(",")));
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::ProgramCreate,
        key,
        &meaning,
        async |tx| {
            let program = catalog::create_program(tx, org_id, &name, &currencies, now).await?;
            Ok(Effect::created(
                to_json(&program_view(&program)),
                program.row.id,
            ))
        },
    )
    .await
}

/// The program `id` of the organisation; 404 when there is none (`None`: the path named no
/// program at all).
pub async fn program(state: &AppState, org_id: i64, id: Option<i64>) -> Result<Program, AppError> {
    let Some(id) = id else {
        return Err(AppError::not_found("program"));
    };
    catalog::get_program(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("program"))
}

/// A program as answered.
pub async fn get(state: &AppState, org_id: i64, id: Option<i64>) -> Result<ProgramView, AppError> {
    Ok(program_view(&program(state, org_id, id).await?))
}

/// A page of the organisation's programs, oldest first.
pub async fn list(
    state: &AppState,
    org_id: i64,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<ProgramView>, AppError> {
    let page = catalog::list_programs(state.db.conn(), org_id, cursor, limit).await?;
    Ok(Page {
        items: page.items.iter().map(program_view).collect(),
        next_cursor: page.next_cursor,
    })
}
