//! `migration [up|down|status]` against `DATABASE_URL`: the schema without the server.
//! (`loyalty migrate` does the same `up` with the server's own settings.)

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::Database;

#[tokio::main]
async fn main() -> Result<(), DbErr> {
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://loyalty.db?mode=rwc".to_owned());
    let db = Database::connect(&url).await?;
    match std::env::args().nth(1).as_deref().unwrap_or("up") {
        "up" => migration::Migrator::up(&db, None).await,
        "down" => migration::Migrator::down(&db, Some(1)).await,
        "status" => migration::Migrator::status(&db).await,
        other => Err(DbErr::Custom(format!(
            "unknown command {other}; use up, down or status"
        ))),
    }
}
