//! Allocations group-committed: one attempt at a batch, in one transaction (see the parent
//! module's documentation for the steps and the lock order).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, RequestMeaning};
use persistence::allocations::{self, NewAllocation};
use persistence::ledger::{self, Credit};
use persistence::webhooks::NewEvent;
use persistence::{ConnectionTrait, Db, PersistenceError, customers};
use uuid::Uuid;

use super::{
    AllocationRequest, OPERATION, Prepared, account, allocate_alone, allocation_json,
    allocation_row, allocation_text, new_allocation, prepare, reference,
};
use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::batch::{
    KeyedWrite, KnownOutcome, OrgKey, Slot, claim_and_prepare, store_and_release, used_records,
};
use crate::app::write::{Done, Outcome, Stored, replay_or_refuse, stored_answer};
use crate::engine::group_commit::Overlap;
use crate::engine::webhooks::{event, event_text};

impl KeyedWrite for AllocationRequest {
    fn scope(&self) -> (i64, IdempotencyKey) {
        (self.org_id, self.key.clone())
    }

    fn meaning(&self) -> &RequestMeaning {
        &self.meaning
    }

    fn account(&self) -> Option<(i64, i64, &CustomerRef)> {
        Some((self.org_id, self.program_id, &self.customer))
    }

    async fn run_batch<'a>(
        state: &'a AppState,
        requests: &'a [&'a Self],
        answers: &'a mut [Slot],
        overlap: &'a Overlap,
    ) -> Result<(), PersistenceError> {
        if state.db.conn().get_database_backend() == persistence::DbBackend::Postgres {
            run_batch_pg(state, requests, answers, overlap).await
        } else {
            run_batch(state, requests, answers, overlap).await
        }
    }

    async fn alone<'a>(state: &'a AppState, request: &'a Self) -> Result<Outcome, AppError> {
        allocate_alone(state, request).await
    }
}

/// [`prepare`] for a request of a batch, which never has earn caps: [`allocate`](super::allocate) sends
/// allocations of capped strategies alone (see [`has_caps`]).
async fn prepare_in_batch(
    state: &AppState,
    tx: &persistence::Tx,
    r: &AllocationRequest,
    now: DateTime<Utc>,
) -> Result<Result<Prepared, AppError>, PersistenceError> {
    Ok(prepare(state, tx, r, now).await?.and_then(|p| {
        if p.caps.is_empty() {
            Ok(p)
        } else {
            Err(AppError::Internal(
                "a capped allocation reached a batch".into(),
            ))
        }
    }))
}

/// One attempt at a batch (see the module's documentation). Fills `answers` as they are
/// decided: replays and definite refusals first, the created allocations after the commit.
async fn run_batch(
    state: &AppState,
    requests: &[&AllocationRequest],
    answers: &mut [Slot],
    overlap: &Overlap,
) -> Result<(), PersistenceError> {
    let now = state.now();
    let tx = state.db.begin_batch().await?;
    // (request, its key's record, what the catalog said)
    let (work, mut released) =
        claim_and_prepare(state, &tx, OPERATION, requests, answers, now, |r| {
            prepare_in_batch(state, &tx, r, now)
        })
        .await?;
    if work.is_empty() {
        // Nothing to write: rolling back releases every claim.
        return Ok(());
    }
    let wanted: Vec<(i64, CustomerRef)> = work
        .iter()
        .map(|(i, _, _)| (requests[*i].org_id, requests[*i].customer.clone()))
        .collect();
    let found = customers::find_or_enroll_many(&tx, &wanted, now).await?;
    let mut ready = Vec::with_capacity(work.len());
    for (i, record, p) in work {
        let r = requests[i];
        match found.get(&(r.org_id, r.customer.clone())) {
            Some(customer) => ready.push((i, record, p, customer.row.id)),
            None => {
                answers[i] = Some(Err(AppError::not_found("customer")));
                released.push(record);
            }
        }
    }
    if ready.is_empty() {
        return Ok(());
    }
    let credits: Vec<Credit> = ready
        .iter()
        .map(|(i, _, p, customer_id)| Credit {
            account: account(requests[*i], *customer_id, &p.currency),
            amount: p.minor,
            expires_at: p.expires_at,
            reference: reference(requests[*i]),
        })
        .collect();
    let credited = ledger::credit_many(&tx, &credits, now).await?;
    let rows: Vec<(Uuid, NewAllocation)> = ready
        .iter()
        .zip(&credited)
        .map(|((i, _, p, customer_id), c)| {
            (
                Uuid::now_v7(),
                new_allocation(requests[*i], p, *customer_id, Some(c.entry_id)),
            )
        })
        .collect();
    allocations::insert_many(&tx, &rows, now).await?;
    let mut outcomes = Vec::with_capacity(ready.len());
    let mut events: BTreeMap<i64, Vec<NewEvent<'static>>> = BTreeMap::new();
    for (((i, record, p, _), c), (id, a)) in ready.iter().zip(&credited).zip(rows) {
        let row = allocation_row(id, a, p.scale, now);
        let body = allocation_json(&row, c.after);
        events.entry(requests[*i].org_id).or_default().push(event(
            "currency.allocated",
            body.clone(),
            now,
        ));
        outcomes.push((*i, *record, body, id));
    }
    crate::engine::webhooks::emit_grouped(&state.caches, &tx, &events, now).await?;
    let stored: Vec<(i64, serde_json::Value, Option<String>)> = outcomes
        .iter()
        .map(|(_, record, body, id)| (*record, body.clone(), Some(id.to_string())))
        .collect();
    store_and_release(&tx, &stored, &released).await?;
    overlap.locked();
    Db::commit(tx).await?;
    for (i, _, body, _) in outcomes {
        answers[i] = Some(Ok(Outcome::Created(Done::Created, body)));
    }
    Ok(())
}

/// One attempt at a batch on PostgreSQL, in four round trips whatever its size: `BEGIN`; one
/// statement that looks every key and customer up and locks the balances to credit
/// ([`allocations::open_batch`]); one that writes every key record with its answer, balance,
/// ledger entry and allocation ([`allocations::post_batch`]); `COMMIT`.
///
/// The answers are made before the writes, from the locked balances and the entry ids drawn
/// by the first statement, so each key record is written once, with its answer. The key is
/// not claimed before the effect: the second statement's `INSERT … ON CONFLICT DO NOTHING` on
/// the key's unique index is the arbiter, and waits for a concurrent first use still in
/// flight. When it committed, or when a balance row appeared under the batch, the batch rolls
/// back and is tried again, and the retry replays that key. A request refused by the catalog,
/// or naming an unknown customer, writes nothing. A key used before is replayed from what the
/// first statement read of its record. Rarer cases take a round trip more: a key used before
/// with another payload (its record read to name the fields that differ), new customers
/// (enrolled); a key past the retention
/// is left unanswered, and [`run_keyed`](crate::app::write::batch::run_keyed) runs it alone.
async fn run_batch_pg(
    state: &AppState,
    requests: &[&AllocationRequest],
    answers: &mut [Slot],
    overlap: &Overlap,
) -> Result<(), PersistenceError> {
    use persistence::allocations::{Opening, Posting};
    let now = state.now();
    let tx = state.db.begin_batch().await?;
    // The catalog (cached): a refusal answers the request unless its key was used before.
    let mut prepared = Vec::with_capacity(requests.len());
    for r in requests {
        prepared.push(prepare_in_batch(state, &tx, r, now).await?);
    }
    let openings: Vec<Opening> = requests
        .iter()
        .zip(&prepared)
        .map(|(r, p)| Opening {
            org_id: r.org_id,
            key: r.key.as_str(),
            customer: &r.customer,
            account: p.as_ref().ok().map(|p| (r.program_id, p.currency.as_str())),
        })
        .collect();
    let opened = allocations::open_batch(&tx, OPERATION, &openings).await?;
    // A used key is replayed from what the opening statement read of its record, unless the
    // request means something else: then its whole record is read to name the fields that
    // differ (a round trip more, for that rare case).
    let mut differing: Vec<usize> = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let Some(used) = &opened[i].used else {
            continue;
        };
        if state
            .forget_before()
            .is_some_and(|cutoff| used.created_at < cutoff)
        {
            // Forgotten by the retention: run alone, where the claim decides.
            continue;
        }
        if used.fingerprint == r.meaning.fingerprint(OPERATION) {
            answers[i] = Some(stored_answer(used.id, used.response.as_deref()));
        } else {
            differing.push(i);
        }
    }
    if !differing.is_empty() {
        let keys: Vec<(i64, &str)> = differing
            .iter()
            .map(|&i| (requests[i].org_id, requests[i].key.as_str()))
            .collect();
        let records = used_records(&tx, OPERATION, &keys).await?;
        for i in differing {
            let r = requests[i];
            // Gone meanwhile (forgotten): left unanswered, so run alone.
            if let Some(record) = records.get(&(r.org_id, r.key.as_str().to_owned())) {
                answers[i] = Some(
                    replay_or_refuse(record, OPERATION, &r.key, &r.meaning).map(Outcome::Replayed),
                );
            }
        }
    }
    let mut customer_ids: Vec<Option<Uuid>> = opened.iter().map(|o| o.customer_id).collect();
    let mut credit: Vec<Option<Prepared>> = Vec::with_capacity(requests.len());
    for (i, p) in prepared.into_iter().enumerate() {
        match p {
            // A used key is answered above (or run alone); the catalog's say does not count.
            _ if opened[i].used.is_some() => credit.push(None),
            Ok(p) => credit.push(Some(p)),
            Err(refused) => {
                answers[i] = Some(Err(refused));
                credit.push(None);
            }
        }
    }
    let unknown: Vec<usize> = (0..requests.len())
        .filter(|&i| credit[i].is_some() && customer_ids[i].is_none())
        .collect();
    if !unknown.is_empty() {
        let wanted: Vec<(i64, CustomerRef)> = unknown
            .iter()
            .map(|&i| (requests[i].org_id, requests[i].customer.clone()))
            .collect();
        let found = customers::find_or_enroll_many(&tx, &wanted, now).await?;
        for (&i, w) in unknown.iter().zip(&wanted) {
            match found.get(w) {
                Some(customer) => customer_ids[i] = Some(customer.row.id),
                None => {
                    answers[i] = Some(Err(AppError::not_found("customer")));
                    credit[i] = None;
                }
            }
        }
    }
    // Every lock this batch takes is taken: another batch (with none of these keys and
    // accounts) may run its statements while this one writes and commits.
    overlap.locked();
    // The answers, in request order, each with the balance its credit leaves.
    let mut balances: std::collections::HashMap<ledger::AccountKey, ledger::Totals> =
        std::collections::HashMap::new();
    let mut postings = Vec::with_capacity(requests.len());
    let mut created = Vec::with_capacity(requests.len());
    let mut events: BTreeMap<i64, Vec<NewEvent<'static>>> = BTreeMap::new();
    for (i, p) in credit.iter().enumerate() {
        let (Some(p), Some(customer_id)) = (p, customer_ids[i]) else {
            continue;
        };
        let r = requests[i];
        let entry_id = opened[i]
            .entry_id
            .ok_or_else(|| PersistenceError::Other("no ledger entry id was drawn".into()))?;
        let account = account(r, customer_id, &p.currency);
        let balance = balances
            .entry(account.key())
            .or_insert(opened[i].balance.unwrap_or_default());
        balance.available = balance
            .available
            .checked_add(p.minor)
            .ok_or_else(|| PersistenceError::OutOfRange("a balance of the batch".into()))?;
        let id = Uuid::now_v7();
        let allocation = new_allocation(r, p, customer_id, Some(entry_id));
        // The answer is written as text once: the key's record, the event and the client get
        // that text.
        let body = allocation_text(
            &allocation_row(id, allocation.clone(), p.scale, now),
            *balance,
        );
        events.entry(r.org_id).or_default().push(event_text(
            "currency.allocated",
            body.clone(),
            now,
        ));
        postings.push(Posting {
            key: OrgKey {
                org_id: r.org_id,
                key: r.key.clone(),
                meaning: &r.meaning,
                outcome: Some(KnownOutcome {
                    status_code: 201,
                    response: body.clone(),
                    resource_id: Some(id.to_string()),
                }),
            },
            credit: Credit {
                account,
                amount: p.minor,
                expires_at: p.expires_at,
                reference: reference(r),
            },
            entry_id,
            balance_after: balance.available,
            allocation: (id, allocation),
        });
        created.push((i, body));
    }
    if postings.is_empty() {
        // Nothing to write: rolling back releases the locks.
        return Ok(());
    }
    let posted = allocations::post_batch(&tx, OPERATION, &postings, now).await?;
    if posted.keys_inserted != postings.len() {
        return Err(PersistenceError::Conflict(
            "a key of the batch was first used by another transaction meanwhile".into(),
        ));
    }
    if balances
        .iter()
        .any(|(account, total)| posted.balances.get(account) != Some(total))
    {
        return Err(PersistenceError::Conflict(
            "a balance row of the batch was created by another transaction meanwhile".into(),
        ));
    }
    crate::engine::webhooks::emit_grouped(&state.caches, &tx, &events, now).await?;
    Db::commit(tx).await?;
    for (i, body) in created {
        answers[i] = Some(Ok(Outcome::CreatedText(
            Done::Created,
            Stored::from_text(body),
        )));
    }
    Ok(())
}
