//! An allocation as the API answers it.

use persistence::allocations::AllocationRow;
use persistence::ledger;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::currency::Balance;
use crate::engine::format::{amount, to_json, ts};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Allocation, example = json!({
    "allocationId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c01", "uniqueId": "order-1001",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "programId": 1,
    "awardStrategyId": 1, "expiryStrategyId": 1, "currency": "POINTS", "amount": "100.00",
    "sourceValue": "1000", "expiresAt": "2027-01-01T00:00:00Z", "eventName": null,
    "eventSourceId": null, "ledgerEntryId": "1", "createdAt": "2026-01-01T00:00:00Z",
    "reversedAt": null, "status": "ACTIVE", "maturesAt": null, "activatedAt": null,
    "reversedAmount": "0.00", "capped": false, "uncappedAmount": null,
    "balance": {"available": "100.00", "pending": "0.00", "held": "0.00"}
}))]
pub struct AllocationView {
    pub allocation_id: String,
    pub unique_id: String,
    pub customer_id: String,
    pub program_id: i64,
    pub award_strategy_id: i64,
    pub expiry_strategy_id: i64,
    pub currency: String,
    /// What was awarded, a decimal string at the currency's scale.
    pub amount: String,
    pub source_value: String,
    /// When the points expire; null for NEVER, and while the allocation is pending (its
    /// points' life starts when they become available).
    pub expires_at: Option<String>,
    pub event_name: Option<String>,
    pub event_source_id: Option<String>,
    /// The ledger entry of the credit; null while pending.
    pub ledger_entry_id: Option<String>,
    pub created_at: String,
    /// When the allocation was reversed in full.
    pub reversed_at: Option<String>,
    /// PENDING (promised, not yet spendable), ACTIVE, or CANCELLED (reversed while pending).
    #[schema(pattern = "^(PENDING|ACTIVE|CANCELLED)$")]
    pub status: String,
    pub matures_at: Option<String>,
    /// When a pending allocation became available.
    pub activated_at: Option<String>,
    /// What reversals have taken back of `amount` so far.
    pub reversed_amount: String,
    /// Whether an earn cap of the award strategy lowered the award (`amount` is then what the
    /// cap left, possibly "0").
    pub capped: bool,
    /// What the award would have been without the caps; null when not capped.
    pub uncapped_amount: Option<String>,
    pub balance: Balance,
}

/// The allocation as the API shows it, with the balance to show with it.
pub fn allocation_json(a: &AllocationRow, balance: ledger::Totals) -> Value {
    to_json(&allocation_view(a, balance))
}

/// [`allocation_json`] as JSON text.
pub fn allocation_text(a: &AllocationRow, balance: ledger::Totals) -> String {
    crate::engine::format::to_text(&allocation_view(a, balance))
}

/// The allocation as the API shows it, with the balance to show with it, as a view.
pub fn allocation_view(a: &AllocationRow, balance: ledger::Totals) -> AllocationView {
    AllocationView {
        allocation_id: a.id.to_string(),
        unique_id: a.unique_id.clone(),
        customer_id: a.customer_id.to_string(),
        program_id: a.program_id,
        award_strategy_id: a.award_strategy_id,
        expiry_strategy_id: a.expiry_strategy_id,
        currency: a.currency.clone(),
        amount: amount(a.amount, a.scale),
        source_value: a.source_value.clone(),
        expires_at: a.expires_at.map(ts),
        event_name: a.event_name.clone(),
        event_source_id: a.event_source_id.clone(),
        ledger_entry_id: (a.ledger_entry_id != super::PENDING_ENTRY)
            .then(|| a.ledger_entry_id.to_string()),
        created_at: ts(a.created_at),
        reversed_at: a.reversed_at.map(ts),
        status: a.status.clone(),
        matures_at: a.matures_at.map(ts),
        activated_at: a.activated_at.map(ts),
        reversed_amount: amount(a.reversed_amount, a.scale),
        capped: a.capped,
        uncapped_amount: a.uncapped_amount.map(|u| amount(u, a.scale)),
        balance: Balance::of(balance, a.scale),
    }
}
