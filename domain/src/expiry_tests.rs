//! Unit tests of `expiry`.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn never_has_no_expiry() {
    assert_eq!(
        ExpiryRule::Never.expires_at(at("2026-11-22T10:00:00Z")),
        None
    );
}

#[test]
fn after_days_adds_whole_days() {
    let r = ExpiryRule::after_days(365).unwrap();
    assert_eq!(
        r.expires_at(at("2026-11-22T10:00:00Z")),
        Some(at("2027-11-22T10:00:00Z"))
    );
    let r = ExpiryRule::after_days(1).unwrap();
    assert_eq!(
        r.expires_at(at("2028-02-28T23:30:00Z")),
        Some(at("2028-02-29T23:30:00Z"))
    );
}

#[test]
fn end_of_month_after_months_ends_with_the_month() {
    let r = ExpiryRule::end_of_month_after_months(3).unwrap();
    // November + 3 months = February; it ends when March begins.
    assert_eq!(
        r.expires_at(at("2026-11-22T10:00:00Z")),
        Some(at("2027-03-01T00:00:00Z"))
    );
    let r = ExpiryRule::end_of_month_after_months(0).unwrap();
    assert_eq!(
        r.expires_at(at("2026-01-31T23:59:59Z")),
        Some(at("2026-02-01T00:00:00Z"))
    );
    let r = ExpiryRule::end_of_month_after_months(1).unwrap();
    assert_eq!(
        r.expires_at(at("2026-12-15T00:00:00Z")),
        Some(at("2027-02-01T00:00:00Z"))
    );
}

#[test]
fn out_of_range_strategies_are_refused() {
    assert!(ExpiryRule::after_days(0).is_err());
    assert!(ExpiryRule::after_days(-5).is_err());
    assert!(ExpiryRule::after_days(MAX_DAYS + 1).is_err());
    assert!(ExpiryRule::end_of_month_after_months(-1).is_err());
    assert!(ExpiryRule::end_of_month_after_months(MAX_MONTHS + 1).is_err());
}
