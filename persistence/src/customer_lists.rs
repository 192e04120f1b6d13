//! A customer's holds, allocations and transfers, newest first, a keyset page at a time.
//!
//! Their ids are UUIDv7 (time-ordered), so "newest first" is `ORDER BY id DESC` and the cursor
//! of the next page is the id of the last row, read through an index of `(org_id, customer, id)`.
//! Holds and allocations come with the current balance of their account (one primary-key
//! look-up of `balances` per row).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, QueryResult, Value};
use uuid::Uuid;

use crate::allocations::AllocationRow;
use crate::holds::HoldRow;
use crate::ledger::Totals;
use crate::{Page, PersistenceError, page_fetch, stmt};

/// The current balance of the row's account, as `b_available`, `b_pending`, `b_held`.
const BALANCE: &str = "COALESCE(b.available, 0) AS b_available, \
     COALESCE(b.pending, 0) AS b_pending, COALESCE(b.held, 0) AS b_held";

/// The account of table alias `t`.
fn balance_join(t: &str) -> String {
    format!(
        "LEFT JOIN balances b ON b.org_id = {t}.org_id AND b.customer_id = {t}.customer_id \
         AND b.program_id = {t}.program_id AND b.currency = {t}.currency"
    )
}

/// Before the newest possible id when there is no cursor (UUIDv7 ids never reach it).
fn before(cursor: Option<Uuid>) -> Value {
    cursor.unwrap_or(Uuid::from_u128(u128::MAX)).into()
}

/// `$1` organisation, `$2` customer, `$3` the cursor, `$4` the page size (+1), then `status`
/// as `$5` when given.
fn values(
    org_id: i64,
    customer_id: Uuid,
    cursor: Option<Uuid>,
    limit: u64,
    status: Option<&str>,
) -> (Vec<Value>, &'static str) {
    let mut values = vec![
        org_id.into(),
        customer_id.into(),
        before(cursor),
        page_fetch(limit),
    ];
    let filter = match status {
        Some(s) => {
            values.push(s.into());
            " = $5"
        }
        None => "",
    };
    (values, filter)
}

async fn with_balances<R: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<(R, Totals)>, PersistenceError> {
    let rows: Vec<QueryResult> = conn.query_all_raw(stmt(conn, sql, values)).await?;
    rows.iter()
        .map(|r| {
            Ok((
                R::from_query_result(r, "")?,
                Totals::from_query_result(r, "b_")?,
            ))
        })
        .collect()
}

/// The statement of a page of the customer's rows of the table `from` (aliased `alias`, its
/// `columns`) with their balances, newest first, before `$3`, at most `$4`, `filter` on their
/// status when not empty.
fn newest_first(alias: &str, columns: &str, from: &str, filter: &str) -> String {
    let status = if filter.is_empty() {
        String::new()
    } else {
        format!(" AND {alias}.status{filter}")
    };
    format!(
        "SELECT {columns}, {BALANCE} {from} {} WHERE {alias}.org_id = $1 \
         AND {alias}.customer_id = $2{status} AND {alias}.id < $3 ORDER BY {alias}.id DESC LIMIT $4",
        balance_join(alias),
    )
}

/// The customer's holds (only those of `status` when given), newest first, before `cursor`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn holds_of<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    status: Option<&str>,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Page<(HoldRow, Totals), Uuid>, PersistenceError> {
    let (values, filter) = values(org_id, customer_id, cursor, limit, status);
    let sql = newest_first("h", crate::holds::COLUMNS, crate::holds::FROM, filter);
    let rows = with_balances(conn, &sql, values).await?;
    Ok(Page::from_rows(rows, limit, |(h, _)| h.id))
}

/// The customer's allocations (only those of `status` when given), newest first, before
/// `cursor`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn allocations_of<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    status: Option<&str>,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Page<(AllocationRow, Totals), Uuid>, PersistenceError> {
    let (values, filter) = values(org_id, customer_id, cursor, limit, status);
    let sql = newest_first(
        "a",
        crate::allocations::COLUMNS,
        crate::allocations::FROM,
        filter,
    );
    let rows = with_balances(conn, &sql, values).await?;
    Ok(Page::from_rows(rows, limit, |(a, _)| a.id))
}

/// A transfer, as one of its two customers sees it.
#[derive(Debug, Clone, FromQueryResult)]
pub struct TransferRow {
    pub id: Uuid,
    pub unique_id: String,
    pub from_customer_id: Uuid,
    pub to_customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    pub amount: i64,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The currency's scale, joined in.
    pub scale: i16,
}

/// The transfers the customer sent or received, newest first, before `cursor`: the newest of
/// each side (each through its own index), merged. A transfer never has one customer on both
/// sides.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn transfers_of<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<Page<TransferRow, Uuid>, PersistenceError> {
    let (values, _) = values(org_id, customer_id, cursor, limit, None);
    let side = |column: &str, alias: &str| {
        format!(
            "SELECT * FROM (SELECT t.id, t.unique_id, t.from_customer_id, t.to_customer_id, \
             t.program_id, t.currency, t.amount, t.reason, t.created_at, pc.scale \
             FROM transfers t JOIN program_currencies pc ON pc.org_id = t.org_id \
             AND pc.program_id = t.program_id AND pc.code = t.currency \
             WHERE t.org_id = $1 AND t.{column} = $2 AND t.id < $3 \
             ORDER BY t.id DESC LIMIT $4) AS {alias}"
        )
    };
    let sql = format!(
        "{} UNION ALL {} ORDER BY id DESC LIMIT $4",
        side("from_customer_id", "sent"),
        side("to_customer_id", "received")
    );
    let rows = TransferRow::find_by_statement(stmt(conn, &sql, values))
        .all(conn)
        .await?;
    Ok(Page::from_rows(rows, limit, |t| t.id))
}
