//! The loyalty HTTP service. See docs/DESIGN.md for the map; in short, the arrows go one way:
//!
//! - [`cli`], [`startup`], [`workers`]: the binary. They wire the layers below together, serve
//!   HTTP and run the background loops.
//! - [`http`]: the edge. The route table, extractors, request and response bodies, problem+json,
//!   the OpenAPI document and the middleware. A handler parses, calls one use case, and shapes
//!   its answer.
//! - [`app`]: the use cases, and the one write pipeline every keyed write goes through
//!   ([`app::write`]). Knows nothing of HTTP.
//! - [`engine`]: the machinery the use cases call: group-commit queues, caches, the clock,
//!   metrics, webhook delivery.
//!
//! Below them, the `persistence` crate (SQL, taking the caller's transaction) and `domain`
//! (pure rules).

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod http;
pub mod startup;
pub mod telemetry;
pub mod workers;

#[cfg(test)]
mod layering_tests;
