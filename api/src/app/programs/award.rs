//! Award strategies: how much currency an allocation awards (RATE or FIXED), within the earn
//! caps of each calendar period.

use domain::Decimal;
use domain::award::AwardRule;
use domain::catalog::parse_name;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use domain::money::{Rounding, Scale};
use domain::period::{EarnCap, MAX_CAPS, Period};
use persistence::Page;
use persistence::catalog::{self, AwardStrategyRow, NewAwardStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Sent, program};
use crate::app::AppState;
use crate::app::error::AppError;
use crate::app::write::{Effect, Outcome, execute};
use crate::engine::format::{to_json, ts};

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

/// The validated rule of a stored award strategy.
pub fn award_rule(s: &AwardStrategyRow) -> Result<AwardRule, AppError> {
    let corrupt = || AppError::Internal(format!("award strategy {} is malformed", s.id));
    let dec = |v: &Option<String>| -> Result<Option<Decimal>, AppError> {
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

/// A new award strategy, as asked. The decimals come as [`Sent`], each with the name of its
/// field in the request.
#[derive(Debug)]
pub struct AwardAsk {
    pub name: String,
    pub currency: String,
    pub kind: String,
    pub multiplier: Option<Sent<Decimal>>,
    pub rounding: Option<String>,
    pub min_award: Option<Sent<Decimal>>,
    pub max_award: Option<Sent<Decimal>>,
    pub points: Option<Sent<Decimal>>,
    pub caps: Option<Vec<CapAsk>>,
}

/// One earn cap of a new award strategy, as asked.
#[derive(Debug)]
pub struct CapAsk {
    pub period: String,
    pub max: Sent<Decimal>,
}

/// Checks the caps of a new strategy; they are stored as [`EarnCapView`]s.
fn parse_caps(input: Option<Vec<CapAsk>>) -> Result<Vec<EarnCap>, AppError> {
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
            let max = c.max?;
            EarnCap::new(period, max)
                .map_err(|e| AppError::validation(format!("caps[{i}].max"), e.message))
        })
        .collect()
}

/// The checked fields of a new award strategy, without its program and caps.
fn award_strategy(ask: AwardAsk) -> Result<(NewAwardStrategy, Vec<EarnCap>), AppError> {
    let name = parse_name(&ask.name).map_err(|e| AppError::validation("name", e.message))?;
    let multiplier = ask.multiplier.transpose()?;
    let min_award = ask.min_award.transpose()?;
    let max_award = ask.max_award.transpose()?;
    let points = ask.points.transpose()?;
    let caps = parse_caps(ask.caps)?;
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
    let text = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
    let rounding = ask
        .rounding
        .as_deref()
        .map(str::parse::<Rounding>)
        .transpose()
        .map_err(|e| AppError::validation("rounding", e.message))?;
    // Each bound well formed, but together they leave nothing to award: 422, like the other
    // clashes between fields.
    if let (Some(min), Some(max)) = (min_award, max_award)
        && ask.kind == "RATE"
        && !max.is_sign_negative()
        && max < min
    {
        return Err(AppError::Unprocessable {
            code: "AWARD_BOUNDS_INVERTED",
            detail: "maxAward must not be less than minAward.".into(),
            retryable: false,
        });
    }
    let rule = match ask.kind.as_str() {
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
            currency: ask.currency,
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
            currency: ask.currency,
            kind: "FIXED".into(),
            multiplier: None,
            rounding: None,
            min_award: None,
            max_award: None,
            points: text(points),
            caps: None,
        },
    };
    Ok((new, caps))
}

/// Creates an award strategy of program `program_id` (`None`: the path named none). The fields
/// are checked first; then the currency must be one of the program's, and each cap must be
/// representable in its scale.
pub async fn create_award_strategy(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    program_id: Option<i64>,
    ask: AwardAsk,
) -> Result<Outcome, AppError> {
    let (new, caps) = award_strategy(ask)?;
    let program = program(state, org_id, program_id).await?;
    let Some(currency) = program.currencies.iter().find(|c| c.code == new.currency) else {
        return Err(AppError::unknown_currency("currency", &new.currency));
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
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::AwardStrategyCreate,
        key,
        &meaning,
        async |tx| {
            let row = catalog::create_award_strategy(tx, org_id, &new, now).await?;
            Ok(Effect::created(to_json(&award_view(&row)), row.id))
        },
    )
    .await
}

/// A page of the award strategies of program `program_id` (`None`: the path named none).
pub async fn list_award_strategies(
    state: &AppState,
    org_id: i64,
    program_id: Option<i64>,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<AwardStrategyView>, AppError> {
    let program = program(state, org_id, program_id).await?;
    let page =
        catalog::list_award_strategies(state.db.conn(), org_id, program.row.id, cursor, limit)
            .await?;
    Ok(Page {
        items: page.items.iter().map(award_view).collect(),
        next_cursor: page.next_cursor,
    })
}
