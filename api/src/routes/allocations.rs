//! Currency allocation (Capillary "Issue Reward Currency"), exactly once per `uniqueId`.

use actix_web::{HttpResponse, web};
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::allocations::{self, AllocationRow};
use persistence::ledger::{self, Account};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::allocate::{AllocationRequest, allocate_alone};
use crate::dto::{DecimalInput, FlexId, LookupParams, LooseString, amount, bounded_text, ts};
use crate::error::ApiError;
use crate::extract::{IdempotencyHeader, Json, ReasonBody, Tenant, required_key};
use crate::idempotent::{Effect, Outcome, execute, replay_if_used, respond};
use crate::openapi::{
    AllocationPath, KeyHeader, Missing, Read, Replayed, Write, currency_schema, customer_id_schema,
    email_schema, external_id_schema, key_schema, mobile_schema, positive_decimal_schema,
    text255_schema, text500_schema, to_json,
};
use crate::redeem::{RedemptionRequest, redeem_alone};
use crate::startup::AppState;
use crate::webhooks::event;

/// Capillary's "issue reward currency": the award strategy turns `sourceValue` into an amount,
/// the expiry strategy dates it, and the customer (enrolled if new) is credited once per
/// `uniqueId`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "programId": 1, "awardStrategyId": 1, "expiryStrategyId": 1, "sourceValue": 1000,
    "uniqueId": "order-1001", "mobile": "919999999999"
}))]
pub struct AllocationBody {
    /// When sent, the organisation of the API key (else 403).
    pub org_id: Option<FlexId>,
    pub program_id: FlexId,
    pub award_strategy_id: FlexId,
    pub expiry_strategy_id: FlexId,
    pub source_value: DecimalInput,
    #[schema(schema_with = text255_schema)]
    pub event_name: Option<String>,
    #[schema(schema_with = text255_schema)]
    pub event_source_id: Option<String>,
    /// The idempotency key (or send the Idempotency-Key header; the same value if both).
    #[schema(schema_with = key_schema, required = true)]
    pub unique_id: Option<String>,
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

/// An account's balance after the operation: what can be spent, what is promised and not yet
/// spendable, and what holds reserve. Decimal strings at the currency's scale.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"available": "100.00", "pending": "0.00", "held": "0.00"}))]
pub struct Balance {
    pub available: String,
    pub pending: String,
    pub held: String,
}

impl Balance {
    pub fn of(t: ledger::Totals, scale: i16) -> Self {
        Self {
            available: amount(t.available, scale),
            pending: amount(t.pending, scale),
            held: amount(t.held, scale),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Allocation, example = json!({
    "allocationId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c01", "uniqueId": "order-1001",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "programId": 1,
    "awardStrategyId": 1, "expiryStrategyId": 1, "currency": "POINTS", "amount": "100.00",
    "sourceValue": "1000", "expiresAt": "2027-01-01T00:00:00Z", "eventName": null,
    "eventSourceId": null, "ledgerEntryId": "1", "createdAt": "2026-01-01T00:00:00Z",
    "reversedAt": null, "balance": {"available": "100.00", "pending": "0.00", "held": "0.00"}
}))]
pub struct AllocationView {
    pub allocation_id: String,
    pub unique_id: String,
    pub customer_id: String,
    pub program_id: i64,
    pub award_strategy_id: i64,
    pub expiry_strategy_id: i64,
    pub currency: String,
    /// What was awarded, a decimal string at the currency's scale.
    pub amount: String,
    pub source_value: String,
    pub expires_at: Option<String>,
    pub event_name: Option<String>,
    pub event_source_id: Option<String>,
    pub ledger_entry_id: String,
    pub created_at: String,
    pub reversed_at: Option<String>,
    pub balance: Balance,
}

/// The allocation as the API shows it, with the balance to show with it.
pub fn allocation_json(a: &AllocationRow, balance: ledger::Totals) -> Value {
    to_json(&allocation_view(a, balance))
}

fn allocation_view(a: &AllocationRow, balance: ledger::Totals) -> AllocationView {
    AllocationView {
        allocation_id: a.id.to_string(),
        unique_id: a.unique_id.clone(),
        customer_id: a.customer_id.to_string(),
        program_id: a.program_id,
        award_strategy_id: a.award_strategy_id,
        expiry_strategy_id: a.expiry_strategy_id,
        currency: a.currency.clone(),
        amount: amount(a.amount, a.scale),
        source_value: a.source_value.clone(),
        expires_at: a.expires_at.map(ts),
        event_name: a.event_name.clone(),
        event_source_id: a.event_source_id.clone(),
        ledger_entry_id: a.ledger_entry_id.to_string(),
        created_at: ts(a.created_at),
        reversed_at: a.reversed_at.map(ts),
        balance: Balance::of(balance, a.scale),
    }
}

#[utoipa::path(post, path = "/v1/currency/allocations", tag = "Currency",
    operation_id = "allocations_create", summary = "Allocate currency, exactly once per uniqueId",
    request_body = AllocationBody,
    responses(
        (status = 201, description = "Allocated now (Location names the allocation)", body = AllocationView, links(
            ("GetAllocation" = (operation_id = "allocations_get", parameters(("uniqueId" = "$response.body#/uniqueId")))),
            ("ReverseAllocation" = (operation_id = "allocations_reverse", parameters(("uniqueId" = "$response.body#/uniqueId")))),
            ("GetCustomer" = (operation_id = "customers_get", parameters(("customerId" = "$response.body#/customerId")))),
        )),
        Replayed<AllocationView>,
        (status = 403, description = "FORBIDDEN: orgId is not the API key's organisation", body = crate::openapi::Problem, content_type = "application/problem+json"),
        Write, Missing))]
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
    let source_value = body.source_value.get("sourceValue")?.normalize();
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
#[utoipa::path(get, path = "/v1/currency/allocations/{uniqueId}", tag = "Currency",
    operation_id = "allocations_get",
    summary = "The allocation made with a uniqueId, with the current balance",
    params(AllocationPath),
    responses((status = 200, description = "The allocation", body = AllocationView), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = allocations::get_by_unique_id(state.db.conn(), tenant.org_id, &path)
        .await?
        .ok_or_else(|| ApiError::not_found("allocation"))?;
    let balance = ledger::totals(
        state.db.conn(),
        &Account {
            org_id: tenant.org_id,
            customer_id: row.customer_id,
            program_id: row.program_id,
            currency: row.currency.clone(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(allocation_view(&row, balance)))
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
    let events = crate::webhooks::expired_events(account, &expired.entries, now);
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

/// Spends a customer's currency, the lots that expire first first.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "programId": 1, "currency": "POINTS", "amount": "25.50", "uniqueId": "redeem-1",
    "mobile": "919999999999"
}))]
pub struct RedemptionBody {
    pub program_id: FlexId,
    #[schema(schema_with = currency_schema)]
    pub currency: String,
    #[schema(schema_with = positive_decimal_schema)]
    pub amount: DecimalInput,
    /// The idempotency key (or send the Idempotency-Key header; the same value if both).
    #[schema(schema_with = key_schema, required = true)]
    pub unique_id: Option<String>,
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Reversal, example = json!({
    "reversalId": "12", "uniqueId": "order-1001",
    "allocationId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c01",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "programId": 1, "currency": "POINTS",
    "amount": "100.00", "expiredAmount": "0.00", "reason": "returned",
    "createdAt": "2026-01-02T00:00:00Z", "balance": {"available": "0.00", "pending": "0.00", "held": "0.00"}
}))]
pub struct ReversalView {
    /// The ledger entry of the reversal.
    pub reversal_id: String,
    pub unique_id: String,
    pub allocation_id: String,
    pub customer_id: String,
    pub program_id: i64,
    pub currency: String,
    /// What was taken back.
    pub amount: String,
    /// What of the allocation had expired already, so was not taken again.
    pub expired_amount: String,
    pub reason: Option<String>,
    pub created_at: String,
    pub balance: Balance,
}

/// `POST /v1/currency/redemptions`: spends the lots that expire first; a key is required.
#[utoipa::path(post, path = "/v1/currency/redemptions", tag = "Currency",
    operation_id = "allocations_redeem",
    summary = "Redeem currency, spending the lots that expire first (a key is required)",
    request_body = RedemptionBody,
    responses(
        (status = 201, description = "Redeemed now", body = crate::redeem::RedemptionView, links(
            ("GetCustomer" = (operation_id = "customers_get", parameters(("customerId" = "$response.body#/customerId")))),
        )),
        Replayed<crate::redeem::RedemptionView>, Write, Missing))]
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
    let requested = body.amount.get("amount")?.normalize();
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
#[utoipa::path(post, path = "/v1/currency/allocations/{uniqueId}/reversal", tag = "Currency",
    operation_id = "allocations_reverse", summary = "Take an allocation back, once",
    params(AllocationPath, KeyHeader), request_body(content = Option<ReasonBody>),
    responses((status = 201, description = "Reversed now", body = ReversalView),
        Replayed<ReversalView>, Write, Missing))]
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
            let ledger::Debited { entry, after, .. } = ledger::debit(
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
            let body = to_json(&ReversalView {
                reversal_id: entry.id.to_string(),
                unique_id: allocation.unique_id.clone(),
                allocation_id: allocation.id.to_string(),
                customer_id: allocation.customer_id.to_string(),
                program_id: allocation.program_id,
                currency: allocation.currency.clone(),
                amount: amount(to_take, allocation.scale),
                expired_amount: amount(expired, allocation.scale),
                reason: reason.clone(),
                created_at: ts(now),
                balance: Balance::of(after, allocation.scale),
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
