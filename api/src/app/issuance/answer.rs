//! The answers to issuance requests: each item's result, a bulk request's results with their
//! summary, a single request's result or its failure; and the metrics of the items issued.

use domain::idempotency::{IdempotencyKey, Operation};
use domain::issuance::ItemFailure;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{IssueItem, IssueRequest, IssueResult, IssuedItem, ItemOutcome};
use crate::app::AppError;

/// One item's result as clients see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "requestId": "order-1001-1", "rewardId": 1, "quantity": 1, "status": "ISSUED",
    "issuanceId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c04", "vouchers": ["K7QX-94MD-2HTW"],
    "idempotentReplayed": false
}))]
pub struct ItemResult {
    pub request_id: String,
    pub reward_id: i64,
    pub quantity: i64,
    /// ISSUED, REPLAYED (issued by an earlier request with this requestId) or FAILED.
    pub status: String,
    /// ISSUED and REPLAYED: the issuance (null in a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuance_id: Option<String>,
    /// ISSUED and REPLAYED: one voucher code per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vouchers: Option<Vec<String>>,
    /// FAILED: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
    pub idempotent_replayed: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemError {
    /// OUT_OF_STOCK, LIMIT_EXCEEDED, REWARD_NOT_FOUND, REWARD_INACTIVE, REWARD_NOT_YET_VALID,
    /// REWARD_EXPIRED, IDEMPOTENCY_KEY_REUSED, …
    pub code: String,
    pub message: String,
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatched_fields: Option<Vec<String>>,
}

/// One item's result as clients see it.
pub fn item_result(item: &IssueItem, outcome: &ItemOutcome) -> Result<ItemResult, AppError> {
    let issued = |stored: &Value, status: &str, replayed: bool| {
        let stored = <IssuedItem as serde::Deserialize>::deserialize(stored).map_err(|e| {
            AppError::Internal(format!("a stored issuance answer is malformed: {e}"))
        })?;
        Ok(ItemResult {
            request_id: stored.request_id,
            reward_id: stored.reward_id,
            quantity: stored.quantity,
            status: status.to_owned(),
            issuance_id: stored.issuance_id,
            vouchers: Some(stored.vouchers),
            error: None,
            idempotent_replayed: replayed,
        })
    };
    match outcome {
        ItemOutcome::Issued(v) => issued(v, "ISSUED", false),
        ItemOutcome::Replayed(v) => issued(v, "REPLAYED", true),
        ItemOutcome::Failed {
            failure,
            mismatched_fields,
        } => Ok(ItemResult {
            request_id: item.request_id.to_string(),
            reward_id: item.reward_id,
            quantity: item.quantity,
            status: "FAILED".to_owned(),
            issuance_id: None,
            vouchers: None,
            error: Some(ItemError {
                code: failure.code().to_owned(),
                message: failure.message().to_owned(),
                retryable: failure.retryable(),
                mismatched_fields: (!mismatched_fields.is_empty())
                    .then(|| mismatched_fields.clone()),
            }),
            idempotent_replayed: false,
        }),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Summary {
    pub issued: usize,
    pub replayed: usize,
    pub failed: usize,
}

/// The answer to a bulk request: 200 whatever the items did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "transactionNumber": "T-1001", "brand": null,
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02",
    "summary": {"issued": 1, "replayed": 0, "failed": 0},
    "results": [{"requestId": "T-1001-1", "rewardId": 1, "quantity": 1, "status": "ISSUED",
        "issuanceId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c04", "vouchers": ["K7QX-94MD-2HTW"],
        "idempotentReplayed": false}]
}))]
pub struct BulkResult {
    pub transaction_number: Option<String>,
    pub brand: Option<String>,
    /// Null when the customer was not found and nothing was issued.
    pub customer_id: Option<String>,
    pub summary: Summary,
    /// One per item, in the order of the request.
    pub results: Vec<ItemResult>,
    /// Present (true) for a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// The answer to a single issuance: the item's result and the request's context.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "requestId": "T-1002", "rewardId": 1, "quantity": 1, "status": "ISSUED",
    "issuanceId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c05", "vouchers": ["M2PL-77QA-X9KC"],
    "idempotentReplayed": false, "idempotencyKey": "T-1002",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "brand": null, "transactionNumber": null
}))]
pub struct SingleResult {
    pub request_id: String,
    pub reward_id: i64,
    pub quantity: i64,
    /// ISSUED (201, or 200 in a dry run) or REPLAYED (202).
    pub status: String,
    /// Null in a dry run.
    pub issuance_id: Option<String>,
    /// One voucher code per unit (none in a dry run).
    pub vouchers: Vec<String>,
    pub idempotent_replayed: bool,
    /// The requestId.
    pub idempotency_key: Option<String>,
    pub customer_id: Option<String>,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    /// Present (true) for a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// The answer to a single request that issued (or, in a dry run, would issue) its item, or
/// replayed it: the result, whether it is a replay, and the item's key (the request's
/// idempotency key, which the answer names).
#[derive(Debug)]
pub struct SingleAnswer {
    pub result: SingleResult,
    pub replayed: bool,
    pub key: IdempotencyKey,
}

fn summary(result: &IssueResult) -> Summary {
    let (mut issued, mut replayed, mut failed) = (0, 0, 0);
    for o in &result.outcomes {
        match o {
            ItemOutcome::Issued(_) => issued += 1,
            ItemOutcome::Replayed(_) => replayed += 1,
            ItemOutcome::Failed { .. } => failed += 1,
        }
    }
    Summary {
        issued,
        replayed,
        failed,
    }
}

/// Counts the items of an issuance that happened (not a dry run): by status and code, and, for
/// bulk requests whose answer is 200 whatever the items did, each item's idempotency outcome.
pub(super) fn count_items(outcomes: &[ItemOutcome], per_item_keys: bool) {
    let op = Operation::RewardIssuance.as_str();
    for o in outcomes {
        let (status, code, key) = match o {
            ItemOutcome::Issued(_) => ("issued", "", Some("created")),
            ItemOutcome::Replayed(_) => ("replayed", "", Some("replayed")),
            ItemOutcome::Failed { failure, .. } => (
                "failed",
                failure.code(),
                (*failure == ItemFailure::IdempotencyKeyReused).then_some("key_reused"),
            ),
        };
        crate::engine::metrics::reward_items(status, code, 1);
        if let (true, Some(outcome)) = (per_item_keys, key) {
            crate::engine::metrics::idempotency(op, outcome);
        }
    }
}

/// The answer to a bulk request: a result per item, in the order of the request.
pub(super) fn bulk_result(
    req: &IssueRequest,
    result: &IssueResult,
    dry: bool,
) -> Result<BulkResult, AppError> {
    let results = req
        .items
        .iter()
        .zip(&result.outcomes)
        .map(|(i, o)| item_result(i, o))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BulkResult {
        transaction_number: req.transaction_number.clone(),
        brand: req.brand.clone(),
        customer_id: result.customer_id.map(|c| c.to_string()),
        summary: summary(result),
        results,
        dry_run: dry.then_some(true),
    })
}

/// The answer to a single request: its item's result, or its failure as an error (404 for a
/// reward that does not exist, 422 for the others).
pub(super) fn single_answer(
    req: &IssueRequest,
    result: &IssueResult,
    outcome: &ItemOutcome,
    dry: bool,
) -> Result<SingleAnswer, AppError> {
    let item = &req.items[0];
    // The idempotency fields (idempotentReplayed, idempotencyKey) are written in on the way out.
    let answer = |replayed: bool| -> Result<SingleAnswer, AppError> {
        let item_result = item_result(item, outcome)?;
        Ok(SingleAnswer {
            result: SingleResult {
                request_id: item_result.request_id,
                reward_id: item_result.reward_id,
                quantity: item_result.quantity,
                status: item_result.status,
                issuance_id: item_result.issuance_id,
                vouchers: item_result.vouchers.unwrap_or_default(),
                idempotent_replayed: item_result.idempotent_replayed,
                idempotency_key: None,
                customer_id: result.customer_id.map(|c| c.to_string()),
                brand: req.brand.clone(),
                transaction_number: req.transaction_number.clone(),
                dry_run: dry.then_some(true),
            },
            replayed,
            key: item.request_id.clone(),
        })
    };
    match outcome {
        ItemOutcome::Issued(_) => answer(false),
        ItemOutcome::Replayed(_) => answer(true),
        ItemOutcome::Failed {
            failure: ItemFailure::IdempotencyKeyReused,
            mismatched_fields,
        } => Err(AppError::IdempotencyKeyReused {
            operation: Operation::RewardIssuance.as_str(),
            key: item.request_id.to_string(),
            mismatched_fields: mismatched_fields.clone(),
        }),
        ItemOutcome::Failed {
            failure: ItemFailure::RewardNotFound,
            ..
        } => Err(AppError::NotFound {
            code: "REWARD_NOT_FOUND",
            detail: ItemFailure::RewardNotFound.message().into(),
        }),
        ItemOutcome::Failed { failure, .. } => Err(AppError::Unprocessable {
            code: failure.code(),
            detail: failure.message().into(),
            retryable: failure.retryable(),
        }),
    }
}
