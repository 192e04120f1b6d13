//! Operations: metrics, the OpenAPI document and a page that renders it. No key needed; no
//! tenant data shown.

use actix_web::{HttpResponse, web};

use crate::app::AppState;

const DOCS: &str = include_str!("../../assets/docs.html");

#[utoipa::path(get, path = "/metrics", tag = "Operations", operation_id = "ops_metrics",
    summary = "Prometheus metrics (text exposition format)", security(()),
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::engine::metrics::render(state.db.pool_state()))
}

/// The OpenAPI 3.1 document, generated from the code (`crate::http::openapi`).
#[utoipa::path(get, path = "/openapi.json", tag = "Operations", operation_id = "ops_openapi",
    summary = "This document", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::http::openapi::document())
}

#[utoipa::path(get, path = "/docs", tag = "Operations", operation_id = "ops_docs",
    summary = "A page that renders this document", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DOCS)
}
