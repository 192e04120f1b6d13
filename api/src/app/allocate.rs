//! Currency allocation, alone or group-committed.
//!
//! The handler (`routes::allocations::create`) parses a request into an [`AllocationRequest`]
//! and submits it to the allocation [`Queue`](crate::engine::group_commit::Queue). A batch runs as one
//! transaction of a fixed number of statements, whatever its size. On PostgreSQL that is two
//! statements between `BEGIN` and `COMMIT` ([`run_batch_pg`]); the generic form, which SQLite
//! runs ([`run_batch`]), is:
//! 1. one multi-row claim of every key (`idempotency::claim_keys`): keys used before are
//!    replayed (202) or refused (422) exactly as alone;
//! 2. the catalog from the in-process cache ([`prepare`], the same function the single path
//!    uses): an unknown program or strategy, or an award that cannot be computed, fails that
//!    request only, and its key is released in the same transaction;
//! 3. one statement enrolling or finding every customer; an unknown `customerId` fails that
//!    request only;
//! 4. one upsert of every balance touched, one insert of the ledger entries, one of the
//!    allocations, one of the outbox rows, one update storing every outcome on its key; commit.
//!
//! Lock order is the single path's: keys (by organisation and key), customers (by identifier),
//! balances (by account). A failure that cannot be pinned on one request (a lock held elsewhere
//! past the batch's short lock wait, a balance that would pass the largest `BIGINT`, an
//! unexpected database error) rolls the batch back and runs each of its undecided requests
//! alone, off the writer, so each gets exactly its own answer. A deadlock or serialization
//! failure retries the batch. An unreachable database or an unknown commit outcome answers 503
//! to every request whose answer was not already decided; their retries find out.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::Decimal;
use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::money::Scale;
use persistence::allocations::{self, AllocationRow, NewAllocation};
use persistence::earn_caps::{self, CapScope, CapWindow};
use persistence::idempotency;
use persistence::ledger::{self, Account, Credit};
use persistence::webhooks::NewEvent;
use persistence::{ConnectionTrait, Db, PersistenceError, customers};
use uuid::Uuid;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::batch::{KeyedWrite, Slot, claim_and_prepare, run_keyed};
use crate::app::write::{Effect, Outcome, execute};
use crate::engine::group_commit::{Batch, Job};
use crate::engine::webhooks::{event, event_text};
use crate::http::allocations::{allocation_json, allocation_text};
use crate::http::programs::{award_rule, earn_caps, expiry_rule};

const OPERATION: Operation = Operation::CurrencyAllocation;

/// A checked allocation request, ready to run.
#[derive(Debug, Clone)]
pub struct AllocationRequest {
    pub org_id: i64,
    pub key: IdempotencyKey,
    /// What the key is compared on when it comes again.
    pub meaning: RequestMeaning,
    pub customer: CustomerRef,
    pub program_id: i64,
    pub award_strategy_id: i64,
    pub expiry_strategy_id: i64,
    /// Normalised, never negative.
    pub source_value: Decimal,
    pub event_name: Option<String>,
    pub event_source_id: Option<String>,
    /// When the points become spendable; `None` (or a time not after now) means at once.
    pub matures_at: Option<DateTime<Utc>>,
}

impl AllocationRequest {
    /// Whether it promises points for later: a `maturesAt` after `now`.
    pub fn is_pending(&self, now: DateTime<Utc>) -> bool {
        self.matures_at.is_some_and(|t| t > now)
    }
}

/// What the catalog says of a request: the currency, the amount and the expiry, and the earn
/// caps that apply now.
struct Prepared {
    currency: String,
    scale: i16,
    minor: i64,
    expires_at: Option<DateTime<Utc>>,
    caps: Vec<CapWindow>,
    /// What the award would have been, once a cap lowered `minor`.
    uncapped: Option<i64>,
}

/// Looks the request's catalog up (cached) and computes the award. The outer error is the
/// database's; the inner one is this request's definite refusal.
async fn prepare<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    r: &AllocationRequest,
    now: DateTime<Utc>,
) -> Result<Result<Prepared, AppError>, PersistenceError> {
    let caches = &state.caches;
    let Some(program) = caches.program(conn, r.org_id, r.program_id).await? else {
        return Ok(Err(AppError::not_found("program")));
    };
    let Some(award) = caches
        .award_strategy(conn, r.org_id, r.award_strategy_id)
        .await?
        .filter(|s| s.program_id == program.row.id)
    else {
        return Ok(Err(AppError::not_found("award strategy")));
    };
    let Some(expiry) = caches
        .expiry_strategy(conn, r.org_id, r.expiry_strategy_id)
        .await?
        .filter(|s| s.program_id == program.row.id)
    else {
        return Ok(Err(AppError::not_found("expiry strategy")));
    };
    Ok(compute(r, &program.currencies, &award, &expiry, now))
}

fn compute(
    r: &AllocationRequest,
    currencies: &[persistence::catalog::CurrencyRow],
    award: &persistence::catalog::AwardStrategyRow,
    expiry: &persistence::catalog::ExpiryStrategyRow,
    now: DateTime<Utc>,
) -> Result<Prepared, AppError> {
    let currency = currencies
        .iter()
        .find(|c| c.code == award.currency)
        .ok_or_else(|| {
            AppError::Internal(format!(
                "award strategy {} names a missing currency",
                award.id
            ))
        })?;
    let scale = Scale::new(i64::from(currency.scale))
        .map_err(|_| AppError::Internal(format!("currency {} has a bad scale", currency.code)))?;
    let awarded = award_rule(award)?
        .award(r.source_value, scale)
        .map_err(|e| AppError::not_representable("sourceValue", &e.message))?;
    let minor = scale.to_minor(awarded).map_err(|e| {
        AppError::not_representable("sourceValue", &format!("gives an award that {}", e.message))
    })?;
    let caps = cap_windows(award, currency.scale, now)?;
    Ok(Prepared {
        currency: award.currency.clone(),
        scale: currency.scale,
        minor,
        expires_at: expiry_rule(expiry)?.expires_at(now),
        caps,
        uncapped: None,
    })
}

/// The earn cap windows an allocation of `award` made at `at` counted in (a reversal gives
/// back to the same ones).
pub fn cap_windows(
    award: &persistence::catalog::AwardStrategyRow,
    scale: i16,
    at: DateTime<Utc>,
) -> Result<Vec<CapWindow>, AppError> {
    let scale = Scale::new(i64::from(scale)).map_err(|e| AppError::Internal(e.message))?;
    earn_caps(award)?
        .into_iter()
        .map(|c| {
            Ok(CapWindow {
                period: c.period.as_str(),
                start: c.period.start(at),
                max: c
                    .max_minor(scale)
                    .map_err(|e| AppError::Internal(e.message))?,
            })
        })
        .collect()
}

/// Whether allocations of this strategy count against earn caps; those run alone, not in a
/// group-commit batch (their counters are read and raised under the balance lock).
pub async fn has_caps(
    state: &AppState,
    org_id: i64,
    award_strategy_id: i64,
) -> Result<bool, PersistenceError> {
    Ok(state
        .caches
        .award_strategy(state.db.conn(), org_id, award_strategy_id)
        .await?
        .is_some_and(|s| s.caps.is_some()))
}

/// Applies the earn caps to a prepared award: locks the account's balance (the lock every
/// allocation and reversal of the account takes first), then takes what the caps still allow
/// from their counters. The award is lowered to that, and remembers what it would have been.
async fn apply_caps(
    tx: &persistence::Tx,
    r: &AllocationRequest,
    p: Prepared,
    account: &Account,
    now: DateTime<Utc>,
) -> Result<Prepared, PersistenceError> {
    if p.caps.is_empty() {
        return Ok(p);
    }
    ledger::upsert_balance(tx, account, 0, 0, now).await?;
    let scope = CapScope {
        org_id: r.org_id,
        award_strategy_id: r.award_strategy_id,
        customer_id: account.customer_id,
    };
    let granted = earn_caps::take(tx, scope, &p.caps, p.minor).await?;
    Ok(Prepared {
        uncapped: (granted < p.minor).then_some(p.minor),
        minor: granted,
        ..p
    })
}

fn reference(r: &AllocationRequest) -> String {
    format!("allocation:{}", r.key)
}

fn new_allocation(
    r: &AllocationRequest,
    p: &Prepared,
    customer_id: Uuid,
    credit: Option<i64>,
) -> NewAllocation {
    // A pending allocation (no credit yet) is dated when it is activated.
    let pending = credit.is_none();
    NewAllocation {
        org_id: r.org_id,
        unique_id: r.key.to_string(),
        customer_id,
        program_id: r.program_id,
        currency: p.currency.clone(),
        amount: p.minor,
        source_value: r.source_value.to_string(),
        award_strategy_id: r.award_strategy_id,
        expiry_strategy_id: r.expiry_strategy_id,
        event_name: r.event_name.clone(),
        event_source_id: r.event_source_id.clone(),
        ledger_entry_id: credit.unwrap_or(PENDING_ENTRY),
        expires_at: if pending { None } else { p.expires_at },
        matures_at: if pending { r.matures_at } else { None },
        uncapped_amount: p.uncapped,
    }
}

/// The `ledger_entry_id` of an allocation that has no credit yet (pending).
pub const PENDING_ENTRY: i64 = 0;

/// The allocation just recorded, as `allocations::get_by_unique_id` would read it.
fn allocation_row(id: Uuid, a: NewAllocation, scale: i16, now: DateTime<Utc>) -> AllocationRow {
    let status = a.status().to_owned();
    AllocationRow {
        id,
        org_id: a.org_id,
        unique_id: a.unique_id,
        customer_id: a.customer_id,
        program_id: a.program_id,
        currency: a.currency,
        amount: a.amount,
        source_value: a.source_value,
        award_strategy_id: a.award_strategy_id,
        expiry_strategy_id: a.expiry_strategy_id,
        event_name: a.event_name,
        event_source_id: a.event_source_id,
        ledger_entry_id: a.ledger_entry_id,
        expires_at: a.expires_at,
        created_at: now,
        reversed_at: None,
        reversal_entry_id: None,
        status,
        matures_at: a.matures_at,
        activated_at: None,
        reversed_amount: 0,
        capped: a.uncapped_amount.is_some(),
        uncapped_amount: a.uncapped_amount,
        scale,
    }
}

/// Runs one allocation in a transaction of its own (group commit off, or deciding the
/// requests of a batch that failed as a whole).
pub async fn allocate_alone(state: &AppState, r: &AllocationRequest) -> Result<Outcome, AppError> {
    let now = state.now();
    execute(
        state,
        r.org_id,
        OPERATION,
        Some(&r.key),
        &r.meaning,
        async |tx| {
            let p = prepare(state, tx, r, now).await??;
            let customer = customers::find_or_enroll(tx, r.org_id, &r.customer, now)
                .await?
                .ok_or_else(|| AppError::not_found("customer"))?
                .row;
            let account = Account {
                org_id: r.org_id,
                customer_id: customer.id,
                program_id: r.program_id,
                currency: p.currency.clone(),
            };
            let p = apply_caps(tx, r, p, &account, now).await?;
            if r.is_pending(now) {
                // Promised, not spendable: counted in `pending` only, no lot, no entry.
                let balance = ledger::upsert_balance(tx, &account, 0, p.minor, now).await?;
                let new = (Uuid::now_v7(), new_allocation(r, &p, customer.id, None));
                allocations::insert_many(tx, std::slice::from_ref(&new), now).await?;
                let row = allocation_row(new.0, new.1, p.scale, now);
                let body = allocation_json(&row, balance);
                let events = vec![event("currency.allocated", body.clone(), now)];
                crate::engine::webhooks::emit(&state.caches, tx, r.org_id, events, now).await?;
                return Ok(Effect::created(body, row.id));
            }
            let (entry, balance) = ledger::credit(
                tx,
                &account,
                ledger::EntryKind::Credit,
                p.minor,
                p.expires_at,
                Some(&reference(r)),
                now,
            )
            .await?;
            let new = (
                Uuid::now_v7(),
                new_allocation(r, &p, customer.id, Some(entry.id)),
            );
            allocations::insert_many(tx, std::slice::from_ref(&new), now).await?;
            let row = allocation_row(new.0, new.1, p.scale, now);
            let body = allocation_json(&row, balance);
            let events = vec![event("currency.allocated", body.clone(), now)];
            crate::engine::webhooks::emit(&state.caches, tx, r.org_id, events, now).await?;
            Ok(Effect::created(body, row.id))
        },
    )
    .await
}

impl Batch for AllocationRequest {
    type Context = AppState;
    type Error = AppError;
    type Answer = Outcome;

    async fn run(state: Arc<AppState>, jobs: Vec<Job<Self>>) -> Vec<Job<Self>> {
        run_keyed(state, jobs).await
    }
}

impl KeyedWrite for AllocationRequest {
    fn scope(&self) -> (i64, IdempotencyKey) {
        (self.org_id, self.key.clone())
    }

    fn meaning(&self) -> &RequestMeaning {
        &self.meaning
    }

    async fn run_batch<'a>(
        state: &'a AppState,
        requests: &'a [&'a Self],
        answers: &'a mut [Slot],
    ) -> Result<(), PersistenceError> {
        if state.db.conn().get_database_backend() == persistence::DbBackend::Postgres {
            run_batch_pg(state, requests, answers).await
        } else {
            run_batch(state, requests, answers).await
        }
    }

    async fn alone<'a>(state: &'a AppState, request: &'a Self) -> Result<Outcome, AppError> {
        allocate_alone(state, request).await
    }
}

/// [`prepare`] for a request of a batch, which never has earn caps: the handler sends
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
            account: Account {
                org_id: requests[*i].org_id,
                customer_id: *customer_id,
                program_id: requests[*i].program_id,
                currency: p.currency.clone(),
            },
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
    idempotency::complete_many(&tx, 201, &stored).await?;
    idempotency::release_many(&tx, &released).await?;
    Db::commit(tx).await?;
    for (i, _, body, _) in outcomes {
        answers[i] = Some(Ok(Outcome::Created(crate::app::write::Done::Created, body)));
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
/// or naming an unknown customer, writes nothing. Rarer cases take a round trip more: keys
/// used before (read for their replay), new customers (enrolled); a key past the retention
/// is left unanswered, and [`run_keyed`](crate::engine::group_commit::run_keyed) runs it alone.
async fn run_batch_pg(
    state: &AppState,
    requests: &[&AllocationRequest],
    answers: &mut [Slot],
) -> Result<(), PersistenceError> {
    use persistence::allocations::{Opening, Posting};
    use persistence::idempotency::{KnownOutcome, OrgKey};
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
    let used: Vec<(i64, Operation, &str)> = requests
        .iter()
        .zip(&opened)
        .filter(|(_, o)| o.existing)
        .map(|(r, _)| (r.org_id, OPERATION, r.key.as_str()))
        .collect();
    if !used.is_empty() {
        let records: std::collections::HashMap<(i64, String), idempotency::RecordRow> =
            idempotency::get_keys(&tx, &used)
                .await?
                .into_iter()
                .map(|r| ((r.org_id, r.key.clone()), r))
                .collect();
        for (i, r) in requests.iter().enumerate() {
            let Some(record) = records.get(&(r.org_id, r.key.as_str().to_owned())) else {
                // Not a used key, or forgotten meanwhile (then run alone).
                continue;
            };
            if !opened[i].existing
                || state
                    .forget_before()
                    .is_some_and(|cutoff| record.created_at < cutoff)
            {
                continue;
            }
            answers[i] = Some(
                crate::app::write::replay_or_refuse(record, OPERATION, &r.key, &r.meaning)
                    .map(Outcome::Replayed),
            );
        }
    }
    let mut customer_ids: Vec<Option<Uuid>> = opened.iter().map(|o| o.customer_id).collect();
    let mut credit: Vec<Option<Prepared>> = Vec::with_capacity(requests.len());
    for (i, p) in prepared.into_iter().enumerate() {
        match p {
            // A used key is answered above (or run alone); the catalog's say does not count.
            _ if opened[i].existing => credit.push(None),
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
        let account = Account {
            org_id: r.org_id,
            customer_id,
            program_id: r.program_id,
            currency: p.currency.clone(),
        };
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
            crate::app::write::Done::Created,
            crate::app::write::Stored::from_text(body),
        )));
    }
    Ok(())
}
