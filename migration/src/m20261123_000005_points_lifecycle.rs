//! The points lifecycle beyond credit and debit: pending points, holds, transfers, partial
//! reversals, earn caps and expiry notices.
//!
//! Every column is added with a constant default, one per statement, so the migration runs on
//! SQLite (whose `ALTER TABLE` adds one column at a time) as on PostgreSQL, and old rows read as
//! they meant before: nothing pending, nothing held, allocations `ACTIVE`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(table, column)` pairs this migration adds, in the order `down` drops them (reversed).
const ADDED: &[(&str, &str)] = &[
    ("balances", "pending"),
    ("balances", "held"),
    ("ledger_entries", "held"),
    ("ledger_entries", "notified_at"),
    ("allocations", "status"),
    ("allocations", "matures_at"),
    ("allocations", "activated_at"),
    ("allocations", "reversed_amount"),
    ("allocations", "capped"),
    ("allocations", "uncapped_amount"),
    ("award_strategies", "caps"),
];

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
        let add = |table: &'static str, col: ColumnDef| {
            Table::alter().table(table).add_column(col).take()
        };
        // available + held = the remaining of the unexpired lots; pending is outside both.
        m.alter_table(add(
            "balances",
            big_integer("pending")
                .default(0)
                .check(Expr::col("pending").gte(0))
                .take(),
        ))
        .await?;
        m.alter_table(add(
            "balances",
            big_integer("held")
                .default(0)
                .check(Expr::col("held").gte(0))
                .take(),
        ))
        .await?;
        // The part of a lot's `remaining` that holds have earmarked; only the rest is spendable.
        m.alter_table(add(
            "ledger_entries",
            big_integer("held")
                .default(0)
                .check(Expr::col("held").gte(0))
                .take(),
        ))
        .await?;
        // When the lot's `currency.expiring` notice was written (once per lot).
        m.alter_table(add(
            "ledger_entries",
            timestamp_with_time_zone_null("notified_at"),
        ))
        .await?;
        // PENDING (promised, not yet spendable), ACTIVE, CANCELLED (reversed while pending).
        // A pending allocation has no ledger entry yet: its `ledger_entry_id` is 0 until then.
        m.alter_table(add(
            "allocations",
            string_len("status", 16).default("ACTIVE").take(),
        ))
        .await?;
        m.alter_table(add(
            "allocations",
            timestamp_with_time_zone_null("matures_at"),
        ))
        .await?;
        m.alter_table(add(
            "allocations",
            timestamp_with_time_zone_null("activated_at"),
        ))
        .await?;
        m.alter_table(add(
            "allocations",
            big_integer("reversed_amount").default(0).take(),
        ))
        .await?;
        m.alter_table(add("allocations", boolean("capped").default(false).take()))
            .await?;
        m.alter_table(add("allocations", big_integer_null("uncapped_amount")))
            .await?;
        // A JSON array of {"period", "max"} (max in minor units), null for none.
        m.alter_table(add("award_strategies", text_null("caps")))
            .await?;
        // The maturing worker's search.
        m.create_index(
            index("allocations_pending_idx", "allocations", &["matures_at"])
                .and_where(Expr::col("status").eq("PENDING"))
                .take(),
        )
        .await?;
        // The notice worker's search: lots with something left that were not noticed yet.
        m.create_index(
            index(
                "ledger_entries_unnoticed_lots_idx",
                "ledger_entries",
                &["expires_at"],
            )
            .and_where(Expr::col("remaining").gt(0))
            .and_where(Expr::col("notified_at").is_null())
            .take(),
        )
        .await?;

        // A hold: `amount` as asked, `held` what is still earmarked (lots expire under a hold),
        // then what capture spent, what went back to available, and what expired while held.
        m.create_table(
            Table::create()
                .table("holds")
                .col(uuid("id").primary_key())
                .col(big_integer("org_id"))
                .col(string_len("unique_id", 255))
                .col(uuid("customer_id"))
                .col(big_integer("program_id"))
                .col(string_len("currency", 32))
                .col(big_integer("amount"))
                .col(big_integer("held"))
                .col(big_integer("captured_amount"))
                .col(big_integer("released_amount"))
                .col(big_integer("expired_amount"))
                .col(string_len("status", 16))
                .col(text_null("reason"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .check(Expr::col("amount").gt(0))
                .check(Expr::col("held").gte(0))
                .take(),
        )
        .await?;
        m.create_index(index(
            "holds_org_unique_id_idx",
            "holds",
            &["org_id", "unique_id"],
        ))
        .await?;
        m.create_index(
            index("holds_active_idx", "holds", &["expires_at"])
                .and_where(Expr::col("status").eq("HELD"))
                .take(),
        )
        .await?;
        // Which lots a hold earmarked, and how much of each.
        m.create_table(
            Table::create()
                .table("hold_lots")
                .col(uuid("hold_id"))
                .col(big_integer("lot_id"))
                .col(big_integer("amount"))
                .primary_key(Index::create().col("hold_id").col("lot_id"))
                .check(Expr::col("amount").gte(0))
                .take(),
        )
        .await?;
        m.create_index(index("hold_lots_lot_idx", "hold_lots", &["lot_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("transfers")
                .col(uuid("id").primary_key())
                .col(big_integer("org_id"))
                .col(string_len("unique_id", 255))
                .col(uuid("from_customer_id"))
                .col(uuid("to_customer_id"))
                .col(big_integer("program_id"))
                .col(string_len("currency", 32))
                .col(big_integer("amount"))
                .col(text_null("reason"))
                .col(timestamp_with_time_zone("created_at"))
                .check(Expr::col("amount").gt(0))
                .take(),
        )
        .await?;
        m.create_index(index(
            "transfers_org_unique_id_idx",
            "transfers",
            &["org_id", "unique_id"],
        ))
        .await?;

        // What one award strategy gave one customer in one calendar period (minor units).
        m.create_table(
            Table::create()
                .table("earn_cap_counters")
                .col(big_integer("org_id"))
                .col(big_integer("award_strategy_id"))
                .col(uuid("customer_id"))
                .col(string_len("period", 16))
                .col(timestamp_with_time_zone("period_start"))
                .col(big_integer("awarded"))
                .primary_key(
                    Index::create()
                        .col("org_id")
                        .col("award_strategy_id")
                        .col("customer_id")
                        .col("period")
                        .col("period_start"),
                )
                .check(Expr::col("awarded").gte(0))
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["earn_cap_counters", "transfers", "hold_lots", "holds"] {
            m.drop_table(Table::drop().table(table).take()).await?;
        }
        for (name, table) in [
            ("ledger_entries_unnoticed_lots_idx", "ledger_entries"),
            ("allocations_pending_idx", "allocations"),
        ] {
            m.drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        for (table, col) in ADDED.iter().rev() {
            m.alter_table(Table::alter().table(*table).drop_column(*col).take())
                .await?;
        }
        Ok(())
    }
}
