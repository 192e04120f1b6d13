//! The loyalty HTTP service.
//!
//! Layout:
//! - [`cli`]: the `loyalty` binary's commands (`serve`, `migrate`, `orgs create`, `demo`).
//! - [`startup`]: [`startup::Application`], built the same way by `serve` and by the tests.
//! - [`auth`]: authentication of every request that needs a key, before anything else.
//! - [`extract`]: request extractors: the tenant the key named, JSON bodies with limits and
//!   precise errors, the `Idempotency-Key` header.
//! - [`idempotent`]: the one mechanism every write goes through to be exactly-once.
//! - [`routes`]: one module per resource.
//! - [`error`]: problem+json answers.

pub mod activation;
pub mod allocate;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dto;
pub mod error;
pub mod export;
pub mod extract;
pub mod group_commit;
pub mod idempotent;
pub mod issuance;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod redeem;
pub mod routes;
pub mod settle;
pub mod startup;
pub mod telemetry;
pub mod webhook_rounds;
pub mod webhooks;
pub mod workers;
