//! The catalog an organisation sets up: programs with their currencies, award strategies and
//! expiry strategies. Every query is scoped by `org_id`: another tenant's ids are not found.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use crate::{Page, PersistenceError, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct ProgramRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct CurrencyRow {
    pub program_id: i64,
    pub code: String,
    pub scale: i16,
}

/// A program and its currencies.
#[derive(Debug, Clone)]
pub struct Program {
    pub row: ProgramRow,
    pub currencies: Vec<CurrencyRow>,
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn create_program<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    name: &str,
    currencies: &[(String, i16)],
    now: DateTime<Utc>,
) -> Result<Program, PersistenceError> {
    let row = ProgramRow::find_by_statement(stmt(
        conn,
        "INSERT INTO programs (org_id, name, created_at) VALUES ($1, $2, $3) \
         RETURNING id, org_id, name, created_at",
        vec![org_id.into(), name.into(), now.into()],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))?;
    let mut sql =
        String::from("INSERT INTO program_currencies (org_id, program_id, code, scale) VALUES ");
    let mut values: Vec<Value> = Vec::with_capacity(currencies.len() * 4);
    for (i, (code, scale)) in currencies.iter().enumerate() {
        let n = i * 4;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
        values.extend([
            org_id.into(),
            row.id.into(),
            code.clone().into(),
            (*scale).into(),
        ]);
    }
    if !currencies.is_empty() {
        conn.execute_raw(stmt(conn, &sql, values)).await?;
    }
    let currencies = currencies
        .iter()
        .map(|(code, scale)| CurrencyRow {
            program_id: row.id,
            code: code.clone(),
            scale: *scale,
        })
        .collect();
    Ok(Program { row, currencies })
}

async fn currencies_of<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_ids: &[i64],
) -> Result<Vec<CurrencyRow>, PersistenceError> {
    if program_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..program_ids.len())
        .map(|i| format!("${}", i + 2))
        .collect();
    let sql = format!(
        "SELECT program_id, code, scale FROM program_currencies \
         WHERE org_id = $1 AND program_id IN ({}) ORDER BY program_id, code",
        placeholders.join(", ")
    );
    let mut values: Vec<Value> = vec![org_id.into()];
    values.extend(program_ids.iter().map(|id| Value::from(*id)));
    Ok(CurrencyRow::find_by_statement(stmt(conn, &sql, values))
        .all(conn)
        .await?)
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get_program<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
) -> Result<Option<Program>, PersistenceError> {
    let Some(row) = ProgramRow::find_by_statement(stmt(
        conn,
        "SELECT id, org_id, name, created_at FROM programs WHERE org_id = $1 AND id = $2",
        vec![org_id.into(), program_id.into()],
    ))
    .one(conn)
    .await?
    else {
        return Ok(None);
    };
    let currencies = currencies_of(conn, org_id, &[row.id]).await?;
    Ok(Some(Program { row, currencies }))
}

/// Programs in creation order, `limit` at a time after the `after` cursor.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_programs<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<Program>, PersistenceError> {
    let rows = ProgramRow::find_by_statement(stmt(
        conn,
        "SELECT id, org_id, name, created_at FROM programs \
         WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        vec![org_id.into(), after.unwrap_or(0).into(), page_fetch(limit)],
    ))
    .all(conn)
    .await?;
    let page = Page::from_rows(rows, limit, |r| r.id);
    let ids: Vec<i64> = page.items.iter().map(|r| r.id).collect();
    let mut currencies = currencies_of(conn, org_id, &ids).await?;
    let items = page
        .items
        .into_iter()
        .map(|row| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                currencies.drain(..).partition(|c| c.program_id == row.id);
            currencies = rest;
            Program {
                row,
                currencies: mine,
            }
        })
        .collect();
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// `limit + 1`, so that a page knows whether another follows.
pub(crate) fn page_fetch(limit: u64) -> Value {
    i64::try_from(limit.saturating_add(1))
        .unwrap_or(i64::MAX)
        .into()
}

/// The scale of `currency` in `program_id`, or `None` when the program has no such currency.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn currency_scale<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    currency: &str,
) -> Result<Option<i16>, PersistenceError> {
    Ok(CurrencyRow::find_by_statement(stmt(
        conn,
        "SELECT program_id, code, scale FROM program_currencies \
         WHERE org_id = $1 AND program_id = $2 AND code = $3",
        vec![org_id.into(), program_id.into(), currency.into()],
    ))
    .one(conn)
    .await?
    .map(|c| c.scale))
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct AwardStrategyRow {
    pub id: i64,
    pub org_id: i64,
    pub program_id: i64,
    pub name: String,
    pub currency: String,
    pub kind: String,
    pub multiplier: Option<String>,
    pub rounding: Option<String>,
    pub min_award: Option<String>,
    pub max_award: Option<String>,
    pub points: Option<String>,
    /// Earn caps: a JSON array of `{"period", "max"}` (max a decimal string), null for none.
    pub caps: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a new award strategy holds; decimals as canonical text.
#[derive(Debug, Clone)]
pub struct NewAwardStrategy {
    pub program_id: i64,
    pub name: String,
    pub currency: String,
    pub kind: String,
    pub multiplier: Option<String>,
    pub rounding: Option<String>,
    pub min_award: Option<String>,
    pub max_award: Option<String>,
    pub points: Option<String>,
    pub caps: Option<String>,
}

const AWARD_COLUMNS: &str = "id, org_id, program_id, name, currency, kind, multiplier, rounding, min_award, max_award, points, caps, created_at";

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn create_award_strategy<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    s: &NewAwardStrategy,
    now: DateTime<Utc>,
) -> Result<AwardStrategyRow, PersistenceError> {
    AwardStrategyRow::find_by_statement(stmt(
        conn,
        &format!(
            "INSERT INTO award_strategies (org_id, program_id, name, currency, kind, multiplier, \
             rounding, min_award, max_award, points, caps, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {AWARD_COLUMNS}"
        ),
        vec![
            org_id.into(),
            s.program_id.into(),
            s.name.clone().into(),
            s.currency.clone().into(),
            s.kind.clone().into(),
            s.multiplier.clone().into(),
            s.rounding.clone().into(),
            s.min_award.clone().into(),
            s.max_award.clone().into(),
            s.points.clone().into(),
            s.caps.clone().into(),
            now.into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get_award_strategy<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: i64,
) -> Result<Option<AwardStrategyRow>, PersistenceError> {
    Ok(AwardStrategyRow::find_by_statement(stmt(
        conn,
        &format!("SELECT {AWARD_COLUMNS} FROM award_strategies WHERE org_id = $1 AND id = $2"),
        vec![org_id.into(), id.into()],
    ))
    .one(conn)
    .await?)
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_award_strategies<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<AwardStrategyRow>, PersistenceError> {
    let rows = AwardStrategyRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {AWARD_COLUMNS} FROM award_strategies \
             WHERE org_id = $1 AND program_id = $2 AND id > $3 ORDER BY id LIMIT $4"
        ),
        vec![
            org_id.into(),
            program_id.into(),
            after.unwrap_or(0).into(),
            page_fetch(limit),
        ],
    ))
    .all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.id))
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct ExpiryStrategyRow {
    pub id: i64,
    pub org_id: i64,
    pub program_id: i64,
    pub name: String,
    pub kind: String,
    pub days: Option<i32>,
    pub months: Option<i32>,
    pub created_at: DateTime<Utc>,
}

const EXPIRY_COLUMNS: &str = "id, org_id, program_id, name, kind, days, months, created_at";

#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn create_expiry_strategy<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    name: &str,
    kind: &str,
    days: Option<i32>,
    months: Option<i32>,
    now: DateTime<Utc>,
) -> Result<ExpiryStrategyRow, PersistenceError> {
    ExpiryStrategyRow::find_by_statement(stmt(
        conn,
        &format!(
            "INSERT INTO expiry_strategies (org_id, program_id, name, kind, days, months, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {EXPIRY_COLUMNS}"
        ),
        vec![
            org_id.into(),
            program_id.into(),
            name.into(),
            kind.into(),
            days.into(),
            months.into(),
            now.into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get_expiry_strategy<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: i64,
) -> Result<Option<ExpiryStrategyRow>, PersistenceError> {
    Ok(ExpiryStrategyRow::find_by_statement(stmt(
        conn,
        &format!("SELECT {EXPIRY_COLUMNS} FROM expiry_strategies WHERE org_id = $1 AND id = $2"),
        vec![org_id.into(), id.into()],
    ))
    .one(conn)
    .await?)
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_expiry_strategies<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<ExpiryStrategyRow>, PersistenceError> {
    let rows = ExpiryStrategyRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {EXPIRY_COLUMNS} FROM expiry_strategies \
             WHERE org_id = $1 AND program_id = $2 AND id > $3 ORDER BY id LIMIT $4"
        ),
        vec![
            org_id.into(),
            program_id.into(),
            after.unwrap_or(0).into(),
            page_fetch(limit),
        ],
    ))
    .all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.id))
}
