//! A program's liability kept as sums while the ledger is written, so that finance's read
//! costs the same on ten million entries as on ten:
//!
//! - `ledger_month_sums`: the amounts of the ledger's entries by organisation, program,
//!   currency, month written (`YYYY-MM`, UTC) and kind;
//! - `lot_month_sums`: what the lots have left (`remaining`) by organisation, program, currency
//!   and month they expire in.
//!
//! Triggers on `ledger_entries` write them, so every path that writes the ledger (a batch of
//! allocations, a redemption, an expiry round, a hold's capture, a transfer, a reversal, a
//! bulk load in SQL) keeps them without knowing of them. The triggers only *append* a change
//! (a delta row, `merged = false`); they never update a sum in place. Two transactions that
//! write the same program's ledger therefore never wait on each other for a sum row, which a
//! running total updated in place would make them do, and the group commit's batches can
//! overlap. A worker merges the deltas of each key into one row (`merged = true`) within one
//! statement (`persistence::liability::merge`), and a read adds up what is there, merged or not.
//!
//! On PostgreSQL the triggers fire once per statement and read its transition tables, so a
//! batch of a thousand credits appends one row per month and kind, not a thousand. SQLite has
//! only row triggers: each entry appends its own delta (the embedded default's volumes are
//! small, and the worker merges them all the same).
//!
//! Each table has one index, the read's; the merge finds the unmerged rows by a scan of the
//! table, which merging keeps to about one row per key. A second index, for the merge, would
//! cost every writing statement one more index insert, on a leaf page every concurrent writer
//! of the program's month shares.
//!
//! The sums of the ledger already written are filled in before the triggers are created. The
//! two ledger indexes the liability read used to sum the entries themselves
//! (`ledger_entries_program_time_idx`, `ledger_entries_program_lots_idx`) have no reader left
//! and are dropped, so no ledger write pays for them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: &str = "
CREATE TABLE ledger_month_sums (
    org_id BIGINT NOT NULL,
    program_id BIGINT NOT NULL,
    currency VARCHAR(32) NOT NULL,
    month CHAR(7) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    amount BIGINT NOT NULL,
    merged BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX ledger_month_sums_program_idx
    ON ledger_month_sums (org_id, program_id, currency, month);
CREATE TABLE lot_month_sums (
    org_id BIGINT NOT NULL,
    program_id BIGINT NOT NULL,
    currency VARCHAR(32) NOT NULL,
    month CHAR(7) NOT NULL,
    remaining BIGINT NOT NULL,
    merged BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX lot_month_sums_program_idx
    ON lot_month_sums (org_id, program_id, currency, month);
";

/// The sums of what is already written, merged (`{month}`: the backend's month of a column).
fn backfill(month: fn(&str) -> String) -> String {
    let (written, expires) = (month("created_at"), month("expires_at"));
    format!(
        "INSERT INTO ledger_month_sums (org_id, program_id, currency, month, kind, amount, merged) \
         SELECT org_id, program_id, currency, {written}, kind, SUM(amount), TRUE \
         FROM ledger_entries GROUP BY org_id, program_id, currency, {written}, kind;
         INSERT INTO lot_month_sums (org_id, program_id, currency, month, remaining, merged) \
         SELECT org_id, program_id, currency, {expires}, SUM(remaining), TRUE \
         FROM ledger_entries WHERE expires_at IS NOT NULL AND remaining > 0 \
         GROUP BY org_id, program_id, currency, {expires};"
    )
}

fn pg_month(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')")
}

fn sqlite_month(column: &str) -> String {
    format!("strftime('%Y-%m', {column})")
}

/// One statement's entries as deltas: `{sign}` 1 for the rows it wrote, -1 for the rows it
/// replaced or deleted, from the transition table `{rows}`.
fn pg_deltas(rows: &str, sign: &str) -> String {
    format!(
        "SELECT org_id, program_id, currency, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, \
                kind, {sign} * amount AS amount, 0 AS remaining FROM {rows} \
         UNION ALL \
         SELECT org_id, program_id, currency, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM'), \
                NULL, 0, {sign} * remaining FROM {rows} \
         WHERE expires_at IS NOT NULL AND remaining > 0"
    )
}

/// The PostgreSQL trigger function for inserts: two plain `INSERT … SELECT … GROUP BY` over the
/// statement's new entries (measured with pgbench's one-allocation transactions, a few percent
/// cheaper than the general form below, which an insert does not need).
const PG_INSERT_FUNCTION: &str =
    "CREATE FUNCTION liability_sums_after_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO ledger_month_sums (org_id, program_id, currency, month, kind, amount)
    SELECT org_id, program_id, currency, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM'), kind,
           SUM(amount)
    FROM new_entries GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO lot_month_sums (org_id, program_id, currency, month, remaining)
    SELECT org_id, program_id, currency, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM'),
           SUM(remaining)
    FROM new_entries WHERE expires_at IS NOT NULL AND remaining > 0 GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER liability_sums_after_insert AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT
    EXECUTE FUNCTION liability_sums_after_insert();";

/// The PostgreSQL trigger function for `event` (an update or a delete), reading the
/// transition tables `sources` (table, sign).
fn pg_function(event: &str, sources: &[(&str, &str)]) -> String {
    let deltas = sources
        .iter()
        .map(|(rows, sign)| pg_deltas(rows, sign))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!(
        "CREATE FUNCTION liability_sums_after_{event}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    WITH d AS MATERIALIZED ({deltas}),
    flows AS (
        INSERT INTO ledger_month_sums (org_id, program_id, currency, month, kind, amount)
        SELECT org_id, program_id, currency, month, kind, SUM(amount) FROM d
        WHERE kind IS NOT NULL
        GROUP BY org_id, program_id, currency, month, kind HAVING SUM(amount) <> 0)
    INSERT INTO lot_month_sums (org_id, program_id, currency, month, remaining)
    SELECT org_id, program_id, currency, month, SUM(remaining) FROM d
    WHERE kind IS NULL
    GROUP BY org_id, program_id, currency, month HAVING SUM(remaining) <> 0;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER liability_sums_after_{event} AFTER {event} ON ledger_entries
    REFERENCING {referencing} FOR EACH STATEMENT
    EXECUTE FUNCTION liability_sums_after_{event}();",
        referencing = sources
            .iter()
            .map(|(rows, _)| {
                let age = if rows.starts_with("new") {
                    "NEW"
                } else {
                    "OLD"
                };
                format!("{age} TABLE AS {rows}")
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The SQLite statements of a trigger body that add (`sign` 1) or take away (-1) the entry
/// `row` (`NEW` or `OLD`).
fn sqlite_deltas(row: &str, sign: &str) -> String {
    format!(
        "INSERT INTO ledger_month_sums (org_id, program_id, currency, month, kind, amount) \
         VALUES ({row}.org_id, {row}.program_id, {row}.currency, strftime('%Y-%m', {row}.created_at), \
                 {row}.kind, {sign} * {row}.amount); \
         INSERT INTO lot_month_sums (org_id, program_id, currency, month, remaining) \
         SELECT {row}.org_id, {row}.program_id, {row}.currency, strftime('%Y-%m', {row}.expires_at), \
                {sign} * {row}.remaining \
         WHERE {row}.expires_at IS NOT NULL AND {row}.remaining > 0;"
    )
}

fn sqlite_triggers() -> String {
    let (add, take) = (sqlite_deltas("NEW", "1"), sqlite_deltas("OLD", "-1"));
    // An update appends a delta only when a column the sums read changed: most updates of a
    // lot change `remaining`, but an expiry notice only stamps `notified_at`.
    let changed = [
        "org_id",
        "program_id",
        "currency",
        "kind",
        "amount",
        "created_at",
        "remaining",
        "expires_at",
    ]
    .iter()
    .map(|c| format!("OLD.{c} IS NOT NEW.{c}"))
    .collect::<Vec<_>>()
    .join(" OR ");
    format!(
        "CREATE TRIGGER liability_sums_after_insert AFTER INSERT ON ledger_entries \
         BEGIN {add} END;
         CREATE TRIGGER liability_sums_after_update AFTER UPDATE ON ledger_entries \
         WHEN {changed} BEGIN {take} {add} END;
         CREATE TRIGGER liability_sums_after_delete AFTER DELETE ON ledger_entries \
         BEGIN {take} END;"
    )
}

/// The ledger indexes of the read that summed the entries: (name, columns, only the lots with
/// points left).
const OLD_INDEXES: [(&str, &str, bool); 2] = [
    (
        "ledger_entries_program_time_idx",
        "org_id, program_id, currency, created_at",
        false,
    ),
    (
        "ledger_entries_program_lots_idx",
        "org_id, program_id, currency, expires_at",
        true,
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, _, _) in OLD_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
        }
        db.execute_unprepared(TABLES).await?;
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared(&backfill(pg_month)).await?;
            db.execute_unprepared(PG_INSERT_FUNCTION).await?;
            db.execute_unprepared(&pg_function(
                "update",
                &[("new_entries", "1"), ("old_entries", "-1")],
            ))
            .await?;
            db.execute_unprepared(&pg_function("delete", &[("old_entries", "-1")]))
                .await?;
        } else {
            db.execute_unprepared(&backfill(sqlite_month)).await?;
            db.execute_unprepared(&sqlite_triggers()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for event in ["insert", "update", "delete"] {
            db.execute_unprepared(&format!(
                "DROP TRIGGER IF EXISTS liability_sums_after_{event}{}",
                if m.get_database_backend() == sea_orm::DbBackend::Postgres {
                    " ON ledger_entries"
                } else {
                    ""
                }
            ))
            .await?;
            if m.get_database_backend() == sea_orm::DbBackend::Postgres {
                db.execute_unprepared(&format!(
                    "DROP FUNCTION IF EXISTS liability_sums_after_{event}()"
                ))
                .await?;
            }
        }
        db.execute_unprepared("DROP TABLE lot_month_sums; DROP TABLE ledger_month_sums;")
            .await?;
        for (name, columns, live_lots) in OLD_INDEXES {
            let only = if live_lots {
                " WHERE remaining > 0"
            } else {
                ""
            };
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON ledger_entries ({columns}){only}"
            ))
            .await?;
        }
        Ok(())
    }
}
