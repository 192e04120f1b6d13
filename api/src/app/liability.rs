//! A program's liability in one of its currencies, for finance: what its customers hold now,
//! what of it expires in each of the next twelve months, and what the ledger recorded in each
//! of the last twelve (calendar months in UTC).
//!
//! The months' columns, from the kinds of ledger entries:
//! - `issued`: `CREDIT` (allocations, pending ones when they become available);
//! - `redeemed`: `DEBIT` (redemptions and hold captures);
//! - `expired`: `EXPIRE`;
//! - `reversed`: `REVERSAL`;
//! - `transferred`: `TRANSFER_OUT` (what moved from one customer to another, counted once; it
//!   leaves the program's total unchanged).
//!
//! `HOLD` and `RELEASE` move points between available and held within an account and count
//! for none of them.

use chrono::{DateTime, Datelike, Months, TimeZone, Utc};
use persistence::liability::{self, MonthSum};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::app::currency::Balance;
use crate::app::error::AppError;
use crate::engine::format::{amount, ts};

/// A program's liability in one currency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Liability, example = json!({
    "programId": 1, "currency": "POINTS", "asOf": "2026-12-07T04:00:00Z",
    "outstanding": {"available": "1200.00", "pending": "50.00", "held": "40.00"},
    "expiring": [{"month": "2026-12", "amount": "100.00"}, {"month": "2027-01", "amount": "0.00"}],
    "months": [{"month": "2026-12", "issued": "300.00", "redeemed": "120.00", "expired": "0.00",
        "reversed": "10.00", "transferred": "25.00"}]
}))]
pub struct LiabilityView {
    pub program_id: i64,
    pub currency: String,
    /// When it was read.
    pub as_of: String,
    /// The balances of the program's accounts in the currency, added up.
    pub outstanding: Balance,
    /// The current month and the next eleven: what the lots with points left (held parts
    /// included) that expire in that month hold.
    pub expiring: Vec<ExpiringMonth>,
    /// The current month and the eleven before it, oldest first: the ledger's entries of the
    /// month, added up by kind.
    pub months: Vec<LedgerMonth>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpiringMonth {
    /// `YYYY-MM`, UTC.
    #[schema(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: String,
    pub amount: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LedgerMonth {
    /// `YYYY-MM`, UTC.
    #[schema(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: String,
    /// Allocation credits, pending ones counted when they became available.
    pub issued: String,
    /// Redemptions and hold captures.
    pub redeemed: String,
    pub expired: String,
    pub reversed: String,
    /// What moved between customers, counted once.
    pub transferred: String,
}

/// The first instant of the month of `t`, shifted by `by` months.
fn month_start(t: DateTime<Utc>, by: i32) -> DateTime<Utc> {
    let first = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    let shifted = if by >= 0 {
        first.checked_add_months(Months::new(by.unsigned_abs()))
    } else {
        first.checked_sub_months(Months::new(by.unsigned_abs()))
    };
    shifted.unwrap_or(first)
}

fn label(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// What `sums` hold for `month` and `kind`.
fn sum_of(sums: &[MonthSum], month: &str, kind: &str) -> i64 {
    sums.iter()
        .filter(|s| s.month == month && s.kind == kind)
        .map(|s| s.amount)
        .sum()
}

/// The liability of program `program_id` (`None`: the path named none) in `currency`.
pub async fn liability(
    state: &AppState,
    org_id: i64,
    program_id: Option<i64>,
    currency: Option<&str>,
) -> Result<LiabilityView, AppError> {
    let currency = match currency {
        None => return Err(AppError::validation("currency", "is required")),
        Some(c) => domain::catalog::CurrencyCode::parse(c)
            .map_err(|e| AppError::validation("currency", e.message))
            .map(|_| c)?,
    };
    let program = crate::app::programs::program(state, org_id, program_id).await?;
    let scale = program
        .currencies
        .iter()
        .find(|c| c.code == currency)
        .map(|c| c.scale)
        .ok_or_else(|| AppError::unknown_currency("currency", currency))?;
    let program_id = program.row.id;
    let conn = state.db.conn();
    let now = state.now();
    let (this_month, in_a_year) = (label(month_start(now, 0)), label(month_start(now, 12)));
    let (year_ago, next_month) = (label(month_start(now, -11)), label(month_start(now, 1)));
    // Three reads on their own connections at once: the answer takes the longest, not the sum.
    let (outstanding, expiring, ledger) = tokio::try_join!(
        liability::outstanding(conn, org_id, program_id, currency),
        liability::expiring_by_month(conn, org_id, program_id, currency, &this_month, &in_a_year,),
        liability::ledger_by_month(conn, org_id, program_id, currency, &year_ago, &next_month,),
    )?;
    let money = |minor: i64| amount(minor, scale);
    Ok(LiabilityView {
        program_id,
        currency: currency.to_owned(),
        as_of: ts(now),
        outstanding: Balance::of(outstanding, scale),
        expiring: (0..12)
            .map(|i| {
                let month = label(month_start(now, i));
                let amount = money(sum_of(&expiring, &month, ""));
                ExpiringMonth { month, amount }
            })
            .collect(),
        months: (-11..=0)
            .map(|i| {
                let month = label(month_start(now, i));
                let of = |kind| money(sum_of(&ledger, &month, kind));
                LedgerMonth {
                    issued: of("CREDIT"),
                    redeemed: of("DEBIT"),
                    expired: of("EXPIRE"),
                    reversed: of("REVERSAL"),
                    transferred: of("TRANSFER_OUT"),
                    month,
                }
            })
            .collect(),
    })
}
