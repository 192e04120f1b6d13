//! Unit tests of `award`.

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
