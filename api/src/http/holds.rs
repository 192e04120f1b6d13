//! Holds at the edge: two-phase redemption (create, read, capture, void). The use cases, and
//! the hold expiry the worker runs, are `crate::app::holds`.

use actix_web::{HttpResponse, web};
use domain::idempotency::Operation;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::currency::spend_fields;
use crate::app::holds::HoldView;
use crate::app::holds::{self, HoldRequest};
use crate::http::answer::respond;
use crate::http::dto::{
    DecimalInput, FlexId, LookupParams, LooseString, WholeNumber, bounded_text,
};
use crate::http::extract::{IdempotencyHeader, Json, OptionalJson, Tenant, required_key};
use crate::http::openapi::{
    HoldPath, Missing, Read, Replayed, Write, currency_schema, customer_id_schema, email_schema,
    external_id_schema, key_schema, mobile_schema, positive_decimal_schema, text500_schema,
};

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
    let (currency, requested) = spend_fields(&body.currency, body.amount.get("amount")?)?;
    let seconds = holds::lifetime(body.expires_in_seconds.map(|WholeNumber(s)| s))?;
    let reason = bounded_text("reason", body.reason.as_deref(), 500)?;
    let request = HoldRequest {
        org_id,
        key: key.clone(),
        customer,
        program_id: body.program_id.0,
        currency,
        amount: requested,
        seconds,
        reason,
    };
    let outcome = holds::create(&state, request).await?;
    Ok(respond(Operation::CurrencyHold, outcome, Some(&key)))
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
    let hold = holds::get(&state, tenant.org_id, &path).await?;
    Ok(HttpResponse::Ok().json(hold))
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
    let amount = body.and_then(|b| b.amount).map(|input| input.get("amount"));
    let (outcome, key) = holds::capture(&state, tenant.org_id, &path, amount).await?;
    Ok(respond(Operation::HoldCapture, outcome, Some(&key)))
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
    let (outcome, key) = holds::void(&state, tenant.org_id, &path).await?;
    Ok(respond(Operation::HoldVoid, outcome, Some(&key)))
}
