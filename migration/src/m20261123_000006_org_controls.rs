//! The organisation's own controls: webhook endpoints that can be disabled or deleted, named API
//! keys with a coarse `last_used_at`, per-period reward limits, and erased customers.
//!
//! As in the lifecycle migration, every column is added alone with a constant default, so the
//! migration runs on SQLite too, and old rows keep their meaning: endpoints enabled, keys
//! unnamed, reward limits for a customer's lifetime.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(table, column)` pairs this migration adds, in the order `down` drops them (reversed).
const ADDED: &[(&str, &str)] = &[
    ("webhook_endpoints", "status"),
    ("webhook_endpoints", "updated_at"),
    ("webhook_endpoints", "deleted_at"),
    ("api_keys", "name"),
    ("api_keys", "last_used_at"),
    ("rewards", "per_customer_limit_period"),
    ("rewards", "period_limit"),
    ("rewards", "period_limit_period"),
    ("customers", "erased_at"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let add = |table: &'static str, col: ColumnDef| {
            Table::alter().table(table).add_column(col).take()
        };
        // ENABLED or DISABLED; a deleted endpoint keeps its row (its events stay visible).
        m.alter_table(add(
            "webhook_endpoints",
            string_len("status", 16).default("ENABLED").take(),
        ))
        .await?;
        m.alter_table(add(
            "webhook_endpoints",
            timestamp_with_time_zone_null("updated_at"),
        ))
        .await?;
        m.alter_table(add(
            "webhook_endpoints",
            timestamp_with_time_zone_null("deleted_at"),
        ))
        .await?;
        m.alter_table(add("api_keys", string_len("name", 200).default("").take()))
            .await?;
        // Written at most once a minute per key and instance, never per request.
        m.alter_table(add(
            "api_keys",
            timestamp_with_time_zone_null("last_used_at"),
        ))
        .await?;
        // The period `per_customer_limit` counts over: LIFETIME (units held now, as before),
        // or DAY, WEEK, MONTH, YEAR (units issued within the calendar period, UTC).
        m.alter_table(add(
            "rewards",
            string_len("per_customer_limit_period", 16)
                .default("LIFETIME")
                .take(),
        ))
        .await?;
        // Units issued to all customers together per `period_limit_period` (NULL: no limit).
        m.alter_table(add(
            "rewards",
            big_integer_null("period_limit")
                .check(Expr::col("period_limit").gte(0))
                .take(),
        ))
        .await?;
        m.alter_table(add("rewards", string_len_null("period_limit_period", 16)))
            .await?;
        // When the customer's identifiers were erased (they stay NULL for good).
        m.alter_table(add("customers", timestamp_with_time_zone_null("erased_at")))
            .await?;
        // Units of a reward issued in one calendar period, to one customer, or to everyone (the
        // nil customer id): raised and checked by one conditional statement, lowered by
        // cancellations in the period the units were issued in.
        m.create_table(
            Table::create()
                .table("reward_period_counters")
                .col(big_integer("org_id"))
                .col(big_integer("reward_id"))
                .col(uuid("customer_id"))
                .col(string_len("period", 16))
                .col(timestamp_with_time_zone("period_start"))
                .col(big_integer("issued"))
                .primary_key(
                    Index::create()
                        .col("org_id")
                        .col("reward_id")
                        .col("customer_id")
                        .col("period")
                        .col("period_start"),
                )
                .check(Expr::col("issued").gte(0))
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("reward_period_counters").take())
            .await?;
        for (table, col) in ADDED.iter().rev() {
            m.alter_table(Table::alter().table(*table).drop_column(*col).take())
                .await?;
        }
        Ok(())
    }
}
