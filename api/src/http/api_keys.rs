//! The organisation's own API keys: mint (the secret shown once), list, revoke.

use actix_web::{HttpResponse, web};
use domain::idempotency::Operation;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::keys as use_case;
use crate::http::answer::{no_content, respond};
use crate::http::extract::{IdempotencyHeader, Json, PageQuery, Tenant, path_id};
use crate::http::openapi::{
    ApiKeyPath, KeyHeader, Missing, PageParams, Read, Replayed, Write, name_schema, page,
};

use crate::app::keys::KeyView;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ApiKeyInput, example = json!({"name": "checkout service"}))]
pub struct CreateKey {
    /// What the key is for, 1 to 200 characters.
    #[schema(schema_with = name_schema)]
    pub name: String,
}

page!(KeyPage, KeyView);

/// `POST /v1/api-keys`: a new key for the organisation; its secret is in this answer only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "Organisation",
    operation_id = "api_keys_create", summary = "Mint an API key (the secret is shown once)",
    params(KeyHeader), request_body = CreateKey,
    responses((status = 201, description = "Minted now, with its secret", body = KeyView),
        Replayed<KeyView>, Write))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    Json(body): Json<CreateKey>,
) -> Result<HttpResponse, AppError> {
    let outcome = use_case::create(&state, tenant.org_id, key.0.as_ref(), &body.name).await?;
    Ok(respond(Operation::ApiKeyCreate, outcome, key.0.as_ref()))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "Organisation", operation_id = "api_keys_list",
    summary = "The organisation's API keys, revoked ones included (never their secrets)",
    params(PageParams),
    responses((status = 200, description = "A page, oldest first", body = KeyPage), Read))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.parse()?;
    let keys = use_case::list(&state, tenant.org_id, page.cursor, page.limit).await?;
    Ok(HttpResponse::Ok().json(KeyPage::new(keys.items, keys.next_cursor)))
}

/// `DELETE /v1/api-keys/{keyId}`: the key stops working at once on this instance and within a
/// second (`cache::KEY_TTL_MAX`) on every other. The organisation's last active key cannot be
/// revoked.
#[utoipa::path(delete, path = "/v1/api-keys/{keyId}", tag = "Organisation",
    operation_id = "api_keys_revoke", summary = "Revoke an API key",
    params(ApiKeyPath, KeyHeader),
    responses((status = 204, description = "Revoked (or, with the same Idempotency-Key, revoked before: Idempotent-Replayed true)"),
        (status = 409, description = "LAST_ACTIVE_KEY: the organisation's only active key", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn revoke(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let key_id = path_id(&path, "API key")?;
    let outcome = use_case::revoke(&state, tenant.org_id, key.0.as_ref(), key_id).await?;
    Ok(no_content(Operation::ApiKeyRevoke, outcome))
}
