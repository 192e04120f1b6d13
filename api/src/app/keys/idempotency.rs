//! What became of an idempotency key, without repeating its request.

use domain::idempotency::Operation;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::engine::format::ts;

/// What became of a key: the first request's meaning and the answer it got.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "operation": "currency-allocation", "idempotencyKey": "order-1001", "status": "COMPLETED",
    "firstUsedAt": "2026-01-01T00:00:00Z", "statusCode": 201,
    "resourceId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c01",
    "request": {"programId": "1", "sourceValue": "1000"},
    "response": {"uniqueId": "order-1001", "amount": "100.00"}
}))]
pub struct KeyRecord {
    pub operation: String,
    pub idempotency_key: String,
    /// COMPLETED: an answer is kept and a retry replays it.
    pub status: String,
    pub first_used_at: String,
    /// The status of the first answer.
    pub status_code: Option<i16>,
    pub resource_id: Option<String>,
    /// The fields that give the request its meaning (what a reuse is compared on).
    #[schema(value_type = Object)]
    pub request: Value,
    /// The first answer's body (a webhook endpoint's secret removed).
    #[schema(value_type = Object)]
    pub response: Option<Value>,
}

/// The record of `key` for `operation` (an operation's name as the API spells it). An unknown
/// operation, a key never used, and a key past the retention (forgotten, even before the purge
/// deletes it) are all 404.
pub async fn get(
    state: &AppState,
    org_id: i64,
    operation: &str,
    key: &str,
) -> Result<KeyRecord, AppError> {
    let operation = Operation::parse(operation).ok_or_else(|| AppError::NotFound {
        code: "NOT_FOUND",
        detail: format!(
            "unknown operation; use one of {}",
            Operation::ALL.map(Operation::as_str).join(", ")
        ),
    })?;
    let record = persistence::idempotency::get(state.db.conn(), org_id, operation, key)
        .await?
        .filter(|r| {
            state
                .forget_before()
                .is_none_or(|cutoff| r.created_at >= cutoff)
        })
        .ok_or_else(|| AppError::not_found("idempotency key"))?;
    let mut response = record.response.clone();
    // A webhook endpoint's secret is shown by its creation answer (and its replays) only.
    if let Some(Value::Object(map)) = response.as_mut() {
        map.remove("secret");
    }
    Ok(KeyRecord {
        operation: record.operation.clone(),
        idempotency_key: record.key.clone(),
        status: "COMPLETED".to_owned(),
        first_used_at: ts(record.created_at),
        status_code: record.status_code,
        resource_id: record.resource_id.clone(),
        request: record.request_fields.clone(),
        response,
    })
}
