//! Reward issuance: every item of a request is exactly-once by its own `requestId`, issued all
//! or nothing on its own, and all items of a request are committed in one transaction.
//!
//! The path of a request, set-based so that a 1000-item request costs a handful of statements:
//! 1. claim every item's key in one `INSERT … ON CONFLICT DO NOTHING` (key order);
//! 2. items whose key was used: replay (same meaning) or fail `IDEMPOTENCY_KEY_REUSED`;
//! 3. lock the rewards of the claimed items and the customer's holdings (id order), decide every
//!    item in request order with `domain::issuance::decide`;
//! 4. apply one conditional `UPDATE` per reward for stock and one per reward for the holding
//!    (the conditions stay in the SQL, behind the decision), insert issuances and vouchers with
//!    multi-row statements, store the outcomes of issued items on their keys, and forget the keys
//!    of failed items, so they are not consumed;
//! 5. commit.

use std::collections::{BTreeMap, HashMap};

use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::issuance::{ItemAsk, ItemFailure, RewardState, RewardStatus, decide, voucher_code};
use persistence::idempotency::{self, BatchKey, Claim, RecordRow};
use persistence::issuances::{self, NewIssuance};
use persistence::rewards::{self, RewardRow};
use persistence::{Db, PersistenceError, customers};
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ApiError;
use crate::idempotent::claim_error;
use crate::startup::AppState;

/// One item to issue.
#[derive(Debug, Clone)]
pub struct IssueItem {
    pub request_id: IdempotencyKey,
    pub reward_id: i64,
    pub quantity: i64,
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

/// The JSON of one item's result as clients see it.
pub fn item_json(item: &IssueItem, outcome: &ItemOutcome) -> Value {
    match outcome {
        ItemOutcome::Issued(v) => with_status(v, "ISSUED", false),
        ItemOutcome::Replayed(v) => with_status(v, "REPLAYED", true),
        ItemOutcome::Failed {
            failure,
            mismatched_fields,
        } => {
            let mut error = json!({
                "code": failure.code(),
                "message": failure.message(),
                "retryable": failure.retryable(),
            });
            if !mismatched_fields.is_empty() {
                error["mismatchedFields"] = json!(mismatched_fields);
            }
            json!({
                "requestId": item.request_id.as_str(),
                "rewardId": item.reward_id,
                "quantity": item.quantity,
                "status": "FAILED",
                "error": error,
                "idempotentReplayed": false,
            })
        }
    }
}

fn with_status(stored: &Value, status: &str, replayed: bool) -> Value {
    let mut v = stored.clone();
    if let Value::Object(map) = &mut v {
        map.insert("status".into(), json!(status));
        map.insert("idempotentReplayed".into(), json!(replayed));
    }
    v
}

fn replay_or_mismatch(record: &RecordRow, meaning: &RequestMeaning) -> ItemOutcome {
    if record.fingerprint == meaning.fingerprint(Operation::RewardIssuance)
        && let Some(response) = &record.response
    {
        ItemOutcome::Replayed(response.clone())
    } else {
        ItemOutcome::Failed {
            failure: ItemFailure::IdempotencyKeyReused,
            mismatched_fields: record.meaning().mismatched_fields(meaning),
        }
    }
}

fn reward_state(row: &RewardRow, held: i64) -> RewardState {
    RewardState {
        // An unknown status in the database is treated as not issuable.
        status: RewardStatus::parse(&row.status).unwrap_or(RewardStatus::Paused),
        valid_from: row.valid_from,
        valid_until: row.valid_until,
        stock: row.stock,
        per_customer_limit: row.per_customer_limit,
        held,
    }
}

/// Every item has an outcome by construction; a missing one is a bug, reported as such.
fn every_item_decided(outcomes: Vec<Option<ItemOutcome>>) -> Result<Vec<ItemOutcome>, ApiError> {
    outcomes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ApiError::Internal("an item was left without an outcome".into()))
}

/// Issues the items of `req` (see the module documentation).
pub async fn issue(
    state: &AppState,
    org_id: i64,
    req: &IssueRequest,
) -> Result<IssueResult, ApiError> {
    // A voucher code that collides with an existing one (a 1 in 2^60 event per pair) fails the
    // unique index; the whole transaction rolled back, so trying again with new codes is safe.
    let mut attempts = 0;
    loop {
        match issue_once(state, org_id, req).await {
            Err(Attempt::VoucherCollision) if attempts < 3 => attempts += 1,
            Err(Attempt::VoucherCollision) => {
                return Err(ApiError::Internal(
                    "voucher codes collided three times".into(),
                ));
            }
            Err(Attempt::Api(e)) => return Err(e),
            Ok(result) => return Ok(result),
        }
    }
}

enum Attempt {
    Api(ApiError),
    VoucherCollision,
}

impl<E: Into<ApiError>> From<E> for Attempt {
    fn from(e: E) -> Self {
        Attempt::Api(e.into())
    }
}

async fn issue_once(
    state: &AppState,
    org_id: i64,
    req: &IssueRequest,
) -> Result<IssueResult, Attempt> {
    let now = state.now();
    let tx = state.db.begin().await?;
    let enrolment = customers::find_or_enroll(&tx, org_id, &req.customer, now)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let customer = &enrolment.row;
    let meanings: Vec<RequestMeaning> = req
        .items
        .iter()
        .map(|i| item_meaning(&req.customer, i))
        .collect();
    let batch: Vec<BatchKey> = req
        .items
        .iter()
        .zip(&meanings)
        .map(|(i, m)| BatchKey {
            key: i.request_id.clone(),
            meaning: m.clone(),
        })
        .collect();
    let first_key = &req.items[0].request_id;
    let mut claims = idempotency::claim_many(
        &tx,
        org_id,
        Operation::RewardIssuance,
        &batch,
        now,
        state.forget_before(),
    )
    .await
    .map_err(|e| claim_error(e, first_key))?;

    let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; req.items.len()];
    let mut claimed: Vec<(usize, i64)> = Vec::new();
    for (idx, item) in req.items.iter().enumerate() {
        match claims.remove(item.request_id.as_str()) {
            Some(Claim::Claimed { id }) => claimed.push((idx, id)),
            Some(Claim::Existing(record)) => {
                outcomes[idx] = Some(replay_or_mismatch(&record, &meanings[idx]))
            }
            None => return Err(ApiError::Internal("a claimed key is missing".into()).into()),
        }
    }

    let mut issued_any = false;
    if !claimed.is_empty() {
        let mut reward_ids: Vec<i64> = claimed
            .iter()
            .map(|(idx, _)| req.items[*idx].reward_id)
            .collect();
        reward_ids.sort_unstable();
        reward_ids.dedup();
        let rows = rewards::lock_many(&tx, org_id, &reward_ids).await?;
        let found: Vec<i64> = rows.iter().map(|r| r.id).collect();
        issuances::ensure_holdings(&tx, org_id, customer.id, &found).await?;
        let held = issuances::holdings(&tx, org_id, customer.id, &found, true).await?;
        let states: HashMap<i64, RewardState> = rows
            .iter()
            .map(|r| (r.id, reward_state(r, held.get(&r.id).copied().unwrap_or(0))))
            .collect();
        let asks: Vec<ItemAsk> = claimed
            .iter()
            .map(|(idx, _)| ItemAsk {
                reward_id: req.items[*idx].reward_id,
                quantity: req.items[*idx].quantity,
            })
            .collect();
        let decisions = decide(&asks, &states, now);

        let mut per_reward: BTreeMap<i64, i64> = BTreeMap::new();
        let mut new_issuances = Vec::new();
        let mut completed = Vec::new();
        let mut released = Vec::new();
        {
            let mut rng = rand::rng();
            for ((idx, record_id), decision) in claimed.iter().zip(decisions) {
                let item = &req.items[*idx];
                match decision {
                    Ok(()) => {
                        *per_reward.entry(item.reward_id).or_default() += item.quantity;
                        let id = Uuid::now_v7();
                        let vouchers: Vec<String> = (0..item.quantity)
                            .map(|_| voucher_code(rng.random::<u64>()))
                            .collect();
                        let stored = json!({
                            "requestId": item.request_id.as_str(),
                            "rewardId": item.reward_id,
                            "quantity": item.quantity,
                            "issuanceId": id.to_string(),
                            "vouchers": vouchers,
                        });
                        completed.push((*record_id, stored.clone(), Some(id.to_string())));
                        outcomes[*idx] = Some(ItemOutcome::Issued(stored));
                        new_issuances.push(NewIssuance {
                            id,
                            request_id: item.request_id.to_string(),
                            customer_id: customer.id,
                            reward_id: item.reward_id,
                            quantity: item.quantity,
                            brand: req.brand.clone(),
                            transaction_number: req.transaction_number.clone(),
                            vouchers,
                        });
                    }
                    Err(failure) => {
                        released.push(*record_id);
                        outcomes[*idx] = Some(ItemOutcome::Failed {
                            failure,
                            mismatched_fields: Vec::new(),
                        });
                    }
                }
            }
        }
        for (reward_id, quantity) in &per_reward {
            let limit = states.get(reward_id).and_then(|s| s.per_customer_limit);
            // Both writes keep their conditions; with the rows locked they cannot refuse what
            // the decision allowed, and if they ever do, nothing is committed.
            if !rewards::take_stock(&tx, org_id, *reward_id, *quantity, now).await? {
                return Err(
                    ApiError::Internal(format!("stock guard refused reward {reward_id}")).into(),
                );
            }
            if !issuances::hold(&tx, org_id, customer.id, *reward_id, *quantity, limit).await? {
                return Err(
                    ApiError::Internal(format!("limit guard refused reward {reward_id}")).into(),
                );
            }
        }
        match issuances::insert_many(&tx, org_id, &new_issuances, now).await {
            Err(PersistenceError::UniqueViolation(_)) => return Err(Attempt::VoucherCollision),
            other => other?,
        }
        let events = completed
            .iter()
            .map(|(_, stored, _)| {
                let mut data = stored.clone();
                data["customerId"] = json!(customer.id.to_string());
                data["brand"] = json!(req.brand);
                data["transactionNumber"] = json!(req.transaction_number);
                crate::webhooks::event("reward.issued", data, now)
            })
            .collect();
        crate::webhooks::emit(&state.caches, &tx, org_id, events, now).await?;
        idempotency::complete_many(&tx, 201, &completed).await?;
        idempotency::release_many(&tx, &released).await?;
        issued_any = !new_issuances.is_empty();
    }
    let customer_id = customer.id;
    let enrolled_now = enrolment.new;
    if issued_any {
        Db::commit(tx).await?;
    } else {
        // Nothing was issued: roll back, so not even the enrolment of a new customer remains
        // (and the answer names no customer that does not exist).
        drop(tx);
    }
    Ok(IssueResult {
        customer_id: (issued_any || !enrolled_now).then_some(customer_id),
        outcomes: every_item_decided(outcomes)?,
    })
}

/// What each item would get, without writing anything.
pub async fn dry_run(
    state: &AppState,
    org_id: i64,
    req: &IssueRequest,
) -> Result<IssueResult, ApiError> {
    let now = state.now();
    let conn = state.db.conn();
    let customer = customers::find(conn, org_id, &req.customer).await?;
    if customer.is_none() && matches!(req.customer, CustomerRef::CustomerId(_)) {
        return Err(ApiError::not_found("customer"));
    }
    let keys: Vec<&str> = req.items.iter().map(|i| i.request_id.as_str()).collect();
    let forget_before = state.forget_before();
    let mut existing: HashMap<String, RecordRow> =
        idempotency::get_many(conn, org_id, Operation::RewardIssuance, &keys)
            .await?
            .into_iter()
            // A key past the retention is forgotten: the real request would treat it as new.
            .filter(|r| forget_before.is_none_or(|cutoff| r.created_at >= cutoff))
            .map(|r| (r.key.clone(), r))
            .collect();
    let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; req.items.len()];
    let mut candidates = Vec::new();
    for (idx, item) in req.items.iter().enumerate() {
        match existing.remove(item.request_id.as_str()) {
            Some(record) => {
                outcomes[idx] = Some(replay_or_mismatch(
                    &record,
                    &item_meaning(&req.customer, item),
                ))
            }
            None => candidates.push(idx),
        }
    }
    let mut reward_ids: Vec<i64> = candidates.iter().map(|i| req.items[*i].reward_id).collect();
    reward_ids.sort_unstable();
    reward_ids.dedup();
    let rows = rewards::read_many(conn, org_id, &reward_ids, false).await?;
    let held = match &customer {
        Some(c) => issuances::holdings(conn, org_id, c.id, &reward_ids, false).await?,
        None => HashMap::new(),
    };
    let states: HashMap<i64, RewardState> = rows
        .iter()
        .map(|r| (r.id, reward_state(r, held.get(&r.id).copied().unwrap_or(0))))
        .collect();
    let asks: Vec<ItemAsk> = candidates
        .iter()
        .map(|i| ItemAsk {
            reward_id: req.items[*i].reward_id,
            quantity: req.items[*i].quantity,
        })
        .collect();
    for (idx, decision) in candidates.iter().zip(decide(&asks, &states, now)) {
        let item = &req.items[*idx];
        outcomes[*idx] = Some(match decision {
            Ok(()) => ItemOutcome::Issued(json!({
                "requestId": item.request_id.as_str(),
                "rewardId": item.reward_id,
                "quantity": item.quantity,
                "issuanceId": null,
                "vouchers": [],
            })),
            Err(failure) => ItemOutcome::Failed {
                failure,
                mismatched_fields: Vec::new(),
            },
        });
    }
    Ok(IssueResult {
        customer_id: customer.map(|c| c.id),
        outcomes: every_item_decided(outcomes)?,
    })
}
