//! The idempotency store: one record per (organisation, operation, key), written in the same
//! transaction as the effect it guards.
//!
//! Claiming a key is an `INSERT … ON CONFLICT DO NOTHING`, never a `SELECT` first: the unique
//! index is the arbiter. On PostgreSQL a concurrent claim of the same key blocks on that index
//! until the first transaction commits (then it finds the record and replays it) or rolls back
//! (then its own insert goes through and it performs the effect itself). The wait is bounded by
//! the transaction's `lock_timeout`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use sea_orm::{ConnectionTrait, FromQueryResult};

use crate::{PersistenceError, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct RecordRow {
    pub id: i64,
    pub org_id: i64,
    pub operation: String,
    pub key: String,
    pub fingerprint: String,
    pub request_fields: serde_json::Value,
    pub status_code: Option<i16>,
    pub response: Option<serde_json::Value>,
    pub resource_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl RecordRow {
    /// The canonical request this record was made for.
    pub fn meaning(&self) -> RequestMeaning {
        let fields: BTreeMap<String, String> =
            serde_json::from_value(self.request_fields.clone()).unwrap_or_default();
        RequestMeaning::from_fields(fields)
    }
}

const COLUMNS: &str = "id, org_id, operation, key, fingerprint, request_fields, status_code, response, resource_id, created_at";

/// The result of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// This transaction owns the key now; `id` is its record, to be completed before commit.
    Claimed { id: i64 },
    /// The key was used by a committed request; replay it or refuse it.
    Existing(Box<RecordRow>),
}

/// Claims `key` for `operation` within the caller's transaction.
///
/// Errors with [`PersistenceError::LockTimeout`] when a concurrent transaction holds the key
/// longer than the lock wait.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    operation: Operation,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
    now: DateTime<Utc>,
) -> Result<Claim, PersistenceError> {
    let fields = serde_json::to_value(meaning.fields())
        .map_err(|e| PersistenceError::Other(e.to_string()))?;
    let fingerprint = meaning.fingerprint(operation);
    // Two rounds: a record can vanish between the conflict and the read only if a retention
    // purge deleted it in between, and then the second insert succeeds.
    for _ in 0..2 {
        let inserted = conn
            .query_one_raw(stmt(
                conn,
                "INSERT INTO idempotency_records (org_id, operation, key, fingerprint, request_fields, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (org_id, operation, key) DO NOTHING RETURNING id",
                vec![
                    org_id.into(),
                    operation.as_str().into(),
                    key.as_str().into(),
                    fingerprint.clone().into(),
                    fields.clone().into(),
                    now.into(),
                ],
            ))
            .await?;
        if let Some(row) = inserted {
            let id: i64 = row.try_get_by_index(0)?;
            return Ok(Claim::Claimed { id });
        }
        if let Some(existing) = get(conn, org_id, operation, key.as_str()).await? {
            return Ok(Claim::Existing(Box::new(existing)));
        }
    }
    Err(PersistenceError::Conflict(
        "idempotency record vanished twice".into(),
    ))
}

/// Stores the outcome on a claimed record (same transaction as the effect).
pub async fn complete<C: ConnectionTrait>(
    conn: &C,
    id: i64,
    status_code: u16,
    response: &serde_json::Value,
    resource_id: Option<&str>,
) -> Result<(), PersistenceError> {
    conn.execute_raw(stmt(
        conn,
        "UPDATE idempotency_records SET status_code = $2, response = $3, resource_id = $4 WHERE id = $1",
        vec![
            id.into(),
            i16::try_from(status_code).unwrap_or(i16::MAX).into(),
            response.clone().into(),
            resource_id.map(str::to_owned).into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn get<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    operation: Operation,
    key: &str,
) -> Result<Option<RecordRow>, PersistenceError> {
    Ok(RecordRow::find_by_statement(stmt(
        conn,
        &format!("SELECT {COLUMNS} FROM idempotency_records WHERE org_id = $1 AND operation = $2 AND key = $3"),
        vec![org_id.into(), operation.as_str().into(), key.into()],
    ))
    .one(conn)
    .await?)
}
