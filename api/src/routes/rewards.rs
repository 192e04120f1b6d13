//! The reward catalog, and reward issuance: bulk, single and cancellation.

use std::collections::HashSet;

use actix_web::{HttpResponse, web};
use domain::catalog::parse_name;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::issuance::{ItemFailure, MAX_QUANTITY, MAX_UNITS_PER_REQUEST, RewardStatus};
use persistence::issuances::{self, Issuance};
use persistence::rewards::{self, NewReward, RewardPatch, RewardRow, StockChange};
use persistence::{catalog, customers};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dto::{
    FlexId, LookupParams, LooseString, Timestamp, WholeNumber, bounded_text, nullable, ts,
};
use crate::error::{ApiError, FieldError};
use crate::extract::{
    IdempotencyHeader, Json, OptionalJson, PageQuery, ReasonBody, Tenant, path_id,
};
use crate::idempotent::{Effect, execute, json_with_flags, mark, respond};
use crate::issuance::{
    IssueItem, IssueRequest, IssueResult, ItemOutcome, dry_run, issue, item_json,
};
use crate::routes::page_json;
use crate::startup::AppState;

/// The largest stock or limit a reward may have.
const MAX_COUNT: i64 = 1_000_000_000_000;

pub fn reward_json(r: &RewardRow) -> Value {
    json!({
        "rewardId": r.id,
        "programId": r.program_id,
        "name": r.name,
        "stock": r.stock,
        "issued": r.issued,
        "perCustomerLimit": r.per_customer_limit,
        "validFrom": r.valid_from.map(ts),
        "validUntil": r.valid_until.map(ts),
        "status": r.status,
        "createdAt": ts(r.created_at),
        "updatedAt": ts(r.updated_at),
    })
}

/// A reward whose `validUntil` is not after its `validFrom` (given together, or one given and
/// the other stored): 422, since neither field is wrong alone.
fn window_empty() -> ApiError {
    ApiError::Unprocessable {
        code: "VALIDITY_WINDOW_EMPTY",
        detail: "validUntil must be after validFrom.".into(),
        retryable: false,
    }
}

fn count(field: &str, v: Option<WholeNumber>, min: i64) -> Result<Option<i64>, ApiError> {
    match v.map(|n| n.0) {
        Some(n) if !(min..=MAX_COUNT).contains(&n) => Err(ApiError::validation(
            field,
            format!("must be from {min} to {MAX_COUNT}, or null for unlimited"),
        )),
        other => Ok(other),
    }
}

fn status(v: &str) -> Result<RewardStatus, ApiError> {
    RewardStatus::parse(v).ok_or_else(|| ApiError::validation("status", "must be ACTIVE or PAUSED"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateReward {
    pub name: String,
    pub stock: Option<WholeNumber>,
    pub per_customer_limit: Option<WholeNumber>,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub status: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<CreateReward>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&body.name).map_err(|e| ApiError::validation("name", e.message))?;
    let stock = count("stock", body.stock, 0)?;
    let limit = count("perCustomerLimit", body.per_customer_limit, 0)?;
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
        .ok_or_else(|| ApiError::not_found("program"))?;
    let new = NewReward {
        program_id,
        name,
        stock,
        per_customer_limit: limit,
        valid_from,
        valid_until,
        status: status.as_str().to_owned(),
    };
    let meaning = RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("name", Some(&new.name))
        .with("stock", new.stock)
        .with("perCustomerLimit", new.per_customer_limit)
        .with("validFrom", new.valid_from.map(ts))
        .with("validUntil", new.valid_until.map(ts))
        .with("status", Some(&new.status));
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
            Ok(Effect::created(reward_json(&row), row.id))
        },
    )
    .await?;
    Ok(respond(Operation::RewardCreate, outcome, key.0.as_ref()))
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.parse()?;
    let program_id = path_id(&path, "program")?;
    catalog::get_program(state.db.conn(), tenant.org_id, program_id)
        .await?
        .ok_or_else(|| ApiError::not_found("program"))?;
    let result = rewards::list(
        state.db.conn(),
        tenant.org_id,
        program_id,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(page_json(
        result.items.iter().map(reward_json).collect(),
        result.next_cursor,
    )))
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path, "reward")?;
    let row = rewards::get(state.db.conn(), tenant.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("reward"))?;
    Ok(HttpResponse::Ok().json(reward_json(&row)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchReward {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub stock: Option<Option<WholeNumber>>,
    pub add_stock: Option<WholeNumber>,
    #[serde(default, deserialize_with = "nullable")]
    pub per_customer_limit: Option<Option<WholeNumber>>,
    #[serde(default, deserialize_with = "nullable")]
    pub valid_from: Option<Option<Timestamp>>,
    #[serde(default, deserialize_with = "nullable")]
    pub valid_until: Option<Option<Timestamp>>,
    pub status: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn patch(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<PatchReward>,
) -> Result<HttpResponse, ApiError> {
    let mut patch = RewardPatch {
        name: body
            .name
            .as_deref()
            .map(parse_name)
            .transpose()
            .map_err(|e| ApiError::validation("name", e.message))?,
        ..RewardPatch::default()
    };
    patch.stock = match (body.stock, body.add_stock) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "addStock",
                "send stock or addStock, not both",
            ));
        }
        (Some(s), None) => Some(StockChange::Set(count("stock", s, 0)?)),
        (None, Some(WholeNumber(n))) if (1..=MAX_COUNT).contains(&n) => Some(StockChange::Add(n)),
        (None, Some(_)) => {
            return Err(ApiError::validation(
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
        .with("status", patch.status.as_ref());
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
                .ok_or_else(|| ApiError::not_found("reward"))?;
            if let (Some(f), Some(u)) = (row.valid_from, row.valid_until)
                && u <= f
            {
                return Err(window_empty());
            }
            // A PATCH answers 200 (202 for a replay): nothing is created.
            Ok(Effect::created(reward_json(&row), row.id)
                .with_status(actix_web::http::StatusCode::OK))
        },
    )
    .await?;
    Ok(respond(Operation::RewardUpdate, outcome, key.0.as_ref()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkItem {
    pub reward_id: FlexId,
    pub quantity: WholeNumber,
    pub request_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkIssue {
    pub mobile: Option<LooseString>,
    pub email: Option<LooseString>,
    pub external_id: Option<LooseString>,
    pub customer_id: Option<LooseString>,
    pub lookup_params: Option<LookupParams>,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    pub rewards: Vec<BulkItem>,
}

#[derive(Debug, Deserialize)]
pub struct IssueQuery {
    #[serde(rename = "dryRun")]
    pub dry_run: Option<String>,
}

fn dry_run_flag(q: &IssueQuery) -> Result<bool, ApiError> {
    match q.dry_run.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(_) => Err(ApiError::validation("dryRun", "must be true or false")),
    }
}

/// Checks a request's items: 1 to `max` of them, distinct `requestId`s, sane quantities.
fn check_items(items: &[BulkItem], max: usize, prefix: &str) -> Result<Vec<IssueItem>, ApiError> {
    if items.is_empty() {
        return Err(ApiError::validation(prefix, "must have at least one item"));
    }
    if items.len() > max {
        return Err(ApiError::validation(
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
        Err(ApiError::Validation(errors))
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
) -> Result<(IssueRequest, IssueResult), ApiError> {
    let req = IssueRequest {
        customer,
        brand: bounded_text("brand", brand, 255)?,
        transaction_number: bounded_text("transactionNumber", transaction_number, 255)?,
        items,
    };
    let result = if dry {
        dry_run(state, org_id, &req).await?
    } else if state.settings.group_commit_max > 1 {
        let job = crate::issuance::IssueJob {
            org_id,
            request: req.clone(),
        };
        state.issuances.submit(job).await?
    } else {
        issue(state, org_id, &req).await?
    };
    Ok((req, result))
}

fn summary(result: &IssueResult) -> Value {
    let (mut issued, mut replayed, mut failed) = (0, 0, 0);
    for o in &result.outcomes {
        match o {
            ItemOutcome::Issued(_) => issued += 1,
            ItemOutcome::Replayed(_) => replayed += 1,
            ItemOutcome::Failed { .. } => failed += 1,
        }
    }
    json!({"issued": issued, "replayed": replayed, "failed": failed})
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
        crate::metrics::reward_items(status, code, 1);
        if let (true, Some(outcome)) = (per_item_keys, key) {
            crate::metrics::idempotency(op, outcome);
        }
    }
}

/// `POST /v1/rewards/issue/bulk`: 200 for any well-formed request, a result per item.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn issue_bulk(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<IssueQuery>,
    Json(body): Json<BulkIssue>,
) -> Result<HttpResponse, ApiError> {
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
    let mut out = json!({
        "transactionNumber": req.transaction_number,
        "brand": req.brand,
        "customerId": result.customer_id.map(|c| c.to_string()),
        "summary": summary(&result),
        "results": req.items.iter().zip(&result.outcomes).map(|(i, o)| item_json(i, o)).collect::<Vec<_>>(),
    });
    if dry {
        out["dryRun"] = json!(true);
    }
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SingleIssue {
    pub mobile: Option<LooseString>,
    pub email: Option<LooseString>,
    pub external_id: Option<LooseString>,
    pub customer_id: Option<LooseString>,
    pub lookup_params: Option<LookupParams>,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    pub reward_id: FlexId,
    pub quantity: WholeNumber,
    pub request_id: String,
}

/// `POST /v1/rewards/issue`: one item; 201 / 202, or its failure as a problem.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn issue_single(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<IssueQuery>,
    Json(body): Json<SingleIssue>,
) -> Result<HttpResponse, ApiError> {
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
        .ok_or_else(|| ApiError::Internal("no outcome for the item".into()))?;
    if !dry {
        count_items(&result.outcomes, false);
    }
    let marked = |mut response: HttpResponse, outcome: &'static str| {
        if !dry {
            mark(&mut response, Operation::RewardIssuance.as_str(), outcome);
        }
        response
    };
    let decorate = |mut v: Value| {
        v["customerId"] = json!(result.customer_id.map(|c| c.to_string()));
        v["brand"] = json!(req.brand);
        v["transactionNumber"] = json!(req.transaction_number);
        if dry {
            v["dryRun"] = json!(true);
        }
        v
    };
    match outcome {
        ItemOutcome::Issued(_) => Ok(marked(
            json_with_flags(
                if dry {
                    actix_web::http::StatusCode::OK
                } else {
                    actix_web::http::StatusCode::CREATED
                },
                decorate(item_json(item, outcome)),
                false,
                Some(&item.request_id),
            ),
            "created",
        )),
        ItemOutcome::Replayed(_) => Ok(marked(
            json_with_flags(
                actix_web::http::StatusCode::ACCEPTED,
                decorate(item_json(item, outcome)),
                true,
                Some(&item.request_id),
            ),
            "replayed",
        )),
        ItemOutcome::Failed {
            failure: ItemFailure::IdempotencyKeyReused,
            mismatched_fields,
        } => Err(ApiError::IdempotencyKeyReused {
            operation: Operation::RewardIssuance.as_str(),
            key: item.request_id.to_string(),
            mismatched_fields: mismatched_fields.clone(),
        }),
        ItemOutcome::Failed {
            failure: ItemFailure::RewardNotFound,
            ..
        } => Err(ApiError::NotFound {
            code: "REWARD_NOT_FOUND",
            detail: ItemFailure::RewardNotFound.message().into(),
        }),
        ItemOutcome::Failed { failure, .. } => Err(ApiError::Unprocessable {
            code: failure.code(),
            detail: failure.message().into(),
            retryable: failure.retryable(),
        }),
    }
}

pub fn issuance_json(i: &Issuance) -> Value {
    json!({
        "issuanceId": i.row.id.to_string(),
        "requestId": i.row.request_id,
        "customerId": i.row.customer_id.to_string(),
        "rewardId": i.row.reward_id,
        "quantity": i.row.quantity,
        "status": i.row.status,
        "vouchers": i.vouchers,
        "brand": i.row.brand,
        "transactionNumber": i.row.transaction_number,
        "createdAt": ts(i.row.created_at),
        "cancelledAt": i.row.cancelled_at.map(ts),
    })
}

/// `POST /v1/rewards/issuances/{issuanceId}/cancel`: units back to stock and to the customer's
/// limit. The issuance is its own idempotency key: cancelling twice replays the first answer.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn cancel(
    state: web::Data<AppState>,
    tenant: Tenant,
    header: IdempotencyHeader,
    path: web::Path<String>,
    OptionalJson(body): OptionalJson<ReasonBody>,
) -> Result<HttpResponse, ApiError> {
    let reason = ReasonBody::reason(body, &header)?;
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::not_found("issuance"))?;
    let key = IdempotencyKey::parse(&id.to_string()).map_err(|e| ApiError::Internal(e.message))?;
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
                    None => Err(ApiError::not_found("issuance")),
                    Some(_) => Err(ApiError::Unprocessable {
                        code: "ISSUANCE_ALREADY_CANCELLED",
                        detail: "The issuance was cancelled before.".into(),
                        retryable: false,
                    }),
                };
            };
            rewards::return_stock(tx, org_id, row.reward_id, row.quantity, now).await?;
            issuances::release(tx, org_id, row.customer_id, row.reward_id, row.quantity).await?;
            let issuance = issuances::get(tx, org_id, id)
                .await?
                .ok_or_else(|| ApiError::Internal("cancelled issuance vanished".into()))?;
            let mut body = issuance_json(&issuance);
            body["reason"] = json!(reason);
            let events = vec![crate::webhooks::event(
                "reward.cancelled",
                body.clone(),
                now,
            )];
            crate::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
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
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn customer_rewards(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.parse()?;
    let id = Uuid::parse_str(&path).map_err(|_| ApiError::not_found("customer"))?;
    let customer = customers::find(
        state.db.conn(),
        tenant.org_id,
        &domain::customer::CustomerRef::CustomerId(id),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("customer"))?;
    let result = issuances::list_for_customer(
        state.db.conn(),
        tenant.org_id,
        customer.id,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(page_json(
        result.items.iter().map(issuance_json).collect(),
        result.next_cursor,
    )))
}
