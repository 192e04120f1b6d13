//! Reads of the same shape that many repositories make: one row of an organisation by its id,
//! and keyset pages. Written once, so that every list pages the same way (`limit + 1` rows
//! fetched to know whether another page follows, the cursor a column of the row).

use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use crate::{PersistenceError, limit_value, stmt};

/// A keyset page: the rows and the cursor of the next page, if there is one (an id, or the
/// uuid of the lists keyed by uuid).
#[derive(Debug, Clone)]
pub struct Page<T, K = i64> {
    pub items: Vec<T>,
    pub next_cursor: Option<K>,
}

impl<T, K> Page<T, K> {
    /// Builds a page from `limit + 1` rows fetched in order; `key` gives a row's cursor.
    pub(crate) fn from_rows(mut rows: Vec<T>, limit: u64, key: impl Fn(&T) -> K) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// `limit + 1`, so that a page knows whether another follows.
pub(crate) fn page_fetch(limit: u64) -> Value {
    limit_value(limit.saturating_add(1))
}

/// Which way a page runs from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyset {
    /// Oldest first, after the cursor (from the first row without one).
    After(Option<i64>),
    /// Newest first, before the cursor (from the newest row without one).
    Before(Option<i64>),
}

/// A page of what `select` reads (`SELECT … WHERE …`, binding `values` as `$1, $2, …`), in the
/// order of the column `cursor`: `limit` rows on from the keyset's cursor. `key` gives a row's
/// value of that column, the cursor of the next page.
pub(crate) async fn page<R: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    select: &str,
    mut values: Vec<Value>,
    cursor: &str,
    keyset: Keyset,
    limit: u64,
    key: impl Fn(&R) -> i64,
) -> Result<Page<R>, PersistenceError> {
    let (from, op, order) = match keyset {
        Keyset::After(after) => (after.unwrap_or(0), ">", ""),
        Keyset::Before(before) => (before.unwrap_or(i64::MAX), "<", " DESC"),
    };
    values.push(from.into());
    let at = values.len();
    values.push(page_fetch(limit));
    let sql = format!(
        "{select} AND {cursor} {op} ${at} ORDER BY {cursor}{order} LIMIT ${}",
        at + 1
    );
    let rows = R::find_by_statement(stmt(conn, &sql, values))
        .all(conn)
        .await?;
    Ok(Page::from_rows(rows, limit, key))
}

/// The row `id` of organisation `org_id` in `table`, as `columns`; another organisation's ids
/// are not found.
pub(crate) async fn one_by_id<R: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    columns: &str,
    table: &str,
    org_id: i64,
    id: impl Into<Value>,
) -> Result<Option<R>, PersistenceError> {
    Ok(R::find_by_statement(stmt(
        conn,
        &format!("SELECT {columns} FROM {table} WHERE org_id = $1 AND id = $2"),
        vec![org_id.into(), id.into()],
    ))
    .one(conn)
    .await?)
}
