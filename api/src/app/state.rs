//! The state the use cases share, built once by `startup` and held by every handler and worker.

use std::sync::Arc;

use persistence::Db;

use crate::config::Settings;
use crate::engine::clock::Clock;

/// What every use case can reach: the database, the clock, the settings, the caches and the
/// group-commit queues.
pub struct AppState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// API keys, catalog and webhook subscriptions, trusted for `settings.cache_ttl`.
    pub caches: crate::engine::cache::Caches,
    /// Currency allocations waiting to be group-committed.
    pub allocations: crate::engine::group_commit::Queue<crate::app::allocate::AllocationRequest>,
    /// How often allocations were replays lately: whether a key is looked up before its batch.
    pub allocation_replays: crate::app::write::recent::RecentReplays,
    /// Currency redemptions waiting to be group-committed.
    pub redemptions: crate::engine::group_commit::Queue<crate::app::redeem::RedemptionRequest>,
    /// How often redemptions were replays lately.
    pub redemption_replays: crate::app::write::recent::RecentReplays,
    /// Reward issuance requests (single and bulk) waiting to be group-committed.
    pub issuances: crate::engine::group_commit::Queue<crate::app::issuance::IssueJob>,
    /// Idempotency-key look-ups (the replay path), answered a batch per query.
    pub key_lookups: crate::engine::group_commit::Queue<crate::app::write::KeyLookup>,
    /// Per-organisation rate limits of this instance; `None` when off.
    pub rate_limiter: Option<crate::engine::rate_limit::Limiter>,
    /// Failed authentications per client address on this instance; `None` when unlimited.
    pub auth_failures: Option<crate::engine::rate_limit::FailureLimit>,
    /// How many requests that a batch could not decide may run alone at once (half the
    /// pool): they wait here rather than for a connection.
    pub alone_runs: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Keys created before this instant are forgotten (see `IDEMPOTENCY_RETENTION`).
    pub fn forget_before(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let retention = chrono::Duration::from_std(self.settings.idempotency_retention?).ok()?;
        self.now().checked_sub_signed(retention)
    }
}
