//! How values are written in answers, stored outcomes and event payloads: timestamps, amounts
//! at their currency's scale, typed bodies as JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

/// RFC 3339 in UTC, fractional seconds only when there are some.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An amount in minor units, shown at the currency's scale (`"100.00"`).
pub fn amount(minor: i64, scale: i16) -> String {
    // Scales are 0 to 6 by construction; try_new keeps a corrupt row from panicking.
    u32::try_from(scale)
        .ok()
        .and_then(|s| Decimal::try_new(minor, s).ok())
        .map_or_else(|| minor.to_string(), |d| d.to_string())
}

/// A typed body as JSON (the form idempotency records and webhook payloads keep).
pub fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| {
        // Only maps with non-string keys fail, and no body has one.
        tracing::error!(error = %e, "a body could not be written as JSON");
        Value::Null
    })
}

/// A typed body as JSON text: an answer that is stored, sent and put in an event as it is,
/// serialised once (see `app::write::Outcome::CreatedText`).
pub fn to_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        // Only maps with non-string keys fail, and no body has one.
        tracing::error!(error = %e, "a body could not be written as JSON");
        "null".to_owned()
    })
}
