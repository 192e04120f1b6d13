//! Idempotency keys, the operations they are scoped to, and the request fingerprint.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::Invalid;

/// A client-chosen idempotency key: 1 to 255 printable characters (no control characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let count = raw.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(Invalid::new("must be 1 to 255 characters"));
        }
        if raw.chars().any(char::is_control) || raw.trim().is_empty() {
            return Err(Invalid::new("must consist of printable characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of operation a key belongs to. A key is unique per organisation *and* operation,
/// so the same string used for two operations names two different keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    RewardIssuance,
    IssuanceCancellation,
    CurrencyAllocation,
    CurrencyRedemption,
    CurrencyReversal,
    ProgramCreate,
    AwardStrategyCreate,
    ExpiryStrategyCreate,
    RewardCreate,
    RewardUpdate,
    WebhookEndpointCreate,
    CustomerCreate,
    WebhookEventRetry,
    CurrencyHold,
    HoldCapture,
    HoldVoid,
    CurrencyTransfer,
    AllocationActivation,
    WebhookEndpointUpdate,
    WebhookEndpointDelete,
    ApiKeyCreate,
    ApiKeyRevoke,
    CustomerErase,
}

impl Operation {
    pub const ALL: [Operation; 23] = [
        Operation::RewardIssuance,
        Operation::IssuanceCancellation,
        Operation::CurrencyAllocation,
        Operation::CurrencyRedemption,
        Operation::CurrencyReversal,
        Operation::ProgramCreate,
        Operation::AwardStrategyCreate,
        Operation::ExpiryStrategyCreate,
        Operation::RewardCreate,
        Operation::RewardUpdate,
        Operation::WebhookEndpointCreate,
        Operation::CustomerCreate,
        Operation::WebhookEventRetry,
        Operation::CurrencyHold,
        Operation::HoldCapture,
        Operation::HoldVoid,
        Operation::CurrencyTransfer,
        Operation::AllocationActivation,
        Operation::WebhookEndpointUpdate,
        Operation::WebhookEndpointDelete,
        Operation::ApiKeyCreate,
        Operation::ApiKeyRevoke,
        Operation::CustomerErase,
    ];

    /// The name used in the database and in `/v1/idempotency-keys/{operation}/{key}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::RewardIssuance => "reward-issuance",
            Operation::IssuanceCancellation => "issuance-cancellation",
            Operation::CurrencyAllocation => "currency-allocation",
            Operation::CurrencyRedemption => "currency-redemption",
            Operation::CurrencyReversal => "currency-reversal",
            Operation::ProgramCreate => "program-create",
            Operation::AwardStrategyCreate => "award-strategy-create",
            Operation::ExpiryStrategyCreate => "expiry-strategy-create",
            Operation::RewardCreate => "reward-create",
            Operation::RewardUpdate => "reward-update",
            Operation::WebhookEndpointCreate => "webhook-endpoint-create",
            Operation::CustomerCreate => "customer-create",
            Operation::WebhookEventRetry => "webhook-event-retry",
            Operation::CurrencyHold => "currency-hold",
            Operation::HoldCapture => "hold-capture",
            Operation::HoldVoid => "hold-void",
            Operation::CurrencyTransfer => "currency-transfer",
            Operation::AllocationActivation => "allocation-activation",
            Operation::WebhookEndpointUpdate => "webhook-endpoint-update",
            Operation::WebhookEndpointDelete => "webhook-endpoint-delete",
            Operation::ApiKeyCreate => "api-key-create",
            Operation::ApiKeyRevoke => "api-key-revoke",
            Operation::CustomerErase => "customer-erase",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == raw)
    }
}

/// What a request *means*, as named canonical fields (`sourceValue` → `"1000"`).
///
/// Two requests with one key are the same request when their meanings are equal: key order,
/// white space and `1000` vs `"1000.00"` do not matter because every value is canonical
/// before it is put here. The fields are kept (not only their hash) so that a mismatch can name
/// the fields that differ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeaning(BTreeMap<String, String>);

impl RequestMeaning {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field; `None` is recorded as absent, which differs from any present value.
    pub fn with(mut self, field: &str, value: Option<impl ToString>) -> Self {
        if let Some(v) = value {
            self.0.insert(field.to_owned(), v.to_string());
        }
        self
    }

    pub fn fields(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn from_fields(fields: BTreeMap<String, String>) -> Self {
        Self(fields)
    }

    /// SHA-256 of the operation and the canonical fields, hex-encoded.
    pub fn fingerprint(&self, operation: Operation) -> String {
        let mut hasher = Sha256::new();
        hasher.update(operation.as_str().as_bytes());
        for (field, value) in &self.0 {
            // Length prefixes make the encoding unambiguous whatever the values contain.
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The fields whose values differ between two meanings, sorted.
    pub fn mismatched_fields(&self, other: &RequestMeaning) -> Vec<String> {
        let mut fields: Vec<String> = self
            .0
            .keys()
            .chain(other.0.keys())
            .filter(|k| self.0.get(*k) != other.0.get(*k))
            .cloned()
            .collect();
        fields.sort();
        fields.dedup();
        fields
    }
}

#[cfg(test)]
#[path = "idempotency_tests.rs"]
mod tests;
