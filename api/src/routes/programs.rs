//! Programs with their currencies, award strategies and expiry strategies.

use std::collections::BTreeSet;

use actix_web::{HttpResponse, web};
use domain::award::AwardRule;
use domain::catalog::{CurrencyCode, parse_name};
use domain::expiry::ExpiryRule;
use domain::idempotency::{Operation, RequestMeaning};
use domain::money::{Rounding, Scale};
use persistence::catalog::{self, AwardStrategyRow, ExpiryStrategyRow, NewAwardStrategy, Program};
use serde::Deserialize;
use serde_json::{Value, json};
use validator::Validate;

use crate::dto::{DecimalInput, WholeNumber, ts, validate};
use crate::error::{ApiError, FieldError};
use crate::extract::{IdempotencyHeader, Json, PageQuery, Tenant, path_id};
use crate::idempotent::{Effect, execute, respond};
use crate::routes::page_json;
use crate::startup::AppState;

#[derive(Debug, Deserialize, serde::Serialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct CreateProgram {
    pub name: String,
    #[validate(length(min = 1, max = 20), nested)]
    pub currencies: Vec<CurrencyInput>,
}

#[derive(Debug, Deserialize, serde::Serialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyInput {
    pub code: String,
    /// Checked by `Scale::new` (0 to 6).
    pub scale: WholeNumber,
}

pub fn program_json(p: &Program) -> Value {
    json!({
        "programId": p.row.id,
        "name": p.row.name,
        "currencies": p.currencies.iter().map(|c| json!({"code": c.code, "scale": c.scale})).collect::<Vec<_>>(),
        "createdAt": ts(p.row.created_at),
    })
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    Json(body): Json<CreateProgram>,
) -> Result<HttpResponse, ApiError> {
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
        return Err(ApiError::Validation(errors));
    };
    // Each field is well formed, but two of them clash: a refusal of the whole (422), which
    // a JSON schema cannot state for the fields one by one.
    if let Some(code) = twice {
        return Err(ApiError::Unprocessable {
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

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path, "program")?;
    let program = catalog::get_program(state.db.conn(), tenant.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("program"))?;
    Ok(HttpResponse::Ok().json(program_json(&program)))
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.parse()?;
    let result =
        catalog::list_programs(state.db.conn(), tenant.org_id, page.cursor, page.limit).await?;
    Ok(HttpResponse::Ok().json(page_json(
        result.items.iter().map(program_json).collect(),
        result.next_cursor,
    )))
}

async fn program_of(state: &AppState, org_id: i64, raw: &str) -> Result<Program, ApiError> {
    let id = path_id(raw, "program")?;
    catalog::get_program(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("program"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAwardStrategy {
    pub name: String,
    pub currency: String,
    pub kind: String,
    pub multiplier: Option<DecimalInput>,
    pub rounding: Option<String>,
    pub min_award: Option<DecimalInput>,
    pub max_award: Option<DecimalInput>,
    pub points: Option<DecimalInput>,
}

pub fn award_json(s: &AwardStrategyRow) -> Value {
    json!({
        "awardStrategyId": s.id,
        "programId": s.program_id,
        "name": s.name,
        "currency": s.currency,
        "kind": s.kind,
        "multiplier": s.multiplier,
        "rounding": s.rounding,
        "minAward": s.min_award,
        "maxAward": s.max_award,
        "points": s.points,
        "createdAt": ts(s.created_at),
    })
}

/// The validated rule of a stored award strategy.
pub fn award_rule(s: &AwardStrategyRow) -> Result<AwardRule, ApiError> {
    let corrupt = || ApiError::Internal(format!("award strategy {} is malformed", s.id));
    let dec = |v: &Option<String>| -> Result<Option<domain::Decimal>, ApiError> {
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

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create_award_strategy(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<CreateAwardStrategy>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&body.name).map_err(|e| ApiError::validation("name", e.message))?;
    let text = |d: Option<DecimalInput>| d.map(|d| d.0.normalize().to_string());
    let rounding = body
        .rounding
        .as_deref()
        .map(str::parse::<Rounding>)
        .transpose()
        .map_err(|e| ApiError::validation("rounding", e.message))?;
    // Each bound well formed, but together they leave nothing to award: 422, like the other
    // clashes between fields.
    if let (Some(min), Some(max)) = (body.min_award, body.max_award)
        && body.kind == "RATE"
        && !max.0.is_sign_negative()
        && max.0 < min.0
    {
        return Err(ApiError::Unprocessable {
            code: "AWARD_BOUNDS_INVERTED",
            detail: "maxAward must not be less than minAward.".into(),
            retryable: false,
        });
    }
    let rule = match body.kind.as_str() {
        "RATE" => {
            let multiplier = body
                .multiplier
                .ok_or_else(|| ApiError::validation("multiplier", "is required for kind RATE"))?;
            AwardRule::rate(
                multiplier.0,
                rounding.unwrap_or_default(),
                body.min_award.map(|d| d.0),
                body.max_award.map(|d| d.0),
            )
        }
        "FIXED" => {
            let points = body
                .points
                .ok_or_else(|| ApiError::validation("points", "is required for kind FIXED"))?;
            AwardRule::fixed(points.0)
        }
        _ => return Err(ApiError::validation("kind", "must be RATE or FIXED")),
    }
    .map_err(|(field, e)| ApiError::validation(field, e.message))?;
    let new = match &rule {
        AwardRule::Rate { rounding, .. } => NewAwardStrategy {
            program_id: 0,
            name,
            currency: body.currency.clone(),
            kind: "RATE".into(),
            multiplier: text(body.multiplier),
            rounding: Some(rounding.as_str().to_owned()),
            min_award: text(body.min_award),
            max_award: text(body.max_award),
            points: None,
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
            points: text(body.points),
        },
    };
    let program = program_of(&state, tenant.org_id, &path).await?;
    if !program.currencies.iter().any(|c| c.code == body.currency) {
        return Err(ApiError::unknown_currency("currency", &body.currency));
    }
    let new = NewAwardStrategy {
        program_id: program.row.id,
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
        .with("points", new.points.as_ref());
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
            Ok(Effect::created(award_json(&row), row.id))
        },
    )
    .await?;
    Ok(respond(
        Operation::AwardStrategyCreate,
        outcome,
        key.0.as_ref(),
    ))
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list_award_strategies(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
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
    Ok(HttpResponse::Ok().json(page_json(
        result.items.iter().map(award_json).collect(),
        result.next_cursor,
    )))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateExpiryStrategy {
    pub name: String,
    pub kind: String,
    pub days: Option<WholeNumber>,
    pub months: Option<WholeNumber>,
}

pub fn expiry_json(s: &ExpiryStrategyRow) -> Value {
    json!({
        "expiryStrategyId": s.id,
        "programId": s.program_id,
        "name": s.name,
        "kind": s.kind,
        "days": s.days,
        "months": s.months,
        "createdAt": ts(s.created_at),
    })
}

/// The validated rule of a stored expiry strategy.
pub fn expiry_rule(s: &ExpiryStrategyRow) -> Result<ExpiryRule, ApiError> {
    let corrupt = || ApiError::Internal(format!("expiry strategy {} is malformed", s.id));
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

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create_expiry_strategy(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: IdempotencyHeader,
    path: web::Path<String>,
    Json(body): Json<CreateExpiryStrategy>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&body.name).map_err(|e| ApiError::validation("name", e.message))?;
    // Out-of-range values are refused whatever the kind, even where the kind does not use them.
    if let Some(WholeNumber(days)) = body.days {
        ExpiryRule::after_days(days).map_err(|e| ApiError::validation("days", e.message))?;
    }
    if let Some(WholeNumber(months)) = body.months {
        ExpiryRule::end_of_month_after_months(months)
            .map_err(|e| ApiError::validation("months", e.message))?;
    }
    let rule = match body.kind.as_str() {
        "NEVER" => Ok(ExpiryRule::Never),
        "AFTER_DAYS" => {
            let days = body
                .days
                .ok_or_else(|| ApiError::validation("days", "is required for kind AFTER_DAYS"))?;
            ExpiryRule::after_days(days.0).map_err(|e| ApiError::validation("days", e.message))
        }
        "END_OF_MONTH_AFTER_MONTHS" => {
            let months = body.months.ok_or_else(|| {
                ApiError::validation("months", "is required for kind END_OF_MONTH_AFTER_MONTHS")
            })?;
            ExpiryRule::end_of_month_after_months(months.0)
                .map_err(|e| ApiError::validation("months", e.message))
        }
        _ => Err(ApiError::validation(
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
            Ok(Effect::created(expiry_json(&row), row.id))
        },
    )
    .await?;
    Ok(respond(
        Operation::ExpiryStrategyCreate,
        outcome,
        key.0.as_ref(),
    ))
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn list_expiry_strategies(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
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
    Ok(HttpResponse::Ok().json(page_json(
        result.items.iter().map(expiry_json).collect(),
        result.next_cursor,
    )))
}
