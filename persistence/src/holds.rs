//! Holds (two-phase redemption): points moved from available to held, and the lots they
//! earmark, until a capture spends them, a void releases them, or the hold expires.
//!
//! A hold's status changes once, from `HELD` to `CAPTURED`, `VOIDED` or `EXPIRED`, by one
//! conditional update ([`finish`]) made under the account's balance lock: of a capture, a void
//! and the expiry worker racing each other, exactly one finds it `HELD`.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::ledger::{Account, LotTake};
use crate::{PersistenceError, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct HoldRow {
    pub id: Uuid,
    pub org_id: i64,
    pub unique_id: String,
    pub customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    /// What was asked for.
    pub amount: i64,
    /// What is still earmarked: `amount` less what expired while held (0 once settled).
    pub held: i64,
    pub captured_amount: i64,
    pub released_amount: i64,
    pub expired_amount: i64,
    pub status: String,
    pub reason: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The currency's scale, joined in.
    pub scale: i16,
}

impl HoldRow {
    pub fn account(&self) -> Account {
        Account {
            org_id: self.org_id,
            customer_id: self.customer_id,
            program_id: self.program_id,
            currency: self.currency.clone(),
        }
    }
}

/// What a new hold records.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub id: Uuid,
    pub org_id: i64,
    pub unique_id: String,
    pub customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    pub amount: i64,
    pub reason: Option<String>,
    pub expires_at: DateTime<Utc>,
}

pub(crate) const COLUMNS: &str = "h.id, h.org_id, h.unique_id, h.customer_id, h.program_id, h.currency, \
     h.amount, h.held, h.captured_amount, h.released_amount, h.expired_amount, h.status, \
     h.reason, h.expires_at, h.created_at, h.updated_at, pc.scale";

pub(crate) const FROM: &str = "FROM holds h JOIN program_currencies pc \
     ON pc.org_id = h.org_id AND pc.program_id = h.program_id AND pc.code = h.currency";

/// Records a new hold, `HELD` with all of its amount.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    hold: &NewHold,
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    conn.execute_raw(stmt(
        conn,
        "INSERT INTO holds (id, org_id, unique_id, customer_id, program_id, currency, amount, \
         held, captured_amount, released_amount, expired_amount, status, reason, expires_at, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0, 0, 0, 'HELD', $8, $9, $10, $10)",
        vec![
            hold.id.into(),
            hold.org_id.into(),
            hold.unique_id.clone().into(),
            hold.customer_id.into(),
            hold.program_id.into(),
            hold.currency.clone().into(),
            hold.amount.into(),
            hold.reason.clone().into(),
            hold.expires_at.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// One hold of the organisation.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
) -> Result<Option<HoldRow>, PersistenceError> {
    Ok(HoldRow::find_by_statement(stmt(
        conn,
        &format!("SELECT {COLUMNS} {FROM} WHERE h.org_id = $1 AND h.id = $2"),
        vec![org_id.into(), id.into()],
    ))
    .one(conn)
    .await?)
}

/// Records which lots hold `hold_id` earmarked, and how much of each.
pub async fn insert_lots<C: ConnectionTrait>(
    conn: &C,
    hold_id: Uuid,
    lots: &[LotTake],
) -> Result<(), PersistenceError> {
    let rows: Vec<Vec<Value>> = lots
        .iter()
        .map(|l| vec![hold_id.into(), l.lot_id.into(), l.take.into()])
        .collect();
    crate::insert_rows(conn, "hold_lots", "hold_id, lot_id, amount", "", rows).await?;
    Ok(())
}

/// The lots hold `hold_id` still earmarks (soonest-expiring first, never-expiring last), and
/// forgets them: the caller is settling the hold.
pub async fn take_lots<C: ConnectionTrait>(
    conn: &C,
    hold_id: Uuid,
) -> Result<Vec<LotTake>, PersistenceError> {
    #[derive(Debug, FromQueryResult)]
    struct Row {
        lot_id: i64,
        amount: i64,
        expires_at: Option<DateTime<Utc>>,
    }
    let rows = Row::find_by_statement(stmt(
        conn,
        "SELECT hl.lot_id, hl.amount, e.expires_at FROM hold_lots hl \
         JOIN ledger_entries e ON e.id = hl.lot_id \
         WHERE hl.hold_id = $1 AND hl.amount > 0 \
         ORDER BY CASE WHEN e.expires_at IS NULL THEN 1 ELSE 0 END, e.expires_at, hl.lot_id",
        vec![hold_id.into()],
    ))
    .all(conn)
    .await?;
    conn.execute_raw(stmt(
        conn,
        "UPDATE hold_lots SET amount = 0 WHERE hold_id = $1 AND amount > 0",
        vec![hold_id.into()],
    ))
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| LotTake {
            lot_id: r.lot_id,
            take: r.amount,
            expires_at: r.expires_at,
        })
        .collect())
}

/// A reversal is spending the part of lot `from_lot` that holds earmark, and `to` are the
/// spendable parts of other lots it earmarked instead: the holds that earmarked `from_lot` (in
/// hold id order) move as much of their earmarks onto `to`'s lots, so each still holds what
/// it held. The caller holds the account's balance lock and has already updated the lots'
/// `held`.
pub async fn move_earmarks<C: ConnectionTrait>(
    conn: &C,
    from_lot: i64,
    to: &[LotTake],
) -> Result<(), PersistenceError> {
    #[derive(Debug, FromQueryResult)]
    struct Row {
        hold_id: Uuid,
        amount: i64,
    }
    let rows = Row::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT hold_id, amount FROM hold_lots WHERE lot_id = $1 AND amount > 0 \
             ORDER BY hold_id{}",
            crate::for_update(conn)
        ),
        vec![from_lot.into()],
    ))
    .all(conn)
    .await?;
    let mut targets = to.iter().map(|t| (t.lot_id, t.take)).filter(|t| t.1 > 0);
    let mut target = targets.next();
    let mut to_move: i64 = to.iter().map(|t| t.take).sum();
    for row in rows {
        if to_move == 0 {
            break;
        }
        let mut moving = row.amount.min(to_move);
        to_move -= moving;
        let done = conn
            .execute_raw(stmt(
                conn,
                "UPDATE hold_lots SET amount = amount - $3 \
                 WHERE hold_id = $1 AND lot_id = $2 AND amount >= $3",
                vec![row.hold_id.into(), from_lot.into(), moving.into()],
            ))
            .await?;
        if done.rows_affected() != 1 {
            return Err(PersistenceError::Other(format!(
                "the earmarks on lot {from_lot} changed under the balance lock"
            )));
        }
        while moving > 0 {
            let Some((lot_id, left)) = target.as_mut() else {
                return Err(PersistenceError::Other(format!(
                    "no lot to move the earmarks of lot {from_lot} to"
                )));
            };
            let piece = moving.min(*left);
            conn.execute_raw(stmt(
                conn,
                "INSERT INTO hold_lots (hold_id, lot_id, amount) VALUES ($1, $2, $3) \
                 ON CONFLICT (hold_id, lot_id) DO UPDATE SET amount = hold_lots.amount + excluded.amount",
                vec![row.hold_id.into(), (*lot_id).into(), piece.into()],
            ))
            .await?;
            *left -= piece;
            moving -= piece;
            if *left == 0 {
                target = targets.next();
            }
        }
    }
    if to_move != 0 {
        return Err(PersistenceError::Other(format!(
            "lot {from_lot} is earmarked for less than a reversal moves off it"
        )));
    }
    Ok(())
}

/// Lot `lot_id` expired with earmarks on it: each hold that earmarked it holds that much less
/// (its `expiredAmount` grows). The caller holds the account's balance lock.
pub async fn expire_lot<C: ConnectionTrait>(
    conn: &C,
    lot_id: i64,
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    conn.execute_raw(stmt(
        conn,
        "UPDATE holds SET held = holds.held - hl.amount, \
         expired_amount = holds.expired_amount + hl.amount, updated_at = $2 \
         FROM hold_lots hl WHERE hl.hold_id = holds.id AND hl.lot_id = $1 AND hl.amount > 0",
        vec![lot_id.into(), now.into()],
    ))
    .await?;
    conn.execute_raw(stmt(
        conn,
        "UPDATE hold_lots SET amount = 0 WHERE lot_id = $1 AND amount > 0",
        vec![lot_id.into()],
    ))
    .await?;
    Ok(())
}

/// Ends an active hold: `HELD` → `status`, with what was captured and released. `false`, and
/// no change, when it was no longer `HELD`. The caller holds the account's balance lock.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn finish<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
    status: &str,
    captured: i64,
    released: i64,
    now: DateTime<Utc>,
) -> Result<bool, PersistenceError> {
    let done = conn
        .execute_raw(stmt(
            conn,
            "UPDATE holds SET status = $3, captured_amount = $4, released_amount = $5, held = 0, \
             updated_at = $6 WHERE org_id = $1 AND id = $2 AND status = 'HELD'",
            vec![
                org_id.into(),
                id.into(),
                status.into(),
                captured.into(),
                released.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Active holds whose `expires_at` has passed, oldest first, at most `limit`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn due<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
    skip: &[Uuid],
) -> Result<Vec<HoldRow>, PersistenceError> {
    let mut values: Vec<Value> = vec![now.into(), crate::limit_value(limit)];
    let not_skipped = crate::and_not_in("h.id", skip, &mut values);
    Ok(HoldRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} {FROM} WHERE h.status = 'HELD' AND h.expires_at <= $1{not_skipped} \
             ORDER BY h.expires_at, h.id LIMIT $2"
        ),
        values,
    ))
    .all(conn)
    .await?)
}
