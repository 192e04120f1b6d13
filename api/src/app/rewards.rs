//! The rewards of a program: created, changed (stock, limits, validity, status), read and
//! listed; an issuance cancelled; a customer's issuances. Issuing itself is
//! [`crate::app::issuance`].

use chrono::{DateTime, Utc};
use domain::catalog::parse_name;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::issuance::RewardStatus;
use domain::period::Period;
use persistence::Page;
use persistence::issuances::{self, Issuance};
use persistence::rewards::{self, NewReward, RewardPatch, RewardRow, StockChange};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::app::error::AppError;
use crate::app::write::{Done, Effect, Outcome, execute};
use crate::engine::format::{to_json, ts};

/// The largest stock or limit a reward may have.
pub const MAX_COUNT: i64 = 1_000_000_000_000;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Reward, example = json!({
    "rewardId": 1, "programId": 1, "name": "Free coffee", "stock": 999, "issued": 1,
    "perCustomerLimit": 5, "perCustomerLimitPeriod": "LIFETIME", "periodLimit": 100,
    "periodLimitPeriod": "DAY", "validFrom": null, "validUntil": "2027-01-01T00:00:00Z",
    "status": "ACTIVE", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-02T00:00:00Z"
}))]
pub struct RewardView {
    pub reward_id: i64,
    pub program_id: i64,
    pub name: String,
    /// Units left; null: unlimited.
    pub stock: Option<i64>,
    /// Units issued and not cancelled.
    pub issued: i64,
    /// Units one customer may hold (LIFETIME) or be issued per period; null: unlimited.
    pub per_customer_limit: Option<i64>,
    /// LIFETIME (units held now), or DAY, WEEK, MONTH, YEAR (units issued in the calendar
    /// period, UTC).
    pub per_customer_limit_period: String,
    /// Units everyone together may be issued per periodLimitPeriod; null: no limit.
    pub period_limit: Option<i64>,
    pub period_limit_period: Option<String>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    /// ACTIVE or PAUSED.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

pub fn reward_view(r: &RewardRow) -> RewardView {
    RewardView {
        reward_id: r.id,
        program_id: r.program_id,
        name: r.name.clone(),
        stock: r.stock,
        issued: r.issued,
        per_customer_limit: r.per_customer_limit,
        per_customer_limit_period: r.per_customer_limit_period.clone(),
        period_limit: r.period_limit,
        period_limit_period: r.period_limit_period.clone(),
        valid_from: r.valid_from.map(ts),
        valid_until: r.valid_until.map(ts),
        status: r.status.clone(),
        created_at: ts(r.created_at),
        updated_at: ts(r.updated_at),
    }
}

/// A reward whose `validUntil` is not after its `validFrom` (given together, or one given and
/// the other stored): 422, since neither field is wrong alone.
fn window_empty() -> AppError {
    AppError::Unprocessable {
        code: "VALIDITY_WINDOW_EMPTY",
        detail: "validUntil must be after validFrom.".into(),
        retryable: false,
    }
}

fn count(field: &str, v: Option<i64>, min: i64) -> Result<Option<i64>, AppError> {
    match v {
        Some(n) if !(min..=MAX_COUNT).contains(&n) => Err(AppError::validation(
            field,
            format!("must be from {min} to {MAX_COUNT}, or null for unlimited"),
        )),
        other => Ok(other),
    }
}

/// A calendar period's name (`DAY` … `LIFETIME`).
fn period(field: &str, v: &str) -> Result<String, AppError> {
    v.parse::<Period>()
        .map(|p| p.as_str().to_owned())
        .map_err(|e| AppError::validation(field, e.message))
}

fn status(v: &str) -> Result<RewardStatus, AppError> {
    RewardStatus::parse(v).ok_or_else(|| AppError::validation("status", "must be ACTIVE or PAUSED"))
}

/// A new reward, as asked.
#[derive(Debug, Default)]
pub struct RewardAsk {
    pub name: String,
    pub stock: Option<i64>,
    pub per_customer_limit: Option<i64>,
    pub per_customer_limit_period: Option<String>,
    pub period_limit: Option<i64>,
    pub period_limit_period: Option<String>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub status: Option<String>,
}

/// Creates a reward of program `program_id` (`None`: the path named none), its fields checked
/// first.
pub async fn create(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    program_id: Option<i64>,
    ask: &RewardAsk,
) -> Result<Outcome, AppError> {
    let name = parse_name(&ask.name).map_err(|e| AppError::validation("name", e.message))?;
    let stock = count("stock", ask.stock, 0)?;
    let limit = count("perCustomerLimit", ask.per_customer_limit, 0)?;
    let customer_period = period(
        "perCustomerLimitPeriod",
        ask.per_customer_limit_period
            .as_deref()
            .unwrap_or("LIFETIME"),
    )?;
    let period_limit = count("periodLimit", ask.period_limit, 0)?;
    let period_limit_period = match ask.period_limit_period.as_deref() {
        Some(p) => Some(period("periodLimitPeriod", p)?),
        None => period_limit.map(|_| "DAY".to_owned()),
    };
    let status = status(ask.status.as_deref().unwrap_or("ACTIVE"))?;
    let (valid_from, valid_until) = (ask.valid_from, ask.valid_until);
    if let (Some(f), Some(u)) = (valid_from, valid_until)
        && u <= f
    {
        return Err(window_empty());
    }
    let program_id = crate::app::programs::program(state, org_id, program_id)
        .await?
        .row
        .id;
    let new = NewReward {
        program_id,
        name,
        stock,
        per_customer_limit: limit,
        valid_from,
        valid_until,
        status: status.as_str().to_owned(),
        per_customer_limit_period: customer_period,
        period_limit,
        period_limit_period,
    };
    let meaning = RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("name", Some(&new.name))
        .with("stock", new.stock)
        .with("perCustomerLimit", new.per_customer_limit)
        .with("validFrom", new.valid_from.map(ts))
        .with("validUntil", new.valid_until.map(ts))
        .with("status", Some(&new.status))
        .with(
            "perCustomerLimitPeriod",
            Some(&new.per_customer_limit_period),
        )
        .with("periodLimit", new.period_limit)
        .with("periodLimitPeriod", new.period_limit_period.as_ref());
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::RewardCreate,
        key,
        &meaning,
        async |tx| {
            let row = rewards::create(tx, org_id, &new, now).await?;
            Ok(Effect::created(to_json(&reward_view(&row)), row.id))
        },
    )
    .await
}

/// A page of the rewards of program `program_id` (`None`: the path named none).
pub async fn list(
    state: &AppState,
    org_id: i64,
    program_id: Option<i64>,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<RewardView>, AppError> {
    let program = crate::app::programs::program(state, org_id, program_id).await?;
    let page = rewards::list(state.db.conn(), org_id, program.row.id, cursor, limit).await?;
    Ok(Page {
        items: page.items.iter().map(reward_view).collect(),
        next_cursor: page.next_cursor,
    })
}

/// A reward as answered.
pub async fn get(state: &AppState, org_id: i64, id: i64) -> Result<RewardView, AppError> {
    let row = rewards::get(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("reward"))?;
    Ok(reward_view(&row))
}

/// The changes asked of a reward: an absent field stays, `Some(None)` clears.
#[derive(Debug, Default)]
pub struct RewardChanges {
    pub name: Option<String>,
    pub stock: Option<Option<i64>>,
    pub add_stock: Option<i64>,
    pub per_customer_limit: Option<Option<i64>>,
    pub valid_from: Option<Option<DateTime<Utc>>>,
    pub valid_until: Option<Option<DateTime<Utc>>>,
    pub status: Option<String>,
    pub per_customer_limit_period: Option<String>,
    pub period_limit: Option<Option<i64>>,
    pub period_limit_period: Option<String>,
}

/// The checked patch of `changes`.
fn reward_patch(changes: RewardChanges) -> Result<RewardPatch, AppError> {
    let mut patch = RewardPatch {
        name: changes
            .name
            .as_deref()
            .map(parse_name)
            .transpose()
            .map_err(|e| AppError::validation("name", e.message))?,
        ..RewardPatch::default()
    };
    patch.stock = match (changes.stock, changes.add_stock) {
        // Each well formed, but together they ask two things of the stock: 422, like the
        // other clashes between fields.
        (Some(_), Some(_)) => {
            return Err(AppError::Unprocessable {
                code: "STOCK_CHANGE_AMBIGUOUS",
                detail: "Send stock or addStock, not both.".into(),
                retryable: false,
            });
        }
        (Some(s), None) => Some(StockChange::Set(count("stock", s, 0)?)),
        (None, Some(n)) if (1..=MAX_COUNT).contains(&n) => Some(StockChange::Add(n)),
        (None, Some(_)) => {
            return Err(AppError::validation(
                "addStock",
                format!("must be from 1 to {MAX_COUNT}"),
            ));
        }
        (None, None) => None,
    };
    patch.per_customer_limit = changes
        .per_customer_limit
        .map(|l| count("perCustomerLimit", l, 0))
        .transpose()?;
    patch.per_customer_limit_period = changes
        .per_customer_limit_period
        .as_deref()
        .map(|p| period("perCustomerLimitPeriod", p))
        .transpose()?;
    patch.period_limit = changes
        .period_limit
        .map(|l| count("periodLimit", l, 0))
        .transpose()?;
    patch.period_limit_period = changes
        .period_limit_period
        .as_deref()
        .map(|p| period("periodLimitPeriod", p))
        .transpose()?;
    patch.valid_from = changes.valid_from;
    patch.valid_until = changes.valid_until;
    patch.status = changes
        .status
        .as_deref()
        .map(status)
        .transpose()?
        .map(|s| s.as_str().to_owned());
    Ok(patch)
}

/// Changes reward `id` (`None`: the path named none), the changes checked first; the validity
/// window is checked on the changed row, as a bound may be changed alone.
pub async fn patch(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    id: Option<i64>,
    changes: RewardChanges,
) -> Result<Outcome, AppError> {
    let patch = reward_patch(changes)?;
    let id = id.ok_or_else(|| AppError::not_found("reward"))?;
    let meaning = RequestMeaning::new()
        .with("rewardId", Some(id))
        .with("name", patch.name.as_ref())
        .with("stock", patch.stock.map(|s| format!("{s:?}")))
        .with(
            "perCustomerLimit",
            patch.per_customer_limit.map(|l| format!("{l:?}")),
        )
        .with(
            "validFrom",
            patch.valid_from.map(|v| format!("{:?}", v.map(ts))),
        )
        .with(
            "validUntil",
            patch.valid_until.map(|v| format!("{:?}", v.map(ts))),
        )
        .with("status", patch.status.as_ref())
        .with(
            "perCustomerLimitPeriod",
            patch.per_customer_limit_period.as_ref(),
        )
        .with("periodLimit", patch.period_limit.map(|l| format!("{l:?}")))
        .with("periodLimitPeriod", patch.period_limit_period.as_ref());
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::RewardUpdate,
        key,
        &meaning,
        async |tx| {
            let row = rewards::update(tx, org_id, id, &patch, now)
                .await?
                .ok_or_else(|| AppError::not_found("reward"))?;
            if let (Some(f), Some(u)) = (row.valid_from, row.valid_until)
                && u <= f
            {
                return Err(window_empty());
            }
            // A PATCH answers 200 (202 for a replay): nothing is created.
            Ok(Effect::created(to_json(&reward_view(&row)), row.id).done(Done::Updated))
        },
    )
    .await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Issuance, example = json!({
    "issuanceId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c04", "requestId": "T-1001-1",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "rewardId": 1, "quantity": 1,
    "status": "CANCELLED", "vouchers": ["K7QX-94MD-2HTW"], "brand": null,
    "transactionNumber": "T-1001", "createdAt": "2026-01-01T00:00:00Z",
    "cancelledAt": "2026-01-02T00:00:00Z", "reason": "order returned"
}))]
pub struct IssuanceView {
    pub issuance_id: String,
    pub request_id: String,
    pub customer_id: String,
    pub reward_id: i64,
    pub quantity: i64,
    /// ISSUED or CANCELLED.
    pub status: String,
    pub vouchers: Vec<String>,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    pub created_at: String,
    pub cancelled_at: Option<String>,
    /// In the answer to a cancellation: the reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub fn issuance_view(i: &Issuance) -> IssuanceView {
    IssuanceView {
        issuance_id: i.row.id.to_string(),
        request_id: i.row.request_id.clone(),
        customer_id: i.row.customer_id.to_string(),
        reward_id: i.row.reward_id,
        quantity: i.row.quantity,
        status: i.row.status.clone(),
        vouchers: i.vouchers.clone(),
        brand: i.row.brand.clone(),
        transaction_number: i.row.transaction_number.clone(),
        created_at: ts(i.row.created_at),
        cancelled_at: i.row.cancelled_at.map(ts),
        reason: None,
    }
}

/// Cancels issuance `id`: its units go back to the reward's stock, to the customer's holding
/// and to the period counters it was counted in; `reward.cancelled` is emitted. The issuance is
/// its own idempotency key (returned with the outcome): cancelling twice replays the first
/// answer.
pub async fn cancel(
    state: &AppState,
    org_id: i64,
    id: Uuid,
    reason: Option<String>,
) -> Result<(Outcome, IdempotencyKey), AppError> {
    let key = IdempotencyKey::parse(&id.to_string()).map_err(|e| AppError::Internal(e.message))?;
    let meaning = RequestMeaning::new().with("issuanceId", Some(id));
    let now = state.now();
    let outcome = execute(
        state,
        org_id,
        Operation::IssuanceCancellation,
        Some(&key),
        &meaning,
        async |tx| {
            let row = issuances::mark_cancelled(tx, org_id, id, now).await?;
            let Some(row) = row else {
                return match issuances::get(tx, org_id, id).await? {
                    None => Err(AppError::not_found("issuance")),
                    Some(_) => Err(AppError::Unprocessable {
                        code: "ISSUANCE_ALREADY_CANCELLED",
                        detail: "The issuance was cancelled before.".into(),
                        retryable: false,
                    }),
                };
            };
            rewards::return_stock(tx, org_id, row.reward_id, row.quantity, now).await?;
            issuances::release(tx, org_id, row.customer_id, row.reward_id, row.quantity).await?;
            // The units go back to the counters the issuance was counted in, and only those.
            for key in crate::app::issuance::counted_keys(&row) {
                persistence::reward_periods::lower(tx, key, row.quantity).await?;
            }
            let issuance = issuances::get(tx, org_id, id)
                .await?
                .ok_or_else(|| AppError::Internal("cancelled issuance vanished".into()))?;
            let body = to_json(&IssuanceView {
                reason: reason.clone(),
                ..issuance_view(&issuance)
            });
            let events = vec![crate::engine::webhooks::event(
                "reward.cancelled",
                body.clone(),
                now,
            )];
            crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, id))
        },
    )
    .await?;
    Ok((outcome, key))
}

/// A page of the issuances of the customer a `{customerId}` path names, newest first.
pub async fn customer_rewards(
    state: &AppState,
    org_id: i64,
    customer: &str,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<IssuanceView>, AppError> {
    let customer = crate::app::customers::by_path(state, org_id, customer).await?;
    let page =
        issuances::list_for_customer(state.db.conn(), org_id, customer.id, cursor, limit).await?;
    Ok(Page {
        items: page.items.iter().map(issuance_view).collect(),
        next_cursor: page.next_cursor,
    })
}
