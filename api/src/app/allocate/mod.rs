//! Currency allocation, alone or group-committed.
//!
//! The edge parses a request into an [`AllocationRequest`]; [`allocate`] replays a key used
//! before, or submits the request to the allocation [`Queue`](crate::engine::group_commit::Queue),
//! or runs it alone ([`allocate_alone`]). A batch runs as one transaction of a fixed number of
//! statements, whatever its size. On PostgreSQL that is two statements between `BEGIN` and
//! `COMMIT` (`batch::run_batch_pg`); the generic form, which SQLite runs (`batch::run_batch`),
//! is:
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

use chrono::{DateTime, Utc};
use domain::Decimal;
use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::money::Scale;
use persistence::allocations::{self, AllocationRow, NewAllocation};
use persistence::earn_caps::{self, CapScope, CapWindow};
use persistence::ledger::{self, Account};
use persistence::{ConnectionTrait, PersistenceError, customers};
use uuid::Uuid;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::programs::{award_rule, earn_caps, expiry_rule};
use crate::app::write::batch::submit;
use crate::app::write::{Effect, Outcome, execute};
use crate::engine::format::ts;
use crate::engine::webhooks::event;

mod batch;
mod view;

pub use view::{AllocationView, allocation_json, allocation_text, allocation_view};

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
    /// The request, with the meaning its key is compared on.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        org_id: i64,
        key: IdempotencyKey,
        customer: CustomerRef,
        program_id: i64,
        award_strategy_id: i64,
        expiry_strategy_id: i64,
        source_value: Decimal,
        event_name: Option<String>,
        event_source_id: Option<String>,
        matures_at: Option<DateTime<Utc>>,
    ) -> Self {
        let meaning = RequestMeaning::new()
            .with("programId", Some(program_id))
            .with("awardStrategyId", Some(award_strategy_id))
            .with("expiryStrategyId", Some(expiry_strategy_id))
            .with("sourceValue", Some(source_value))
            .with("customer", Some(&customer))
            .with("eventName", event_name.as_ref())
            .with("eventSourceId", event_source_id.as_ref())
            .with("maturesAt", matures_at.map(ts));
        Self {
            org_id,
            key,
            meaning,
            customer,
            program_id,
            award_strategy_id,
            expiry_strategy_id,
            source_value,
            event_name,
            event_source_id,
            matures_at,
        }
    }

    /// Whether it promises points for later: a `maturesAt` after `now`.
    pub fn is_pending(&self, now: DateTime<Utc>) -> bool {
        self.matures_at.is_some_and(|t| t > now)
    }
}

/// A source value, normalised: zero or more, or 400.
pub fn source_value(value: Decimal) -> Result<Decimal, AppError> {
    let value = value.normalize();
    if value.is_sign_negative() && !value.is_zero() {
        return Err(AppError::validation("sourceValue", "must be zero or more"));
    }
    Ok(value)
}

/// The allocation a `uniqueId` (as the path names it) was made with: 404 for a key that
/// cannot be one.
pub fn allocation_key(raw: &str) -> Result<IdempotencyKey, AppError> {
    IdempotencyKey::parse(raw).map_err(|_| AppError::not_found("allocation"))
}

/// Allocates, exactly once per key: a key used before is replayed (or refused), from the
/// replay path while replays are common, else from its batch (see [`submit`]); otherwise the
/// request joins the next group-committed batch, or runs alone when it writes other rows than a
/// batch does (pending allocations, those under earn caps) or group commit is off.
pub async fn allocate(state: &AppState, request: AllocationRequest) -> Result<Outcome, AppError> {
    let queue = (&state.allocations, &state.allocation_replays);
    submit(state, OPERATION, queue, request, async |r| {
        Ok(!r.is_pending(state.now()) && !has_caps(state, r.org_id, r.award_strategy_id).await?)
    })
    .await
}

/// The allocation made with `unique_id`, with the current balance of its account.
pub async fn get(
    state: &AppState,
    org_id: i64,
    unique_id: &str,
) -> Result<AllocationView, AppError> {
    let row = allocations::get_by_unique_id(state.db.conn(), org_id, unique_id)
        .await?
        .ok_or_else(|| AppError::not_found("allocation"))?;
    let balance = ledger::totals(state.db.conn(), &account_of(&row)).await?;
    Ok(allocation_view(&row, balance))
}

/// The account an allocation credits.
pub fn account_of(a: &AllocationRow) -> Account {
    crate::app::currency::account(a.org_id, a.customer_id, a.program_id, &a.currency)
}

/// The account a request credits, once its customer and currency are known.
fn account(r: &AllocationRequest, customer_id: Uuid, currency: &str) -> Account {
    crate::app::currency::account(r.org_id, customer_id, r.program_id, currency)
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
            let account = account(r, customer.id, &p.currency);
            let p = apply_caps(tx, r, p, &account, now).await?;
            let (credit, balance) = if r.is_pending(now) {
                // Promised, not spendable: counted in `pending` only, no lot, no entry.
                let balance = ledger::upsert_balance(tx, &account, 0, p.minor, now).await?;
                (None, balance)
            } else {
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
                (Some(entry.id), balance)
            };
            let new = (Uuid::now_v7(), new_allocation(r, &p, customer.id, credit));
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
