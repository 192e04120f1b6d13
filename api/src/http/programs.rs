//! Programs with their currencies, award strategies and expiry strategies.

use actix_web::{HttpResponse, web};
use domain::idempotency::Operation;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::app::AppState;
use crate::app::error::AppError;
use crate::app::programs::{AwardAsk, CapAsk, CurrencyAsk, ExpiryAsk};
use crate::http::answer::respond;
use crate::http::dto::{DecimalInput, WholeNumber, validate};
use crate::http::extract::{IdempotencyHeader, Json, PageQuery, Tenant, path_id};
use crate::http::openapi::{
    KeyHeader, Missing, PageParams, ProgramPath, Read, Replayed, Write, currency_schema,
    name_schema, optional_decimal_schema, page,
};

use crate::app::programs::{AwardStrategyView, ExpiryStrategyView, ProgramView};

/// A program and the currencies it keeps balances in.
#[derive(Debug, Deserialize, Serialize, Validate, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"name": "Coffee Club", "currencies": [{"code": "POINTS", "scale": 2}]}))]
pub struct CreateProgram {
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[validate(length(min = 1, max = 20), nested)]
    #[schema(min_items = 1, max_items = 20)]
    pub currencies: Vec<CurrencyInput>,
}

#[derive(Debug, Deserialize, Serialize, Validate, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyInput {
    #[schema(schema_with = currency_schema)]
    pub code: String,
    /// Decimal places kept (checked by `Scale::new`).
    #[schema(value_type = i64, minimum = 0, maximum = 6)]
    pub scale: WholeNumber,
}

page!(ProgramPage, ProgramView);

#[utoipa::path(post, path = "/v1/programs", tag = "Catalog", operation_id = "programs_create",
    summary = "Create a program with its currencies",
    params(KeyHeader), request_body = CreateProgram,
    responses(
        (status = 201, description = "Created now", body = ProgramView, links(
            ("GetProgram" = (operation_id = "programs_get", parameters(("programId" = "$response.body#/programId")))),
            ("CreateAwardStrategy" = (operation_id = "programs_create_award_strategy", parameters(("programId" = "$response.body#/programId")))),
            ("CreateExpiryStrategy" = (operation_id = "programs_create_expiry_strategy", parameters(("programId" = "$response.body#/programId")))),
            ("CreateReward" = (operation_id = "rewards_create", parameters(("programId" = "$response.body#/programId")))),
            ("Liability" = (operation_id = "programs_liability", parameters(("programId" = "$response.body#/programId"), ("currency" = "$response.body#/currencies/0/code")))),
        )),
        Replayed<ProgramView>, Write))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    Json(body): Json<CreateProgram>,
) -> Result<HttpResponse, AppError> {
    validate(&body)?;
    let currencies: Vec<CurrencyAsk> = body
        .currencies
        .iter()
        .map(|c| CurrencyAsk {
            code: c.code.clone(),
            scale: c.scale.0,
        })
        .collect();
    let outcome = crate::app::programs::create(
        &state,
        tenant.org_id,
        key.0.as_ref(),
        &body.name,
        &currencies,
    )
    .await?;
    Ok(respond(Operation::ProgramCreate, outcome, key.0.as_ref()))
}

#[utoipa::path(get, path = "/v1/programs/{programId}", tag = "Catalog", summary = "Get a program",
    operation_id = "programs_get", params(ProgramPath),
    responses((status = 200, description = "The program", body = ProgramView), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let program =
        crate::app::programs::get(&state, tenant.org_id, path_id(&path, "program").ok()).await?;
    Ok(HttpResponse::Ok().json(program))
}

#[utoipa::path(get, path = "/v1/programs", tag = "Catalog", operation_id = "programs_list",
    summary = "List the organisation's programs", params(PageParams),
    responses((status = 200, description = "A page, oldest first", body = ProgramPage), Read))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.parse()?;
    let result = crate::app::programs::list(&state, tenant.org_id, page.cursor, page.limit).await?;
    Ok(HttpResponse::Ok().json(ProgramPage::new(result.items, result.next_cursor)))
}

/// How much currency an allocation awards: `RATE` (sourceValue × multiplier, rounded, within
/// bounds) or `FIXED` (always `points`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"name": "10%", "currency": "POINTS", "kind": "RATE", "multiplier": "0.1", "rounding": "FLOOR", "caps": [{"period": "DAY", "max": "500"}]}))]
pub struct CreateAwardStrategy {
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// One of the program's currencies (else 404 CURRENCY_NOT_FOUND).
    #[schema(schema_with = currency_schema)]
    pub currency: String,
    #[schema(value_type = String, pattern = "^(RATE|FIXED)$")]
    pub kind: String,
    /// Required for RATE.
    #[schema(schema_with = optional_decimal_schema)]
    pub multiplier: Option<DecimalInput>,
    /// For RATE; FLOOR when absent.
    #[schema(value_type = Option<String>, pattern = "^(FLOOR|HALF_UP|HALF_EVEN|CEILING)$")]
    pub rounding: Option<String>,
    /// For RATE: the least an allocation awards.
    #[schema(schema_with = optional_decimal_schema)]
    pub min_award: Option<DecimalInput>,
    /// For RATE: the most an allocation awards (not less than minAward, else 422).
    #[schema(schema_with = optional_decimal_schema)]
    pub max_award: Option<DecimalInput>,
    /// Required for FIXED.
    #[schema(schema_with = optional_decimal_schema)]
    pub points: Option<DecimalInput>,
    /// Earn caps: the most this strategy awards one customer within a calendar period (UTC;
    /// a week starts on Monday). An allocation that would pass a cap is awarded what is left.
    #[schema(max_items = 5, nullable = false)]
    pub caps: Option<Vec<EarnCapInput>>,
}

/// One earn cap.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"period": "DAY", "max": "500"}))]
pub struct EarnCapInput {
    #[schema(value_type = String, pattern = "^(DAY|WEEK|MONTH|YEAR|LIFETIME)$")]
    pub period: String,
    /// The most awarded within one period, rounded down to the currency's scale.
    #[schema(schema_with = crate::http::openapi::decimal_schema)]
    pub max: DecimalInput,
}

page!(AwardStrategyPage, AwardStrategyView);

#[utoipa::path(post, path = "/v1/programs/{programId}/award-strategies", tag = "Catalog",
    summary = "Create an award strategy (RATE or FIXED)",
    operation_id = "programs_create_award_strategy",
    params(ProgramPath, KeyHeader), request_body = CreateAwardStrategy,
    responses((status = 201, description = "Created now", body = AwardStrategyView),
        Replayed<AwardStrategyView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create_award_strategy(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<CreateAwardStrategy>,
) -> Result<HttpResponse, AppError> {
    let decimal = |d: Option<DecimalInput>, field: &str| d.map(|d| d.get(field));
    let ask = AwardAsk {
        multiplier: decimal(body.multiplier, "multiplier"),
        min_award: decimal(body.min_award, "minAward"),
        max_award: decimal(body.max_award, "maxAward"),
        points: decimal(body.points, "points"),
        caps: body.caps.map(|caps| {
            caps.into_iter()
                .enumerate()
                .map(|(i, c)| CapAsk {
                    period: c.period,
                    max: c.max.get(&format!("caps[{i}].max")),
                })
                .collect()
        }),
        name: body.name,
        currency: body.currency,
        kind: body.kind,
        rounding: body.rounding,
    };
    let outcome = crate::app::programs::create_award_strategy(
        &state,
        tenant.org_id,
        key.0.as_ref(),
        path_id(&path, "program").ok(),
        ask,
    )
    .await?;
    Ok(respond(
        Operation::AwardStrategyCreate,
        outcome,
        key.0.as_ref(),
    ))
}

#[utoipa::path(get, path = "/v1/programs/{programId}/award-strategies", tag = "Catalog", operation_id = "programs_list_award_strategies",
    summary = "List a program's award strategies", params(ProgramPath, PageParams),
    responses((status = 200, description = "A page", body = AwardStrategyPage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list_award_strategies(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.parse()?;
    let result = crate::app::programs::list_award_strategies(
        &state,
        tenant.org_id,
        path_id(&path, "program").ok(),
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(AwardStrategyPage::new(result.items, result.next_cursor)))
}

/// When allocated currency expires.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"name": "A year", "kind": "AFTER_DAYS", "days": 365}))]
pub struct CreateExpiryStrategy {
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[schema(value_type = String, pattern = "^(NEVER|AFTER_DAYS|END_OF_MONTH_AFTER_MONTHS)$")]
    pub kind: String,
    /// Required for AFTER_DAYS.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 36500)]
    pub days: Option<WholeNumber>,
    /// Required for END_OF_MONTH_AFTER_MONTHS.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1200)]
    pub months: Option<WholeNumber>,
}

page!(ExpiryStrategyPage, ExpiryStrategyView);

#[utoipa::path(post, path = "/v1/programs/{programId}/expiry-strategies", tag = "Catalog",
    summary = "Create an expiry strategy (NEVER, AFTER_DAYS, END_OF_MONTH_AFTER_MONTHS)",
    operation_id = "programs_create_expiry_strategy",
    params(ProgramPath, KeyHeader), request_body = CreateExpiryStrategy,
    responses((status = 201, description = "Created now", body = ExpiryStrategyView),
        Replayed<ExpiryStrategyView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create_expiry_strategy(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<CreateExpiryStrategy>,
) -> Result<HttpResponse, AppError> {
    let ask = ExpiryAsk {
        name: body.name,
        kind: body.kind,
        days: body.days.map(|d| d.0),
        months: body.months.map(|m| m.0),
    };
    let outcome = crate::app::programs::create_expiry_strategy(
        &state,
        tenant.org_id,
        key.0.as_ref(),
        path_id(&path, "program").ok(),
        &ask,
    )
    .await?;
    Ok(respond(
        Operation::ExpiryStrategyCreate,
        outcome,
        key.0.as_ref(),
    ))
}

#[utoipa::path(get, path = "/v1/programs/{programId}/expiry-strategies", tag = "Catalog", operation_id = "programs_list_expiry_strategies",
    summary = "List a program's expiry strategies", params(ProgramPath, PageParams),
    responses((status = 200, description = "A page", body = ExpiryStrategyPage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list_expiry_strategies(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.parse()?;
    let result = crate::app::programs::list_expiry_strategies(
        &state,
        tenant.org_id,
        path_id(&path, "program").ok(),
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(ExpiryStrategyPage::new(result.items, result.next_cursor)))
}
