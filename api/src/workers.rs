//! Background workers inside `serve`: lot expiry, pending activation, hold expiry, expiry
//! notices, the idempotency retention purge, and the merging of the liability's sums.
//!
//! All are safe with any number of instances running them at once: expiry locks each account's
//! balance row with `SKIP LOCKED` (an account another worker or a request holds is left for the
//! next round) and empties a lot only with a conditional update; the purge deletes rows picked
//! with `SKIP LOCKED`, in small batches, so it never holds up issuance.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use persistence::ledger;
use persistence::{Db, PersistenceError, idempotency, liability};

use crate::app::AppState;
pub use crate::app::notices::notify_expiring_all;
use crate::engine::rounds::until_settled;

/// Records deleted per purge statement.
pub const PURGE_BATCH: u64 = 1_000;

/// Expires until nothing is due at `now` (or an error); returns the lots expired.
pub async fn expire_all(db: &Db, now: DateTime<Utc>) -> Result<usize, PersistenceError> {
    until_settled("lot_expiry", |skip: Vec<ledger::Account>| async move {
        crate::app::expiry::expire_once(db, now, &skip).await
    })
    .await
}

/// Holds looked at per hold-expiry round.
pub const HOLD_BATCH: u64 = 200;

/// Releases every hold whose `expiresAt` has passed at `now`; returns how many it released.
/// `expire_due_holds` only logs the holds it fails on (it reports no `Round::failed`), so
/// nothing is left out of this job's reads.
pub async fn expire_holds_all(db: &Db, now: DateTime<Utc>) -> Result<usize, PersistenceError> {
    until_settled("hold_expiry", |skip: Vec<uuid::Uuid>| async move {
        crate::app::holds::expire_due_holds(db, now, HOLD_BATCH, &skip).await
    })
    .await
}

/// Allocations looked at per activation round.
pub const ACTIVATION_BATCH: u64 = 200;

/// Makes every pending allocation whose `maturesAt` has passed at `now` available; returns how
/// many it activated.
pub async fn activate_all(db: &Db, now: DateTime<Utc>) -> Result<usize, PersistenceError> {
    until_settled("activation", |skip: Vec<uuid::Uuid>| async move {
        crate::app::activation::activate_due(db, now, ACTIVATION_BATCH, &skip).await
    })
    .await
}

/// Keys of the liability's sums merged per round (a key is an organisation, program,
/// currency, month and kind; every delta of a key is merged at once).
pub const MERGE_KEYS: u64 = 10_000;

/// Forgets every idempotency record created before `cutoff`, batch by batch.
pub async fn purge_all(db: &Db, cutoff: DateTime<Utc>) -> Result<u64, PersistenceError> {
    let mut total = 0;
    loop {
        let n = idempotency::purge_before(db.conn(), cutoff, PURGE_BATCH).await?;
        total += n;
        if n < PURGE_BATCH {
            return Ok(total);
        }
        // Let requests through between batches.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Delivers due webhook events every `interval`, and whenever a delivery ends, until the process
/// ends: each wake starts rounds (each organisation with due events gets its share) while they
/// find work and room, without waiting for their deliveries, so a slow receiver holds up no one
/// else's events.
pub fn spawn_webhooks(state: Arc<AppState>, interval: Duration) {
    tokio::spawn(async move {
        let client = crate::engine::webhooks::client(state.settings.webhooks.allow_private);
        let settings = Arc::new(state.settings.webhooks.clone());
        let rounds = crate::engine::webhook_rounds::Rounds::default();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A tick, or the end of a delivery (its room is free again).
            tokio::select! {
                _ = ticker.tick() => {}
                () = rounds.ended() => {}
            }
            // Keep going while rounds find work and room, so a backlog drains quickly.
            loop {
                match rounds
                    .start(&state.db, &client, &settings, state.now())
                    .await
                {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook delivery round failed; will retry");
                        break;
                    }
                }
            }
        }
    });
}

/// Runs both workers every `interval` until the process ends.
pub fn spawn(state: Arc<AppState>, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match expire_all(&state.db, state.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(lots = n, "expired lots"),
                Err(e) => tracing::warn!(error = %e, "expiry round failed; will retry"),
            }
            match activate_all(&state.db, state.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(allocations = n, "activated matured allocations"),
                Err(e) => tracing::warn!(error = %e, "activation round failed; will retry"),
            }
            match expire_holds_all(&state.db, state.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(holds = n, "released expired holds"),
                Err(e) => tracing::warn!(error = %e, "hold expiry round failed; will retry"),
            }
            if let Some(limiter) = &state.rate_limiter {
                limiter.forget_idle();
            }
            let days = state.settings.expiry_notice_days;
            match notify_expiring_all(&state.db, state.now(), days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(lots = n, "wrote expiry notices"),
                Err(e) => tracing::warn!(error = %e, "expiry notice round failed; will retry"),
            }
            match liability::merge(&state.db, MERGE_KEYS).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(keys = n, "merged the liability's sums"),
                Err(e) => {
                    tracing::warn!(error = %e, "merging the liability's sums failed; will retry")
                }
            }
            if let Some(cutoff) = state.forget_before() {
                match purge_all(&state.db, cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(records = n, "forgot idempotency keys past retention"),
                    Err(e) => tracing::warn!(error = %e, "retention purge failed; will retry"),
                }
            }
        }
    });
}
