//! Award strategies: how much currency a source value (a bill amount, say) earns.

use rust_decimal::Decimal;

use crate::Invalid;
use crate::money::{Rounding, Scale};

/// A validated award strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwardRule {
    /// `sourceValue × multiplier`, rounded at the currency's scale, then clamped to `[min, max]`.
    Rate {
        multiplier: Decimal,
        rounding: Rounding,
        min_award: Option<Decimal>,
        max_award: Option<Decimal>,
    },
    /// The same amount whatever the source value.
    Fixed { points: Decimal },
}

impl AwardRule {
    /// Builds a rule, checking what can be checked without knowing the currency.
    pub fn rate(
        multiplier: Decimal,
        rounding: Rounding,
        min_award: Option<Decimal>,
        max_award: Option<Decimal>,
    ) -> Result<Self, (&'static str, Invalid)> {
        if multiplier.is_sign_negative() {
            return Err(("multiplier", Invalid::new("must be zero or more")));
        }
        if min_award.is_some_and(|m| m.is_sign_negative() && !m.is_zero()) {
            return Err(("minAward", Invalid::new("must be zero or more")));
        }
        if let (Some(min), Some(max)) = (min_award, max_award)
            && max < min
        {
            return Err(("maxAward", Invalid::new("must not be less than minAward")));
        }
        if max_award.is_some_and(|m| m.is_sign_negative() && !m.is_zero()) {
            return Err(("maxAward", Invalid::new("must be zero or more")));
        }
        Ok(AwardRule::Rate {
            multiplier,
            rounding,
            min_award,
            max_award,
        })
    }

    pub fn fixed(points: Decimal) -> Result<Self, (&'static str, Invalid)> {
        if points.is_sign_negative() && !points.is_zero() {
            return Err(("points", Invalid::new("must be zero or more")));
        }
        Ok(AwardRule::Fixed { points })
    }

    /// The amount awarded for `source_value`, at the currency's `scale`.
    ///
    /// Checked arithmetic throughout: an overflow is an error, never a panic.
    pub fn award(&self, source_value: Decimal, scale: Scale) -> Result<Decimal, Invalid> {
        if source_value.is_sign_negative() && !source_value.is_zero() {
            return Err(Invalid::new("must be zero or more"));
        }
        let amount = match self {
            AwardRule::Fixed { points } => Rounding::Floor.apply(*points, scale),
            AwardRule::Rate {
                multiplier,
                rounding,
                min_award,
                max_award,
            } => {
                let raw = source_value
                    .checked_mul(*multiplier)
                    .ok_or_else(|| Invalid::new("gives an award too large to represent"))?;
                let mut amount = rounding.apply(raw, scale);
                if let Some(min) = min_award {
                    amount = amount.max(Rounding::Ceiling.apply(*min, scale));
                }
                if let Some(max) = max_award {
                    amount = amount.min(Rounding::Floor.apply(*max, scale));
                }
                amount
            }
        };
        debug_assert!(!amount.is_sign_negative() || amount.is_zero());
        Ok(amount)
    }
}

#[cfg(test)]
#[path = "award_tests.rs"]
mod tests;
