//! Rewards, per-customer holdings, issuances and their voucher codes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // `stock` is what is left to issue (NULL: unlimited); `issued` counts units out now
        // (issued minus cancelled). Both move in the same conditional UPDATE.
        m.create_table(
            Table::create()
                .table("rewards")
                .col(big_pk_auto("id"))
                .col(big_integer("org_id"))
                .col(big_integer("program_id"))
                .col(text("name"))
                .col(big_integer_null("stock"))
                .col(big_integer("issued").default(0))
                .col(big_integer_null("per_customer_limit"))
                .col(timestamp_with_time_zone_null("valid_from"))
                .col(timestamp_with_time_zone_null("valid_until"))
                .col(string_len("status", 16))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .check(Expr::col("stock").gte(0))
                .check(Expr::col("issued").gte(0))
                .check(Expr::col("per_customer_limit").gte(0))
                .foreign_key(
                    ForeignKey::create()
                        .from("rewards", "program_id")
                        .to("programs", "id")
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("rewards_org_program_idx")
                .table("rewards")
                .col("org_id")
                .col("program_id")
                .col("id")
                .take(),
        )
        .await?;

        // How many units of a reward a customer holds now: the per-customer limit is checked
        // against this row, in the same UPDATE that raises it.
        m.create_table(
            Table::create()
                .table("customer_reward_counts")
                .col(big_integer("org_id"))
                .col(uuid("customer_id"))
                .col(big_integer("reward_id"))
                .col(big_integer("held"))
                .primary_key(
                    Index::create()
                        .col("org_id")
                        .col("customer_id")
                        .col("reward_id"),
                )
                .check(Expr::col("held").gte(0))
                .take(),
        )
        .await?;

        // `seq` orders a customer's issuances for keyset pages.
        m.create_table(
            Table::create()
                .table("issuances")
                .col(big_pk_auto("seq"))
                .col(uuid_uniq("id"))
                .col(big_integer("org_id"))
                .col(string_len("request_id", 255))
                .col(uuid("customer_id"))
                .col(big_integer("reward_id"))
                .col(big_integer("quantity"))
                .col(text_null("brand"))
                .col(text_null("transaction_number"))
                .col(string_len("status", 16))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("cancelled_at"))
                .check(Expr::col("quantity").gt(0))
                .foreign_key(
                    ForeignKey::create()
                        .from("issuances", "reward_id")
                        .to("rewards", "id")
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("issuances_org_request_idx")
                .table("issuances")
                .col("org_id")
                .col("request_id")
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("issuances_customer_idx")
                .table("issuances")
                .col("org_id")
                .col("customer_id")
                .col("seq")
                .take(),
        )
        .await?;

        // One code per issued unit; the unique index is what makes codes unique, whatever the
        // random generator does.
        m.create_table(
            Table::create()
                .table("vouchers")
                .col(big_pk_auto("id"))
                .col(big_integer("org_id"))
                .col(uuid("issuance_id"))
                .col(string_len("code", 32))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("vouchers_org_code_key")
                .table("vouchers")
                .col("org_id")
                .col("code")
                .unique()
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("vouchers_issuance_idx")
                .table("vouchers")
                .col("org_id")
                .col("issuance_id")
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["vouchers", "issuances", "customer_reward_counts", "rewards"] {
            m.drop_table(Table::drop().table(table).take()).await?;
        }
        Ok(())
    }
}
