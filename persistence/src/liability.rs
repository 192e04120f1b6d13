//! A program's liability in one currency: what its customers hold now (the sum of its
//! accounts' balances), what of it expires month by month, and what its ledger recorded month
//! by month. The last two are read from the sums the ledger's triggers keep
//! (`ledger_month_sums`, `lot_month_sums`: see the migration that creates them), so a read
//! adds up a few rows per month whatever the size of the ledger; [`merge`] folds the deltas
//! the triggers append into one row per key.
//!
//! Months are calendar months in UTC, written `YYYY-MM`: `to_char(… AT TIME ZONE 'UTC')` on
//! PostgreSQL, `strftime` on SQLite (which keeps timestamps as UTC text).

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult};

use crate::ledger::Totals;
use crate::{Db, PersistenceError, stmt};

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

/// A sum for one month (and one kind of entry, where it applies).
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct MonthSum {
    /// `YYYY-MM`.
    pub month: String,
    /// The entries' kind; empty for the lots.
    pub kind: String,
    pub amount: i64,
}

/// What the lots with points left (held parts included) that expire in the months `from` to
/// `to` (`YYYY-MM`, `to` excluded) hold, by month. Months whose lots hold nothing are absent.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn expiring_by_month<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    currency: &str,
    from: &str,
    to: &str,
) -> Result<Vec<MonthSum>, PersistenceError> {
    month_sums(
        conn,
        "SELECT month, '' AS kind, CAST(SUM(remaining) AS BIGINT) AS amount \
         FROM lot_month_sums WHERE org_id = $1 AND program_id = $2 AND currency = $3 \
         AND month >= $4 AND month < $5 \
         GROUP BY month HAVING SUM(remaining) <> 0 ORDER BY 1",
        [org_id, program_id],
        currency,
        [from, to],
    )
    .await
}

/// The amounts of the ledger entries written in the months `from` to `to` (`YYYY-MM`, `to`
/// excluded), by month and kind (only the kinds that move points into or out of the
/// program's accounts: not `HOLD`, `RELEASE` or `TRANSFER_IN`, whose transfer is counted by
/// its `TRANSFER_OUT`).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn ledger_by_month<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    currency: &str,
    from: &str,
    to: &str,
) -> Result<Vec<MonthSum>, PersistenceError> {
    month_sums(
        conn,
        "SELECT month, kind, CAST(SUM(amount) AS BIGINT) AS amount \
         FROM ledger_month_sums WHERE org_id = $1 AND program_id = $2 AND currency = $3 \
         AND month >= $4 AND month < $5 \
         AND kind IN ('CREDIT', 'DEBIT', 'EXPIRE', 'REVERSAL', 'TRANSFER_OUT') \
         GROUP BY month, kind HAVING SUM(amount) <> 0 ORDER BY 1, 2",
        [org_id, program_id],
        currency,
        [from, to],
    )
    .await
}

/// The rows of `sql`, whose parameters are the organisation and program ($1, $2), the
/// currency ($3) and the months from and to ($4, $5).
async fn month_sums<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    [org_id, program_id]: [i64; 2],
    currency: &str,
    [from, to]: [&str; 2],
) -> Result<Vec<MonthSum>, PersistenceError> {
    let values = vec![
        org_id.into(),
        program_id.into(),
        currency.into(),
        from.into(),
        to.into(),
    ];
    Ok(MonthSum::find_by_statement(stmt(conn, sql, values))
        .all(conn)
        .await?)
}

/// The two tables of sums and the columns that make a key of each, besides `org_id`,
/// `program_id`, `currency` and `month`.
const SUMS: [(&str, &str, &str); 2] = [
    ("ledger_month_sums", "kind, ", "amount"),
    ("lot_month_sums", "", "remaining"),
];

/// Merges the deltas the ledger's triggers appended: for up to `keys` keys (organisation,
/// program, currency, month and, for the ledger's sums, kind) with unmerged rows in each table,
/// all their rows become one merged row (none when they add up to nothing). Returns how many
/// keys it merged in the two tables.
///
/// On PostgreSQL one statement per table deletes the rows and writes their sum, so
/// [`expiring_by_month`] and [`ledger_by_month`] read the same total before and after, and
/// deltas appended meanwhile (not in the statement's snapshot) are left for the next round.
/// Two instances merging at once do not count a row twice: the second one's delete waits for
/// the first's and skips the rows it deleted. On SQLite (one writer) a transaction merges every
/// row written before it began.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn merge(db: &Db, keys: u64) -> Result<u64, PersistenceError> {
    let mut merged = 0;
    for (table, kind, value) in SUMS {
        let key = format!("org_id, program_id, currency, month, {kind}");
        let key = key.trim_end_matches(", ");
        if db.conn().get_database_backend() == DbBackend::Postgres {
            let matches = key
                .split(", ")
                .map(|c| format!("s.{c} = k.{c}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let sql = format!(
                "WITH k AS (SELECT DISTINCT {key} FROM {table} WHERE NOT merged LIMIT $1), \
                 gone AS (DELETE FROM {table} s USING k WHERE {matches} RETURNING s.*), \
                 sums AS (INSERT INTO {table} ({key}, {value}, merged) \
                   SELECT {key}, SUM({value}), TRUE FROM gone GROUP BY {key} HAVING SUM({value}) <> 0) \
                 SELECT count(*) AS n FROM k"
            );
            let conn = db.conn();
            let row = conn
                .query_one_raw(stmt(conn, &sql, vec![crate::limit_value(keys)]))
                .await?;
            merged += row
                .map(|r| r.try_get::<i64>("", "n"))
                .transpose()?
                .unwrap_or(0) as u64;
        } else {
            let tx = db.begin().await?;
            let row = tx
                .query_one_raw(stmt(
                    &tx,
                    &format!(
                        "SELECT COALESCE(MAX(rowid), 0) AS last, \
                         (SELECT count(*) FROM (SELECT DISTINCT {key} FROM {table} WHERE NOT merged)) AS n \
                         FROM {table}"
                    ),
                    vec![],
                ))
                .await?;
            let (last, n) = match row {
                Some(r) => (r.try_get::<i64>("", "last")?, r.try_get::<i64>("", "n")?),
                None => (0, 0),
            };
            if n > 0 {
                tx.execute_raw(stmt(
                    &tx,
                    &format!(
                        "INSERT INTO {table} ({key}, {value}, merged) \
                         SELECT {key}, SUM({value}), TRUE FROM {table} WHERE rowid <= $1 \
                         GROUP BY {key} HAVING SUM({value}) <> 0"
                    ),
                    vec![last.into()],
                ))
                .await?;
                tx.execute_raw(stmt(
                    &tx,
                    &format!("DELETE FROM {table} WHERE rowid <= $1"),
                    vec![last.into()],
                ))
                .await?;
            }
            tx.commit().await?;
            merged += n as u64;
        }
    }
    Ok(merged)
}
