//! Per-organisation rate limits on one instance: a keyed GCRA limiter from `governor`, one
//! bucket per organisation, so one organisation's flood spends only its own bucket.
//!
//! `LOYALTY_RATE_LIMIT_PER_SECOND` requests per second per organisation, with bursts of twice
//! that; 0 (the default) turns it off. Every authenticated answer carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset`; a request past the limit is 429 `RATE_LIMITED`
//! with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

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

/// Failed authentications per client address, counted in windows of a minute.
pub struct FailureLimit {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; when full, finished windows are dropped, then all.
const ADDRESSES: usize = 100_000;

impl FailureLimit {
    /// `None` when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Whole seconds (at least 1) until `address` may be looked up again, when it has failed
    /// `per_minute` times in its current window.
    pub fn blocked(&self, address: IpAddr) -> Option<u64> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let (start, failures) = windows.get(&address)?;
        let left = WINDOW.checked_sub(start.elapsed())?;
        (*failures >= self.per_minute)
            .then(|| (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1))
    }

    /// Counts one failed authentication of `address`.
    pub fn failed(&self, address: IpAddr) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if windows.len() >= ADDRESSES && !windows.contains_key(&address) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= ADDRESSES {
                windows.clear();
            }
        }
        let window = windows.entry(address).or_insert((now, 0));
        if now.duration_since(window.0) >= WINDOW {
            *window = (now, 0);
        }
        window.1 = window.1.saturating_add(1);
    }
}

#[cfg(test)]
#[path = "rate_limit_tests.rs"]
mod tests;
