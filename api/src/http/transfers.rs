//! `POST /v1/currency/transfers`: points from one customer to another, exactly once per key
//! (the use case is `crate::app::transfers`).

use actix_web::{HttpResponse, web};
use domain::idempotency::Operation;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::currency::spend_fields;
use crate::app::transfers::TransferView;
use crate::app::transfers::{self, TransferRequest};
use crate::http::answer::respond;
use crate::http::dto::{DecimalInput, FlexId, LookupParams, LooseString, bounded_text};
use crate::http::extract::{IdempotencyHeader, Json, Tenant, required_key};
use crate::http::openapi::{
    Missing, Replayed, Write, currency_schema, customer_id_schema, email_schema,
    external_id_schema, key_schema, mobile_schema, positive_decimal_schema, text500_schema,
};

/// One way of naming a customer: exactly one of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSelector {
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

/// Moves points from one customer to another.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "programId": 1, "currency": "POINTS", "amount": "25", "uniqueId": "gift-9",
    "from": {"mobile": "919999999999"}, "to": {"email": "friend@example.com"}
}))]
pub struct TransferBody {
    pub program_id: FlexId,
    #[schema(schema_with = currency_schema)]
    pub currency: String,
    #[schema(schema_with = positive_decimal_schema)]
    pub amount: DecimalInput,
    /// The sender, who must exist.
    pub from: CustomerSelector,
    /// The recipient, enrolled on the fly when named by mobile, email or externalId.
    pub to: CustomerSelector,
    /// The idempotency key (or send the Idempotency-Key header; the same value if both).
    #[schema(schema_with = key_schema, required = true)]
    pub unique_id: Option<String>,
    #[schema(schema_with = text500_schema)]
    pub reason: Option<String>,
}

/// A validation error of one side, named by its path (`from.mobile`).
fn on_side(side: &str, e: AppError) -> AppError {
    match e {
        AppError::Validation(mut errors) => {
            for f in &mut errors {
                f.field = format!("{side}.{}", f.field);
            }
            AppError::Validation(errors)
        }
        other => other,
    }
}

/// `POST /v1/currency/transfers`: moves points between two customers; a key is required.
#[utoipa::path(post, path = "/v1/currency/transfers", tag = "Currency",
    operation_id = "transfers_create",
    summary = "Transfer points to another customer, keeping their expiry dates (a key is required)",
    request_body = TransferBody,
    responses(
        (status = 201, description = "Transferred now", body = TransferView, links(
            ("GetSender" = (operation_id = "customers_get", parameters(("customerId" = "$response.body#/from/customerId")))),
            ("GetRecipient" = (operation_id = "customers_get", parameters(("customerId" = "$response.body#/to/customerId")))),
        )),
        Replayed<TransferView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    Json(body): Json<TransferBody>,
) -> Result<HttpResponse, AppError> {
    let org_id = tenant.org_id;
    let key = required_key(body.unique_id.as_deref(), &header)?;
    let from = crate::customer_of!(body.from)
        .parse()
        .map_err(|e| on_side("from", e))?;
    let to = crate::customer_of!(body.to)
        .parse()
        .map_err(|e| on_side("to", e))?;
    transfers::distinct(&from, &to)?;
    let (currency, requested) = spend_fields(&body.currency, body.amount.get("amount")?)?;
    let reason = bounded_text("reason", body.reason.as_deref(), 500)?;
    let request = TransferRequest {
        org_id,
        key: key.clone(),
        from,
        to,
        program_id: body.program_id.0,
        currency,
        amount: requested,
        reason,
    };
    let outcome = transfers::transfer(&state, request).await?;
    Ok(respond(Operation::CurrencyTransfer, outcome, Some(&key)))
}
