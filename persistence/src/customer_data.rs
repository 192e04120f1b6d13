//! A customer's data: everything held about them (export), and the erasure of their
//! identifiers from the customer row and from the stored records that concern them
//! ([`erasure`](crate::erasure)) while the ledger keeps balancing.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, JsonValue, Value};
use uuid::Uuid;

use crate::erasure::{self, Identity};
use crate::{PersistenceError, for_update, stmt};

pub use crate::erasure::ERASED;

/// The scale of a row's currency, for rows with `org_id`, `program_id` and `currency`.
const SCALE: &str = "(SELECT pc.scale FROM program_currencies pc WHERE pc.org_id = t.org_id \
     AND pc.program_id = t.program_id AND pc.code = t.currency) AS scale";

/// A section of a customer's export: its name in the document, its query (rows of one
/// customer after a cursor, in the order of the cursor's column), and the field of a row that
/// is its cursor.
struct Section {
    name: &'static str,
    /// `$1` organisation, `$2` customer, `$3` the cursor (rows after it), `$4` the page size.
    sql: String,
    /// The row's field holding its cursor value, and whether it is a uuid (else an integer).
    key: &'static str,
    uuid: bool,
}

/// The sections of an export, in the order of the document.
fn sections() -> Vec<Section> {
    let uuid_page = |table: &str, select: &str, who: &str| {
        format!(
            "SELECT {select}, {SCALE} FROM {table} t WHERE org_id = $1 AND {who} \
             AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
        )
    };
    vec![
        Section {
            name: "balances",
            sql: format!(
                "SELECT program_id, currency, available, pending, held, updated_at, {SCALE}, \
                 row_number() OVER (ORDER BY program_id, currency) AS n \
                 FROM balances t WHERE org_id = $1 AND customer_id = $2 \
                 ORDER BY program_id, currency LIMIT $4 OFFSET COALESCE($3, 0)"
            ),
            key: "n",
            uuid: false,
        },
        Section {
            name: "ledger",
            sql: format!(
                "SELECT id AS entry_id, program_id, currency, kind, amount, balance_after, \
                 reference, remaining, held, expires_at, created_at, {SCALE} \
                 FROM ledger_entries t WHERE org_id = $1 AND customer_id = $2 \
                 AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
            ),
            key: "entry_id",
            uuid: false,
        },
        Section {
            name: "allocations",
            sql: uuid_page(
                "allocations",
                "id AS allocation_id, unique_id, program_id, currency, amount, source_value, \
                 award_strategy_id, expiry_strategy_id, event_name, event_source_id, status, \
                 expires_at, matures_at, activated_at, reversed_amount, reversed_at, capped, \
                 uncapped_amount, created_at",
                "customer_id = $2",
            ),
            key: "allocation_id",
            uuid: true,
        },
        Section {
            name: "redemptions",
            sql: uuid_page(
                "redemptions",
                "id AS redemption_id, unique_id, program_id, currency, amount, reason, created_at",
                "customer_id = $2",
            ),
            key: "redemption_id",
            uuid: true,
        },
        Section {
            name: "holds",
            sql: uuid_page(
                "holds",
                "id AS hold_id, unique_id, program_id, currency, amount, held, captured_amount, \
                 released_amount, expired_amount, status, reason, expires_at, created_at, \
                 updated_at",
                "customer_id = $2",
            ),
            key: "hold_id",
            uuid: true,
        },
        Section {
            name: "transfers",
            sql: uuid_page(
                "transfers",
                "id AS transfer_id, unique_id, from_customer_id, to_customer_id, program_id, \
                 currency, amount, reason, created_at",
                "(from_customer_id = $2 OR to_customer_id = $2)",
            ),
            key: "transfer_id",
            uuid: true,
        },
        Section {
            name: "issuances",
            sql: "SELECT seq, id AS issuance_id, request_id, reward_id, quantity, brand, \
                  transaction_number, status, created_at, cancelled_at \
                  FROM issuances WHERE org_id = $1 AND customer_id = $2 \
                  AND ($3 IS NULL OR seq > $3) ORDER BY seq LIMIT $4"
                .to_owned(),
            key: "seq",
            uuid: false,
        },
        Section {
            name: "vouchers",
            sql: "SELECT v.id, v.issuance_id, v.code FROM vouchers v JOIN issuances i \
                  ON i.org_id = v.org_id AND i.id = v.issuance_id \
                  WHERE v.org_id = $1 AND i.customer_id = $2 AND ($3 IS NULL OR v.id > $3) \
                  ORDER BY v.id LIMIT $4"
                .to_owned(),
            key: "id",
            uuid: false,
        },
        Section {
            name: "rewardHoldings",
            sql: "SELECT reward_id, held FROM customer_reward_counts \
                  WHERE org_id = $1 AND customer_id = $2 AND ($3 IS NULL OR reward_id > $3) \
                  ORDER BY reward_id LIMIT $4"
                .to_owned(),
            key: "reward_id",
            uuid: false,
        },
    ]
}

/// The names of the sections of an export, in the order [`export_page`] reads them.
pub const EXPORT_SECTIONS: [&str; 9] = [
    "balances",
    "ledger",
    "allocations",
    "redemptions",
    "holds",
    "transfers",
    "issuances",
    "vouchers",
    "rewardHoldings",
];

/// Where an export has got to in a section: after the row with this cursor value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportCursor {
    Int(i64),
    Uuid(Uuid),
}

/// The customer row of an export (identifiers, `created_at`, `erased_at`); `None` when there
/// is no such customer.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn export_customer<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
) -> Result<Option<JsonValue>, PersistenceError> {
    Ok(JsonValue::find_by_statement(stmt(
        conn,
        "SELECT id AS customer_id, mobile, email, external_id, created_at, erased_at \
         FROM customers WHERE org_id = $1 AND id = $2",
        vec![org_id.into(), customer_id.into()],
    ))
    .one(conn)
    .await?)
}

/// One page of section `section` (an index of [`EXPORT_SECTIONS`]) of the export of customer
/// `customer_id`: up to `limit` rows after `after` (amounts in minor units, each row with its
/// currency's `scale`), and the cursor of the next page (`None` when the section is done). One
/// short statement per page, so an export of any size holds no statement open and no more
/// than a page in memory.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn export_page<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    section: usize,
    after: Option<&ExportCursor>,
    limit: u32,
) -> Result<(Vec<JsonValue>, Option<ExportCursor>), PersistenceError> {
    let Some(s) = sections().into_iter().nth(section) else {
        return Ok((Vec::new(), None));
    };
    let cursor: Value = match (after, s.uuid) {
        (Some(ExportCursor::Uuid(id)), _) => (*id).into(),
        (Some(ExportCursor::Int(n)), _) => (*n).into(),
        (None, true) => Value::Uuid(None),
        (None, false) => Value::BigInt(None),
    };
    let mut rows = JsonValue::find_by_statement(stmt(
        conn,
        &s.sql,
        vec![
            org_id.into(),
            customer_id.into(),
            cursor,
            i64::from(limit).into(),
        ],
    ))
    .all(conn)
    .await?;
    let full = rows.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next = rows.last().and_then(|row| {
        let v = row.get(s.key)?;
        if s.uuid {
            v.as_str()
                .and_then(|t| Uuid::parse_str(t).ok())
                .map(ExportCursor::Uuid)
        } else {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .map(ExportCursor::Int)
        }
    });
    // Columns read only to page (not part of the document as it always was).
    for row in &mut rows {
        if let Some(obj) = row.as_object_mut() {
            match s.name {
                "balances" => {
                    obj.remove("n");
                }
                "issuances" => {
                    obj.remove("seq");
                }
                "vouchers" => {
                    obj.remove("id");
                }
                _ => {}
            }
        }
    }
    Ok((rows, if full { next } else { None }))
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
