//! Expiry of points whose date has passed, account by account: each account's due lots are
//! emptied in a transaction of its own, under its balance lock taken without waiting, with the
//! `currency.expired` events of what they held.

use chrono::{DateTime, Utc};
use persistence::ledger;
use persistence::{Db, PersistenceError};

use crate::engine::rounds::Round;

/// Accounts looked at per expiry round.
pub const EXPIRY_BATCH: u64 = 200;
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

