//! Organisations (tenants) and their API keys.

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::{ConnectionTrait, FromQueryResult};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Keyset, Page, PersistenceError, page, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct OrgRow {
    pub id: i64,
    pub name: String,
    pub brand: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A freshly minted API key: the secret (shown once, stored only as a hash) and its record.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: String,
    pub row: ApiKeyRow,
}

/// An API key as it can be shown: never its secret or its hash.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ApiKeyRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const KEY_COLUMNS: &str = "id, org_id, name, prefix, created_at, last_used_at, revoked_at";

const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

fn random_token(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates an organisation and its first API key.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn create_org<C: ConnectionTrait>(
    conn: &C,
    name: &str,
    brand: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(OrgRow, NewApiKey), PersistenceError> {
    let org = OrgRow::find_by_statement(stmt(
        conn,
        "INSERT INTO organisations (name, brand, created_at) VALUES ($1, $2, $3) \
         RETURNING id, name, brand, created_at",
        vec![name.into(), brand.map(str::to_owned).into(), now.into()],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))?;
    let key = create_api_key(conn, org.id, "", now).await?;
    Ok((org, key))
}

/// Mints a new API key for `org_id`: `lk_<prefix>_<secret>` with 160 bits of secret.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn create_api_key<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    name: &str,
    now: DateTime<Utc>,
) -> Result<NewApiKey, PersistenceError> {
    let prefix = random_token(12);
    let key = format!("lk_{prefix}_{}", random_token(32));
    let row = ApiKeyRow::find_by_statement(stmt(
        conn,
        &format!(
            "INSERT INTO api_keys (org_id, name, prefix, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_COLUMNS}"
        ),
        vec![
            org_id.into(),
            name.into(),
            prefix.into(),
            hash_key(&key).into(),
            now.into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))?;
    Ok(NewApiKey { key, row })
}

/// A page of the organisation's keys, revoked ones included, oldest first: at most `limit`
/// after key id `after`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_api_keys<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<ApiKeyRow>, PersistenceError> {
    page(
        conn,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1"),
        vec![org_id.into()],
        "id",
        Keyset::After(after),
        limit,
        |k: &ApiKeyRow| k.id,
    )
    .await
}

/// What came of a revocation.
#[derive(Debug, Clone)]
pub enum Revocation {
    Revoked(ApiKeyRow),
    /// No active key with that id in the organisation.
    NotFound,
    /// It is the organisation's last active key.
    LastActive,
}

/// Revokes key `key_id` of `org_id`, unless it is the organisation's last active key. The
/// organisation's row is locked first, so two revocations at once cannot leave it with none.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn revoke_api_key<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    key_id: i64,
    now: DateTime<Utc>,
) -> Result<Revocation, PersistenceError> {
    conn.query_one_raw(stmt(
        conn,
        &format!(
            "SELECT id FROM organisations WHERE id = $1{}",
            crate::for_update(conn)
        ),
        vec![org_id.into()],
    ))
    .await?;
    let revoked = ApiKeyRow::find_by_statement(stmt(
        conn,
        &format!(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL \
               AND (SELECT count(*) FROM api_keys o \
                    WHERE o.org_id = $1 AND o.revoked_at IS NULL AND o.id <> $2) > 0 \
             RETURNING {KEY_COLUMNS}"
        ),
        vec![org_id.into(), key_id.into(), now.into()],
    ))
    .one(conn)
    .await?;
    if let Some(row) = revoked {
        return Ok(Revocation::Revoked(row));
    }
    let active = conn
        .query_one_raw(stmt(
            conn,
            "SELECT id FROM api_keys WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
            vec![org_id.into(), key_id.into()],
        ))
        .await?
        .is_some();
    Ok(if active {
        Revocation::LastActive
    } else {
        Revocation::NotFound
    })
}

/// Records that key `key_id` was used at `now`, if its record is a minute or more older (the
/// caller also writes at most once a minute per key, so this is never a write per request).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn touch_api_key<C: ConnectionTrait>(
    conn: &C,
    key_id: i64,
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    conn.execute_raw(stmt(
        conn,
        "UPDATE api_keys SET last_used_at = $2 \
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)",
        vec![
            key_id.into(),
            now.into(),
            (now - chrono::Duration::seconds(60)).into(),
        ],
    ))
    .await?;
    Ok(())
}

#[derive(Debug, FromQueryResult)]
struct KeyRow {
    id: i64,
    org_id: i64,
    key_hash: String,
}

/// Who a recognised key is: its organisation and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIdentity {
    pub org_id: i64,
    pub key_id: i64,
}

/// The organisation (and id) of an API key, or `None` for an unknown, malformed or revoked key.
/// The stored hash is compared in constant time.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn authenticate<C: ConnectionTrait>(
    conn: &C,
    presented: &str,
) -> Result<Option<KeyIdentity>, PersistenceError> {
    let Some(prefix) = presented
        .strip_prefix("lk_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(prefix, _)| prefix)
        .filter(|p| p.len() == 12)
    else {
        return Ok(None);
    };
    let row = KeyRow::find_by_statement(stmt(
        conn,
        "SELECT id, org_id, key_hash FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
        vec![prefix.into()],
    ))
    .one(conn)
    .await?;
    Ok(row.and_then(|r| {
        let equal: bool = hash_key(presented)
            .as_bytes()
            .ct_eq(r.key_hash.as_bytes())
            .into();
        equal.then_some(KeyIdentity {
            org_id: r.org_id,
            key_id: r.id,
        })
    }))
}

/// Whether organisation `org_id` exists.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn org_exists<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
) -> Result<bool, PersistenceError> {
    Ok(conn
        .query_one_raw(stmt(
            conn,
            "SELECT id FROM organisations WHERE id = $1",
            vec![org_id.into()],
        ))
        .await?
        .is_some())
}

/// Is there any organisation yet? (The demo loads only into an empty database.)
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn any_org<C: ConnectionTrait>(conn: &C) -> Result<bool, PersistenceError> {
    Ok(conn
        .query_one_raw(stmt(conn, "SELECT id FROM organisations LIMIT 1", vec![]))
        .await?
        .is_some())
}
