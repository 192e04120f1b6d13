//! A customer's holds, allocations and transfers, newest first, a keyset page at a time (the
//! cursor is the id of the last item of the previous page).

use persistence::customer_lists::{self, TransferRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::app::allocate::{AllocationView, allocation_view};
use crate::app::customers::by_path;
use crate::app::error::AppError;
use crate::app::holds::{HoldView, hold_view};
use crate::engine::format::{amount, ts};

/// A page of a list keyed by uuid.
pub struct UuidPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

/// The statuses a hold can have, for `?status=`.
pub const HOLD_STATUSES: [&str; 4] = ["HELD", "CAPTURED", "VOIDED", "EXPIRED"];
/// The statuses an allocation can have, for `?status=`.
pub const ALLOCATION_STATUSES: [&str; 3] = ["PENDING", "ACTIVE", "CANCELLED"];

/// `status` when it is one of `allowed`; 400 otherwise.
fn status_of<'a>(raw: Option<&'a str>, allowed: &[&str]) -> Result<Option<&'a str>, AppError> {
    match raw {
        None => Ok(None),
        Some(s) if allowed.contains(&s) => Ok(Some(s)),
        Some(_) => Err(AppError::validation(
            "status",
            format!("must be one of {}", allowed.join(", ")),
        )),
    }
}

/// Which page of a list, and which of its items.
pub struct ListFilter<'a> {
    pub status: Option<&'a str>,
    pub cursor: Option<Uuid>,
    pub limit: u64,
}

/// The customer's holds, newest first, each with its account's current balance.
pub async fn holds(
    state: &AppState,
    org_id: i64,
    raw: &str,
    filter: ListFilter<'_>,
) -> Result<UuidPage<HoldView>, AppError> {
    let status = status_of(filter.status, &HOLD_STATUSES)?;
    let customer = by_path(state, org_id, raw).await?;
    let page = customer_lists::holds_of(
        state.db.conn(),
        org_id,
        customer.id,
        status,
        filter.cursor,
        filter.limit,
    )
    .await?;
    Ok(UuidPage {
        items: page.items.iter().map(|(h, b)| hold_view(h, *b)).collect(),
        next_cursor: page.next_cursor,
    })
}

/// The customer's allocations, newest first, each with its account's current balance.
pub async fn allocations(
    state: &AppState,
    org_id: i64,
    raw: &str,
    filter: ListFilter<'_>,
) -> Result<UuidPage<AllocationView>, AppError> {
    let status = status_of(filter.status, &ALLOCATION_STATUSES)?;
    let customer = by_path(state, org_id, raw).await?;
    let page = customer_lists::allocations_of(
        state.db.conn(),
        org_id,
        customer.id,
        status,
        filter.cursor,
        filter.limit,
    )
    .await?;
    Ok(UuidPage {
        items: page
            .items
            .iter()
            .map(|(a, b)| allocation_view(a, *b))
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// A transfer as one of its customers sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CustomerTransfer, example = json!({
    "transferId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c07", "uniqueId": "gift-12",
    "direction": "SENT", "otherCustomerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c03",
    "programId": 1, "currency": "POINTS", "amount": "25.00", "reason": "gift",
    "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct CustomerTransferView {
    pub transfer_id: String,
    pub unique_id: String,
    /// SENT (the customer gave) or RECEIVED.
    #[schema(pattern = "^(SENT|RECEIVED)$")]
    pub direction: String,
    /// The customer on the other side.
    pub other_customer_id: String,
    pub program_id: i64,
    pub currency: String,
    /// Always positive; `direction` says which way.
    pub amount: String,
    pub reason: Option<String>,
    pub created_at: String,
}

fn transfer_view(t: &TransferRow, customer: Uuid) -> CustomerTransferView {
    let (direction, other) = if t.from_customer_id == customer {
        ("SENT", t.to_customer_id)
    } else {
        ("RECEIVED", t.from_customer_id)
    };
    CustomerTransferView {
        transfer_id: t.id.to_string(),
        unique_id: t.unique_id.clone(),
        direction: direction.to_owned(),
        other_customer_id: other.to_string(),
        program_id: t.program_id,
        currency: t.currency.clone(),
        amount: amount(t.amount, t.scale),
        reason: t.reason.clone(),
        created_at: ts(t.created_at),
    }
}

/// The transfers the customer sent or received, newest first.
pub async fn transfers(
    state: &AppState,
    org_id: i64,
    raw: &str,
    cursor: Option<Uuid>,
    limit: u64,
) -> Result<UuidPage<CustomerTransferView>, AppError> {
    let customer = by_path(state, org_id, raw).await?;
    let page =
        customer_lists::transfers_of(state.db.conn(), org_id, customer.id, cursor, limit).await?;
    Ok(UuidPage {
        items: page
            .items
            .iter()
            .map(|t| transfer_view(t, customer.id))
            .collect(),
        next_cursor: page.next_cursor,
    })
}
