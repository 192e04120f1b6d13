//! Activation of pending allocations: points promised with a `maturesAt` become available,
//! once, whether by `POST …/activate`, by the worker when `maturesAt` passes, or in passing by
//! whatever next takes the account's balance lock (`crate::app::settle`). Every way goes through
//! the write pipeline with the same idempotency key (the allocation's id, operation
//! `allocation-activation`), claimed before it changes anything, so one activates and the others
//! replay or find nothing left to do.

use chrono::{DateTime, Utc};
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::allocations::{self, AllocationRow};
use persistence::ledger;
use persistence::webhooks::NewEvent;
use persistence::{Db, PersistenceError};
use uuid::Uuid;

use crate::app::allocate::{account_of, allocation_json};
use crate::app::programs::expiry_rule;
use crate::app::settle::settle;
use crate::app::write::{self, Effect, Outcome, execute};
use crate::app::{AppError, AppState};
use crate::engine::rounds::{Round, Step};
use crate::engine::webhooks::event;

const OPERATION: Operation = Operation::AllocationActivation;

/// Activates the pending allocation made with `unique` now, once: the call and the worker
/// activate it once between them (whichever comes first), and a later call replays.
pub async fn activate(
    state: &AppState,
    org_id: i64,
    unique: &IdempotencyKey,
) -> Result<Outcome, AppError> {
    let allocation = allocations::get_by_unique_id(state.db.conn(), org_id, unique.as_str())
        .await?
        .ok_or_else(|| AppError::not_found("allocation"))?;
    let key = activation_key(&allocation)?;
    let now = state.now();
    execute(
        state,
        org_id,
        OPERATION,
        Some(&key),
        &RequestMeaning::new(),
        async |tx| {
            settle(state, tx, &account_of(&allocation), now).await?;
            let current = allocations::get(tx, org_id, allocation.id)
                .await?
                .ok_or_else(|| AppError::not_found("allocation"))?;
            let (row, after) = activate_locked(tx, &current, now).await?;
            let body = allocation_json(&row, after);
            let events = vec![event("currency.activated", body.clone(), now)];
            crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, row.id))
        },
    )
    .await
}

/// Makes a pending allocation available: a `CREDIT` lot of what is left of it (reversals of a
/// pending allocation lower it), dated by its expiry strategy from now, and `pending` lowered
/// by as much. The caller holds the account's balance lock and has read `a` under it; `Err`
/// (the request's definite refusal) when `a` is no longer pending.
pub async fn activate_locked(
    tx: &persistence::Tx,
    a: &AllocationRow,
    now: DateTime<Utc>,
) -> Result<(AllocationRow, ledger::Totals), AppError> {
    if !a.is_pending() {
        return Err(AppError::Conflict {
            code: "ALLOCATION_NOT_PENDING",
            detail: format!("The allocation is {}, not PENDING.", a.status),
        });
    }
    let expiry = persistence::catalog::get_expiry_strategy(tx, a.org_id, a.expiry_strategy_id)
        .await?
        .ok_or_else(|| {
            AppError::Internal(format!("allocation {} lost its expiry strategy", a.id))
        })?;
    let expires_at = expiry_rule(&expiry)?.expires_at(now);
    let account = account_of(a);
    let left = a.amount - a.reversed_amount;
    let reference = format!("allocation:{}", a.unique_id);
    let (entry, _) = ledger::credit(
        tx,
        &account,
        ledger::EntryKind::Credit,
        left,
        expires_at,
        Some(&reference),
        now,
    )
    .await?;
    let by = ledger::Totals {
        pending: -left,
        ..Default::default()
    };
    let after = ledger::move_balance(tx, &account, by, now)
        .await?
        .ok_or_else(|| AppError::Internal(format!("pending below allocation {}", a.id)))?;
    if !allocations::activate(tx, a.org_id, a.id, entry.id, expires_at, now).await? {
        return Err(AppError::Internal(format!(
            "allocation {} activated concurrently",
            a.id
        )));
    }
    let row = AllocationRow {
        status: "ACTIVE".into(),
        ledger_entry_id: entry.id,
        expires_at,
        activated_at: Some(now),
        ..a.clone()
    };
    Ok((row, after))
}

/// Activates pending allocation `id` in passing, under its account's balance lock, which the
/// caller holds (see `crate::app::settle`): if it is still pending and has matured at `now`, it is
/// activated and recorded under its activation key exactly as the worker would, and its
/// `currency.activated` event returned. The key is claimed without waiting
/// ([`write::at_once`]): a call activating the same allocation holds the key and
/// waits for this very balance lock, so waiting for it here would be a deadlock; it is left to
/// that call, which activates once this transaction ends. `None` when there is nothing to do.
pub async fn activate_in_passing(
    tx: &persistence::Tx,
    org_id: i64,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<NewEvent<'static>>, AppError> {
    let Some(a) = allocations::get(tx, org_id, id).await? else {
        return Ok(None);
    };
    if !a.is_pending() || a.matures_at.is_some_and(|t| t > now) {
        return Ok(None);
    }
    let key = activation_key(&a)?;
    let activated = write::at_once(
        tx,
        org_id,
        OPERATION,
        &key,
        &RequestMeaning::new(),
        now,
        async |savepoint| {
            let (row, after) = activate_locked(savepoint, &a, now).await?;
            Ok(Effect::created(allocation_json(&row, after), row.id))
        },
    )
    .await?;
    // `None`: activated already, or being activated by a call in flight.
    Ok(activated.map(|body| event("currency.activated", body, now)))
}

/// The key an activation is recorded under: the allocation itself, so that the endpoint and
/// the worker activate it once between them, and a later call replays.
pub fn activation_key(a: &AllocationRow) -> Result<IdempotencyKey, AppError> {
    IdempotencyKey::parse(&a.id.to_string()).map_err(|e| AppError::Internal(e.message))
}

/// Activates the pending allocations whose `maturesAt` has passed, up to `limit` of them,
/// leaving out those of `skip` (failed earlier in the run); returns how many it activated, how
/// many it found busy and which it failed on. Safe on any number of instances: each activation
/// claims the allocation's activation key and takes its balance lock (`SKIP LOCKED`: an
/// account busy elsewhere waits for the next round), and changes the allocation only if it is
/// still pending.
pub async fn activate_due(
    db: &Db,
    now: DateTime<Utc>,
    limit: u64,
    skip: &[Uuid],
) -> Result<Round<Uuid>, PersistenceError> {
    let due = allocations::due_pending(db.conn(), now, limit, skip).await?;
    let one = |a: AllocationRow| async move { activate_one(db, &a, now).await };
    Ok(crate::app::currency::round("activation", due, |a| a.id, one).await)
}

async fn activate_one(db: &Db, a: &AllocationRow, now: DateTime<Utc>) -> Result<Step, AppError> {
    // The lock order of `POST …/activate` (and of every keyed write): the key, then the
    // balance. Taken the other way round, a call and the worker could each hold what the
    // other waits for.
    let key = activation_key(a)?;
    write::in_round(
        db,
        a.org_id,
        OPERATION,
        &key,
        &RequestMeaning::new(),
        now,
        async |tx| {
            // Busy elsewhere: rolling back releases the claim, and the next round looks again.
            if ledger::lock_balance(tx, &account_of(a), true)
                .await?
                .is_none()
            {
                return Ok(Err(Step::Busy));
            }
            let Some(current) = allocations::get(tx, a.org_id, a.id).await? else {
                return Ok(Err(Step::Settled));
            };
            if !current.is_pending() || current.matures_at.is_some_and(|t| t > now) {
                return Ok(Err(Step::Settled));
            }
            let (row, after) = activate_locked(tx, &current, now).await?;
            let body = allocation_json(&row, after);
            let events = vec![event("currency.activated", body.clone(), now)];
            persistence::webhooks::emit(tx, a.org_id, &events, now).await?;
            Ok(Ok(Effect::created(body, row.id)))
        },
    )
    .await
}
