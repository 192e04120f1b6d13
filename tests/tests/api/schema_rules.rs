//! The schema rules that let `org_id` become the distribution column of a distributed
//! PostgreSQL (docs/SCALING.md), read from the catalogs of a freshly migrated database:
//!
//! - every table is a tenant table (it has an `org_id` column) or is named in [`GLOBAL`];
//! - every primary key and unique index (unique constraints and partial unique indexes
//!   included) of a tenant table starts with `org_id`;
//! - every foreign key between two tenant tables pairs `org_id` with `org_id`.
//!
//! Today's schema breaks these rules in known places, listed with their reason in
//! [`KNOWN`]: anything else fails, and so does an entry of [`KNOWN`] that no longer breaks a
//! rule (remove it), so the list stays exactly what is left to change.

use std::collections::BTreeSet;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

/// Tables without `org_id`, deliberately.
const GLOBAL: &[(&str, &str)] = &[
    (
        "organisations",
        "the tenants themselves: their `id` is the `org_id` of every other row",
    ),
    ("seaql_migrations", "sea-orm's migration bookkeeping"),
];

/// Every primary key drawn from a global sequence or a random uuid, alone: the key must become
/// `(org_id, id)` (with the foreign keys that point at it) before the table can be distributed.
const ID_KEY: &str = "surrogate key alone; must become (org_id, …) before distribution";
/// `api_keys` is to be a reference table (copied to every node): a request's key is found by
/// its prefix before its organisation is known.
const REFERENCE: &str = "api_keys is a reference table: a key is found by its prefix alone";
/// A foreign key on the surrogate key alone: must become `(org_id, …) → (org_id, id)`.
const FK_ID: &str = "references the surrogate key alone; must pair org_id with org_id";

/// `hold_lots` (which lots a hold earmarked) has no `org_id`: it must get one, first in its key.
const NO_ORG: &str = "tenant data without org_id; must get it, first in its key";

/// Today's known breaks of the rules: (rule, table, index or constraint, why).
#[rustfmt::skip]
const KNOWN: &[(Rule, &str, &str, &str)] = &[
    (Rule::NoOrgId,    "hold_lots",           "hold_lots",                          NO_ORG),
    (Rule::Key,        "api_keys",            "api_keys_pkey",                      REFERENCE),
    (Rule::Key,        "api_keys",            "api_keys_prefix_key",                REFERENCE),
    (Rule::Key,        "allocations",         "allocations_pkey",                   ID_KEY),
    (Rule::Key,        "award_strategies",    "award_strategies_pkey",              ID_KEY),
    (Rule::Key,        "customers",           "customers_pkey",                     ID_KEY),
    (Rule::Key,        "expiry_strategies",   "expiry_strategies_pkey",             ID_KEY),
    (Rule::Key,        "holds",               "holds_pkey",                         ID_KEY),
    (Rule::Key,        "idempotency_records", "idempotency_records_pkey",           ID_KEY),
    (Rule::Key,        "issuances",           "issuances_pkey",                     ID_KEY),
    (Rule::Key,        "issuances",           "issuances_id_key",                   ID_KEY),
    (Rule::Key,        "ledger_entries",      "ledger_entries_pkey",                ID_KEY),
    (Rule::Key,        "programs",            "programs_pkey",                      ID_KEY),
    (Rule::Key,        "redemptions",         "redemptions_pkey",                   ID_KEY),
    (Rule::Key,        "rewards",             "rewards_pkey",                       ID_KEY),
    (Rule::Key,        "transfers",           "transfers_pkey",                     ID_KEY),
    (Rule::Key,        "vouchers",            "vouchers_pkey",                      ID_KEY),
    (Rule::Key,        "webhook_endpoints",   "webhook_endpoints_pkey",             ID_KEY),
    (Rule::Key,        "webhook_events",      "webhook_events_pkey",                ID_KEY),
    (Rule::Key,        "webhook_events",      "webhook_events_id_key",              ID_KEY),
    (Rule::ForeignKey, "allocations",         "allocations_customer_id_fkey",       FK_ID),
    (Rule::ForeignKey, "award_strategies",    "award_strategies_program_id_fkey",   FK_ID),
    (Rule::ForeignKey, "expiry_strategies",   "expiry_strategies_program_id_fkey",  FK_ID),
    (Rule::ForeignKey, "issuances",           "issuances_reward_id_fkey",           FK_ID),
    (Rule::ForeignKey, "program_currencies",  "program_currencies_program_id_fkey", FK_ID),
    (Rule::ForeignKey, "rewards",             "rewards_program_id_fkey",            FK_ID),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    /// A table with no `org_id` that is not in [`GLOBAL`].
    NoOrgId,
    /// A primary key or unique index of a tenant table that does not start with `org_id`.
    Key,
    /// A foreign key between tenant tables that does not pair `org_id` with `org_id`.
    ForeignKey,
}

impl Rule {
    fn says(self) -> &'static str {
        match self {
            Rule::NoOrgId => "table without org_id",
            Rule::Key => "primary key or unique index not starting with org_id",
            Rule::ForeignKey => "foreign key between tenant tables without org_id = org_id",
        }
    }
}

/// One break of a rule, as the catalogs show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    rule: Rule,
    table: String,
    object: String,
    definition: String,
}

/// The tables of the current schema, with the attribute number of their `org_id` (if any).
const TABLES: &str = "SELECT c.oid, c.relname::text AS relname, \
       (SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'org_id' \
          AND NOT a.attisdropped) AS org_attnum \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition";

/// Every break of the rules in the database `conn` is connected to, in a stable order.
async fn violations(conn: &DatabaseConnection) -> Vec<Violation> {
    let no_org_id = format!(
        "WITH t AS ({TABLES}) SELECT relname AS table_name, relname AS object, \
           'no org_id column' AS definition FROM t WHERE org_attnum IS NULL"
    );
    // `indkey` is 0-based; 0 there is an expression, never `org_id`.
    let keys = format!(
        "WITH t AS ({TABLES}) SELECT t.relname AS table_name, i.relname::text AS object, \
           pg_get_indexdef(x.indexrelid) AS definition \
         FROM t JOIN pg_index x ON x.indrelid = t.oid JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE t.org_attnum IS NOT NULL AND x.indisunique AND x.indkey[0] <> t.org_attnum"
    );
    let foreign_keys = format!(
        "WITH t AS ({TABLES}) SELECT s.relname AS table_name, con.conname::text AS object, \
           pg_get_constraintdef(con.oid) AS definition \
         FROM pg_constraint con JOIN t s ON s.oid = con.conrelid JOIN t d ON d.oid = con.confrelid \
         WHERE con.contype = 'f' AND s.org_attnum IS NOT NULL AND d.org_attnum IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM unnest(con.conkey, con.confkey) AS k(src, dst) \
                           WHERE k.src = s.org_attnum AND k.dst = d.org_attnum)"
    );
    let mut out = Vec::new();
    for (rule, sql) in [
        (Rule::NoOrgId, no_org_id),
        (Rule::Key, keys),
        (Rule::ForeignKey, foreign_keys),
    ] {
        let rows = conn
            .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .expect("read the catalogs");
        for row in rows {
            let table: String = row.try_get("", "table_name").expect("table_name");
            if rule == Rule::NoOrgId && GLOBAL.iter().any(|(t, _)| *t == table) {
                continue;
            }
            out.push(Violation {
                rule,
                table,
                object: row.try_get("", "object").expect("object"),
                definition: row.try_get("", "definition").expect("definition"),
            });
        }
    }
    out.sort();
    out
}

/// `Err` naming every violation not in [`KNOWN`], and every entry of [`KNOWN`] that is no
/// longer a violation.
fn check(found: &[Violation]) -> Result<(), String> {
    let key = |rule: Rule, table: &str, object: &str| (rule, table.to_owned(), object.to_owned());
    let known: BTreeSet<_> = KNOWN.iter().map(|(r, t, o, _)| key(*r, t, o)).collect();
    let seen: BTreeSet<_> = found
        .iter()
        .map(|v| key(v.rule, &v.table, &v.object))
        .collect();
    let mut problems = Vec::new();
    for v in found {
        if !known.contains(&key(v.rule, &v.table, &v.object)) {
            problems.push(format!(
                "{}: table {}, {} ({})",
                v.rule.says(),
                v.table,
                v.object,
                v.definition
            ));
        }
    }
    for (rule, table, object, _) in KNOWN {
        if !seen.contains(&key(*rule, table, object)) {
            problems.push(format!(
                "listed as a known exception but no longer one (remove it from KNOWN): \
                 {}: table {table}, {object}",
                rule.says()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the schema breaks the distribution rules (org_id first; see docs/SCALING.md):\n  {}",
            problems.join("\n  ")
        ))
    }
}

async fn migrated() -> DatabaseConnection {
    Database::connect(tests::fresh_database().await)
        .await
        .expect("connect to the test database")
}

#[tokio::test]
async fn every_key_and_foreign_key_of_a_tenant_table_starts_with_org_id() {
    let conn = migrated().await;
    let found = violations(&conn).await;
    if let Err(message) = check(&found) {
        panic!("{message}");
    }
}

#[tokio::test]
async fn the_schema_rules_name_each_table_index_and_foreign_key_that_breaks_them() {
    let conn = migrated().await;
    for sql in [
        // Keyed by its id alone, with a unique index on a code, and a good key beside.
        "CREATE TABLE scratch_parent (id bigserial PRIMARY KEY, org_id bigint NOT NULL, \
           code text, UNIQUE (org_id, id))",
        "CREATE UNIQUE INDEX scratch_parent_code_key ON scratch_parent (code)",
        // A partial unique index with org_id, but not first.
        "CREATE UNIQUE INDEX scratch_parent_open_key ON scratch_parent (code, org_id) \
           WHERE code IS NOT NULL",
        // One foreign key on the id alone, one with org_id on one side only, one right.
        "CREATE TABLE scratch_child (org_id bigint NOT NULL, parent_id bigint NOT NULL, \
           other_org bigint NOT NULL, PRIMARY KEY (org_id, parent_id), \
           CONSTRAINT scratch_child_by_id FOREIGN KEY (parent_id) REFERENCES scratch_parent (id), \
           CONSTRAINT scratch_child_crossed FOREIGN KEY (other_org, parent_id) \
             REFERENCES scratch_parent (org_id, id), \
           CONSTRAINT scratch_child_good FOREIGN KEY (org_id, parent_id) \
             REFERENCES scratch_parent (org_id, id))",
        // No org_id at all.
        "CREATE TABLE scratch_orphan (id bigint PRIMARY KEY)",
    ] {
        conn.execute_unprepared(sql).await.expect(sql);
    }
    let found = violations(&conn).await;
    let message = check(&found).expect_err("the scratch tables break the rules");
    for named in [
        "table without org_id: table scratch_orphan, scratch_orphan",
        "not starting with org_id: table scratch_parent, scratch_parent_pkey",
        "not starting with org_id: table scratch_parent, scratch_parent_code_key",
        "not starting with org_id: table scratch_parent, scratch_parent_open_key",
        "without org_id = org_id: table scratch_child, scratch_child_by_id",
        "without org_id = org_id: table scratch_child, scratch_child_crossed",
    ] {
        assert!(message.contains(named), "{named} missing from:\n{message}");
    }
    for fine in [
        "scratch_parent_org_id_id_key",
        "scratch_child_pkey",
        "scratch_child_good",
    ] {
        assert!(!message.contains(fine), "{fine} reported:\n{message}");
    }
    // Only the scratch tables are new: today's known exceptions are not reported again.
    assert_eq!(
        message.lines().skip(1).count(),
        6,
        "exactly the six breaks above:\n{message}"
    );

    // A known exception that is gone is reported too, so the list cannot outlive the fix.
    let without_hold_lots: Vec<Violation> = found
        .into_iter()
        .filter(|v| !v.table.starts_with("scratch_") && v.table != "hold_lots")
        .collect();
    let message = check(&without_hold_lots).expect_err("a stale known exception");
    assert!(
        message.contains(
            "no longer one (remove it from KNOWN): table without org_id: table hold_lots"
        ),
        "{message}"
    );
}
