//! Transfers of points from one customer to another, exactly once per key.
//!
//! The sender's lots that expire first are spent, and the recipient receives lots with the same
//! expiry dates: a transfer never extends the life of points. Both balances are locked in one
//! order (by customer id, the order every batch locks accounts in), so transfers A→B and B→A
//! at the same time wait for each other instead of deadlocking.

use domain::Decimal;
use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation};
use persistence::customers;
use persistence::ledger::{self, Totals};
use persistence::transfers::{self, NewTransfer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::currency::{Balance, in_minor_units, insufficient, spend_meaning};
use crate::app::settle::settle;
use crate::app::write::{Effect, Outcome, execute};
use crate::app::{AppError, AppState};
use crate::engine::format::{amount, to_json, ts};
use crate::engine::webhooks::event;

/// A transfer as the edge parsed it (the amount and currency checked by
/// [`spend_fields`](crate::app::currency::spend_fields)).
#[derive(Debug)]
pub struct TransferRequest {
    pub org_id: i64,
    pub key: IdempotencyKey,
    /// The sender, who must exist.
    pub from: CustomerRef,
    /// The recipient, enrolled on the fly unless named by customer id.
    pub to: CustomerRef,
    pub program_id: i64,
    pub currency: String,
    pub amount: Decimal,
    pub reason: Option<String>,
}

/// One side of a transfer, with its balance after it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferSide {
    pub customer_id: String,
    pub balance: Balance,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Transfer, example = json!({
    "transferId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c07", "uniqueId": "gift-9", "programId": 1,
    "currency": "POINTS", "amount": "25.00",
    "from": {"customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02",
             "balance": {"available": "75.00", "pending": "0.00", "held": "0.00"}},
    "to": {"customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c08",
           "balance": {"available": "25.00", "pending": "0.00", "held": "0.00"}},
    "reason": null, "createdAt": "2026-01-02T00:00:00Z"
}))]
pub struct TransferView {
    pub transfer_id: String,
    pub unique_id: String,
    pub program_id: i64,
    pub currency: String,
    pub amount: String,
    pub from: TransferSide,
    pub to: TransferSide,
    pub reason: Option<String>,
    pub created_at: String,
}

/// The two sides as named: a customer never transfers to themselves (400, checked before the
/// amount).
pub fn distinct(from: &CustomerRef, to: &CustomerRef) -> Result<(), AppError> {
    if from == to {
        return Err(AppError::validation("to", "is the sender"));
    }
    Ok(())
}

/// Transfers points, exactly once per key (see the module's documentation).
pub async fn transfer(state: &AppState, r: TransferRequest) -> Result<Outcome, AppError> {
    let TransferRequest {
        org_id,
        key,
        from,
        to,
        program_id,
        currency,
        amount: requested,
        reason,
    } = r;
    let meaning = spend_meaning(program_id, &currency, requested)
        .with("from", Some(&from))
        .with("to", Some(&to));
    let now = state.now();
    execute(
        state,
        org_id,
        Operation::CurrencyTransfer,
        Some(&key),
        &meaning,
        async |tx| {
            let (scale, minor) = in_minor_units(
                state, tx, org_id, program_id, &currency, requested, "amount",
            )
            .await??;
            let sender = customers::find(tx, org_id, &from)
                .await?
                .ok_or_else(|| AppError::not_found("customer (from)"))?;
            let account = |customer_id: Uuid| {
                crate::app::currency::account(org_id, customer_id, program_id, &currency)
            };
            let out = account(sender.id);
            // The lock order every path takes: existing balances (in customer order), then
            // customers enrolled, then their new balances. An allocation batch that credits
            // the sender and enrols the same new recipient takes them in this order too.
            let recipient = match customers::find(tx, org_id, &to).await? {
                Some(recipient) => {
                    if sender.id == recipient.id {
                        return Err(AppError::validation("to", "is the sender"));
                    }
                    let into = account(recipient.id);
                    let mut order = [&out, &into];
                    order.sort_by_key(|a| a.customer_id);
                    for a in order {
                        if a.customer_id == sender.id {
                            if !settle(state, tx, a, now).await? {
                                return Err(insufficient());
                            }
                        } else {
                            // Creates the row if new; either way it is locked until the
                            // commit. The recipient only receives, so its due lots are left
                            // to the worker.
                            ledger::upsert_balance(tx, a, 0, 0, now).await?;
                        }
                    }
                    recipient
                }
                // A customer named by id is never enrolled: unknown, whatever the sender has.
                None if matches!(to, CustomerRef::CustomerId(_)) => {
                    return Err(AppError::not_found("customer (to)"));
                }
                None => {
                    if !settle(state, tx, &out, now).await? {
                        return Err(insufficient());
                    }
                    let recipient = customers::find_or_enroll(tx, org_id, &to, now)
                        .await?
                        .ok_or_else(|| AppError::not_found("customer (to)"))?
                        .row;
                    // Enrolled meanwhile by another transaction with a lower id: its balance
                    // is then taken after the sender's, out of customer order. Two paths can
                    // only meet that way through a customer enrolled in between; PostgreSQL
                    // breaks such a deadlock, and the request answers 503, safe to retry.
                    ledger::upsert_balance(tx, &account(recipient.id), 0, 0, now).await?;
                    recipient
                }
            };
            let into = account(recipient.id);
            let reference = format!("transfer:{key}");
            let debited = ledger::debit(
                tx,
                &out,
                ledger::EntryKind::TransferOut,
                minor,
                None,
                Some(&reference),
                now,
            )
            .await?
            .ok_or_else(insufficient)?;
            // The recipient gets one lot per expiry date the sender's points had.
            let mut dated: Vec<(Option<chrono::DateTime<chrono::Utc>>, i64)> = Vec::new();
            for lot in &debited.lots {
                match dated.iter_mut().find(|(at, _)| *at == lot.expires_at) {
                    Some((_, sum)) => *sum += lot.take,
                    None => dated.push((lot.expires_at, lot.take)),
                }
            }
            let mut received = Totals::default();
            for (expires_at, sum) in dated {
                let (_, after) = ledger::credit(
                    tx,
                    &into,
                    ledger::EntryKind::TransferIn,
                    sum,
                    expires_at,
                    Some(&reference),
                    now,
                )
                .await?;
                received = after;
            }
            let new = NewTransfer {
                id: Uuid::now_v7(),
                org_id,
                unique_id: key.to_string(),
                from_customer_id: sender.id,
                to_customer_id: recipient.id,
                program_id,
                currency: currency.clone(),
                amount: minor,
                reason: reason.clone(),
            };
            transfers::insert(tx, &new, now).await?;
            let body = to_json(&TransferView {
                transfer_id: new.id.to_string(),
                unique_id: new.unique_id.clone(),
                program_id,
                currency: currency.clone(),
                amount: amount(minor, scale),
                from: TransferSide {
                    customer_id: sender.id.to_string(),
                    balance: Balance::of(debited.after, scale),
                },
                to: TransferSide {
                    customer_id: recipient.id.to_string(),
                    balance: Balance::of(received, scale),
                },
                reason: reason.clone(),
                created_at: ts(now),
            });
            let events = vec![event("currency.transferred", body.clone(), now)];
            crate::engine::webhooks::emit(&state.caches, tx, org_id, events, now).await?;
            Ok(Effect::created(body, new.id))
        },
    )
    .await
}
