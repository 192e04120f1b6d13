//! Currency allocation (Capillary "Issue Reward Currency"), exactly once per `uniqueId`, and
//! what follows an allocation: its reading, reversal and activation, and redemption. The use
//! cases are `crate::app::{allocate, redeem, reversal, activation}`; this module parses and
//! answers.

use actix_web::{HttpResponse, web};
use domain::idempotency::{IdempotencyKey, Operation};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::activation;
use crate::app::allocate::AllocationView;
use crate::app::allocate::{self, AllocationRequest};
use crate::app::currency::{more_than_zero, spend_fields};
use crate::app::redeem::{self, RedemptionRequest};
use crate::app::reversal::ReversalView;
use crate::app::reversal::{self, ReversalRequest};
use crate::app::write::Outcome;
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
    let source_value = allocate::source_value(body.source_value.get("sourceValue")?)?;
    let event_name = bounded_text("eventName", body.event_name.as_deref(), 255)?;
    let event_source_id = bounded_text("eventSourceId", body.event_source_id.as_deref(), 255)?;
    if let Some(FlexId(given)) = body.org_id
        && given != org_id
    {
        return Err(AppError::Forbidden(
            "orgId is not the organisation of the API key".into(),
        ));
    }
    let request = AllocationRequest::new(
        org_id,
        key.clone(),
        customer,
        body.program_id.0,
        body.award_strategy_id.0,
        body.expiry_strategy_id.0,
        source_value,
        event_name,
        event_source_id,
        body.matures_at.map(|t| t.0),
    );
    let outcome = allocate::allocate(&state, request).await?;
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
    let allocation = allocate::get(&state, tenant.org_id, &path).await?;
    Ok(HttpResponse::Ok().json(allocation))
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
    let (currency, requested) = spend_fields(&body.currency, body.amount.get("amount")?)?;
    let reason = bounded_text("reason", body.reason.as_deref(), 500)?;
    let request = RedemptionRequest::new(
        org_id,
        key.clone(),
        customer,
        body.program_id.0,
        currency,
        requested,
        reason,
    );
    let outcome = redeem::redeem(&state, request).await?;
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
    let amount = match body.amount {
        None => None,
        Some(input) => Some(more_than_zero("amount", input.get("amount")?)?),
    };
    let request = ReversalRequest {
        org_id: tenant.org_id,
        allocation: path.into_inner(),
        part_key,
        amount,
        reason,
    };
    let (outcome, shown) = reversal::reverse(&state, request).await?;
    // The answer names the key the client knows: the allocation's uniqueId, or the part's key.
    count_amount("reversal", &outcome);
    Ok(respond(Operation::CurrencyReversal, outcome, Some(&shown)))
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
    let unique = allocate::allocation_key(&path)?;
    let outcome = activation::activate(&state, tenant.org_id, &unique).await?;
    Ok(respond(
        Operation::AllocationActivation,
        outcome,
        Some(&unique),
    ))
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
