//! Reward issuance rules: which items of a request can be issued, and voucher codes.
//!
//! The decision is pure: it takes the state of each reward and of the customer's holdings as
//! they are *now* (the caller reads them under row locks) and decides every item in request
//! order, so that two items for the same reward share its stock and the customer's limit.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// The most units one item may ask for.
pub const MAX_QUANTITY: i64 = 1_000;
/// The most units one request may ask for in all (each unit is a voucher row).
pub const MAX_UNITS_PER_REQUEST: i64 = 20_000;

/// Why an item was not issued. `retryable` says whether the same item may succeed later
/// unchanged (stock and limits can change; an unknown reward cannot appear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemFailure {
    RewardNotFound,
    RewardInactive,
    RewardNotYetValid,
    RewardExpired,
    OutOfStock,
    CustomerLimitExceeded,
    PeriodLimitExceeded,
    InvalidQuantity,
    IdempotencyKeyReused,
}

impl ItemFailure {
    pub fn code(self) -> &'static str {
        match self {
            ItemFailure::RewardNotFound => "REWARD_NOT_FOUND",
            ItemFailure::RewardInactive => "REWARD_INACTIVE",
            ItemFailure::RewardNotYetValid => "REWARD_NOT_YET_VALID",
            ItemFailure::RewardExpired => "REWARD_EXPIRED",
            ItemFailure::OutOfStock => "OUT_OF_STOCK",
            ItemFailure::CustomerLimitExceeded => "CUSTOMER_LIMIT_EXCEEDED",
            ItemFailure::PeriodLimitExceeded => "PERIOD_LIMIT_EXCEEDED",
            ItemFailure::InvalidQuantity => "INVALID_QUANTITY",
            ItemFailure::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ItemFailure::RewardNotFound => "No such reward in this organisation.",
            ItemFailure::RewardInactive => "The reward is not active.",
            ItemFailure::RewardNotYetValid => "The reward is not valid yet.",
            ItemFailure::RewardExpired => "The reward is no longer valid.",
            ItemFailure::OutOfStock => "Not enough stock left for this quantity.",
            ItemFailure::CustomerLimitExceeded => {
                "This quantity would take the customer past the reward's per-customer limit."
            }
            ItemFailure::PeriodLimitExceeded => {
                "This quantity would take the reward past what it may issue in this period."
            }
            ItemFailure::InvalidQuantity => "The quantity can never be issued for this reward.",
            ItemFailure::IdempotencyKeyReused => {
                "This requestId was used before for another customer, reward or quantity."
            }
        }
    }

    pub fn retryable(self) -> bool {
        match self {
            ItemFailure::RewardInactive
            | ItemFailure::RewardNotYetValid
            | ItemFailure::OutOfStock
            | ItemFailure::CustomerLimitExceeded
            | ItemFailure::PeriodLimitExceeded => true,
            ItemFailure::RewardNotFound
            | ItemFailure::RewardExpired
            | ItemFailure::InvalidQuantity
            | ItemFailure::IdempotencyKeyReused => false,
        }
    }
}

/// Whether a reward can be issued at all right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardStatus {
    Active,
    Paused,
}

impl RewardStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(RewardStatus::Active),
            "PAUSED" => Some(RewardStatus::Paused),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RewardStatus::Active => "ACTIVE",
            RewardStatus::Paused => "PAUSED",
        }
    }
}

/// A reward as the decision sees it, with the customer's current holding of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardState {
    pub status: RewardStatus,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    /// Units left to issue; `None` is unlimited.
    pub stock: Option<i64>,
    /// Units one customer may hold at once (or be issued within the current period, when the
    /// limit is per period); `None` is unlimited.
    pub per_customer_limit: Option<i64>,
    /// What counts against `per_customer_limit`: units the customer holds now, or was issued in
    /// the current period.
    pub held: i64,
    /// Units everyone together may be issued in the current period; `None` is unlimited.
    pub period_limit: Option<i64>,
    /// Units issued to everyone in the current period.
    pub period_issued: i64,
}

/// One item to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemAsk {
    pub reward_id: i64,
    pub quantity: i64,
}

/// Decides every item in order; a success takes its units from the shared state so later items
/// see what is left. Returns one decision per item, in the same order.
pub fn decide(
    items: &[ItemAsk],
    rewards: &HashMap<i64, RewardState>,
    now: DateTime<Utc>,
) -> Vec<Result<(), ItemFailure>> {
    let mut state = rewards.clone();
    items
        .iter()
        .map(|item| {
            let reward = state
                .get_mut(&item.reward_id)
                .ok_or(ItemFailure::RewardNotFound)?;
            if item.quantity < 1 || item.quantity > MAX_QUANTITY {
                return Err(ItemFailure::InvalidQuantity);
            }
            if reward.status != RewardStatus::Active {
                return Err(ItemFailure::RewardInactive);
            }
            if reward.valid_from.is_some_and(|from| now < from) {
                return Err(ItemFailure::RewardNotYetValid);
            }
            if reward.valid_until.is_some_and(|until| now >= until) {
                return Err(ItemFailure::RewardExpired);
            }
            // Even a quantity above the limit itself is CUSTOMER_LIMIT_EXCEEDED (retryable):
            // the limit may be raised.
            if let Some(limit) = reward.per_customer_limit
                && reward.held.saturating_add(item.quantity) > limit
            {
                return Err(ItemFailure::CustomerLimitExceeded);
            }
            if let Some(limit) = reward.period_limit
                && reward.period_issued.saturating_add(item.quantity) > limit
            {
                return Err(ItemFailure::PeriodLimitExceeded);
            }
            if let Some(stock) = reward.stock {
                if stock < item.quantity {
                    return Err(ItemFailure::OutOfStock);
                }
                reward.stock = Some(stock - item.quantity);
            }
            reward.held = reward.held.saturating_add(item.quantity);
            reward.period_issued = reward.period_issued.saturating_add(item.quantity);
            debug_assert!(reward.stock.is_none_or(|s| s >= 0));
            Ok(())
        })
        .collect()
}

/// Crockford's base32 alphabet: no I, L, O or U, so a code read aloud is not misheard.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A voucher code from 60 random bits: 12 Crockford base32 characters in three groups
/// (`K7QX-9M2D-PZ4A`). The caller supplies the bits from a CSPRNG.
pub fn voucher_code(random: u64) -> String {
    let mut out = String::with_capacity(14);
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = 55 - 5 * i;
        let index = ((random >> shift) & 0x1f) as usize;
        out.push(char::from(CROCKFORD[index]));
    }
    out
}

#[cfg(test)]
#[path = "issuance_tests.rs"]
mod tests;
