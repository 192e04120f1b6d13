//! The catalog an organisation sets up: programs with their currencies, award strategies and
//! expiry strategies. Every query is scoped by `org_id`: another tenant's ids are not found.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use crate::{Keyset, Page, PersistenceError, in_list, one_by_id, page, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct ProgramRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

const PROGRAM_COLUMNS: &str = "id, org_id, name, created_at";

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
        &format!(
            "INSERT INTO programs (org_id, name, created_at) VALUES ($1, $2, $3) \
             RETURNING {PROGRAM_COLUMNS}"
        ),
        vec![org_id.into(), name.into(), now.into()],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))?;
    let rows = currencies
        .iter()
        .map(|(code, scale)| {
            vec![
                org_id.into(),
                row.id.into(),
                code.clone().into(),
                (*scale).into(),
            ]
        })
        .collect();
    crate::insert_rows(
        conn,
        "program_currencies",
        "org_id, program_id, code, scale",
        "",
        rows,
    )
    .await?;
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
    let sql = format!(
        "SELECT program_id, code, scale FROM program_currencies \
         WHERE org_id = $1 AND program_id IN ({}) ORDER BY program_id, code",
        in_list(2, program_ids.len())
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
    let Some(row) =
        one_by_id::<ProgramRow, _>(conn, PROGRAM_COLUMNS, "programs", org_id, program_id).await?
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
    let page = page(
        conn,
        &format!("SELECT {PROGRAM_COLUMNS} FROM programs WHERE org_id = $1"),
        vec![org_id.into()],
        "id",
        Keyset::After(after),
        limit,
        |r: &ProgramRow| r.id,
    )
    .await?;
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
    one_by_id(conn, AWARD_COLUMNS, "award_strategies", org_id, id).await
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_award_strategies<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<AwardStrategyRow>, PersistenceError> {
    of_program(
        conn,
        AWARD_COLUMNS,
        "award_strategies",
        org_id,
        program_id,
        after,
        limit,
        |r: &AwardStrategyRow| r.id,
    )
    .await
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
    one_by_id(conn, EXPIRY_COLUMNS, "expiry_strategies", org_id, id).await
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_expiry_strategies<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<ExpiryStrategyRow>, PersistenceError> {
    of_program(
        conn,
        EXPIRY_COLUMNS,
        "expiry_strategies",
        org_id,
        program_id,
        after,
        limit,
        |r: &ExpiryStrategyRow| r.id,
    )
    .await
}

/// A page of the rows of `table` that belong to program `program_id` (strategies, rewards),
/// as `columns`, in creation (id) order after the `after` cursor; `id` gives a row's id.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn of_program<R: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    columns: &str,
    table: &str,
    org_id: i64,
    program_id: i64,
    after: Option<i64>,
    limit: u64,
    id: impl Fn(&R) -> i64,
) -> Result<Page<R>, PersistenceError> {
    page(
        conn,
        &format!("SELECT {columns} FROM {table} WHERE org_id = $1 AND program_id = $2"),
        vec![org_id.into(), program_id.into()],
        "id",
        Keyset::After(after),
        limit,
        id,
    )
    .await
}
