//! Notices of points about to expire (`currency.expiring`), written once per lot, one
//! organisation at a time.

use chrono::{DateTime, Utc};
use persistence::{Db, PersistenceError, expiring};

use crate::engine::rounds::Round;

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

