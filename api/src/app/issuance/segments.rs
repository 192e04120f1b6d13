//! The transaction of issuance: one or more requests (segments) issued together, keys claimed,
//! items decided and effects written with a handful of set-based statements (the steps of the
//! module documentation of [`super`]).

use std::collections::{BTreeMap, HashMap};

use domain::customer::CustomerRef;
use domain::idempotency::{Operation, RequestMeaning};
use domain::issuance::{ItemAsk, RewardState, decide, voucher_code};
use persistence::idempotency::{self, Claim, KnownOutcome, OrgKey};
use persistence::issuances::{self, HoldingKey, NewIssuance};
use persistence::reward_periods::{self, CounterKey};
use persistence::rewards::{self, RewardRow};
use persistence::{Db, PersistenceError, customers};
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use super::periods::{period_keys, reward_state};
use super::{
    IssueItem, IssueRequest, IssueResult, ItemOutcome, every_item_decided, item_meaning,
    replay_or_mismatch,
};
use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::claim_error;

/// What an item gets if it is issued, drawn before its key is claimed, so that the claim stores
/// the outcome with the key in one write (see [`OrgKey::outcome`]): the issuance id, the
/// voucher codes and the stored answer ([`IssuedItem`]).
fn draw(item: &IssueItem) -> (Uuid, Vec<String>, Value) {
    let mut rng = rand::rng();
    let id = Uuid::now_v7();
    let vouchers: Vec<String> = (0..item.quantity)
        .map(|_| voucher_code(rng.random::<u64>()))
        .collect();
    let stored = item.issued(Some(id), vouchers.clone());
    (id, vouchers, stored)
}

/// An item's issuance id, voucher codes and stored answer (its key's record holds the same
/// answer as text).
type Drawn = (Uuid, Vec<String>, Value);

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
    pub(super) fn into_api(self, req: &IssueRequest) -> AppError {
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

/// The steps of the documentation of [`super`], for every segment at once: customers, keys (in
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
                    outcomes[s][idx] = Some(replay_or_mismatch(
                        &record,
                        &item.request_id,
                        &meanings[s][idx],
                    ))
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
                .map(|(idx, _)| seg.request.items[*idx].ask())
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
