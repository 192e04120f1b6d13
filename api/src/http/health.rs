//! Liveness and readiness; no key needed, no tenant data shown.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::app::AppState;

/// `{"status": …}`.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "unavailable", "database": "unreachable"}))]
pub struct Health {
    /// ok, ready or unavailable.
    pub status: String,
    /// Set when the database does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "Operations", operation_id = "ops_healthz",
    summary = "The process is up", security(()),
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "Operations", operation_id = "ops_readyz",
    summary = "The database answers", security(()),
    responses((status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database does not answer (Retry-After)", body = Health)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if crate::app::health::database_answers(&state).await {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({"status": "unavailable", "database": "unreachable"}))
    }
}
