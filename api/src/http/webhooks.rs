//! Webhook endpoints and events.

use std::collections::BTreeSet;

use actix_web::{HttpResponse, web};
use domain::idempotency::{Operation, RequestMeaning};
use persistence::webhooks::{self, EndpointRow, EventRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::write::{Effect, execute};
use crate::engine::webhooks::{EVENT_TYPES, new_secret, refuse_url};
use crate::http::answer::respond;
use crate::engine::format::ts;
use crate::http::extract::{IdempotencyHeader, Json, PageQuery, Tenant};
use crate::http::openapi::{EndpointPath, EventPath, KeyHeader, Missing, PageParams, Read, Replayed, Write, fragment, page};
use crate::engine::format::to_json;

/// Where to deliver which events.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = WebhookEndpointInput, example = json!({
    "url": "https://example.com/hooks/loyalty", "events": ["currency.allocated"]
}))]
pub struct CreateEndpoint {
    /// http(s), at most 2048 characters; loopback, private and link-local addresses are refused
    /// unless LOYALTY_WEBHOOK_ALLOW_PRIVATE is on.
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    #[schema(schema_with = event_types_schema)]
    pub events: Vec<String>,
}

fn event_types_schema() -> utoipa::openapi::Schema {
    fragment(
        json!({"type": "array", "minItems": 1, "items": {"type": "string", "enum": EVENT_TYPES}}),
    )
}

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

page!(EndpointPage, EndpointView);

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

/// `POST /v1/webhook-endpoints`: the secret is shown in this answer (and its replays) only. An
/// organisation has at most `LOYALTY_WEBHOOK_MAX_ENDPOINTS` endpoints (deleted ones aside);
/// past that, 422 `ENDPOINT_LIMIT_REACHED`.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "Webhooks",
    operation_id = "webhooks_create_endpoint",
    summary = "Register a webhook endpoint (signed with Standard Webhooks headers; 422 ENDPOINT_LIMIT_REACHED past the organisation's limit)",
    params(KeyHeader), request_body = CreateEndpoint,
    responses((status = 201, description = "Registered now, with its secret", body = EndpointView),
        Replayed<EndpointView>, Write))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create_endpoint(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    Json(body): Json<CreateEndpoint>,
) -> Result<HttpResponse, AppError> {
    let url = checked_url(&state, &body.url).await?;
    let events = checked_events(&body.events)?;
    let meaning = RequestMeaning::new()
        .with("url", Some(&url))
        .with("events", Some(events.join(",")));
    let org_id = tenant.org_id;
    let now = state.now();
    let max_endpoints = state.settings.webhooks.max_endpoints;
    let outcome = execute(
        &state,
        org_id,
        Operation::WebhookEndpointCreate,
        key.0.as_ref(),
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

#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "Webhooks",
    operation_id = "webhooks_list_endpoints",
    summary = "List the organisation's webhook endpoints (without secrets)", params(PageParams),
    responses((status = 200, description = "A page, oldest first", body = EndpointPage), Read))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list_endpoints(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.parse()?;
    let result =
        webhooks::list_endpoints(state.db.conn(), tenant.org_id, page.cursor, page.limit).await?;
    Ok(HttpResponse::Ok().json(EndpointPage::new(
        result
            .items
            .iter()
            .map(|e| endpoint_view(e, false))
            .collect(),
        result.next_cursor,
    )))
}

/// What to change of an endpoint; an absent (or null) field stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = WebhookEndpointPatch, example = json!({"status": "DISABLED"}))]
pub struct PatchEndpoint {
    /// As for a new endpoint (the same server-side request forgery guard applies).
    #[schema(format = "uri", max_length = 2048)]
    pub url: Option<String>,
    /// Not null: an endpoint always has at least one event type.
    #[serde(default, deserialize_with = "crate::http::dto::nullable")]
    #[schema(schema_with = event_types_schema)]
    pub events: Option<Option<Vec<String>>>,
    /// ENABLED or DISABLED.
    #[schema(value_type = Option<String>, pattern = "^(ENABLED|DISABLED)$")]
    pub status: Option<String>,
}

fn endpoint_id_of(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::not_found("webhook endpoint"))
}

/// `PATCH /v1/webhook-endpoints/{endpointId}`: url, events, status. A disabled endpoint gets no
/// new events, and its waiting ones are not delivered until it is enabled again.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{endpointId}", tag = "Webhooks",
    operation_id = "webhooks_update_endpoint",
    summary = "Change an endpoint's url, events or status (ENABLED/DISABLED)",
    params(EndpointPath, KeyHeader), request_body = PatchEndpoint,
    responses((status = 200, description = "Changed now", body = EndpointView),
        Replayed<EndpointView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn update_endpoint(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<PatchEndpoint>,
) -> Result<HttpResponse, AppError> {
    let url = match &body.url {
        Some(u) => Some(checked_url(&state, u).await?),
        None => None,
    };
    let events = match &body.events {
        None => None,
        Some(None) => {
            return Err(AppError::validation(
                "events",
                "must be a list of event types",
            ));
        }
        Some(Some(e)) => Some(checked_events(e)?),
    };
    let status = match body.status.as_deref() {
        None => None,
        Some(s @ ("ENABLED" | "DISABLED")) => Some(s.to_owned()),
        Some(_) => {
            return Err(AppError::validation(
                "status",
                "must be ENABLED or DISABLED",
            ));
        }
    };
    let id = endpoint_id_of(&path)?;
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
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::WebhookEndpointUpdate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let row = webhooks::update_endpoint(tx, org_id, id, &patch, now)
                .await?
                .ok_or_else(|| AppError::not_found("webhook endpoint"))?;
            Ok(
                Effect::created(to_json(&endpoint_view(&row, false)), row.id)
                    .done(crate::app::write::Done::Updated),
            )
        },
    )
    .await;
    state.caches.endpoints_changed(org_id);
    Ok(respond(
        Operation::WebhookEndpointUpdate,
        outcome?,
        key.0.as_ref(),
    ))
}

/// `DELETE /v1/webhook-endpoints/{endpointId}`: 204. The endpoint gets no new events; its
/// events still waiting end FAILED ("endpoint deleted"); recorded events stay visible. Deleting
/// it again is 404, unless the same Idempotency-Key replays the first deletion (204 with
/// `Idempotent-Replayed: true`).
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{endpointId}", tag = "Webhooks",
    operation_id = "webhooks_delete_endpoint", summary = "Delete an endpoint",
    params(EndpointPath, KeyHeader),
    responses((status = 204, description = "Deleted (or, with the same Idempotency-Key, deleted before: Idempotent-Replayed true)"),
        Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn delete_endpoint(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = endpoint_id_of(&path)?;
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::WebhookEndpointDelete,
        key.0.as_ref(),
        &RequestMeaning::new().with("endpointId", Some(id)),
        async |tx| {
            if !webhooks::delete_endpoint(tx, org_id, id, now).await? {
                return Err(AppError::not_found("webhook endpoint"));
            }
            Ok(Effect::created(json!({}), id).done(crate::app::write::Done::Removed))
        },
    )
    .await;
    state.caches.endpoints_changed(org_id);
    Ok(crate::http::answer::no_content(
        Operation::WebhookEndpointDelete,
        outcome?,
    ))
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

page!(EventPage, EventView);

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

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    pub status: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

/// `status`, with the page.
pub struct EventsParams;
impl utoipa::IntoParams for EventsParams {
    fn into_params(
        f: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let mut params = vec![crate::http::openapi::query_param(
            "status",
            false,
            None,
            json!({"type": "string", "enum": ["delivering", "delivered", "failed"]}),
        )];
        params.extend(<PageParams as utoipa::IntoParams>::into_params(f));
        params
    }
}

/// `GET /v1/webhook-events?status=failed`: newest first.
#[utoipa::path(get, path = "/v1/webhook-events", tag = "Webhooks",
    operation_id = "webhooks_list_events", summary = "List webhook events, newest first",
    params(EventsParams),
    responses((status = 200, description = "A page", body = EventPage), Read))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list_events(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.page.parse()?;
    let status = match query.status.as_deref().map(str::to_ascii_uppercase) {
        None => None,
        Some(s) if ["DELIVERING", "DELIVERED", "FAILED"].contains(&s.as_str()) => Some(s),
        Some(_) => {
            return Err(AppError::validation(
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
    Ok(HttpResponse::Ok().json(EventPage::new(
        result.items.iter().map(event_view).collect(),
        result.next_cursor,
    )))
}

async fn event_of(state: &AppState, org_id: i64, raw: &str) -> Result<EventRow, AppError> {
    let id = Uuid::parse_str(raw).map_err(|_| AppError::not_found("webhook event"))?;
    webhooks::get_event(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("webhook event"))
}

#[utoipa::path(get, path = "/v1/webhook-events/{id}", tag = "Webhooks",
    operation_id = "webhooks_get_event", summary = "Get a webhook event", params(EventPath),
    responses((status = 200, description = "The event", body = EventView), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get_event(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(event_view(&event_of(&state, tenant.org_id, &path).await?)))
}

/// `POST /v1/webhook-events/{id}/actions/retry`: a new event resource (new id, `DELIVERING`)
/// with the original's idempotency token, so the receiver can tell it is the same event.
#[utoipa::path(post, path = "/v1/webhook-events/{id}/actions/retry", tag = "Webhooks",
    operation_id = "webhooks_retry_event",
    summary = "Retry an event: a new event resource with the original's idempotency token",
    params(EventPath, KeyHeader),
    responses(
        (status = 201, description = "A new event, DELIVERING", body = EventView, links(
            ("GetEvent" = (operation_id = "webhooks_get_event", parameters(("id" = "$response.body#/id")))),
        )),
        Replayed<EventView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn retry_event(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let original = event_of(&state, tenant.org_id, &path).await?;
    if webhooks::get_endpoint(state.db.conn(), tenant.org_id, original.endpoint_id)
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
    let outcome = execute(
        &state,
        tenant.org_id,
        Operation::WebhookEventRetry,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let row = webhooks::retry_event(tx, &original, now).await?;
            Ok(Effect::created(to_json(&event_view(&row)), row.id))
        },
    )
    .await?;
    Ok(respond(
        Operation::WebhookEventRetry,
        outcome,
        key.0.as_ref(),
    ))
}
