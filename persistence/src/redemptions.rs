//! Currency redemptions: a debit of a customer's balance, keyed by the client's key.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::PersistenceError;

/// What a new redemption records.
#[derive(Debug, Clone)]
pub struct NewRedemption {
    pub id: Uuid,
    pub org_id: i64,
    pub unique_id: String,
    pub customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    pub amount: i64,
    pub reason: Option<String>,
    pub ledger_entry_id: i64,
}

/// Records many redemptions, all made at `now`, in one statement.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn insert_many<C: ConnectionTrait>(
    conn: &C,
    redemptions: &[NewRedemption],
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    let rows = redemptions
        .iter()
        .map(|r| {
            vec![
                r.id.into(),
                r.org_id.into(),
                r.unique_id.clone().into(),
                r.customer_id.into(),
                r.program_id.into(),
                r.currency.clone().into(),
                r.amount.into(),
                r.reason.clone().into(),
                r.ledger_entry_id.into(),
                now.into(),
            ]
        })
        .collect();
    crate::insert_rows(
        conn,
        "redemptions",
        "id, org_id, unique_id, customer_id, program_id, currency, amount, \
         reason, ledger_entry_id, created_at",
        "",
        rows,
    )
    .await?;
    Ok(())
}
