//! The pool as repositories see it: a [`ConnectionTrait`] that takes a fresh connection when
//! the one it was given had already been dropped by the server.
//!
//! When PostgreSQL restarts, or an administrator (or a failover) terminates the service's
//! backends, the pool still holds their connections. Those idle for more than a second are
//! pinged before use and replaced; one used a moment ago is not (a ping per request would
//! cost a round trip each), so its next statement fails. A statement that fails because the
//! server had ended the connection *before* reading it cannot have had any effect, so it is
//! sent again on another connection: a request that never reached the database does not fail
//! because of a connection it could not know was dead. The proof is the server's own word:
//! a backend that is terminated sends `57P01` (admin shutdown), `57P02` (crash shutdown) or
//! `57P03` (cannot connect now) before it closes, and that message is what the next statement
//! reads. Any other failure (a connection cut in the middle of a statement) may have had an
//! effect and is reported as it is.
//!
//! Every statement sent through the pool is also given up by the service a second after the
//! server's own `statement_timeout` would have ended it: a server that stopped answering
//! (paused, or behind a half-open connection) cannot hold a request, or a writer, forever.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult};
use sea_orm::{RuntimeErr, Statement};

/// A pool whose statements outside a transaction are sent again when the server had closed
/// their connection before reading them (see the module's documentation).
#[derive(Clone, Debug)]
pub struct Pool {
    conn: DatabaseConnection,
    /// How many dead connections one statement may meet: every pooled one, and one more.
    retries: u32,
    /// How long the service waits for one statement's answer; `None`: without a bound.
    bound: Option<std::time::Duration>,
}

impl Pool {
    pub(crate) fn new(
        conn: DatabaseConnection,
        max_connections: u32,
        statement_timeout: std::time::Duration,
    ) -> Self {
        Self {
            conn,
            retries: max_connections.saturating_add(1),
            bound: (!statement_timeout.is_zero())
                .then(|| statement_timeout.saturating_add(std::time::Duration::from_secs(1))),
        }
    }

    /// The sea-orm connection underneath (for what takes a `DatabaseConnection` itself, such
    /// as the migrations), without the retry.
    pub fn inner(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Runs `attempt` until it succeeds, fails for another reason, or has met as many dead
    /// connections as the pool can hold.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, DbErr>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let mut tries = 0;
        loop {
            let result = match self.bound {
                Some(bound) => match tokio::time::timeout(bound, attempt()).await {
                    Ok(result) => result,
                    Err(_) => {
                        return Err(DbErr::Conn(RuntimeErr::Internal(format!(
                            "no answer from the database within {} ms",
                            bound.as_millis()
                        ))));
                    }
                },
                None => attempt().await,
            };
            match result {
                Err(e) if tries < self.retries && closed_before_sent(&e) => {
                    tries += 1;
                    tracing::info!(error = %e, "a pooled connection had been closed by the server; trying another");
                }
                other => return other,
            }
        }
    }
}

/// Whether the server had closed the connection before the statement reached it: it said so
/// with an admin-shutdown, crash-shutdown or cannot-connect-now error.
pub(crate) fn closed_before_sent(e: &DbErr) -> bool {
    let sqlx = match e {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        DbErr::Conn(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match sqlx.as_ref() {
        sea_orm::sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

#[sea_orm::prelude::async_trait::async_trait]
impl ConnectionTrait for Pool {
    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.retrying(|| self.conn.execute_raw(stmt.clone())).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.retrying(|| self.conn.execute_unprepared(sql)).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.retrying(|| self.conn.query_one_raw(stmt.clone()))
            .await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.retrying(|| self.conn.query_all_raw(stmt.clone()))
            .await
    }

    fn support_returning(&self) -> bool {
        self.conn.support_returning()
    }
}
