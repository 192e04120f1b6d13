//! Currency redemption, alone or group-committed.
//!
//! A batch of redemptions is one transaction of a fixed number of statements:
//! 1. one multi-row claim of every key: keys used before are replayed (202) or refused (422);
//! 2. the program from the cache ([`prepare`], shared with the single path): an unknown program
//!    or currency, or an amount with more places than the currency keeps, fails that request
//!    only, and its key is released;
//! 3. one read of every customer (a redemption never enrolls): an unknown one is 404;
//! 4. one locking read of every balance, in account order; the accounts with anything due
//!    (usually none: lots to expire, holds past `expiresAt`, pending points past `maturesAt`)
//!    are settled first, as the single path does (`crate::app::settle`), so no debit spends an
//!    expired lot or misses released or matured points;
//! 5. the debits decided in request order against what is left of each balance (`INSUFFICIENT_
//!    BALANCE` fails that request only, answered once the batch commits, since it counted the
//!    debits before it in the batch), then one read of the lots to spend, one update of the
//!    lots, one of the balances, one insert of the entries, one of the redemptions, one of the
//!    outbox rows, one update storing the outcomes; commit.
//!
//! Lock order is the single path's: keys, then balances (by account), then lots. Failures are
//! handled by `write::batch::run_keyed`: a batch that fails as a whole (a lock held elsewhere
//! past the batch's short lock wait, say) runs its undecided requests alone, except for an
//! unreachable database or an unknown commit (503).
//! One difference from running alone is visible in the books and nowhere else: due lots of an
//! account whose redemption then fails stay expired when other redemptions of the batch commit
//! (the expiry worker would have expired them anyway).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::Decimal;
use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::ledger::{self, Account, Debit};
use persistence::redemptions::{self, NewRedemption};
use persistence::webhooks::NewEvent;
use persistence::{ConnectionTrait, Db, PersistenceError, customers};
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::currency::{Balance, insufficient, spend_meaning};
use crate::app::settle::settle;
use crate::app::write::batch::{KeyedWrite, Slot, claim_and_prepare, store_and_release, submit};
use crate::app::write::{Done, Effect, Outcome, execute};
use crate::engine::format::{amount, ts};
use crate::engine::group_commit::Overlap;
use crate::engine::webhooks::event;

const OPERATION: Operation = Operation::CurrencyRedemption;

/// A checked redemption request, ready to run.
#[derive(Debug, Clone)]
pub struct RedemptionRequest {
    pub org_id: i64,
    pub key: IdempotencyKey,
    pub meaning: RequestMeaning,
    pub customer: CustomerRef,
    pub program_id: i64,
    pub currency: String,
    /// Normalised, more than zero.
    pub amount: Decimal,
    pub reason: Option<String>,
}

impl RedemptionRequest {
    /// The request, with the meaning its key is compared on.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        org_id: i64,
        key: IdempotencyKey,
        customer: CustomerRef,
        program_id: i64,
        currency: String,
        amount: Decimal,
        reason: Option<String>,
    ) -> Self {
        let meaning =
            spend_meaning(program_id, &currency, amount).with("customer", Some(&customer));
        Self {
            org_id,
            key,
            meaning,
            customer,
            program_id,
            currency,
            amount,
            reason,
        }
    }
}

/// Redeems, exactly once per key: a key used before is replayed (or refused), from the replay
/// path while replays are common, else from its batch (see [`submit`]); otherwise the request
/// joins the next group-committed batch, or runs alone when group commit is off.
pub async fn redeem(state: &AppState, request: RedemptionRequest) -> Result<Outcome, AppError> {
    let queue = (&state.redemptions, &state.redemption_replays);
    submit(state, OPERATION, queue, request, async |_| Ok(true)).await
}

/// The currency's scale and the amount in minor units, from the (cached) program. The outer
/// error is the database's; the inner one is this request's definite refusal.
async fn prepare<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    r: &RedemptionRequest,
) -> Result<Result<(i16, i64), AppError>, PersistenceError> {
    crate::app::currency::in_minor_units(
        state,
        conn,
        r.org_id,
        r.program_id,
        &r.currency,
        r.amount,
        "amount",
    )
    .await
}

fn reference(r: &RedemptionRequest) -> String {
    format!("redemption:{}", r.key)
}

fn account(r: &RedemptionRequest, customer_id: Uuid) -> Account {
    crate::app::currency::account(r.org_id, customer_id, r.program_id, &r.currency)
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Redemption, example = json!({
    "redemptionId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c03", "uniqueId": "redeem-1",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "programId": 1, "currency": "POINTS",
    "amount": "25.50", "reason": null, "ledgerEntryId": "3",
    "createdAt": "2026-01-02T00:00:00Z", "balance": {"available": "74.50", "pending": "0.00", "held": "0.00"}
}))]
pub struct RedemptionView {
    pub redemption_id: String,
    pub unique_id: String,
    pub customer_id: String,
    pub program_id: i64,
    pub currency: String,
    pub amount: String,
    pub reason: Option<String>,
    pub ledger_entry_id: String,
    pub created_at: String,
    pub balance: Balance,
}

/// The redemption as the API shows it.
fn redemption_json(
    n: &NewRedemption,
    scale: i16,
    balance: ledger::Totals,
    now: DateTime<Utc>,
) -> Value {
    crate::engine::format::to_json(&RedemptionView {
        redemption_id: n.id.to_string(),
        unique_id: n.unique_id.clone(),
        customer_id: n.customer_id.to_string(),
        program_id: n.program_id,
        currency: n.currency.clone(),
        amount: amount(n.amount, scale),
        reason: n.reason.clone(),
        ledger_entry_id: n.ledger_entry_id.to_string(),
        created_at: ts(now),
        balance: Balance::of(balance, scale),
    })
}

fn new_redemption(
    r: &RedemptionRequest,
    customer_id: Uuid,
    minor: i64,
    entry_id: i64,
) -> NewRedemption {
    NewRedemption {
        id: Uuid::now_v7(),
        org_id: r.org_id,
        unique_id: r.key.to_string(),
        customer_id,
        program_id: r.program_id,
        currency: r.currency.clone(),
        amount: minor,
        reason: r.reason.clone(),
        ledger_entry_id: entry_id,
    }
}

/// Runs one redemption in a transaction of its own (group commit off, or deciding the requests
/// of a batch that failed as a whole).
pub async fn redeem_alone(state: &AppState, r: &RedemptionRequest) -> Result<Outcome, AppError> {
    let now = state.now();
    execute(
        state,
        r.org_id,
        OPERATION,
        Some(&r.key),
        &r.meaning,
        async |tx| {
            let (scale, minor) = prepare(state, tx, r).await??;
            let customer = customers::find(tx, r.org_id, &r.customer)
                .await?
                .ok_or_else(|| AppError::not_found("customer"))?;
            let account = account(r, customer.id);
            if !settle(state, tx, &account, now).await? {
                return Err(insufficient());
            }
            let ledger::Debited { entry, after, .. } = ledger::debit(
                tx,
                &account,
                ledger::EntryKind::Debit,
                minor,
                None,
                Some(&reference(r)),
                now,
            )
            .await?
            .ok_or_else(insufficient)?;
            let row = new_redemption(r, customer.id, minor, entry.id);
            redemptions::insert_many(tx, std::slice::from_ref(&row), now).await?;
            let body = redemption_json(&row, scale, after, now);
            let events = vec![event("currency.redeemed", body.clone(), now)];
            crate::engine::webhooks::emit(&state.caches, tx, r.org_id, events, now).await?;
            Ok(Effect::created(body, row.id))
        },
    )
    .await
}

impl KeyedWrite for RedemptionRequest {
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
        run_batch(state, requests, answers, overlap).await
    }

    async fn alone<'a>(state: &'a AppState, request: &'a Self) -> Result<Outcome, AppError> {
        redeem_alone(state, request).await
    }
}

/// One attempt at a batch (see the module's documentation).
async fn run_batch(
    state: &AppState,
    requests: &[&RedemptionRequest],
    answers: &mut [Slot],
    overlap: &Overlap,
) -> Result<(), PersistenceError> {
    let now = state.now();
    let tx = state.db.begin_batch().await?;
    let (work, mut released) =
        claim_and_prepare(state, &tx, OPERATION, requests, answers, now, |r| {
            prepare(state, &tx, r)
        })
        .await?;
    // (request, record, scale, minor)
    let work: Vec<(usize, i64, i16, i64)> = work
        .into_iter()
        .map(|(i, id, (scale, minor))| (i, id, scale, minor))
        .collect();
    let wanted: Vec<(i64, CustomerRef)> = work
        .iter()
        .map(|(i, ..)| (requests[*i].org_id, requests[*i].customer.clone()))
        .collect();
    let found = customers::find_many(&tx, &wanted).await?;
    let mut ready: Vec<(usize, i64, i16, i64, Uuid)> = Vec::with_capacity(work.len());
    for (i, record, scale, minor) in work {
        let r = requests[i];
        match found.get(&(r.org_id, r.customer.clone())) {
            Some(customer) => ready.push((i, record, scale, minor, customer.id)),
            None => {
                answers[i] = Some(Err(AppError::not_found("customer")));
                released.push(record);
            }
        }
    }
    let accounts: Vec<Account> = ready
        .iter()
        .map(|(i, _, _, _, customer)| account(requests[*i], *customer))
        .collect();
    let mut available = ledger::lock_balances(&tx, &accounts).await?;
    // Settle what has come due first (usually nothing), as the single path does: no debit
    // spends an expired lot, and points released by an expired hold or matured are there.
    let mut events: BTreeMap<i64, Vec<NewEvent<'static>>> = BTreeMap::new();
    let locked: Vec<Account> = accounts
        .iter()
        .filter(|a| available.contains_key(&a.key()))
        .cloned()
        .collect();
    for due in persistence::due::accounts_with_due_work(&tx, &locked, now).await? {
        let settled = crate::app::settle::settle_locked(&tx, &due, now)
            .await
            .map_err(|e| PersistenceError::Other(format!("settling an account: {e}")))?;
        if let (Some(left), Some(after)) = (
            available.get_mut(&due.key()),
            ledger::lock_balance(&tx, &due, false).await?,
        ) {
            *left = after;
        }
        events.entry(due.org_id).or_default().extend(settled);
    }
    let debits: Vec<Debit> = ready
        .iter()
        .zip(&accounts)
        .map(|((i, _, _, minor, _), account)| Debit {
            account: account.clone(),
            amount: *minor,
            reference: reference(requests[*i]),
        })
        .collect();
    let posted = ledger::debit_many(&tx, &debits, &available, now).await?;
    let mut rows: Vec<NewRedemption> = Vec::new();
    let mut outcomes: Vec<(usize, i64, Value, Uuid)> = Vec::new();
    // Requests short of points. Such a refusal may count the debits of the requests before it
    // in the batch, which are not committed yet: it is answered only once they are (or when
    // there are none), never when the batch fails.
    let mut short: Vec<usize> = Vec::new();
    for ((i, record, scale, minor, customer), posted) in ready.into_iter().zip(posted) {
        let r = requests[i];
        match posted {
            Some(p) => {
                let row = new_redemption(r, customer, minor, p.entry_id);
                let body = redemption_json(&row, scale, p.after, now);
                events.entry(r.org_id).or_default().push(event(
                    "currency.redeemed",
                    body.clone(),
                    now,
                ));
                outcomes.push((i, record, body, row.id));
                rows.push(row);
            }
            None => {
                short.push(i);
                released.push(record);
            }
        }
    }
    if rows.is_empty() {
        // Nothing to write: rolling back releases every claim. No debit of the batch counted
        // in the refusals, so they are what each request gets alone.
        for i in short {
            answers[i] = Some(Err(insufficient()));
        }
        return Ok(());
    }
    redemptions::insert_many(&tx, &rows, now).await?;
    crate::engine::webhooks::emit_grouped(&state.caches, &tx, &events, now).await?;
    let stored: Vec<(i64, Value, Option<String>)> = outcomes
        .iter()
        .map(|(_, record, body, id)| (*record, body.clone(), Some(id.to_string())))
        .collect();
    store_and_release(&tx, &stored, &released).await?;
    overlap.locked();
    Db::commit(tx).await?;
    for i in short {
        answers[i] = Some(Err(insufficient()));
    }
    for (i, _, body, _) in outcomes {
        answers[i] = Some(Ok(Outcome::Created(Done::Created, body)));
    }
    Ok(())
}
