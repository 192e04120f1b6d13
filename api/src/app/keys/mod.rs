//! API keys: created (the secret shown once), listed and revoked, and their use recorded.
//! The records of idempotency keys ([`idempotency`]) are read here too: keys, of either kind,
//! are what a client presents.

pub mod idempotency;

use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::Page;
use persistence::orgs::{self, ApiKeyRow, Revocation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::{Done, Effect, Outcome, execute};
use crate::engine::format::{to_json, ts};

/// Who a recognised key speaks for: its organisation and the key itself.
pub use persistence::orgs::KeyIdentity;

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

/// Mints a key for the organisation, exactly once per idempotency key. The secret is in the
/// first answer only: it is never stored, not even in the key's record, so a replay leaves it
/// out.
pub async fn create(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    name: &str,
) -> Result<Outcome, AppError> {
    let name =
        domain::catalog::parse_name(name).map_err(|e| AppError::validation("name", e.message))?;
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::ApiKeyCreate,
        key,
        &RequestMeaning::new().with("name", Some(&name)),
        async |tx| {
            let minted = orgs::create_api_key(tx, org_id, &name, now).await?;
            Ok(Effect::created(
                to_json(&key_view(&minted.row, Some(minted.key))),
                minted.row.id,
            )
            .replayed_as(to_json(&key_view(&minted.row, None))))
        },
    )
    .await
}

/// The organisation's keys, revoked ones included, oldest first; never their secrets.
pub async fn list(
    state: &AppState,
    org_id: i64,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<KeyView>, AppError> {
    let keys = orgs::list_api_keys(state.db.conn(), org_id, cursor, limit).await?;
    Ok(Page {
        items: keys.items.iter().map(|k| key_view(k, None)).collect(),
        next_cursor: keys.next_cursor,
    })
}

/// Revokes a key: it stops working at once on this instance and within a second
/// (`cache::KEY_TTL_MAX`) on every other. The organisation's last active key cannot be
/// revoked (409 `LAST_ACTIVE_KEY`).
pub async fn revoke(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    key_id: i64,
) -> Result<Outcome, AppError> {
    let now = state.now();
    let outcome = execute(
        state,
        org_id,
        Operation::ApiKeyRevoke,
        key,
        &RequestMeaning::new().with("keyId", Some(key_id)),
        async |tx| match orgs::revoke_api_key(tx, org_id, key_id, now).await? {
            Revocation::Revoked(row) => {
                Ok(Effect::created(to_json(&key_view(&row, None)), row.id).done(Done::Removed))
            }
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
    Ok(outcome)
}

/// Records that a recognised key was used (at most once a minute per key), off the request's
/// path: a lost update only makes `lastUsedAt` older.
pub fn record_use(state: &AppState, key_id: i64) {
    if !state.caches.key_use_due(key_id) {
        return;
    }
    let (db, now) = (state.db.clone(), state.now());
    tokio::spawn(async move {
        if let Err(e) = orgs::touch_api_key(db.conn(), key_id, now).await {
            tracing::debug!(error = %e, "could not record an API key's use");
        }
    });
}
