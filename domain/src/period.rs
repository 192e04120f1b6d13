//! Calendar periods in UTC, and the earn caps that count within them.
//!
//! A period is named by when it starts: the day at 00:00 UTC, the week on its Monday, the month
//! on its first day, the year on 1 January, and the lifetime at the Unix epoch. Two moments are
//! in the same period exactly when their starts are equal, so a counter keyed by
//! `(period, start)` counts one period.

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

use crate::Invalid;
use crate::money::{Rounding, Scale};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Day,
    Week,
    Month,
    Year,
    Lifetime,
}

impl Period {
    pub const ALL: [Period; 5] = [
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
        Period::Lifetime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "DAY",
            Period::Week => "WEEK",
            Period::Month => "MONTH",
            Period::Year => "YEAR",
            Period::Lifetime => "LIFETIME",
        }
    }

    /// When the period that holds `at` started (UTC; a week starts on Monday).
    pub fn start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let date = at.date_naive();
        let first = match self {
            Period::Day => Some(date),
            Period::Week => date.checked_sub_days(chrono::Days::new(u64::from(
                date.weekday().num_days_from_monday(),
            ))),
            Period::Month => NaiveDate::from_ymd_opt(date.year(), date.month(), 1),
            Period::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1),
            Period::Lifetime => None,
        };
        // Every date chrono can hold has a first day of its month, year and week, except the
        // very first week it can hold; that (and the lifetime) counts from the epoch.
        first
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(DateTime::UNIX_EPOCH, |d| Utc.from_utc_datetime(&d))
    }
}

impl FromStr for Period {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Period::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Invalid::new("must be DAY, WEEK, MONTH, YEAR or LIFETIME"))
    }
}

/// The most one award strategy gives one customer within one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarnCap {
    pub period: Period,
    /// Zero or more, in the currency's units.
    pub max: Decimal,
}

/// The most caps one strategy may carry.
pub const MAX_CAPS: usize = 5;

impl EarnCap {
    pub fn new(period: Period, max: Decimal) -> Result<Self, Invalid> {
        if max.is_sign_negative() && !max.is_zero() {
            return Err(Invalid::new("must be zero or more"));
        }
        Ok(Self {
            period,
            max: max.normalize(),
        })
    }

    /// The cap in minor units at `scale`, rounded down (a cap of 10.5 at scale 0 lets 10
    /// through, as `maxAward` does).
    pub fn max_minor(self, scale: Scale) -> Result<i64, Invalid> {
        scale.to_minor(Rounding::Floor.apply(self.max, scale))
    }
}

/// What may be awarded of `wanted` when each cap has `room` left (`max − awarded so far`, which
/// may be negative if a cap was lowered): the least of them, never below zero.
pub fn grant(wanted: i64, rooms: impl IntoIterator<Item = i64>) -> i64 {
    rooms.into_iter().fold(wanted, |g, room| g.min(room)).max(0)
}

#[cfg(test)]
#[path = "period_tests.rs"]
mod tests;
