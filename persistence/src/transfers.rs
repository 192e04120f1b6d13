//! Transfers of points between two customers of one organisation.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{PersistenceError, stmt};

/// What a new transfer records.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub id: Uuid,
    pub org_id: i64,
    pub unique_id: String,
    pub from_customer_id: Uuid,
    pub to_customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    pub amount: i64,
    pub reason: Option<String>,
}

/// Records a transfer made at `now`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    t: &NewTransfer,
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    conn.execute_raw(stmt(
        conn,
        "INSERT INTO transfers (id, org_id, unique_id, from_customer_id, to_customer_id, \
         program_id, currency, amount, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        vec![
            t.id.into(),
            t.org_id.into(),
            t.unique_id.clone().into(),
            t.from_customer_id.into(),
            t.to_customer_id.into(),
            t.program_id.into(),
            t.currency.clone().into(),
            t.amount.into(),
            t.reason.clone().into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}
