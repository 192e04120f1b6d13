//! Holds: two-phase redemption. Points leave `available` for `held` at once, and a capture
//! (spend), a void (release) or the hold's expiry ends the hold, exactly once.
//!
//! Every write here takes the account's balance lock first ([`settle`], which also expires the
//! account's due lots), then reads the hold, then changes it with a conditional update: a
//! capture, a void and the expiry worker racing each other are serialised by the lock, and the
//! loser finds the hold no longer `HELD` (409 `HOLD_NOT_ACTIVE`).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::holds::{self, HoldRow, NewHold};
use persistence::ledger::{self, Totals};
use persistence::webhooks::NewEvent;
use persistence::{Db, PersistenceError, customers};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::settle::settle;
use crate::app::write::{Effect, execute};
use crate::engine::format::to_json;
use crate::engine::format::{amount, ts};
use crate::engine::rounds::{Round, Step};
use crate::engine::webhooks::event;
use crate::http::allocations::{Balance, insufficient, spend_fields, spend_meaning};
use crate::http::answer::respond;
use crate::http::dto::{
    DecimalInput, FlexId, LookupParams, LooseString, WholeNumber, bounded_text,
};
use crate::http::extract::{IdempotencyHeader, Json, OptionalJson, Tenant, required_key};
use crate::http::openapi::{
    HoldPath, Missing, Read, Replayed, Write, currency_schema, customer_id_schema, email_schema,
    external_id_schema, key_schema, mobile_schema, positive_decimal_schema, text500_schema,
};

/// How long a hold lasts unless told otherwise, and the longest it may last.
pub const DEFAULT_HOLD_SECONDS: i64 = 900;
pub const MAX_HOLD_SECONDS: i64 = 604_800;

/// Reserves a customer's points until the order settles.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "programId": 1, "currency": "POINTS", "amount": "40", "uniqueId": "checkout-77",
    "mobile": "919999999999", "expiresInSeconds": 900
}))]
pub struct HoldBody {
    pub program_id: FlexId,
    #[schema(schema_with = currency_schema)]
    pub currency: String,
    #[schema(schema_with = positive_decimal_schema)]
    pub amount: DecimalInput,
    /// The idempotency key (or send the Idempotency-Key header; the same value if both).
    #[schema(schema_with = key_schema, required = true)]
    pub unique_id: Option<String>,
    /// How long the hold lasts before it is released by itself (default 900, at most 604800);
    /// a whole number, `900.0` included.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 604800)]
    pub expires_in_seconds: Option<WholeNumber>,
    #[schema(schema_with = text500_schema)]
    pub reason: Option<String>,
    #[schema(schema_with = mobile_schema)]
    pub mobile: Option<LooseString>,
    #[schema(schema_with = email_schema)]
    pub email: Option<LooseString>,
    #[schema(schema_with = external_id_schema)]
    pub external_id: Option<LooseString>,
    #[schema(schema_with = customer_id_schema)]
    pub customer_id: Option<LooseString>,
    pub lookup_params: Option<LookupParams>,
}

/// How much of a hold to capture (default: all it still holds).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CaptureBody, example = json!({"amount": "30"}))]
pub struct CaptureBody {
    #[schema(schema_with = crate::http::openapi::optional_positive_decimal_schema)]
    pub amount: Option<DecimalInput>,
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

fn hold_view(h: &HoldRow, balance: Totals) -> HoldView {
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

fn not_active(h: &HoldRow) -> AppError {
    AppError::Conflict {
        code: "HOLD_NOT_ACTIVE",
        detail: format!("The hold is {}, no longer HELD.", h.status),
    }
}

/// `POST /v1/currency/holds`: reserves points; a key is required.
#[utoipa::path(post, path = "/v1/currency/holds", tag = "Currency",
    operation_id = "holds_create",
    summary = "Hold points until they are captured or voided (a key is required)",
    request_body = HoldBody,
    responses(
        (status = 201, description = "Held now", body = HoldView, links(
            ("GetHold" = (operation_id = "holds_get", parameters(("holdId" = "$response.body#/holdId")))),
            ("CaptureHold" = (operation_id = "holds_capture", parameters(("holdId" = "$response.body#/holdId")))),
            ("VoidHold" = (operation_id = "holds_void", parameters(("holdId" = "$response.body#/holdId")))),
        )),
        Replayed<HoldView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    Json(body): Json<HoldBody>,
) -> Result<HttpResponse, AppError> {
    let org_id = tenant.org_id;
    let key = required_key(body.unique_id.as_deref(), &header)?;
    let customer = crate::customer_of!(body).parse()?;
    let (program_id, currency, requested) =
        spend_fields(&body.program_id, &body.currency, &body.amount)?;
    let seconds = body
        .expires_in_seconds
        .map_or(DEFAULT_HOLD_SECONDS, |WholeNumber(s)| s);
    if !(1..=MAX_HOLD_SECONDS).contains(&seconds) {
        return Err(AppError::validation(
            "expiresInSeconds",
            format!("must be 1 to {MAX_HOLD_SECONDS}"),
        ));
    }
    let reason = bounded_text("reason", body.reason.as_deref(), 500)?;
    let meaning = spend_meaning(program_id, &currency, requested)
        .with("customer", Some(&customer))
        .with("expiresInSeconds", Some(seconds));
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::CurrencyHold,
        Some(&key),
        &meaning,
        async |tx| {
            let (scale, minor) = crate::app::redeem::in_minor_units(
                &state, tx, org_id, program_id, &currency, requested, "amount",
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
            let account = ledger::Account {
                org_id,
                customer_id: customer.id,
                program_id,
                currency: currency.clone(),
            };
            if !settle(&state, tx, &account, now).await? {
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
    .await?;
    Ok(respond(Operation::CurrencyHold, outcome, Some(&key)))
}

/// The hold named in the path, or 404 (also for an id that is not a UUID).
async fn find(state: &AppState, org_id: i64, raw: &str) -> Result<HoldRow, AppError> {
    let id = Uuid::parse_str(raw).map_err(|_| AppError::not_found("hold"))?;
    holds::get(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("hold"))
}

/// `GET /v1/currency/holds/{holdId}`: the hold, with the current balance.
#[utoipa::path(get, path = "/v1/currency/holds/{holdId}", tag = "Currency",
    operation_id = "holds_get", summary = "A hold, with the current balance",
    params(HoldPath),
    responses((status = 200, description = "The hold", body = HoldView), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let hold = find(&state, tenant.org_id, &path).await?;
    let balance = ledger::totals(state.db.conn(), &hold.account()).await?;
    Ok(HttpResponse::Ok().json(hold_view(&hold, balance)))
}

/// `POST /v1/currency/holds/{holdId}/capture`: spends up to what the hold holds.
#[utoipa::path(post, path = "/v1/currency/holds/{holdId}/capture", tag = "Currency",
    operation_id = "holds_capture",
    summary = "Capture a hold: spend up to what it holds, release the rest (once per hold)",
    params(HoldPath), request_body(content = Option<CaptureBody>),
    responses((status = 201, description = "Captured now", body = HoldView),
        Replayed<HoldView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn capture(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    OptionalJson(body): OptionalJson<CaptureBody>,
) -> Result<HttpResponse, AppError> {
    let hold = find(&state, tenant.org_id, &path).await?;
    let wanted = match body.and_then(|b| b.amount) {
        None => None,
        Some(input) => {
            let value = input.get("amount")?.normalize();
            if value <= domain::Decimal::ZERO {
                return Err(AppError::validation("amount", "must be more than zero"));
            }
            let scale = domain::money::Scale::new(i64::from(hold.scale))
                .map_err(|e| AppError::Internal(e.message))?;
            let minor = scale
                .to_minor(value)
                .map_err(|e| AppError::not_representable("amount", &e.message))?;
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
        &state,
        hold,
        Operation::HoldCapture,
        &meaning,
        wanted.map(|(_, m)| m),
    )
    .await
}

/// `POST /v1/currency/holds/{holdId}/void`: releases all the hold still holds.
#[utoipa::path(post, path = "/v1/currency/holds/{holdId}/void", tag = "Currency",
    operation_id = "holds_void",
    summary = "Void a hold: release what it holds (once per hold)",
    params(HoldPath),
    responses((status = 201, description = "Voided now", body = HoldView),
        Replayed<HoldView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn void(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let hold = find(&state, tenant.org_id, &path).await?;
    settle_hold(
        &state,
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
) -> Result<HttpResponse, AppError> {
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
    Ok(respond(operation, outcome, Some(&key)))
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
    let mut round = Round::default();
    for hold in holds::due(db.conn(), now, limit, skip).await? {
        match expire_hold(db, &hold, now).await {
            Ok(step) => round.add(step),
            Err(e) => round.fail("hold_expiry", hold.id, &e),
        }
    }
    Ok(round)
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
pub(crate) async fn expire_locked(
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
