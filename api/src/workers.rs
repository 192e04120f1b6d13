//! Background workers inside `serve`: lot expiry, pending activation, hold expiry, expiry
//! notices and the idempotency retention purge.
//!
//! All are safe with any number of instances running them at once: expiry locks each account's
//! balance row with `SKIP LOCKED` (an account another worker or a request holds is left for the
//! next round) and empties a lot only with a conditional update; the purge deletes rows picked
//! with `SKIP LOCKED`, in small batches, so it never holds up issuance.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use persistence::ledger;
use persistence::{Db, PersistenceError, expiring, idempotency};

use crate::app::AppState;
use crate::engine::rounds::Round;

/// Accounts looked at per expiry round.
pub const EXPIRY_BATCH: u64 = 200;
/// Records deleted per purge statement.
pub const PURGE_BATCH: u64 = 1_000;

/// Expires every lot due at `now` in up to `EXPIRY_BATCH` accounts, leaving out the accounts
/// of `skip` (those that failed earlier in the run); returns the lots expired.
pub async fn expire_once(
    db: &Db,
    now: DateTime<Utc>,
    skip: &[ledger::Account],
) -> Result<Round<ledger::Account>, PersistenceError> {
    let mut round = Round::default();
    for account in ledger::due_accounts(db.conn(), now, EXPIRY_BATCH, skip).await? {
        match expire_account(db, &account, now).await {
            Ok(Some(n)) => round.done += n,
            Ok(None) => round.busy += 1,
            // One account that cannot be expired must not stop the others.
            Err(e) => round.fail("lot_expiry", account, &e),
        }
    }
    Ok(round)
}

/// Expires one account's due lots in its own transaction; `None` when another holds the
/// account.
async fn expire_account(
    db: &Db,
    account: &ledger::Account,
    now: DateTime<Utc>,
) -> Result<Option<usize>, PersistenceError> {
    let tx = db.begin().await?;
    if ledger::lock_balance(&tx, account, true).await?.is_none() {
        return Ok(None);
    }
    let entries = ledger::expire_due(&tx, account, now).await?.entries;
    let events = crate::engine::webhooks::expired_events(account, &entries, now);
    persistence::webhooks::emit(&tx, account.org_id, &events, now).await?;
    Db::commit(tx).await?;
    for e in &entries {
        // Expiry entries are debits: negative amounts.
        crate::engine::metrics::currency(
            "expiry",
            &crate::engine::format::amount(e.amount.saturating_abs(), e.scale),
        );
    }
    Ok(Some(entries.len()))
}

/// Rounds in a row that may find only busy items before a run leaves them to the next run.
const BUSY_ROUNDS: u32 = 50;

/// Failed items a run leaves out of its reads at most; past that, the run ends (its reads would
/// grow too long) and the next run starts over.
const MAX_FAILED: usize = 1_000;

/// Runs `round` until a round finds nothing due. A round that found only items held by
/// another transaction is not the end: two instances skipping each other's locked balances
/// could otherwise both stop with an item still due (each holding the lock for an item the
/// other had already settled when the other came to it). Such rounds are retried after a
/// short pause, up to `BUSY_ROUNDS` in a row; an item busy for longer waits for the next run.
/// Each round is given the items that failed in the run so far, to leave out of its read:
/// items that fail every time, read first, would otherwise fill every round and keep the job
/// from the items behind them.
async fn until_settled<K, F, Fut>(
    job: &'static str,
    mut round: F,
) -> Result<usize, PersistenceError>
where
    K: Clone,
    F: FnMut(Vec<K>) -> Fut,
    Fut: Future<Output = Result<Round<K>, PersistenceError>>,
{
    let (mut total, mut busy_rounds) = (0, 0);
    let mut failed: Vec<K> = Vec::new();
    loop {
        let r = round(failed.clone()).await?;
        total += r.done;
        let moved_on = r.done > 0 || !r.failed.is_empty();
        failed.extend(r.failed);
        if !moved_on && r.busy == 0 {
            return Ok(total);
        }
        if failed.len() >= MAX_FAILED {
            tracing::warn!(
                job,
                failed = failed.len(),
                "a background job failed on too many items; the rest waits for its next run"
            );
            return Ok(total);
        }
        if moved_on {
            busy_rounds = 0;
        } else {
            busy_rounds += 1;
            if busy_rounds > BUSY_ROUNDS {
                return Ok(total);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Expires until nothing is due at `now` (or an error); returns the lots expired.
pub async fn expire_all(db: &Db, now: DateTime<Utc>) -> Result<usize, PersistenceError> {
    until_settled("lot_expiry", |skip: Vec<ledger::Account>| async move {
        expire_once(db, now, &skip).await
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
        crate::http::holds::expire_due_holds(db, now, HOLD_BATCH, &skip).await
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

/// Lots read per notice round.
pub const NOTICE_BATCH: u64 = 200;

/// Writes the `currency.expiring` notice of every lot that expires within `days` of `now` and
/// has none yet, once per lot: lots ahead of `now` by up to `days`, and lots that expired up to
/// `days` before `now` without one (created, or moved into the window, after the previous
/// round and expired before this one), whether the expiry emptied them already or not. Each
/// organisation's notices of a round are written in their own transaction, so one whose
/// notices fail (logged, counted, and left out for the rest of the run) holds back no other;
/// its lots stay unnoticed for the next run. Returns how many it wrote. Safe on any number of
/// instances (see `expiring::claim_notices`).
pub async fn notify_expiring_all(
    db: &Db,
    now: DateTime<Utc>,
    days: u32,
) -> Result<usize, PersistenceError> {
    if days == 0 {
        return Ok(0);
    }
    let window = chrono::Duration::days(i64::from(days));
    let (from, horizon) = (now - window, now + window);
    // The organisations are the items: `done` counts notices, `failed` the organisations.
    let mut run: Round<i64> = Round::default();
    let mut after = None;
    loop {
        let due = expiring::notices_due(db.conn(), from, horizon, after, NOTICE_BATCH).await?;
        let Some(last) = due.last() else {
            return Ok(run.done);
        };
        after = Some((last.expires_at, last.id));
        let mut by_org: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
        for lot in due.iter().filter(|l| !run.failed.contains(&l.org_id)) {
            by_org.entry(lot.org_id).or_default().push(lot.id);
        }
        for (org_id, ids) in by_org {
            match notify_org(db, org_id, &ids, now).await {
                Ok(n) => run.done += n,
                Err(e) => run.fail("expiry_notice", org_id, &e),
            }
        }
        if (due.len() as u64) < NOTICE_BATCH {
            return Ok(run.done);
        }
    }
}

/// Writes the notices of the lots `ids` of one organisation that still owe theirs, in one
/// transaction; returns how many.
async fn notify_org(
    db: &Db,
    org_id: i64,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<usize, PersistenceError> {
    let tx = db.begin().await?;
    let lots = expiring::claim_notices(&tx, org_id, ids, now).await?;
    let events: Vec<_> = lots
        .iter()
        .map(|lot| crate::engine::webhooks::expiring_event(lot, now))
        .collect();
    persistence::webhooks::emit(&tx, org_id, &events, now).await?;
    Db::commit(tx).await?;
    Ok(lots.len())
}

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
