//! Issuances of rewards to customers, their voucher codes, and what each customer holds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::{
    Keyset, Page, PersistenceError, for_update, in_list, insert_rows, one_by_id, page, stmt,
    values_rows,
};

/// A customer's holding of a reward: (organisation, customer, reward).
pub type HoldingKey = (i64, Uuid, i64);

/// Makes sure a holding row exists for each key (sorted), so it can be locked and
/// conditionally raised.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn ensure_holdings<C: ConnectionTrait>(
    conn: &C,
    keys: &[HoldingKey],
) -> Result<(), PersistenceError> {
    let rows = keys
        .iter()
        .map(|(org, customer, reward)| {
            vec![
                (*org).into(),
                (*customer).into(),
                (*reward).into(),
                0i64.into(),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "customer_reward_counts",
        "org_id, customer_id, reward_id, held",
        "ON CONFLICT (org_id, customer_id, reward_id) DO NOTHING",
        rows,
    )
    .await?;
    Ok(())
}

#[derive(Debug, FromQueryResult)]
struct Holding {
    org_id: i64,
    customer_id: Uuid,
    reward_id: i64,
    held: i64,
}

/// What customers hold of rewards, by key (absent: none); locked on PostgreSQL when `lock`,
/// in key order.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn holdings<C: ConnectionTrait>(
    conn: &C,
    keys: &[HoldingKey],
    lock: bool,
) -> Result<HashMap<HoldingKey, i64>, PersistenceError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (triples, values) = values_rows(
        1,
        keys.iter().map(|(org, customer, reward)| {
            vec![(*org).into(), (*customer).into(), (*reward).into()]
        }),
    );
    let rows = Holding::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT org_id, customer_id, reward_id, held FROM customer_reward_counts \
             WHERE (org_id, customer_id, reward_id) IN (VALUES {triples}) \
             ORDER BY org_id, customer_id, reward_id{}",
            if lock { for_update(conn) } else { "" }
        ),
        values,
    ))
    .all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|h| ((h.org_id, h.customer_id, h.reward_id), h.held))
        .collect())
}

/// Raises each holding by its quantity, each only if it stays within its limit, in one
/// statement: `(key, quantity, limit)`. Returns how many it raised: fewer than asked means a
/// limit refused, and the caller must not commit.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn hold_many<C: ConnectionTrait>(
    conn: &C,
    holds: &[(HoldingKey, i64, Option<i64>)],
) -> Result<u64, PersistenceError> {
    if holds.is_empty() {
        return Ok(0);
    }
    let (rows, values) = values_rows(
        1,
        holds
            .iter()
            .map(|((org, customer, reward), quantity, limit)| {
                vec![
                    (*org).into(),
                    (*customer).into(),
                    (*reward).into(),
                    (*quantity).into(),
                    (*limit).into(),
                ]
            }),
    );
    let result = conn
        .execute_raw(stmt(
            conn,
            &format!(
                "WITH v(org_id, customer_id, reward_id, quantity, lim) AS (VALUES {rows}) \
                 UPDATE customer_reward_counts SET held = held + v.quantity FROM v \
                 WHERE customer_reward_counts.org_id = v.org_id \
                 AND customer_reward_counts.customer_id = v.customer_id \
                 AND customer_reward_counts.reward_id = v.reward_id \
                 AND (v.lim IS NULL OR customer_reward_counts.held + v.quantity <= v.lim)"
            ),
            values,
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Gives back `quantity` units of a holding (a cancellation).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn release<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    reward_id: i64,
    quantity: i64,
) -> Result<(), PersistenceError> {
    conn.execute_raw(stmt(
        conn,
        "UPDATE customer_reward_counts SET held = held - $4 \
         WHERE org_id = $1 AND customer_id = $2 AND reward_id = $3",
        vec![
            org_id.into(),
            customer_id.into(),
            reward_id.into(),
            quantity.into(),
        ],
    ))
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct NewIssuance {
    pub id: Uuid,
    pub org_id: i64,
    pub request_id: String,
    pub customer_id: Uuid,
    pub reward_id: i64,
    pub quantity: i64,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    pub vouchers: Vec<String>,
    /// The period of the customer's counter the issuance is counted in (none: `None`).
    pub customer_limit_period: Option<&'static str>,
    /// The period of everyone's counter the issuance is counted in (none: `None`).
    pub period_limit_period: Option<&'static str>,
}

/// Inserts issuances (of any organisations) and their vouchers with multi-row statements.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn insert_many<C: ConnectionTrait>(
    conn: &C,
    issuances: &[NewIssuance],
    now: DateTime<Utc>,
) -> Result<(), PersistenceError> {
    let rows = issuances
        .iter()
        .map(|i| {
            vec![
                i.id.into(),
                i.org_id.into(),
                i.request_id.clone().into(),
                i.customer_id.into(),
                i.reward_id.into(),
                i.quantity.into(),
                i.brand.clone().into(),
                i.transaction_number.clone().into(),
                "ISSUED".into(),
                now.into(),
                i.customer_limit_period.map(str::to_owned).into(),
                i.period_limit_period.map(str::to_owned).into(),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "issuances",
        "id, org_id, request_id, customer_id, reward_id, quantity, brand, \
         transaction_number, status, created_at, customer_limit_period, period_limit_period",
        "",
        rows,
    )
    .await?;
    let vouchers = issuances
        .iter()
        .flat_map(|i| {
            i.vouchers
                .iter()
                .map(move |code| vec![i.org_id.into(), i.id.into(), code.clone().into()])
        })
        .collect();
    insert_rows(conn, "vouchers", "org_id, issuance_id, code", "", vouchers).await?;
    Ok(())
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct IssuanceRow {
    pub seq: i64,
    pub id: Uuid,
    pub org_id: i64,
    pub request_id: String,
    pub customer_id: Uuid,
    pub reward_id: i64,
    pub quantity: i64,
    pub brand: Option<String>,
    pub transaction_number: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The periods of the counters the issuance was counted in (the customer's, everyone's),
    /// each in its period at `created_at`; a cancellation gives its units back to them.
    pub customer_limit_period: Option<String>,
    pub period_limit_period: Option<String>,
}

const COLUMNS: &str = "seq, id, org_id, request_id, customer_id, reward_id, quantity, brand, \
     transaction_number, status, created_at, cancelled_at, customer_limit_period, \
     period_limit_period";

/// An issuance with its voucher codes.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub row: IssuanceRow,
    pub vouchers: Vec<String>,
}

#[derive(Debug, FromQueryResult)]
struct VoucherRow {
    issuance_id: Uuid,
    code: String,
}

async fn with_vouchers<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    rows: Vec<IssuanceRow>,
) -> Result<Vec<Issuance>, PersistenceError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<Value> = vec![org_id.into()];
    values.extend(rows.iter().map(|r| Value::from(r.id)));
    let vouchers = VoucherRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT issuance_id, code FROM vouchers WHERE org_id = $1 AND issuance_id IN ({}) ORDER BY id",
            in_list(2, rows.len())
        ),
        values,
    ))
    .all(conn)
    .await?;
    let mut by_issuance: HashMap<Uuid, Vec<String>> = HashMap::new();
    for v in vouchers {
        by_issuance.entry(v.issuance_id).or_default().push(v.code);
    }
    Ok(rows
        .into_iter()
        .map(|row| Issuance {
            vouchers: by_issuance.remove(&row.id).unwrap_or_default(),
            row,
        })
        .collect())
}

#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
) -> Result<Option<Issuance>, PersistenceError> {
    let row: Option<IssuanceRow> = one_by_id(conn, COLUMNS, "issuances", org_id, id).await?;
    Ok(with_vouchers(conn, org_id, row.into_iter().collect())
        .await?
        .into_iter()
        .next())
}

/// Marks an issuance cancelled if it is still issued; `None` if it was not (already cancelled,
/// or no such issuance).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn mark_cancelled<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<IssuanceRow>, PersistenceError> {
    Ok(IssuanceRow::find_by_statement(stmt(
        conn,
        &format!(
            "UPDATE issuances SET status = 'CANCELLED', cancelled_at = $3 \
             WHERE org_id = $1 AND id = $2 AND status = 'ISSUED' RETURNING {COLUMNS}"
        ),
        vec![org_id.into(), id.into(), now.into()],
    ))
    .one(conn)
    .await?)
}

/// A customer's issuances, newest first.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn list_for_customer<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    before: Option<i64>,
    limit: u64,
) -> Result<Page<Issuance>, PersistenceError> {
    let page = page(
        conn,
        &format!("SELECT {COLUMNS} FROM issuances WHERE org_id = $1 AND customer_id = $2"),
        vec![org_id.into(), customer_id.into()],
        "seq",
        Keyset::Before(before),
        limit,
        |r: &IssuanceRow| r.seq,
    )
    .await?;
    Ok(Page {
        items: with_vouchers(conn, org_id, page.items).await?,
        next_cursor: page.next_cursor,
    })
}
