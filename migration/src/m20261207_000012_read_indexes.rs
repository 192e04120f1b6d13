//! Indexes for the reads of an operator's console: a customer's holds, allocations and
//! transfers, newest first (their ids are UUIDv7, so time-ordered), and a program's liability
//! (its ledger by month, its lots with points left by when they expire, and its accounts'
//! balances), each within one organisation, program and currency rather than over the
//! organisation's whole ledger or every organisation's balances. The balances' index holds no
//! amount, so the balance updates of every write stay HOT.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, table, columns, only the lots with points left)
const INDEXES: [(&str, &str, &[&str], bool); 7] = [
    (
        "holds_customer_idx",
        "holds",
        &["org_id", "customer_id", "id"],
        false,
    ),
    (
        "allocations_customer_idx",
        "allocations",
        &["org_id", "customer_id", "id"],
        false,
    ),
    (
        "transfers_from_customer_idx",
        "transfers",
        &["org_id", "from_customer_id", "id"],
        false,
    ),
    (
        "transfers_to_customer_idx",
        "transfers",
        &["org_id", "to_customer_id", "id"],
        false,
    ),
    (
        "ledger_entries_program_time_idx",
        "ledger_entries",
        &["org_id", "program_id", "currency", "created_at"],
        false,
    ),
    (
        "ledger_entries_program_lots_idx",
        "ledger_entries",
        &["org_id", "program_id", "currency", "expires_at"],
        true,
    ),
    (
        "balances_program_idx",
        "balances",
        &["org_id", "program_id", "currency"],
        false,
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, cols, live_lots) in INDEXES {
            let mut index = Index::create().name(name).table(table).take();
            for col in cols {
                index.col(*col);
            }
            if live_lots {
                index.and_where(Expr::col("remaining").gt(0));
            }
            m.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _, _) in INDEXES.iter().rev() {
            m.drop_index(Index::drop().name(*name).table(*table).to_owned())
                .await?;
        }
        Ok(())
    }
}
