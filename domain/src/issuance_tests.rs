//! Unit tests of `issuance`.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn active(stock: Option<i64>, limit: Option<i64>, held: i64) -> RewardState {
    RewardState {
        status: RewardStatus::Active,
        valid_from: None,
        valid_until: None,
        stock,
        per_customer_limit: limit,
        held,
        period_limit: None,
        period_issued: 0,
    }
}

fn ask(reward_id: i64, quantity: i64) -> ItemAsk {
    ItemAsk {
        reward_id,
        quantity,
    }
}

#[test]
fn items_share_stock_in_request_order() {
    let rewards = HashMap::from([(1, active(Some(3), None, 0))]);
    let d = decide(
        &[ask(1, 2), ask(1, 2), ask(1, 1)],
        &rewards,
        at("2026-01-01T00:00:00Z"),
    );
    assert_eq!(d, vec![Ok(()), Err(ItemFailure::OutOfStock), Ok(())]);
}

#[test]
fn the_customer_limit_counts_what_is_held_and_what_this_request_issues() {
    let rewards = HashMap::from([(1, active(None, Some(2), 1))]);
    let d = decide(
        &[ask(1, 1), ask(1, 1)],
        &rewards,
        at("2026-01-01T00:00:00Z"),
    );
    assert_eq!(d, vec![Ok(()), Err(ItemFailure::CustomerLimitExceeded)]);
    let d = decide(&[ask(1, 3)], &rewards, at("2026-01-01T00:00:00Z"));
    assert_eq!(d, vec![Err(ItemFailure::CustomerLimitExceeded)]);
}

#[test]
fn the_period_limit_counts_what_everyone_was_issued_and_what_this_request_issues() {
    let mut reward = active(Some(100), None, 0);
    reward.period_limit = Some(5);
    reward.period_issued = 2;
    let rewards = HashMap::from([(1, reward)]);
    let d = decide(
        &[ask(1, 2), ask(1, 2), ask(1, 1)],
        &rewards,
        at("2026-01-01T00:00:00Z"),
    );
    assert_eq!(
        d,
        vec![Ok(()), Err(ItemFailure::PeriodLimitExceeded), Ok(())]
    );
    assert!(ItemFailure::PeriodLimitExceeded.retryable());
    assert_eq!(
        ItemFailure::PeriodLimitExceeded.code(),
        "PERIOD_LIMIT_EXCEEDED"
    );
}

#[test]
fn status_and_validity_come_before_stock() {
    let now = at("2026-06-01T00:00:00Z");
    let mut paused = active(Some(0), None, 0);
    paused.status = RewardStatus::Paused;
    let mut early = active(Some(5), None, 0);
    early.valid_from = Some(at("2026-07-01T00:00:00Z"));
    let mut late = active(Some(5), None, 0);
    late.valid_until = Some(now);
    let rewards = HashMap::from([(1, paused), (2, early), (3, late)]);
    let d = decide(&[ask(1, 1), ask(2, 1), ask(3, 1), ask(4, 1)], &rewards, now);
    assert_eq!(
        d,
        vec![
            Err(ItemFailure::RewardInactive),
            Err(ItemFailure::RewardNotYetValid),
            Err(ItemFailure::RewardExpired),
            Err(ItemFailure::RewardNotFound),
        ]
    );
}

#[test]
fn retryability_follows_what_can_change() {
    assert!(ItemFailure::OutOfStock.retryable());
    assert!(ItemFailure::CustomerLimitExceeded.retryable());
    assert!(!ItemFailure::RewardNotFound.retryable());
    assert!(!ItemFailure::IdempotencyKeyReused.retryable());
}

#[test]
fn voucher_codes_are_twelve_crockford_characters_in_groups() {
    let code = voucher_code(0x0FFF_FFFF_FFFF_FFFF);
    assert_eq!(code, "ZZZZ-ZZZZ-ZZZZ");
    assert_eq!(voucher_code(0), "0000-0000-0000");
    let code = voucher_code(0x0123_4567_89AB_CDEF);
    assert_eq!(code.len(), 14);
    assert!(
        code.chars()
            .all(|c| c == '-' || CROCKFORD.contains(&(c as u8)))
    );
    assert_ne!(voucher_code(1), voucher_code(2));
}
