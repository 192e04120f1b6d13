//! A program's liability in one currency: what its customers hold now, what of it expires
//! month by month, and what its ledger recorded month by month. Sums in SQL, within one
//! organisation, program and currency, through the indexes `ledger_entries_program_time_idx`
//! and `ledger_entries_program_lots_idx` (lots with points left).
//!
//! Months are calendar months in UTC, written `YYYY-MM`: `to_char(… AT TIME ZONE 'UTC')` on
//! PostgreSQL, `strftime` on SQLite (which keeps timestamps as UTC text).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult};

use crate::ledger::Totals;
use crate::{PersistenceError, stmt};

/// What the balances of the program's accounts in the currency add up to.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn outstanding<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    currency: &str,
) -> Result<Totals, PersistenceError> {
    Ok(Totals::find_by_statement(stmt(
        conn,
        "SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) AS available, \
         CAST(COALESCE(SUM(pending), 0) AS BIGINT) AS pending, \
         CAST(COALESCE(SUM(held), 0) AS BIGINT) AS held \
         FROM balances WHERE org_id = $1 AND program_id = $2 AND currency = $3",
        vec![org_id.into(), program_id.into(), currency.into()],
    ))
    .one(conn)
    .await?
    .unwrap_or_default())
}

/// `column` as its month, `YYYY-MM` in UTC.
fn month_of<C: ConnectionTrait>(conn: &C, column: &str) -> String {
    if conn.get_database_backend() == DbBackend::Postgres {
        format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')")
    } else {
        format!("strftime('%Y-%m', {column})")
    }
}

/// A sum for one month (and one kind of entry, where it applies).
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct MonthSum {
    /// `YYYY-MM`.
    pub month: String,
    /// The entries' kind; empty for the lots.
    pub kind: String,
    pub amount: i64,
}

/// What the lots with points left (held parts included) that expire in `[from, to)` hold,
/// by the month they expire in. Months without such lots are absent.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn expiring_by_month<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    currency: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<MonthSum>, PersistenceError> {
    let month = month_of(conn, "expires_at");
    Ok(MonthSum::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {month} AS month, '' AS kind, CAST(SUM(remaining) AS BIGINT) AS amount \
             FROM ledger_entries WHERE org_id = $1 AND program_id = $2 AND currency = $3 \
             AND remaining > 0 AND expires_at >= $4 AND expires_at < $5 \
             GROUP BY {month} ORDER BY 1"
        ),
        vec![
            org_id.into(),
            program_id.into(),
            currency.into(),
            from.into(),
            to.into(),
        ],
    ))
    .all(conn)
    .await?)
}

/// The amounts of the ledger entries written in `[from, to)`, by month and kind (only the
/// kinds that move points into or out of the program's accounts: not `HOLD`, `RELEASE` or
/// `TRANSFER_IN`, whose transfer is counted by its `TRANSFER_OUT`).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn ledger_by_month<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    currency: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<MonthSum>, PersistenceError> {
    let month = month_of(conn, "created_at");
    Ok(MonthSum::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {month} AS month, kind, CAST(SUM(amount) AS BIGINT) AS amount \
             FROM ledger_entries WHERE org_id = $1 AND program_id = $2 AND currency = $3 \
             AND created_at >= $4 AND created_at < $5 \
             AND kind IN ('CREDIT', 'DEBIT', 'EXPIRE', 'REVERSAL', 'TRANSFER_OUT') \
             GROUP BY {month}, kind ORDER BY 1, 2"
        ),
        vec![
            org_id.into(),
            program_id.into(),
            currency.into(),
            from.into(),
            to.into(),
        ],
    ))
    .all(conn)
    .await?)
}
