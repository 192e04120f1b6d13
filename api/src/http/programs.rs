//! Programs with their currencies, award strategies and expiry strategies.

use std::collections::BTreeSet;

use actix_web::{HttpResponse, web};
use domain::award::AwardRule;
use domain::catalog::{CurrencyCode, parse_name};
use domain::expiry::ExpiryRule;
use domain::idempotency::{Operation, RequestMeaning};
use domain::money::{Rounding, Scale};
use domain::period::{EarnCap, MAX_CAPS, Period};
use persistence::catalog::{self, AwardStrategyRow, ExpiryStrategyRow, NewAwardStrategy, Program};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use validator::Validate;

use crate::app::AppState;
use crate::app::error::{AppError, FieldError};
use crate::app::write::{Effect, execute};
use crate::engine::format::to_json;
use crate::engine::format::ts;
use crate::http::answer::respond;
use crate::http::dto::{DecimalInput, WholeNumber, validate};
use crate::http::extract::{IdempotencyHeader, Json, PageQuery, Tenant, path_id};
use crate::http::openapi::{
    KeyHeader, Missing, PageParams, ProgramPath, Read, Replayed, Write, currency_schema,
    name_schema, optional_decimal_schema, page,
};

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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Program, example = json!({
    "programId": 1, "name": "Coffee Club",
    "currencies": [{"code": "POINTS", "scale": 2}],
    "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct ProgramView {
    pub program_id: i64,
    pub name: String,
    pub currencies: Vec<CurrencyView>,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Currency)]
pub struct CurrencyView {
    pub code: String,
    /// Decimal places kept.
    pub scale: i16,
}

page!(ProgramPage, ProgramView);

pub fn program_view(p: &Program) -> ProgramView {
    ProgramView {
        program_id: p.row.id,
        name: p.row.name.clone(),
        currencies: p
            .currencies
            .iter()
            .map(|c| CurrencyView {
                code: c.code.clone(),
                scale: c.scale,
            })
            .collect(),
        created_at: ts(p.row.created_at),
    }
}

pub fn program_json(p: &Program) -> Value {
    to_json(&program_view(p))
}

#[utoipa::path(post, path = "/v1/programs", tag = "Catalog", operation_id = "programs_create",
    summary = "Create a program with its currencies",
    params(KeyHeader), request_body = CreateProgram,
    responses(
        (status = 201, description = "Created now", body = ProgramView, links(
            ("GetProgram" = (operation_id = "programs_get", parameters(("programId" = "$response.body#/programId")))),
            ("CreateAwardStrategy" = (operation_id = "programs_create_award_strategy", parameters(("programId" = "$response.body#/programId")))),
            ("CreateExpiryStrategy" = (operation_id = "programs_create_expiry_strategy", parameters(("programId" = "$response.body#/programId")))),
            ("CreateReward" = (operation_id = "rewards_create", parameters(("programId" = "$response.body#/programId")))),
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
    let mut errors = Vec::new();
    let name = parse_name(&body.name)
        .map_err(|e| errors.push(FieldError::new("name", e.message)))
        .ok();
    let mut currencies: Vec<(String, i16)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut twice = None;
    for (i, c) in body.currencies.iter().enumerate() {
        match CurrencyCode::parse(&c.code) {
            Ok(code) if !seen.insert(code.as_str().to_owned()) => {
                twice.get_or_insert_with(|| code.as_str().to_owned());
            }
            Ok(code) => match Scale::new(c.scale.0) {
                Ok(scale) => currencies.push((code.as_str().to_owned(), scale.get() as i16)),
                Err(e) => errors.push(FieldError::new(format!("currencies[{i}].scale"), e.message)),
            },
            Err(e) => errors.push(FieldError::new(format!("currencies[{i}].code"), e.message)),
        }
    }
    let Some(name) = name.filter(|_| errors.is_empty()) else {
        return Err(AppError::Validation(errors));
    };
    // Each field is well formed, but two of them clash: a refusal of the whole (422), which
    // a JSON schema cannot state for the fields one by one.
    if let Some(code) = twice {
        return Err(AppError::Unprocessable {
            code: "CURRENCY_DUPLICATED",
            detail: format!("The currency {code} appears more than once."),
            retryable: false,
        });
    }
    let canonical_currencies: Vec<String> =
        currencies.iter().map(|(c, s)| format!("{c}:{s}")).collect();
    let meaning = RequestMeaning::new()
        .with("name", Some(&name))
        .with("currencies", Some(canonical_currencies.join(",")));
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::ProgramCreate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let program = catalog::create_program(tx, org_id, &name, &currencies, now).await?;
            Ok(Effect::created(program_json(&program), program.row.id))
        },
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
    let id = path_id(&path, "program")?;
    let program = catalog::get_program(state.db.conn(), tenant.org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("program"))?;
    Ok(HttpResponse::Ok().json(program_view(&program)))
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
    let result =
        catalog::list_programs(state.db.conn(), tenant.org_id, page.cursor, page.limit).await?;
    Ok(HttpResponse::Ok().json(ProgramPage::new(
        result.items.iter().map(program_view).collect(),
        result.next_cursor,
    )))
}

async fn program_of(state: &AppState, org_id: i64, raw: &str) -> Result<Program, AppError> {
    let id = path_id(raw, "program")?;
    catalog::get_program(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("program"))
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

/// One earn cap as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EarnCapView {
    /// DAY, WEEK, MONTH, YEAR or LIFETIME.
    pub period: String,
    /// A decimal string.
    pub max: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = AwardStrategy, example = json!({
    "awardStrategyId": 1, "programId": 1, "name": "10%", "currency": "POINTS", "kind": "RATE",
    "multiplier": "0.1", "rounding": "FLOOR", "minAward": null, "maxAward": null, "points": null,
    "caps": [{"period": "DAY", "max": "500"}], "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct AwardStrategyView {
    pub award_strategy_id: i64,
    pub program_id: i64,
    pub name: String,
    pub currency: String,
    /// RATE or FIXED.
    pub kind: String,
    /// Decimal strings.
    pub multiplier: Option<String>,
    pub rounding: Option<String>,
    pub min_award: Option<String>,
    pub max_award: Option<String>,
    pub points: Option<String>,
    /// Earn caps; empty for none.
    pub caps: Vec<EarnCapView>,
    pub created_at: String,
}

page!(AwardStrategyPage, AwardStrategyView);

pub fn award_view(s: &AwardStrategyRow) -> AwardStrategyView {
    AwardStrategyView {
        award_strategy_id: s.id,
        program_id: s.program_id,
        name: s.name.clone(),
        currency: s.currency.clone(),
        kind: s.kind.clone(),
        multiplier: s.multiplier.clone(),
        rounding: s.rounding.clone(),
        min_award: s.min_award.clone(),
        max_award: s.max_award.clone(),
        points: s.points.clone(),
        caps: s
            .caps
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default(),
        created_at: ts(s.created_at),
    }
}

/// The validated earn caps of a stored award strategy (none when it has none).
pub fn earn_caps(s: &AwardStrategyRow) -> Result<Vec<EarnCap>, AppError> {
    let Some(text) = s.caps.as_deref() else {
        return Ok(Vec::new());
    };
    let corrupt = || AppError::Internal(format!("award strategy {} has malformed caps", s.id));
    let stored: Vec<EarnCapView> = serde_json::from_str(text).map_err(|_| corrupt())?;
    stored
        .iter()
        .map(|c| {
            let period = c.period.parse::<Period>().map_err(|_| corrupt())?;
            let max = domain::money::parse_decimal(&c.max).map_err(|_| corrupt())?;
            EarnCap::new(period, max).map_err(|_| corrupt())
        })
        .collect()
}

/// Checks the caps of a new strategy; they are stored as [`EarnCapView`]s.
fn parse_caps(input: Option<Vec<EarnCapInput>>) -> Result<Vec<EarnCap>, AppError> {
    let input = input.unwrap_or_default();
    if input.len() > MAX_CAPS {
        return Err(AppError::validation(
            "caps",
            format!("must have at most {MAX_CAPS} caps"),
        ));
    }
    input
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let period = c
                .period
                .parse::<Period>()
                .map_err(|e| AppError::validation(format!("caps[{i}].period"), e.message))?;
            let max = c.max.get(&format!("caps[{i}].max"))?;
            EarnCap::new(period, max)
                .map_err(|e| AppError::validation(format!("caps[{i}].max"), e.message))
        })
        .collect()
}

/// The validated rule of a stored award strategy.
pub fn award_rule(s: &AwardStrategyRow) -> Result<AwardRule, AppError> {
    let corrupt = || AppError::Internal(format!("award strategy {} is malformed", s.id));
    let dec = |v: &Option<String>| -> Result<Option<domain::Decimal>, AppError> {
        v.as_deref()
            .map(|t| domain::money::parse_decimal(t).map_err(|_| corrupt()))
            .transpose()
    };
    match s.kind.as_str() {
        "RATE" => {
            let rounding = s
                .rounding
                .as_deref()
                .unwrap_or("FLOOR")
                .parse::<Rounding>()
                .map_err(|_| corrupt())?;
            AwardRule::rate(
                dec(&s.multiplier)?.ok_or_else(corrupt)?,
                rounding,
                dec(&s.min_award)?,
                dec(&s.max_award)?,
            )
            .map_err(|_| corrupt())
        }
        "FIXED" => AwardRule::fixed(dec(&s.points)?.ok_or_else(corrupt)?).map_err(|_| corrupt()),
        _ => Err(corrupt()),
    }
}

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
    let name = parse_name(&body.name).map_err(|e| AppError::validation("name", e.message))?;
    let decimal = |d: Option<DecimalInput>, field: &str| d.map(|d| d.get(field)).transpose();
    let multiplier = decimal(body.multiplier, "multiplier")?;
    let min_award = decimal(body.min_award, "minAward")?;
    let max_award = decimal(body.max_award, "maxAward")?;
    let points = decimal(body.points, "points")?;
    let caps = parse_caps(body.caps)?;
    // Checked whatever the kind, even where the kind does not use the field.
    for (field, value) in [
        ("multiplier", multiplier),
        ("minAward", min_award),
        ("maxAward", max_award),
        ("points", points),
    ] {
        if value.is_some_and(|v| v.is_sign_negative() && !v.is_zero()) {
            return Err(AppError::validation(field, "must be zero or more"));
        }
    }
    let text = |d: Option<domain::Decimal>| d.map(|d| d.normalize().to_string());
    let rounding = body
        .rounding
        .as_deref()
        .map(str::parse::<Rounding>)
        .transpose()
        .map_err(|e| AppError::validation("rounding", e.message))?;
    // Each bound well formed, but together they leave nothing to award: 422, like the other
    // clashes between fields.
    if let (Some(min), Some(max)) = (min_award, max_award)
        && body.kind == "RATE"
        && !max.is_sign_negative()
        && max < min
    {
        return Err(AppError::Unprocessable {
            code: "AWARD_BOUNDS_INVERTED",
            detail: "maxAward must not be less than minAward.".into(),
            retryable: false,
        });
    }
    let rule = match body.kind.as_str() {
        "RATE" => {
            let multiplier = multiplier
                .ok_or_else(|| AppError::validation("multiplier", "is required for kind RATE"))?;
            AwardRule::rate(
                multiplier,
                rounding.unwrap_or_default(),
                min_award,
                max_award,
            )
        }
        "FIXED" => {
            let points = points
                .ok_or_else(|| AppError::validation("points", "is required for kind FIXED"))?;
            AwardRule::fixed(points)
        }
        _ => return Err(AppError::validation("kind", "must be RATE or FIXED")),
    }
    .map_err(|(field, e)| AppError::validation(field, e.message))?;
    let new = match &rule {
        AwardRule::Rate { rounding, .. } => NewAwardStrategy {
            program_id: 0,
            name,
            currency: body.currency.clone(),
            kind: "RATE".into(),
            multiplier: text(multiplier),
            rounding: Some(rounding.as_str().to_owned()),
            min_award: text(min_award),
            max_award: text(max_award),
            points: None,
            caps: None,
        },
        AwardRule::Fixed { .. } => NewAwardStrategy {
            program_id: 0,
            name,
            currency: body.currency.clone(),
            kind: "FIXED".into(),
            multiplier: None,
            rounding: None,
            min_award: None,
            max_award: None,
            points: text(points),
            caps: None,
        },
    };
    let program = program_of(&state, tenant.org_id, &path).await?;
    let Some(currency) = program.currencies.iter().find(|c| c.code == body.currency) else {
        return Err(AppError::unknown_currency("currency", &body.currency));
    };
    let scale = Scale::new(i64::from(currency.scale)).map_err(|e| AppError::Internal(e.message))?;
    for (i, cap) in caps.iter().enumerate() {
        cap.max_minor(scale)
            .map_err(|e| AppError::not_representable(&format!("caps[{i}].max"), &e.message))?;
    }
    let stored_caps: Vec<EarnCapView> = caps
        .iter()
        .map(|c| EarnCapView {
            period: c.period.as_str().to_owned(),
            max: c.max.to_string(),
        })
        .collect();
    let new = NewAwardStrategy {
        program_id: program.row.id,
        caps: (!stored_caps.is_empty())
            .then(|| serde_json::to_string(&stored_caps))
            .transpose()
            .map_err(|e| AppError::Internal(e.to_string()))?,
        ..new
    };
    let meaning = RequestMeaning::new()
        .with("programId", Some(new.program_id))
        .with("name", Some(&new.name))
        .with("currency", Some(&new.currency))
        .with("kind", Some(&new.kind))
        .with("multiplier", new.multiplier.as_ref())
        .with("rounding", new.rounding.as_ref())
        .with("minAward", new.min_award.as_ref())
        .with("maxAward", new.max_award.as_ref())
        .with("points", new.points.as_ref())
        .with("caps", new.caps.as_ref());
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::AwardStrategyCreate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let row = catalog::create_award_strategy(tx, org_id, &new, now).await?;
            Ok(Effect::created(to_json(&award_view(&row)), row.id))
        },
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
    let program = program_of(&state, tenant.org_id, &path).await?;
    let result = catalog::list_award_strategies(
        state.db.conn(),
        tenant.org_id,
        program.row.id,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(AwardStrategyPage::new(
        result.items.iter().map(award_view).collect(),
        result.next_cursor,
    )))
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ExpiryStrategy, example = json!({
    "expiryStrategyId": 1, "programId": 1, "name": "A year", "kind": "AFTER_DAYS",
    "days": 365, "months": null, "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct ExpiryStrategyView {
    pub expiry_strategy_id: i64,
    pub program_id: i64,
    pub name: String,
    pub kind: String,
    pub days: Option<i32>,
    pub months: Option<i32>,
    pub created_at: String,
}

page!(ExpiryStrategyPage, ExpiryStrategyView);

pub fn expiry_view(s: &ExpiryStrategyRow) -> ExpiryStrategyView {
    ExpiryStrategyView {
        expiry_strategy_id: s.id,
        program_id: s.program_id,
        name: s.name.clone(),
        kind: s.kind.clone(),
        days: s.days,
        months: s.months,
        created_at: ts(s.created_at),
    }
}

/// The validated rule of a stored expiry strategy.
pub fn expiry_rule(s: &ExpiryStrategyRow) -> Result<ExpiryRule, AppError> {
    let corrupt = || AppError::Internal(format!("expiry strategy {} is malformed", s.id));
    match s.kind.as_str() {
        "NEVER" => Ok(ExpiryRule::Never),
        "AFTER_DAYS" => {
            ExpiryRule::after_days(i64::from(s.days.ok_or_else(corrupt)?)).map_err(|_| corrupt())
        }
        "END_OF_MONTH_AFTER_MONTHS" => {
            ExpiryRule::end_of_month_after_months(i64::from(s.months.ok_or_else(corrupt)?))
                .map_err(|_| corrupt())
        }
        _ => Err(corrupt()),
    }
}

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
    let name = parse_name(&body.name).map_err(|e| AppError::validation("name", e.message))?;
    // Out-of-range values are refused whatever the kind, even where the kind does not use them.
    if let Some(WholeNumber(days)) = body.days {
        ExpiryRule::after_days(days).map_err(|e| AppError::validation("days", e.message))?;
    }
    if let Some(WholeNumber(months)) = body.months {
        ExpiryRule::end_of_month_after_months(months)
            .map_err(|e| AppError::validation("months", e.message))?;
    }
    let rule = match body.kind.as_str() {
        "NEVER" => Ok(ExpiryRule::Never),
        "AFTER_DAYS" => {
            let days = body
                .days
                .ok_or_else(|| AppError::validation("days", "is required for kind AFTER_DAYS"))?;
            ExpiryRule::after_days(days.0).map_err(|e| AppError::validation("days", e.message))
        }
        "END_OF_MONTH_AFTER_MONTHS" => {
            let months = body.months.ok_or_else(|| {
                AppError::validation("months", "is required for kind END_OF_MONTH_AFTER_MONTHS")
            })?;
            ExpiryRule::end_of_month_after_months(months.0)
                .map_err(|e| AppError::validation("months", e.message))
        }
        _ => Err(AppError::validation(
            "kind",
            "must be NEVER, AFTER_DAYS or END_OF_MONTH_AFTER_MONTHS",
        )),
    }?;
    let (days, months) = match rule {
        ExpiryRule::Never => (None, None),
        ExpiryRule::AfterDays(d) => (Some(d as i32), None),
        ExpiryRule::EndOfMonthAfterMonths(m) => (None, Some(m as i32)),
    };
    let program = program_of(&state, tenant.org_id, &path).await?;
    let program_id = program.row.id;
    let meaning = RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("name", Some(&name))
        .with("kind", Some(rule.kind()))
        .with("days", days)
        .with("months", months);
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::ExpiryStrategyCreate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let row = catalog::create_expiry_strategy(
                tx,
                org_id,
                program_id,
                &name,
                rule.kind(),
                days,
                months,
                now,
            )
            .await?;
            Ok(Effect::created(to_json(&expiry_view(&row)), row.id))
        },
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
    let program = program_of(&state, tenant.org_id, &path).await?;
    let result = catalog::list_expiry_strategies(
        state.db.conn(),
        tenant.org_id,
        program.row.id,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(ExpiryStrategyPage::new(
        result.items.iter().map(expiry_view).collect(),
        result.next_cursor,
    )))
}
