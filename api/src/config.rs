//! Settings of a running service. Every one has a flag and an environment variable (see `cli`).

use std::time::Duration;

/// The embedded default: a SQLite file in the working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://loyalty.db?mode=rwc";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub bind: String,
    /// Apply pending migrations at start.
    pub migrate: bool,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// How long a request waits for a concurrent request holding the same idempotency key
    /// before answering 409.
    pub idempotency_wait: Duration,
    /// Database connections in the pool (PostgreSQL; SQLite always uses one).
    pub db_max_connections: u32,
    /// How long a group-commit batch of allocations or redemptions waits for a row lock
    /// before its requests run alone, each with the full `idempotency_wait` (PostgreSQL).
    pub batch_lock_wait: Duration,
    /// The longest a group-commit batch may take before it is abandoned and its requests are
    /// answered 503 (outcome unknown). Never less than twice `idempotency_wait` (an issuance
    /// batch waits that long for a key held elsewhere).
    pub write_deadline: Duration,
    /// The longest one statement may run (PostgreSQL's `statement_timeout`; a statement on
    /// the pool outside a transaction is also given up by the service a second after it).
    /// Zero: no bound.
    pub db_statement_timeout: Duration,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// The most items one bulk issuance may carry.
    pub bulk_max_items: usize,
    /// Idempotency keys older than this are forgotten (`None`: kept forever).
    pub idempotency_retention: Option<Duration>,
    /// How often the background workers (expiry, retention purge) run; `None` runs none (tests
    /// drive them by hand).
    pub worker_interval: Option<Duration>,
    /// How long a request waits for a database connection before answering 503.
    pub db_acquire_timeout: Duration,
    /// Webhook delivery: private addresses, retry schedule, timeout.
    pub webhooks: crate::engine::webhooks::WebhookSettings,
    /// How often due webhook events are delivered; `None` delivers none (tests drive it).
    pub webhook_interval: Option<Duration>,
    /// The most concurrent writes committed together in one transaction (group commit); 0 or 1
    /// commits each alone.
    pub group_commit_max: usize,
    /// How many allocation batches, and how many redemption batches, may be with the database
    /// at once (one writes its statements while another waits for its commit). Issuance keeps
    /// one writer: its bulk requests lock whole rows of rewards.
    pub group_commit_writers: usize,
    /// How many of a writer's batches may be in flight (holding their locks, writing and
    /// committing) while its next batch runs its statements on another connection; 0 runs one
    /// batch at a time.
    pub group_commit_overlap: usize,
    /// How long read-mostly data (API keys, catalog, webhook subscriptions) is trusted in
    /// memory; zero caches nothing.
    pub cache_ttl: Duration,
    /// How many days before a lot expires the worker writes its `currency.expiring` notice;
    /// 0 writes none.
    pub expiry_notice_days: u32,
    /// Requests per second each organisation may send to this instance (bursts of twice that);
    /// 0: no limit.
    pub rate_limit_per_second: u32,
    /// Failed authentications each client address may make per minute on this instance before
    /// its requests that need a key look-up are refused with 429; 0: no limit.
    pub auth_failures_per_minute: u32,
    /// Take the client's address from the last `X-Forwarded-For` entry (behind a proxy that
    /// sets it) instead of the connection's peer.
    pub trust_forwarded_for: bool,
}

impl Settings {
    /// How long a group-commit batch may take (see `write_deadline`).
    pub fn batch_deadline(&self) -> Duration {
        self.write_deadline
            .max(self.idempotency_wait.saturating_mul(2))
    }

    pub fn new(database_url: impl Into<String>, bind: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            bind: bind.into(),
            migrate: true,
            max_body_bytes: 1024 * 1024,
            idempotency_wait: Duration::from_secs(5),
            db_max_connections: 16,
            batch_lock_wait: Duration::from_millis(200),
            write_deadline: Duration::from_secs(10),
            db_statement_timeout: Duration::from_secs(30),
            workers: 0,
            bulk_max_items: 1000,
            idempotency_retention: None,
            worker_interval: Some(Duration::from_secs(60)),
            db_acquire_timeout: Duration::from_secs(5),
            webhooks: crate::engine::webhooks::WebhookSettings::default(),
            webhook_interval: Some(Duration::from_secs(1)),
            group_commit_max: 64,
            group_commit_writers: 1,
            group_commit_overlap: 1,
            cache_ttl: Duration::from_secs(1),
            expiry_notice_days: 7,
            rate_limit_per_second: 0,
            auth_failures_per_minute: 60,
            trust_forwarded_for: false,
        }
    }
}
