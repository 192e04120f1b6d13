//! Webhook endpoints and events.

use std::collections::BTreeSet;

use actix_web::{HttpResponse, web};
use domain::idempotency::{Operation, RequestMeaning};
use persistence::webhooks::{self, EndpointRow, EventRow};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dto::ts;
use crate::error::ApiError;
use crate::extract::{IdempotencyHeader, Json, PageQuery, Tenant};
use crate::idempotent::{Effect, execute, respond};
use crate::routes::page_json;
use crate::startup::AppState;
use crate::webhooks::{EVENT_TYPES, new_secret, refuse_url};

#[derive(Debug, Deserialize)]
pub struct CreateEndpoint {
    pub url: String,
    pub events: Vec<String>,
}

fn endpoint_json(e: &EndpointRow, with_secret: bool) -> Value {
    let mut v = json!({
        "endpointId": e.id.to_string(),
        "url": e.url,
        "events": e.event_types(),
        "createdAt": ts(e.created_at),
    });
    if with_secret {
        v["secret"] = json!(e.secret);
    }
    v
}

/// `POST /v1/webhook-endpoints`: the secret is shown in this answer (and its replays) only.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create_endpoint(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    Json(body): Json<CreateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let url = body.url.trim().to_owned();
    if url.len() > 2048 {
        return Err(ApiError::validation(
            "url",
            "must be at most 2048 characters",
        ));
    }
    if let Some(reason) = refuse_url(&url, state.settings.webhooks.allow_private).await {
        return Err(ApiError::validation("url", reason));
    }
    if body.events.is_empty() {
        return Err(ApiError::validation(
            "events",
            "must name at least one event type",
        ));
    }
    let mut events = BTreeSet::new();
    for (i, e) in body.events.iter().enumerate() {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(ApiError::validation(
                format!("events[{i}]"),
                format!("must be one of {}", EVENT_TYPES.join(", ")),
            ));
        }
        events.insert(e.clone());
    }
    let events: Vec<String> = events.into_iter().collect();
    let meaning = RequestMeaning::new()
        .with("url", Some(&url))
        .with("events", Some(events.join(",")));
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::WebhookEndpointCreate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let row =
                webhooks::create_endpoint(tx, org_id, &url, &events, &new_secret(), now).await?;
            Ok(Effect::created(endpoint_json(&row, true), row.id))
        },
    )
    .await;
    // Whatever came of it (a commit of unknown outcome may have happened), this instance's
    // next events see the organisation's endpoints as they are now.
    state.caches.endpoints_changed(org_id);
    Ok(respond(
        Operation::WebhookEndpointCreate,
        outcome?,
        key.0.as_ref(),
    ))
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list_endpoints(
    state: web::Data<AppState>,
    tenant: Tenant,
) -> Result<HttpResponse, ApiError> {
    let rows = webhooks::list_endpoints(state.db.conn(), tenant.org_id).await?;
    Ok(HttpResponse::Ok().json(page_json(
        rows.iter().map(|e| endpoint_json(e, false)).collect(),
        None,
    )))
}

fn event_json(e: &EventRow) -> Value {
    json!({
        "id": e.id.to_string(),
        "endpointId": e.endpoint_id.to_string(),
        "event": e.event_type,
        "status": e.status,
        "attempts": e.attempts,
        "lastResponseCode": e.last_response_code,
        "lastResponseBody": e.last_response_body,
        "idempotencyToken": e.idempotency_token,
        "payload": serde_json::from_str::<Value>(&e.body).unwrap_or(Value::Null),
        "nextAttemptAt": e.next_attempt_at.filter(|_| e.status == "DELIVERING").map(ts),
        "retryOf": e.retry_of.map(|r| r.to_string()),
        "createdAt": ts(e.created_at),
        "updatedAt": ts(e.updated_at),
    })
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    pub status: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

/// `GET /v1/webhook-events?status=failed`: newest first.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list_events(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page.parse()?;
    let status = match query.status.as_deref().map(str::to_ascii_uppercase) {
        None => None,
        Some(s) if ["DELIVERING", "DELIVERED", "FAILED"].contains(&s.as_str()) => Some(s),
        Some(_) => {
            return Err(ApiError::validation(
                "status",
                "must be delivering, delivered or failed",
            ));
        }
    };
    let result = webhooks::list_events(
        state.db.conn(),
        tenant.org_id,
        status.as_deref(),
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(page_json(
        result.items.iter().map(event_json).collect(),
        result.next_cursor,
    )))
}

async fn event_of(state: &AppState, org_id: i64, raw: &str) -> Result<EventRow, ApiError> {
    let id = Uuid::parse_str(raw).map_err(|_| ApiError::not_found("webhook event"))?;
    webhooks::get_event(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook event"))
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get_event(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(event_json(&event_of(&state, tenant.org_id, &path).await?)))
}

/// `POST /v1/webhook-events/{id}/actions/retry`: a new event resource (new id, `DELIVERING`)
/// with the original's idempotency token, so the receiver can tell it is the same event.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn retry_event(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let original = event_of(&state, tenant.org_id, &path).await?;
    let meaning = RequestMeaning::new().with("eventId", Some(original.id));
    let now = state.now();
    let outcome = execute(
        &state,
        tenant.org_id,
        Operation::WebhookEventRetry,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let row = webhooks::retry_event(tx, &original, now).await?;
            Ok(Effect::created(event_json(&row), row.id))
        },
    )
    .await?;
    Ok(respond(
        Operation::WebhookEventRetry,
        outcome,
        key.0.as_ref(),
    ))
}
