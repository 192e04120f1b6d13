//! Currency allocation (Capillary "Issue Reward Currency"), exactly once per `uniqueId`.

use actix_web::{HttpResponse, web};
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::allocations::{self, AllocationRow};
use persistence::ledger::{self, Account};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::allocate::{AllocationRequest, allocate_alone};
use crate::dto::{DecimalInput, FlexId, LookupParams, LooseString, amount, bounded_text, ts};
use crate::error::ApiError;
use crate::extract::{IdempotencyHeader, Json, ReasonBody, Tenant, required_key};
use crate::idempotent::{Effect, Outcome, execute, replay_if_used, respond};
use crate::redeem::{RedemptionRequest, redeem_alone};
use crate::startup::AppState;
use crate::webhooks::event;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationBody {
    pub org_id: Option<FlexId>,
    pub program_id: FlexId,
    pub award_strategy_id: FlexId,
    pub expiry_strategy_id: FlexId,
    pub source_value: DecimalInput,
    pub event_name: Option<String>,
    pub event_source_id: Option<String>,
    pub unique_id: Option<String>,
    pub mobile: Option<LooseString>,
    pub email: Option<LooseString>,
    pub external_id: Option<LooseString>,
    pub customer_id: Option<LooseString>,
    pub lookup_params: Option<LookupParams>,
}

/// The allocation as the API shows it; `available` is the balance to show with it.
pub fn allocation_json(a: &AllocationRow, available: i64) -> Value {
    json!({
        "allocationId": a.id.to_string(),
        "uniqueId": a.unique_id,
        "customerId": a.customer_id.to_string(),
        "programId": a.program_id,
        "awardStrategyId": a.award_strategy_id,
        "expiryStrategyId": a.expiry_strategy_id,
        "currency": a.currency,
        "amount": amount(a.amount, a.scale),
        "sourceValue": a.source_value,
        "expiresAt": a.expires_at.map(ts),
        "eventName": a.event_name,
        "eventSourceId": a.event_source_id,
        "ledgerEntryId": a.ledger_entry_id.to_string(),
        "createdAt": ts(a.created_at),
        "reversedAt": a.reversed_at.map(ts),
        "balance": {"available": amount(available, a.scale)},
    })
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    Json(body): Json<AllocationBody>,
) -> Result<HttpResponse, ApiError> {
    let org_id = tenant.org_id;
    let key = required_key(body.unique_id.as_deref(), &header)?;
    let customer = crate::customer_of!(body).parse()?;
    let source_value = body.source_value.0.normalize();
    if source_value.is_sign_negative() && !source_value.is_zero() {
        return Err(ApiError::validation("sourceValue", "must be zero or more"));
    }
    let event_name = bounded_text("eventName", body.event_name.as_deref(), 255)?;
    let event_source_id = bounded_text("eventSourceId", body.event_source_id.as_deref(), 255)?;
    if let Some(FlexId(given)) = body.org_id
        && given != org_id
    {
        return Err(ApiError::Forbidden(
            "orgId is not the organisation of the API key".into(),
        ));
    }
    let (program_id, award_id, expiry_id) = (
        body.program_id.0,
        body.award_strategy_id.0,
        body.expiry_strategy_id.0,
    );
    let meaning = RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("awardStrategyId", Some(award_id))
        .with("expiryStrategyId", Some(expiry_id))
        .with("sourceValue", Some(source_value))
        .with("customer", Some(&customer))
        .with("eventName", event_name.as_ref())
        .with("eventSourceId", event_source_id.as_ref());
    let request = AllocationRequest {
        org_id,
        key: key.clone(),
        meaning,
        customer,
        program_id,
        award_strategy_id: award_id,
        expiry_strategy_id: expiry_id,
        source_value,
        event_name,
        event_source_id,
    };
    let outcome = match replay_if_used(
        &state,
        org_id,
        Operation::CurrencyAllocation,
        &key,
        &request.meaning,
    )
    .await?
    {
        Some(replayed) => replayed,
        None if state.settings.group_commit_max > 1 => state.allocations.submit(request).await?,
        None => allocate_alone(&state, &request).await?,
    };
    count_amount("allocation", &outcome);
    let mut response = respond(Operation::CurrencyAllocation, outcome, Some(&key));
    if let Ok(location) =
        format!("/v1/currency/allocations/{}", urlencode(&key.to_string())).parse()
    {
        response
            .headers_mut()
            .insert(actix_web::http::header::LOCATION, location);
    }
    Ok(response)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /v1/currency/allocations/{uniqueId}`: the allocation with the current balance.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = allocations::get_by_unique_id(state.db.conn(), tenant.org_id, &path)
        .await?
        .ok_or_else(|| ApiError::not_found("allocation"))?;
    let available = ledger::available(
        state.db.conn(),
        &Account {
            org_id: tenant.org_id,
            customer_id: row.customer_id,
            program_id: row.program_id,
            currency: row.currency.clone(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(allocation_json(&row, available)))
}

/// Locks the account's balance and expires its due lots (writing their events), so that a
/// debit after it never spends an expired lot. `false` when the account has no balance yet.
pub(crate) async fn settle(
    state: &AppState,
    tx: &persistence::Tx,
    account: &Account,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, ApiError> {
    if ledger::lock_balance(tx, account, false).await?.is_none() {
        return Ok(false);
    }
    let expired = ledger::expire_due(tx, account, now).await?;
    let events = crate::webhooks::expired_events(account, &expired, now);
    crate::webhooks::emit(&state.caches, tx, account.org_id, events, now).await?;
    Ok(true)
}

pub(crate) fn insufficient() -> ApiError {
    ApiError::Unprocessable {
        code: "INSUFFICIENT_BALANCE",
        detail: "The available balance is less than the amount.".into(),
        retryable: true,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedemptionBody {
    pub program_id: FlexId,
    pub currency: String,
    pub amount: DecimalInput,
    pub unique_id: Option<String>,
    pub reason: Option<String>,
    pub mobile: Option<LooseString>,
    pub email: Option<LooseString>,
    pub external_id: Option<LooseString>,
    pub customer_id: Option<LooseString>,
    pub lookup_params: Option<LookupParams>,
}

/// `POST /v1/currency/redemptions`: spends the lots that expire first; a key is required.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn redeem(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    Json(body): Json<RedemptionBody>,
) -> Result<HttpResponse, ApiError> {
    let org_id = tenant.org_id;
    let key = required_key(body.unique_id.as_deref(), &header)?;
    let customer = crate::customer_of!(body).parse()?;
    let requested = body.amount.0.normalize();
    if requested <= domain::Decimal::ZERO {
        return Err(ApiError::validation("amount", "must be more than zero"));
    }
    let reason = bounded_text("reason", body.reason.as_deref(), 500)?;
    let program_id = body.program_id.0;
    let currency = domain::catalog::CurrencyCode::parse(&body.currency)
        .map_err(|e| ApiError::validation("currency", e.message))?
        .as_str()
        .to_owned();
    let meaning = RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("currency", Some(&currency))
        .with("amount", Some(requested))
        .with("customer", Some(&customer));
    let request = RedemptionRequest {
        org_id,
        key: key.clone(),
        meaning,
        customer,
        program_id,
        currency,
        amount: requested,
        reason,
    };
    let outcome = match replay_if_used(
        &state,
        org_id,
        Operation::CurrencyRedemption,
        &key,
        &request.meaning,
    )
    .await?
    {
        Some(replayed) => replayed,
        None if state.settings.group_commit_max > 1 => state.redemptions.submit(request).await?,
        None => redeem_alone(&state, &request).await?,
    };
    count_amount("redemption", &outcome);
    Ok(respond(Operation::CurrencyRedemption, outcome, Some(&key)))
}

/// `POST /v1/currency/allocations/{uniqueId}/reversal`: takes the allocated amount back, once.
/// The allocation is its own key (`currency-reversal` / its `uniqueId`): a second reversal is a
/// replay whatever key it carries.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn reverse(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    path: web::Path<String>,
    crate::extract::OptionalJson(body): crate::extract::OptionalJson<ReasonBody>,
) -> Result<HttpResponse, ApiError> {
    let reason = ReasonBody::reason(body, &header)?;
    let org_id = tenant.org_id;
    let unique = IdempotencyKey::parse(&path).map_err(|_| ApiError::not_found("allocation"))?;
    // The allocation itself is the key (not its uniqueId, which a retention may let a later
    // allocation reuse): reversing it twice replays the first reversal.
    let allocation = allocations::get_by_unique_id(state.db.conn(), org_id, unique.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("allocation"))?;
    let key = IdempotencyKey::parse(&allocation.id.to_string())
        .map_err(|e| ApiError::Internal(e.message))?;
    let meaning = RequestMeaning::new().with("allocationId", Some(allocation.id));
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::CurrencyReversal,
        Some(&key),
        &meaning,
        async |tx| {
            if allocation.reversed_at.is_some() {
                return Err(ApiError::Unprocessable {
                    code: "ALREADY_REVERSED",
                    detail: "The allocation was reversed before.".into(),
                    retryable: false,
                });
            }
            let account = Account {
                org_id,
                customer_id: allocation.customer_id,
                program_id: allocation.program_id,
                currency: allocation.currency.clone(),
            };
            if !settle(&state, tx, &account, now).await? {
                return Err(insufficient());
            }
            // What already expired of the allocation's lot left the balance then; take back
            // the rest, so the customer never loses the same points twice.
            let expired =
                ledger::expired_from_lot(tx, &account, allocation.ledger_entry_id).await?;
            let to_take = (allocation.amount - expired).max(0);
            let reference = format!("reversal:{}", allocation.unique_id);
            let entry = ledger::debit(
                tx,
                &account,
                ledger::EntryKind::Reversal,
                to_take,
                Some(allocation.ledger_entry_id),
                Some(&reference),
                now,
            )
            .await?
            .ok_or_else(insufficient)?;
            if !allocations::mark_reversed(tx, org_id, allocation.id, entry.id, now).await? {
                return Err(ApiError::Internal(
                    "allocation reversed concurrently".into(),
                ));
            }
            let body = json!({
                "reversalId": entry.id.to_string(),
                "uniqueId": allocation.unique_id,
                "allocationId": allocation.id.to_string(),
                "customerId": allocation.customer_id.to_string(),
                "programId": allocation.program_id,
                "currency": allocation.currency,
                "amount": amount(to_take, allocation.scale),
                "expiredAmount": amount(expired, allocation.scale),
                "reason": reason,
                "createdAt": ts(now),
                "balance": {"available": amount(entry.balance_after, allocation.scale)},
            });
            let events = vec![event("currency.reversed", body.clone(), now)];
            crate::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, entry.id))
        },
    )
    .await?;
    // The answer names the key the client knows: the allocation's uniqueId.
    count_amount("reversal", &outcome);
    Ok(respond(Operation::CurrencyReversal, outcome, Some(&unique)))
}

/// The amount an effect moved, for `loyalty_currency_amount{kind}` (replays moved nothing).
fn count_amount(kind: &'static str, outcome: &Outcome) {
    if let Outcome::Created(_, body) = outcome
        && let Some(amount) = body.get("amount").and_then(Value::as_str)
    {
        crate::metrics::currency(kind, amount);
    }
}
