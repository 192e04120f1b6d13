//! The language of the loyalty business.
//!
//! Every value that crosses the HTTP edge is parsed once into a type that can only hold a valid
//! value (`Mobile`, `IdempotencyKey`, `Scale` …); everything past the edge works with those types.
//! This crate is pure: no I/O, no async, no database and no web framework, so every rule in it is
//! tested with plain unit tests.
//!
//! - [`money`]: decimals parsed strictly, scales, minor units, rounding.
//! - [`customer`]: customer identifiers and their normalisation.
//! - [`award`] / [`expiry`]: how much a customer gets and until when.
//! - [`idempotency`]: keys, operations and the request fingerprint.
//! - [`period`]: calendar periods in UTC and the earn caps counted within them.

pub mod award;
pub mod catalog;
pub mod customer;
pub mod expiry;
pub mod idempotency;
pub mod issuance;
pub mod money;
pub mod period;

pub use chrono;
pub use rust_decimal::Decimal;

/// A value that failed to parse; `field` is filled in by the caller that knows where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// What is wrong, in words a client developer can act on.
    pub message: String,
}

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
