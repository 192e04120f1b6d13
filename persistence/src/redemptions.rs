//! Currency redemptions: a debit of a customer's balance, keyed by the client's key.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

use crate::{PersistenceError, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct RedemptionRow {
    pub id: Uuid,
    pub org_id: i64,
    pub unique_id: String,
    pub customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    pub amount: i64,
    pub reason: Option<String>,
    pub ledger_entry_id: i64,
    pub created_at: DateTime<Utc>,
}

#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    unique_id: &str,
    customer_id: Uuid,
    program_id: i64,
    currency: &str,
    amount: i64,
    reason: Option<&str>,
    ledger_entry_id: i64,
    now: DateTime<Utc>,
) -> Result<RedemptionRow, PersistenceError> {
    RedemptionRow::find_by_statement(stmt(
        conn,
        "INSERT INTO redemptions (id, org_id, unique_id, customer_id, program_id, currency, amount, \
         reason, ledger_entry_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         RETURNING id, org_id, unique_id, customer_id, program_id, currency, amount, reason, \
         ledger_entry_id, created_at",
        vec![
            Uuid::now_v7().into(),
            org_id.into(),
            unique_id.into(),
            customer_id.into(),
            program_id.into(),
            currency.into(),
            amount.into(),
            reason.map(str::to_owned).into(),
            ledger_entry_id.into(),
            now.into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))
}
