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

/// The counter of a key, as [`key_values`] binds it.
const COUNTER: &str = "org_id = $1 AND reward_id = $2 AND customer_id = $3 AND period = $4 \
     AND period_start = $5";

/// The values of `key` in the order of its columns (`org_id, reward_id, customer_id, period,
/// period_start`, as [`COUNTER`] names them), then `rest`.
fn key_values(key: &CounterKey, rest: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let (org, reward, customer, period, start) = *key;
    let mut values: Vec<Value> = vec![
        org.into(),
        reward.into(),
        customer.into(),
        period.into(),
        start.into(),
    ];
    values.extend(rest);
    values
}

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
    let (sql, values) = if lock {
        // Each new counter's `issued` starts at zero.
        let (rows, values) =
            crate::values_rows(1, keys.iter().map(|k| key_values(k, [0i64.into()])));
        let sql = format!(
            "INSERT INTO reward_period_counters (org_id, reward_id, customer_id, period, \
             period_start, issued) VALUES {rows} \
             ON CONFLICT (org_id, reward_id, customer_id, period, period_start) \
             DO UPDATE SET issued = reward_period_counters.issued \
             RETURNING org_id, reward_id, customer_id, period, period_start, issued"
        );
        (sql, values)
    } else {
        // A dry run writes nothing: missing counters read as zero.
        let (rows, values) = crate::values_rows(1, keys.iter().map(|k| key_values(k, [])));
        let sql = format!(
            "SELECT org_id, reward_id, customer_id, period, period_start, issued \
             FROM reward_period_counters \
             WHERE (org_id, reward_id, customer_id, period, period_start) IN (VALUES {rows})"
        );
        (sql, values)
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
    for (key, quantity, limit) in raises {
        let result = conn
            .execute_raw(stmt(
                conn,
                &format!(
                    "UPDATE reward_period_counters SET issued = issued + $6 \
                     WHERE {COUNTER} AND ($7 IS NULL OR issued + $6 <= $7)"
                ),
                key_values(key, [(*quantity).into(), (*limit).into()]),
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
    conn.execute_raw(stmt(
        conn,
        &format!(
            "UPDATE reward_period_counters \
             SET issued = CASE WHEN issued > $6 THEN issued - $6 ELSE 0 END WHERE {COUNTER}"
        ),
        key_values(&key, [quantity.into()]),
    ))
    .await?;
    Ok(())
}
