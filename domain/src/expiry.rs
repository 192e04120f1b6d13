//! Expiry strategies: until when an allocated lot can be spent.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};

use crate::Invalid;

/// The longest expiry a strategy may set, so that dates never overflow: 100 years.
pub const MAX_DAYS: i64 = 36_500;
pub const MAX_MONTHS: i64 = 1_200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryRule {
    /// The lot never expires.
    Never,
    /// The lot expires `days × 24 h` after it was allocated.
    AfterDays(u32),
    /// The lot expires when the month `months` after the allocation's month ends, i.e. at
    /// 00:00:00 UTC on the first day of the month after that one.
    EndOfMonthAfterMonths(u32),
}

impl ExpiryRule {
    pub fn after_days(days: i64) -> Result<Self, Invalid> {
        match u32::try_from(days) {
            Ok(d) if (1..=MAX_DAYS).contains(&days) => Ok(ExpiryRule::AfterDays(d)),
            _ => Err(Invalid::new(format!("must be between 1 and {MAX_DAYS}"))),
        }
    }

    pub fn end_of_month_after_months(months: i64) -> Result<Self, Invalid> {
        match u32::try_from(months) {
            Ok(m) if (0..=MAX_MONTHS).contains(&months) => Ok(ExpiryRule::EndOfMonthAfterMonths(m)),
            _ => Err(Invalid::new(format!("must be between 0 and {MAX_MONTHS}"))),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            ExpiryRule::Never => "NEVER",
            ExpiryRule::AfterDays(_) => "AFTER_DAYS",
            ExpiryRule::EndOfMonthAfterMonths(_) => "END_OF_MONTH_AFTER_MONTHS",
        }
    }

    /// When a lot allocated at `now` expires; `None` for never.
    pub fn expires_at(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            ExpiryRule::Never => None,
            ExpiryRule::AfterDays(days) => now.checked_add_signed(Duration::days(i64::from(days))),
            ExpiryRule::EndOfMonthAfterMonths(months) => {
                let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1)?;
                let boundary = first.checked_add_months(Months::new(months.checked_add(1)?))?;
                Some(Utc.from_utc_datetime(&boundary.and_hms_opt(0, 0, 0)?))
            }
        }
    }
}

#[cfg(test)]
#[path = "expiry_tests.rs"]
mod tests;
