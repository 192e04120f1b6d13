//! Which per-period counters each issuance was counted in, so that a cancellation gives its
//! units back to exactly those, whatever the reward's period settings have become since.
//!
//! The period start is that of the period at the issuance's `created_at` (the instant its
//! counters were raised), so the period's name is enough. Issuances still `ISSUED` when this
//! runs are taken to be counted in the counters the reward's settings name now, as the earlier
//! cancellation assumed: the settings in force when they were made were not recorded.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns this migration adds to `issuances`, in the order `down` drops them (reversed).
const ADDED: &[&str] = &["customer_limit_period", "period_limit_period"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // The period of the customer's counter the issuance was counted in, and of everyone's
        // (NULL: none).
        for col in ADDED {
            m.alter_table(
                Table::alter()
                    .table("issuances")
                    .add_column(string_len_null(*col, 16))
                    .take(),
            )
            .await?;
        }
        // The same statement on PostgreSQL and SQLite: correlated subqueries on the reward.
        m.get_connection()
            .execute_unprepared(
                "UPDATE issuances SET \
                 customer_limit_period = (SELECT r.per_customer_limit_period FROM rewards r \
                   WHERE r.org_id = issuances.org_id AND r.id = issuances.reward_id \
                   AND r.per_customer_limit_period <> 'LIFETIME'), \
                 period_limit_period = (SELECT r.period_limit_period FROM rewards r \
                   WHERE r.org_id = issuances.org_id AND r.id = issuances.reward_id) \
                 WHERE status = 'ISSUED' AND EXISTS (SELECT 1 FROM rewards r \
                   WHERE r.org_id = issuances.org_id AND r.id = issuances.reward_id \
                   AND (r.per_customer_limit_period <> 'LIFETIME' \
                        OR r.period_limit_period IS NOT NULL))",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in ADDED.iter().rev() {
            m.alter_table(Table::alter().table("issuances").drop_column(*col).take())
                .await?;
        }
        Ok(())
    }
}
