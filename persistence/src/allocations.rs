//! Currency allocations: one row per `uniqueId`, pointing at the ledger credit it made.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::customer::CustomerRef;
use domain::idempotency::Operation;
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::idempotency::{OrgKey, RECORD_COLUMNS, record_row};
use crate::ledger::{self, Account, AccountKey, Credit, Totals};
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

pub(crate) const COLUMNS: &str = "a.id, a.org_id, a.unique_id, a.customer_id, a.program_id, a.currency, a.amount, \
     a.source_value, a.award_strategy_id, a.expiry_strategy_id, a.event_name, a.event_source_id, \
     a.ledger_entry_id, a.expires_at, a.created_at, a.reversed_at, a.reversal_entry_id, \
     a.status, a.matures_at, a.activated_at, a.reversed_amount, a.capped, a.uncapped_amount, \
     pc.scale";

pub(crate) const FROM: &str = "FROM allocations a JOIN program_currencies pc \
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
        .map(|(id, a)| allocation_values(*id, a, now))
        .collect();
    crate::insert_rows(conn, "allocations", NEW_COLUMNS, "", rows).await?;
    Ok(())
}

/// The columns of [`allocation_values`].
const NEW_COLUMNS: &str = "id, org_id, unique_id, customer_id, program_id, currency, amount, \
     source_value, award_strategy_id, expiry_strategy_id, event_name, event_source_id, \
     ledger_entry_id, expires_at, created_at, status, matures_at, capped, uncapped_amount";

/// A new allocation's row, created at `now`.
fn allocation_values(id: Uuid, a: &NewAllocation, now: DateTime<Utc>) -> Vec<sea_orm::Value> {
    vec![
        id.into(),
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

/// Pending allocations whose `matures_at` has passed, oldest first, at most `limit`, leaving
/// out those of `skip`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn due_pending<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
    skip: &[Uuid],
) -> Result<Vec<AllocationRow>, PersistenceError> {
    let mut values: Vec<Value> = vec![now.into(), crate::limit_value(limit)];
    let not_skipped = crate::and_not_in("a.id", skip, &mut values);
    Ok(AllocationRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} {FROM} WHERE a.status = 'PENDING' AND a.matures_at <= $1{not_skipped} \
             ORDER BY a.matures_at, a.id LIMIT $2"
        ),
        values,
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

/// One request of an allocation batch, as the batch's opening statement ([`open_batch`]) needs
/// it.
#[derive(Debug, Clone)]
pub struct Opening<'a> {
    pub org_id: i64,
    pub key: &'a str,
    pub customer: &'a CustomerRef,
    /// The program and currency it would credit; `None` when the catalog refused it, so
    /// that nothing is locked for it and only its key is looked up.
    pub account: Option<(i64, &'a str)>,
}

/// The committed record of a request's key, as the replay path reads it (see
/// [`ReplayRow`](crate::idempotency::ReplayRow)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedKey {
    pub id: i64,
    pub fingerprint: String,
    /// The stored answer, as the JSON text the database keeps.
    pub response: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What [`open_batch`] found for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// Its key's committed record (a replay, a refusal, or a forgotten key), if it has one.
    pub used: Option<UsedKey>,
    /// The customer its identifier names, if enrolled.
    pub customer_id: Option<Uuid>,
    /// Its balance, locked (`FOR UPDATE`) until the transaction ends; `None` when the account
    /// has no balance row yet.
    pub balance: Option<Totals>,
    /// A ledger entry id drawn for its credit, when it will credit (a new key and an
    /// account).
    pub entry_id: Option<i64>,
}

/// The opening statement of an allocation batch (PostgreSQL): in one round trip, for every
/// request, whether its key was used (with the record's fingerprint and answer, so that a
/// replay costs the batch no other statement), who its customer is (the row locked `FOR KEY SHARE`, as
/// [`customers::find`](crate::customers::find) does, so that an erasure of the customer waits
/// for the batch, or the batch for the erasure), its balance (locked, in account
/// order, only for requests that will credit), and an id for its ledger entry. The key is
/// not claimed: [`post_batch`] inserts it with its answer, and a concurrent first use of the
/// same key shows there (see its documentation).
///
/// Every look-up is a `LATERAL … LIMIT 1` on its unique index, so the plan is the same
/// whatever the number of requests and the size of the tables. The entry ids are drawn in
/// request order (`ORDER BY ord`: PostgreSQL evaluates a volatile output expression such as
/// `nextval` after the sort), the order the caller computes each entry's `balance_after` in,
/// so an account's entries listed by id chain whatever order the join produced.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn open_batch<C: ConnectionTrait + crate::lock_order::Locks>(
    conn: &C,
    operation: Operation,
    openings: &[Opening<'_>],
) -> Result<Vec<Opened>, PersistenceError> {
    let rows: Vec<Vec<Value>> = openings
        .iter()
        .enumerate()
        .map(|(ord, o)| {
            let named = crate::customers::column(o.customer);
            let text = |col: &str| -> Value { (named == col).then(|| o.customer.value()).into() };
            let id: Option<Uuid> = match o.customer {
                CustomerRef::CustomerId(id) => Some(*id),
                _ => None,
            };
            vec![
                i64::try_from(ord).unwrap_or(i64::MAX).into(),
                o.org_id.into(),
                operation.as_str().into(),
                o.key.into(),
                id.into(),
                text("mobile"),
                text("email"),
                text("external_id"),
                o.account.map(|(program, _)| program).into(),
                o.account.map(|(_, currency)| currency.to_owned()).into(),
            ]
        })
        .collect();
    let json = crate::rows_as_json(
        "ord, org_id, operation, key, id, mobile, email, external_id, program_id, currency",
        crate::cells(rows),
    )
    .map_err(|_| PersistenceError::Other("the batch's requests as JSON".into()))?;
    let customer = |col: &str| {
        format!(
            "LEFT JOIN LATERAL (SELECT c.id FROM customers c WHERE i.{col} IS NOT NULL \
             AND c.org_id = i.org_id AND c.{col} = i.{col} LIMIT 1 FOR KEY SHARE) c_{col} ON true"
        )
    };
    let sql = format!(
        "WITH input AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(CAST($1 AS jsonb)) \
           AS x(ord bigint, org_id bigint, operation text, key text, id uuid, mobile text, \
                email text, external_id text, program_id bigint, currency text)), \
         found AS MATERIALIZED ( \
           SELECT i.ord, i.org_id, i.program_id, i.currency, e.id AS existing, \
                  e.fingerprint, e.response, e.created_at AS used_at, \
                  COALESCE(c_id.id, c_mobile.id, c_email.id, c_external_id.id) AS customer_id \
           FROM input i \
           LEFT JOIN LATERAL (SELECT r.id, r.fingerprint, CAST(r.response AS TEXT) AS response, \
             r.created_at FROM idempotency_records r WHERE r.org_id = i.org_id \
             AND r.operation = i.operation AND r.key = i.key LIMIT 1) e ON true \
           {} {} {} {}), \
         locked AS MATERIALIZED ( \
           SELECT b.org_id, b.customer_id, b.program_id, b.currency, b.available, b.pending, b.held \
           FROM (SELECT DISTINCT org_id, customer_id, program_id, currency FROM found \
                 WHERE currency IS NOT NULL AND existing IS NULL AND customer_id IS NOT NULL \
                 ORDER BY org_id, customer_id, program_id, currency) a \
           CROSS JOIN LATERAL (SELECT * FROM balances b WHERE b.org_id = a.org_id \
             AND b.customer_id = a.customer_id AND b.program_id = a.program_id \
             AND b.currency = a.currency FOR UPDATE) b) \
         SELECT f.ord, f.existing, f.customer_id, \
                l.available, l.pending, l.held, \
                CASE WHEN f.currency IS NOT NULL AND f.existing IS NULL \
                     THEN nextval('ledger_entries_id_seq') END AS entry_id, \
                f.fingerprint, f.response, f.used_at \
         FROM found f LEFT JOIN locked l ON l.org_id = f.org_id \
           AND l.customer_id = f.customer_id AND l.program_id = f.program_id \
           AND l.currency = f.currency \
         ORDER BY f.ord",
        customer("id"),
        customer("mobile"),
        customer("email"),
        customer("external_id"),
    );
    let mut opened = vec![Opened::default(); openings.len()];
    let mut locked: Vec<Account> = Vec::new();
    for row in conn
        .query_all_raw(stmt(conn, &sql, vec![json.into()]))
        .await?
    {
        let ord: i64 = row.try_get_by_index(0)?;
        let slot = usize::try_from(ord)
            .ok()
            .and_then(|i| opened.get_mut(i))
            .ok_or_else(|| PersistenceError::Other("open_batch: a row of no request".into()))?;
        let available: Option<i64> = row.try_get_by_index(3)?;
        let used: Option<i64> = row.try_get_by_index(1)?;
        *slot = Opened {
            used: match used {
                Some(id) => Some(UsedKey {
                    id,
                    fingerprint: row.try_get_by_index(7)?,
                    response: row.try_get_by_index(8)?,
                    created_at: row.try_get_by_index(9)?,
                }),
                None => None,
            },
            customer_id: row.try_get_by_index(2)?,
            balance: match available {
                Some(available) => Some(Totals {
                    available,
                    pending: row.try_get_by_index(4)?,
                    held: row.try_get_by_index(5)?,
                }),
                None => None,
            },
            entry_id: row.try_get_by_index(6)?,
        };
    }
    // Every account the batch looked up for a credit counts as locked here, with or without a
    // row (one created later by this batch is its own).
    if let Some(order) = conn.lock_order() {
        for (o, op) in opened.iter().zip(openings) {
            if let (Some(customer_id), Some((program_id, currency)), None) =
                (o.customer_id, op.account, &o.used)
            {
                locked.push(Account {
                    org_id: op.org_id,
                    customer_id,
                    program_id,
                    currency: currency.to_owned(),
                });
            }
        }
        order.balances(&locked, true)?;
    }
    Ok(opened)
}

/// One allocation of a batch, ready to write: its key with the answer to store, its credit
/// (a lot of the whole amount), the entry id and balance [`open_batch`] gave, the allocation.
#[derive(Debug, Clone)]
pub struct Posting<'a> {
    pub key: OrgKey<'a>,
    pub credit: Credit,
    pub entry_id: i64,
    /// The balance's `available` right after this credit.
    pub balance_after: i64,
    pub allocation: (Uuid, NewAllocation),
}

/// What [`post_batch`] wrote.
#[derive(Debug, Clone, Default)]
pub struct PostedBatch {
    /// How many of the keys were inserted; fewer than the postings when another transaction
    /// committed a first use of one of them meanwhile.
    pub keys_inserted: usize,
    /// Each balance after the batch (available, pending and held).
    pub balances: HashMap<AccountKey, Totals>,
}

/// The writes of an allocation batch (PostgreSQL), in one statement: every key record with its
/// answer (`ON CONFLICT DO NOTHING`), every balance raised by its credits, every ledger entry,
/// every allocation.
///
/// The caller must roll back, and try again, when a key was not inserted (a concurrent first
/// use committed it: the retry replays it) or when a balance is not what the locked balances
/// of [`open_batch`] and the credits make (an account whose balance row another transaction
/// created meanwhile).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn post_batch<C: ConnectionTrait + crate::lock_order::Locks>(
    conn: &C,
    operation: Operation,
    postings: &[Posting<'_>],
    now: DateTime<Utc>,
) -> Result<PostedBatch, PersistenceError> {
    if postings.is_empty() {
        return Ok(PostedBatch::default());
    }
    if let Some(order) = conn.lock_order() {
        order.keys_after_balances();
        order.balances(postings.iter().map(|p| &p.credit.account), true)?;
    }
    let mut keys: Vec<&Posting<'_>> = postings.iter().collect();
    keys.sort_by(|a, b| {
        (a.key.org_id, a.key.key.as_str()).cmp(&(b.key.org_id, b.key.key.as_str()))
    });
    let key_rows = keys
        .iter()
        .map(|p| record_row(operation, &p.key, now))
        .collect::<Result<Vec<_>, _>>()?;
    let sums = ledger::credit_sums(postings.iter().map(|p| &p.credit))?;
    let mut entry_columns = String::from("id, ");
    entry_columns.push_str(ledger::CREDIT_ENTRY_COLUMNS);
    let entry_rows = postings
        .iter()
        .map(|p| {
            let mut row = vec![Value::from(p.entry_id)];
            row.extend(ledger::credit_entry_row(&p.credit, p.balance_after, now));
            row
        })
        .collect();
    let allocation_rows = postings
        .iter()
        .map(|p| allocation_values(p.allocation.0, &p.allocation.1, now))
        .collect();
    let as_json = |columns: &str, rows: Vec<Vec<crate::Cell>>| -> Result<Value, PersistenceError> {
        crate::rows_as_json(columns, rows)
            .map(Value::from)
            .map_err(|_| PersistenceError::Other("the batch's rows as JSON".into()))
    };
    let values = vec![
        as_json(RECORD_COLUMNS, key_rows)?,
        as_json(
            ledger::CREDIT_SUM_COLUMNS,
            crate::cells(ledger::credit_sum_rows(&sums, now)),
        )?,
        as_json(&entry_columns, crate::cells(entry_rows))?,
        as_json(NEW_COLUMNS, crate::cells(allocation_rows))?,
    ];
    let sql = format!(
        "WITH k AS ({}), b AS ({}), l AS ({}), a AS ({}) \
         SELECT b.org_id, b.customer_id, b.program_id, b.currency, b.available, \
                b.pending, b.held, (SELECT count(*) FROM k) AS keys FROM b",
        crate::json_insert(
            "idempotency_records",
            RECORD_COLUMNS,
            1,
            "ON CONFLICT (org_id, operation, key) DO NOTHING RETURNING 1"
        ),
        crate::json_insert(
            "balances",
            ledger::CREDIT_SUM_COLUMNS,
            2,
            &format!(
                "{} RETURNING {}",
                ledger::CREDIT_SUM_TAIL,
                ledger::ACCOUNT_TOTALS
            )
        ),
        crate::json_insert("ledger_entries", &entry_columns, 3, "RETURNING 1"),
        crate::json_insert("allocations", NEW_COLUMNS, 4, "RETURNING 1"),
    );
    let mut posted = PostedBatch::default();
    for row in conn.query_all_raw(stmt(conn, &sql, values)).await? {
        let keys: i64 = row.try_get_by_index(7)?;
        posted.keys_inserted = usize::try_from(keys).unwrap_or(0);
        let (account, balance) = ledger::AccountTotals::of_row(&row)?;
        posted.balances.insert(account, balance);
    }
    Ok(posted)
}
