//! The reward catalog: stock, per-customer limits, validity and status.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use crate::{Page, PersistenceError, for_update, in_list, one_by_id, stmt, values_rows};

#[derive(Debug, Clone, FromQueryResult)]
pub struct RewardRow {
    pub id: i64,
    pub org_id: i64,
    pub program_id: i64,
    pub name: String,
    pub stock: Option<i64>,
    pub issued: i64,
    pub per_customer_limit: Option<i64>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What `per_customer_limit` counts over: LIFETIME (units held now) or a calendar period.
    pub per_customer_limit_period: String,
    /// Units issued to everyone together per `period_limit_period`; `None`: no limit.
    pub period_limit: Option<i64>,
    pub period_limit_period: Option<String>,
}

const COLUMNS: &str = "id, org_id, program_id, name, stock, issued, per_customer_limit, valid_from, \
     valid_until, status, created_at, updated_at, per_customer_limit_period, period_limit, \
     period_limit_period";

#[derive(Debug, Clone)]
pub struct NewReward {
    pub program_id: i64,
    pub name: String,
    pub stock: Option<i64>,
    pub per_customer_limit: Option<i64>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub status: String,
    pub per_customer_limit_period: String,
    pub period_limit: Option<i64>,
    pub period_limit_period: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn create<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    r: &NewReward,
    now: DateTime<Utc>,
) -> Result<RewardRow, PersistenceError> {
    RewardRow::find_by_statement(stmt(
        conn,
        &format!(
            "INSERT INTO rewards (org_id, program_id, name, stock, issued, per_customer_limit, \
             valid_from, valid_until, status, created_at, updated_at, per_customer_limit_period, \
             period_limit, period_limit_period) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $9, $10, $11, $12) RETURNING {COLUMNS}"
        ),
        vec![
            org_id.into(),
            r.program_id.into(),
            r.name.clone().into(),
            r.stock.into(),
            r.per_customer_limit.into(),
            r.valid_from.into(),
            r.valid_until.into(),
            r.status.clone().into(),
            now.into(),
            r.per_customer_limit_period.clone().into(),
            r.period_limit.into(),
            r.period_limit_period.clone().into(),
        ],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| PersistenceError::Other("insert returned no row".into()))
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: i64,
) -> Result<Option<RewardRow>, PersistenceError> {
    one_by_id(conn, COLUMNS, "rewards", org_id, id).await
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    program_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<RewardRow>, PersistenceError> {
    crate::catalog::of_program(
        conn,
        COLUMNS,
        "rewards",
        org_id,
        program_id,
        after,
        limit,
        |r: &RewardRow| r.id,
    )
    .await
}

/// How a PATCH changes stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    /// Set what is left to issue (`None`: unlimited).
    Set(Option<i64>),
    /// Add to what is left (unlimited stays unlimited).
    Add(i64),
}

/// The fields a PATCH may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RewardPatch {
    pub name: Option<String>,
    pub stock: Option<StockChange>,
    pub per_customer_limit: Option<Option<i64>>,
    pub valid_from: Option<Option<DateTime<Utc>>>,
    pub valid_until: Option<Option<DateTime<Utc>>>,
    pub status: Option<String>,
    pub per_customer_limit_period: Option<String>,
    pub period_limit: Option<Option<i64>>,
    pub period_limit_period: Option<String>,
}

/// Applies a patch in one statement (so `addStock` is atomic with concurrent issuance).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn update<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: i64,
    patch: &RewardPatch,
    now: DateTime<Utc>,
) -> Result<Option<RewardRow>, PersistenceError> {
    let mut sets = vec!["updated_at = $3".to_owned()];
    let mut values: Vec<Value> = vec![org_id.into(), id.into(), now.into()];
    let mut set = |column: &str, expr: &str, value: Value| {
        values.push(value);
        sets.push(format!(
            "{column} = {}",
            expr.replace('?', &format!("${}", values.len()))
        ));
    };
    if let Some(name) = &patch.name {
        set("name", "?", name.clone().into());
    }
    match patch.stock {
        Some(StockChange::Set(v)) => set("stock", "?", v.into()),
        Some(StockChange::Add(n)) => set("stock", "stock + ?", n.into()),
        None => {}
    }
    if let Some(limit) = patch.per_customer_limit {
        set("per_customer_limit", "?", limit.into());
    }
    if let Some(from) = patch.valid_from {
        set("valid_from", "?", from.into());
    }
    if let Some(until) = patch.valid_until {
        set("valid_until", "?", until.into());
    }
    if let Some(status) = &patch.status {
        set("status", "?", status.clone().into());
    }
    if let Some(period) = &patch.per_customer_limit_period {
        set("per_customer_limit_period", "?", period.clone().into());
    }
    if let Some(limit) = patch.period_limit {
        set("period_limit", "?", limit.into());
    }
    match (&patch.period_limit_period, patch.period_limit) {
        (Some(period), _) => set("period_limit_period", "?", period.clone().into()),
        // A period limit set without its period counts per day, as at creation.
        (None, Some(Some(_))) => set(
            "period_limit_period",
            "COALESCE(period_limit_period, ?)",
            "DAY".into(),
        ),
        _ => {}
    }
    Ok(RewardRow::find_by_statement(stmt(
        conn,
        &format!(
            "UPDATE rewards SET {} WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}",
            sets.join(", ")
        ),
        values,
    ))
    .one(conn)
    .await?)
}

/// The rewards named by `(organisation, id)` pairs, locked for the rest of the transaction on
/// PostgreSQL so that the decisions taken from them hold until commit. Locks are taken in
/// `(organisation, id)` order, as every issuance takes them, so concurrent issuances (and
/// group-committed batches of them) never deadlock. Ids of another organisation are not found.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn lock_across<C: ConnectionTrait>(
    conn: &C,
    keys: &[(i64, i64)],
) -> Result<Vec<RewardRow>, PersistenceError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (pairs, values) = values_rows(
        1,
        keys.iter()
            .map(|(org_id, id)| vec![(*org_id).into(), (*id).into()]),
    );
    Ok(RewardRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM rewards WHERE (org_id, id) IN (VALUES {pairs}) ORDER BY org_id, id{}",
            for_update(conn)
        ),
        values,
    ))
    .all(conn)
    .await?)
}

/// The rewards of `ids`, without locks (dry runs).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn read_many<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    ids: &[i64],
    lock: bool,
) -> Result<Vec<RewardRow>, PersistenceError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<Value> = vec![org_id.into()];
    values.extend(ids.iter().map(|id| Value::from(*id)));
    Ok(RewardRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM rewards WHERE org_id = $1 AND id IN ({}) ORDER BY id{}",
            in_list(2, ids.len()),
            if lock { for_update(conn) } else { "" }
        ),
        values,
    ))
    .all(conn)
    .await?)
}

/// Takes units out of stock for each `(organisation, reward, quantity)`, each only if that many
/// are left (or stock is unlimited), in one statement. Returns how many rewards it took from:
/// fewer than asked means a condition refused, and the caller must not commit.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn take_stock_many<C: ConnectionTrait>(
    conn: &C,
    takes: &[(i64, i64, i64)],
    now: DateTime<Utc>,
) -> Result<u64, PersistenceError> {
    if takes.is_empty() {
        return Ok(0);
    }
    let (rows, mut values) = values_rows(
        2,
        takes
            .iter()
            .map(|(org_id, id, quantity)| vec![(*org_id).into(), (*id).into(), (*quantity).into()]),
    );
    values.insert(0, now.into());
    let result = conn
        .execute_raw(stmt(
            conn,
            &format!(
                "WITH v(org_id, id, quantity) AS (VALUES {rows}) \
                 UPDATE rewards SET stock = stock - v.quantity, issued = issued + v.quantity, \
                 updated_at = $1 FROM v WHERE rewards.org_id = v.org_id AND rewards.id = v.id \
                 AND (rewards.stock IS NULL OR rewards.stock >= v.quantity)"
            ),
            values,
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Puts `quantity` cancelled units back into stock (unlimited stays unlimited).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn return_stock<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: i64,
    quantity: i64,
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    conn.execute_raw(stmt(
        conn,
        "UPDATE rewards SET stock = stock + $3, issued = issued - $3, updated_at = $4 \
         WHERE org_id = $1 AND id = $2",
        vec![org_id.into(), id.into(), quantity.into(), now.into()],
    ))
    .await?;
    Ok(())
}
