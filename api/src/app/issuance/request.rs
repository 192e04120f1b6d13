//! The checks of an issuance request's items, before anything is read or written.

use std::collections::HashSet;

use domain::idempotency::IdempotencyKey;
use domain::issuance::{MAX_QUANTITY, MAX_UNITS_PER_REQUEST};

use super::IssueItem;
use crate::app::error::{AppError, FieldError};

/// One item as the request asks it.
#[derive(Debug, Clone)]
pub struct RequestedItem {
    pub reward_id: i64,
    pub quantity: i64,
    pub request_id: String,
}

/// Checks a request's items (`prefix` names them in errors: `rewards[1].quantity`; none for
/// the single request, whose item's fields are the request's): 1 to `max` of them, distinct `requestId`s, sane quantities.
pub fn check_items(
    items: &[RequestedItem],
    max: usize,
    prefix: &str,
) -> Result<Vec<IssueItem>, AppError> {
    if items.is_empty() {
        return Err(AppError::validation(prefix, "must have at least one item"));
    }
    if items.len() > max {
        return Err(AppError::validation(
            prefix,
            format!("must have at most {max} items"),
        ));
    }
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    let mut units: i64 = 0;
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}[{i}].{name}")
            }
        };
        let quantity = item.quantity;
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            errors.push(FieldError::new(
                field("quantity"),
                format!("must be from 1 to {MAX_QUANTITY}"),
            ));
        }
        units = units.saturating_add(quantity.max(0));
        match IdempotencyKey::parse(&item.request_id) {
            Ok(key) if !seen.insert(key.clone()) => errors.push(FieldError::new(
                field("requestId"),
                "appears more than once in this request",
            )),
            Ok(key) => out.push(IssueItem {
                request_id: key,
                reward_id: item.reward_id,
                quantity,
            }),
            Err(e) => errors.push(FieldError::new(field("requestId"), e.message)),
        }
    }
    if errors.is_empty() && units > MAX_UNITS_PER_REQUEST {
        errors.push(FieldError::new(
            if prefix.is_empty() {
                "quantity"
            } else {
                prefix
            },
            format!("ask for at most {MAX_UNITS_PER_REQUEST} units in one request"),
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(AppError::Validation(errors))
    }
}
