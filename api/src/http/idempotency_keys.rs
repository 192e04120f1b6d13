//! `GET /v1/idempotency-keys/{operation}/{key}`: what became of a key, without repeating it.

use actix_web::{HttpResponse, web};

use crate::app::AppError;
use crate::app::AppState;
use crate::http::extract::Tenant;
use crate::http::openapi::{KeyPath, Missing, Read};

use crate::app::keys::idempotency::KeyRecord;

#[utoipa::path(get, path = "/v1/idempotency-keys/{operation}/{key}", tag = "Idempotency",
    operation_id = "idempotency_keys_get", summary = "What became of an idempotency key",
    params(KeyPath),
    responses((status = 200, description = "The key's record", body = KeyRecord), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (operation, key) = path.into_inner();
    let record =
        crate::app::keys::idempotency::get(&state, tenant.org_id, &operation, &key).await?;
    Ok(HttpResponse::Ok().json(record))
}
