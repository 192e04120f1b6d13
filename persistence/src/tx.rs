//! The transaction repositories take: sea-orm's, with the [`LockOrder`] it has followed.

use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
    TransactionTrait,
};

use crate::lock_order::{LockOrder, Locks};

/// A database transaction and the locks it has taken, as far as their order is concerned.
pub struct Tx {
    inner: DatabaseTransaction,
    order: Arc<LockOrder>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("order", &self.order).finish()
    }
}

impl Tx {
    pub(crate) fn new(inner: DatabaseTransaction) -> Self {
        let enforce = inner.get_database_backend() == DbBackend::Postgres;
        Self {
            inner,
            order: Arc::new(LockOrder::new(enforce)),
        }
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        self.inner.commit().await
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.inner.rollback().await
    }

    /// A savepoint: a transaction inside this one, sharing its lock order (what it locks is
    /// held by this transaction once it is released).
    pub async fn savepoint(&self) -> Result<Tx, DbErr> {
        Ok(Tx {
            inner: self.inner.begin().await?,
            order: self.order.clone(),
        })
    }
}

impl Tx {
    /// What the transaction has locked, for declaring a deviation from the lock order.
    pub fn order(&self) -> &LockOrder {
        &self.order
    }
}

impl Locks for Tx {
    fn lock_order(&self) -> Option<&LockOrder> {
        Some(&self.order)
    }
}

#[sea_orm::prelude::async_trait::async_trait]
impl ConnectionTrait for Tx {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.inner.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.inner.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.inner.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.inner.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }
}
