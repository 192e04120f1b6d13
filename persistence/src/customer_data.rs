//! A customer's data: everything held about them (export), and the erasure of their
//! identifiers wherever they were copied (the customer row, stored idempotency requests and
//! answers, recorded webhook payloads) while the ledger keeps balancing.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, JsonValue};
use serde_json::Map;
use uuid::Uuid;

use crate::{PersistenceError, for_update, stmt};

/// The text an erased identifier is replaced with.
pub const ERASED: &str = "[erased]";

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
    /// Idempotency records whose stored request or answer held one of them.
    pub idempotency_records: u64,
    /// Webhook events whose payload held one of them.
    pub webhook_events: u64,
}

#[derive(Debug, FromQueryResult)]
struct Identifiers {
    mobile: Option<String>,
    email: Option<String>,
    external_id: Option<String>,
}

/// Removes customer `customer_id`'s identifiers for good: from the customer row (which stays,
/// with its ledger, marked `erased_at`), and, replaced by [`ERASED`], from every stored
/// idempotency request and answer and every recorded webhook payload of the organisation. A
/// record whose stored request changed no longer matches any request (its fingerprint is
/// `erased`), so retrying its key is refused as a key reused rather than replayed. `None` when
/// there is no such customer.
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
    let identifiers: Vec<String> = [ids.mobile, ids.email, ids.external_id]
        .into_iter()
        .flatten()
        .collect();
    conn.execute_raw(stmt(
        conn,
        "UPDATE customers SET mobile = NULL, email = NULL, external_id = NULL, \
         erased_at = COALESCE(erased_at, $3) WHERE org_id = $1 AND id = $2",
        vec![org_id.into(), customer_id.into(), now.into()],
    ))
    .await?;
    // Each identifier as written, and as JSON writes it inside a string (quotes and control
    // characters escaped), longest first so that no part of one survives another's replacement.
    let mut forms: Vec<String> = Vec::new();
    for id in &identifiers {
        forms.push(id.clone());
        let escaped = serde_json::to_string(id).unwrap_or_default();
        let inner = escaped.trim_matches('"').to_owned();
        if inner != *id {
            forms.push(inner);
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let (text, json) = match conn.get_database_backend() {
        DbBackend::Postgres => ("::text", "::jsonb"),
        _ => ("", ""),
    };
    let mut erased = Erased {
        identifiers: identifiers.len(),
        idempotency_records: 0,
        webhook_events: 0,
    };
    for form in forms.iter().filter(|f| !f.is_empty()) {
        let records = conn
            .execute_raw(stmt(
                conn,
                &format!(
                    "UPDATE idempotency_records SET \
                     request_fields = replace(request_fields{text}, $2, $3){json}, \
                     response = replace(response{text}, $2, $3){json}, \
                     fingerprint = CASE WHEN replace(request_fields{text}, $2, $3) <> request_fields{text} \
                                        THEN 'erased' ELSE fingerprint END \
                     WHERE org_id = $1 AND (replace(request_fields{text}, $2, $3) <> request_fields{text} \
                        OR replace(response{text}, $2, $3) <> response{text})"
                ),
                vec![org_id.into(), form.clone().into(), ERASED.into()],
            ))
            .await?;
        erased.idempotency_records += records.rows_affected();
        let events = conn
            .execute_raw(stmt(
                conn,
                "UPDATE webhook_events SET body = replace(body, $2, $3) \
                 WHERE org_id = $1 AND replace(body, $2, $3) <> body",
                vec![org_id.into(), form.clone().into(), ERASED.into()],
            ))
            .await?;
        erased.webhook_events += events.rows_affected();
    }
    Ok(Some(erased))
}
