//! Routes, one module per resource.

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

pub mod allocations;
pub mod customers;
pub mod health;
pub mod idempotency_keys;
pub mod ops;
pub mod programs;
pub mod rewards;
pub mod webhooks;

pub fn configure(cfg: &mut web::ServiceConfig) {
    use web::{get, patch, post, resource};
    cfg.service(resource("/healthz").route(get().to(health::healthz)))
        .service(resource("/readyz").route(get().to(health::readyz)))
        .service(resource("/metrics").route(get().to(ops::metrics)))
        .service(resource("/openapi.json").route(get().to(ops::openapi)))
        .service(resource("/docs").route(get().to(ops::docs)))
        .service(
            web::scope("/v1")
                .service(
                    resource("/programs")
                        .route(post().to(programs::create))
                        .route(get().to(programs::list)),
                )
                .service(resource("/programs/{programId}").route(get().to(programs::get)))
                .service(
                    resource("/programs/{programId}/award-strategies")
                        .route(post().to(programs::create_award_strategy))
                        .route(get().to(programs::list_award_strategies)),
                )
                .service(
                    resource("/programs/{programId}/expiry-strategies")
                        .route(post().to(programs::create_expiry_strategy))
                        .route(get().to(programs::list_expiry_strategies)),
                )
                .service(
                    resource("/programs/{programId}/rewards")
                        .route(post().to(rewards::create))
                        .route(get().to(rewards::list)),
                )
                .service(resource("/rewards/issue/bulk").route(post().to(rewards::issue_bulk)))
                .service(resource("/rewards/issue").route(post().to(rewards::issue_single)))
                .service(
                    resource("/rewards/issuances/{issuanceId}/cancel")
                        .route(post().to(rewards::cancel)),
                )
                .service(
                    resource("/rewards/{rewardId}")
                        .route(get().to(rewards::get))
                        .route(patch().to(rewards::patch)),
                )
                .service(resource("/customers").route(post().to(customers::create)))
                .service(resource("/customers/lookup").route(get().to(customers::lookup)))
                .service(resource("/customers/{customerId}").route(get().to(customers::get)))
                .service(
                    resource("/customers/{customerId}/ledger").route(get().to(customers::ledger)),
                )
                .service(
                    resource("/customers/{customerId}/rewards")
                        .route(get().to(rewards::customer_rewards)),
                )
                .service(resource("/currency/allocations").route(post().to(allocations::create)))
                .service(
                    resource("/currency/allocations/{uniqueId}").route(get().to(allocations::get)),
                )
                .service(
                    resource("/currency/allocations/{uniqueId}/reversal")
                        .route(post().to(allocations::reverse)),
                )
                .service(resource("/currency/redemptions").route(post().to(allocations::redeem)))
                .service(
                    resource("/webhook-endpoints")
                        .route(post().to(webhooks::create_endpoint))
                        .route(get().to(webhooks::list_endpoints)),
                )
                .service(resource("/webhook-events").route(get().to(webhooks::list_events)))
                .service(resource("/webhook-events/{id}").route(get().to(webhooks::get_event)))
                .service(
                    resource("/webhook-events/{id}/actions/retry")
                        .route(post().to(webhooks::retry_event)),
                )
                .service(
                    resource("/idempotency-keys/{operation}/{key}")
                        .route(get().to(idempotency_keys::get)),
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
