//! The ledger of a batch: many credits and debits written with one statement each, and many
//! balances locked at once, in account order.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::lock_order::Locks;
use crate::{PersistenceError, stmt, values_rows};

use super::*;

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
