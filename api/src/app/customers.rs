//! Customers: enrolled, looked up, their ledger and expiring points, exported and erased.
//!
//! A customer is named in a path by its id; a path that names no customer of the organisation
//! (not a UUID, or nobody's) is 404 whatever the request, so each use case here starts from
//! [`by_path`].

use domain::customer::CustomerRef;
use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use futures_util::Stream;
use persistence::customers::{self, CustomerRow};
use persistence::{Page, ledger};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::app::error::{AppError, FieldError};
use crate::app::write::{Done, Effect, Outcome, execute};
use crate::engine::format::{amount, to_json, ts};

/// A customer's identifiers, as enrolment answers them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Customer, example = json!({
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "mobile": "919999999999",
    "email": null, "externalId": null, "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct CustomerView {
    pub customer_id: String,
    /// Digits only.
    pub mobile: Option<String>,
    /// Lower case.
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub created_at: String,
}

/// A customer with a balance per program and currency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "mobile": "919999999999",
    "email": null, "externalId": null, "createdAt": "2026-01-01T00:00:00Z",
    "balances": [{"programId": 1, "currency": "POINTS", "available": "100.00", "pending": "0.00", "held": "0.00"}]
}))]
pub struct CustomerWithBalances {
    pub customer_id: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub created_at: String,
    pub balances: Vec<AccountBalance>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountBalance {
    pub program_id: i64,
    pub currency: String,
    /// Spendable now; decimal strings at the currency's scale.
    pub available: String,
    /// Allocated with a future `maturesAt`, not yet spendable.
    pub pending: String,
    /// Reserved by holds until they are captured, voided or expire.
    pub held: String,
}

/// One change of a balance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "entryId": "1", "programId": 1, "currency": "POINTS", "kind": "CREDIT",
    "amount": "100.00", "balanceAfter": "100.00", "reference": "allocation:order-1001",
    "expiresAt": "2027-01-01T00:00:00Z", "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct LedgerEntry {
    pub entry_id: String,
    pub program_id: i64,
    pub currency: String,
    /// CREDIT, DEBIT, EXPIRE, REVERSAL, TRANSFER_IN, TRANSFER_OUT, HOLD (available to
    /// held) or RELEASE (held back to available).
    #[schema(pattern = "^(CREDIT|DEBIT|EXPIRE|REVERSAL|TRANSFER_IN|TRANSFER_OUT|HOLD|RELEASE)$")]
    pub kind: String,
    /// Always positive; `kind` gives the direction.
    pub amount: String,
    /// The available balance after the entry.
    pub balance_after: String,
    pub reference: Option<String>,
    pub expires_at: Option<String>,
    pub created_at: String,
}

/// A lot that expires soon: what is left of it and when it goes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "lotId": "7", "programId": 1, "currency": "POINTS", "amount": "40.00", "held": "0.00",
    "expiresAt": "2026-12-01T00:00:00Z", "notifiedAt": null
}))]
pub struct ExpiringLotView {
    /// The ledger entry that credited the lot.
    pub lot_id: String,
    pub program_id: i64,
    pub currency: String,
    /// What is left of the lot, held parts included (they expire with it).
    pub amount: String,
    /// The part of `amount` that holds reserve.
    pub held: String,
    pub expires_at: String,
    /// When the `currency.expiring` notice of the lot was written; null before.
    pub notified_at: Option<String>,
}

/// What an erasure did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Erasure, example = json!({
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "erasedAt": "2026-01-01T00:00:00Z",
    "identifiersErased": 2, "idempotencyRecordsScrubbed": 3, "webhookEventsScrubbed": 0
}))]
pub struct ErasureView {
    pub customer_id: String,
    pub erased_at: String,
    /// Mobile, email and externalId removed (those the customer had).
    pub identifiers_erased: usize,
    /// Stored idempotency requests and answers that held an identifier.
    pub idempotency_records_scrubbed: u64,
    /// Recorded webhook payloads that held an identifier.
    pub webhook_events_scrubbed: u64,
}

/// A customer's identifiers: what every view of a customer starts with.
fn identity(c: &CustomerRow) -> CustomerView {
    CustomerView {
        customer_id: c.id.to_string(),
        mobile: c.mobile.clone(),
        email: c.email.clone(),
        external_id: c.external_id.clone(),
        created_at: ts(c.created_at),
    }
}

/// The customer with a balance per program and currency, read now.
async fn with_balances(
    state: &AppState,
    org_id: i64,
    c: &CustomerRow,
) -> Result<CustomerWithBalances, AppError> {
    let balances = ledger::balances_of(state.db.conn(), org_id, c.id).await?;
    let CustomerView {
        customer_id,
        mobile,
        email,
        external_id,
        created_at,
    } = identity(c);
    Ok(CustomerWithBalances {
        customer_id,
        mobile,
        email,
        external_id,
        created_at,
        balances: balances
            .iter()
            .map(|b| AccountBalance {
                program_id: b.program_id,
                currency: b.currency.clone(),
                available: amount(b.available, b.scale),
                pending: amount(b.pending, b.scale),
                held: amount(b.held, b.scale),
            })
            .collect(),
    })
}

/// The id a `{customerId}` path gives; a path that is no UUID names nobody (404).
fn id_of(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::not_found("customer"))
}

/// The customer a `{customerId}` path names, in this organisation; 404 when it names none.
pub async fn by_path(state: &AppState, org_id: i64, raw: &str) -> Result<CustomerRow, AppError> {
    let id = id_of(raw)?;
    customers::lookup(state.db.conn(), org_id, &CustomerRef::CustomerId(id))
        .await?
        .ok_or_else(|| AppError::not_found("customer"))
}

/// Enrols a customer by one identifier, exactly once per key: created now (201), or the
/// customer that identifier already names (200). A customer id is given by the service, so a
/// request that names one is refused.
pub async fn create(
    state: &AppState,
    org_id: i64,
    key: Option<&IdempotencyKey>,
    customer: CustomerRef,
) -> Result<Outcome, AppError> {
    if matches!(customer, CustomerRef::CustomerId(_)) {
        return Err(AppError::validation(
            "customerId",
            "a customer is enrolled by mobile, email or externalId",
        ));
    }
    let now = state.now();
    let meaning = RequestMeaning::new().with("customer", Some(&customer));
    execute(
        state,
        org_id,
        Operation::CustomerCreate,
        key,
        &meaning,
        async |tx| {
            let enrolment = customers::find_or_enroll(tx, org_id, &customer, now)
                .await?
                .ok_or_else(|| AppError::Internal("enrolment returned no customer".into()))?;
            let row = enrolment.row;
            let effect = Effect::created(to_json(&identity(&row)), row.id);
            Ok(if !enrolment.new {
                effect.done(Done::Updated)
            } else {
                effect
            })
        },
    )
    .await
}

/// Finds a customer by `identifierType` and `identifierValue`, with balances; never enrols.
/// An unknown identifierType is a malformed request; a value that no customer can have (a
/// "mobile" with letters) is a search that finds nobody.
pub async fn lookup(
    state: &AppState,
    org_id: i64,
    kind: Option<&str>,
    value: Option<&str>,
) -> Result<CustomerWithBalances, AppError> {
    let (Some(kind), Some(value)) = (kind, value) else {
        return Err(AppError::Validation(vec![
            FieldError::new("identifierType", "is required"),
            FieldError::new("identifierValue", "is required"),
        ]));
    };
    let customer = match CustomerRef::parse(kind, value) {
        Ok(customer) => customer,
        Err(("identifierType", e)) => {
            return Err(AppError::validation("identifierType", e.message));
        }
        Err(_) => return Err(AppError::not_found("customer")),
    };
    let row = customers::lookup(state.db.conn(), org_id, &customer)
        .await?
        .ok_or_else(|| AppError::not_found("customer"))?;
    with_balances(state, org_id, &row).await
}

/// The customer a path names, with balances.
pub async fn get(
    state: &AppState,
    org_id: i64,
    raw: &str,
) -> Result<CustomerWithBalances, AppError> {
    let row = by_path(state, org_id, raw).await?;
    with_balances(state, org_id, &row).await
}

/// Which entries of a ledger to show: a program (`programId`, empty for all), a currency
/// (empty for all), and the page.
pub struct LedgerFilter<'a> {
    pub program_id: Option<&'a str>,
    pub currency: Option<&'a str>,
    pub cursor: Option<i64>,
    pub limit: u64,
}

/// The customer's ledger, newest first, a keyset page at a time.
pub async fn ledger(
    state: &AppState,
    org_id: i64,
    raw: &str,
    filter: LedgerFilter<'_>,
) -> Result<Page<LedgerEntry>, AppError> {
    let program_id = match filter.program_id.filter(|p| !p.is_empty()) {
        None => None,
        // Written as ids are given: digits, no sign, no leading zero.
        Some(p) => Some(
            p.parse::<i64>()
                .ok()
                .filter(|n| *n > 0 && !p.starts_with(['0', '+']))
                .ok_or_else(|| AppError::validation("programId", "must be a program id"))?,
        ),
    };
    let customer = by_path(state, org_id, raw).await?;
    let result = ledger::entries_of(
        state.db.conn(),
        org_id,
        customer.id,
        program_id,
        filter.currency.filter(|c| !c.is_empty()),
        filter.cursor,
        filter.limit,
    )
    .await?;
    Ok(Page {
        items: result
            .items
            .iter()
            .map(|e| LedgerEntry {
                entry_id: e.id.to_string(),
                program_id: e.program_id,
                currency: e.currency.clone(),
                kind: e.kind.clone(),
                amount: amount(e.amount, e.scale),
                balance_after: amount(e.balance_after, e.scale),
                reference: e.reference.clone(),
                expires_at: e.expires_at.map(ts),
                created_at: ts(e.created_at),
            })
            .collect(),
        next_cursor: result.next_cursor,
    })
}

/// The pattern of `within`, for the API's description: what [`parse_within`] accepts.
pub const WITHIN_PATTERN: &str = "^[1-9][0-9]{0,3}[dh]$";

/// `30d`, `12h`: a window of 1 to 9999 days or hours; 30 days when absent.
fn parse_within(raw: Option<&str>) -> Result<chrono::Duration, AppError> {
    let Some(raw) = raw else {
        return Ok(chrono::Duration::days(30));
    };
    let invalid = || AppError::validation("within", "must be days or hours, like 30d or 12h");
    let (digits, hours) = match (raw.strip_suffix('d'), raw.strip_suffix('h')) {
        (Some(d), _) => (d, false),
        (None, Some(h)) => (h, true),
        (None, None) => return Err(invalid()),
    };
    if digits.is_empty()
        || digits.len() > 4
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let n: i64 = digits.parse().map_err(|_| invalid())?;
    Ok(if hours {
        chrono::Duration::hours(n)
    } else {
        chrono::Duration::days(n)
    })
}

/// The customer's lots with something left that expire within `within` (see
/// [`parse_within`]), soonest first.
pub async fn expiring(
    state: &AppState,
    org_id: i64,
    raw: &str,
    within: Option<&str>,
    cursor: Option<i64>,
    limit: u64,
) -> Result<Page<ExpiringLotView>, AppError> {
    let within = parse_within(within)?;
    let customer = by_path(state, org_id, raw).await?;
    let now = state.now();
    let result = persistence::expiring::of_customer(
        state.db.conn(),
        org_id,
        customer.id,
        now,
        now + within,
        cursor,
        limit,
    )
    .await?;
    Ok(Page {
        items: result
            .items
            .iter()
            .map(|l| ExpiringLotView {
                lot_id: l.id.to_string(),
                program_id: l.program_id,
                currency: l.currency.clone(),
                amount: amount(l.remaining, l.scale),
                held: amount(l.held, l.scale),
                expires_at: ts(l.expires_at),
                notified_at: l.notified_at.map(ts),
            })
            .collect(),
        next_cursor: result.next_cursor,
    })
}

/// Everything held about the customer, as one JSON document written a page of rows at a time
/// (see [`crate::app::export`]); 404 before anything is written when the path names nobody.
pub async fn export(
    state: &AppState,
    org_id: i64,
    raw: &str,
) -> Result<impl Stream<Item = Result<String, AppError>> + use<>, AppError> {
    let id = id_of(raw)?;
    let customer = persistence::customer_data::export_customer(state.db.conn(), org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("customer"))?;
    Ok(crate::app::export::stream(
        state.db.clone(),
        org_id,
        id,
        customer,
        ts(state.now()),
    ))
}

/// Erases the customer's identifiers for good; the ledger and its amounts stay. The erasure is
/// keyed by the customer itself (returned with the outcome, for the answer): a second erase
/// replays the first.
pub async fn erase(
    state: &AppState,
    org_id: i64,
    raw: &str,
) -> Result<(Outcome, IdempotencyKey), AppError> {
    let id = id_of(raw)?;
    let key = IdempotencyKey::parse(&id.to_string()).map_err(|e| AppError::Internal(e.message))?;
    let now = state.now();
    let outcome = execute(
        state,
        org_id,
        Operation::CustomerErase,
        Some(&key),
        &RequestMeaning::new().with("customerId", Some(id)),
        async |tx| {
            let done = persistence::customer_data::erase(tx, org_id, id, now)
                .await?
                .ok_or_else(|| AppError::not_found("customer"))?;
            let body = to_json(&ErasureView {
                customer_id: id.to_string(),
                erased_at: ts(now),
                identifiers_erased: done.identifiers,
                idempotency_records_scrubbed: done.idempotency_records,
                webhook_events_scrubbed: done.webhook_events,
            });
            Ok(Effect::created(body, id))
        },
    )
    .await?;
    Ok((outcome, key))
}
