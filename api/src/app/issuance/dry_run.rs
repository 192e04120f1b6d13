//! A dry run of issuance: what each item would get, without writing anything.

use std::collections::HashMap;

use domain::customer::CustomerRef;
use domain::idempotency::Operation;
use domain::issuance::{ItemAsk, RewardState, decide};
use persistence::idempotency::{self, RecordRow};
use persistence::issuances::{self, HoldingKey};
use persistence::reward_periods::{self, CounterKey};
use persistence::{customers, rewards};
use uuid::Uuid;

use super::periods::{period_keys, reward_state};
use super::{
    IssueRequest, IssueResult, ItemOutcome, every_item_decided, item_meaning, replay_or_mismatch,
};
use crate::app::AppError;
use crate::app::AppState;

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
                    &item.request_id,
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
    let asks: Vec<ItemAsk> = candidates.iter().map(|i| req.items[*i].ask()).collect();
    for (idx, decision) in candidates.iter().zip(decide(&asks, &states, now)) {
        let item = &req.items[*idx];
        outcomes[*idx] = Some(match decision {
            Ok(()) => ItemOutcome::Issued(item.issued(None, Vec::new())),
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
