//! Lots: what is spent from them (oldest expiry first, or an allocation's own), held and
//! settled by holds, and expired when their date passes.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

use crate::{PersistenceError, stmt};

use super::*;

/// What [`expire_due`] wrote: one `EXPIRE` entry per lot, and the balance after them (`None`
/// when nothing was due).
#[derive(Debug, Default)]
pub struct Expired {
    pub entries: Vec<EntryRow>,
    pub after: Option<Totals>,
}

/// Expires every lot of the account whose `expires_at` has passed: an `EXPIRE` entry for what
/// was left of it, the lot emptied (what was left kept in its `expired_amount`, so a lot not
/// noticed yet still gets its `currency.expiring` notice), its unheld part taken from
/// `available` and its held part from `held` and from the holds that earmarked it (a hold never
/// keeps points alive past their expiry). The caller holds the balance lock ([`lock_balance`]); the lot's own conditional
/// update makes a second expiry of it impossible.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn expire_due<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    now: DateTime<Utc>,
) -> Result<Expired, PersistenceError> {
    #[derive(Debug, FromQueryResult)]
    struct DueLot {
        id: i64,
        remaining: i64,
        held: i64,
    }
    let lots = DueLot::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT id, remaining, held FROM ledger_entries \
             WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 AND currency = $4 \
             AND remaining > 0 AND expires_at <= $5 ORDER BY expires_at, id{}",
            crate::for_update(conn)
        ),
        account.values([now.into()]),
    ))
    .all(conn)
    .await?;
    let mut expired = Expired::default();
    for lot in lots {
        let emptied = conn
            .execute_raw(stmt(
                conn,
                "UPDATE ledger_entries SET remaining = 0, held = 0, expired_amount = $2 \
                 WHERE id = $1 AND remaining = $2 AND held = $3",
                vec![lot.id.into(), lot.remaining.into(), lot.held.into()],
            ))
            .await?;
        if emptied.rows_affected() != 1 {
            continue;
        }
        if lot.held > 0 {
            crate::holds::expire_lot(conn, lot.id, now).await?;
        }
        let by = Totals {
            available: -(lot.remaining - lot.held),
            pending: 0,
            held: -lot.held,
        };
        let after = move_balance(conn, account, by, now).await?.ok_or_else(|| {
            PersistenceError::Other(format!("balance below lot {} while expiring it", lot.id))
        })?;
        let reference = format!("expiry:{}", lot.id);
        expired.entries.push(
            insert_entry(
                conn,
                account,
                EntryKind::Expire,
                lot.remaining,
                after.available,
                Some(&reference),
                None,
                None,
                now,
            )
            .await?,
        );
        expired.after = Some(after);
    }
    Ok(expired)
}

/// A lot and how much of it an operation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotTake {
    pub lot_id: i64,
    pub take: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Picks (and locks) the spendable part (`remaining − held`) of the account's unexpired lots
/// to cover `amount`: the lots that expire first first, never-expiring lots last. Errors when
/// they do not cover it: the caller checked the balance, so the invariant would be broken.
async fn pick_lots<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<Vec<LotTake>, PersistenceError> {
    #[derive(Debug, FromQueryResult)]
    struct Lot {
        id: i64,
        spendable: i64,
        expires_at: Option<DateTime<Utc>>,
    }
    let lots = Lot::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT id, remaining - held AS spendable, expires_at FROM ledger_entries \
             WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 AND currency = $4 \
             AND remaining > held AND (expires_at IS NULL OR expires_at > $5) \
             ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, id{}",
            crate::for_update(conn)
        ),
        account.values([now.into()]),
    ))
    .all(conn)
    .await?;
    let mut left = amount;
    let mut takes = Vec::new();
    for lot in lots {
        if left == 0 {
            break;
        }
        let take = left.min(lot.spendable);
        takes.push(LotTake {
            lot_id: lot.id,
            take,
            expires_at: lot.expires_at,
        });
        left -= take;
    }
    if left != 0 {
        // The lots do not cover the balance: the invariant is broken. Roll back, loudly.
        return Err(PersistenceError::Other(format!(
            "lots of {}/{}/{} short by {left} minor units",
            account.customer_id, account.program_id, account.currency
        )));
    }
    Ok(takes)
}

/// Applies `takes` to the lots: `remaining` lowered (spent), or `held` raised (earmarked by a
/// hold). Each update keeps its condition, so a wrong pick fails instead of overdrawing.
async fn apply_takes<C: ConnectionTrait>(
    conn: &C,
    takes: &[LotTake],
    earmark: bool,
) -> Result<(), PersistenceError> {
    let sql = if earmark {
        "UPDATE ledger_entries SET held = held + $2 WHERE id = $1 AND remaining - held >= $2"
    } else {
        "UPDATE ledger_entries SET remaining = remaining - $2 WHERE id = $1 AND remaining - held >= $2"
    };
    for t in takes {
        let done = conn
            .execute_raw(stmt(conn, sql, vec![t.lot_id.into(), t.take.into()]))
            .await?;
        if done.rows_affected() != 1 {
            return Err(PersistenceError::Other(format!(
                "lot {} changed under its lock",
                t.lot_id
            )));
        }
    }
    Ok(())
}

/// Takes `amount` out of the account's available balance as a `DEBIT`, `REVERSAL` or
/// `TRANSFER_OUT` entry, spending the lots that expire first (never-expiring lots last).
/// `own_lot` (a reversal's: the lot of the allocation it reverses) is spent before all others,
/// held part included ([`take_own_lot`]), so that what a reversal takes of an allocation
/// always leaves that allocation's lot and never expires with it later. Returns `None`,
/// changing nothing, when the available balance is short; else the entry, the lots it spent
/// and the balance after.
///
/// The caller holds the balance lock and has expired the due lots ([`expire_due`]), so the
/// spendable lots add up to the available balance.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn debit<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    kind: EntryKind,
    amount: i64,
    own_lot: Option<i64>,
    reference: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Debited>, PersistenceError> {
    debug_assert!(matches!(
        kind,
        EntryKind::Debit | EntryKind::Reversal | EntryKind::TransferOut
    ));
    let Some(after) = move_balance(conn, account, minus_available(amount), now).await? else {
        return Ok(None);
    };
    let mut lots = Vec::new();
    if let Some(lot) = own_lot
        && let Some(took) = take_own_lot(conn, account, lot, amount, now).await?
    {
        lots.push(took);
    }
    let rest = amount - lots.iter().map(|l| l.take).sum::<i64>();
    if rest > 0 {
        // The own lot, if any, has nothing spendable left: these are other lots.
        let others = pick_lots(conn, account, rest, now).await?;
        apply_takes(conn, &others, false).await?;
        lots.extend(others);
    }
    let entry = insert_entry(
        conn,
        account,
        kind,
        amount,
        after.available,
        reference,
        None,
        None,
        now,
    )
    .await?;
    Ok(Some(Debited { entry, lots, after }))
}

/// Spends up to `amount` of lot `lot_id` (unexpired, of `account`), its held part included:
/// the unheld part first, then, for what is still wanted, the part holds earmark. The holds
/// keep what they hold: their earmarks on this lot move to the spendable parts of the other
/// lots (soonest-expiring first), so `held` stays and `available` pays, as for any debit.
/// `None` when the lot has nothing left. The caller holds the balance lock and has already
/// taken `amount` from `available` (which covers it, so the other lots cover the earmarks).
async fn take_own_lot<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    lot_id: i64,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<Option<LotTake>, PersistenceError> {
    #[derive(Debug, FromQueryResult)]
    struct Lot {
        remaining: i64,
        held: i64,
        expires_at: Option<DateTime<Utc>>,
    }
    let Some(lot) = Lot::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT remaining, held, expires_at FROM ledger_entries \
             WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 AND currency = $4 \
             AND id = $5 AND remaining > 0 AND (expires_at IS NULL OR expires_at > $6){}",
            crate::for_update(conn)
        ),
        account.values([lot_id.into(), now.into()]),
    ))
    .one(conn)
    .await?
    else {
        return Ok(None);
    };
    let take = amount.min(lot.remaining);
    // What of the take is earmarked by holds: it moves to other lots before it is spent.
    let moved = take - take.min(lot.remaining - lot.held);
    let done = conn
        .execute_raw(stmt(
            conn,
            "UPDATE ledger_entries SET remaining = remaining - $2, held = held - $3 \
             WHERE id = $1 AND remaining >= $2 AND held >= $3",
            vec![lot_id.into(), take.into(), moved.into()],
        ))
        .await?;
    if done.rows_affected() != 1 {
        return Err(PersistenceError::Other(format!(
            "lot {lot_id} changed under its lock"
        )));
    }
    if moved > 0 {
        let instead = pick_lots(conn, account, moved, now).await?;
        apply_takes(conn, &instead, true).await?;
        crate::holds::move_earmarks(conn, lot_id, &instead).await?;
    }
    Ok(Some(LotTake {
        lot_id,
        take,
        expires_at: lot.expires_at,
    }))
}

/// What [`debit`] wrote.
#[derive(Debug, Clone)]
pub struct Debited {
    pub entry: EntryRow,
    /// The lots spent, soonest-expiring first (a transfer gives the recipient the same dates).
    pub lots: Vec<LotTake>,
    pub after: Totals,
}

/// Moves `amount` from available to held for hold `hold_id`: the spendable lots that expire
/// first are earmarked for it (`hold_lots`), and a `HOLD` entry is written. `None`, changing
/// nothing, when the available balance is short. The caller holds the balance lock and has
/// expired the due lots.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn hold<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    hold_id: Uuid,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<Option<(EntryRow, Totals)>, PersistenceError> {
    let by = Totals {
        available: -amount,
        pending: 0,
        held: amount,
    };
    let Some(after) = move_balance(conn, account, by, now).await? else {
        return Ok(None);
    };
    let lots = pick_lots(conn, account, amount, now).await?;
    apply_takes(conn, &lots, true).await?;
    crate::holds::insert_lots(conn, hold_id, &lots).await?;
    let reference = format!("hold:{hold_id}");
    let entry = insert_entry(
        conn,
        account,
        EntryKind::Hold,
        amount,
        after.available,
        Some(&reference),
        None,
        None,
        now,
    )
    .await?;
    Ok(Some((entry, after)))
}

/// What settling a hold wrote.
#[derive(Debug, Clone)]
pub struct SettledHold {
    /// The `DEBIT` of what was captured (none for a void or a capture of nothing).
    pub captured: Option<EntryRow>,
    /// The `RELEASE` of what went back to available (none when nothing did).
    pub released: Option<EntryRow>,
    pub released_amount: i64,
    pub after: Totals,
}

/// Settles hold `hold_id`, which still earmarks `held`: spends `capture` of it from its lots
/// (soonest-expiring first) and gives the rest back to available; `capture` 0 is a void or an
/// expiry. The caller holds the balance lock, has expired the due lots, and has checked that
/// the hold is active and `capture <= held`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn settle_hold<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    hold_id: Uuid,
    held: i64,
    capture: i64,
    now: DateTime<Utc>,
) -> Result<SettledHold, PersistenceError> {
    debug_assert!((0..=held).contains(&capture));
    let earmarks = crate::holds::take_lots(conn, hold_id).await?;
    let earmarked: i64 = earmarks.iter().map(|l| l.take).sum();
    if earmarked != held {
        return Err(PersistenceError::Other(format!(
            "hold {hold_id} earmarks {earmarked} but holds {held}"
        )));
    }
    let mut left = capture;
    for lot in &earmarks {
        let spend = left.min(lot.take);
        left -= spend;
        let done = conn
            .execute_raw(stmt(
                conn,
                "UPDATE ledger_entries SET held = held - $2, remaining = remaining - $3 \
                 WHERE id = $1 AND held >= $2 AND remaining >= $3",
                vec![lot.lot_id.into(), lot.take.into(), spend.into()],
            ))
            .await?;
        if done.rows_affected() != 1 {
            return Err(PersistenceError::Other(format!(
                "lot {} changed under its lock",
                lot.lot_id
            )));
        }
    }
    let released_amount = held - capture;
    let by = Totals {
        available: released_amount,
        pending: 0,
        held: -held,
    };
    let after = move_balance(conn, account, by, now)
        .await?
        .ok_or_else(|| PersistenceError::Other(format!("held below hold {hold_id}")))?;
    // The entries tell the story in order: the capture left held, the rest came back.
    let available_before_release = after.available - released_amount;
    let captured = if capture > 0 {
        let reference = format!("capture:{hold_id}");
        Some(
            insert_entry(
                conn,
                account,
                EntryKind::Debit,
                capture,
                available_before_release,
                Some(&reference),
                None,
                None,
                now,
            )
            .await?,
        )
    } else {
        None
    };
    let released = if released_amount > 0 {
        let reference = format!("release:{hold_id}");
        Some(
            insert_entry(
                conn,
                account,
                EntryKind::Release,
                released_amount,
                after.available,
                Some(&reference),
                None,
                None,
                now,
            )
            .await?,
        )
    } else {
        None
    };
    Ok(SettledHold {
        captured,
        released,
        released_amount,
        after,
    })
}

/// Accounts with at least one lot due to expire at `now`, at most `limit` of them, leaving out
/// those of `skip`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn due_accounts<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
    skip: &[Account],
) -> Result<Vec<Account>, PersistenceError> {
    let (tuples, mut values) = account_tuples(skip, 3);
    values.splice(0..0, [now.into(), crate::limit_value(limit)]);
    let not_skipped = if skip.is_empty() {
        String::new()
    } else {
        format!(" AND (org_id, customer_id, program_id, currency) NOT IN (VALUES {tuples})")
    };
    Ok(Account::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT org_id, customer_id, program_id, currency FROM ledger_entries \
             WHERE remaining > 0 AND expires_at <= $1{not_skipped} \
             GROUP BY org_id, customer_id, program_id, currency ORDER BY MIN(expires_at) LIMIT $2"
        ),
        values,
    ))
    .all(conn)
    .await?)
}

/// How much of lot `lot_id` has expired (its `EXPIRE` entries), in minor units.
pub async fn expired_from_lot<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    lot_id: i64,
) -> Result<i64, PersistenceError> {
    #[derive(Debug, FromQueryResult)]
    struct Sum {
        total: i64,
    }
    Ok(Sum::find_by_statement(stmt(
        conn,
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS total FROM ledger_entries \
         WHERE org_id = $1 AND customer_id = $2 AND kind = 'EXPIRE' AND reference = $3",
        vec![
            account.org_id.into(),
            account.customer_id.into(),
            format!("expiry:{lot_id}").into(),
        ],
    ))
    .one(conn)
    .await?
    .map_or(0, |s| s.total))
}
