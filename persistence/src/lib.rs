//! Persistence: the database connection, the transaction boundary, one repository module per
//! aggregate, and the idempotency store.
//!
//! Repository functions take the caller's connection or transaction (`&impl ConnectionTrait`)
//! and never open their own, so that writes which belong together (an idempotency record, a
//! ledger entry, a balance) share one transaction.
//!
//! Writes that guard an invariant are single conditional SQL statements (`INSERT … ON CONFLICT`,
//! `UPDATE … WHERE available >= $n`), never a read followed by a write in Rust. SQL is written
//! once for both backends (`$n` placeholders work on PostgreSQL and SQLite); what differs between
//! the backends lives in [`Db::begin`] and is named there.

pub mod allocations;
pub mod catalog;
pub mod customer_data;
pub mod customer_lists;
pub mod customers;
pub mod due;
pub mod earn_caps;
pub mod erasure;
mod error;
pub mod expiring;
pub mod holds;
pub mod idempotency;
pub mod issuances;
pub mod ledger;
pub mod liability;
pub mod lock_order;
pub mod orgs;
mod pool;
mod query;
pub mod redemptions;
pub mod reward_periods;
pub mod rewards;
pub mod transfers;
mod tx;
pub mod webhooks;

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, Statement, TransactionTrait, Value};

pub use error::PersistenceError;
pub use pool::Pool;
pub use query::Page;
pub(crate) use query::{Keyset, one_by_id, page, page_fetch};
/// What repository functions take: a pool or a transaction.
pub use sea_orm::{ConnectionTrait, DbBackend};
pub use tx::Tx;

/// How the pool behaves; every wait has a bound.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub max_connections: u32,
    /// How long a request waits for a free connection before it is answered 503.
    pub acquire_timeout: Duration,
    /// How long a transaction waits for a row lock (an idempotency key held by a concurrent
    /// request, say) before giving up.
    pub lock_wait: Duration,
    /// The name the connections give PostgreSQL (`pg_stat_activity.application_name`), so an
    /// operator can tell the service's backends from others.
    pub application_name: &'static str,
    /// How long a group-commit batch waits for a row lock before it gives up, so that a lock
    /// held elsewhere (a slow or stuck transaction) costs the batch's requests a short wait,
    /// after which each runs alone with the full `lock_wait`. Batches take their connections
    /// from a pool of their own whose connections carry this `lock_timeout`.
    pub batch_lock_wait: Duration,
    /// Connections of the batches' own pool.
    pub batch_connections: u32,
    /// The longest any statement may run (`statement_timeout`); zero: no bound.
    pub statement_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            lock_wait: Duration::from_secs(5),
            application_name: "loyalty",
            batch_lock_wait: Duration::from_millis(200),
            batch_connections: 4,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// The database: a pool plus the few facts about its backend that SQL cannot hide.
#[derive(Clone, Debug)]
pub struct Db {
    conn: Pool,
    /// The group-commit batches' own connections: the same database, with the short
    /// `batch_lock_wait` as their `lock_timeout` (on SQLite, the one connection).
    batch: Pool,
    /// Transactions waiting in [`Db::begin`] for a connection.
    waiting: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Where and how it connected, for [`Db::open_reads`].
    url: Url,
    options: DbOptions,
}

/// A database URL, which may carry a password: never printed.
#[derive(Clone)]
struct Url(std::sync::Arc<str>);

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Url(…)")
    }
}

/// The pool right now, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub in_use: u32,
    pub idle: u32,
    /// Transactions waiting for a connection to begin.
    pub waiting: u32,
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://…`).
    ///
    /// SQLite gets a single connection: it has one writer anyway, and one connection makes every
    /// transaction wait its turn instead of failing with `SQLITE_BUSY`.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self, PersistenceError> {
        let sqlite = url.starts_with("sqlite:");
        let max_connections = if sqlite { 1 } else { options.max_connections };
        let conn = Self::open(url, options, max_connections, options.lock_wait).await?;
        if sqlite {
            conn.execute_unprepared("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
                .await?;
        }
        let batch = if sqlite {
            conn.clone()
        } else {
            Self::open(
                url,
                options,
                options.batch_connections.max(1),
                options.batch_lock_wait,
            )
            .await?
        };
        Ok(Self {
            conn: Pool::new(conn, max_connections, options.statement_timeout),
            batch: Pool::new(
                batch,
                options.batch_connections.max(1),
                options.statement_timeout,
            ),
            waiting: Default::default(),
            url: Url(url.into()),
            options: options.clone(),
        })
    }

    /// One pool of `max_connections` whose connections wait `lock_wait` for a lock.
    async fn open(
        url: &str,
        options: &DbOptions,
        max_connections: u32,
        lock_wait: Duration,
    ) -> Result<DatabaseConnection, PersistenceError> {
        let sqlite = url.starts_with("sqlite:");
        let mut opts = ConnectOptions::new(url.to_owned());
        let lock_timeout_ms = lock_wait.as_millis().max(1);
        let statement_timeout_ms = options.statement_timeout.as_millis();
        let application_name = options.application_name;
        opts.max_connections(max_connections)
            .min_connections(if sqlite { 1 } else { 0 })
            .acquire_timeout(options.acquire_timeout)
            .connect_timeout(options.acquire_timeout)
            // A connection idle for a second may have been cut (a restarted server, a proxy):
            // ping it before use. A busy one is not pinged, which would cost a round trip per
            // request; if the server had closed it, its statement is sent again on another
            // connection (`Pool`), and any other break fails as `Unavailable` (503).
            .test_before_acquire_if_idle_for(Duration::from_secs(1))
            // Every wait is bounded, set once per connection in its start-up packet rather
            // than by a `SET LOCAL` (a round trip) in every transaction: a lock wait, a
            // statement, and (on the server's side of a TCP connection) a peer that went
            // silent, so a half-open connection does not keep its transaction's locks for
            // the kernel's two hours.
            .map_sqlx_postgres_opts(move |o| {
                o.application_name(application_name).options([
                    ("lock_timeout", format!("{lock_timeout_ms}ms")),
                    ("statement_timeout", format!("{statement_timeout_ms}ms")),
                    ("tcp_keepalives_idle", "30".to_owned()),
                    ("tcp_keepalives_interval", "10".to_owned()),
                    ("tcp_keepalives_count", "3".to_owned()),
                ])
            })
            .sqlx_logging(false);
        Database::connect(opts)
            .await
            .map_err(PersistenceError::from)
    }

    /// A pool of its own of `connections` for reads outside a transaction, on PostgreSQL
    /// (`None` on SQLite, whose one connection serves everything). Its connections are opened
    /// by the task that uses them, so their sockets belong to that task's runtime: a
    /// single-threaded runtime that opens one here reads its answers without waking another
    /// thread.
    pub async fn open_reads(&self, connections: u32) -> Result<Option<Pool>, PersistenceError> {
        if self.backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let connections = connections.max(1);
        let conn = Self::open(
            &self.url.0,
            &self.options,
            connections,
            self.options.lock_wait,
        )
        .await?;
        Ok(Some(Pool::new(
            conn,
            connections,
            self.options.statement_timeout,
        )))
    }

    /// Connections in use and idle, and transactions waiting for one.
    pub fn pool_state(&self) -> PoolState {
        use std::sync::atomic::Ordering;
        // The pool getters are chosen by the backend, so neither can meet the other's pool.
        let (size, idle) = match self.backend() {
            DbBackend::Postgres => {
                let pool = self.conn.inner().get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Sqlite => {
                let pool = self.conn.inner().get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        PoolState {
            in_use: size - idle,
            idle,
            waiting: u32::try_from(self.waiting.load(Ordering::Relaxed).max(0)).unwrap_or(0),
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// The pool, for reads outside a transaction.
    pub fn conn(&self) -> &Pool {
        &self.conn
    }

    /// Applies pending migrations. On PostgreSQL several instances may start at once: the
    /// migrations run in one transaction holding an advisory lock, so one instance applies them
    /// while the others wait, then find nothing left to do (PostgreSQL's DDL is transactional).
    pub async fn migrate(&self) -> Result<(), PersistenceError> {
        use migration::MigratorTrait;
        if self.backend() == DbBackend::Postgres {
            let tx = self.conn.inner().begin().await?;
            // Another instance may take a while to migrate: wait for it without a bound, and
            // let a long migration run.
            tx.execute_unprepared("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")
                .await?;
            tx.execute_unprepared("SELECT pg_advisory_xact_lock(7272740001)")
                .await?;
            migration::Migrator::up(&tx, None).await?;
            tx.commit().await?;
        } else {
            migration::Migrator::up(self.conn.inner(), None).await?;
        }
        Ok(())
    }

    /// `SELECT 1`: is the database there?
    pub async fn ping(&self) -> Result<(), PersistenceError> {
        self.conn.execute_unprepared("SELECT 1").await?;
        Ok(())
    }

    /// Starts a transaction. On PostgreSQL every lock wait is bounded by `lock_wait` (the
    /// connections' `lock_timeout`, set when they are opened), so a request blocked on a
    /// concurrent request's idempotency key gives up in bounded time. SQLite serialises writers
    /// through its single connection and needs no such setting. A `BEGIN` that meets a
    /// connection the server had closed is sent again on another (see [`Pool`]).
    pub async fn begin(&self) -> Result<Tx, PersistenceError> {
        self.begin_on(&self.conn).await
    }

    /// Starts a transaction for a group-commit batch: on PostgreSQL a connection of the
    /// batches' own pool, whose lock waits are `batch_lock_wait` (see [`DbOptions`]).
    pub async fn begin_batch(&self) -> Result<Tx, PersistenceError> {
        self.begin_on(&self.batch).await
    }

    async fn begin_on(&self, pool: &Pool) -> Result<Tx, PersistenceError> {
        use std::sync::atomic::{AtomicI64, Ordering};
        /// Counts the wait out when it ends, also when the caller gives up (a dropped future).
        struct Waiting<'a>(&'a AtomicI64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(&self.waiting);
        let tx = pool.retrying(|| pool.inner().begin()).await;
        drop(waiting);
        Ok(Tx::new(tx?))
    }

    /// Commits; a failure here leaves the outcome unknown, which callers must report as such.
    pub async fn commit(tx: Tx) -> Result<(), PersistenceError> {
        tx.commit().await.map_err(PersistenceError::commit)
    }

    pub async fn close(self) -> Result<(), PersistenceError> {
        self.conn.inner().clone().close().await?;
        if self.backend() == DbBackend::Postgres {
            self.batch.inner().clone().close().await?;
        }
        Ok(())
    }
}

/// A statement for whatever backend `conn` speaks.
pub(crate) fn stmt<C: ConnectionTrait>(conn: &C, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(conn.get_database_backend(), sql, values)
}

/// Runs `INSERT INTO table (columns) … tail` for `rows` and returns the rows of its
/// `RETURNING` (if any).
///
/// On PostgreSQL the rows travel as one JSON text parameter, unpacked by
/// `jsonb_populate_recordset(NULL::table, CAST($1 AS jsonb))`: the statement's text is the same whatever the
/// number of rows, so it is parsed and planned once per connection and then served from the
/// prepared-statement cache, and binding costs one parameter instead of rows × columns. A
/// 1000-row multi-row `VALUES` spent more time in Parse and Bind than in executing, and every
/// batch size was a statement of its own that pushed the others out of the cache. SQLite (and
/// any value a JSON text cannot carry faithfully) takes the multi-row `VALUES` form, in chunks
/// that stay under every backend's limit on bound parameters.
pub(crate) async fn insert_rows<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    columns: &str,
    tail: &str,
    rows: Vec<Vec<Value>>,
) -> Result<Vec<sea_orm::QueryResult>, PersistenceError> {
    insert_cells(conn, table, columns, tail, cells(rows)).await
}

/// [`insert_rows`] for rows that may hold JSON text ([`Cell::JsonText`]).
pub(crate) async fn insert_cells<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    columns: &str,
    tail: &str,
    rows: Vec<Vec<Cell>>,
) -> Result<Vec<sea_orm::QueryResult>, PersistenceError> {
    const MAX_PARAMS: usize = 30_000;
    let Some(width) = rows.first().map(Vec::len).filter(|w| *w > 0) else {
        return Ok(Vec::new());
    };
    let rows = if conn.get_database_backend() == DbBackend::Postgres {
        match rows_as_json(columns, rows) {
            Ok(json) => {
                let sql = json_insert(table, columns, 1, tail);
                return Ok(conn
                    .query_all_raw(stmt(conn, &sql, vec![Value::String(Some(json))]))
                    .await?);
            }
            Err(rows) => rows,
        }
    } else {
        rows
    };
    let rows = rows
        .into_iter()
        .map(|row| row.into_iter().map(Cell::into_value).collect())
        .collect::<Result<Vec<Vec<Value>>, _>>()?;
    let head = format!("INSERT INTO {table} ({columns}) VALUES");
    let mut out = Vec::new();
    let per_chunk = (MAX_PARAMS / width).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_chunk).collect();
        let mut sql = String::with_capacity(head.len() + tail.len() + chunk.len() * width * 5);
        sql.push_str(&head);
        let mut values = Vec::with_capacity(chunk.len() * width);
        for (r, row) in chunk.into_iter().enumerate() {
            debug_assert_eq!(row.len(), width);
            sql.push_str(if r == 0 { " (" } else { ", (" });
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&(r * width + c + 1).to_string());
            }
            sql.push(')');
            values.extend(row);
        }
        sql.push(' ');
        sql.push_str(tail);
        out.extend(conn.query_all_raw(stmt(conn, &sql, values)).await?);
    }
    Ok(out)
}

/// `INSERT INTO table (columns) … tail` taking its rows from the JSON text parameter `$param`
/// (PostgreSQL; see [`insert_rows`]).
pub(crate) fn json_insert(table: &str, columns: &str, param: usize, tail: &str) -> String {
    format!(
        "INSERT INTO {table} ({columns}) SELECT {columns} \
         FROM jsonb_populate_recordset(NULL::{table}, CAST(${param} AS jsonb)) {tail}"
    )
}

/// A value of a row that [`insert_rows`] writes: a database value, or the JSON text of a
/// `json`/`jsonb` column's value, written into the rows' JSON as it is. An answer that is
/// stored and also sent is serialised once, as text, instead of being built as a tree,
/// cloned for the store and serialised again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Value(Value),
    /// Valid JSON text (as `serde_json` writes it); PostgreSQL refuses the whole statement
    /// otherwise.
    JsonText(String),
}

impl From<Value> for Cell {
    fn from(v: Value) -> Self {
        Self::Value(v)
    }
}

/// Rows of database values as rows of cells.
pub(crate) fn cells(rows: Vec<Vec<Value>>) -> Vec<Vec<Cell>> {
    rows.into_iter()
        .map(|row| row.into_iter().map(Cell::Value).collect())
        .collect()
}

impl Cell {
    /// The value to bind where the rows cannot travel as JSON (SQLite): JSON text is parsed.
    fn into_value(self) -> Result<Value, PersistenceError> {
        match self {
            Self::Value(v) => Ok(v),
            Self::JsonText(text) => serde_json::from_str::<serde_json::Value>(&text)
                .map(|v| Value::Json(Some(Box::new(v))))
                .map_err(|e| PersistenceError::Other(format!("a JSON cell: {e}"))),
        }
    }
}

/// The text `[{"column": value, …}, …]` for `jsonb_populate_recordset`, or the rows back when
/// a value has a type this does not translate (the caller then binds the values one by one).
///
/// The text is written straight from the values: building a `serde_json::Value` tree first
/// cost more than the database's insert (the driver clones a JSON parameter before encoding
/// it, then both copies are freed value by value; `perf` of a 1000-item issuance put 40% of
/// the server's CPU there).
pub(crate) fn rows_as_json(columns: &str, rows: Vec<Vec<Cell>>) -> Result<String, Vec<Vec<Cell>>> {
    use std::io::Write as _;
    let names: Vec<&str> = columns.split(',').map(str::trim).collect();
    let translatable = |v: &Cell| {
        matches!(
            v,
            Cell::JsonText(_)
                | Cell::Value(
                    Value::Bool(_)
                        | Value::SmallInt(_)
                        | Value::Int(_)
                        | Value::BigInt(_)
                        | Value::String(_)
                        | Value::Json(_)
                        | Value::ChronoDateTimeUtc(_)
                        | Value::Uuid(_)
                        | Value::Decimal(_)
                )
        )
    };
    if !rows
        .iter()
        .all(|row| row.len() == names.len() && row.iter().all(translatable))
    {
        return Err(rows);
    }
    let mut out: Vec<u8> = Vec::with_capacity(rows.len() * (names.len() * 24 + 2) + 2);
    let write_rows = |out: &mut Vec<u8>| -> Result<(), std::io::Error> {
        out.push(b'[');
        for (r, row) in rows.iter().enumerate() {
            out.extend_from_slice(if r == 0 { b"{" } else { b",{" });
            for (c, (name, value)) in names.iter().zip(row).enumerate() {
                if c > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, name)?;
                out.push(b':');
                let value = match value {
                    Cell::JsonText(text) => {
                        out.extend_from_slice(text.as_bytes());
                        continue;
                    }
                    Cell::Value(value) => value,
                };
                match value {
                    Value::Bool(Some(v)) => write!(out, "{v}")?,
                    Value::SmallInt(Some(v)) => write!(out, "{v}")?,
                    Value::Int(Some(v)) => write!(out, "{v}")?,
                    Value::BigInt(Some(v)) => write!(out, "{v}")?,
                    Value::String(Some(v)) => serde_json::to_writer(&mut *out, v)?,
                    Value::Json(Some(v)) => serde_json::to_writer(&mut *out, v)?,
                    // Microseconds, as PostgreSQL keeps them.
                    Value::ChronoDateTimeUtc(Some(t)) => write!(
                        out,
                        "\"{}\"",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    )?,
                    Value::Uuid(Some(u)) => write!(out, "\"{u}\"")?,
                    Value::Decimal(Some(d)) => write!(out, "\"{d}\"")?,
                    _ => out.extend_from_slice(b"null"),
                }
            }
            out.push(b'}');
        }
        out.push(b']');
        Ok(())
    };
    match write_rows(&mut out)
        .ok()
        .and_then(|()| String::from_utf8(out).ok())
    {
        Some(text) => Ok(text),
        None => Err(rows),
    }
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
pub(crate) fn in_list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` AND column NOT IN ($n, …)`, binding `skip` after the statement's other `values`, or
/// nothing at all when `skip` is empty (an empty `NOT IN ()` is not SQL): how a worker passes
/// over the rows it has already taken in this round.
pub(crate) fn and_not_in<T: Clone + Into<Value>>(
    column: &str,
    skip: &[T],
    values: &mut Vec<Value>,
) -> String {
    if skip.is_empty() {
        return String::new();
    }
    let list = in_list(values.len() + 1, skip.len());
    values.extend(skip.iter().cloned().map(Into::into));
    format!(" AND {column} NOT IN ({list})")
}

/// `($first, $first+1, …), (…), …`: `rows` as the rows of a `VALUES` list, their placeholders
/// numbered from `first` on, and the values they bind in the same order.
pub(crate) fn values_rows(
    first: usize,
    rows: impl IntoIterator<Item = Vec<Value>>,
) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut values = Vec::new();
    for row in rows {
        if !text.is_empty() {
            text.push_str(", ");
        }
        text.push('(');
        text.push_str(&in_list(first + values.len(), row.len()));
        text.push(')');
        values.extend(row);
    }
    (text, values)
}

/// A `LIMIT` as the value that binds it: a `BIGINT`, where a larger one is as good as none.
pub(crate) fn limit_value(limit: u64) -> Value {
    i64::try_from(limit).unwrap_or(i64::MAX).into()
}

/// `FOR UPDATE` where the backend has row locks (PostgreSQL); SQLite's single writer
/// serialises transactions without it.
pub(crate) fn for_update<C: ConnectionTrait>(conn: &C) -> &'static str {
    row_lock(conn, " FOR UPDATE")
}

/// `lock`, a row-locking clause (` FOR UPDATE SKIP LOCKED`, ` FOR KEY SHARE`), where the
/// backend has row locks, and nothing on SQLite, as for [`for_update`].
pub(crate) fn row_lock<C: ConnectionTrait>(conn: &C, lock: &'static str) -> &'static str {
    if conn.get_database_backend() == DbBackend::Postgres {
        lock
    } else {
        ""
    }
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
