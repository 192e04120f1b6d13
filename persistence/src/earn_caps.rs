//! Earn caps: what one award strategy gave one customer in one calendar period, counted in
//! `earn_cap_counters` (minor units) so that no allocation passes a cap, however many run at
//! once.
//!
//! A counter is created at zero and locked by one upsert, then raised by a conditional update
//! that refuses to pass its `max`. Callers take the account's balance lock first (every
//! allocation and reversal of the strategy's currency takes it), so counters are always locked
//! in the same order after it and never deadlock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::{PersistenceError, stmt};

/// Whose counters: one strategy and one customer of one organisation.
#[derive(Debug, Clone, Copy)]
pub struct CapScope {
    pub org_id: i64,
    pub award_strategy_id: i64,
    pub customer_id: Uuid,
}

/// The counter of a [`CapScope`] in one period, as [`CapScope::counter_values`] binds it.
const COUNTER: &str = "org_id = $1 AND award_strategy_id = $2 AND customer_id = $3 \
     AND period = $4 AND period_start = $5";

impl CapScope {
    /// The values that name the scope's counter of `period` from `start` ([`COUNTER`]), then
    /// `rest`.
    fn counter_values(
        &self,
        period: &str,
        start: DateTime<Utc>,
        rest: impl IntoIterator<Item = Value>,
    ) -> Vec<Value> {
        let mut values: Vec<Value> = vec![
            self.org_id.into(),
            self.award_strategy_id.into(),
            self.customer_id.into(),
            period.into(),
            start.into(),
        ];
        values.extend(rest);
        values
    }
}

/// One cap as it applies now: its period's name, when the period started, and its max in
/// minor units.
#[derive(Debug, Clone)]
pub struct CapWindow {
    pub period: &'static str,
    pub start: DateTime<Utc>,
    pub max: i64,
}

#[derive(Debug, FromQueryResult)]
struct CounterRow {
    period: String,
    period_start: DateTime<Utc>,
    awarded: i64,
}

/// The windows with one counter each: two caps of one period share a counter and the smaller
/// max applies.
fn counters(windows: &[CapWindow]) -> BTreeMap<(&'static str, DateTime<Utc>), i64> {
    let mut by = BTreeMap::new();
    for w in windows {
        by.entry((w.period, w.start))
            .and_modify(|m: &mut i64| *m = (*m).min(w.max))
            .or_insert(w.max);
    }
    by
}

/// Grants as much of `wanted` as every cap still has room for (possibly 0) and counts it;
/// returns what was granted. Locks the scope's counters until the transaction ends.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn take<C: ConnectionTrait>(
    conn: &C,
    scope: CapScope,
    windows: &[CapWindow],
    wanted: i64,
) -> Result<i64, PersistenceError> {
    let counters = counters(windows);
    if counters.is_empty() {
        return Ok(wanted);
    }
    // Create the missing counters at zero and lock them all, in one statement.
    let mut sql = String::from(
        "INSERT INTO earn_cap_counters (org_id, award_strategy_id, customer_id, period, \
         period_start, awarded) VALUES ",
    );
    let mut values: Vec<Value> = vec![
        scope.org_id.into(),
        scope.award_strategy_id.into(),
        scope.customer_id.into(),
    ];
    for (i, (period, start)) in counters.keys().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let n = values.len();
        sql.push_str(&format!("($1, $2, $3, ${}, ${}, 0)", n + 1, n + 2));
        values.push((*period).into());
        values.push((*start).into());
    }
    sql.push_str(
        " ON CONFLICT (org_id, award_strategy_id, customer_id, period, period_start) \
         DO UPDATE SET awarded = earn_cap_counters.awarded \
         RETURNING period, period_start, awarded",
    );
    let rows = CounterRow::find_by_statement(stmt(conn, &sql, values))
        .all(conn)
        .await?;
    let awarded: BTreeMap<(String, DateTime<Utc>), i64> = rows
        .into_iter()
        .map(|r| ((r.period, r.period_start), r.awarded))
        .collect();
    let mut rooms = Vec::with_capacity(counters.len());
    for ((period, start), max) in &counters {
        let so_far = awarded
            .get(&((*period).to_owned(), *start))
            .ok_or_else(|| {
                PersistenceError::Other("an earn cap counter was not returned".into())
            })?;
        rooms.push(max.saturating_sub(*so_far));
    }
    let granted = domain::period::grant(wanted, rooms);
    if granted == 0 {
        return Ok(0);
    }
    for ((period, start), max) in &counters {
        let raised = conn
            .execute_raw(stmt(
                conn,
                &format!(
                    "UPDATE earn_cap_counters SET awarded = awarded + $6 \
                     WHERE {COUNTER} AND awarded + $6 <= $7"
                ),
                scope.counter_values(period, *start, [granted.into(), (*max).into()]),
            ))
            .await?;
        if raised.rows_affected() != 1 {
            // The counters are locked above, so only a bug elsewhere gets here.
            return Err(PersistenceError::Other(format!(
                "earn cap {period} would have been passed"
            )));
        }
    }
    Ok(granted)
}

/// Gives `amount` back to the counters of the periods an allocation was counted in (a
/// reversal); a counter never goes below zero.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn give_back<C: ConnectionTrait>(
    conn: &C,
    scope: CapScope,
    windows: &[CapWindow],
    amount: i64,
) -> Result<(), PersistenceError> {
    if amount <= 0 {
        return Ok(());
    }
    for (period, start) in counters(windows).keys() {
        conn.execute_raw(stmt(
            conn,
            &format!(
                "UPDATE earn_cap_counters \
                 SET awarded = CASE WHEN awarded > $6 THEN awarded - $6 ELSE 0 END WHERE {COUNTER}"
            ),
            scope.counter_values(period, *start, [amount.into()]),
        ))
        .await?;
    }
    Ok(())
}
