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

mod batch;
mod lots;

pub use batch::*;
pub use lots::*;

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
