//! `BENCH_GROWTH`: the tables an allocation writes, filled in SQL.

use super::*;

/// The tables an allocation writes to, which `BENCH_GROWTH` fills.
pub(crate) const GROWTH_TABLES: [&str; 3] =
    ["idempotency_records", "allocations", "ledger_entries"];

/// How long each phase of the growth fill took.
pub(crate) struct GrowthTimes {
    pub(crate) fill: Duration,
    pub(crate) indexes: Duration,
    pub(crate) indexes_rebuilt: usize,
}

/// Fills `idempotency_records`, `allocations` and `ledger_entries` with `rows` completed
/// allocations of the benchmark's program, spread over its customers, and adds their credits
/// to the balances (so the ledger invariant holds): one statement per [`GROWTH_CHUNK`] rows,
/// each in a transaction of its own.
///
/// The rows are what the service writes for an allocation, of the same sizes: random-UUID
/// keys, time-ordered allocation ids, a request fingerprint and fields, and a ~500-byte stored
/// outcome (its ids and amounts per row, the rest the same text for all). They are dated one
/// second apart up to now, in that order, and expire 365 days after that, so the expiry
/// worker leaves them alone.
///
/// The three tables' secondary indexes (those not backing a constraint) are dropped first and
/// built again from their saved definitions afterwards: inserting 10 million random keys into
/// indexes far larger than `shared_buffers` takes much longer than sorting them once. (The
/// rebuilt indexes are therefore compact, as after a `REINDEX`.)
pub(crate) async fn grow(
    conn: &DatabaseConnection,
    ctx: &Ctx,
    org_id: i64,
    rows: u64,
) -> Result<GrowthTimes, sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    let (program, award, expiry) = (ctx.program_id, ctx.award_id, ctx.expiry_id);
    let number = |text: String, what: &str| {
        text.parse::<i64>()
            .map_err(|e| sea_orm::DbErr::Custom(format!("{what}: {text:?}: {e}")))
    };
    let tables = GROWTH_TABLES
        .iter()
        .map(|t| format!("'{t}'::regclass"))
        .collect::<Vec<_>>()
        .join(", ");
    let indexes: Vec<(String, String)> = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 WHERE i.indrelid IN ({tables}) \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
                 ORDER BY 1"
            ),
        ))
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    for (name, _) in &indexes {
        exec(conn, &format!("DROP INDEX {name}")).await?;
    }

    let started = Instant::now();
    let epoch = number(
        query_text(conn, "SELECT extract(epoch FROM now())::bigint::text").await?,
        "epoch",
    )?;
    let mut done = 0u64;
    while done < rows {
        let from = done + 1;
        let to = (done + GROWTH_CHUNK).min(rows);
        let n = to - from + 1;
        let chunk_started = Instant::now();
        let tx = conn.begin().await?;
        // A block of ledger ids, reserved in one go (nextval per row is slow).
        let last = number(
            query_text(
                &tx,
                &format!(
                    "SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'), \
                       nextval(pg_get_serial_sequence('ledger_entries', 'id')) + {n} - 1)::text"
                ),
            )
            .await?,
            "ledger id block",
        )?;
        let first_entry = last - n as i64 + 1;
        let sql = format!(
            "WITH customer_ids AS MATERIALIZED ( \
               SELECT array_agg(id ORDER BY mobile) AS ids FROM customers \
               WHERE org_id = {org_id} AND mobile LIKE '9190000_____'), \
             r AS MATERIALIZED ( \
               SELECT i, \
                 (SELECT ids[1 + i % {CUSTOMERS}] FROM customer_ids) AS customer_id, \
                 'mobile:9190000' || lpad((i % {CUSTOMERS})::text, 5, '0') AS customer, \
                 gen_random_uuid()::text AS key, \
                 {first_entry} + i - {from} AS entry_id, \
                 (i * 7919) % 10000 + 1 AS source_value, \
                 ((i * 7919) % 10000 + 1) * 10 AS amount, \
                 to_timestamp({epoch} - {rows} + i) AS at, \
                 encode(overlay(uuid_send(gen_random_uuid()) PLACING \
                   substring(int8send(({epoch} - {rows} + i) * 1000) FROM 3) FROM 1 FOR 6), 'hex')::uuid \
                   AS allocation_id \
               FROM generate_series({from}::bigint, {to}::bigint) AS i), \
             ledger AS ( \
               INSERT INTO ledger_entries (id, org_id, customer_id, program_id, currency, kind, amount, \
                 balance_after, reference, remaining, expires_at, created_at) \
               SELECT entry_id, {org_id}, customer_id, {program}, 'POINTS', 'CREDIT', amount, amount, \
                 'allocation:' || key, amount, at + interval '365 days', at FROM r), \
             alloc AS ( \
               INSERT INTO allocations (id, org_id, unique_id, customer_id, program_id, currency, amount, \
                 source_value, award_strategy_id, expiry_strategy_id, event_name, event_source_id, \
                 ledger_entry_id, expires_at, created_at) \
               SELECT allocation_id, {org_id}, key, customer_id, {program}, 'POINTS', amount, \
                 source_value::text, {award}, {expiry}, 'TransactionAdd', 'BILL123', entry_id, \
                 at + interval '365 days', at FROM r), \
             records AS ( \
               INSERT INTO idempotency_records (org_id, operation, key, fingerprint, request_fields, \
                 status_code, response, resource_id, created_at) \
               SELECT {org_id}, 'currency-allocation', key, md5(key) || md5(customer || key), \
                 ('{{\"awardStrategyId\": \"{award}\", \"customer\": \"' || customer || \
                  '\", \"eventName\": \"TransactionAdd\", \"eventSourceId\": \"BILL123\", \
                  \"expiryStrategyId\": \"{expiry}\", \"programId\": \"{program}\", \"sourceValue\": \"' \
                  || source_value || '\"}}')::jsonb, \
                 201, \
                 ('{{\"allocationId\": \"' || allocation_id || '\", \"uniqueId\": \"' || key || \
                  '\", \"customerId\": \"' || customer_id || '\", \"programId\": {program}, \
                  \"awardStrategyId\": {award}, \"expiryStrategyId\": {expiry}, \"currency\": \"POINTS\", \
                  \"amount\": \"' || to_char(amount / 100.0, 'FM999999990.00') || '\", \
                  \"sourceValue\": \"' || source_value || '\", \
                  \"expiresAt\": \"2027-11-22T10:15:30.123456Z\", \"eventName\": \"TransactionAdd\", \
                  \"eventSourceId\": \"BILL123\", \"ledgerEntryId\": \"' || entry_id || '\", \
                  \"createdAt\": \"2026-11-22T10:15:30.123456Z\", \"reversedAt\": null, \
                  \"balance\": {{\"available\": \"48211.70\"}}}}')::jsonb, \
                 allocation_id::text, at FROM r), \
             balance AS ( \
               INSERT INTO balances (org_id, customer_id, program_id, currency, available, updated_at) \
               SELECT {org_id}, customer_id, {program}, 'POINTS', sum(amount), now() FROM r \
               GROUP BY customer_id \
               ON CONFLICT (org_id, customer_id, program_id, currency) \
               DO UPDATE SET available = balances.available + excluded.available, \
                 updated_at = excluded.updated_at) \
             SELECT count(*)::text FROM r"
        );
        let written = query_text(&tx, &sql).await?;
        tx.commit().await?;
        done = to;
        eprintln!(
            "growth: {done}/{rows} rows ({written} in {:.1} s)",
            chunk_started.elapsed().as_secs_f64()
        );
    }
    let fill = started.elapsed();

    let started = Instant::now();
    for (name, definition) in &indexes {
        let index_started = Instant::now();
        let tx = conn.begin().await?;
        exec(&tx, "SET LOCAL maintenance_work_mem = '1GB'").await?;
        exec(&tx, definition).await?;
        tx.commit().await?;
        eprintln!(
            "growth: index {name} rebuilt in {:.1} s",
            index_started.elapsed().as_secs_f64()
        );
    }
    Ok(GrowthTimes {
        fill,
        indexes: started.elapsed(),
        indexes_rebuilt: indexes.len(),
    })
}

/// The tests' ledger invariant over the whole database: accounts that break it.
pub(crate) async fn invariant_violations(conn: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    let sql = "WITH ledger AS ( \
          SELECT org_id, customer_id, program_id, currency, \
                 sum(CASE WHEN kind = 'CREDIT' THEN amount ELSE -amount END) AS net, \
                 sum(COALESCE(remaining, 0)) AS lots \
          FROM ledger_entries GROUP BY org_id, customer_id, program_id, currency) \
        SELECT count(*)::text FROM balances b FULL JOIN ledger l USING (org_id, customer_id, program_id, currency) \
        WHERE COALESCE(b.available, -1) <> COALESCE(l.net, 0) OR COALESCE(b.available, -1) <> COALESCE(l.lots, 0)";
    let n = query_text(conn, sql).await?;
    n.parse()
        .map_err(|e| sea_orm::DbErr::Custom(format!("count: {e}")))
}
