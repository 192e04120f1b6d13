//! Webhook endpoints and the events sent to them: registered, changed, removed, listed and
//! retried. Every write to an organisation's endpoints, whatever came of it, makes this
//! instance read them afresh for its next events ([`endpoint_write`]).

use std::collections::BTreeSet;

use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::Page;
use persistence::webhooks::{self, EndpointRow, EventRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::{Done, Effect, Outcome, execute};
use crate::engine::format::{to_json, ts};
use crate::engine::webhooks::{EVENT_TYPES, new_secret, refuse_url};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = WebhookEndpoint, example = json!({
    "endpointId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c06", "url": "https://example.com/hooks/loyalty",
    "events": ["currency.allocated"], "status": "ENABLED", "createdAt": "2026-01-01T00:00:00Z",
    "updatedAt": null, "secret": "whsec_MfKQ9r4GKSqeJ4nYQxXn0w=="
}))]
pub struct EndpointView {
    pub endpoint_id: String,
    pub url: String,
    pub events: Vec<String>,
    /// ENABLED, or DISABLED (records no new events and delivers none until enabled again).
    #[schema(pattern = "^(ENABLED|DISABLED)$")]
    pub status: String,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// The signing secret (Standard Webhooks), in the creation answer and its replays only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn endpoint_view(e: &EndpointRow, with_secret: bool) -> EndpointView {
    EndpointView {
        endpoint_id: e.id.to_string(),
        url: e.url.clone(),
        events: e.event_types().iter().map(|t| t.to_string()).collect(),
        status: e.status.clone(),
        created_at: ts(e.created_at),
        updated_at: e.updated_at.map(ts),
        secret: with_secret.then(|| e.secret.clone()),
    }
}

/// The URL of an endpoint, trimmed, checked against server-side request forgery.
async fn checked_url(state: &AppState, raw: &str) -> Result<String, AppError> {
    let url = raw.trim().to_owned();
    if url.len() > 2048 {
        return Err(AppError::validation(
            "url",
            "must be at most 2048 characters",
        ));
    }
    if let Some(reason) = refuse_url(&url, state.settings.webhooks.allow_private).await {
        return Err(AppError::validation("url", reason));
    }
    Ok(url)
}

/// The event types of an endpoint: at least one, each known, sorted without repeats.
fn checked_events(given: &[String]) -> Result<Vec<String>, AppError> {
    if given.is_empty() {
        return Err(AppError::validation(
            "events",
            "must name at least one event type",
        ));
    }
    let mut events = BTreeSet::new();
    for (i, e) in given.iter().enumerate() {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(AppError::validation(
                format!("events[{i}]"),
                format!("must be one of {}", EVENT_TYPES.join(", ")),
            ));
        }
        events.insert(e.clone());
    }
    Ok(events.into_iter().collect())
}

/// One event for one endpoint, and how its delivery went.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = WebhookEvent, example = json!({
    "id": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c07",
    "endpointId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c06", "event": "currency.allocated",
    "status": "DELIVERED", "attempts": 1, "lastResponseCode": 204, "lastResponseBody": "",
    "idempotencyToken": "evt_0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c08",
    "payload": {"id": "evt_0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c08", "type": "currency.allocated",
        "createdAt": "2026-01-01T00:00:00Z", "data": {}},
    "nextAttemptAt": null, "retryOf": null,
    "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:01Z"
}))]
pub struct EventView {
    pub id: String,
    pub endpoint_id: String,
    /// The event type (`currency.allocated`, …).
    pub event: String,
    /// DELIVERING, DELIVERED or FAILED.
    pub status: String,
    pub attempts: i32,
    pub last_response_code: Option<i32>,
    pub last_response_body: Option<String>,
    /// The same across retries of the same event (`webhook-id`).
    pub idempotency_token: String,
    /// The body delivered.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// While DELIVERING: the next attempt.
    pub next_attempt_at: Option<String>,
    /// For a retry: the event it retries.
    pub retry_of: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn event_view(e: &EventRow) -> EventView {
    EventView {
        id: e.id.to_string(),
        endpoint_id: e.endpoint_id.to_string(),
        event: e.event_type.clone(),
        status: e.status.clone(),
        attempts: e.attempts,
        last_response_code: e.last_response_code,
        last_response_body: e.last_response_body.clone(),
        idempotency_token: e.idempotency_token.clone(),
        payload: serde_json::from_str::<Value>(&e.body).unwrap_or(Value::Null),
        next_attempt_at: e
            .next_attempt_at
            .filter(|_| e.status == "DELIVERING")
            .map(ts),
        retry_of: e.retry_of.map(|r| r.to_string()),
        created_at: ts(e.created_at),
        updated_at: ts(e.updated_at),
    }
}

/// The id a path gives; a path that is no UUID names no `what` (404).
fn id_of(raw: &str, what: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::not_found(what))
}

/// A write to the organisation's endpoints through the write pipeline. Whatever came of it (a
/// commit of unknown outcome may have happened), this instance's next events see the
/// organisation's endpoints as they are now.
async fn endpoint_write<F>(
    state: &AppState,
    org_id: i64,
    operation: Operation,
    key: Option<&IdempotencyKey>,
    meaning: &RequestMeaning,
    effect: F,
) -> Result<Outcome, AppError>
where
    F: AsyncFnOnce(&persistence::Tx) -> Result<Effect, AppError>,
{
    let outcome = execute(state, org_id, operation, key, meaning, effect).await;
    state.caches.endpoints_changed(org_id);
    outcome
}

/// Registers an endpoint; its secret is in this answer (and its replays) only. An
/// organisation has at most `LOYALTY_WEBHOOK_MAX_ENDPOINTS` endpoints (deleted ones aside);
/// past that, 422 `ENDPOINT_LIMIT_REACHED`.
pub async fn create_endpoint(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    url: &str,
    events: &[String],
) -> Result<Outcome, AppError> {
    let url = checked_url(state, url).await?;
    let events = checked_events(events)?;
    let meaning = RequestMeaning::new()
        .with("url", Some(&url))
        .with("events", Some(events.join(",")));
    let now = state.now();
    let max_endpoints = state.settings.webhooks.max_endpoints;
    endpoint_write(
        state,
        org_id,
        Operation::WebhookEndpointCreate,
        key,
        &meaning,
        async |tx| {
            let row = webhooks::create_endpoint(
                tx,
                org_id,
                &url,
                &events,
                &new_secret(),
                now,
                max_endpoints,
            )
            .await?
            .ok_or_else(|| AppError::Unprocessable {
                code: "ENDPOINT_LIMIT_REACHED",
                detail: format!(
                    "The organisation already has {max_endpoints} webhook endpoints, the most it \
                     may have; delete one first."
                ),
                retryable: false,
            })?;
            Ok(Effect::created(to_json(&endpoint_view(&row, true)), row.id))
        },
    )
    .await
}

/// The organisation's endpoints, oldest first, without their secrets.
pub async fn list_endpoints(
    state: &AppState,
    org_id: i64,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<EndpointView>, AppError> {
    let result = webhooks::list_endpoints(state.db.conn(), org_id, cursor, limit).await?;
    Ok(Page {
        items: result
            .items
            .iter()
            .map(|e| endpoint_view(e, false))
            .collect(),
        next_cursor: result.next_cursor,
    })
}

/// What to change of an endpoint, as asked; an absent field stays as it is. `events:
/// Some(None)` is an explicit null, which is refused (an endpoint always has an event type).
pub struct EndpointChange<'a> {
    pub url: Option<&'a str>,
    pub events: Option<Option<&'a [String]>>,
    pub status: Option<&'a str>,
}

/// Changes an endpoint's url (under the same guard as a new one), events or status. A
/// disabled endpoint gets no new events, and its waiting ones are not delivered until it is
/// enabled again.
pub async fn update_endpoint(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    raw_id: &str,
    change: EndpointChange<'_>,
) -> Result<Outcome, AppError> {
    let url = match change.url {
        Some(u) => Some(checked_url(state, u).await?),
        None => None,
    };
    let events = match change.events {
        None => None,
        Some(None) => {
            return Err(AppError::validation(
                "events",
                "must be a list of event types",
            ));
        }
        Some(Some(e)) => Some(checked_events(e)?),
    };
    let status = match change.status {
        None => None,
        Some(s @ ("ENABLED" | "DISABLED")) => Some(s.to_owned()),
        Some(_) => {
            return Err(AppError::validation(
                "status",
                "must be ENABLED or DISABLED",
            ));
        }
    };
    let id = id_of(raw_id, "webhook endpoint")?;
    let patch = webhooks::EndpointPatch {
        url,
        events,
        status,
    };
    let meaning = RequestMeaning::new()
        .with("endpointId", Some(id))
        .with("url", patch.url.as_ref())
        .with("events", patch.events.as_ref().map(|e| e.join(",")))
        .with("status", patch.status.as_ref());
    let now = state.now();
    endpoint_write(
        state,
        org_id,
        Operation::WebhookEndpointUpdate,
        key,
        &meaning,
        async |tx| {
            let row = webhooks::update_endpoint(tx, org_id, id, &patch, now)
                .await?
                .ok_or_else(|| AppError::not_found("webhook endpoint"))?;
            Ok(Effect::created(to_json(&endpoint_view(&row, false)), row.id).done(Done::Updated))
        },
    )
    .await
}

/// Deletes an endpoint: it gets no new events; its events still waiting end FAILED
/// ("endpoint deleted"); recorded events stay visible. Deleting it again is 404, unless the
/// same idempotency key replays the first deletion.
pub async fn delete_endpoint(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    raw_id: &str,
) -> Result<Outcome, AppError> {
    let id = id_of(raw_id, "webhook endpoint")?;
    let now = state.now();
    endpoint_write(
        state,
        org_id,
        Operation::WebhookEndpointDelete,
        key,
        &RequestMeaning::new().with("endpointId", Some(id)),
        async |tx| {
            if !webhooks::delete_endpoint(tx, org_id, id, now).await? {
                return Err(AppError::not_found("webhook endpoint"));
            }
            Ok(Effect::created(json!({}), id).done(Done::Removed))
        },
    )
    .await
}

/// The organisation's events, newest first; `status` (delivering, delivered or failed, in
/// any case) keeps those in that state.
pub async fn list_events(
    state: &AppState,
    org_id: i64,
    status: Option<&str>,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<EventView>, AppError> {
    let status = match status.map(str::to_ascii_uppercase) {
        None => None,
        Some(s) if ["DELIVERING", "DELIVERED", "FAILED"].contains(&s.as_str()) => Some(s),
        Some(_) => {
            return Err(AppError::validation(
                "status",
                "must be delivering, delivered or failed",
            ));
        }
    };
    let result =
        webhooks::list_events(state.db.conn(), org_id, status.as_deref(), cursor, limit).await?;
    Ok(Page {
        items: result.items.iter().map(event_view).collect(),
        next_cursor: result.next_cursor,
    })
}

async fn event_of(state: &AppState, org_id: i64, raw: &str) -> Result<EventRow, AppError> {
    let id = id_of(raw, "webhook event")?;
    webhooks::get_event(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("webhook event"))
}

/// The event a path names.
pub async fn get_event(state: &AppState, org_id: i64, raw: &str) -> Result<EventView, AppError> {
    Ok(event_view(&event_of(state, org_id, raw).await?))
}

/// Retries an event: a new event resource (new id, `DELIVERING`) with the original's
/// idempotency token, so the receiver can tell it is the same event. An event whose endpoint
/// was deleted has nowhere to go (409 `ENDPOINT_DELETED`).
pub async fn retry_event(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    raw: &str,
) -> Result<Outcome, AppError> {
    let original = event_of(state, org_id, raw).await?;
    if webhooks::get_endpoint(state.db.conn(), org_id, original.endpoint_id)
        .await?
        .is_none()
    {
        return Err(AppError::Conflict {
            code: "ENDPOINT_DELETED",
            detail: "The event's endpoint was deleted; there is nowhere to deliver it.".into(),
        });
    }
    let meaning = RequestMeaning::new().with("eventId", Some(original.id));
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::WebhookEventRetry,
        key,
        &meaning,
        async |tx| {
            let row = webhooks::retry_event(tx, &original, now).await?;
            Ok(Effect::created(to_json(&event_view(&row)), row.id))
        },
    )
    .await
}
