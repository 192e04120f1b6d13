//! The rest of the ledger's life: redemptions, reversals, expiry, and keys that can be forgotten.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // With a key retention, a forgotten uniqueId may be used again for a new allocation, so
        // uniqueness belongs to the idempotency record (which is forgotten), not to the allocation.
        m.drop_index(
            Index::drop()
                .name("allocations_org_unique_id_key")
                .table("allocations")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("allocations_org_unique_id_idx")
                .table("allocations")
                .col("org_id")
                .col("unique_id")
                .col("created_at")
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("allocations")
                .add_column(timestamp_with_time_zone_null("reversed_at"))
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("allocations")
                .add_column(big_integer_null("reversal_entry_id"))
                .take(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("redemptions")
                .col(uuid("id").primary_key())
                .col(big_integer("org_id"))
                .col(string_len("unique_id", 255))
                .col(uuid("customer_id"))
                .col(big_integer("program_id"))
                .col(string_len("currency", 32))
                .col(big_integer("amount"))
                .col(text_null("reason"))
                .col(big_integer("ledger_entry_id"))
                .col(timestamp_with_time_zone("created_at"))
                .check(Expr::col("amount").gt(0))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("redemptions_org_unique_id_idx")
                .table("redemptions")
                .col("org_id")
                .col("unique_id")
                .take(),
        )
        .await?;

        // The expiry worker's search: lots with something left, by when they expire.
        m.create_index(
            Index::create()
                .name("ledger_entries_due_lots_idx")
                .table("ledger_entries")
                .col("expires_at")
                .and_where(Expr::col("remaining").gt(0))
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ledger_entries_due_lots_idx")
                .table("ledger_entries")
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table("redemptions").take())
            .await?;
        m.alter_table(
            Table::alter()
                .table("allocations")
                .drop_column("reversal_entry_id")
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("allocations")
                .drop_column("reversed_at")
                .take(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("allocations_org_unique_id_idx")
                .table("allocations")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("allocations_org_unique_id_key")
                .table("allocations")
                .col("org_id")
                .col("unique_id")
                .unique()
                .take(),
        )
        .await?;
        Ok(())
    }
}
