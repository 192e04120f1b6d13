//! The period counters of issuance: which counters an issuance counts in, and the decision's
//! view of a reward for one customer with them.

use std::collections::HashMap;

use domain::issuance::{RewardState, RewardStatus};
use domain::period::Period;
use persistence::issuances::IssuanceRow;
use persistence::reward_periods::CounterKey;
use persistence::rewards::RewardRow;
use uuid::Uuid;

/// The decision's view of a reward for one customer: `held` is the lifetime holding; the
/// period counters (see [`period_keys`]) replace it when the limit is per period.
pub(super) fn reward_state(
    row: &RewardRow,
    held: i64,
    customer: Uuid,
    counts: &HashMap<CounterKey, i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> RewardState {
    let (mine, everyone) = period_keys(row, customer, now);
    let count = |k: Option<CounterKey>| k.and_then(|k| counts.get(&k).copied()).unwrap_or(0);
    RewardState {
        // An unknown status in the database is treated as not issuable.
        status: RewardStatus::parse(&row.status).unwrap_or(RewardStatus::Paused),
        valid_from: row.valid_from,
        valid_until: row.valid_until,
        stock: row.stock,
        per_customer_limit: row.per_customer_limit,
        held: if mine.is_some() { count(mine) } else { held },
        period_limit: row.period_limit.filter(|_| everyone.is_some()),
        period_issued: count(everyone),
    }
}

/// The period counters an issuance of `row` to `customer` at `at` counts in: the customer's,
/// when the per-customer limit is per calendar period, and everyone's, when the reward has a
/// period limit. A counter counts from when its period is set, whatever the limit.
pub fn period_keys(
    row: &RewardRow,
    customer: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> (Option<CounterKey>, Option<CounterKey>) {
    let period = |raw: &str| raw.parse::<Period>().ok();
    let mine = period(&row.per_customer_limit_period)
        .filter(|p| *p != Period::Lifetime)
        .map(|p| (row.org_id, row.id, customer, p.as_str(), p.start(at)));
    let everyone = row
        .period_limit_period
        .as_deref()
        .and_then(period)
        .map(|p| (row.org_id, row.id, Uuid::nil(), p.as_str(), p.start(at)));
    (mine, everyone)
}

/// The period counters issuance `row` was counted in when it was made (see [`period_keys`]):
/// those its recorded periods name, in their periods at its `created_at`. A cancellation gives
/// its units back to these, whatever the reward's settings have become since.
pub fn counted_keys(row: &IssuanceRow) -> Vec<CounterKey> {
    let key = |raw: Option<&str>, customer: Uuid| {
        let period = raw?.parse::<Period>().ok()?;
        Some((
            row.org_id,
            row.reward_id,
            customer,
            period.as_str(),
            period.start(row.created_at),
        ))
    };
    [
        key(row.customer_limit_period.as_deref(), row.customer_id),
        key(row.period_limit_period.as_deref(), Uuid::nil()),
    ]
    .into_iter()
    .flatten()
    .collect()
}
