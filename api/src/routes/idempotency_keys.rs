//! `GET /v1/idempotency-keys/{operation}/{key}`: what became of a key, without repeating it.

use actix_web::{HttpResponse, web};
use domain::idempotency::Operation;
use persistence::idempotency;
use serde_json::{Value, json};

use crate::dto::ts;
use crate::error::ApiError;
use crate::extract::Tenant;
use crate::startup::AppState;

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (operation, key) = path.into_inner();
    let operation = Operation::parse(&operation).ok_or_else(|| ApiError::NotFound {
        code: "NOT_FOUND",
        detail: format!(
            "unknown operation; use one of {}",
            Operation::ALL.map(Operation::as_str).join(", ")
        ),
    })?;
    let record = idempotency::get(state.db.conn(), tenant.org_id, operation, &key)
        .await?
        // A key past the retention is forgotten, even before the purge deletes it.
        .filter(|r| {
            state
                .forget_before()
                .is_none_or(|cutoff| r.created_at >= cutoff)
        })
        .ok_or_else(|| ApiError::not_found("idempotency key"))?;
    let mut response = record.response.clone();
    // A webhook endpoint's secret is shown by its creation answer (and its replays) only.
    if let Some(Value::Object(map)) = response.as_mut() {
        map.remove("secret");
    }
    Ok(HttpResponse::Ok().json(json!({
        "operation": record.operation,
        "idempotencyKey": record.key,
        "status": "COMPLETED",
        "firstUsedAt": ts(record.created_at),
        "statusCode": record.status_code,
        "resourceId": record.resource_id,
        "request": record.request_fields,
        "response": response,
    })))
}
