//! Reversals of allocations: all that is left of one, once (the allocation is the key), or a
//! part of it (a return of part of a purchase), once per part's key. A pending allocation is
//! cancelled or lowered instead: its points never become available. What a reversal takes back
//! it gives back to the earn caps the allocation counted in.

use domain::Decimal;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::allocations::{self, AllocationRow};
use persistence::ledger;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::allocate::{account_of, allocation_key, cap_windows};
use crate::app::currency::{Balance, insufficient, to_minor};
use crate::app::settle::settle;
use crate::app::write::{Effect, Outcome, execute};
use crate::app::{AppError, AppState};
use crate::engine::format::{amount, to_json, ts};
use crate::engine::webhooks::event;

/// A reversal as the edge parsed it.
#[derive(Debug)]
pub struct ReversalRequest {
    pub org_id: i64,
    /// The allocation's `uniqueId`, as the path names it.
    pub allocation: String,
    /// The part's own key (`reversalId`, else the request's idempotency key), if any.
    pub part_key: Option<IdempotencyKey>,
    /// The part to take back (more than zero); `None` for all that is left.
    pub amount: Option<Decimal>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Reversal, example = json!({
    "reversalId": "12", "uniqueId": "order-1001",
    "allocationId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c01",
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "programId": 1, "currency": "POINTS",
    "amount": "100.00", "expiredAmount": "0.00", "reversedAmount": "100.00",
    "allocationStatus": "ACTIVE", "reason": "returned",
    "createdAt": "2026-01-02T00:00:00Z", "balance": {"available": "0.00", "pending": "0.00", "held": "0.00"}
}))]
pub struct ReversalView {
    /// The ledger entry of the reversal.
    pub reversal_id: String,
    pub unique_id: String,
    pub allocation_id: String,
    pub customer_id: String,
    pub program_id: i64,
    pub currency: String,
    /// What was taken back.
    pub amount: String,
    /// What of the allocation had expired already, so was not taken again.
    pub expired_amount: String,
    /// What reversals have taken back of the allocation so far, this one included.
    pub reversed_amount: String,
    /// The allocation's status after the reversal (a pending one is CANCELLED when nothing of
    /// it is left).
    #[schema(pattern = "^(PENDING|ACTIVE|CANCELLED)$")]
    pub allocation_status: String,
    pub reason: Option<String>,
    pub created_at: String,
    pub balance: Balance,
}

/// Reverses an allocation (see the module's documentation). Returns the outcome with the key
/// its answer names: the one the client knows, the allocation's `uniqueId` or the part's key.
pub async fn reverse(
    state: &AppState,
    r: ReversalRequest,
) -> Result<(Outcome, IdempotencyKey), AppError> {
    let (org_id, part_key) = (r.org_id, r.part_key.clone());
    if r.amount.is_some() && part_key.is_none() {
        return Err(AppError::validation(
            "reversalId",
            "is required with an amount (or send an Idempotency-Key header)",
        ));
    }
    let unique = allocation_key(&r.allocation)?;
    // The allocation itself is the key (not its uniqueId, which a retention may let a later
    // allocation reuse): reversing it in full twice replays the first reversal; a part is keyed
    // by the allocation and the part's own key.
    let allocation = allocations::get_by_unique_id(state.db.conn(), org_id, unique.as_str())
        .await?
        .ok_or_else(|| AppError::not_found("allocation"))?;
    let part = match r.amount {
        None => None,
        Some(value) => Some((value, to_minor(allocation.scale, "amount", value)?)),
    };
    let key = match (&part, &part_key) {
        (Some(_), Some(k)) => part_reversal_key(allocation.id, k)?,
        _ => IdempotencyKey::parse(&allocation.id.to_string())
            .map_err(|e| AppError::Internal(e.message))?,
    };
    let meaning = RequestMeaning::new()
        .with("allocationId", Some(allocation.id))
        .with("amount", part.map(|(v, _)| v));
    let now = state.now();
    let outcome = execute(
        state,
        org_id,
        Operation::CurrencyReversal,
        Some(&key),
        &meaning,
        async |tx| {
            let account = account_of(&allocation);
            if !settle(state, tx, &account, now).await? {
                return Err(insufficient());
            }
            // Read again under the balance lock: an activation or another reversal may have
            // changed it.
            let current = allocations::get(tx, org_id, allocation.id)
                .await?
                .ok_or_else(|| AppError::not_found("allocation"))?;
            if current.reversed_at.is_some() && part.is_none() {
                return Err(AppError::Unprocessable {
                    code: "ALREADY_REVERSED",
                    detail: "The allocation was reversed before.".into(),
                    retryable: false,
                });
            }
            // What already expired of the allocation's lot left the balance then: it is never
            // taken twice.
            let expired = if current.is_pending() || current.status == "CANCELLED" {
                0
            } else {
                ledger::expired_from_lot(tx, &account, current.ledger_entry_id).await?
            };
            let left = (current.amount - current.reversed_amount - expired).max(0);
            let to_take = match part {
                Some((_, minor)) if minor > left => {
                    return Err(AppError::Unprocessable {
                        code: "REVERSAL_EXCEEDS_ALLOCATION",
                        detail: format!(
                            "Only {} of the allocation is left to reverse.",
                            amount(left, current.scale)
                        ),
                        retryable: false,
                    });
                }
                Some((_, minor)) => minor,
                None => left,
            };
            let reference = format!("reversal:{}", current.unique_id);
            let (entry_id, after) = if current.is_pending() {
                // Nothing was credited yet: lower what is promised.
                let by = ledger::Totals {
                    pending: -to_take,
                    ..Default::default()
                };
                let after = ledger::move_balance(tx, &account, by, now)
                    .await?
                    .ok_or_else(|| AppError::Internal("pending below an allocation".into()))?;
                (None, after)
            } else if to_take == 0 {
                (None, ledger::totals(tx, &account).await?)
            } else {
                let ledger::Debited { entry, after, .. } = ledger::debit(
                    tx,
                    &account,
                    ledger::EntryKind::Reversal,
                    to_take,
                    Some(current.ledger_entry_id),
                    Some(&reference),
                    now,
                )
                .await?
                .ok_or_else(insufficient)?;
                (Some(entry.id), after)
            };
            // In full, the whole allocation counts as reversed (what expired included).
            let counted = if part.is_some() {
                to_take
            } else {
                current.amount - current.reversed_amount
            };
            if !allocations::add_reversed(tx, org_id, current.id, counted, part.is_none()).await? {
                return Err(AppError::Internal(
                    "allocation reversed concurrently".into(),
                ));
            }
            if part.is_none()
                && !allocations::mark_reversed(tx, org_id, current.id, entry_id, now).await?
            {
                return Err(AppError::Internal(
                    "allocation reversed concurrently".into(),
                ));
            }
            give_cap_room_back(state, tx, &current, counted).await?;
            let reversal_id = entry_id.map_or_else(|| key.to_string(), |id| id.to_string());
            let body = to_json(&ReversalView {
                reversal_id: reversal_id.clone(),
                unique_id: current.unique_id.clone(),
                allocation_id: current.id.to_string(),
                customer_id: current.customer_id.to_string(),
                program_id: current.program_id,
                currency: current.currency.clone(),
                amount: amount(to_take, current.scale),
                expired_amount: amount(expired, current.scale),
                reversed_amount: amount(current.reversed_amount + counted, current.scale),
                allocation_status: if current.is_pending()
                    && (part.is_none() || current.reversed_amount + counted == current.amount)
                {
                    "CANCELLED".into()
                } else {
                    current.status.clone()
                },
                reason: r.reason.clone(),
                created_at: ts(now),
                balance: Balance::of(after, current.scale),
            });
            let events = vec![event("currency.reversed", body.clone(), now)];
            crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, reversal_id))
        },
    )
    .await?;
    let shown = match (part, part_key) {
        (Some(_), Some(part_key)) => part_key,
        _ => unique,
    };
    Ok((outcome, shown))
}

/// A reversal gives the earn caps back what it took of the allocation, in the periods the
/// allocation was counted in. The caller holds the account's balance lock.
async fn give_cap_room_back(
    state: &AppState,
    tx: &persistence::Tx,
    a: &AllocationRow,
    amount: i64,
) -> Result<(), AppError> {
    let Some(strategy) = state
        .caches
        .award_strategy(tx, a.org_id, a.award_strategy_id)
        .await?
        .filter(|s| s.caps.is_some())
    else {
        return Ok(());
    };
    let windows = cap_windows(&strategy, a.scale, a.created_at)?;
    let scope = persistence::earn_caps::CapScope {
        org_id: a.org_id,
        award_strategy_id: a.award_strategy_id,
        customer_id: a.customer_id,
    };
    persistence::earn_caps::give_back(tx, scope, &windows, amount).await?;
    Ok(())
}

/// The stored key of a partial reversal: the allocation and the client's key. A client key may
/// be 255 characters, and so may a stored one, so a key that does not fit beside the
/// allocation's id is stored as its SHA-256 instead (the same client key, the same stored key).
fn part_reversal_key(
    allocation: Uuid,
    client: &IdempotencyKey,
) -> Result<IdempotencyKey, AppError> {
    let plain = format!("{allocation}:{client}");
    let scoped = if plain.chars().count() <= IdempotencyKey::MAX_CHARS {
        plain
    } else {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(client.as_str().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{allocation}:sha256:{hex}")
    };
    IdempotencyKey::parse(&scoped).map_err(|e| AppError::Internal(e.message))
}
