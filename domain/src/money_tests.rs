//! Unit tests of `money`.

use super::*;

#[test]
fn parses_plain_and_scientific_decimals() {
    assert_eq!(parse_decimal("1000").unwrap(), Decimal::from(1000));
    assert_eq!(parse_decimal("1000.00").unwrap(), Decimal::from(1000));
    assert_eq!(parse_decimal("12.5").unwrap(), Decimal::new(125, 1));
    assert_eq!(parse_decimal("1e3").unwrap(), Decimal::from(1000));
    assert_eq!(parse_decimal("-2").unwrap(), Decimal::from(-2));
    assert!(parse_decimal("1234567890123456789012345678").is_ok());
    assert!(parse_decimal("0.000000000000000000000000001").is_ok());
}

#[test]
fn refuses_what_is_not_an_exact_decimal() {
    for bad in [
        "",
        "NaN",
        "nan",
        "inf",
        "-Infinity",
        "1e400",
        "abc",
        "1.2.3",
        "0x10",
        "12345678901234567890123456789012",
        "12345678901234567890123456789",
    ] {
        assert!(parse_decimal(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn minor_units_round_trip_and_refuse_extra_places() {
    let two = Scale::new(2).unwrap();
    assert_eq!(two.to_minor(Decimal::new(1234, 2)).unwrap(), 1234);
    assert_eq!(two.from_minor(1234).to_string(), "12.34");
    assert_eq!(two.from_minor(100).to_string(), "1.00");
    assert!(two.to_minor(Decimal::new(12345, 3)).is_err());
    assert!(two.to_minor(Decimal::MAX).is_err());
    assert!(Scale::new(7).is_err());
    assert!(Scale::new(-1).is_err());
}

#[test]
fn rounding_modes_at_scale() {
    let s = Scale::new(1).unwrap();
    let v = Decimal::new(125, 2); // 1.25
    assert_eq!(Rounding::Floor.apply(v, s), Decimal::new(12, 1));
    assert_eq!(Rounding::HalfUp.apply(v, s), Decimal::new(13, 1));
    assert_eq!(Rounding::HalfEven.apply(v, s), Decimal::new(12, 1));
    assert_eq!(Rounding::Ceiling.apply(v, s), Decimal::new(13, 1));
    assert_eq!(
        Rounding::HalfEven.apply(Decimal::new(135, 2), s),
        Decimal::new(14, 1)
    );
}
