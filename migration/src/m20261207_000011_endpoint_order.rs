//! A position for every webhook endpoint within its organisation (`seq`, 1, 2, …, in creation
//! order), so that the endpoints are listed in pages with a keyset cursor like every other list.
//!
//! As in the earlier migrations, the column is added alone with a constant default, so the
//! migration runs on SQLite too; the existing endpoints are then numbered in creation order.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "webhook_endpoints_org_seq_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("webhook_endpoints")
                .add_column(big_integer("seq").default(0).take())
                .take(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "UPDATE webhook_endpoints SET seq = (SELECT count(*) FROM webhook_endpoints o \
                 WHERE o.org_id = webhook_endpoints.org_id \
                   AND (o.created_at < webhook_endpoints.created_at \
                        OR (o.created_at = webhook_endpoints.created_at \
                            AND o.id <= webhook_endpoints.id)))",
            )
            .await?;
        m.create_index(
            Index::create()
                .name(INDEX)
                .table("webhook_endpoints")
                .col("org_id")
                .col("seq")
                .unique()
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(INDEX)
                .table("webhook_endpoints")
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("webhook_endpoints")
                .drop_column("seq")
                .take(),
        )
        .await
    }
}
