//! Reward issuance: every item of a request is exactly-once by its own `requestId`, issued all
//! or nothing on its own, and all items of a request are committed in one transaction.
//!
//! Issuance is the write pipeline of [`crate::app::write`] specialised for many keys at once:
//! a request carries up to 1,000 items, each with its own key, and group commit puts several
//! requests in one transaction, so the keys are claimed with one set-based statement
//! (`persistence::idempotency::claim_keys`) rather than one [`crate::app::write::execute`] per
//! item. The steps are those of the pipeline, in its order, with its helpers where they fit:
//! 1. claim or replay: draw each item's issuance id and voucher codes, then claim every item's
//!    key in one `INSERT … ON CONFLICT DO NOTHING` (key order) that stores the item's answer if
//!    issued with it, so a key's record is written once. A key used before is replayed (same
//!    meaning) or refused `IDEMPOTENCY_KEY_REUSED` by [`crate::app::write::replay_or_refuse`],
//!    here as the item's outcome rather than the request's answer; a key held by another
//!    transaction past the lock wait is [`crate::app::write::claim_error`]'s 409. Unlike
//!    `execute`, there is no read of the keys before the transaction: the claim answers both.
//! 2. decide: lock the rewards of the claimed items and the customer's holdings and period
//!    counters (id order), decide every item in request order with `domain::issuance::decide`;
//! 3. effect and stored answer: one conditional `UPDATE` per reward for stock and one per
//!    reward for the holding (the conditions stay in the SQL, behind the decision), insert
//!    issuances and vouchers with multi-row statements; the issued items' answers were stored
//!    by the claim, and the keys of failed items are forgotten (answers and all), so they are
//!    not consumed, as a failed effect rolls its key back in the pipeline;
//! 4. commit, or roll back a request that issues nothing.
//!
//! The files: [`segments`] (the transaction), [`batch`] (group commit), [`mod@dry_run`] (the same
//! decision without writing), [`periods`] (the period counters), [`answer`] (the answers),
//! [`request`] (the checks of a request's items).

use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::issuance::{ItemAsk, ItemFailure};
use persistence::idempotency::RecordRow;
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::replay_or_refuse;

pub mod answer;
pub mod batch;
pub mod dry_run;
pub mod periods;
pub mod request;
pub mod segments;

pub use answer::{
    BulkResult, ItemError, ItemResult, SingleAnswer, SingleResult, Summary, item_result,
};
pub use batch::{BATCH_ITEMS_MAX, IssueJob};
pub use dry_run::dry_run;
pub use periods::{counted_keys, period_keys};
pub use request::{RequestedItem, check_items};
pub use segments::{Attempt, Segment, issue_segments};

/// One item to issue.
#[derive(Debug, Clone)]
pub struct IssueItem {
    pub request_id: IdempotencyKey,
    pub reward_id: i64,
    pub quantity: i64,
}

impl IssueItem {
    /// The item as the decision sees it.
    fn ask(&self) -> ItemAsk {
        ItemAsk {
            reward_id: self.reward_id,
            quantity: self.quantity,
        }
    }

    /// The answer the item gets if it is issued ([`IssuedItem`]): with its issuance and codes,
    /// or, in a dry run, none of them.
    fn issued(&self, issuance: Option<Uuid>, vouchers: Vec<String>) -> Value {
        crate::engine::format::to_json(&IssuedItem {
            request_id: self.request_id.to_string(),
            reward_id: self.reward_id,
            quantity: self.quantity,
            issuance_id: issuance.map(|id| id.to_string()),
            vouchers,
        })
    }
}

/// A checked issuance request.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub customer: CustomerRef,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    pub items: Vec<IssueItem>,
}

/// What became of one item.
#[derive(Debug, Clone)]
pub enum ItemOutcome {
    /// Issued by this request; the item's result fields.
    Issued(Value),
    /// Issued by an earlier request with the same `requestId`; its result fields.
    Replayed(Value),
    Failed {
        failure: ItemFailure,
        mismatched_fields: Vec<String>,
    },
}

/// The outcome of a request: the customer (if known) and one outcome per item, in order.
#[derive(Debug, Clone)]
pub struct IssueResult {
    pub customer_id: Option<Uuid>,
    pub outcomes: Vec<ItemOutcome>,
}

fn item_meaning(customer: &CustomerRef, item: &IssueItem) -> RequestMeaning {
    RequestMeaning::new()
        .with("customer", Some(customer))
        .with("rewardId", Some(item.reward_id))
        .with("quantity", Some(item.quantity))
}

/// What an issued item's idempotency record keeps (and a replay answers).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedItem {
    pub request_id: String,
    pub reward_id: i64,
    pub quantity: i64,
    /// Null in a dry run.
    pub issuance_id: Option<String>,
    pub vouchers: Vec<String>,
}

/// An item whose key was used before: replayed when it was used for the same meaning, else
/// refused `IDEMPOTENCY_KEY_REUSED` naming the fields that differ, as the pipeline's
/// [`replay_or_refuse`] decides; the refusal is the item's outcome, not the request's answer.
fn replay_or_mismatch(
    record: &RecordRow,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
) -> ItemOutcome {
    let refused = |mismatched_fields| ItemOutcome::Failed {
        failure: ItemFailure::IdempotencyKeyReused,
        mismatched_fields,
    };
    match (
        replay_or_refuse(record, Operation::RewardIssuance, key, meaning),
        &record.response,
    ) {
        (Ok(_), Some(response)) => ItemOutcome::Replayed(response.clone()),
        (
            Err(AppError::IdempotencyKeyReused {
                mismatched_fields, ..
            }),
            _,
        ) => refused(mismatched_fields),
        // A record without its answer (issuance never writes one so) cannot be replayed.
        _ => refused(record.meaning().mismatched_fields(meaning)),
    }
}

/// Every item has an outcome by construction; a missing one is a bug, reported as such.
fn every_item_decided(outcomes: Vec<Option<ItemOutcome>>) -> Result<Vec<ItemOutcome>, AppError> {
    outcomes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| AppError::Internal("an item was left without an outcome".into()))
}

/// Issues the items of `req` (see the module documentation), in a transaction of its own.
pub async fn issue(
    state: &AppState,
    org_id: i64,
    req: &IssueRequest,
) -> Result<IssueResult, AppError> {
    let segment = Segment {
        org_id,
        request: req,
    };
    let mut results = issue_segments(state, std::slice::from_ref(&segment))
        .await
        .map_err(|e| e.into_api(req))?;
    results
        .pop()
        .ok_or_else(|| AppError::Internal("no result for the request".into()))?
}

/// Issues (or, for a dry run, evaluates) the items of `req`: group-committed with other
/// requests when group commit is on, else in a transaction of its own.
async fn run(
    state: &AppState,
    org_id: i64,
    req: &IssueRequest,
    dry: bool,
) -> Result<IssueResult, AppError> {
    if dry {
        dry_run(state, org_id, req).await
    } else if state.settings.group_commit_max > 1 {
        let job = IssueJob {
            org_id,
            request: req.clone(),
        };
        Ok(state.issuances.submit(job).await?)
    } else {
        issue(state, org_id, req).await
    }
}

/// A bulk request: a result per item, whatever each did.
pub async fn bulk(
    state: &AppState,
    org_id: i64,
    req: &IssueRequest,
    dry: bool,
) -> Result<BulkResult, AppError> {
    let result = run(state, org_id, req, dry).await?;
    if !dry {
        answer::count_items(&result.outcomes, true);
    }
    answer::bulk_result(req, &result, dry)
}

/// A request of one item: its result, or its failure as the request's error.
pub async fn single(
    state: &AppState,
    org_id: i64,
    req: &IssueRequest,
    dry: bool,
) -> Result<SingleAnswer, AppError> {
    let result = run(state, org_id, req, dry).await?;
    let outcome = result
        .outcomes
        .first()
        .ok_or_else(|| AppError::Internal("no outcome for the item".into()))?;
    if !dry {
        answer::count_items(&result.outcomes, false);
    }
    answer::single_answer(req, &result, outcome, dry)
}
