//! A customer's data: everything held about them (export), and the erasure of their
//! identifiers from the customer row and from the stored records that concern them
//! ([`erasure`](crate::erasure)) while the ledger keeps balancing.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, JsonValue};
use serde_json::Map;
use uuid::Uuid;

use crate::erasure::{self, Identity};
use crate::{PersistenceError, for_update, stmt};

pub use crate::erasure::ERASED;

/// The scale of a row's currency, for rows with `org_id`, `program_id` and `currency`.
const SCALE: &str = "(SELECT pc.scale FROM program_currencies pc WHERE pc.org_id = t.org_id \
     AND pc.program_id = t.program_id AND pc.code = t.currency) AS scale";

/// Everything held about customer `customer_id` of `org_id`, section by section (amounts in
/// minor units, each row with its currency's `scale`); `None` when there is no such customer.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn export<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
) -> Result<Option<JsonValue>, PersistenceError> {
    let customer = JsonValue::find_by_statement(stmt(
        conn,
        "SELECT id AS customer_id, mobile, email, external_id, created_at, erased_at \
         FROM customers WHERE org_id = $1 AND id = $2",
        vec![org_id.into(), customer_id.into()],
    ))
    .one(conn)
    .await?;
    let Some(customer) = customer else {
        return Ok(None);
    };
    let sections: [(&str, String); 9] = [
        (
            "balances",
            format!(
                "SELECT program_id, currency, available, pending, held, updated_at, {SCALE} \
                 FROM balances t WHERE org_id = $1 AND customer_id = $2 ORDER BY program_id, currency"
            ),
        ),
        (
            "ledger",
            format!(
                "SELECT id AS entry_id, program_id, currency, kind, amount, balance_after, \
                 reference, remaining, held, expires_at, created_at, {SCALE} \
                 FROM ledger_entries t WHERE org_id = $1 AND customer_id = $2 ORDER BY id"
            ),
        ),
        (
            "allocations",
            format!(
                "SELECT id AS allocation_id, unique_id, program_id, currency, amount, \
                 source_value, award_strategy_id, expiry_strategy_id, event_name, \
                 event_source_id, status, expires_at, matures_at, activated_at, \
                 reversed_amount, reversed_at, capped, uncapped_amount, created_at, {SCALE} \
                 FROM allocations t WHERE org_id = $1 AND customer_id = $2 ORDER BY created_at, id"
            ),
        ),
        (
            "redemptions",
            format!(
                "SELECT id AS redemption_id, unique_id, program_id, currency, amount, reason, \
                 created_at, {SCALE} \
                 FROM redemptions t WHERE org_id = $1 AND customer_id = $2 ORDER BY created_at, id"
            ),
        ),
        (
            "holds",
            format!(
                "SELECT id AS hold_id, unique_id, program_id, currency, amount, held, \
                 captured_amount, released_amount, expired_amount, status, reason, expires_at, \
                 created_at, updated_at, {SCALE} \
                 FROM holds t WHERE org_id = $1 AND customer_id = $2 ORDER BY created_at, id"
            ),
        ),
        (
            "transfers",
            format!(
                "SELECT id AS transfer_id, unique_id, from_customer_id, to_customer_id, \
                 program_id, currency, amount, reason, created_at, {SCALE} \
                 FROM transfers t WHERE org_id = $1 AND (from_customer_id = $2 OR to_customer_id = $2) \
                 ORDER BY created_at, id"
            ),
        ),
        (
            "issuances",
            "SELECT id AS issuance_id, request_id, reward_id, quantity, brand, \
             transaction_number, status, created_at, cancelled_at \
             FROM issuances WHERE org_id = $1 AND customer_id = $2 ORDER BY seq"
                .to_owned(),
        ),
        (
            "vouchers",
            "SELECT v.issuance_id, v.code FROM vouchers v JOIN issuances i \
             ON i.org_id = v.org_id AND i.id = v.issuance_id \
             WHERE v.org_id = $1 AND i.customer_id = $2 ORDER BY v.id"
                .to_owned(),
        ),
        (
            "rewardHoldings",
            "SELECT reward_id, held FROM customer_reward_counts \
             WHERE org_id = $1 AND customer_id = $2 ORDER BY reward_id"
                .to_owned(),
        ),
    ];
    let mut doc = Map::new();
    doc.insert("customer".into(), customer);
    for (name, sql) in sections {
        let rows =
            JsonValue::find_by_statement(stmt(conn, &sql, vec![org_id.into(), customer_id.into()]))
                .all(conn)
                .await?;
        doc.insert(name.into(), JsonValue::Array(rows));
    }
    Ok(Some(JsonValue::Object(doc)))
}

/// What an erasure changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    /// Identifiers removed from the customer (mobile, email, externalId).
    pub identifiers: usize,
    /// Idempotency records of the customer whose stored request or answer held one of them.
    pub idempotency_records: u64,
    /// Webhook events of the customer whose payload or recorded answer held one of them.
    pub webhook_events: u64,
}

#[derive(Debug, FromQueryResult)]
struct Identifiers {
    mobile: Option<String>,
    email: Option<String>,
    external_id: Option<String>,
}

/// Removes customer `customer_id`'s identifiers for good: from the customer row (which stays,
/// with its ledger, marked `erased_at`), and, replaced by [`ERASED`], from the stored
/// idempotency requests and answers and the recorded webhook events that concern this
/// customer ([`erasure`](crate::erasure): found by reference, scrubbed whole value by whole
/// value). A record that changed no longer matches any request (its fingerprint is `erased`),
/// so retrying its key is refused as a key reused rather than replayed. `None` when there is
/// no such customer.
///
/// The customer row is locked first (`FOR UPDATE`): every write that names a customer locks
/// its row when it finds it (`FOR KEY SHARE`, [`customers::find`](crate::customers::find)),
/// so a write in flight for this customer commits before the records are read here, and one
/// that comes after finds the identifiers gone.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn erase<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Erased>, PersistenceError> {
    let Some(ids) = Identifiers::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT mobile, email, external_id FROM customers WHERE org_id = $1 AND id = $2{}",
            for_update(conn)
        ),
        vec![org_id.into(), customer_id.into()],
    ))
    .one(conn)
    .await?
    else {
        return Ok(None);
    };
    let who = Identity {
        id: customer_id,
        mobile: ids.mobile,
        email: ids.email,
        external_id: ids.external_id,
    };
    let identifiers = [&who.mobile, &who.email, &who.external_id]
        .into_iter()
        .flatten()
        .count();
    conn.execute_raw(stmt(
        conn,
        "UPDATE customers SET mobile = NULL, email = NULL, external_id = NULL, \
         erased_at = COALESCE(erased_at, $3) WHERE org_id = $1 AND id = $2",
        vec![org_id.into(), customer_id.into(), now.into()],
    ))
    .await?;
    let mut erased = Erased {
        identifiers,
        idempotency_records: 0,
        webhook_events: 0,
    };
    if who.has_identifiers() {
        erased.idempotency_records = erasure::scrub_records(conn, org_id, &who).await?;
        erased.webhook_events = erasure::scrub_events(conn, org_id, &who).await?;
    }
    Ok(Some(erased))
}
