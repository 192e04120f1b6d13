//! The organisation's own API keys: mint (the secret shown once), list, revoke.

use actix_web::{HttpResponse, web};
use domain::idempotency::{Operation, RequestMeaning};
use persistence::orgs::{self, ApiKeyRow, Revocation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::{Effect, execute};
use crate::http::answer::respond;
use crate::engine::format::ts;
use crate::http::extract::{IdempotencyHeader, Json, PageQuery, Tenant, path_id};
use crate::http::openapi::{ApiKeyPath, KeyHeader, Missing, PageParams, Read, Replayed, Write, name_schema, page};
use crate::engine::format::to_json;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ApiKeyInput, example = json!({"name": "checkout service"}))]
pub struct CreateKey {
    /// What the key is for, 1 to 200 characters.
    #[schema(schema_with = name_schema)]
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ApiKey, example = json!({
    "keyId": "2", "name": "checkout service", "prefix": "lk_3k9dfq2mxa7e",
    "createdAt": "2026-01-01T00:00:00Z", "lastUsedAt": null, "revokedAt": null,
    "apiKey": "lk_3k9dfq2mxa7e_…"
}))]
pub struct KeyView {
    pub key_id: String,
    pub name: String,
    /// The key's public start (`lk_` and 12 characters), to tell keys apart.
    pub prefix: String,
    pub created_at: String,
    /// When the key was last used, to the minute or so (it is not written per request).
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The whole key: in the creation answer only, never stored, never shown again (a replay
    /// of the creation leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

page!(KeyPage, KeyView);

fn key_view(k: &ApiKeyRow, secret: Option<String>) -> KeyView {
    KeyView {
        key_id: k.id.to_string(),
        name: k.name.clone(),
        prefix: format!("lk_{}", k.prefix),
        created_at: ts(k.created_at),
        last_used_at: k.last_used_at.map(ts),
        revoked_at: k.revoked_at.map(ts),
        api_key: secret,
    }
}

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
    let name = domain::catalog::parse_name(&body.name)
        .map_err(|e| AppError::validation("name", e.message))?;
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::ApiKeyCreate,
        key.0.as_ref(),
        &RequestMeaning::new().with("name", Some(&name)),
        async |tx| {
            let minted = orgs::create_api_key(tx, org_id, &name, now).await?;
            // The secret is answered once and never stored, not even in the key's record.
            Ok(Effect::created(
                to_json(&key_view(&minted.row, Some(minted.key))),
                minted.row.id,
            )
            .replayed_as(to_json(&key_view(&minted.row, None))))
        },
    )
    .await?;
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
    let keys = orgs::list_api_keys(state.db.conn(), tenant.org_id, page.cursor, page.limit).await?;
    Ok(HttpResponse::Ok().json(KeyPage::new(
        keys.items.iter().map(|k| key_view(k, None)).collect(),
        keys.next_cursor,
    )))
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
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::ApiKeyRevoke,
        key.0.as_ref(),
        &RequestMeaning::new().with("keyId", Some(key_id)),
        async |tx| match orgs::revoke_api_key(tx, org_id, key_id, now).await? {
            Revocation::Revoked(row) => Ok(Effect::created(to_json(&key_view(&row, None)), row.id)
                .done(crate::app::write::Done::Removed)),
            Revocation::NotFound => Err(AppError::not_found("API key")),
            Revocation::LastActive => Err(AppError::Conflict {
                code: "LAST_ACTIVE_KEY",
                detail: "This is the organisation's last active API key; mint another first."
                    .into(),
            }),
        },
    )
    .await?;
    // Committed (now, or before: a replay): this instance refuses that key from now on. Other
    // keys stay cached; a refusal changed nothing and forgets nothing.
    state.caches.key_revoked(key_id);
    Ok(crate::http::answer::no_content(
        Operation::ApiKeyRevoke,
        outcome,
    ))
}
