//! Unit tests of `rate_limit`.

use super::*;

#[test]
fn a_burst_of_twice_the_rate_passes_then_requests_wait() {
    let limiter = Limiter::new(5).unwrap();
    for i in 0..10 {
        let state = limiter
            .check(1)
            .unwrap_or_else(|_| panic!("request {i} refused"));
        assert_eq!(state.limit, 10);
        assert_eq!(state.remaining, 9 - i);
    }
    let refused = limiter.check(1).unwrap_err();
    assert_eq!(refused.remaining, 0);
    assert_eq!(refused.reset_secs, 1);
    // Another organisation has its own bucket.
    assert!(limiter.check(2).is_ok());
}

#[test]
fn zero_means_no_limit() {
    assert!(Limiter::new(0).is_none());
}

#[test]
fn an_address_is_blocked_after_its_failures_only() {
    let limit = FailureLimit::new(3).unwrap();
    let (a, b) = (
        IpAddr::from([203, 0, 113, 7]),
        IpAddr::from([198, 51, 100, 4]),
    );
    for _ in 0..3 {
        assert_eq!(limit.blocked(a), None);
        limit.failed(a);
    }
    let wait = limit.blocked(a).unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(limit.blocked(b), None);
    assert!(FailureLimit::new(0).is_none());
}
