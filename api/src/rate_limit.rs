//! Per-organisation rate limits on one instance: a keyed GCRA limiter from `governor`, one
//! bucket per organisation, so one organisation's flood spends only its own bucket.
//!
//! `LOYALTY_RATE_LIMIT_PER_SECOND` requests per second per organisation, with bursts of twice
//! that; 0 (the default) turns it off. Every authenticated answer carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset`; a request past the limit is 429 `RATE_LIMITED`
//! with `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

/// Where an organisation stands after a request: what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// The burst: requests an idle organisation may send at once.
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again (`RateLimit-Reset`), or, when refused, until the
    /// next request may pass (`Retry-After`).
    pub reset_secs: u64,
}

pub struct Limiter {
    limiter: RateLimiter<i64, HashMapStateStore<i64>, DefaultClock, StateInformationMiddleware>,
    clock: DefaultClock,
    rate: u32,
    burst: u32,
}

impl Limiter {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
        let clock = DefaultClock::default();
        let limiter: RateLimiter<i64, HashMapStateStore<i64>, DefaultClock> = RateLimiter::new(
            Quota::per_second(rate).allow_burst(burst),
            HashMapStateStore::default(),
            clock.clone(),
        );
        let limiter = limiter.with_middleware::<StateInformationMiddleware>();
        Some(Self {
            limiter,
            clock,
            rate: rate.get(),
            burst: burst.get(),
        })
    }

    /// Counts one request of `org_id`: `Ok` with its state when it may pass, `Err` with how
    /// long to wait when it may not.
    pub fn check(&self, org_id: i64) -> Result<RateState, RateState> {
        match self.limiter.check_key(&org_id) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = u64::from(self.burst.saturating_sub(remaining));
                Ok(RateState {
                    limit: self.burst,
                    remaining,
                    reset_secs: missing.div_ceil(u64::from(self.rate)),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(RateState {
                    limit: self.burst,
                    remaining: 0,
                    reset_secs: whole_seconds(wait),
                })
            }
        }
    }

    /// Forgets organisations whose buckets are full again (bounds the memory kept).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

/// A wait in whole seconds, rounded up, at least 1 (a `Retry-After` of 0 invites a flood).
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Writes the `RateLimit-*` headers of `state` on an answer.
pub fn headers(headers: &mut actix_web::http::header::HeaderMap, state: RateState) {
    use actix_web::http::header::{HeaderName, HeaderValue};
    for (name, value) in [
        ("ratelimit-limit", u64::from(state.limit)),
        ("ratelimit-remaining", u64::from(state.remaining)),
        ("ratelimit-reset", state.reset_secs),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

#[cfg(test)]
#[path = "rate_limit_tests.rs"]
mod tests;
