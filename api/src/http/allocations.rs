//! Currency allocation (Capillary "Issue Reward Currency"), exactly once per `uniqueId`.

use actix_web::{HttpResponse, web};
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::allocations::{self, AllocationRow};
use persistence::ledger::{self, Account};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::allocate::{AllocationRequest, allocate_alone};
use crate::app::redeem::{RedemptionRequest, redeem_alone};
use crate::app::settle::settle;
use crate::app::write::{Effect, Outcome, execute, replay_if_used};
use crate::engine::format::to_json;
use crate::engine::format::{amount, ts};
use crate::engine::webhooks::event;
use crate::http::answer::respond;
use crate::http::dto::{DecimalInput, FlexId, LookupParams, LooseString, bounded_text};
use crate::http::extract::{IdempotencyHeader, Json, Tenant, required_key};
use crate::http::openapi::{
    AllocationPath, KeyHeader, Missing, Read, Replayed, Write, currency_schema, customer_id_schema,
    email_schema, external_id_schema, key_schema, mobile_schema, positive_decimal_schema,
    text255_schema, text500_schema,
};

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
    /// When the points become spendable. A future time makes the allocation PENDING until
    /// then; a past or present time (or none) means at once.
    #[schema(schema_with = crate::http::openapi::timestamp_schema)]
    pub matures_at: Option<crate::http::dto::Timestamp>,
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
    "reversedAt": null, "status": "ACTIVE", "maturesAt": null, "activatedAt": null,
    "reversedAmount": "0.00", "capped": false, "uncappedAmount": null,
    "balance": {"available": "100.00", "pending": "0.00", "held": "0.00"}
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
    /// When the points expire; null for NEVER, and while the allocation is pending (its
    /// points' life starts when they become available).
    pub expires_at: Option<String>,
    pub event_name: Option<String>,
    pub event_source_id: Option<String>,
    /// The ledger entry of the credit; null while pending.
    pub ledger_entry_id: Option<String>,
    pub created_at: String,
    /// When the allocation was reversed in full.
    pub reversed_at: Option<String>,
    /// PENDING (promised, not yet spendable), ACTIVE, or CANCELLED (reversed while pending).
    #[schema(pattern = "^(PENDING|ACTIVE|CANCELLED)$")]
    pub status: String,
    pub matures_at: Option<String>,
    /// When a pending allocation became available.
    pub activated_at: Option<String>,
    /// What reversals have taken back of `amount` so far.
    pub reversed_amount: String,
    /// Whether an earn cap of the award strategy lowered the award (`amount` is then what the
    /// cap left, possibly "0").
    pub capped: bool,
    /// What the award would have been without the caps; null when not capped.
    pub uncapped_amount: Option<String>,
    pub balance: Balance,
}

/// The allocation as the API shows it, with the balance to show with it.
pub fn allocation_json(a: &AllocationRow, balance: ledger::Totals) -> Value {
    to_json(&allocation_view(a, balance))
}

/// [`allocation_json`] as JSON text.
pub fn allocation_text(a: &AllocationRow, balance: ledger::Totals) -> String {
    crate::engine::format::to_text(&allocation_view(a, balance))
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
        ledger_entry_id: (a.ledger_entry_id != crate::app::allocate::PENDING_ENTRY)
            .then(|| a.ledger_entry_id.to_string()),
        created_at: ts(a.created_at),
        reversed_at: a.reversed_at.map(ts),
        status: a.status.clone(),
        matures_at: a.matures_at.map(ts),
        activated_at: a.activated_at.map(ts),
        reversed_amount: amount(a.reversed_amount, a.scale),
        capped: a.capped,
        uncapped_amount: a.uncapped_amount.map(|u| amount(u, a.scale)),
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
            ("CustomerExpiring" = (operation_id = "customers_expiring", parameters(("customerId" = "$response.body#/customerId")))),
        )),
        Replayed<AllocationView>,
        (status = 403, description = "FORBIDDEN: orgId is not the API key's organisation", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    Json(body): Json<AllocationBody>,
) -> Result<HttpResponse, AppError> {
    let org_id = tenant.org_id;
    let key = required_key(body.unique_id.as_deref(), &header)?;
    let customer = crate::customer_of!(body).parse()?;
    let source_value = body.source_value.get("sourceValue")?.normalize();
    if source_value.is_sign_negative() && !source_value.is_zero() {
        return Err(AppError::validation("sourceValue", "must be zero or more"));
    }
    let event_name = bounded_text("eventName", body.event_name.as_deref(), 255)?;
    let event_source_id = bounded_text("eventSourceId", body.event_source_id.as_deref(), 255)?;
    if let Some(FlexId(given)) = body.org_id
        && given != org_id
    {
        return Err(AppError::Forbidden(
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
        .with("eventSourceId", event_source_id.as_ref())
        .with("maturesAt", body.matures_at.map(|t| ts(t.0)));
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
        matures_at: body.matures_at.map(|t| t.0),
    };
    let pending = request.is_pending(state.now());
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
        // Pending allocations and those under earn caps write other rows: they run alone.
        None if state.settings.group_commit_max > 1
            && !pending
            && !crate::app::allocate::has_caps(&state, org_id, award_id).await? =>
        {
            state.allocations.submit(request).await?
        }
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
) -> Result<HttpResponse, AppError> {
    let row = allocations::get_by_unique_id(state.db.conn(), tenant.org_id, &path)
        .await?
        .ok_or_else(|| AppError::not_found("allocation"))?;
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

pub(crate) fn insufficient() -> AppError {
    AppError::Unprocessable {
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
    "amount": "100.00", "expiredAmount": "0.00", "reversedAmount": "100.00",
    "allocationStatus": "ACTIVE", "reason": "returned",
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
    /// What reversals have taken back of the allocation so far, this one included.
    pub reversed_amount: String,
    /// The allocation's status after the reversal (a pending one is CANCELLED when nothing of
    /// it is left).
    #[schema(pattern = "^(PENDING|ACTIVE|CANCELLED)$")]
    pub allocation_status: String,
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
        (status = 201, description = "Redeemed now", body = crate::app::redeem::RedemptionView, links(
            ("GetCustomer" = (operation_id = "customers_get", parameters(("customerId" = "$response.body#/customerId")))),
        )),
        Replayed<crate::app::redeem::RedemptionView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn redeem(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    Json(body): Json<RedemptionBody>,
) -> Result<HttpResponse, AppError> {
    let org_id = tenant.org_id;
    let key = required_key(body.unique_id.as_deref(), &header)?;
    let customer = crate::customer_of!(body).parse()?;
    let (program_id, currency, requested) =
        spend_fields(&body.program_id, &body.currency, &body.amount)?;
    let reason = bounded_text("reason", body.reason.as_deref(), 500)?;
    let meaning = spend_meaning(program_id, &currency, requested).with("customer", Some(&customer));
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

/// The optional body of a reversal: all that is left of the allocation, or `amount` of it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"amount": "20", "reversalId": "return-1", "reason": "one item returned"}))]
pub struct ReversalBody {
    /// Part of the allocation to take back (a return of part of a purchase). Absent: all that
    /// is left of it.
    #[schema(schema_with = crate::http::openapi::optional_positive_decimal_schema)]
    pub amount: Option<DecimalInput>,
    /// The key of a partial reversal, scoped to the allocation. When absent, the
    /// Idempotency-Key header is the part's key.
    #[schema(schema_with = crate::http::openapi::optional_key_schema)]
    pub reversal_id: Option<String>,
    #[schema(schema_with = text500_schema)]
    pub reason: Option<String>,
    /// Accepted as the Idempotency-Key of a partial reversal too; left out of the document so
    /// that a generator does not send two different keys.
    #[schema(ignore)]
    pub unique_id: Option<String>,
}

/// `POST /v1/currency/allocations/{uniqueId}/reversal`: takes the allocation back, in full
/// (once: the allocation is the key) or in part (`amount`, each part keyed by `reversalId` or
/// the Idempotency-Key, scoped to the allocation). A pending allocation is cancelled or
/// lowered instead: its points never become available.
#[utoipa::path(post, path = "/v1/currency/allocations/{uniqueId}/reversal", tag = "Currency",
    operation_id = "allocations_reverse",
    summary = "Take an allocation back, in full once or in parts (returns)",
    params(AllocationPath, KeyHeader), request_body(content = Option<ReversalBody>),
    responses((status = 201, description = "Reversed now", body = ReversalView),
        Replayed<ReversalView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn reverse(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    path: web::Path<String>,
    crate::http::extract::OptionalJson(body): crate::http::extract::OptionalJson<ReversalBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.unwrap_or_default();
    let reason = bounded_text("reason", body.reason.as_deref(), 500)?;
    let client_key = crate::http::extract::request_key(body.unique_id.as_deref(), &header)?;
    // `reversalId` names the part; the Idempotency-Key header (or `uniqueId`) only when it is
    // absent.
    let part_key = match body.reversal_id.as_deref() {
        Some(id) => Some(
            IdempotencyKey::parse(id).map_err(|e| AppError::validation("reversalId", e.message))?,
        ),
        None => client_key,
    };
    let requested = match &body.amount {
        None => None,
        Some(input) => {
            let value = input.get("amount")?.normalize();
            if value <= domain::Decimal::ZERO {
                return Err(AppError::validation("amount", "must be more than zero"));
            }
            Some(value)
        }
    };
    if requested.is_some() && part_key.is_none() {
        return Err(AppError::validation(
            "reversalId",
            "is required with an amount (or send an Idempotency-Key header)",
        ));
    }
    let org_id = tenant.org_id;
    let unique = IdempotencyKey::parse(&path).map_err(|_| AppError::not_found("allocation"))?;
    // The allocation itself is the key (not its uniqueId, which a retention may let a later
    // allocation reuse): reversing it in full twice replays the first reversal; a part is keyed
    // by the allocation and the part's own key.
    let allocation = allocations::get_by_unique_id(state.db.conn(), org_id, unique.as_str())
        .await?
        .ok_or_else(|| AppError::not_found("allocation"))?;
    let part = match requested {
        None => None,
        Some(value) => {
            let scale = domain::money::Scale::new(i64::from(allocation.scale))
                .map_err(|e| AppError::Internal(e.message))?;
            let minor = scale
                .to_minor(value)
                .map_err(|e| AppError::not_representable("amount", &e.message))?;
            Some((value, minor))
        }
    };
    let key = match (&part, &part_key) {
        (Some(_), Some(k)) => part_reversal_key(allocation.id, k)?,
        _ => IdempotencyKey::parse(&allocation.id.to_string())
            .map_err(|e| AppError::Internal(e.message))?,
    };
    let meaning = RequestMeaning::new()
        .with("allocationId", Some(allocation.id))
        .with("amount", part.map(|(v, _)| v));
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::CurrencyReversal,
        Some(&key),
        &meaning,
        async |tx| {
            let account = Account {
                org_id,
                customer_id: allocation.customer_id,
                program_id: allocation.program_id,
                currency: allocation.currency.clone(),
            };
            if !settle(&state, tx, &account, now).await? {
                return Err(insufficient());
            }
            // Read again under the balance lock: an activation or another reversal may have
            // changed it.
            let current = allocations::get(tx, org_id, allocation.id)
                .await?
                .ok_or_else(|| AppError::not_found("allocation"))?;
            if current.reversed_at.is_some() && part.is_none() {
                return Err(AppError::Unprocessable {
                    code: "ALREADY_REVERSED",
                    detail: "The allocation was reversed before.".into(),
                    retryable: false,
                });
            }
            // What already expired of the allocation's lot left the balance then: it is never
            // taken twice.
            let expired = if current.is_pending() || current.status == "CANCELLED" {
                0
            } else {
                ledger::expired_from_lot(tx, &account, current.ledger_entry_id).await?
            };
            let left = (current.amount - current.reversed_amount - expired).max(0);
            let to_take = match part {
                Some((_, minor)) if minor > left => {
                    return Err(AppError::Unprocessable {
                        code: "REVERSAL_EXCEEDS_ALLOCATION",
                        detail: format!(
                            "Only {} of the allocation is left to reverse.",
                            amount(left, current.scale)
                        ),
                        retryable: false,
                    });
                }
                Some((_, minor)) => minor,
                None => left,
            };
            let reference = format!("reversal:{}", current.unique_id);
            let (entry_id, after) = if current.is_pending() {
                // Nothing was credited yet: lower what is promised.
                let by = ledger::Totals {
                    pending: -to_take,
                    ..Default::default()
                };
                let after = ledger::move_balance(tx, &account, by, now)
                    .await?
                    .ok_or_else(|| AppError::Internal("pending below an allocation".into()))?;
                (None, after)
            } else if to_take == 0 {
                (None, ledger::totals(tx, &account).await?)
            } else {
                let ledger::Debited { entry, after, .. } = ledger::debit(
                    tx,
                    &account,
                    ledger::EntryKind::Reversal,
                    to_take,
                    Some(current.ledger_entry_id),
                    Some(&reference),
                    now,
                )
                .await?
                .ok_or_else(insufficient)?;
                (Some(entry.id), after)
            };
            // In full, the whole allocation counts as reversed (what expired included).
            let counted = if part.is_some() {
                to_take
            } else {
                current.amount - current.reversed_amount
            };
            if !allocations::add_reversed(tx, org_id, current.id, counted, part.is_none()).await? {
                return Err(AppError::Internal(
                    "allocation reversed concurrently".into(),
                ));
            }
            if part.is_none()
                && !allocations::mark_reversed(tx, org_id, current.id, entry_id, now).await?
            {
                return Err(AppError::Internal(
                    "allocation reversed concurrently".into(),
                ));
            }
            give_cap_room_back(&state, tx, &current, counted).await?;
            let reversal_id = entry_id.map_or_else(|| key.to_string(), |id| id.to_string());
            let body = to_json(&ReversalView {
                reversal_id: reversal_id.clone(),
                unique_id: current.unique_id.clone(),
                allocation_id: current.id.to_string(),
                customer_id: current.customer_id.to_string(),
                program_id: current.program_id,
                currency: current.currency.clone(),
                amount: amount(to_take, current.scale),
                expired_amount: amount(expired, current.scale),
                reversed_amount: amount(current.reversed_amount + counted, current.scale),
                allocation_status: if current.is_pending()
                    && (part.is_none() || current.reversed_amount + counted == current.amount)
                {
                    "CANCELLED".into()
                } else {
                    current.status.clone()
                },
                reason: reason.clone(),
                created_at: ts(now),
                balance: Balance::of(after, current.scale),
            });
            let events = vec![event("currency.reversed", body.clone(), now)];
            crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, reversal_id))
        },
    )
    .await?;
    // The answer names the key the client knows: the allocation's uniqueId, or the part's key.
    count_amount("reversal", &outcome);
    let shown = if part.is_some() {
        part_key
    } else {
        Some(unique)
    };
    Ok(respond(
        Operation::CurrencyReversal,
        outcome,
        shown.as_ref(),
    ))
}

/// A reversal gives the earn caps back what it took of the allocation, in the periods the
/// allocation was counted in. The caller holds the account's balance lock.
async fn give_cap_room_back(
    state: &AppState,
    tx: &persistence::Tx,
    a: &AllocationRow,
    amount: i64,
) -> Result<(), AppError> {
    let Some(strategy) = state
        .caches
        .award_strategy(tx, a.org_id, a.award_strategy_id)
        .await?
        .filter(|s| s.caps.is_some())
    else {
        return Ok(());
    };
    let windows = crate::app::allocate::cap_windows(&strategy, a.scale, a.created_at)?;
    let scope = persistence::earn_caps::CapScope {
        org_id: a.org_id,
        award_strategy_id: a.award_strategy_id,
        customer_id: a.customer_id,
    };
    persistence::earn_caps::give_back(tx, scope, &windows, amount).await?;
    Ok(())
}

/// The stored key of a partial reversal: the allocation and the client's key. A client key may
/// be 255 characters, and so may a stored one, so a key that does not fit beside the
/// allocation's id is stored as its SHA-256 instead (the same client key, the same stored key).
fn part_reversal_key(
    allocation: Uuid,
    client: &IdempotencyKey,
) -> Result<IdempotencyKey, AppError> {
    let plain = format!("{allocation}:{client}");
    let scoped = if plain.chars().count() <= IdempotencyKey::MAX_CHARS {
        plain
    } else {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(client.as_str().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{allocation}:sha256:{hex}")
    };
    IdempotencyKey::parse(&scoped).map_err(|e| AppError::Internal(e.message))
}

/// `POST /v1/currency/allocations/{uniqueId}/activate`: a pending allocation becomes available
/// now, once (the worker does the same when `maturesAt` passes; whichever comes first, the
/// other replays).
#[utoipa::path(post, path = "/v1/currency/allocations/{uniqueId}/activate", tag = "Currency",
    operation_id = "allocations_activate",
    summary = "Make a pending allocation available now (once)",
    params(AllocationPath),
    responses((status = 201, description = "Activated now", body = AllocationView),
        Replayed<AllocationView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn activate(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let org_id = tenant.org_id;
    let unique = IdempotencyKey::parse(&path).map_err(|_| AppError::not_found("allocation"))?;
    let allocation = allocations::get_by_unique_id(state.db.conn(), org_id, unique.as_str())
        .await?
        .ok_or_else(|| AppError::not_found("allocation"))?;
    let key = crate::app::activation::activation_key(&allocation)?;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::AllocationActivation,
        Some(&key),
        &RequestMeaning::new(),
        async |tx| {
            let account = Account {
                org_id,
                customer_id: allocation.customer_id,
                program_id: allocation.program_id,
                currency: allocation.currency.clone(),
            };
            settle(&state, tx, &account, now).await?;
            let current = allocations::get(tx, org_id, allocation.id)
                .await?
                .ok_or_else(|| AppError::not_found("allocation"))?;
            let (row, after) = crate::app::activation::activate_locked(tx, &current, now).await?;
            let body = allocation_json(&row, after);
            let events = vec![event("currency.activated", body.clone(), now)];
            crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, row.id))
        },
    )
    .await?;
    Ok(respond(
        Operation::AllocationActivation,
        outcome,
        Some(&unique),
    ))
}

/// The fields every spending write has (redemption, hold, transfer), checked: the program,
/// the currency's code, and an amount of more than zero.
pub(crate) fn spend_fields(
    program_id: &FlexId,
    currency: &str,
    amount: &DecimalInput,
) -> Result<(i64, String, domain::Decimal), AppError> {
    let requested = amount.get("amount")?.normalize();
    if requested <= domain::Decimal::ZERO {
        return Err(AppError::validation("amount", "must be more than zero"));
    }
    let currency = domain::catalog::CurrencyCode::parse(currency)
        .map_err(|e| AppError::validation("currency", e.message))?
        .as_str()
        .to_owned();
    Ok((program_id.0, currency, requested))
}

/// The compared meaning of those fields.
pub(crate) fn spend_meaning(
    program_id: i64,
    currency: &str,
    requested: domain::Decimal,
) -> RequestMeaning {
    RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("currency", Some(currency))
        .with("amount", Some(requested))
}

/// The amount an effect moved, for `loyalty_currency_amount{kind}` (replays moved nothing).
fn count_amount(kind: &'static str, outcome: &Outcome) {
    match outcome {
        Outcome::Created(_, body) => {
            if let Some(amount) = body.get("amount").and_then(Value::as_str) {
                crate::engine::metrics::currency(kind, amount);
            }
        }
        Outcome::CreatedText(_, body) => {
            /// The one field read; serde skips the others without building them.
            #[derive(serde::Deserialize)]
            struct Amount<'a> {
                #[serde(borrow)]
                amount: Option<&'a str>,
            }
            if let Ok(Amount {
                amount: Some(amount),
            }) = serde_json::from_str(body.as_str())
            {
                crate::engine::metrics::currency(kind, amount);
            }
        }
        Outcome::Replayed(_) => {}
    }
}
