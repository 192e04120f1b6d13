//! Decimal amounts: strict parsing, currency scales and integer minor units.
//!
//! Amounts are `rust_decimal::Decimal` in Rust and are stored as integer *minor units*
//! (`amount × 10^scale`, a `BIGINT`). Integer columns keep the balance arithmetic exact on both
//! PostgreSQL and SQLite (the SQLite driver would bind a `Decimal` as an `f64`), and they let the
//! conditional `UPDATE … SET available = available - $1 WHERE available >= $1` stay one statement.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::Invalid;

/// The largest scale a currency may have. With `i64` minor units this still leaves
/// 9 223 372 036 854 (9.2 × 10^12) whole units per balance at the largest scale.
pub const MAX_SCALE: u32 = 6;

/// Parses a decimal from its JSON text (`"12.5"`, `1000`, `1e3`) exactly.
///
/// Refuses what cannot be represented exactly: `NaN`, infinities, values beyond 28 significant
/// digits, exponents out of range (`1e400`). Never panics.
pub fn parse_decimal(text: &str) -> Result<Decimal, Invalid> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Invalid::new("must be a decimal number"));
    }
    if text.len() > 64 {
        return Err(Invalid::new("has too many digits"));
    }
    let valid_chars = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if !valid_chars {
        return Err(Invalid::new("must be a finite decimal number"));
    }
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    let too_precise = || {
        Invalid::new(
            "is not a decimal that can be represented exactly (at most 28 significant digits)",
        )
    };
    let value = parsed.map(|d| d.normalize()).map_err(|_| too_precise())?;
    // rust_decimal holds some 29-digit values; the contract promises 28 significant digits.
    if value
        .mantissa()
        .unsigned_abs()
        .checked_ilog10()
        .unwrap_or(0)
        >= MAX_SIGNIFICANT_DIGITS
    {
        return Err(too_precise());
    }
    Ok(value)
}

/// The most significant digits an amount may have (what `NUMERIC(28, s)` and `Decimal` share).
pub const MAX_SIGNIFICANT_DIGITS: u32 = 28;

/// The number of decimal places a currency keeps (`POINTS` with 2 keeps `12.34`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scale(u32);

impl Scale {
    pub fn new(scale: i64) -> Result<Self, Invalid> {
        match u32::try_from(scale) {
            Ok(s) if s <= MAX_SCALE => Ok(Self(s)),
            _ => Err(Invalid::new(format!("must be between 0 and {MAX_SCALE}"))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Converts an amount that already fits this scale into minor units.
    /// An amount with more decimal places than the scale, or too large for `i64`, is refused.
    pub fn to_minor(self, amount: Decimal) -> Result<i64, Invalid> {
        let rounded = amount.round_dp_with_strategy(self.0, RoundingStrategy::ToZero);
        if rounded != amount {
            return Err(Invalid::new(format!(
                "has more than {} decimal places for this currency",
                self.0
            )));
        }
        let factor = Decimal::from(10i64.pow(self.0));
        let minor = amount
            .checked_mul(factor)
            .ok_or_else(|| Invalid::new("is too large"))?;
        i64::try_from(minor.trunc()).map_err(|_| Invalid::new("is too large"))
    }

    /// The decimal value of `minor` units, shown with exactly this scale (`150` at 2 → `1.50`).
    pub fn from_minor(self, minor: i64) -> Decimal {
        Decimal::new(minor, self.0)
    }
}

/// How an award is rounded at the currency's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    /// Towards negative infinity (the default: never award more than earned).
    #[default]
    Floor,
    HalfUp,
    HalfEven,
    Ceiling,
}

impl Rounding {
    pub fn as_str(self) -> &'static str {
        match self {
            Rounding::Floor => "FLOOR",
            Rounding::HalfUp => "HALF_UP",
            Rounding::HalfEven => "HALF_EVEN",
            Rounding::Ceiling => "CEILING",
        }
    }

    pub fn apply(self, value: Decimal, scale: Scale) -> Decimal {
        let strategy = match self {
            Rounding::Floor => RoundingStrategy::ToNegativeInfinity,
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::Ceiling => RoundingStrategy::ToPositiveInfinity,
        };
        value.round_dp_with_strategy(scale.get(), strategy)
    }
}

impl FromStr for Rounding {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "FLOOR" => Ok(Rounding::Floor),
            "HALF_UP" => Ok(Rounding::HalfUp),
            "HALF_EVEN" => Ok(Rounding::HalfEven),
            "CEILING" => Ok(Rounding::Ceiling),
            _ => Err(Invalid::new(
                "must be one of FLOOR, HALF_UP, HALF_EVEN, CEILING",
            )),
        }
    }
}

#[cfg(test)]
#[path = "money_tests.rs"]
mod tests;
