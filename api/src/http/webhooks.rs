//! Webhook endpoints and events.

use actix_web::{HttpResponse, web};
use domain::idempotency::Operation;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::endpoints::{self as use_case, EndpointChange};
use crate::engine::webhooks::EVENT_TYPES;
use crate::http::answer::{no_content, respond};
use crate::http::extract::{IdempotencyHeader, Json, PageQuery, Tenant};
use crate::http::openapi::{
    EndpointPath, EventPath, KeyHeader, Missing, PageParams, Read, Replayed, Write, fragment, page,
};

use crate::app::endpoints::{EndpointView, EventView};

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

page!(EndpointPage, EndpointView);

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
    let outcome = use_case::create_endpoint(
        &state,
        tenant.org_id,
        key.0.as_ref(),
        &body.url,
        &body.events,
    )
    .await?;
    Ok(respond(
        Operation::WebhookEndpointCreate,
        outcome,
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
    let endpoints =
        use_case::list_endpoints(&state, tenant.org_id, page.cursor, page.limit).await?;
    Ok(HttpResponse::Ok().json(EndpointPage::new(endpoints.items, endpoints.next_cursor)))
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
    let change = EndpointChange {
        url: body.url.as_deref(),
        events: body.events.as_ref().map(Option::as_deref),
        status: body.status.as_deref(),
    };
    let outcome =
        use_case::update_endpoint(&state, tenant.org_id, key.0.as_ref(), &path, change).await?;
    Ok(respond(
        Operation::WebhookEndpointUpdate,
        outcome,
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
    let outcome = use_case::delete_endpoint(&state, tenant.org_id, key.0.as_ref(), &path).await?;
    Ok(no_content(Operation::WebhookEndpointDelete, outcome))
}

page!(EventPage, EventView);

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
    let events = use_case::list_events(
        &state,
        tenant.org_id,
        query.status.as_deref(),
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(EventPage::new(events.items, events.next_cursor)))
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
    let event = use_case::get_event(&state, tenant.org_id, &path).await?;
    Ok(HttpResponse::Ok().json(event))
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
    let outcome = use_case::retry_event(&state, tenant.org_id, key.0.as_ref(), &path).await?;
    Ok(respond(
        Operation::WebhookEventRetry,
        outcome,
        key.0.as_ref(),
    ))
}
