//! Webhook endpoints and the outbox of events to deliver to them.
//!
//! Events are written by [`emit`] in the transaction of the effect they describe, so an effect
//! never exists without its events nor an event without its effect. Delivery happens later,
//! outside any transaction: [`due_orgs`] names the organisations with due events, [`claim_due`]
//! leases each one's share of them (`FOR UPDATE SKIP LOCKED`, so several instances share the
//! work), the caller sends them, and [`record_attempt`] stores what happened.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::{Keyset, Page, PersistenceError, insert_rows, limit_value, one_by_id, page, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct EndpointRow {
    pub id: Uuid,
    pub org_id: i64,
    pub url: String,
    pub events: String,
    pub secret: String,
    pub created_at: DateTime<Utc>,
    /// ENABLED or DISABLED.
    pub status: String,
    pub updated_at: Option<DateTime<Utc>>,
    /// Its position within the organisation (1, 2, … in creation order): the list's cursor.
    pub seq: i64,
}

impl EndpointRow {
    /// The subscribed event types.
    pub fn event_types(&self) -> Vec<String> {
        self.events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

const ENDPOINT_COLUMNS: &str =
    "id, org_id, url, events, secret, created_at, status, updated_at, seq";

/// `events` as stored: `,a,b,` so that `LIKE '%,a,%'` finds a subscription.
fn stored_events(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

/// Creates an endpoint, unless the organisation already has `max` endpoints that are not
/// deleted (`None` then). Creations in one organisation are serialised (an advisory lock on
/// PostgreSQL, SQLite's single writer), so the count is exact and the new `seq` is free.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn create_endpoint<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    url: &str,
    events: &[String],
    secret: &str,
    now: DateTime<Utc>,
    max: u64,
) -> Result<Option<EndpointRow>, PersistenceError> {
    if !crate::for_update(conn).is_empty() {
        // Two keys: the first names this lock, the second the organisation (two organisations
        // that share it only wait for each other's creations).
        conn.execute_raw(stmt(
            conn,
            "SELECT pg_advisory_xact_lock(727274011, ($1 % 2147483647)::int)",
            vec![org_id.into()],
        ))
        .await?;
    }
    #[derive(FromQueryResult)]
    struct Count {
        n: i64,
        last: i64,
    }
    let count = Count::find_by_statement(stmt(
        conn,
        "SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS n, COALESCE(max(seq), 0) AS last \
         FROM webhook_endpoints WHERE org_id = $1",
        vec![org_id.into()],
    ))
    .one(conn)
    .await?
    .unwrap_or(Count { n: 0, last: 0 });
    if u64::try_from(count.n).unwrap_or(0) >= max {
        return Ok(None);
    }
    let row = EndpointRow::find_by_statement(stmt(
        conn,
        &format!(
            "INSERT INTO webhook_endpoints (id, org_id, url, events, secret, created_at, seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}"
        ),
        vec![
            Uuid::now_v7().into(),
            org_id.into(),
            url.into(),
            stored_events(events).into(),
            secret.into(),
            now.into(),
            (count.last + 1).into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))?;
    Ok(Some(row))
}

/// The organisation's endpoint `id`, unless it was deleted.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get_endpoint<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
) -> Result<Option<EndpointRow>, PersistenceError> {
    Ok(EndpointRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
        ),
        vec![org_id.into(), id.into()],
    ))
    .one(conn)
    .await?)
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub status: Option<String>,
}

/// Changes an endpoint that is not deleted (an empty patch changes nothing, `updated_at`
/// included); `None` when there is no such endpoint.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn update_endpoint<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
    patch: &EndpointPatch,
    now: DateTime<Utc>,
) -> Result<Option<EndpointRow>, PersistenceError> {
    Ok(EndpointRow::find_by_statement(stmt(
        conn,
        &format!(
            "UPDATE webhook_endpoints SET url = COALESCE($3, url), events = COALESCE($4, events), \
             status = COALESCE($5, status), \
             updated_at = CASE WHEN $3 IS NULL AND $4 IS NULL AND $5 IS NULL THEN updated_at ELSE $6 END \
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {ENDPOINT_COLUMNS}"
        ),
        vec![
            org_id.into(),
            id.into(),
            patch.url.clone().into(),
            patch.events.as_deref().map(stored_events).into(),
            patch.status.clone().into(),
            now.into(),
        ],
    ))
    .one(conn)
    .await?)
}

/// Deletes an endpoint: it gets no new events, and its events still waiting for delivery end
/// `FAILED` (they stay visible, as do the delivered ones). `false` when there was no such
/// endpoint (or it was deleted before).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn delete_endpoint<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, PersistenceError> {
    let deleted = conn
        .execute_raw(stmt(
            conn,
            "UPDATE webhook_endpoints SET deleted_at = $3, updated_at = $3 \
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
            vec![org_id.into(), id.into(), now.into()],
        ))
        .await?;
    if deleted.rows_affected() != 1 {
        return Ok(false);
    }
    conn.execute_raw(stmt(
        conn,
        "UPDATE webhook_events SET status = 'FAILED', next_attempt_at = NULL, \
         last_response_body = 'endpoint deleted', updated_at = $3 \
         WHERE org_id = $1 AND endpoint_id = $2 AND status = 'DELIVERING'",
        vec![org_id.into(), id.into(), now.into()],
    ))
    .await?;
    Ok(true)
}

/// The organisation's endpoints that are not deleted (enabled or not), oldest first, `limit`
/// at a time after the `after` cursor.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_endpoints<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<EndpointRow>, PersistenceError> {
    page(
        conn,
        &format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE org_id = $1 AND deleted_at IS NULL"
        ),
        vec![org_id.into()],
        "seq",
        Keyset::After(after),
        limit,
        |r: &EndpointRow| r.seq,
    )
    .await
}

/// The endpoints new events are recorded for: enabled and not deleted.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn subscribed_endpoints<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
) -> Result<Vec<EndpointRow>, PersistenceError> {
    endpoints_where(conn, org_id, " AND status = 'ENABLED'").await
}

async fn endpoints_where<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    and: &str,
) -> Result<Vec<EndpointRow>, PersistenceError> {
    Ok(EndpointRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE org_id = $1 AND deleted_at IS NULL{and} ORDER BY seq"
        ),
        vec![org_id.into()],
    ))
    .all(conn)
    .await?)
}

/// One event to emit: its type and the body to send, built per endpoint from its token.
pub struct NewEvent<'a> {
    pub event_type: &'a str,
    /// Builds the exact body for a delivery, given its idempotency token.
    pub body: Box<dyn Fn(&str) -> String + Send + Sync + 'a>,
}

/// Writes one outbox row per (event, subscribed endpoint), in the caller's transaction.
/// Returns how many rows it wrote.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn emit<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    events: &[NewEvent<'_>],
    now: DateTime<Utc>,
) -> Result<usize, PersistenceError> {
    if events.is_empty() {
        return Ok(0);
    }
    let endpoints = subscribed_endpoints(conn, org_id).await?;
    emit_to(conn, &[(org_id, &endpoints, events)], now).await
}

/// Writes the outbox rows of events whose organisations' endpoints the caller already has (a
/// cache; group commit): `(organisation, its endpoints, its events)`. One statement for all.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn emit_to<C: ConnectionTrait>(
    conn: &C,
    batches: &[(i64, &[EndpointRow], &[NewEvent<'_>])],
    now: DateTime<Utc>,
) -> Result<usize, PersistenceError> {
    let mut rows = Vec::new();
    for (org_id, endpoints, events) in batches {
        for event in *events {
            let needle = format!(",{},", event.event_type);
            for endpoint in endpoints.iter().filter(|e| e.events.contains(&needle)) {
                let token = format!("msg_{}", Uuid::new_v4().simple());
                let body = (event.body)(&token);
                rows.push(vec![
                    Uuid::now_v7().into(),
                    (*org_id).into(),
                    endpoint.id.into(),
                    event.event_type.into(),
                    body.into(),
                    token.into(),
                    "DELIVERING".into(),
                    0i32.into(),
                    now.into(),
                    now.into(),
                    now.into(),
                ]);
            }
        }
    }
    let n = rows.len();
    insert_rows(
        conn,
        "webhook_events",
        "id, org_id, endpoint_id, event_type, body, idempotency_token, \
         status, attempts, next_attempt_at, created_at, updated_at",
        "",
        rows,
    )
    .await?;
    Ok(n)
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct EventRow {
    pub seq: i64,
    pub id: Uuid,
    pub org_id: i64,
    pub endpoint_id: Uuid,
    pub event_type: String,
    pub body: String,
    pub idempotency_token: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_response_code: Option<i32>,
    pub last_response_body: Option<String>,
    pub retry_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const EVENT_COLUMNS: &str = "seq, id, org_id, endpoint_id, event_type, body, idempotency_token, status, \
     attempts, next_attempt_at, last_response_code, last_response_body, retry_of, created_at, updated_at";

/// An event leased for delivery, with where to send it and how to sign it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: EventRow,
    pub url: String,
    pub secret: String,
}

/// The organisations with events due at `now`, the one whose oldest due event is oldest first,
/// up to `limit` of them, leaving out `except` (those already delivering all they may).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn due_orgs<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    except: &[i64],
    limit: u64,
) -> Result<Vec<i64>, PersistenceError> {
    #[derive(FromQueryResult)]
    struct Org {
        org_id: i64,
    }
    let mut values: Vec<Value> = vec![now.into(), limit_value(limit)];
    let except_sql = crate::and_not_in("org_id", except, &mut values);
    Ok(Org::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT org_id FROM webhook_events WHERE status = 'DELIVERING' AND next_attempt_at <= $1\
             {except_sql} AND endpoint_id IN (SELECT id FROM webhook_endpoints \
                                 WHERE status = 'ENABLED' AND deleted_at IS NULL) \
             GROUP BY org_id ORDER BY min(next_attempt_at), org_id LIMIT $2"
        ),
        values,
    ))
    .all(conn)
    .await?
    .into_iter()
    .map(|o| o.org_id)
    .collect())
}

/// Leases up to `limit` due events (of organisation `org` only, when given) until
/// `lease_until` (another worker will not take them before then) and returns them with their
/// endpoints.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn claim_due<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u64,
    org: Option<i64>,
) -> Result<Vec<Delivery>, PersistenceError> {
    let skip = crate::row_lock(conn, " FOR UPDATE SKIP LOCKED");
    let of_org = if org.is_some() {
        " AND org_id = $4"
    } else {
        ""
    };
    let mut values: Vec<Value> = vec![now.into(), lease_until.into(), limit_value(limit)];
    if let Some(org) = org {
        values.push(org.into());
    }
    let events = EventRow::find_by_statement(stmt(
        conn,
        &format!(
            "UPDATE webhook_events SET next_attempt_at = $2 WHERE seq IN \
             (SELECT seq FROM webhook_events WHERE status = 'DELIVERING' AND next_attempt_at <= $1{of_org} \
              AND endpoint_id IN (SELECT id FROM webhook_endpoints \
                                  WHERE status = 'ENABLED' AND deleted_at IS NULL) \
              ORDER BY next_attempt_at LIMIT $3{skip}) RETURNING {EVENT_COLUMNS}"
        ),
        values,
    ))
    .all(conn)
    .await?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Value> = events.iter().map(|e| Value::from(e.endpoint_id)).collect();
    let endpoints: HashMap<Uuid, EndpointRow> = EndpointRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id IN ({})",
            crate::in_list(1, ids.len())
        ),
        ids,
    ))
    .all(conn)
    .await?
    .into_iter()
    .map(|e| (e.id, e))
    .collect();
    Ok(events
        .into_iter()
        .filter_map(|event| {
            let endpoint = endpoints.get(&event.endpoint_id)?;
            Some(Delivery {
                url: endpoint.url.clone(),
                secret: endpoint.secret.clone(),
                event,
            })
        })
        .collect())
}

/// What one delivery attempt came to.
#[derive(Debug, Clone)]
pub enum AttemptResult {
    Delivered {
        code: i32,
        body: String,
    },
    /// Failed; `retry_at` is when to try again, `None` when the schedule is used up.
    Failed {
        code: Option<i32>,
        body: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn record_attempt<C: ConnectionTrait>(
    conn: &C,
    seq: i64,
    result: &AttemptResult,
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    let (status, code, body, next): (&str, Option<i32>, &str, Option<DateTime<Utc>>) = match result
    {
        AttemptResult::Delivered { code, body } => ("DELIVERED", Some(*code), body, None),
        AttemptResult::Failed {
            code,
            body,
            retry_at: Some(at),
        } => ("DELIVERING", *code, body, Some(*at)),
        AttemptResult::Failed {
            code,
            body,
            retry_at: None,
        } => ("FAILED", *code, body, None),
    };
    conn.execute_raw(stmt(
        conn,
        "UPDATE webhook_events SET status = $2, attempts = attempts + 1, last_response_code = $3, \
         last_response_body = $4, next_attempt_at = $5, updated_at = $6 WHERE seq = $1",
        vec![
            seq.into(),
            status.into(),
            code.into(),
            body.into(),
            next.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get_event<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
) -> Result<Option<EventRow>, PersistenceError> {
    one_by_id(conn, EVENT_COLUMNS, "webhook_events", org_id, id).await
}

/// The organisation's events, newest first, optionally of one status.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_events<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    status: Option<&str>,
    before: Option<i64>,
    limit: u64,
) -> Result<Page<EventRow>, PersistenceError> {
    let mut values: Vec<Value> = vec![org_id.into()];
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM webhook_events WHERE org_id = $1");
    if let Some(s) = status {
        values.push(s.into());
        sql.push_str(" AND status = $2");
    }
    page(
        conn,
        &sql,
        values,
        "seq",
        Keyset::Before(before),
        limit,
        |r: &EventRow| r.seq,
    )
    .await
}

/// A manual retry: a new event row with the original's endpoint, body and idempotency token.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn retry_event<C: ConnectionTrait>(
    conn: &C,
    original: &EventRow,
    now: DateTime<Utc>,
) -> Result<EventRow, PersistenceError> {
    EventRow::find_by_statement(stmt(
        conn,
        &format!(
            "INSERT INTO webhook_events (id, org_id, endpoint_id, event_type, body, idempotency_token, \
             status, attempts, next_attempt_at, retry_of, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'DELIVERING', 0, $7, $8, $7, $7) RETURNING {EVENT_COLUMNS}"
        ),
        vec![
            Uuid::now_v7().into(),
            original.org_id.into(),
            original.endpoint_id.into(),
            original.event_type.clone().into(),
            original.body.clone().into(),
            original.idempotency_token.clone().into(),
            now.into(),
            original.id.into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))
}
