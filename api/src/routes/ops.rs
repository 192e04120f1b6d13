//! Operations: metrics, the OpenAPI document and a page that renders it. No key needed; no
//! tenant data shown.

use actix_web::{HttpResponse, web};

use crate::startup::AppState;

/// The OpenAPI 3.1 document of every endpoint, kept beside the code (`api/assets/openapi.json`);
/// a test checks that every route is in it.
pub const OPENAPI: &str = include_str!("../../assets/openapi.json");
const DOCS: &str = include_str!("../../assets/docs.html");

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(state.db.pool_state()))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DOCS)
}
