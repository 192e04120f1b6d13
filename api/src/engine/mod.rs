//! The machinery the use cases call, which knows no use case: group-commit queues and their
//! writers, caches, the clock, metrics, rate limits and webhook delivery.

pub mod cache;
pub mod clock;
pub mod format;
pub mod group_commit;
pub mod metrics;
pub mod rate_limit;
pub mod rounds;
pub mod webhook_rounds;
pub mod webhooks;
