//! Tenants, API keys, programs and their currencies and strategies, customers, the ledger with
//! its lots and balances, currency allocations, and idempotency records.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn fk(from: &'static str, col: &'static str, to: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from, col)
        .to(to, "id")
        .on_delete(ForeignKeyAction::Restrict)
        .take()
}

fn unique(name: &'static str, table: &'static str, cols: &[&'static str]) -> IndexCreateStatement {
    let mut idx = Index::create().name(name).table(table).unique().take();
    for c in cols {
        idx.col(*c);
    }
    idx
}

fn index(name: &'static str, table: &'static str, cols: &[&'static str]) -> IndexCreateStatement {
    let mut idx = Index::create().name(name).table(table).take();
    for c in cols {
        idx.col(*c);
    }
    idx
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("organisations")
                .col(big_pk_auto("id"))
                .col(text("name"))
                .col(text_null("brand"))
                .col(timestamp_with_time_zone("created_at"))
                .take(),
        )
        .await?;

        // An API key is `lk_<prefix>_<secret>`; the prefix finds the row, the SHA-256 of the whole
        // key is compared in constant time. The key itself is never stored.
        m.create_table(
            Table::create()
                .table("api_keys")
                .col(big_pk_auto("id"))
                .col(big_integer("org_id"))
                .col(string_len_uniq("prefix", 32))
                .col(string_len("key_hash", 64))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(&mut fk("api_keys", "org_id", "organisations"))
                .take(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("programs")
                .col(big_pk_auto("id"))
                .col(big_integer("org_id"))
                .col(text("name"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("programs", "org_id", "organisations"))
                .take(),
        )
        .await?;
        m.create_index(index("programs_org_id_idx", "programs", &["org_id", "id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("program_currencies")
                .col(big_integer("org_id"))
                .col(big_integer("program_id"))
                .col(string_len("code", 32))
                .col(small_integer("scale"))
                .primary_key(Index::create().col("org_id").col("program_id").col("code"))
                .foreign_key(&mut fk("program_currencies", "program_id", "programs"))
                .take(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("award_strategies")
                .col(big_pk_auto("id"))
                .col(big_integer("org_id"))
                .col(big_integer("program_id"))
                .col(text("name"))
                .col(string_len("currency", 32))
                .col(string_len("kind", 16))
                // Decimal parameters as canonical decimal text: configuration, never summed in SQL.
                .col(text_null("multiplier"))
                .col(string_len_null("rounding", 16))
                .col(text_null("min_award"))
                .col(text_null("max_award"))
                .col(text_null("points"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("award_strategies", "program_id", "programs"))
                .take(),
        )
        .await?;
        m.create_index(index(
            "award_strategies_org_idx",
            "award_strategies",
            &["org_id", "program_id", "id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("expiry_strategies")
                .col(big_pk_auto("id"))
                .col(big_integer("org_id"))
                .col(big_integer("program_id"))
                .col(text("name"))
                .col(string_len("kind", 32))
                .col(integer_null("days"))
                .col(integer_null("months"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("expiry_strategies", "program_id", "programs"))
                .take(),
        )
        .await?;
        m.create_index(index(
            "expiry_strategies_org_idx",
            "expiry_strategies",
            &["org_id", "program_id", "id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("customers")
                .col(uuid("id").primary_key())
                .col(big_integer("org_id"))
                .col(string_len_null("mobile", 15))
                .col(string_len_null("email", 254))
                .col(string_len_null("external_id", 255))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("customers", "org_id", "organisations"))
                .take(),
        )
        .await?;
        m.create_index(unique(
            "customers_org_mobile_key",
            "customers",
            &["org_id", "mobile"],
        ))
        .await?;
        m.create_index(unique(
            "customers_org_email_key",
            "customers",
            &["org_id", "email"],
        ))
        .await?;
        m.create_index(unique(
            "customers_org_external_id_key",
            "customers",
            &["org_id", "external_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("balances")
                .col(big_integer("org_id"))
                .col(uuid("customer_id"))
                .col(big_integer("program_id"))
                .col(string_len("currency", 32))
                .col(big_integer("available"))
                .col(timestamp_with_time_zone("updated_at"))
                .primary_key(
                    Index::create()
                        .col("org_id")
                        .col("customer_id")
                        .col("program_id")
                        .col("currency"),
                )
                .check(Expr::col("available").gte(0))
                .take(),
        )
        .await?;

        // Append-only. A CREDIT row is also a *lot*: `remaining` is what is left of it to spend or
        // expire, `expires_at` when it expires. Amounts are positive; `kind` gives the direction.
        m.create_table(
            Table::create()
                .table("ledger_entries")
                .col(big_pk_auto("id"))
                .col(big_integer("org_id"))
                .col(uuid("customer_id"))
                .col(big_integer("program_id"))
                .col(string_len("currency", 32))
                .col(string_len("kind", 16))
                .col(big_integer("amount"))
                .col(big_integer("balance_after"))
                .col(text_null("reference"))
                .col(big_integer_null("remaining"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(timestamp_with_time_zone("created_at"))
                .check(Expr::col("amount").gte(0))
                .check(Expr::col("remaining").gte(0))
                .take(),
        )
        .await?;
        m.create_index(index(
            "ledger_entries_customer_idx",
            "ledger_entries",
            &["org_id", "customer_id", "id"],
        ))
        .await?;
        m.create_index(index(
            "ledger_entries_lots_idx",
            "ledger_entries",
            &[
                "org_id",
                "customer_id",
                "program_id",
                "currency",
                "expires_at",
            ],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("allocations")
                .col(uuid("id").primary_key())
                .col(big_integer("org_id"))
                .col(string_len("unique_id", 255))
                .col(uuid("customer_id"))
                .col(big_integer("program_id"))
                .col(string_len("currency", 32))
                .col(big_integer("amount"))
                .col(text("source_value"))
                .col(big_integer("award_strategy_id"))
                .col(big_integer("expiry_strategy_id"))
                .col(text_null("event_name"))
                .col(text_null("event_source_id"))
                .col(big_integer("ledger_entry_id"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("allocations", "customer_id", "customers"))
                .take(),
        )
        .await?;
        m.create_index(unique(
            "allocations_org_unique_id_key",
            "allocations",
            &["org_id", "unique_id"],
        ))
        .await?;

        // One row per (organisation, operation, key), inserted in the same transaction as the
        // effect it guards. `request_fields` keeps the canonical meaning so a mismatch can name
        // the fields that differ; `response` is the outcome replayed to later requests.
        m.create_table(
            Table::create()
                .table("idempotency_records")
                .col(big_pk_auto("id"))
                .col(big_integer("org_id"))
                .col(string_len("operation", 64))
                .col(string_len("key", 255))
                .col(string_len("fingerprint", 64))
                .col(json_binary("request_fields"))
                .col(small_integer_null("status_code"))
                .col(json_binary_null("response"))
                .col(text_null("resource_id"))
                .col(timestamp_with_time_zone("created_at"))
                .take(),
        )
        .await?;
        m.create_index(unique(
            "idempotency_records_scope_key",
            "idempotency_records",
            &["org_id", "operation", "key"],
        ))
        .await?;
        m.create_index(index(
            "idempotency_records_created_idx",
            "idempotency_records",
            &["created_at"],
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "idempotency_records",
            "allocations",
            "ledger_entries",
            "balances",
            "customers",
            "expiry_strategies",
            "award_strategies",
            "program_currencies",
            "programs",
            "api_keys",
            "organisations",
        ] {
            m.drop_table(Table::drop().table(table).take()).await?;
        }
        Ok(())
    }
}
