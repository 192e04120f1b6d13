//! Expiry strategies: when allocated currency expires.

use domain::catalog::parse_name;
use domain::expiry::ExpiryRule;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::Page;
use persistence::catalog::{self, ExpiryStrategyRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::program;
use crate::app::AppState;
use crate::app::error::AppError;
use crate::app::write::{Effect, Outcome, execute};
use crate::engine::format::{to_json, ts};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ExpiryStrategy, example = json!({
    "expiryStrategyId": 1, "programId": 1, "name": "A year", "kind": "AFTER_DAYS",
    "days": 365, "months": null, "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct ExpiryStrategyView {
    pub expiry_strategy_id: i64,
    pub program_id: i64,
    pub name: String,
    pub kind: String,
    pub days: Option<i32>,
    pub months: Option<i32>,
    pub created_at: String,
}

pub fn expiry_view(s: &ExpiryStrategyRow) -> ExpiryStrategyView {
    ExpiryStrategyView {
        expiry_strategy_id: s.id,
        program_id: s.program_id,
        name: s.name.clone(),
        kind: s.kind.clone(),
        days: s.days,
        months: s.months,
        created_at: ts(s.created_at),
    }
}

/// The validated rule of a stored expiry strategy.
pub fn expiry_rule(s: &ExpiryStrategyRow) -> Result<ExpiryRule, AppError> {
    let corrupt = || AppError::Internal(format!("expiry strategy {} is malformed", s.id));
    match s.kind.as_str() {
        "NEVER" => Ok(ExpiryRule::Never),
        "AFTER_DAYS" => {
            ExpiryRule::after_days(i64::from(s.days.ok_or_else(corrupt)?)).map_err(|_| corrupt())
        }
        "END_OF_MONTH_AFTER_MONTHS" => {
            ExpiryRule::end_of_month_after_months(i64::from(s.months.ok_or_else(corrupt)?))
                .map_err(|_| corrupt())
        }
        _ => Err(corrupt()),
    }
}

/// A new expiry strategy, as asked.
#[derive(Debug)]
pub struct ExpiryAsk {
    pub name: String,
    pub kind: String,
    pub days: Option<i64>,
    pub months: Option<i64>,
}

/// The checked rule of a new expiry strategy.
fn expiry_strategy(ask: &ExpiryAsk) -> Result<(String, ExpiryRule), AppError> {
    let name = parse_name(&ask.name).map_err(|e| AppError::validation("name", e.message))?;
    let days =
        |d: i64| ExpiryRule::after_days(d).map_err(|e| AppError::validation("days", e.message));
    let months = |m: i64| {
        ExpiryRule::end_of_month_after_months(m)
            .map_err(|e| AppError::validation("months", e.message))
    };
    // Out-of-range values are refused whatever the kind, even where the kind does not use them.
    ask.days.map(days).transpose()?;
    ask.months.map(months).transpose()?;
    let rule = match ask.kind.as_str() {
        "NEVER" => Ok(ExpiryRule::Never),
        "AFTER_DAYS" => days(
            ask.days
                .ok_or_else(|| AppError::validation("days", "is required for kind AFTER_DAYS"))?,
        ),
        "END_OF_MONTH_AFTER_MONTHS" => months(ask.months.ok_or_else(|| {
            AppError::validation("months", "is required for kind END_OF_MONTH_AFTER_MONTHS")
        })?),
        _ => Err(AppError::validation(
            "kind",
            "must be NEVER, AFTER_DAYS or END_OF_MONTH_AFTER_MONTHS",
        )),
    }?;
    Ok((name, rule))
}

/// Creates an expiry strategy of program `program_id` (`None`: the path named none), its fields
/// checked first.
pub async fn create_expiry_strategy(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    program_id: Option<i64>,
    ask: &ExpiryAsk,
) -> Result<Outcome, AppError> {
    let (name, rule) = expiry_strategy(ask)?;
    let (days, months) = match rule {
        ExpiryRule::Never => (None, None),
        ExpiryRule::AfterDays(d) => (Some(d as i32), None),
        ExpiryRule::EndOfMonthAfterMonths(m) => (None, Some(m as i32)),
    };
    let program_id = program(state, org_id, program_id).await?.row.id;
    let meaning = RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("name", Some(&name))
        .with("kind", Some(rule.kind()))
        .with("days", days)
        .with("months", months);
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::ExpiryStrategyCreate,
        key,
        &meaning,
        async |tx| {
            let row = catalog::create_expiry_strategy(
                tx,
                org_id,
                program_id,
                &name,
                rule.kind(),
                days,
                months,
                now,
            )
            .await?;
            Ok(Effect::created(to_json(&expiry_view(&row)), row.id))
        },
    )
    .await
}

/// A page of the expiry strategies of program `program_id` (`None`: the path named none).
pub async fn list_expiry_strategies(
    state: &AppState,
    org_id: i64,
    program_id: Option<i64>,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<ExpiryStrategyView>, AppError> {
    let program = program(state, org_id, program_id).await?;
    let page =
        catalog::list_expiry_strategies(state.db.conn(), org_id, program.row.id, cursor, limit)
            .await?;
    Ok(Page {
        items: page.items.iter().map(expiry_view).collect(),
        next_cursor: page.next_cursor,
    })
}
