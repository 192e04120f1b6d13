//! Unit tests of `catalog`.

use super::*;

#[test]
fn currency_codes() {
    assert!(CurrencyCode::parse("POINTS").is_ok());
    assert!(CurrencyCode::parse("COINS_2").is_ok());
    for bad in ["", "points", "1POINTS", "PO INTS", &"P".repeat(33)] {
        assert!(CurrencyCode::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn names() {
    assert_eq!(parse_name("  Marvel ").unwrap(), "Marvel");
    assert!(parse_name("  ").is_err());
    assert!(parse_name("a\u{0}b").is_err());
}
