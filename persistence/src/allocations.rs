//! Currency allocations: one row per `uniqueId`, pointing at the ledger credit it made.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

use crate::{PersistenceError, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct AllocationRow {
    pub id: Uuid,
    pub org_id: i64,
    pub unique_id: String,
    pub customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    pub amount: i64,
    pub source_value: String,
    pub award_strategy_id: i64,
    pub expiry_strategy_id: i64,
    pub event_name: Option<String>,
    pub event_source_id: Option<String>,
    pub ledger_entry_id: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub reversed_at: Option<DateTime<Utc>>,
    pub reversal_entry_id: Option<i64>,
    /// `PENDING` (promised, not yet spendable), `ACTIVE` or `CANCELLED` (reversed while pending).
    pub status: String,
    pub matures_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    /// What reversals took back of `amount` so far.
    pub reversed_amount: i64,
    /// Whether an earn cap lowered the award; `uncapped_amount` is what it would have been.
    pub capped: bool,
    pub uncapped_amount: Option<i64>,
    /// The currency's scale, joined in.
    pub scale: i16,
}

impl AllocationRow {
    pub fn is_pending(&self) -> bool {
        self.status == "PENDING"
    }
}

const COLUMNS: &str = "a.id, a.org_id, a.unique_id, a.customer_id, a.program_id, a.currency, a.amount, \
     a.source_value, a.award_strategy_id, a.expiry_strategy_id, a.event_name, a.event_source_id, \
     a.ledger_entry_id, a.expires_at, a.created_at, a.reversed_at, a.reversal_entry_id, \
     a.status, a.matures_at, a.activated_at, a.reversed_amount, a.capped, a.uncapped_amount, \
     pc.scale";

const FROM: &str = "FROM allocations a JOIN program_currencies pc \
     ON pc.org_id = a.org_id AND pc.program_id = a.program_id AND pc.code = a.currency";

/// Everything a new allocation records.
#[derive(Debug, Clone)]
pub struct NewAllocation {
    pub org_id: i64,
    pub unique_id: String,
    pub customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    pub amount: i64,
    pub source_value: String,
    pub award_strategy_id: i64,
    pub expiry_strategy_id: i64,
    pub event_name: Option<String>,
    pub event_source_id: Option<String>,
    /// The credit's entry; 0 while the allocation is pending (it has none yet).
    pub ledger_entry_id: i64,
    pub expires_at: Option<DateTime<Utc>>,
    /// `Some` (a future time) for a pending allocation.
    pub matures_at: Option<DateTime<Utc>>,
    /// What the award would have been without its earn caps, when they lowered it.
    pub uncapped_amount: Option<i64>,
}

impl NewAllocation {
    pub fn status(&self) -> &'static str {
        if self.matures_at.is_some() {
            "PENDING"
        } else {
            "ACTIVE"
        }
    }
}

/// Records many allocations in one statement (group commit). `ids` are the allocations' ids,
/// one per allocation; every one is created at `now`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn insert_many<C: ConnectionTrait>(
    conn: &C,
    allocations: &[(Uuid, NewAllocation)],
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    let rows = allocations
        .iter()
        .map(|(id, a)| {
            vec![
                (*id).into(),
                a.org_id.into(),
                a.unique_id.clone().into(),
                a.customer_id.into(),
                a.program_id.into(),
                a.currency.clone().into(),
                a.amount.into(),
                a.source_value.clone().into(),
                a.award_strategy_id.into(),
                a.expiry_strategy_id.into(),
                a.event_name.clone().into(),
                a.event_source_id.clone().into(),
                a.ledger_entry_id.into(),
                a.expires_at.into(),
                now.into(),
                a.status().into(),
                a.matures_at.into(),
                a.uncapped_amount.is_some().into(),
                a.uncapped_amount.into(),
            ]
        })
        .collect();
    crate::insert_rows(
        conn,
        "allocations",
        "id, org_id, unique_id, customer_id, program_id, currency, amount, \
         source_value, award_strategy_id, expiry_strategy_id, event_name, event_source_id, \
         ledger_entry_id, expires_at, created_at, status, matures_at, capped, uncapped_amount",
        "",
        rows,
    )
    .await?;
    Ok(())
}

/// The allocation made with `unique_id` (the latest, if a forgotten key was used again).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get_by_unique_id<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    unique_id: &str,
) -> Result<Option<AllocationRow>, PersistenceError> {
    Ok(AllocationRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} {FROM} \
             WHERE a.org_id = $1 AND a.unique_id = $2 ORDER BY a.created_at DESC, a.id DESC LIMIT 1"
        ),
        vec![org_id.into(), unique_id.into()],
    ))
    .one(conn)
    .await?)
}

/// One allocation by id, read again inside a transaction (after the balance lock).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
) -> Result<Option<AllocationRow>, PersistenceError> {
    Ok(AllocationRow::find_by_statement(stmt(
        conn,
        &format!("SELECT {COLUMNS} {FROM} WHERE a.org_id = $1 AND a.id = $2"),
        vec![org_id.into(), id.into()],
    ))
    .one(conn)
    .await?)
}

/// Pending allocations whose `matures_at` has passed, oldest first, at most `limit`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn due_pending<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<AllocationRow>, PersistenceError> {
    Ok(AllocationRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} {FROM} WHERE a.status = 'PENDING' AND a.matures_at <= $1 \
             ORDER BY a.matures_at, a.id LIMIT $2"
        ),
        vec![now.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
    ))
    .all(conn)
    .await?)
}

/// A pending allocation becomes active: its credit is `entry_id`, its points expire at
/// `expires_at`. `false`, and no change, when it was no longer pending.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn activate<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
    entry_id: i64,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool, PersistenceError> {
    let result = conn
        .execute_raw(stmt(
            conn,
            "UPDATE allocations SET status = 'ACTIVE', ledger_entry_id = $3, expires_at = $4, \
             activated_at = $5 WHERE org_id = $1 AND id = $2 AND status = 'PENDING'",
            vec![
                org_id.into(),
                id.into(),
                entry_id.into(),
                expires_at.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Takes `amount` more of an allocation back, if the total stays within its amount; a pending
/// allocation is `CANCELLED` when `cancel` is set or nothing of it is left. `false`, and no
/// change, when the total would pass the amount.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn add_reversed<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
    amount: i64,
    cancel: bool,
) -> Result<bool, PersistenceError> {
    let result = conn
        .execute_raw(stmt(
            conn,
            "UPDATE allocations SET reversed_amount = reversed_amount + $3, \
             status = CASE WHEN status = 'PENDING' AND ($4 OR reversed_amount + $3 = amount) \
                           THEN 'CANCELLED' ELSE status END \
             WHERE org_id = $1 AND id = $2 AND reversed_amount + $3 <= amount",
            vec![org_id.into(), id.into(), amount.into(), cancel.into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Records the reversal of an allocation, once: `false` if it was reversed already.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn mark_reversed<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
    entry_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<bool, PersistenceError> {
    let result = conn
        .execute_raw(stmt(
            conn,
            "UPDATE allocations SET reversed_at = $3, reversal_entry_id = $4 \
             WHERE org_id = $1 AND id = $2 AND reversed_at IS NULL",
            vec![org_id.into(), id.into(), now.into(), entry_id.into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}
