//! The ledger: append-only entries, lots (credits with `remaining`), and balances.
//!
//! Invariant kept by every write here, in one transaction: a balance equals the sum of its
//! ledger entries (credits minus debits, expiries and reversals) and the sum of `remaining` over
//! its unexpired lots.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::catalog::page_fetch;
use crate::{Page, PersistenceError, stmt};

/// The direction of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Credit,
    Debit,
    Expire,
    Reversal,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Credit => "CREDIT",
            EntryKind::Debit => "DEBIT",
            EntryKind::Expire => "EXPIRE",
            EntryKind::Reversal => "REVERSAL",
        }
    }
}

/// Whose balance, in which program and currency.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, FromQueryResult)]
struct Available {
    available: i64,
}

/// Credits `amount_minor` as a new lot expiring at `expires_at`, in one statement for the
/// balance (an upsert that adds) and one for the entry. Returns the entry.
pub async fn credit<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    amount_minor: i64,
    expires_at: Option<DateTime<Utc>>,
    reference: Option<&str>,
    now: DateTime<Utc>,
) -> Result<EntryRow, PersistenceError> {
    let balance = Available::find_by_statement(stmt(
        conn,
        "INSERT INTO balances (org_id, customer_id, program_id, currency, available, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (org_id, customer_id, program_id, currency) \
         DO UPDATE SET available = balances.available + excluded.available, updated_at = excluded.updated_at \
         RETURNING available",
        vec![
            account.org_id.into(),
            account.customer_id.into(),
            account.program_id.into(),
            account.currency.clone().into(),
            amount_minor.into(),
            now.into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("balance upsert returned no row".into()))?;
    insert_entry(
        conn,
        account,
        EntryKind::Credit,
        amount_minor,
        balance.available,
        reference,
        Some(amount_minor),
        expires_at,
        now,
    )
    .await
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
        vec![
            account.org_id.into(),
            account.customer_id.into(),
            account.program_id.into(),
            account.currency.clone().into(),
            kind.as_str().into(),
            amount_minor.into(),
            balance_after.into(),
            reference.map(str::to_owned).into(),
            remaining.into(),
            expires_at.into(),
            now.into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("ledger insert returned no row".into()))
}

/// The available balance of one account (0 when it has none yet).
pub async fn available<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
) -> Result<i64, PersistenceError> {
    Ok(Available::find_by_statement(stmt(
        conn,
        "SELECT available FROM balances \
         WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 AND currency = $4",
        vec![
            account.org_id.into(),
            account.customer_id.into(),
            account.program_id.into(),
            account.currency.clone().into(),
        ],
    ))
    .one(conn)
    .await?
    .map_or(0, |b| b.available))
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct BalanceRow {
    pub program_id: i64,
    pub currency: String,
    pub available: i64,
    pub scale: i16,
}

/// Every balance of a customer, by program and currency.
pub async fn balances_of<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
) -> Result<Vec<BalanceRow>, PersistenceError> {
    Ok(BalanceRow::find_by_statement(stmt(
        conn,
        "SELECT b.program_id, b.currency, b.available, pc.scale FROM balances b \
         JOIN program_currencies pc ON pc.org_id = b.org_id AND pc.program_id = b.program_id AND pc.code = b.currency \
         WHERE b.org_id = $1 AND b.customer_id = $2 ORDER BY b.program_id, b.currency",
        vec![org_id.into(), customer_id.into()],
    ))
    .all(conn)
    .await?)
}

/// A customer's ledger, newest first, optionally for one program and currency.
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
         WHERE e.org_id = $1 AND e.customer_id = $2 AND e.id < $3",
    );
    let mut values: Vec<Value> = vec![
        org_id.into(),
        customer_id.into(),
        before.unwrap_or(i64::MAX).into(),
    ];
    if let Some(p) = program_id {
        values.push(p.into());
        sql.push_str(&format!(" AND e.program_id = ${}", values.len()));
    }
    if let Some(c) = currency {
        values.push(c.into());
        sql.push_str(&format!(" AND e.currency = ${}", values.len()));
    }
    values.push(page_fetch(limit));
    sql.push_str(&format!(" ORDER BY e.id DESC LIMIT ${}", values.len()));
    let rows = EntryRow::find_by_statement(stmt(conn, &sql, values))
        .all(conn)
        .await?;
    Ok(Page::from_rows(rows, limit, |r| r.id))
}
