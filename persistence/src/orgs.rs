//! Organisations (tenants) and their API keys.

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::{ConnectionTrait, FromQueryResult};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{PersistenceError, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct OrgRow {
    pub id: i64,
    pub name: String,
    pub brand: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A freshly minted API key: shown once, stored only as a hash.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: String,
}

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
    let key = create_api_key(conn, org.id, now).await?;
    Ok((org, key))
}

/// Mints a new API key for `org_id`: `lk_<prefix>_<secret>` with 160 bits of secret.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn create_api_key<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    now: DateTime<Utc>,
) -> Result<NewApiKey, PersistenceError> {
    let prefix = random_token(12);
    let key = format!("lk_{prefix}_{}", random_token(32));
    conn.execute_raw(stmt(
        conn,
        "INSERT INTO api_keys (org_id, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4)",
        vec![
            org_id.into(),
            prefix.into(),
            hash_key(&key).into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(NewApiKey { key })
}

#[derive(Debug, FromQueryResult)]
struct KeyRow {
    org_id: i64,
    key_hash: String,
}

/// The organisation an API key belongs to, or `None` for an unknown, malformed or revoked key.
/// The stored hash is compared in constant time.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn authenticate<C: ConnectionTrait>(
    conn: &C,
    presented: &str,
) -> Result<Option<i64>, PersistenceError> {
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
        "SELECT org_id, key_hash FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
        vec![prefix.into()],
    ))
    .one(conn)
    .await?;
    Ok(row.and_then(|r| {
        let equal: bool = hash_key(presented)
            .as_bytes()
            .ct_eq(r.key_hash.as_bytes())
            .into();
        equal.then_some(r.org_id)
    }))
}

/// Is there any organisation yet? (The demo loads only into an empty database.)
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn any_org<C: ConnectionTrait>(conn: &C) -> Result<bool, PersistenceError> {
    Ok(conn
        .query_one_raw(stmt(conn, "SELECT id FROM organisations LIMIT 1", vec![]))
        .await?
        .is_some())
}
