//! Holds: two-phase redemption. Points leave `available` for `held` at once, and a capture
//! (spend), a void (release) or the hold's expiry ends the hold, exactly once.
//!
//! Every write here takes the account's balance lock first ([`settle`], which also expires the
//! account's due lots), then reads the hold, then changes it with a conditional update: a
//! capture, a void and the expiry worker racing each other are serialised by the lock, and the
//! loser finds the hold no longer `HELD` (409 `HOLD_NOT_ACTIVE`).

use chrono::{DateTime, Utc};
use domain::Decimal;
use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::holds::{self, HoldRow, NewHold};
use persistence::ledger::{self, Totals};
use persistence::webhooks::NewEvent;
use persistence::{Db, PersistenceError, customers};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::currency::{
    Balance, in_minor_units, insufficient, more_than_zero, round, spend_meaning, to_minor,
};
use crate::app::settle::settle;
use crate::app::write::{Effect, Outcome, execute};
use crate::app::{AppError, AppState};
use crate::engine::format::{amount, to_json, ts};
use crate::engine::rounds::{Round, Step};
use crate::engine::webhooks::event;

/// How long a hold lasts unless told otherwise, and the longest it may last.
pub const DEFAULT_HOLD_SECONDS: i64 = 900;
pub const MAX_HOLD_SECONDS: i64 = 604_800;

/// A hold as the edge parsed it (the amount and currency checked by
/// [`spend_fields`](crate::app::currency::spend_fields), the lifetime by [`lifetime`]).
#[derive(Debug)]
pub struct HoldRequest {
    pub org_id: i64,
    pub key: IdempotencyKey,
    pub customer: CustomerRef,
    pub program_id: i64,
    pub currency: String,
    pub amount: Decimal,
    /// How long the hold lasts, in seconds.
    pub seconds: i64,
    pub reason: Option<String>,
}

/// How long a hold lasts: `seconds` if given (1 to [`MAX_HOLD_SECONDS`], else 400), else
/// [`DEFAULT_HOLD_SECONDS`].
pub fn lifetime(seconds: Option<i64>) -> Result<i64, AppError> {
    let seconds = seconds.unwrap_or(DEFAULT_HOLD_SECONDS);
    if !(1..=MAX_HOLD_SECONDS).contains(&seconds) {
        return Err(AppError::validation(
            "expiresInSeconds",
            format!("must be 1 to {MAX_HOLD_SECONDS}"),
        ));
    }
    Ok(seconds)
}

/// A hold and the balance of its account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Hold, example = json!({
    "holdId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c05", "uniqueId": "checkout-77",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "programId": 1, "currency": "POINTS",
    "amount": "40.00", "heldAmount": "40.00", "status": "HELD", "capturedAmount": "0.00",
    "releasedAmount": "0.00", "expiredAmount": "0.00", "reason": null,
    "expiresAt": "2026-01-01T00:15:00Z", "createdAt": "2026-01-01T00:00:00Z",
    "updatedAt": "2026-01-01T00:00:00Z",
    "balance": {"available": "60.00", "pending": "0.00", "held": "40.00"}
}))]
pub struct HoldView {
    pub hold_id: String,
    pub unique_id: String,
    pub customer_id: String,
    pub program_id: i64,
    pub currency: String,
    /// What was asked for.
    pub amount: String,
    /// What the hold still reserves: `amount` less what expired while held (0 once settled).
    pub held_amount: String,
    /// HELD, CAPTURED, VOIDED or EXPIRED.
    #[schema(pattern = "^(HELD|CAPTURED|VOIDED|EXPIRED)$")]
    pub status: String,
    /// What a capture spent.
    pub captured_amount: String,
    /// What went back to `available` (by a void, an expiry, or a capture of less).
    pub released_amount: String,
    /// What of the held points expired (with their lots) before the hold was settled.
    pub expired_amount: String,
    pub reason: Option<String>,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub balance: Balance,
}

pub(crate) fn hold_view(h: &HoldRow, balance: Totals) -> HoldView {
    HoldView {
        hold_id: h.id.to_string(),
        unique_id: h.unique_id.clone(),
        customer_id: h.customer_id.to_string(),
        program_id: h.program_id,
        currency: h.currency.clone(),
        amount: amount(h.amount, h.scale),
        held_amount: amount(h.held, h.scale),
        status: h.status.clone(),
        captured_amount: amount(h.captured_amount, h.scale),
        released_amount: amount(h.released_amount, h.scale),
        expired_amount: amount(h.expired_amount, h.scale),
        reason: h.reason.clone(),
        expires_at: ts(h.expires_at),
        created_at: ts(h.created_at),
        updated_at: ts(h.updated_at),
        balance: Balance::of(balance, h.scale),
    }
}

fn hold_json(h: &HoldRow, balance: Totals) -> Value {
    to_json(&hold_view(h, balance))
}

/// The refusal to settle a hold another settlement ended first.
fn not_active(h: &HoldRow) -> AppError {
    AppError::Conflict {
        code: "HOLD_NOT_ACTIVE",
        detail: format!("The hold is {}, no longer HELD.", h.status),
    }
}

/// Holds points, exactly once per key.
pub async fn create(state: &AppState, r: HoldRequest) -> Result<Outcome, AppError> {
    let HoldRequest {
        org_id,
        key,
        customer,
        program_id,
        currency,
        amount: requested,
        seconds,
        reason,
    } = r;
    let meaning = spend_meaning(program_id, &currency, requested)
        .with("customer", Some(&customer))
        .with("expiresInSeconds", Some(seconds));
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::CurrencyHold,
        Some(&key),
        &meaning,
        async |tx| {
            let (scale, minor) = in_minor_units(
                state, tx, org_id, program_id, &currency, requested, "amount",
            )
            .await??;
            let customer = customers::find(tx, org_id, &customer)
                .await?
                .ok_or_else(|| AppError::not_found("customer"))?;
            let new = NewHold {
                id: Uuid::now_v7(),
                org_id,
                unique_id: key.to_string(),
                customer_id: customer.id,
                program_id,
                currency: currency.clone(),
                amount: minor,
                reason: reason.clone(),
                expires_at: now + chrono::Duration::seconds(seconds),
            };
            let account = crate::app::currency::account(org_id, customer.id, program_id, &currency);
            if !settle(state, tx, &account, now).await? {
                return Err(insufficient());
            }
            holds::insert(tx, &new, now).await?;
            let (_, after) = ledger::hold(tx, &account, new.id, minor, now)
                .await?
                .ok_or_else(insufficient)?;
            let row = HoldRow {
                id: new.id,
                org_id,
                unique_id: new.unique_id,
                customer_id: customer.id,
                program_id,
                currency: new.currency,
                amount: minor,
                held: minor,
                captured_amount: 0,
                released_amount: 0,
                expired_amount: 0,
                status: "HELD".into(),
                reason: new.reason,
                expires_at: new.expires_at,
                created_at: now,
                updated_at: now,
                scale,
            };
            let body = hold_json(&row, after);
            let events = vec![event("currency.held", body.clone(), now)];
            crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, row.id))
        },
    )
    .await
}

/// The hold `raw` names, or 404 (also for an id that is not a UUID).
async fn find(state: &AppState, org_id: i64, raw: &str) -> Result<HoldRow, AppError> {
    let id = Uuid::parse_str(raw).map_err(|_| AppError::not_found("hold"))?;
    holds::get(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("hold"))
}

/// The hold `raw` names, with the current balance of its account.
pub async fn get(state: &AppState, org_id: i64, raw: &str) -> Result<HoldView, AppError> {
    let hold = find(state, org_id, raw).await?;
    let balance = ledger::totals(state.db.conn(), &hold.account()).await?;
    Ok(hold_view(&hold, balance))
}

/// Captures the hold `raw` names, once: `amount` of it (as the edge parsed it, its error
/// answered once the hold is found), or all it still holds.
pub async fn capture(
    state: &AppState,
    org_id: i64,
    raw: &str,
    amount: Option<Result<Decimal, AppError>>,
) -> Result<(Outcome, IdempotencyKey), AppError> {
    let hold = find(state, org_id, raw).await?;
    let wanted = match amount {
        None => None,
        Some(value) => {
            let value = more_than_zero("amount", value?)?;
            let minor = to_minor(hold.scale, "amount", value)?;
            if minor > hold.amount {
                return Err(AppError::validation(
                    "amount",
                    "is more than the hold's amount",
                ));
            }
            Some((value, minor))
        }
    };
    let meaning = RequestMeaning::new().with(
        "amount",
        Some(wanted.map_or_else(|| "ALL".to_owned(), |(v, _)| v.to_string())),
    );
    settle_hold(
        state,
        hold,
        Operation::HoldCapture,
        &meaning,
        wanted.map(|(_, m)| m),
    )
    .await
}

/// Voids the hold `raw` names, once: releases all it still holds.
pub async fn void(
    state: &AppState,
    org_id: i64,
    raw: &str,
) -> Result<(Outcome, IdempotencyKey), AppError> {
    let hold = find(state, org_id, raw).await?;
    settle_hold(
        state,
        hold,
        Operation::HoldVoid,
        &RequestMeaning::new(),
        Some(0),
    )
    .await
}

/// Captures (`operation` `HoldCapture`, `capture` the amount or `None` for all it holds) or
/// voids (`HoldVoid`, `capture` 0) a hold, exactly once per hold: the hold's id is the key.
async fn settle_hold(
    state: &AppState,
    hold: HoldRow,
    operation: Operation,
    meaning: &RequestMeaning,
    capture: Option<i64>,
) -> Result<(Outcome, IdempotencyKey), AppError> {
    let org_id = hold.org_id;
    let key =
        IdempotencyKey::parse(&hold.id.to_string()).map_err(|e| AppError::Internal(e.message))?;
    let now = state.now();
    let outcome = execute(state, org_id, operation, Some(&key), meaning, async |tx| {
        let account = hold.account();
        settle(state, tx, &account, now).await?;
        // Read again under the balance lock: the expiry of a lot may have lowered `held`, and a
        // racing capture, void or expiry may have ended the hold.
        let current = holds::get(tx, org_id, hold.id)
            .await?
            .ok_or_else(|| AppError::not_found("hold"))?;
        if current.status != "HELD" {
            return Err(not_active(&current));
        }
        if current.expires_at <= now {
            return Err(AppError::Conflict {
                code: "HOLD_NOT_ACTIVE",
                detail: "The hold has expired.".into(),
            });
        }
        let capture = capture.unwrap_or(current.held);
        if operation == Operation::HoldCapture && (capture == 0 || capture > current.held) {
            return Err(AppError::Unprocessable {
                code: "INSUFFICIENT_BALANCE",
                detail: format!(
                    "The hold holds {} now: part of what it held has expired.",
                    amount(current.held, current.scale)
                ),
                retryable: false,
            });
        }
        let status = if operation == Operation::HoldCapture {
            "CAPTURED"
        } else {
            "VOIDED"
        };
        let (row, after) = end_hold(tx, current, status, capture, now).await?;
        let body = hold_json(&row, after);
        let kind = if status == "CAPTURED" {
            "currency.hold_captured"
        } else {
            "currency.hold_voided"
        };
        let events = vec![event(kind, body.clone(), now)];
        crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
        Ok(Effect::created(body, row.id))
    })
    .await?;
    Ok((outcome, key))
}

/// Ends an active hold read under its account's balance lock: spends `capture` of what it
/// holds from its lots, releases the rest, and records `status` (`CAPTURED`, `VOIDED` or
/// `EXPIRED`). Returns the hold as it now is and the balance after.
async fn end_hold(
    tx: &persistence::Tx,
    current: HoldRow,
    status: &str,
    capture: i64,
    now: DateTime<Utc>,
) -> Result<(HoldRow, Totals), PersistenceError> {
    let account = current.account();
    let settled = ledger::settle_hold(tx, &account, current.id, current.held, capture, now).await?;
    let ended = holds::finish(
        tx,
        current.org_id,
        current.id,
        status,
        capture,
        settled.released_amount,
        now,
    )
    .await?;
    if !ended {
        // The caller read it HELD under the balance lock, which every settlement takes.
        return Err(PersistenceError::Other(format!(
            "hold {} settled concurrently",
            current.id
        )));
    }
    let row = HoldRow {
        held: 0,
        captured_amount: capture,
        released_amount: settled.released_amount,
        status: status.into(),
        updated_at: now,
        ..current
    };
    Ok((row, settled.after))
}

/// Releases every hold whose `expiresAt` has passed (status `EXPIRED`, event
/// `currency.hold_expired`), up to `limit` of them; returns how many. Safe on any number of
/// instances: an account another transaction holds is skipped (`SKIP LOCKED`) for the next
/// round, and a hold is ended only if it is still `HELD`.
pub async fn expire_due_holds(
    db: &Db,
    now: DateTime<Utc>,
    limit: u64,
    skip: &[Uuid],
) -> Result<Round<Uuid>, PersistenceError> {
    let due = holds::due(db.conn(), now, limit, skip).await?;
    let one = |h: HoldRow| async move { expire_hold(db, &h, now).await };
    Ok(round("hold_expiry", due, |h| h.id, one).await)
}

async fn expire_hold(
    db: &Db,
    hold: &HoldRow,
    now: DateTime<Utc>,
) -> Result<Step, PersistenceError> {
    let tx = db.begin().await?;
    let account = hold.account();
    if ledger::lock_balance(&tx, &account, true).await?.is_none() {
        return Ok(Step::Busy);
    }
    let lots = ledger::expire_due(&tx, &account, now).await?;
    let mut events = crate::engine::webhooks::expired_events(&account, &lots.entries, now);
    let Some(expired) = expire_locked(&tx, hold.org_id, hold.id, now).await? else {
        return Ok(Step::Settled);
    };
    events.push(expired);
    persistence::webhooks::emit(&tx, account.org_id, &events, now).await?;
    Db::commit(tx).await?;
    Ok(Step::Done)
}

/// Ends hold `id` as `EXPIRED` if it is still `HELD` and past its `expiresAt` at `now`, and
/// returns its `currency.hold_expired` event; `None` when there is nothing to do. The caller
/// holds the account's balance lock (the lock every settlement of a hold takes).
pub async fn expire_locked(
    tx: &persistence::Tx,
    org_id: i64,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<NewEvent<'static>>, PersistenceError> {
    let Some(current) = holds::get(tx, org_id, id).await? else {
        return Ok(None);
    };
    if current.status != "HELD" || current.expires_at > now {
        return Ok(None);
    }
    let (row, after) = end_hold(tx, current, "EXPIRED", 0, now).await?;
    Ok(Some(event(
        "currency.hold_expired",
        hold_json(&row, after),
        now,
    )))
}
