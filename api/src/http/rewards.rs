//! The reward catalog, and reward issuance: bulk, single and cancellation. The handlers read
//! the request and shape the answer; the use cases are `app::rewards` and `app::issuance`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use domain::customer::CustomerRef;
use domain::idempotency::Operation;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::app::error::AppError;
use crate::app::issuance::{IssueItem, IssueRequest, RequestedItem, check_items};
use crate::app::rewards::{RewardAsk, RewardChanges};
use crate::engine::format::to_json;
use crate::http::answer::{json_with_flags, mark, respond};
use crate::http::dto::{
    FlexId, LookupParams, LooseString, Timestamp, WholeNumber, bounded_text, nullable,
};
use crate::http::extract::{
    IdempotencyHeader, Json, OptionalJson, PageQuery, ReasonBody, Tenant, path_id,
};
use crate::http::openapi::{
    CustomerPath, IssuancePath, KeyHeader, Missing, PageParams, ProgramPath, Read, Replayed,
    RewardPath, Write, customer_id_schema, email_schema, external_id_schema, key_schema,
    mobile_schema, name_schema, optional_name_schema, page, text255_schema, timestamp_schema,
};

use crate::app::issuance::{BulkResult, SingleResult};
use crate::app::rewards::{IssuanceView, RewardView};

page!(RewardPage, RewardView);
page!(IssuancePage, IssuanceView);

/// A reward of a program: stock, a per-customer limit, a validity window.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"name": "Free coffee", "stock": 1000, "perCustomerLimit": 5}))]
pub struct CreateReward {
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Units available; null or absent: unlimited.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub stock: Option<WholeNumber>,
    /// Units one customer may hold (or be issued per perCustomerLimitPeriod); null or absent:
    /// unlimited.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub per_customer_limit: Option<WholeNumber>,
    /// LIFETIME (the default: units held at once), or DAY, WEEK, MONTH, YEAR: units issued to
    /// the customer within the calendar period (UTC; a week starts on Monday).
    #[schema(value_type = Option<String>, pattern = "^(DAY|WEEK|MONTH|YEAR|LIFETIME)$")]
    pub per_customer_limit_period: Option<String>,
    /// Units issued to all customers together per periodLimitPeriod; null or absent: no limit.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub period_limit: Option<WholeNumber>,
    /// The period of periodLimit; DAY when absent.
    #[schema(value_type = Option<String>, pattern = "^(DAY|WEEK|MONTH|YEAR|LIFETIME)$")]
    pub period_limit_period: Option<String>,
    #[schema(schema_with = timestamp_schema)]
    pub valid_from: Option<Timestamp>,
    /// After validFrom (else 422 VALIDITY_WINDOW_EMPTY).
    #[schema(schema_with = timestamp_schema)]
    pub valid_until: Option<Timestamp>,
    /// ACTIVE (the default) or PAUSED.
    #[schema(value_type = Option<String>, pattern = "^(ACTIVE|PAUSED)$")]
    pub status: Option<String>,
}

#[utoipa::path(post, path = "/v1/programs/{programId}/rewards", tag = "Catalog",
    operation_id = "rewards_create", summary = "Create a reward",
    params(ProgramPath, KeyHeader), request_body = CreateReward,
    responses(
        (status = 201, description = "Created now", body = RewardView, links(
            ("GetReward" = (operation_id = "rewards_get", parameters(("rewardId" = "$response.body#/rewardId")))),
            ("PatchReward" = (operation_id = "rewards_patch", parameters(("rewardId" = "$response.body#/rewardId")))),
        )),
        Replayed<RewardView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<CreateReward>,
) -> Result<HttpResponse, AppError> {
    let ask = RewardAsk {
        name: body.name,
        stock: body.stock.map(|n| n.0),
        per_customer_limit: body.per_customer_limit.map(|n| n.0),
        per_customer_limit_period: body.per_customer_limit_period,
        period_limit: body.period_limit.map(|n| n.0),
        period_limit_period: body.period_limit_period,
        valid_from: body.valid_from.map(|t| t.0),
        valid_until: body.valid_until.map(|t| t.0),
        status: body.status,
    };
    let outcome = crate::app::rewards::create(
        &state,
        tenant.org_id,
        key.0.as_ref(),
        path_id(&path, "program").ok(),
        &ask,
    )
    .await?;
    Ok(respond(Operation::RewardCreate, outcome, key.0.as_ref()))
}

#[utoipa::path(get, path = "/v1/programs/{programId}/rewards", tag = "Catalog",
    operation_id = "rewards_list", summary = "List a program's rewards",
    params(ProgramPath, PageParams),
    responses((status = 200, description = "A page", body = RewardPage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.parse()?;
    let result = crate::app::rewards::list(
        &state,
        tenant.org_id,
        path_id(&path, "program").ok(),
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(RewardPage::new(result.items, result.next_cursor)))
}

#[utoipa::path(get, path = "/v1/rewards/{rewardId}", tag = "Catalog", operation_id = "rewards_get",
    summary = "Get a reward: stock left, units issued, limits", params(RewardPath),
    responses((status = 200, description = "The reward", body = RewardView), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&path, "reward")?;
    let reward = crate::app::rewards::get(&state, tenant.org_id, id).await?;
    Ok(HttpResponse::Ok().json(reward))
}

/// The fields to change; absent fields stay, null clears (unlimited, no bound).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RewardPatch, example = json!({"addStock": 500, "status": "ACTIVE"}))]
pub struct PatchReward {
    #[schema(schema_with = optional_name_schema)]
    pub name: Option<String>,
    /// The new stock; null: unlimited. Not with addStock (422 STOCK_CHANGE_AMBIGUOUS).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub stock: Option<Option<WholeNumber>>,
    /// Units to add to the stock left.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub add_stock: Option<WholeNumber>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub per_customer_limit: Option<Option<WholeNumber>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = timestamp_schema)]
    pub valid_from: Option<Option<Timestamp>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = timestamp_schema)]
    pub valid_until: Option<Option<Timestamp>>,
    #[schema(value_type = Option<String>, pattern = "^(ACTIVE|PAUSED)$")]
    pub status: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^(DAY|WEEK|MONTH|YEAR|LIFETIME)$")]
    pub per_customer_limit_period: Option<String>,
    /// Null: no period limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub period_limit: Option<Option<WholeNumber>>,
    #[schema(value_type = Option<String>, pattern = "^(DAY|WEEK|MONTH|YEAR|LIFETIME)$")]
    pub period_limit_period: Option<String>,
}

#[utoipa::path(patch, path = "/v1/rewards/{rewardId}", tag = "Catalog",
    operation_id = "rewards_patch",
    summary = "Change stock (stock or addStock), limit, validity, status",
    params(RewardPath, KeyHeader), request_body = PatchReward,
    responses((status = 200, description = "Changed now (idempotentReplayed false)", body = RewardView),
        Replayed<RewardView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn patch(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<PatchReward>,
) -> Result<HttpResponse, AppError> {
    let whole = |v: Option<Option<WholeNumber>>| v.map(|v| v.map(|n| n.0));
    let time = |v: Option<Option<Timestamp>>| v.map(|v| v.map(|t| t.0));
    let changes = RewardChanges {
        name: body.name,
        stock: whole(body.stock),
        add_stock: body.add_stock.map(|n| n.0),
        per_customer_limit: whole(body.per_customer_limit),
        valid_from: time(body.valid_from),
        valid_until: time(body.valid_until),
        status: body.status,
        per_customer_limit_period: body.per_customer_limit_period,
        period_limit: whole(body.period_limit),
        period_limit_period: body.period_limit_period,
    };
    let outcome = crate::app::rewards::patch(
        &state,
        tenant.org_id,
        key.0.as_ref(),
        path_id(&path, "reward").ok(),
        changes,
    )
    .await?;
    Ok(respond(Operation::RewardUpdate, outcome, key.0.as_ref()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkItem {
    pub reward_id: FlexId,
    #[schema(value_type = i64, minimum = 1, maximum = 1000)]
    pub quantity: WholeNumber,
    /// The item's idempotency key, distinct within the request.
    #[schema(schema_with = key_schema)]
    pub request_id: String,
}

/// Several rewards for one customer; each item succeeds or fails on its own, exactly once per
/// `requestId`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "mobile": "919999999999", "transactionNumber": "T-1001",
    "rewards": [{"rewardId": 1, "quantity": 1, "requestId": "T-1001-1"}]
}))]
pub struct BulkIssue {
    #[schema(schema_with = mobile_schema)]
    pub mobile: Option<LooseString>,
    #[schema(schema_with = email_schema)]
    pub email: Option<LooseString>,
    #[schema(schema_with = external_id_schema)]
    pub external_id: Option<LooseString>,
    #[schema(schema_with = customer_id_schema)]
    pub customer_id: Option<LooseString>,
    pub lookup_params: Option<LookupParams>,
    #[schema(schema_with = text255_schema)]
    pub brand: Option<String>,
    #[schema(schema_with = text255_schema)]
    pub transaction_number: Option<String>,
    /// 1 to 1000 items (the configured bulk limit).
    #[schema(min_items = 1, max_items = 1000)]
    pub rewards: Vec<BulkItem>,
}

#[derive(Debug, Deserialize)]
pub struct IssueQuery {
    #[serde(rename = "dryRun")]
    pub dry_run: Option<String>,
}

/// `dryRun`.
pub struct DryRunParam;
impl utoipa::IntoParams for DryRunParam {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![crate::http::openapi::query_param(
            "dryRun",
            false,
            Some("true: report what each item would get, change nothing"),
            json!({"type": "boolean"}),
        )]
    }
}

fn dry_run_flag(q: &IssueQuery) -> Result<bool, AppError> {
    match q.dry_run.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(_) => Err(AppError::validation("dryRun", "must be true or false")),
    }
}

/// The request's items as the use case reads them.
fn requested(items: &[BulkItem]) -> Vec<RequestedItem> {
    items
        .iter()
        .map(|i| RequestedItem {
            reward_id: i.reward_id.0,
            quantity: i.quantity.0,
            request_id: i.request_id.clone(),
        })
        .collect()
}

/// The request of a bulk or single issuance, its texts checked after its items.
fn issue_request(
    customer: CustomerRef,
    brand: Option<&str>,
    transaction_number: Option<&str>,
    items: Vec<IssueItem>,
) -> Result<IssueRequest, AppError> {
    Ok(IssueRequest {
        customer,
        brand: bounded_text("brand", brand, 255)?,
        transaction_number: bounded_text("transactionNumber", transaction_number, 255)?,
        items,
    })
}

/// `POST /v1/rewards/issue/bulk`: 200 for any well-formed request, a result per item.
#[utoipa::path(post, path = "/v1/rewards/issue/bulk", tag = "Issuance",
    operation_id = "rewards_issue_bulk",
    summary = "Issue several rewards; each item is exactly-once by its requestId",
    params(DryRunParam), request_body = BulkIssue,
    responses((status = 200, description = "A result per item, whatever each did", body = BulkResult),
        Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn issue_bulk(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<IssueQuery>,
    Json(body): Json<BulkIssue>,
) -> Result<HttpResponse, AppError> {
    let dry = dry_run_flag(&query)?;
    let customer = crate::customer_of!(body).parse()?;
    let items = check_items(
        &requested(&body.rewards),
        state.settings.bulk_max_items,
        "rewards",
    )?;
    let req = issue_request(
        customer,
        body.brand.as_deref(),
        body.transaction_number.as_deref(),
        items,
    )?;
    let result = crate::app::issuance::bulk(&state, tenant.org_id, &req, dry).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// One reward for one customer, exactly once per `requestId`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"mobile": "919999999999", "rewardId": 1, "quantity": 1, "requestId": "T-1002"}))]
pub struct SingleIssue {
    #[schema(schema_with = mobile_schema)]
    pub mobile: Option<LooseString>,
    #[schema(schema_with = email_schema)]
    pub email: Option<LooseString>,
    #[schema(schema_with = external_id_schema)]
    pub external_id: Option<LooseString>,
    #[schema(schema_with = customer_id_schema)]
    pub customer_id: Option<LooseString>,
    pub lookup_params: Option<LookupParams>,
    #[schema(schema_with = text255_schema)]
    pub brand: Option<String>,
    #[schema(schema_with = text255_schema)]
    pub transaction_number: Option<String>,
    pub reward_id: FlexId,
    #[schema(value_type = i64, minimum = 1, maximum = 1000)]
    pub quantity: WholeNumber,
    /// The idempotency key.
    #[schema(schema_with = key_schema)]
    pub request_id: String,
}

/// `POST /v1/rewards/issue`: one item; 201 / 202, or its failure as a problem.
#[utoipa::path(post, path = "/v1/rewards/issue", tag = "Issuance",
    operation_id = "rewards_issue_single", summary = "Issue one reward",
    params(DryRunParam), request_body = SingleIssue,
    responses(
        (status = 200, description = "A dry run: what the item would get", body = SingleResult),
        (status = 201, description = "Issued now", body = SingleResult, links(
            ("CancelIssuance" = (operation_id = "rewards_cancel", parameters(("issuanceId" = "$response.body#/issuanceId")))),
            ("CustomerRewards" = (operation_id = "rewards_customer_rewards", parameters(("customerId" = "$response.body#/customerId")))),
        )),
        (status = 202, description = "Issued by an earlier request with this requestId (Idempotent-Replayed: true)", body = SingleResult),
        Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn issue_single(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<IssueQuery>,
    Json(body): Json<SingleIssue>,
) -> Result<HttpResponse, AppError> {
    let dry = dry_run_flag(&query)?;
    let customer = crate::customer_of!(body).parse()?;
    let item = RequestedItem {
        reward_id: body.reward_id.0,
        quantity: body.quantity.0,
        request_id: body.request_id,
    };
    let items = check_items(std::slice::from_ref(&item), 1, "")?;
    let req = issue_request(
        customer,
        body.brand.as_deref(),
        body.transaction_number.as_deref(),
        items,
    )?;
    let answer = crate::app::issuance::single(&state, tenant.org_id, &req, dry).await?;
    let (status, outcome) = match (answer.replayed, dry) {
        (true, _) => (StatusCode::ACCEPTED, "replayed"),
        (false, true) => (StatusCode::OK, "created"),
        (false, false) => (StatusCode::CREATED, "created"),
    };
    // `json_with_flags` sets idempotentReplayed and idempotencyKey.
    let mut response = json_with_flags(
        status,
        to_json(&answer.result),
        answer.replayed,
        Some(&answer.key),
    );
    if !dry {
        mark(&mut response, Operation::RewardIssuance.as_str(), outcome);
    }
    Ok(response)
}

/// `POST /v1/rewards/issuances/{issuanceId}/cancel`: units back to stock and to the customer's
/// limit. The issuance is its own idempotency key: cancelling twice replays the first answer.
#[utoipa::path(post, path = "/v1/rewards/issuances/{issuanceId}/cancel", tag = "Issuance",
    operation_id = "rewards_cancel",
    summary = "Cancel an issuance: units back to stock and to the customer's limit; a second cancel replays",
    params(IssuancePath, KeyHeader), request_body(content = Option<ReasonBody>),
    responses((status = 201, description = "Cancelled now", body = IssuanceView),
        Replayed<IssuanceView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn cancel(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    path: web::Path<String>,
    OptionalJson(body): OptionalJson<ReasonBody>,
) -> Result<HttpResponse, AppError> {
    let reason = ReasonBody::reason(body, &header)?;
    let id = Uuid::parse_str(&path).map_err(|_| AppError::not_found("issuance"))?;
    let (outcome, key) = crate::app::rewards::cancel(&state, tenant.org_id, id, reason).await?;
    Ok(respond(
        Operation::IssuanceCancellation,
        outcome,
        Some(&key),
    ))
}

/// `GET /v1/customers/{customerId}/rewards`: issued rewards and their voucher codes, newest first.
#[utoipa::path(get, path = "/v1/customers/{customerId}/rewards", tag = "Customers",
    operation_id = "rewards_customer_rewards",
    summary = "The customer's issuances and voucher codes, newest first",
    params(CustomerPath, PageParams),
    responses((status = 200, description = "A page", body = IssuancePage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn customer_rewards(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.parse()?;
    let result = crate::app::rewards::customer_rewards(
        &state,
        tenant.org_id,
        &path,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(IssuancePage::new(result.items, result.next_cursor)))
}
