//! The ledger: append-only entries, lots (credits with `remaining`), and balances.
//!
//! Invariant kept by every write here, in one transaction: `available + held` of a balance
//! equals the sum of its ledger entries (credits and transfers in, minus debits, expiries,
//! reversals and transfers out; `HOLD` and `RELEASE` entries move between available and held
//! and count for nothing) and the sum of `remaining` over its unexpired lots. `held` is the sum
//! of the lots' `held` parts, earmarked by active holds. `pending` is outside both.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::lock_order::Locks;
use crate::{Keyset, Page, PersistenceError, stmt, values_rows};

/// The direction of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Credit,
    Debit,
    Expire,
    Reversal,
    TransferIn,
    TransferOut,
    /// Available → held (a hold placed). Moves nothing out of the account.
    Hold,
    /// Held → available (a hold voided, expired, or captured for less than it held).
    Release,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Credit => "CREDIT",
            EntryKind::Debit => "DEBIT",
            EntryKind::Expire => "EXPIRE",
            EntryKind::Reversal => "REVERSAL",
            EntryKind::TransferIn => "TRANSFER_IN",
            EntryKind::TransferOut => "TRANSFER_OUT",
            EntryKind::Hold => "HOLD",
            EntryKind::Release => "RELEASE",
        }
    }
}

/// An account's balance: `available` to spend, `held` by holds (together they are the remaining
/// of the unexpired lots), and `pending` allocations not yet matured (outside both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromQueryResult)]
pub struct Totals {
    pub available: i64,
    pub pending: i64,
    pub held: i64,
}

/// Whose balance, in which program and currency.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct Account {
    pub org_id: i64,
    pub customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct EntryRow {
    pub id: i64,
    pub program_id: i64,
    pub currency: String,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub reference: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The currency's scale, joined in so the entry can be shown as a decimal.
    pub scale: i16,
}

/// Credits `amount_minor` as a new lot expiring at `expires_at` (a `CREDIT`, or a
/// `TRANSFER_IN` keeping the sender's expiry), in one statement for the balance (an upsert that
/// adds) and one for the entry. Returns the entry and the balance after it.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn credit<C: ConnectionTrait + Locks>(
    conn: &C,
    account: &Account,
    kind: EntryKind,
    amount_minor: i64,
    expires_at: Option<DateTime<Utc>>,
    reference: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(EntryRow, Totals), PersistenceError> {
    debug_assert!(matches!(kind, EntryKind::Credit | EntryKind::TransferIn));
    let totals = upsert_balance(conn, account, amount_minor, 0, now).await?;
    let entry = insert_entry(
        conn,
        account,
        kind,
        amount_minor,
        totals.available,
        reference,
        Some(amount_minor),
        expires_at,
        now,
    )
    .await?;
    Ok((entry, totals))
}

/// Adds to an account's available and pending amounts, creating its balance row if it has
/// none. Returns the balance after.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn upsert_balance<C: ConnectionTrait + Locks>(
    conn: &C,
    account: &Account,
    available: i64,
    pending: i64,
    now: DateTime<Utc>,
) -> Result<Totals, PersistenceError> {
    if let Some(order) = conn.lock_order() {
        order.balances([account], true)?;
    }
    Totals::find_by_statement(stmt(
        conn,
        "INSERT INTO balances (org_id, customer_id, program_id, currency, available, pending, held, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7) \
         ON CONFLICT (org_id, customer_id, program_id, currency) \
         DO UPDATE SET available = balances.available + excluded.available, \
         pending = balances.pending + excluded.pending, updated_at = excluded.updated_at \
         RETURNING available, pending, held",
        account.values([available.into(), pending.into(), now.into()]),
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("balance upsert returned no row".into()))
}

#[allow(clippy::too_many_arguments)]
async fn insert_entry<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    kind: EntryKind,
    amount_minor: i64,
    balance_after: i64,
    reference: Option<&str>,
    remaining: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<EntryRow, PersistenceError> {
    EntryRow::find_by_statement(stmt(
        conn,
        "INSERT INTO ledger_entries (org_id, customer_id, program_id, currency, kind, amount, \
         balance_after, reference, remaining, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         RETURNING id, program_id, currency, kind, amount, balance_after, reference, expires_at, created_at, \
         (SELECT scale FROM program_currencies pc WHERE pc.org_id = $1 AND pc.program_id = $3 AND pc.code = $4) AS scale",
        account.values([
            kind.as_str().into(),
            amount_minor.into(),
            balance_after.into(),
            reference.map(str::to_owned).into(),
            remaining.into(),
            expires_at.into(),
            now.into(),
        ]),
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("ledger insert returned no row".into()))
}

/// The balance of one account (all zero when it has none yet).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn totals<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
) -> Result<Totals, PersistenceError> {
    Ok(Totals::find_by_statement(stmt(
        conn,
        "SELECT available, pending, held FROM balances \
         WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 AND currency = $4",
        account.values([]),
    ))
    .one(conn)
    .await?
    .unwrap_or_default())
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct BalanceRow {
    pub program_id: i64,
    pub currency: String,
    pub available: i64,
    pub pending: i64,
    pub held: i64,
    pub scale: i16,
}

/// Every balance of a customer, by program and currency.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn balances_of<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
) -> Result<Vec<BalanceRow>, PersistenceError> {
    Ok(BalanceRow::find_by_statement(stmt(
        conn,
        "SELECT b.program_id, b.currency, b.available, b.pending, b.held, pc.scale FROM balances b \
         JOIN program_currencies pc ON pc.org_id = b.org_id AND pc.program_id = b.program_id AND pc.code = b.currency \
         WHERE b.org_id = $1 AND b.customer_id = $2 ORDER BY b.program_id, b.currency",
        vec![org_id.into(), customer_id.into()],
    ))
    .all(conn)
    .await?)
}

/// A customer's ledger, newest first, optionally for one program and currency.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn entries_of<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    program_id: Option<i64>,
    currency: Option<&str>,
    before: Option<i64>,
    limit: u64,
) -> Result<Page<EntryRow>, PersistenceError> {
    let mut sql = String::from(
        "SELECT e.id, e.program_id, e.currency, e.kind, e.amount, e.balance_after, e.reference, \
         e.expires_at, e.created_at, pc.scale FROM ledger_entries e \
         JOIN program_currencies pc ON pc.org_id = e.org_id AND pc.program_id = e.program_id AND pc.code = e.currency \
         WHERE e.org_id = $1 AND e.customer_id = $2",
    );
    let mut values: Vec<Value> = vec![org_id.into(), customer_id.into()];
    if let Some(p) = program_id {
        values.push(p.into());
        sql.push_str(&format!(" AND e.program_id = ${}", values.len()));
    }
    if let Some(c) = currency {
        values.push(c.into());
        sql.push_str(&format!(" AND e.currency = ${}", values.len()));
    }
    crate::page(
        conn,
        &sql,
        values,
        "e.id",
        Keyset::Before(before),
        limit,
        |r: &EntryRow| r.id,
    )
    .await
}

/// Locks the account's balance row for the rest of the transaction (PostgreSQL) and returns
/// it, or `None` when the account has no balance row, or, with `skip_locked`, when another
/// transaction holds it (the background workers then leave the account for later).
///
/// Every path that changes an existing balance takes this lock first, then the lots, then the
/// hold or allocation it settles: one lock order for every write and every worker.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn lock_balance<C: ConnectionTrait + Locks>(
    conn: &C,
    account: &Account,
    skip_locked: bool,
) -> Result<Option<Totals>, PersistenceError> {
    if let Some(order) = conn.lock_order() {
        order.balances([account], !skip_locked)?;
    }
    let lock = crate::row_lock(
        conn,
        if skip_locked {
            " FOR UPDATE SKIP LOCKED"
        } else {
            " FOR UPDATE"
        },
    );
    Ok(Totals::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT available, pending, held FROM balances \
             WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 AND currency = $4{lock}"
        ),
        account.values([]),
    ))
    .one(conn)
    .await?)
}

/// Changes an existing balance by the given amounts if none of them goes below zero; `None`
/// (and no change) if one would.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn move_balance<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    by: Totals,
    now: DateTime<Utc>,
) -> Result<Option<Totals>, PersistenceError> {
    Ok(Totals::find_by_statement(stmt(
        conn,
        "UPDATE balances SET available = available + $5, pending = pending + $6, \
         held = held + $7, updated_at = $8 \
         WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 AND currency = $4 \
         AND available + $5 >= 0 AND pending + $6 >= 0 AND held + $7 >= 0 \
         RETURNING available, pending, held",
        account.values([
            by.available.into(),
            by.pending.into(),
            by.held.into(),
            now.into(),
        ]),
    ))
    .one(conn)
    .await?)
}

fn minus_available(amount: i64) -> Totals {
    Totals {
        available: -amount,
        ..Totals::default()
    }
}

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

/// One credit of a batch: a new lot of `amount` on `account`.
#[derive(Debug, Clone)]
pub struct Credit {
    pub account: Account,
    pub amount: i64,
    pub expires_at: Option<DateTime<Utc>>,
    /// Must be unique per organisation within the batch: it ties each new entry to its credit.
    pub reference: String,
}

/// What a credit of a batch wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub entry_id: i64,
    /// The balance right after this entry, as if the batch's entries were applied one by one
    /// in the order given.
    pub after: Totals,
}

/// [`credit`] for many credits at once (group commit): one upsert of every balance touched
/// (the credits of one account summed, the accounts in a fixed order so that two batches lock
/// them in the same order), one multi-row insert of the entries. Returns one [`Posted`] per
/// credit, in the order given.
///
/// A sum past the largest `BIGINT` fails the statement ([`PersistenceError::OutOfRange`]), and
/// with it the transaction: the caller decides which credit was at fault by applying them alone.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn credit_many<C: ConnectionTrait + Locks>(
    conn: &C,
    credits: &[Credit],
    now: DateTime<Utc>,
) -> Result<Vec<Posted>, PersistenceError> {
    if let Some(order) = conn.lock_order() {
        order.balances(credits.iter().map(|c| &c.account), true)?;
    }
    use std::collections::HashMap;
    let rows = credit_sum_rows(&credit_sums(credits)?, now);
    let mut after: HashMap<AccountKey, Totals> = crate::insert_rows(
        conn,
        "balances",
        CREDIT_SUM_COLUMNS,
        &format!("{CREDIT_SUM_TAIL} RETURNING {ACCOUNT_TOTALS}"),
        rows,
    )
    .await?
    .iter()
    .map(AccountTotals::of_row)
    .collect::<Result<_, _>>()?;
    // Walk the credits backwards from each account's final balance.
    let mut balance_after = vec![Totals::default(); credits.len()];
    for (i, c) in credits.iter().enumerate().rev() {
        let running = after.get_mut(&c.account.key()).ok_or_else(|| {
            PersistenceError::Other("balance upsert returned no row for an account".into())
        })?;
        balance_after[i] = *running;
        running.available -= c.amount;
    }
    let entries: Vec<Vec<Value>> = credits
        .iter()
        .zip(&balance_after)
        .map(|(c, after)| credit_entry_row(c, after.available, now))
        .collect();
    let ids = insert_entries(conn, entries).await?;
    credits
        .iter()
        .zip(balance_after)
        .map(|(c, balance_after)| {
            Ok(Posted {
                entry_id: entry_id(&ids, c.account.org_id, &c.reference)?,
                after: balance_after,
            })
        })
        .collect()
}

/// What a batch of credits adds to each balance, in account order.
pub fn credit_sums<'a>(
    credits: impl IntoIterator<Item = &'a Credit>,
) -> Result<std::collections::BTreeMap<AccountKey, i64>, PersistenceError> {
    let mut sums = std::collections::BTreeMap::new();
    for c in credits {
        let sum: &mut i64 = sums.entry(c.account.key()).or_insert(0);
        *sum = sum
            .checked_add(c.amount)
            .ok_or_else(|| PersistenceError::OutOfRange("credits of one balance".into()))?;
    }
    Ok(sums)
}

/// The columns of [`credit_sum_rows`], and the upsert that adds them to the balances.
pub(crate) const CREDIT_SUM_COLUMNS: &str =
    "org_id, customer_id, program_id, currency, available, updated_at";
pub(crate) const CREDIT_SUM_TAIL: &str = "ON CONFLICT (org_id, customer_id, program_id, currency) \
     DO UPDATE SET available = balances.available + excluded.available, updated_at = excluded.updated_at";

/// A balance row per account of `sums`, holding what to add to it.
pub(crate) fn credit_sum_rows(
    sums: &std::collections::BTreeMap<AccountKey, i64>,
    now: DateTime<Utc>,
) -> Vec<Vec<Value>> {
    sums.iter()
        .map(|(key, sum)| Account::from(key).values([(*sum).into(), now.into()]))
        .collect()
}

/// The columns of [`credit_entry_row`] (the id is the sequence's).
pub(crate) const CREDIT_ENTRY_COLUMNS: &str = "org_id, customer_id, program_id, currency, kind, \
     amount, balance_after, reference, remaining, expires_at, created_at";

/// The ledger entry of a credit (a lot of the whole amount), leaving `balance_after`.
pub(crate) fn credit_entry_row(c: &Credit, balance_after: i64, now: DateTime<Utc>) -> Vec<Value> {
    c.account.values([
        EntryKind::Credit.as_str().into(),
        c.amount.into(),
        balance_after.into(),
        c.reference.clone().into(),
        c.amount.into(),
        c.expires_at.into(),
        now.into(),
    ])
}

/// An account as a sortable key: (organisation, customer, program, currency).
pub type AccountKey = (i64, Uuid, i64, String);

impl Account {
    pub fn key(&self) -> AccountKey {
        (
            self.org_id,
            self.customer_id,
            self.program_id,
            self.currency.clone(),
        )
    }

    /// The values that bind the account, `org_id, customer_id, program_id, currency` (the
    /// order every statement here names them in, as `$1` to `$4` where it names one account),
    /// followed by `rest`.
    pub(crate) fn values(&self, rest: impl IntoIterator<Item = Value>) -> Vec<Value> {
        let mut values: Vec<Value> = vec![
            self.org_id.into(),
            self.customer_id.into(),
            self.program_id.into(),
            self.currency.clone().into(),
        ];
        values.extend(rest);
        values
    }
}

impl From<&AccountKey> for Account {
    fn from((org_id, customer_id, program_id, currency): &AccountKey) -> Self {
        Self {
            org_id: *org_id,
            customer_id: *customer_id,
            program_id: *program_id,
            currency: currency.clone(),
        }
    }
}

/// An account with its balance, as statements that read or write many balances return them
/// ([`ACCOUNT_TOTALS`]).
#[derive(Debug, FromQueryResult)]
pub(crate) struct AccountTotals {
    org_id: i64,
    customer_id: Uuid,
    program_id: i64,
    currency: String,
    available: i64,
    pending: i64,
    held: i64,
}

/// The columns of [`AccountTotals`].
pub(crate) const ACCOUNT_TOTALS: &str =
    "org_id, customer_id, program_id, currency, available, pending, held";

impl AccountTotals {
    /// The account's key and balance of a row that has the columns of [`ACCOUNT_TOTALS`].
    pub(crate) fn of_row(
        row: &sea_orm::QueryResult,
    ) -> Result<(AccountKey, Totals), PersistenceError> {
        Ok(Self::from_query_result(row, "")?.into_pair())
    }

    fn into_pair(self) -> (AccountKey, Totals) {
        (
            (
                self.org_id,
                self.customer_id,
                self.program_id,
                self.currency,
            ),
            Totals {
                available: self.available,
                pending: self.pending,
                held: self.held,
            },
        )
    }
}

/// `(a, b, c, d), …` placeholders and values for accounts, numbered after `first - 1`.
pub(crate) fn account_tuples<'a>(
    accounts: impl IntoIterator<Item = &'a Account>,
    first: usize,
) -> (String, Vec<Value>) {
    values_rows(first, accounts.into_iter().map(|a| a.values([])))
}

/// The id of the entry a batch inserted for `reference` of organisation `org_id` (see
/// [`insert_entries`]).
fn entry_id(
    ids: &std::collections::HashMap<(i64, String), i64>,
    org_id: i64,
    reference: &str,
) -> Result<i64, PersistenceError> {
    ids.get(&(org_id, reference.to_owned()))
        .copied()
        .ok_or_else(|| {
            PersistenceError::Other(format!("no ledger entry came back for {reference}"))
        })
}

/// [`lock_balance`] for many accounts at once, in account order (the order every batch takes
/// them in): the available amount of each account that has a balance row.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn lock_balances<C: ConnectionTrait + Locks>(
    conn: &C,
    accounts: &[Account],
) -> Result<std::collections::HashMap<AccountKey, Totals>, PersistenceError> {
    if let Some(order) = conn.lock_order() {
        order.balances(accounts, true)?;
    }
    if accounts.is_empty() {
        return Ok(Default::default());
    }
    let mut sorted: Vec<&Account> = accounts.iter().collect();
    sorted.sort_by_key(|a| a.key());
    sorted.dedup_by_key(|a| a.key());
    let (tuples, values) = account_tuples(sorted, 1);
    let rows = AccountTotals::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {ACCOUNT_TOTALS} FROM balances \
             WHERE (org_id, customer_id, program_id, currency) IN (VALUES {tuples}) \
             ORDER BY org_id, customer_id, program_id, currency{}",
            crate::for_update(conn)
        ),
        values,
    ))
    .all(conn)
    .await?;
    Ok(rows.into_iter().map(AccountTotals::into_pair).collect())
}

/// Inserts ledger entries of a batch (rows in the column order below) and returns each one's
/// id by `(organisation, reference)`, which the batch keeps unique.
async fn insert_entries<C: ConnectionTrait>(
    conn: &C,
    entries: Vec<Vec<Value>>,
) -> Result<std::collections::HashMap<(i64, String), i64>, PersistenceError> {
    let mut ids = std::collections::HashMap::with_capacity(entries.len());
    for row in crate::insert_rows(
        conn,
        "ledger_entries",
        CREDIT_ENTRY_COLUMNS,
        "RETURNING id, org_id, reference",
        entries,
    )
    .await?
    {
        ids.insert(
            (row.try_get_by_index(1)?, row.try_get_by_index(2)?),
            row.try_get_by_index(0)?,
        );
    }
    Ok(ids)
}

/// One debit of a batch.
#[derive(Debug, Clone)]
pub struct Debit {
    pub account: Account,
    pub amount: i64,
    /// Must be unique per organisation within the batch: it ties each new entry to its debit.
    pub reference: String,
}

/// [`debit`] for many `DEBIT`s at once (group commit of redemptions). The caller holds the
/// balance locks ([`lock_balances`], whose amounts it passes as `available`) and has expired
/// the due lots. Debits of one account are decided in the order given against what is left;
/// each gets `Some(what it wrote)`, or `None` (and no change) when the balance is short.
///
/// Writes: one read of the spendable lots of every account debited (locked, soonest-expiring
/// first, never-expiring last), one update of those lots, one of the balances, one insert of
/// the entries. Each update keeps its condition, so a wrong decision can only fail the
/// transaction, never overdraw.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn debit_many<C: ConnectionTrait>(
    conn: &C,
    debits: &[Debit],
    available: &std::collections::HashMap<AccountKey, Totals>,
    now: DateTime<Utc>,
) -> Result<Vec<Option<Posted>>, PersistenceError> {
    use std::collections::{BTreeMap, HashMap};
    #[derive(Debug, FromQueryResult)]
    struct LotRow {
        id: i64,
        org_id: i64,
        customer_id: Uuid,
        program_id: i64,
        currency: String,
        spendable: i64,
    }
    // Decide, in order, against the locked balances.
    let mut left: HashMap<AccountKey, Totals> = available.clone();
    let mut balance_after: Vec<Option<Totals>> = Vec::with_capacity(debits.len());
    let mut totals: BTreeMap<AccountKey, i64> = BTreeMap::new();
    for d in debits {
        let key = d.account.key();
        match left.get_mut(&key) {
            Some(l) if l.available >= d.amount => {
                l.available -= d.amount;
                balance_after.push(Some(*l));
                *totals.entry(key).or_default() += d.amount;
            }
            _ => balance_after.push(None),
        }
    }
    if totals.is_empty() {
        return Ok(vec![None; debits.len()]);
    }
    let accounts: Vec<Account> = totals.keys().map(Account::from).collect();
    let (tuples, mut values) = account_tuples(&accounts, 2);
    values.insert(0, now.into());
    let lots = LotRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT id, org_id, customer_id, program_id, currency, remaining - held AS spendable \
             FROM ledger_entries WHERE (org_id, customer_id, program_id, currency) IN (VALUES {tuples}) \
             AND remaining > held AND (expires_at IS NULL OR expires_at > $1) \
             ORDER BY org_id, customer_id, program_id, currency, \
             CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, id{}",
            crate::for_update(conn)
        ),
        values,
    ))
    .all(conn)
    .await?;
    // Spend each account's total from its lots, soonest-expiring first.
    let mut takes: Vec<(i64, i64)> = Vec::new();
    let mut to_take = totals.clone();
    for lot in lots {
        let key = (lot.org_id, lot.customer_id, lot.program_id, lot.currency);
        if let Some(want) = to_take.get_mut(&key).filter(|w| **w > 0) {
            let take = (*want).min(lot.spendable);
            takes.push((lot.id, take));
            *want -= take;
        }
    }
    if let Some((key, short)) = to_take.iter().find(|(_, w)| **w != 0) {
        // The lots do not cover the balance: the invariant is broken. Roll back, loudly.
        return Err(PersistenceError::Other(format!(
            "lots of {}/{}/{} short by {short} minor units",
            key.1, key.2, key.3
        )));
    }
    let (pairs, values) = values_rows(
        1,
        takes
            .iter()
            .map(|(id, take)| vec![(*id).into(), (*take).into()]),
    );
    let spent = conn
        .execute_raw(stmt(
            conn,
            &format!(
                "WITH v(id, take) AS (VALUES {pairs}) UPDATE ledger_entries \
                 SET remaining = remaining - v.take FROM v \
                 WHERE ledger_entries.id = v.id AND ledger_entries.remaining - ledger_entries.held >= v.take"
            ),
            values,
        ))
        .await?;
    if spent.rows_affected() != takes.len() as u64 {
        return Err(PersistenceError::Other(
            "a lot changed under its lock".into(),
        ));
    }
    let (rows, mut values) = values_rows(
        2,
        accounts
            .iter()
            .zip(totals.values())
            .map(|(account, amount)| account.values([(*amount).into()])),
    );
    values.insert(0, now.into());
    let lowered = conn
        .execute_raw(stmt(
            conn,
            &format!(
                "WITH v(org_id, customer_id, program_id, currency, amount) AS (VALUES {rows}) \
                 UPDATE balances SET available = available - v.amount, updated_at = $1 FROM v \
                 WHERE balances.org_id = v.org_id AND balances.customer_id = v.customer_id \
                 AND balances.program_id = v.program_id AND balances.currency = v.currency \
                 AND balances.available >= v.amount"
            ),
            values,
        ))
        .await?;
    if lowered.rows_affected() != totals.len() as u64 {
        return Err(PersistenceError::Other(
            "a balance changed under its lock".into(),
        ));
    }
    let entries: Vec<Vec<Value>> = debits
        .iter()
        .zip(&balance_after)
        .filter_map(|(d, after)| {
            let after = (*after)?;
            Some(d.account.values([
                EntryKind::Debit.as_str().into(),
                d.amount.into(),
                after.available.into(),
                d.reference.clone().into(),
                Value::BigInt(None),
                Value::ChronoDateTimeUtc(None),
                now.into(),
            ]))
        })
        .collect();
    let ids = insert_entries(conn, entries).await?;
    debits
        .iter()
        .zip(balance_after)
        .map(|(d, after)| {
            let Some(balance_after) = after else {
                return Ok(None);
            };
            Ok(Some(Posted {
                entry_id: entry_id(&ids, d.account.org_id, &d.reference)?,
                after: balance_after,
            }))
        })
        .collect()
}
