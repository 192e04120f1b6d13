//! Reward issuance: every item of a request is exactly-once by its own `requestId`, issued all
//! or nothing on its own, and all items of a request are committed in one transaction.
//!
//! The path of a request, set-based so that a 1000-item request costs a handful of statements:
//! 1. draw each item's issuance id and voucher codes, then claim every item's key in one
//!    `INSERT … ON CONFLICT DO NOTHING` (key order) that stores the item's answer if issued
//!    with it, so a key's record is written once;
//! 2. items whose key was used: replay (same meaning) or fail `IDEMPOTENCY_KEY_REUSED`;
//! 3. lock the rewards of the claimed items and the customer's holdings (id order), decide every
//!    item in request order with `domain::issuance::decide`;
//! 4. apply one conditional `UPDATE` per reward for stock and one per reward for the holding
//!    (the conditions stay in the SQL, behind the decision), insert issuances and vouchers with
//!    multi-row statements, and forget the keys of failed items (answers and all), so they are
//!    not consumed; a request that issues nothing rolls back;
//! 5. commit.

use std::collections::{BTreeMap, HashMap};

use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::issuance::{ItemAsk, ItemFailure, RewardState, RewardStatus, decide, voucher_code};
use domain::period::Period;
use persistence::idempotency::{self, Claim, KnownOutcome, OrgKey, RecordRow};
use persistence::issuances::{self, HoldingKey, IssuanceRow, NewIssuance};
use persistence::reward_periods::{self, CounterKey};
use persistence::rewards::{self, RewardRow};
use persistence::{Db, PersistenceError, customers};
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use std::sync::Arc;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::claim_error;
use crate::engine::group_commit::{Batch, Job};

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

/// The decision's view of a reward for one customer: `held` is the lifetime holding; the
/// period counters (see [`period_keys`]) replace it when the limit is per period.
fn reward_state(
    row: &RewardRow,
    held: i64,
    customer: Uuid,
    counts: &HashMap<CounterKey, i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> RewardState {
    let (mine, everyone) = period_keys(row, customer, now);
    let count = |k: Option<CounterKey>| k.and_then(|k| counts.get(&k).copied()).unwrap_or(0);
    RewardState {
        // An unknown status in the database is treated as not issuable.
        status: RewardStatus::parse(&row.status).unwrap_or(RewardStatus::Paused),
        valid_from: row.valid_from,
        valid_until: row.valid_until,
        stock: row.stock,
        per_customer_limit: row.per_customer_limit,
        held: if mine.is_some() { count(mine) } else { held },
        period_limit: row.period_limit.filter(|_| everyone.is_some()),
        period_issued: count(everyone),
    }
}

/// The period counters an issuance of `row` to `customer` at `at` counts in: the customer's,
/// when the per-customer limit is per calendar period, and everyone's, when the reward has a
/// period limit. A counter counts from when its period is set, whatever the limit.
pub fn period_keys(
    row: &RewardRow,
    customer: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> (Option<CounterKey>, Option<CounterKey>) {
    let period = |raw: &str| raw.parse::<Period>().ok();
    let mine = period(&row.per_customer_limit_period)
        .filter(|p| *p != Period::Lifetime)
        .map(|p| (row.org_id, row.id, customer, p.as_str(), p.start(at)));
    let everyone = row
        .period_limit_period
        .as_deref()
        .and_then(period)
        .map(|p| (row.org_id, row.id, Uuid::nil(), p.as_str(), p.start(at)));
    (mine, everyone)
}

/// The period counters issuance `row` was counted in when it was made (see [`period_keys`]):
/// those its recorded periods name, in their periods at its `created_at`. A cancellation gives
/// its units back to these, whatever the reward's settings have become since.
pub fn counted_keys(row: &IssuanceRow) -> Vec<CounterKey> {
    let key = |raw: Option<&str>, customer: Uuid| {
        let period = raw?.parse::<Period>().ok()?;
        Some((
            row.org_id,
            row.reward_id,
            customer,
            period.as_str(),
            period.start(row.created_at),
        ))
    };
    [
        key(row.customer_limit_period.as_deref(), row.customer_id),
        key(row.period_limit_period.as_deref(), Uuid::nil()),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What an item gets if it is issued, drawn before its key is claimed, so that the claim stores
/// the outcome with the key in one write (see [`OrgKey::outcome`]): the issuance id, the
/// voucher codes and the stored answer ([`IssuedItem`]).
fn draw(item: &IssueItem) -> (Uuid, Vec<String>, Value) {
    let mut rng = rand::rng();
    let id = Uuid::now_v7();
    let vouchers: Vec<String> = (0..item.quantity)
        .map(|_| voucher_code(rng.random::<u64>()))
        .collect();
    let stored = crate::engine::format::to_json(&IssuedItem {
        request_id: item.request_id.to_string(),
        reward_id: item.reward_id,
        quantity: item.quantity,
        issuance_id: Some(id.to_string()),
        vouchers: vouchers.clone(),
    });
    (id, vouchers, stored)
}

/// An item's issuance id, voucher codes and stored answer (its key's record holds the same
/// answer as text).
type Drawn = (Uuid, Vec<String>, Value);

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

/// The most items one group-committed batch of issuance requests carries; a larger request
/// runs in a batch of its own.
pub const BATCH_ITEMS_MAX: usize = 1_000;

/// An issuance request (single or bulk) waiting to be group-committed with others.
#[derive(Debug)]
pub struct IssueJob {
    pub org_id: i64,
    pub request: IssueRequest,
}

impl Batch for IssueJob {
    type Context = AppState;
    type Error = AppError;
    type Answer = IssueResult;

    async fn run(state: Arc<AppState>, jobs: Vec<Job<Self>>) -> Vec<Job<Self>> {
        // A request sharing a key with an earlier one of the batch waits for the next batch
        // (then it replays), as a concurrent duplicate would; so does one that would take the
        // batch past BATCH_ITEMS_MAX items.
        let mut seen: std::collections::HashSet<(i64, String)> = std::collections::HashSet::new();
        let (mut batch, mut carried) = (Vec::new(), Vec::new());
        let mut items = 0;
        for job in jobs {
            let keys: Vec<(i64, String)> = job
                .request
                .request
                .items
                .iter()
                .map(|i| (job.request.org_id, i.request_id.as_str().to_owned()))
                .collect();
            let fits = batch.is_empty() || items + keys.len() <= BATCH_ITEMS_MAX;
            if fits && keys.iter().all(|k| !seen.contains(k)) {
                items += keys.len();
                seen.extend(keys);
                batch.push(job);
            } else {
                carried.push(job);
            }
        }
        let segments: Vec<Segment> = batch
            .iter()
            .map(|j| Segment {
                org_id: j.request.org_id,
                request: &j.request.request,
            })
            .collect();
        let mut conflicts = 0;
        let outcome = loop {
            match issue_segments(&state, &segments).await {
                Err(Attempt::Db(PersistenceError::Conflict(_))) if conflicts < 2 => conflicts += 1,
                other => break other,
            }
        };
        let answers: Vec<Result<IssueResult, AppError>> = match outcome {
            Ok(results) => results,
            // Alone, the request would have got this very answer.
            Err(e) if batch.len() == 1 => vec![Err(e.into_api(&batch[0].request.request))],
            Err(Attempt::Db(e)) if e.is_transient() => {
                tracing::warn!(error = %e, size = batch.len(), "group commit of issuances failed");
                let message = e.to_string();
                batch
                    .iter()
                    .map(|_| {
                        Err(AppError::from(match &e {
                            PersistenceError::CommitUnknown(_) => {
                                PersistenceError::CommitUnknown(message.clone())
                            }
                            _ => PersistenceError::Unavailable(message.clone()),
                        }))
                    })
                    .collect()
            }
            Err(e) => {
                // Not to be pinned on one request from here: let each find out alone.
                tracing::info!(error = ?e, size = batch.len(), "group commit: issuing each request alone");
                futures_util::future::join_all(
                    batch
                        .iter()
                        .map(|j| issue(&state, j.request.org_id, &j.request.request)),
                )
                .await
            }
        };
        for (job, answer) in batch.into_iter().zip(answers) {
            job.answer(answer);
        }
        carried
    }
}

/// One request's part of a transaction: its organisation and what it asks.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub org_id: i64,
    pub request: &'a IssueRequest,
}

/// Why a transaction of issuances did not commit.
#[derive(Debug)]
pub enum Attempt {
    /// A key was held by another transaction past the lock wait.
    KeyInUse,
    /// A database error; `is_transient` tells whether a retry may do better.
    Db(PersistenceError),
    /// A bug (a guard refusing what the decision allowed, say).
    Api(AppError),
    /// Voucher codes collided three times in a row.
    VoucherCollision,
}

impl Attempt {
    /// The answer to `req` when it ran alone and its transaction did not commit.
    fn into_api(self, req: &IssueRequest) -> AppError {
        match self {
            Attempt::KeyInUse => claim_error(
                PersistenceError::LockTimeout,
                Operation::RewardIssuance,
                &req.items[0].request_id,
            ),
            Attempt::Db(e) => e.into(),
            Attempt::Api(e) => e,
            Attempt::VoucherCollision => {
                AppError::Internal("voucher codes collided three times".into())
            }
        }
    }
}

impl From<PersistenceError> for Attempt {
    fn from(e: PersistenceError) -> Self {
        Attempt::Db(e)
    }
}

impl From<AppError> for Attempt {
    fn from(e: AppError) -> Self {
        Attempt::Api(e)
    }
}

/// Issues several requests (of any organisations and customers) in one transaction, and
/// answers each as if it had been alone; see [`issue_segments_once`]. A voucher code that
/// collides with an existing one (a 1 in 2^60 event per pair) fails the unique index; the
/// whole transaction rolled back, so trying again with new codes is safe.
pub async fn issue_segments(
    state: &AppState,
    segments: &[Segment<'_>],
) -> Result<Vec<Result<IssueResult, AppError>>, Attempt> {
    let mut collisions = 0;
    loop {
        match issue_segments_once(state, segments).await {
            Err(Attempt::VoucherCollision) if collisions < 3 => collisions += 1,
            other => return other,
        }
    }
}

/// The steps of the module documentation, for every segment at once: customers, keys (in
/// `(organisation, key)` order), rewards (in `(organisation, id)` order) and holdings (in
/// `(organisation, customer, reward)` order) are each read or written with one statement for
/// all segments. Segments are decided in order, item by item, sharing each reward's stock, so
/// the result is what running them one after another would give.
async fn issue_segments_once(
    state: &AppState,
    segments: &[Segment<'_>],
) -> Result<Vec<Result<IssueResult, AppError>>, Attempt> {
    let now = state.now();
    let tx = state.db.begin().await?;
    // Customers first, then keys: a request whose customer is unknown claims nothing.
    tx.order().keys_after_enrolments();
    let wanted: Vec<(i64, CustomerRef)> = segments
        .iter()
        .map(|s| (s.org_id, s.request.customer.clone()))
        .collect();
    let enrolled = customers::find_or_enroll_many(&tx, &wanted, now).await?;
    let mut results: Vec<Option<Result<IssueResult, AppError>>> =
        segments.iter().map(|_| None).collect();
    // Per segment: its customer (None: unknown, answered 404) and the meaning of each item.
    let mut customers_of: Vec<Option<customers::Enrolment>> = Vec::with_capacity(segments.len());
    let mut meanings: Vec<Vec<RequestMeaning>> = Vec::with_capacity(segments.len());
    for (s, seg) in segments.iter().enumerate() {
        let found = enrolled
            .get(&(seg.org_id, seg.request.customer.clone()))
            .cloned();
        if found.is_none() {
            results[s] = Some(Err(AppError::not_found("customer")));
        }
        customers_of.push(found);
        meanings.push(
            seg.request
                .items
                .iter()
                .map(|i| item_meaning(&seg.request.customer, i))
                .collect(),
        );
    }
    let mut keys: Vec<OrgKey> = Vec::new();
    // Per segment and item (none for an unknown customer): its issuance id, codes and answer
    // if issued (its key in `keys` holds the same answer, as text).
    let mut drawn: Vec<Vec<Option<Drawn>>> = Vec::with_capacity(segments.len());
    for (s, seg) in segments.iter().enumerate() {
        let mut draws = Vec::new();
        if customers_of[s].is_some() {
            for (item, meaning) in seg.request.items.iter().zip(&meanings[s]) {
                let (id, vouchers, stored) = draw(item);
                let text = stored.to_string();
                draws.push(Some((id, vouchers, stored)));
                keys.push(OrgKey {
                    org_id: seg.org_id,
                    key: item.request_id.clone(),
                    meaning,
                    outcome: Some(KnownOutcome {
                        status_code: 201,
                        response: text,
                        resource_id: Some(id.to_string()),
                    }),
                });
            }
        }
        drawn.push(draws);
    }
    let mut claims = match idempotency::claim_keys(
        &tx,
        Operation::RewardIssuance,
        &keys,
        now,
        state.forget_before(),
    )
    .await
    {
        Ok(claims) => claims,
        Err(PersistenceError::LockTimeout) => return Err(Attempt::KeyInUse),
        Err(e) => return Err(e.into()),
    };

    let mut outcomes: Vec<Vec<Option<ItemOutcome>>> = segments
        .iter()
        .map(|s| vec![None; s.request.items.len()])
        .collect();
    // (segment, item, its key's record)
    let mut claimed: Vec<(usize, usize, i64)> = Vec::new();
    for (s, seg) in segments.iter().enumerate() {
        if customers_of[s].is_none() {
            continue;
        }
        for (idx, item) in seg.request.items.iter().enumerate() {
            match claims.remove(&(seg.org_id, item.request_id.as_str().to_owned())) {
                Some(Claim::Claimed { id }) => claimed.push((s, idx, id)),
                Some(Claim::Existing(record)) => {
                    outcomes[s][idx] = Some(replay_or_mismatch(&record, &meanings[s][idx]))
                }
                None => return Err(AppError::Internal("a claimed key is missing".into()).into()),
            }
        }
    }
    let customer_id = |s: usize| customers_of[s].as_ref().map(|c| c.row.id);

    let mut new_issuances: Vec<NewIssuance> = Vec::new();
    // (segment, stored outcome) of each issued item; its record holds the outcome since the claim
    let mut completed: Vec<(usize, Value)> = Vec::new();
    let mut released: Vec<i64> = Vec::new();
    let mut stock_taken: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut held_taken: BTreeMap<HoldingKey, (i64, Option<i64>)> = BTreeMap::new();
    let mut period_taken: BTreeMap<CounterKey, (i64, Option<i64>)> = BTreeMap::new();
    if !claimed.is_empty() {
        let mut reward_keys: Vec<(i64, i64)> = claimed
            .iter()
            .map(|(s, idx, _)| {
                (
                    segments[*s].org_id,
                    segments[*s].request.items[*idx].reward_id,
                )
            })
            .collect();
        reward_keys.sort_unstable();
        reward_keys.dedup();
        let rows: HashMap<(i64, i64), RewardRow> = rewards::lock_across(&tx, &reward_keys)
            .await?
            .into_iter()
            .map(|r| ((r.org_id, r.id), r))
            .collect();
        let mut holding_keys: Vec<HoldingKey> = claimed
            .iter()
            .filter_map(|(s, idx, _)| {
                let org = segments[*s].org_id;
                let reward = segments[*s].request.items[*idx].reward_id;
                rows.contains_key(&(org, reward))
                    .then_some((org, customer_id(*s)?, reward))
            })
            .collect();
        holding_keys.sort_unstable();
        holding_keys.dedup();
        issuances::ensure_holdings(&tx, &holding_keys).await?;
        let mut held = issuances::holdings(&tx, &holding_keys, true).await?;
        // The period counters, locked after the rewards and holdings, in key order.
        let counter_keys: Vec<CounterKey> = holding_keys
            .iter()
            .filter_map(|(org, customer, reward)| {
                let (mine, everyone) = period_keys(rows.get(&(*org, *reward))?, *customer, now);
                Some([mine, everyone])
            })
            .flatten()
            .flatten()
            .collect();
        let mut counts = reward_periods::counters(&tx, &counter_keys, true).await?;
        // What is left of each reward's stock as the segments before took from it.
        let mut stock: HashMap<(i64, i64), Option<i64>> =
            rows.iter().map(|(k, r)| (*k, r.stock)).collect();
        for (s, seg) in segments.iter().enumerate() {
            let Some(customer) = customer_id(s) else {
                continue;
            };
            let mine: Vec<(usize, i64)> = claimed
                .iter()
                .filter(|(cs, _, _)| *cs == s)
                .map(|(_, idx, record)| (*idx, *record))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let states: HashMap<i64, RewardState> = rows
                .iter()
                .filter(|((org, _), _)| *org == seg.org_id)
                .map(|((org, id), r)| {
                    let holding = held.get(&(*org, customer, *id)).copied().unwrap_or(0);
                    let mut state = reward_state(r, holding, customer, &counts, now);
                    state.stock = stock.get(&(*org, *id)).copied().flatten();
                    (*id, state)
                })
                .collect();
            let asks: Vec<ItemAsk> = mine
                .iter()
                .map(|(idx, _)| ItemAsk {
                    reward_id: seg.request.items[*idx].reward_id,
                    quantity: seg.request.items[*idx].quantity,
                })
                .collect();
            for ((idx, record_id), decision) in mine.iter().zip(decide(&asks, &states, now)) {
                let item = &seg.request.items[*idx];
                match decision {
                    Ok(()) => {
                        let reward = (seg.org_id, item.reward_id);
                        *stock_taken.entry(reward).or_default() += item.quantity;
                        if let Some(Some(left)) = stock.get_mut(&reward) {
                            *left -= item.quantity;
                        }
                        let holding = (seg.org_id, customer, item.reward_id);
                        *held.entry(holding).or_default() += item.quantity;
                        let row = rows.get(&reward);
                        let (mine, everyone) = row
                            .map(|r| period_keys(r, customer, now))
                            .unwrap_or_default();
                        // The holding guards a lifetime limit; a period limit is guarded by its
                        // counter instead.
                        let limit = row
                            .and_then(|r| r.per_customer_limit)
                            .filter(|_| mine.is_none());
                        held_taken.entry(holding).or_insert((0, limit)).0 += item.quantity;
                        for (key, limit) in [
                            (mine, row.and_then(|r| r.per_customer_limit)),
                            (everyone, row.and_then(|r| r.period_limit)),
                        ] {
                            if let Some(key) = key {
                                *counts.entry(key).or_default() += item.quantity;
                                period_taken.entry(key).or_insert((0, limit)).0 += item.quantity;
                            }
                        }
                        let Some((id, vouchers, stored)) =
                            drawn[s].get_mut(*idx).and_then(Option::take)
                        else {
                            return Err(AppError::Internal(
                                "an issued item had nothing drawn".into(),
                            )
                            .into());
                        };
                        completed.push((s, stored.clone()));
                        outcomes[s][*idx] = Some(ItemOutcome::Issued(stored));
                        new_issuances.push(NewIssuance {
                            id,
                            org_id: seg.org_id,
                            request_id: item.request_id.to_string(),
                            customer_id: customer,
                            reward_id: item.reward_id,
                            quantity: item.quantity,
                            brand: seg.request.brand.clone(),
                            transaction_number: seg.request.transaction_number.clone(),
                            vouchers,
                            // The counters it is counted in: a cancellation gives back to these.
                            customer_limit_period: mine.map(|k| k.3),
                            period_limit_period: everyone.map(|k| k.3),
                        });
                    }
                    Err(failure) => {
                        released.push(*record_id);
                        outcomes[s][*idx] = Some(ItemOutcome::Failed {
                            failure,
                            mismatched_fields: Vec::new(),
                        });
                    }
                }
            }
        }
    }
    let issued_any = !new_issuances.is_empty();
    // Customers this transaction enrolled for segments that issued nothing are not kept.
    let issuing: std::collections::HashSet<usize> = completed.iter().map(|c| c.0).collect();
    let kept: std::collections::HashSet<Uuid> =
        issuing.iter().filter_map(|s| customer_id(*s)).collect();
    let mut forgotten: Vec<Uuid> = customers_of
        .iter()
        .flatten()
        .filter(|c| c.new && !kept.contains(&c.row.id))
        .map(|c| c.row.id)
        .collect();
    forgotten.sort_unstable();
    forgotten.dedup();
    if issued_any {
        // Both writes keep their conditions; with the rows locked they cannot refuse what the
        // decisions allowed, and if they ever do, nothing is committed.
        let takes: Vec<(i64, i64, i64)> = stock_taken
            .iter()
            .map(|((org, id), q)| (*org, *id, *q))
            .collect();
        if rewards::take_stock_many(&tx, &takes, now).await? != takes.len() as u64 {
            return Err(AppError::Internal("a stock guard refused an issuance".into()).into());
        }
        let holds: Vec<(HoldingKey, i64, Option<i64>)> = held_taken
            .iter()
            .map(|(k, (q, limit))| (*k, *q, *limit))
            .collect();
        if issuances::hold_many(&tx, &holds).await? != holds.len() as u64 {
            return Err(AppError::Internal("a limit guard refused an issuance".into()).into());
        }
        let raises: Vec<(CounterKey, i64, Option<i64>)> = period_taken
            .iter()
            .map(|(k, (q, limit))| (*k, *q, *limit))
            .collect();
        if reward_periods::raise_many(&tx, &raises).await? != raises.len() as u64 {
            return Err(
                AppError::Internal("a period limit guard refused an issuance".into()).into(),
            );
        }
        match issuances::insert_many(&tx, &new_issuances, now).await {
            Err(PersistenceError::UniqueViolation(_)) => return Err(Attempt::VoucherCollision),
            other => other?,
        }
        let mut events: BTreeMap<i64, Vec<persistence::webhooks::NewEvent<'static>>> =
            BTreeMap::new();
        for (s, stored) in &completed {
            let seg = &segments[*s];
            let mut data = stored.clone();
            data["customerId"] = json!(customer_id(*s).map(|c| c.to_string()));
            data["brand"] = json!(seg.request.brand);
            data["transactionNumber"] = json!(seg.request.transaction_number);
            events
                .entry(seg.org_id)
                .or_default()
                .push(crate::engine::webhooks::event("reward.issued", data, now));
        }
        crate::engine::webhooks::emit_grouped(&state.caches, &tx, &events, now).await?;
        idempotency::release_many(&tx, &released).await?;
        customers::forget_enrolled(&tx, &forgotten).await?;
        Db::commit(tx).await?;
    } else {
        // Nothing was issued: roll back, so not even the enrolment of a new customer remains
        // (and the answer names no customer that does not exist).
        drop(tx);
    }
    for (s, seg_outcomes) in outcomes.into_iter().enumerate() {
        if results[s].is_some() {
            continue;
        }
        let customer = customers_of[s].as_ref();
        let exists = customer.is_some_and(|c| !c.new || (issued_any && kept.contains(&c.row.id)));
        results[s] = Some(
            every_item_decided(seg_outcomes).map(|outcomes| IssueResult {
                customer_id: customer.filter(|_| exists).map(|c| c.row.id),
                outcomes,
            }),
        );
    }
    results
        .into_iter()
        .map(|r| {
            r.ok_or_else(|| Attempt::Api(AppError::Internal("a request got no result".into())))
        })
        .collect()
}

/// What each item would get, without writing anything.
pub async fn dry_run(
    state: &AppState,
    org_id: i64,
    req: &IssueRequest,
) -> Result<IssueResult, AppError> {
    let now = state.now();
    let conn = state.db.conn();
    let customer = customers::lookup(conn, org_id, &req.customer).await?;
    if customer.is_none() && matches!(req.customer, CustomerRef::CustomerId(_)) {
        return Err(AppError::not_found("customer"));
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
        Some(c) => {
            let keys: Vec<HoldingKey> = reward_ids.iter().map(|r| (org_id, c.id, *r)).collect();
            issuances::holdings(conn, &keys, false)
                .await?
                .into_iter()
                .map(|((_, _, reward), held)| (reward, held))
                .collect()
        }
        None => HashMap::new(),
    };
    // Someone not enrolled yet has issued nothing in any period: a fresh id has no counters.
    let who = customer.as_ref().map_or_else(Uuid::now_v7, |c| c.id);
    let counter_keys: Vec<CounterKey> = rows
        .iter()
        .flat_map(|r| {
            let (mine, everyone) = period_keys(r, who, now);
            [mine, everyone]
        })
        .flatten()
        .collect();
    let counts = reward_periods::counters(conn, &counter_keys, false).await?;
    let states: HashMap<i64, RewardState> = rows
        .iter()
        .map(|r| {
            let holding = held.get(&r.id).copied().unwrap_or(0);
            (r.id, reward_state(r, holding, who, &counts, now))
        })
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
            Ok(()) => ItemOutcome::Issued(crate::engine::format::to_json(&IssuedItem {
                request_id: item.request_id.to_string(),
                reward_id: item.reward_id,
                quantity: item.quantity,
                issuance_id: None,
                vouchers: Vec::new(),
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
