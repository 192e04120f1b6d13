//! Unit tests of `period`.

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn periods_start_on_utc_calendar_boundaries() {
    // A Wednesday.
    let at = t("2026-11-25T17:45:12Z");
    assert_eq!(Period::Day.start(at), t("2026-11-25T00:00:00Z"));
    assert_eq!(Period::Week.start(at), t("2026-11-23T00:00:00Z"));
    assert_eq!(Period::Month.start(at), t("2026-11-01T00:00:00Z"));
    assert_eq!(Period::Year.start(at), t("2026-01-01T00:00:00Z"));
    assert_eq!(Period::Lifetime.start(at), t("1970-01-01T00:00:00Z"));
}

#[test]
fn a_week_starts_on_monday_even_across_a_month_or_year() {
    // Sunday 3 January 2027 belongs to the week of Monday 28 December 2026.
    assert_eq!(
        Period::Week.start(t("2027-01-03T23:59:59Z")),
        t("2026-12-28T00:00:00Z")
    );
    // A Monday is the start of its own week.
    assert_eq!(
        Period::Week.start(t("2026-11-23T00:00:00Z")),
        t("2026-11-23T00:00:00Z")
    );
}

#[test]
fn the_last_instant_of_a_period_is_still_in_it() {
    assert_eq!(
        Period::Day.start(t("2026-11-25T23:59:59.999Z")),
        t("2026-11-25T00:00:00Z")
    );
    assert_eq!(
        Period::Month.start(t("2026-02-28T23:59:59Z")),
        t("2026-02-01T00:00:00Z")
    );
    assert_eq!(
        Period::Year.start(t("2026-12-31T23:59:59Z")),
        t("2026-01-01T00:00:00Z")
    );
}

#[test]
fn periods_parse_only_their_names() {
    for p in Period::ALL {
        assert_eq!(p.as_str().parse::<Period>().unwrap(), p);
    }
    assert!("day".parse::<Period>().is_err());
    assert!("HOUR".parse::<Period>().is_err());
}

#[test]
fn a_cap_is_rounded_down_at_the_scale_and_never_negative() {
    let zero = Scale::new(0).unwrap();
    let two = Scale::new(2).unwrap();
    let cap = EarnCap::new(Period::Day, "10.5".parse().unwrap()).unwrap();
    assert_eq!(cap.max_minor(zero).unwrap(), 10);
    assert_eq!(cap.max_minor(two).unwrap(), 1050);
    assert!(EarnCap::new(Period::Day, "-1".parse().unwrap()).is_err());
    assert!(EarnCap::new(Period::Day, Decimal::ZERO).is_ok());
}

#[test]
fn the_grant_is_the_least_room_and_never_below_zero() {
    assert_eq!(grant(100, []), 100);
    assert_eq!(grant(100, [250]), 100);
    assert_eq!(grant(100, [250, 40]), 40);
    assert_eq!(grant(100, [0]), 0);
    assert_eq!(grant(100, [-30]), 0);
}
