//! What of a lot expired, so that a lot emptied by its expiry before its `currency.expiring`
//! notice was written stays in the notice worker's search, and gets its notice late.
//!
//! As in the earlier migrations, the column is added alone, so the migration runs on SQLite
//! too; old lots read as never expired (the notice worker leaves them alone, as before).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const OLD_INDEX: &str = "ledger_entries_unnoticed_lots_idx";
const NEW_INDEX: &str = "ledger_entries_notices_due_idx";

fn by_expiry(name: &'static str) -> IndexCreateStatement {
    Index::create()
        .name(name)
        .table("ledger_entries")
        .col("expires_at")
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // What was left of the lot when it expired, held parts included (NULL: not expired).
        m.alter_table(
            Table::alter()
                .table("ledger_entries")
                .add_column(big_integer_null("expired_amount"))
                .take(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(OLD_INDEX)
                .table("ledger_entries")
                .to_owned(),
        )
        .await?;
        // The notice worker's search: lots not noticed yet that have something left, or that
        // expired with something left.
        m.create_index(
            by_expiry(NEW_INDEX)
                .and_where(Expr::col("notified_at").is_null())
                .and_where(
                    Expr::col("remaining")
                        .gt(0)
                        .or(Expr::col("expired_amount").is_not_null()),
                )
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(NEW_INDEX)
                .table("ledger_entries")
                .to_owned(),
        )
        .await?;
        m.create_index(
            by_expiry(OLD_INDEX)
                .and_where(Expr::col("remaining").gt(0))
                .and_where(Expr::col("notified_at").is_null())
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("ledger_entries")
                .drop_column("expired_amount")
                .take(),
        )
        .await?;
        Ok(())
    }
}
