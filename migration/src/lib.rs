//! The database schema, as sea-orm-migration migrations.
//!
//! Used as a library (`Migrator::up`, called by `loyalty serve` at start and by `loyalty migrate`)
//! and as a small binary (`cargo run -p migration -- up`). Every migration has `up` and `down`.
//!
//! Conventions kept by every table:
//! - `org_id` is on every row, and every unique constraint and hot index starts with it, so that
//!   `org_id` can become the distribution column of a distributed PostgreSQL. Not yet true of
//!   the surrogate primary keys (`id` alone), the foreign keys on them, and `hold_lots`:
//!   docs/SCALING.md lists them, and the `schema_rules` test fails on any new exception.
//! - Amounts are integer minor units (`BIGINT`, `amount × 10^scale`): exact on PostgreSQL and SQLite.
//! - Timestamps are `timestamptz` (UTC).

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_foundation;
mod m20261122_000002_rewards;
mod m20261122_000003_ledger_lifecycle;
mod m20261122_000004_webhooks;
mod m20261123_000005_points_lifecycle;
mod m20261123_000006_org_controls;
mod m20261124_000007_issuance_counted_periods;
mod m20261207_000008_expired_lots;
mod m20261207_000011_endpoint_order;
mod m20261207_000012_read_indexes;
mod m20261207_000013_liability_sums;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_foundation::Migration),
            Box::new(m20261122_000002_rewards::Migration),
            Box::new(m20261122_000003_ledger_lifecycle::Migration),
            Box::new(m20261122_000004_webhooks::Migration),
            Box::new(m20261123_000005_points_lifecycle::Migration),
            Box::new(m20261123_000006_org_controls::Migration),
            Box::new(m20261124_000007_issuance_counted_periods::Migration),
            Box::new(m20261207_000008_expired_lots::Migration),
            Box::new(m20261207_000011_endpoint_order::Migration),
            Box::new(m20261207_000012_read_indexes::Migration),
            Box::new(m20261207_000013_liability_sums::Migration),
        ]
    }
}

/// The source of every migration, so that a change to any of them changes [`schema_version`].
const SOURCES: &[&str] = &[
    include_str!("m20261122_000001_foundation.rs"),
    include_str!("m20261122_000002_rewards.rs"),
    include_str!("m20261122_000003_ledger_lifecycle.rs"),
    include_str!("m20261122_000004_webhooks.rs"),
    include_str!("m20261123_000005_points_lifecycle.rs"),
    include_str!("m20261123_000006_org_controls.rs"),
    include_str!("m20261124_000007_issuance_counted_periods.rs"),
    include_str!("m20261207_000008_expired_lots.rs"),
    include_str!("m20261207_000011_endpoint_order.rs"),
    include_str!("m20261207_000012_read_indexes.rs"),
    include_str!("m20261207_000013_liability_sums.rs"),
];

/// Text that changes whenever a migration is added or edited; test harnesses use it to know
/// whether a migrated template database is still current.
pub fn schema_version() -> String {
    let names = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect::<Vec<_>>()
        .join(",");
    format!("{names}\n{}", SOURCES.concat())
}
