//! The reward catalog, and reward issuance: bulk, single and cancellation.

use std::collections::HashSet;

use actix_web::{HttpResponse, web};
use domain::catalog::parse_name;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::issuance::{ItemFailure, MAX_QUANTITY, MAX_UNITS_PER_REQUEST, RewardStatus};
use persistence::catalog;
use persistence::issuances::{self, Issuance};
use persistence::rewards::{self, NewReward, RewardPatch, RewardRow, StockChange};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::engine::format::ts;
use crate::http::dto::{
    FlexId, LookupParams, LooseString, Timestamp, WholeNumber, bounded_text, nullable,
};
use domain::period::Period;

use crate::app::AppState;
use crate::app::error::{AppError, FieldError};
use crate::app::issuance::{
    IssueItem, IssueRequest, IssueResult, ItemOutcome, ItemResult, dry_run, issue, item_result,
};
use crate::app::write::{Effect, execute};
use crate::engine::format::to_json;
use crate::http::answer::{json_with_flags, mark, respond};
use crate::http::extract::{
    IdempotencyHeader, Json, OptionalJson, PageQuery, ReasonBody, Tenant, path_id,
};
use crate::http::openapi::{
    CustomerPath, IssuancePath, KeyHeader, Missing, PageParams, ProgramPath, Read, Replayed,
    RewardPath, Write, customer_id_schema, email_schema, external_id_schema, key_schema,
    mobile_schema, name_schema, optional_name_schema, page, text255_schema, timestamp_schema,
};

/// The largest stock or limit a reward may have.
const MAX_COUNT: i64 = 1_000_000_000_000;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Reward, example = json!({
    "rewardId": 1, "programId": 1, "name": "Free coffee", "stock": 999, "issued": 1,
    "perCustomerLimit": 5, "perCustomerLimitPeriod": "LIFETIME", "periodLimit": 100,
    "periodLimitPeriod": "DAY", "validFrom": null, "validUntil": "2027-01-01T00:00:00Z",
    "status": "ACTIVE", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-02T00:00:00Z"
}))]
pub struct RewardView {
    pub reward_id: i64,
    pub program_id: i64,
    pub name: String,
    /// Units left; null: unlimited.
    pub stock: Option<i64>,
    /// Units issued and not cancelled.
    pub issued: i64,
    /// Units one customer may hold (LIFETIME) or be issued per period; null: unlimited.
    pub per_customer_limit: Option<i64>,
    /// LIFETIME (units held now), or DAY, WEEK, MONTH, YEAR (units issued in the calendar
    /// period, UTC).
    pub per_customer_limit_period: String,
    /// Units everyone together may be issued per periodLimitPeriod; null: no limit.
    pub period_limit: Option<i64>,
    pub period_limit_period: Option<String>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    /// ACTIVE or PAUSED.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

page!(RewardPage, RewardView);

pub fn reward_view(r: &RewardRow) -> RewardView {
    RewardView {
        reward_id: r.id,
        program_id: r.program_id,
        name: r.name.clone(),
        stock: r.stock,
        issued: r.issued,
        per_customer_limit: r.per_customer_limit,
        per_customer_limit_period: r.per_customer_limit_period.clone(),
        period_limit: r.period_limit,
        period_limit_period: r.period_limit_period.clone(),
        valid_from: r.valid_from.map(ts),
        valid_until: r.valid_until.map(ts),
        status: r.status.clone(),
        created_at: ts(r.created_at),
        updated_at: ts(r.updated_at),
    }
}

/// A reward whose `validUntil` is not after its `validFrom` (given together, or one given and
/// the other stored): 422, since neither field is wrong alone.
fn window_empty() -> AppError {
    AppError::Unprocessable {
        code: "VALIDITY_WINDOW_EMPTY",
        detail: "validUntil must be after validFrom.".into(),
        retryable: false,
    }
}

fn count(field: &str, v: Option<WholeNumber>, min: i64) -> Result<Option<i64>, AppError> {
    match v.map(|n| n.0) {
        Some(n) if !(min..=MAX_COUNT).contains(&n) => Err(AppError::validation(
            field,
            format!("must be from {min} to {MAX_COUNT}, or null for unlimited"),
        )),
        other => Ok(other),
    }
}

/// A calendar period's name (`DAY` … `LIFETIME`).
fn period(field: &str, v: &str) -> Result<String, AppError> {
    v.parse::<Period>()
        .map(|p| p.as_str().to_owned())
        .map_err(|e| AppError::validation(field, e.message))
}

fn status(v: &str) -> Result<RewardStatus, AppError> {
    RewardStatus::parse(v).ok_or_else(|| AppError::validation("status", "must be ACTIVE or PAUSED"))
}

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
    let name = parse_name(&body.name).map_err(|e| AppError::validation("name", e.message))?;
    let stock = count("stock", body.stock, 0)?;
    let limit = count("perCustomerLimit", body.per_customer_limit, 0)?;
    let customer_period = period(
        "perCustomerLimitPeriod",
        body.per_customer_limit_period
            .as_deref()
            .unwrap_or("LIFETIME"),
    )?;
    let period_limit = count("periodLimit", body.period_limit, 0)?;
    let period_limit_period = match body.period_limit_period.as_deref() {
        Some(p) => Some(period("periodLimitPeriod", p)?),
        None => period_limit.map(|_| "DAY".to_owned()),
    };
    let status = status(body.status.as_deref().unwrap_or("ACTIVE"))?;
    let (valid_from, valid_until) = (body.valid_from.map(|t| t.0), body.valid_until.map(|t| t.0));
    if let (Some(f), Some(u)) = (valid_from, valid_until)
        && u <= f
    {
        return Err(window_empty());
    }
    let program_id = path_id(&path, "program")?;
    catalog::get_program(state.db.conn(), tenant.org_id, program_id)
        .await?
        .ok_or_else(|| AppError::not_found("program"))?;
    let new = NewReward {
        program_id,
        name,
        stock,
        per_customer_limit: limit,
        valid_from,
        valid_until,
        status: status.as_str().to_owned(),
        per_customer_limit_period: customer_period,
        period_limit,
        period_limit_period,
    };
    let meaning = RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("name", Some(&new.name))
        .with("stock", new.stock)
        .with("perCustomerLimit", new.per_customer_limit)
        .with("validFrom", new.valid_from.map(ts))
        .with("validUntil", new.valid_until.map(ts))
        .with("status", Some(&new.status))
        .with(
            "perCustomerLimitPeriod",
            Some(&new.per_customer_limit_period),
        )
        .with("periodLimit", new.period_limit)
        .with("periodLimitPeriod", new.period_limit_period.as_ref());
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::RewardCreate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let row = rewards::create(tx, org_id, &new, now).await?;
            Ok(Effect::created(to_json(&reward_view(&row)), row.id))
        },
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
    let program_id = path_id(&path, "program")?;
    catalog::get_program(state.db.conn(), tenant.org_id, program_id)
        .await?
        .ok_or_else(|| AppError::not_found("program"))?;
    let result = rewards::list(
        state.db.conn(),
        tenant.org_id,
        program_id,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(RewardPage::new(
        result.items.iter().map(reward_view).collect(),
        result.next_cursor,
    )))
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
    let row = rewards::get(state.db.conn(), tenant.org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("reward"))?;
    Ok(HttpResponse::Ok().json(reward_view(&row)))
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
    let mut patch = RewardPatch {
        name: body
            .name
            .as_deref()
            .map(parse_name)
            .transpose()
            .map_err(|e| AppError::validation("name", e.message))?,
        ..RewardPatch::default()
    };
    patch.stock = match (body.stock, body.add_stock) {
        // Each well formed, but together they ask two things of the stock: 422, like the
        // other clashes between fields.
        (Some(_), Some(_)) => {
            return Err(AppError::Unprocessable {
                code: "STOCK_CHANGE_AMBIGUOUS",
                detail: "Send stock or addStock, not both.".into(),
                retryable: false,
            });
        }
        (Some(s), None) => Some(StockChange::Set(count("stock", s, 0)?)),
        (None, Some(WholeNumber(n))) if (1..=MAX_COUNT).contains(&n) => Some(StockChange::Add(n)),
        (None, Some(_)) => {
            return Err(AppError::validation(
                "addStock",
                format!("must be from 1 to {MAX_COUNT}"),
            ));
        }
        (None, None) => None,
    };
    patch.per_customer_limit = body
        .per_customer_limit
        .map(|l| count("perCustomerLimit", l, 0))
        .transpose()?;
    patch.per_customer_limit_period = body
        .per_customer_limit_period
        .as_deref()
        .map(|p| period("perCustomerLimitPeriod", p))
        .transpose()?;
    patch.period_limit = body
        .period_limit
        .map(|l| count("periodLimit", l, 0))
        .transpose()?;
    patch.period_limit_period = body
        .period_limit_period
        .as_deref()
        .map(|p| period("periodLimitPeriod", p))
        .transpose()?;
    patch.valid_from = body.valid_from.map(|v| v.map(|t| t.0));
    patch.valid_until = body.valid_until.map(|v| v.map(|t| t.0));
    patch.status = body
        .status
        .as_deref()
        .map(status)
        .transpose()?
        .map(|s| s.as_str().to_owned());
    let id = path_id(&path, "reward")?;
    let org_id = tenant.org_id;
    let meaning = RequestMeaning::new()
        .with("rewardId", Some(id))
        .with("name", patch.name.as_ref())
        .with("stock", patch.stock.map(|s| format!("{s:?}")))
        .with(
            "perCustomerLimit",
            patch.per_customer_limit.map(|l| format!("{l:?}")),
        )
        .with(
            "validFrom",
            patch.valid_from.map(|v| format!("{:?}", v.map(ts))),
        )
        .with(
            "validUntil",
            patch.valid_until.map(|v| format!("{:?}", v.map(ts))),
        )
        .with("status", patch.status.as_ref())
        .with(
            "perCustomerLimitPeriod",
            patch.per_customer_limit_period.as_ref(),
        )
        .with("periodLimit", patch.period_limit.map(|l| format!("{l:?}")))
        .with("periodLimitPeriod", patch.period_limit_period.as_ref());
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::RewardUpdate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let row = rewards::update(tx, org_id, id, &patch, now)
                .await?
                .ok_or_else(|| AppError::not_found("reward"))?;
            if let (Some(f), Some(u)) = (row.valid_from, row.valid_until)
                && u <= f
            {
                return Err(window_empty());
            }
            // A PATCH answers 200 (202 for a replay): nothing is created.
            Ok(Effect::created(to_json(&reward_view(&row)), row.id)
                .done(crate::app::write::Done::Updated))
        },
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Summary {
    pub issued: usize,
    pub replayed: usize,
    pub failed: usize,
}

/// The answer to a bulk request: 200 whatever the items did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "transactionNumber": "T-1001", "brand": null,
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02",
    "summary": {"issued": 1, "replayed": 0, "failed": 0},
    "results": [{"requestId": "T-1001-1", "rewardId": 1, "quantity": 1, "status": "ISSUED",
        "issuanceId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c04", "vouchers": ["K7QX-94MD-2HTW"],
        "idempotentReplayed": false}]
}))]
pub struct BulkResult {
    pub transaction_number: Option<String>,
    pub brand: Option<String>,
    /// Null when the customer was not found and nothing was issued.
    pub customer_id: Option<String>,
    pub summary: Summary,
    /// One per item, in the order of the request.
    pub results: Vec<ItemResult>,
    /// Present (true) for a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// The answer to a single issuance: the item's result and the request's context.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "requestId": "T-1002", "rewardId": 1, "quantity": 1, "status": "ISSUED",
    "issuanceId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c05", "vouchers": ["M2PL-77QA-X9KC"],
    "idempotentReplayed": false, "idempotencyKey": "T-1002",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "brand": null, "transactionNumber": null
}))]
pub struct SingleResult {
    pub request_id: String,
    pub reward_id: i64,
    pub quantity: i64,
    /// ISSUED (201, or 200 in a dry run) or REPLAYED (202).
    pub status: String,
    /// Null in a dry run.
    pub issuance_id: Option<String>,
    /// One voucher code per unit (none in a dry run).
    pub vouchers: Vec<String>,
    pub idempotent_replayed: bool,
    /// The requestId.
    pub idempotency_key: Option<String>,
    pub customer_id: Option<String>,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    /// Present (true) for a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

fn dry_run_flag(q: &IssueQuery) -> Result<bool, AppError> {
    match q.dry_run.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(_) => Err(AppError::validation("dryRun", "must be true or false")),
    }
}

/// Checks a request's items: 1 to `max` of them, distinct `requestId`s, sane quantities.
fn check_items(items: &[BulkItem], max: usize, prefix: &str) -> Result<Vec<IssueItem>, AppError> {
    if items.is_empty() {
        return Err(AppError::validation(prefix, "must have at least one item"));
    }
    if items.len() > max {
        return Err(AppError::validation(
            prefix,
            format!("must have at most {max} items"),
        ));
    }
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    let mut units: i64 = 0;
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}[{i}].{name}")
            }
        };
        let quantity = item.quantity.0;
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            errors.push(FieldError::new(
                field("quantity"),
                format!("must be from 1 to {MAX_QUANTITY}"),
            ));
        }
        units = units.saturating_add(quantity.max(0));
        match IdempotencyKey::parse(&item.request_id) {
            Ok(key) if !seen.insert(key.clone()) => errors.push(FieldError::new(
                field("requestId"),
                "appears more than once in this request",
            )),
            Ok(key) => out.push(IssueItem {
                request_id: key,
                reward_id: item.reward_id.0,
                quantity,
            }),
            Err(e) => errors.push(FieldError::new(field("requestId"), e.message)),
        }
    }
    if errors.is_empty() && units > MAX_UNITS_PER_REQUEST {
        errors.push(FieldError::new(
            if prefix.is_empty() {
                "quantity"
            } else {
                prefix
            },
            format!("ask for at most {MAX_UNITS_PER_REQUEST} units in one request"),
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(AppError::Validation(errors))
    }
}

/// Checks the request-level texts, then issues (or, for a dry run, evaluates) the items.
async fn run_issue(
    state: &AppState,
    org_id: i64,
    customer: domain::customer::CustomerRef,
    brand: Option<&str>,
    transaction_number: Option<&str>,
    items: Vec<IssueItem>,
    dry: bool,
) -> Result<(IssueRequest, IssueResult), AppError> {
    let req = IssueRequest {
        customer,
        brand: bounded_text("brand", brand, 255)?,
        transaction_number: bounded_text("transactionNumber", transaction_number, 255)?,
        items,
    };
    let result = if dry {
        dry_run(state, org_id, &req).await?
    } else if state.settings.group_commit_max > 1 {
        let job = crate::app::issuance::IssueJob {
            org_id,
            request: req.clone(),
        };
        state.issuances.submit(job).await?
    } else {
        issue(state, org_id, &req).await?
    };
    Ok((req, result))
}

fn summary(result: &IssueResult) -> Summary {
    let (mut issued, mut replayed, mut failed) = (0, 0, 0);
    for o in &result.outcomes {
        match o {
            ItemOutcome::Issued(_) => issued += 1,
            ItemOutcome::Replayed(_) => replayed += 1,
            ItemOutcome::Failed { .. } => failed += 1,
        }
    }
    Summary {
        issued,
        replayed,
        failed,
    }
}

/// Counts the items of an issuance that happened (not a dry run): by status and code, and, for
/// bulk requests whose answer is 200 whatever the items did, each item's idempotency outcome.
fn count_items(outcomes: &[ItemOutcome], per_item_keys: bool) {
    let op = Operation::RewardIssuance.as_str();
    for o in outcomes {
        let (status, code, key) = match o {
            ItemOutcome::Issued(_) => ("issued", "", Some("created")),
            ItemOutcome::Replayed(_) => ("replayed", "", Some("replayed")),
            ItemOutcome::Failed { failure, .. } => (
                "failed",
                failure.code(),
                (*failure == ItemFailure::IdempotencyKeyReused).then_some("key_reused"),
            ),
        };
        crate::engine::metrics::reward_items(status, code, 1);
        if let (true, Some(outcome)) = (per_item_keys, key) {
            crate::engine::metrics::idempotency(op, outcome);
        }
    }
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
    let items = check_items(&body.rewards, state.settings.bulk_max_items, "rewards")?;
    let (req, result) = run_issue(
        &state,
        tenant.org_id,
        customer,
        body.brand.as_deref(),
        body.transaction_number.as_deref(),
        items,
        dry,
    )
    .await?;
    if !dry {
        count_items(&result.outcomes, true);
    }
    let results = req
        .items
        .iter()
        .zip(&result.outcomes)
        .map(|(i, o)| item_result(i, o))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(BulkResult {
        transaction_number: req.transaction_number.clone(),
        brand: req.brand.clone(),
        customer_id: result.customer_id.map(|c| c.to_string()),
        summary: summary(&result),
        results,
        dry_run: dry.then_some(true),
    }))
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
    let item = BulkItem {
        reward_id: body.reward_id,
        quantity: body.quantity,
        request_id: body.request_id,
    };
    let items = check_items(std::slice::from_ref(&item), 1, "")?;
    let (req, result) = run_issue(
        &state,
        tenant.org_id,
        customer,
        body.brand.as_deref(),
        body.transaction_number.as_deref(),
        items,
        dry,
    )
    .await?;
    let item = &req.items[0];
    let outcome = result
        .outcomes
        .first()
        .ok_or_else(|| AppError::Internal("no outcome for the item".into()))?;
    if !dry {
        count_items(&result.outcomes, false);
    }
    let marked = |mut response: HttpResponse, outcome: &'static str| {
        if !dry {
            mark(&mut response, Operation::RewardIssuance.as_str(), outcome);
        }
        response
    };
    // `json_with_flags` sets idempotentReplayed and idempotencyKey.
    let decorate = |item: ItemResult| -> Value {
        to_json(&SingleResult {
            request_id: item.request_id,
            reward_id: item.reward_id,
            quantity: item.quantity,
            status: item.status,
            issuance_id: item.issuance_id,
            vouchers: item.vouchers.unwrap_or_default(),
            idempotent_replayed: item.idempotent_replayed,
            idempotency_key: None,
            customer_id: result.customer_id.map(|c| c.to_string()),
            brand: req.brand.clone(),
            transaction_number: req.transaction_number.clone(),
            dry_run: dry.then_some(true),
        })
    };
    match outcome {
        ItemOutcome::Issued(_) => Ok(marked(
            json_with_flags(
                if dry {
                    actix_web::http::StatusCode::OK
                } else {
                    actix_web::http::StatusCode::CREATED
                },
                decorate(item_result(item, outcome)?),
                false,
                Some(&item.request_id),
            ),
            "created",
        )),
        ItemOutcome::Replayed(_) => Ok(marked(
            json_with_flags(
                actix_web::http::StatusCode::ACCEPTED,
                decorate(item_result(item, outcome)?),
                true,
                Some(&item.request_id),
            ),
            "replayed",
        )),
        ItemOutcome::Failed {
            failure: ItemFailure::IdempotencyKeyReused,
            mismatched_fields,
        } => Err(AppError::IdempotencyKeyReused {
            operation: Operation::RewardIssuance.as_str(),
            key: item.request_id.to_string(),
            mismatched_fields: mismatched_fields.clone(),
        }),
        ItemOutcome::Failed {
            failure: ItemFailure::RewardNotFound,
            ..
        } => Err(AppError::NotFound {
            code: "REWARD_NOT_FOUND",
            detail: ItemFailure::RewardNotFound.message().into(),
        }),
        ItemOutcome::Failed { failure, .. } => Err(AppError::Unprocessable {
            code: failure.code(),
            detail: failure.message().into(),
            retryable: failure.retryable(),
        }),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Issuance, example = json!({
    "issuanceId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c04", "requestId": "T-1001-1",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "rewardId": 1, "quantity": 1,
    "status": "CANCELLED", "vouchers": ["K7QX-94MD-2HTW"], "brand": null,
    "transactionNumber": "T-1001", "createdAt": "2026-01-01T00:00:00Z",
    "cancelledAt": "2026-01-02T00:00:00Z", "reason": "order returned"
}))]
pub struct IssuanceView {
    pub issuance_id: String,
    pub request_id: String,
    pub customer_id: String,
    pub reward_id: i64,
    pub quantity: i64,
    /// ISSUED or CANCELLED.
    pub status: String,
    pub vouchers: Vec<String>,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    pub created_at: String,
    pub cancelled_at: Option<String>,
    /// In the answer to a cancellation: the reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

page!(IssuancePage, IssuanceView);

pub fn issuance_view(i: &Issuance) -> IssuanceView {
    IssuanceView {
        issuance_id: i.row.id.to_string(),
        request_id: i.row.request_id.clone(),
        customer_id: i.row.customer_id.to_string(),
        reward_id: i.row.reward_id,
        quantity: i.row.quantity,
        status: i.row.status.clone(),
        vouchers: i.vouchers.clone(),
        brand: i.row.brand.clone(),
        transaction_number: i.row.transaction_number.clone(),
        created_at: ts(i.row.created_at),
        cancelled_at: i.row.cancelled_at.map(ts),
        reason: None,
    }
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
    let key = IdempotencyKey::parse(&id.to_string()).map_err(|e| AppError::Internal(e.message))?;
    let meaning = RequestMeaning::new().with("issuanceId", Some(id));
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::IssuanceCancellation,
        Some(&key),
        &meaning,
        async |tx| {
            let row = issuances::mark_cancelled(tx, org_id, id, now).await?;
            let Some(row) = row else {
                return match issuances::get(tx, org_id, id).await? {
                    None => Err(AppError::not_found("issuance")),
                    Some(_) => Err(AppError::Unprocessable {
                        code: "ISSUANCE_ALREADY_CANCELLED",
                        detail: "The issuance was cancelled before.".into(),
                        retryable: false,
                    }),
                };
            };
            rewards::return_stock(tx, org_id, row.reward_id, row.quantity, now).await?;
            issuances::release(tx, org_id, row.customer_id, row.reward_id, row.quantity).await?;
            // The units go back to the counters the issuance was counted in, and only those.
            for key in crate::app::issuance::counted_keys(&row) {
                persistence::reward_periods::lower(tx, key, row.quantity).await?;
            }
            let issuance = issuances::get(tx, org_id, id)
                .await?
                .ok_or_else(|| AppError::Internal("cancelled issuance vanished".into()))?;
            let body = to_json(&IssuanceView {
                reason: reason.clone(),
                ..issuance_view(&issuance)
            });
            let events = vec![crate::engine::webhooks::event(
                "reward.cancelled",
                body.clone(),
                now,
            )];
            crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, id))
        },
    )
    .await?;
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
    let customer = super::customers::customer_by_path(&state, tenant.org_id, &path).await?;
    let result = issuances::list_for_customer(
        state.db.conn(),
        tenant.org_id,
        customer.id,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(IssuancePage::new(
        result.items.iter().map(issuance_view).collect(),
        result.next_cursor,
    )))
}
