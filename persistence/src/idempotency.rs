//! The idempotency store: one record per (organisation, operation, key), written in the same
//! transaction as the effect it guards.
//!
//! Claiming a key is an `INSERT … ON CONFLICT DO NOTHING`, never a `SELECT` first: the unique
//! index is the arbiter. On PostgreSQL a concurrent claim of the same key blocks on that index
//! until the first transaction commits (then it finds the record and replays it) or rolls back
//! (then its own insert goes through and it performs the effect itself). The wait is bounded by
//! the transaction's `lock_timeout`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use sea_orm::{ConnectionTrait, FromQueryResult};

use crate::lock_order::Locks;
use crate::{Cell, PersistenceError, stmt};

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
    /// The same outcome as the JSON text the database keeps (`CAST(response AS TEXT)`), which
    /// is what every replay answers, so that all the replays of a key are the same bytes.
    pub response_text: Option<String>,
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

const COLUMNS: &str = "id, org_id, operation, key, fingerprint, request_fields, status_code, response, CAST(response AS TEXT) AS response_text, resource_id, created_at";

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
///
/// A record created before `forget_before` (the retention) is forgotten: deleted here, and the
/// key claimed afresh.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn claim<C: ConnectionTrait + Locks>(
    conn: &C,
    org_id: i64,
    operation: Operation,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
    now: DateTime<Utc>,
    forget_before: Option<DateTime<Utc>>,
) -> Result<Claim, PersistenceError> {
    if let Some(order) = conn.lock_order() {
        order.keys(true)?;
    }
    claim_unchecked(conn, org_id, operation, key, meaning, now, forget_before).await
}

/// [`claim`] without reporting to the lock order (for a claim that does not wait).
async fn claim_unchecked<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    operation: Operation,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
    now: DateTime<Utc>,
    forget_before: Option<DateTime<Utc>>,
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
            if forget_before.is_some_and(|cutoff| existing.created_at < cutoff) {
                forget(conn, existing.id).await?;
                continue;
            }
            return Ok(Claim::Existing(Box::new(existing)));
        }
    }
    Err(PersistenceError::Conflict(
        "idempotency record vanished twice".into(),
    ))
}

/// [`claim`] without waiting for a transaction that holds the key: inside a savepoint of
/// `tx`, with a lock wait of a millisecond (PostgreSQL; SQLite has one writer and nothing to
/// wait for). `Some((savepoint, record id))` when the key was claimed: the caller does its
/// effect in the savepoint and commits it (or drops it to give everything up); `None` when the
/// key was used before or is held by a transaction in flight, and nothing changed. For a path
/// that holds a lock the key's holder may be waiting for, where waiting for the key would be a
/// deadlock.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn claim_at_once(
    tx: &crate::Tx,
    org_id: i64,
    operation: Operation,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
    now: DateTime<Utc>,
) -> Result<Option<(crate::Tx, i64)>, PersistenceError> {
    let savepoint = tx.savepoint().await?;
    let postgres = tx.get_database_backend() == sea_orm::DbBackend::Postgres;
    let lock_wait: Option<String> = if postgres {
        let shown = savepoint
            .query_one_raw(stmt(
                &savepoint,
                "SELECT current_setting('lock_timeout')",
                vec![],
            ))
            .await?;
        savepoint
            .execute_unprepared("SET LOCAL lock_timeout = '1ms'")
            .await?;
        shown.map(|row| row.try_get_by_index(0)).transpose()?
    } else {
        None
    };
    let record = match claim_unchecked(&savepoint, org_id, operation, key, meaning, now, None).await
    {
        Ok(Claim::Claimed { id }) => id,
        Ok(Claim::Existing(_)) | Err(PersistenceError::LockTimeout) => {
            savepoint.rollback().await?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if let Some(wait) = lock_wait {
        savepoint
            .execute_raw(stmt(
                &savepoint,
                "SELECT set_config('lock_timeout', $1, true)",
                vec![wait.into()],
            ))
            .await?;
    }
    Ok(Some((savepoint, record)))
}

/// Stores the outcome on a claimed record (same transaction as the effect).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
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

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
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

/// A key of a batch that may span organisations (group commit of single requests, bulk
/// issuance's items).
#[derive(Debug, Clone)]
pub struct OrgKey<'a> {
    pub org_id: i64,
    pub key: IdempotencyKey,
    pub meaning: &'a RequestMeaning,
    /// The outcome to store with the claim, when it is known before the effect (an
    /// issuance draws its id and voucher codes up front): the record is then written once,
    /// not inserted and updated. A claim whose effect does not happen is released, so no
    /// other request ever reads an outcome that was not committed with its effect.
    pub outcome: Option<KnownOutcome>,
}

/// An outcome stored with the claim of its key; see [`OrgKey::outcome`].
#[derive(Debug, Clone)]
pub struct KnownOutcome {
    pub status_code: u16,
    /// The answer's JSON text (an object), stored as it is: serialised once by the caller,
    /// which sends the same text to the client.
    pub response: String,
    pub resource_id: Option<String>,
}

/// The columns a new record is inserted with; see [`record_row`].
pub(crate) const RECORD_COLUMNS: &str = "org_id, operation, key, fingerprint, request_fields, \
     created_at, status_code, response, resource_id";

/// The values of a new record of `k` ([`RECORD_COLUMNS`]), with its outcome if it is known.
pub(crate) fn record_row(
    operation: Operation,
    k: &OrgKey<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Cell>, PersistenceError> {
    let fields = serde_json::to_string(k.meaning.fields())
        .map_err(|e| PersistenceError::Other(e.to_string()))?;
    let outcome = k.outcome.as_ref();
    let value = |v: sea_orm::Value| Cell::Value(v);
    Ok(vec![
        value(k.org_id.into()),
        value(operation.as_str().into()),
        value(k.key.as_str().into()),
        value(k.meaning.fingerprint(operation).into()),
        Cell::JsonText(fields),
        value(now.into()),
        value(
            outcome
                .map(|o| i16::try_from(o.status_code).unwrap_or(i16::MAX))
                .into(),
        ),
        outcome.map_or(Cell::Value(sea_orm::Value::Json(None)), |o| {
            Cell::JsonText(o.response.clone())
        }),
        value(outcome.and_then(|o| o.resource_id.clone()).into()),
    ])
}

/// Claims many keys of one operation at once, in `(organisation, key)` order (so that two
/// overlapping batches lock their common keys in the same order and never deadlock): one
/// multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`, then one read of the keys that were
/// used already. Returns a claim per `(organisation, key)`.
///
/// The keys must be distinct. Records older than `forget_before` (the retention) are forgotten
/// and their keys claimed afresh.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn claim_keys<C: ConnectionTrait + Locks>(
    conn: &C,
    operation: Operation,
    keys: &[OrgKey<'_>],
    now: DateTime<Utc>,
    forget_before: Option<DateTime<Utc>>,
) -> Result<HashMap<(i64, String), Claim>, PersistenceError> {
    if let Some(order) = conn.lock_order() {
        order.keys(true)?;
    }
    let mut sorted: Vec<&OrgKey<'_>> = keys.iter().collect();
    sorted.sort_by(|a, b| (a.org_id, a.key.as_str()).cmp(&(b.org_id, b.key.as_str())));
    let mut claims: HashMap<(i64, String), Claim> = HashMap::with_capacity(keys.len());
    let wanted = |k: &OrgKey<'_>| (k.org_id, k.key.as_str().to_owned());
    for _ in 0..3 {
        let pending: Vec<&OrgKey<'_>> = sorted
            .iter()
            .copied()
            .filter(|k| !claims.contains_key(&wanted(k)))
            .collect();
        if pending.is_empty() {
            break;
        }
        let rows = pending
            .iter()
            .map(|k| record_row(operation, k, now))
            .collect::<Result<_, _>>()?;
        let inserted = crate::insert_cells(
            conn,
            "idempotency_records",
            RECORD_COLUMNS,
            "ON CONFLICT (org_id, operation, key) DO NOTHING RETURNING id, org_id, key",
            rows,
        )
        .await?;
        for row in inserted {
            let id: i64 = row.try_get_by_index(0)?;
            let org_id: i64 = row.try_get_by_index(1)?;
            let key: String = row.try_get_by_index(2)?;
            claims.insert((org_id, key), Claim::Claimed { id });
        }
        let existing_keys: Vec<(i64, Operation, &str)> = pending
            .iter()
            .filter(|k| !claims.contains_key(&wanted(k)))
            .map(|k| (k.org_id, operation, k.key.as_str()))
            .collect();
        for record in get_keys(conn, &existing_keys).await? {
            if forget_before.is_some_and(|cutoff| record.created_at < cutoff) {
                // Forgotten: the next round claims the key afresh.
                forget(conn, record.id).await?;
                continue;
            }
            claims.insert(
                (record.org_id, record.key.clone()),
                Claim::Existing(Box::new(record)),
            );
        }
    }
    if claims.len() < keys.len() {
        return Err(PersistenceError::Conflict(
            "idempotency records vanished while being claimed".into(),
        ));
    }
    Ok(claims)
}

/// The committed records of `keys`, all of one organisation; see [`get_keys`].
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get_many<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    operation: Operation,
    keys: &[&str],
) -> Result<Vec<RecordRow>, PersistenceError> {
    let keys: Vec<(i64, Operation, &str)> = keys.iter().map(|k| (org_id, operation, *k)).collect();
    get_keys(conn, &keys).await
}

/// The committed records of `(organisation, operation, key)` triples (those that exist).
///
/// The keys are joined as a `VALUES` list rather than matched with `key IN ($3, …)`: with a
/// long parameter list PostgreSQL may settle on a generic plan that scans every key of the
/// organisation and compares it with each parameter, which made a 1000-item replay take
/// hundreds of milliseconds; the join looks each key up in the unique index.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get_keys<C: ConnectionTrait>(
    conn: &C,
    keys: &[(i64, Operation, &str)],
) -> Result<Vec<RecordRow>, PersistenceError> {
    let columns = "r.id, r.org_id, r.operation, r.key, r.fingerprint, r.request_fields, \
                   r.status_code, r.response, CAST(r.response AS TEXT) AS response_text, \
                   r.resource_id, r.created_at";
    rows_of_keys(conn, keys, columns).await
}

/// What a replay needs of a committed record: the fingerprint to compare and the stored answer
/// as the JSON text the database keeps (`CAST(response AS TEXT)`), so that it is neither parsed
/// nor re-serialised on the way out. The request's fields, only needed to name what differs
/// when the fingerprint does not match, are read then ([`get`]).
#[derive(Debug, Clone, FromQueryResult)]
pub struct ReplayRow {
    pub id: i64,
    pub org_id: i64,
    pub operation: String,
    pub key: String,
    pub fingerprint: String,
    pub response: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The committed records of `(organisation, operation, key)`s, as [`ReplayRow`]s: the replay
/// path's one read, for many concurrent requests at once.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn replay_keys<C: ConnectionTrait>(
    conn: &C,
    keys: &[(i64, Operation, &str)],
) -> Result<Vec<ReplayRow>, PersistenceError> {
    rows_of_keys(
        conn,
        keys,
        "r.id, r.org_id, r.operation, r.key, r.fingerprint, \
         CAST(r.response AS TEXT) AS response, r.created_at",
    )
    .await
}

/// `columns` of the committed records of `keys`: one `VALUES` join on the unique index per
/// 5 000 keys.
async fn rows_of_keys<R: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    keys: &[(i64, Operation, &str)],
    columns: &str,
) -> Result<Vec<R>, PersistenceError> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(5_000) {
        let (rows, values) = key_values(chunk);
        out.extend(
            R::find_by_statement(stmt(
                conn,
                &format!(
                    "WITH wanted(org_id, operation, key) AS (VALUES {rows}) \
                     SELECT {columns} FROM wanted JOIN idempotency_records r \
                     ON r.org_id = wanted.org_id AND r.operation = wanted.operation \
                     AND r.key = wanted.key"
                ),
                values,
            ))
            .all(conn)
            .await?,
        );
    }
    Ok(out)
}

/// The `VALUES` rows `($1, $2, $3), …` of `keys` and their parameters.
fn key_values(keys: &[(i64, Operation, &str)]) -> (String, Vec<sea_orm::Value>) {
    crate::values_rows(
        1,
        keys.iter().map(|(org_id, operation, key)| {
            vec![(*org_id).into(), operation.as_str().into(), (*key).into()]
        }),
    )
}

/// Stores the outcomes of many claimed records: `(record id, response, resource id)`.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn complete_many<C: ConnectionTrait>(
    conn: &C,
    status_code: u16,
    outcomes: &[(i64, serde_json::Value, Option<String>)],
) -> Result<(), PersistenceError> {
    for chunk in outcomes.chunks(5_000) {
        let (tuples, mut values) = crate::values_rows(
            2,
            chunk.iter().map(|(id, response, resource)| {
                vec![
                    (*id).into(),
                    response.clone().into(),
                    resource.clone().into(),
                ]
            }),
        );
        values.insert(0, i16::try_from(status_code).unwrap_or(i16::MAX).into());
        conn.execute_raw(stmt(
            conn,
            &format!(
                "WITH v(id, response, resource_id) AS (VALUES {tuples}) \
                 UPDATE idempotency_records SET status_code = $1, response = v.response, \
                 resource_id = v.resource_id FROM v WHERE idempotency_records.id = v.id"
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Forgets claimed records whose items failed definitely, so their keys are not consumed.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn release_many<C: ConnectionTrait>(
    conn: &C,
    ids: &[i64],
) -> Result<(), PersistenceError> {
    for chunk in ids.chunks(5_000) {
        let values: Vec<sea_orm::Value> =
            chunk.iter().map(|id| sea_orm::Value::from(*id)).collect();
        conn.execute_raw(stmt(
            conn,
            &format!(
                "DELETE FROM idempotency_records WHERE id IN ({})",
                crate::in_list(1, chunk.len())
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

async fn forget<C: ConnectionTrait>(conn: &C, id: i64) -> Result<(), PersistenceError> {
    conn.execute_raw(stmt(
        conn,
        "DELETE FROM idempotency_records WHERE id = $1",
        vec![id.into()],
    ))
    .await?;
    Ok(())
}

/// Deletes up to `batch` records created before `cutoff`; returns how many. On PostgreSQL the
/// rows are picked with `SKIP LOCKED`, so the purge never waits for (or blocks) a request.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn purge_before<C: ConnectionTrait>(
    conn: &C,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, PersistenceError> {
    let skip = crate::row_lock(conn, " FOR UPDATE SKIP LOCKED");
    let result = conn
        .execute_raw(stmt(
            conn,
            &format!(
                "DELETE FROM idempotency_records WHERE id IN \
                 (SELECT id FROM idempotency_records WHERE created_at < $1 ORDER BY created_at LIMIT $2{skip})"
            ),
            vec![cutoff.into(), crate::limit_value(batch)],
        ))
        .await?;
    Ok(result.rows_affected())
}
