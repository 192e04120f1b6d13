//! Per-period reward limits: units of a reward issued within one calendar period, to one
//! customer or to everyone (the nil customer id), counted in `reward_period_counters`.
//!
//! Issuance locks the rewards first (`rewards::lock_across`), then these counters (created at
//! zero and locked by one upsert, in key order), and raises them with conditional updates that
//! refuse to pass the limit; a cancellation lowers the counters its issuance recorded being
//! counted in (`issuances.customer_limit_period`, `period_limit_period`), in the period its
//! units were issued in.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::{PersistenceError, stmt};

/// One counter: `(organisation, reward, customer or nil for everyone, period, period start)`.
pub type CounterKey = (i64, i64, Uuid, &'static str, DateTime<Utc>);

#[derive(Debug, FromQueryResult)]
struct CounterRow {
    org_id: i64,
    reward_id: i64,
    customer_id: Uuid,
    period: String,
    period_start: DateTime<Utc>,
    issued: i64,
}

/// The counters of `keys`, created at zero when missing; with `lock`, locked until the
/// transaction ends (taken in key order, as every issuance takes them).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn counters<C: ConnectionTrait>(
    conn: &C,
    keys: &[CounterKey],
    lock: bool,
) -> Result<HashMap<CounterKey, i64>, PersistenceError> {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let mut values: Vec<Value> = Vec::with_capacity(keys.len() * 5);
    let mut rows = Vec::with_capacity(keys.len());
    for (org, reward, customer, period, start) in &keys {
        let n = values.len();
        rows.push(format!(
            "${}, ${}, ${}, ${}, ${}",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5
        ));
        values.extend([
            (*org).into(),
            (*reward).into(),
            (*customer).into(),
            (*period).into(),
            (*start).into(),
        ]);
    }
    let sql = if lock {
        let inserted: Vec<String> = rows.iter().map(|r| format!("({r}, 0)")).collect();
        format!(
            "INSERT INTO reward_period_counters (org_id, reward_id, customer_id, period, \
             period_start, issued) VALUES {} \
             ON CONFLICT (org_id, reward_id, customer_id, period, period_start) \
             DO UPDATE SET issued = reward_period_counters.issued \
             RETURNING org_id, reward_id, customer_id, period, period_start, issued",
            inserted.join(", ")
        )
    } else {
        // A dry run writes nothing: missing counters read as zero.
        let wanted: Vec<String> = rows.iter().map(|r| format!("({r})")).collect();
        format!(
            "SELECT org_id, reward_id, customer_id, period, period_start, issued \
             FROM reward_period_counters \
             WHERE (org_id, reward_id, customer_id, period, period_start) IN (VALUES {})",
            wanted.join(", ")
        )
    };
    let found = CounterRow::find_by_statement(stmt(conn, &sql, values))
        .all(conn)
        .await?;
    // The rows name their period as text; the keys hold the same name as a static str.
    let period_of = |name: &str| keys.iter().map(|k| k.3).find(|p| *p == name);
    let mut by_key: HashMap<CounterKey, i64> = keys.iter().map(|k| (*k, 0)).collect();
    for row in found {
        if let Some(period) = period_of(&row.period) {
            let key = (
                row.org_id,
                row.reward_id,
                row.customer_id,
                period,
                row.period_start,
            );
            if let Some(count) = by_key.get_mut(&key) {
                *count = row.issued;
            }
        }
    }
    Ok(by_key)
}

/// Raises each counter by its quantity, only if it stays within its limit (`None`: no limit).
/// Returns how many it raised: fewer than asked means a condition refused, and the caller must
/// not commit.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn raise_many<C: ConnectionTrait>(
    conn: &C,
    raises: &[(CounterKey, i64, Option<i64>)],
) -> Result<u64, PersistenceError> {
    let mut raised = 0;
    for ((org, reward, customer, period, start), quantity, limit) in raises {
        let result = conn
            .execute_raw(stmt(
                conn,
                "UPDATE reward_period_counters SET issued = issued + $6 \
                 WHERE org_id = $1 AND reward_id = $2 AND customer_id = $3 AND period = $4 \
                   AND period_start = $5 AND ($7 IS NULL OR issued + $6 <= $7)",
                vec![
                    (*org).into(),
                    (*reward).into(),
                    (*customer).into(),
                    (*period).into(),
                    (*start).into(),
                    (*quantity).into(),
                    (*limit).into(),
                ],
            ))
            .await?;
        raised += result.rows_affected();
    }
    Ok(raised)
}

/// Gives `quantity` units back to a counter (a cancellation, in the period the units were
/// issued in); never below zero.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn lower<C: ConnectionTrait>(
    conn: &C,
    key: CounterKey,
    quantity: i64,
) -> Result<(), PersistenceError> {
    let (org, reward, customer, period, start) = key;
    conn.execute_raw(stmt(
        conn,
        "UPDATE reward_period_counters \
         SET issued = CASE WHEN issued > $6 THEN issued - $6 ELSE 0 END \
         WHERE org_id = $1 AND reward_id = $2 AND customer_id = $3 AND period = $4 \
           AND period_start = $5",
        vec![
            org.into(),
            reward.into(),
            customer.into(),
            period.into(),
            start.into(),
            quantity.into(),
        ],
    ))
    .await?;
    Ok(())
}
