//! An account's due work, done by whatever takes the account's balance lock.
//!
//! Lots past their expiry, holds past their `expiresAt` and pending points past their
//! `maturesAt` are settled by the background workers, which skip an account another
//! transaction holds (`SKIP LOCKED`) so that they never wait for a request. An account that
//! is always busy would then be skipped round after round. So every path that takes an
//! account's balance lock to change it (a redemption, alone or in a batch; a hold, its
//! capture or void; a transfer; a reversal; an activation) first settles what has come due
//! in that account, exactly as the workers would: the same conditional writes, the same
//! events, the same idempotency record for an activation. An account's own traffic settles it.

use chrono::{DateTime, Utc};
use persistence::ledger::{self, Account};
use persistence::webhooks::NewEvent;

use crate::app::AppError;
use crate::app::AppState;

/// Locks the account's balance and settles what has come due in it (writing the events), so
/// that a debit after it never spends an expired lot nor misses points released or matured.
/// `false` when the account has no balance yet.
pub(crate) async fn settle(
    state: &AppState,
    tx: &persistence::Tx,
    account: &Account,
    now: DateTime<Utc>,
) -> Result<bool, AppError> {
    if ledger::lock_balance(tx, account, false).await?.is_none() {
        return Ok(false);
    }
    let events = settle_locked(tx, account, now).await?;
    crate::engine::webhooks::emit(&state.caches, tx, account.org_id, events, now).await?;
    Ok(true)
}

/// What [`settle`] does once the balance is locked (the caller holds it): expires the due
/// lots, releases the holds past their `expiresAt`, activates the pending allocations past
/// their `maturesAt`, and returns the events to write.
pub(crate) async fn settle_locked(
    tx: &persistence::Tx,
    account: &Account,
    now: DateTime<Utc>,
) -> Result<Vec<NewEvent<'static>>, AppError> {
    let expired = ledger::expire_due(tx, account, now).await?;
    let mut events = crate::engine::webhooks::expired_events(account, &expired.entries, now);
    let due = persistence::due::items_of(tx, account, now).await?;
    for id in due.holds {
        events.extend(crate::app::holds::expire_locked(tx, account.org_id, id, now).await?);
    }
    for id in due.pending {
        events.extend(
            crate::app::activation::activate_in_passing(tx, account.org_id, id, now).await?,
        );
    }
    Ok(events)
}
