//! Routes, one module per resource.

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

pub mod allocations;
pub mod customers;
pub mod health;
pub mod idempotency_keys;
pub mod programs;
pub mod rewards;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .service(
            web::scope("/v1")
                .route("/programs", web::post().to(programs::create))
                .route("/programs", web::get().to(programs::list))
                .route("/programs/{programId}", web::get().to(programs::get))
                .route(
                    "/programs/{programId}/award-strategies",
                    web::post().to(programs::create_award_strategy),
                )
                .route(
                    "/programs/{programId}/award-strategies",
                    web::get().to(programs::list_award_strategies),
                )
                .route(
                    "/programs/{programId}/expiry-strategies",
                    web::post().to(programs::create_expiry_strategy),
                )
                .route(
                    "/programs/{programId}/expiry-strategies",
                    web::get().to(programs::list_expiry_strategies),
                )
                .route(
                    "/programs/{programId}/rewards",
                    web::post().to(rewards::create),
                )
                .route(
                    "/programs/{programId}/rewards",
                    web::get().to(rewards::list),
                )
                .route("/rewards/issue/bulk", web::post().to(rewards::issue_bulk))
                .route("/rewards/issue", web::post().to(rewards::issue_single))
                .route(
                    "/rewards/issuances/{issuanceId}/cancel",
                    web::post().to(rewards::cancel),
                )
                .route("/rewards/{rewardId}", web::get().to(rewards::get))
                .route("/rewards/{rewardId}", web::patch().to(rewards::patch))
                .route(
                    "/customers/{customerId}/rewards",
                    web::get().to(rewards::customer_rewards),
                )
                .route("/customers/lookup", web::get().to(customers::lookup))
                .route("/customers/{customerId}", web::get().to(customers::get))
                .route(
                    "/customers/{customerId}/ledger",
                    web::get().to(customers::ledger),
                )
                .route("/currency/allocations", web::post().to(allocations::create))
                .route(
                    "/currency/allocations/{uniqueId}/reversal",
                    web::post().to(allocations::reverse),
                )
                .route("/currency/redemptions", web::post().to(allocations::redeem))
                .route("/customers", web::post().to(customers::create))
                .route(
                    "/currency/allocations/{uniqueId}",
                    web::get().to(allocations::get),
                )
                .route(
                    "/idempotency-keys/{operation}/{key}",
                    web::get().to(idempotency_keys::get),
                ),
        )
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("resource"))
}

/// `{"items": [...], "nextCursor": "…"}`.
pub fn page_json(items: Vec<serde_json::Value>, next: Option<i64>) -> serde_json::Value {
    serde_json::json!({"items": items, "nextCursor": next.map(|c| c.to_string())})
}
