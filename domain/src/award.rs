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
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn rate(mult: &str, rounding: Rounding, min: Option<&str>, max: Option<&str>) -> AwardRule {
        AwardRule::rate(d(mult), rounding, min.map(d), max.map(d)).unwrap()
    }

    #[test]
    fn rate_multiplies_and_rounds_at_scale() {
        let two = Scale::new(2).unwrap();
        let zero = Scale::new(0).unwrap();
        let r = rate("0.1", Rounding::Floor, None, None);
        assert_eq!(r.award(d("1000"), two).unwrap(), d("100"));
        assert_eq!(r.award(d("12.345"), two).unwrap(), d("1.23"));
        assert_eq!(r.award(d("19"), zero).unwrap(), d("1"));
        let up = rate("0.1", Rounding::HalfUp, None, None);
        assert_eq!(up.award(d("15"), zero).unwrap(), d("2"));
        let even = rate("0.1", Rounding::HalfEven, None, None);
        assert_eq!(even.award(d("25"), zero).unwrap(), d("2"));
        let ceil = rate("0.1", Rounding::Ceiling, None, None);
        assert_eq!(ceil.award(d("11"), zero).unwrap(), d("2"));
    }

    #[test]
    fn rate_is_clamped_to_min_and_max() {
        let two = Scale::new(2).unwrap();
        let r = rate("0.1", Rounding::Floor, Some("5"), Some("5000"));
        assert_eq!(r.award(d("10"), two).unwrap(), d("5"));
        assert_eq!(r.award(d("0"), two).unwrap(), d("5"));
        assert_eq!(r.award(d("1000000"), two).unwrap(), d("5000"));
        assert_eq!(r.award(d("1000"), two).unwrap(), d("100"));
    }

    #[test]
    fn fixed_ignores_the_source_value() {
        let two = Scale::new(2).unwrap();
        let f = AwardRule::fixed(d("50")).unwrap();
        assert_eq!(f.award(d("0"), two).unwrap(), d("50"));
        assert_eq!(f.award(d("99999"), two).unwrap(), d("50"));
    }

    #[test]
    fn invalid_rules_and_values_are_refused() {
        assert!(AwardRule::rate(d("-1"), Rounding::Floor, None, None).is_err());
        assert!(AwardRule::rate(d("1"), Rounding::Floor, Some(d("10")), Some(d("5"))).is_err());
        assert!(AwardRule::fixed(d("-5")).is_err());
        let r = rate("0.1", Rounding::Floor, None, None);
        assert!(r.award(d("-1"), Scale::new(2).unwrap()).is_err());
        let huge = rate("79228162514264337593543950335", Rounding::Floor, None, None);
        assert!(huge.award(d("10"), Scale::new(2).unwrap()).is_err());
    }
}
