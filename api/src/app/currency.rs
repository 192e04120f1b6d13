//! What the currency use cases share: balances as answered, amounts checked against their
//! currency, the refusal for a short balance, and the course of a background round.

use domain::Decimal;
use domain::idempotency::RequestMeaning;
use domain::money::Scale;
use persistence::ledger::{self, Account};
use persistence::{ConnectionTrait, PersistenceError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{AppError, AppState};
use crate::engine::format::amount;
use crate::engine::rounds::{Round, Step};

/// An account's balance after the operation: what can be spent, what is promised and not yet
/// spendable, and what holds reserve. Decimal strings at the currency's scale.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"available": "100.00", "pending": "0.00", "held": "0.00"}))]
pub struct Balance {
    pub available: String,
    pub pending: String,
    pub held: String,
}

impl Balance {
    pub fn of(t: ledger::Totals, scale: i16) -> Self {
        Self {
            available: amount(t.available, scale),
            pending: amount(t.pending, scale),
            held: amount(t.held, scale),
        }
    }
}

/// The refusal of a spend the available balance does not cover.
pub fn insufficient() -> AppError {
    AppError::Unprocessable {
        code: "INSUFFICIENT_BALANCE",
        detail: "The available balance is less than the amount.".into(),
        retryable: true,
    }
}

/// An amount to move (`field`), normalised: more than zero, or 400.
pub fn more_than_zero(field: &str, value: Decimal) -> Result<Decimal, AppError> {
    let value = value.normalize();
    if value <= Decimal::ZERO {
        return Err(AppError::validation(field, "must be more than zero"));
    }
    Ok(value)
}

/// The fields every spending write has (redemption, hold, transfer), checked: an amount of
/// more than zero, and the currency's code as stored.
pub fn spend_fields(currency: &str, amount: Decimal) -> Result<(String, Decimal), AppError> {
    let requested = more_than_zero("amount", amount)?;
    let currency = domain::catalog::CurrencyCode::parse(currency)
        .map_err(|e| AppError::validation("currency", e.message))?
        .as_str()
        .to_owned();
    Ok((currency, requested))
}

/// The compared meaning of those fields.
pub fn spend_meaning(program_id: i64, currency: &str, requested: Decimal) -> RequestMeaning {
    RequestMeaning::new()
        .with("programId", Some(program_id))
        .with("currency", Some(currency))
        .with("amount", Some(requested))
}

/// `value` in the minor units of a currency of `scale` places: 422 (naming `field`) for more
/// decimals than it keeps.
pub fn to_minor(scale: i16, field: &str, value: Decimal) -> Result<i64, AppError> {
    Scale::new(i64::from(scale))
        .map_err(|e| AppError::Internal(e.message))?
        .to_minor(value)
        .map_err(|e| AppError::not_representable(field, &e.message))
}

/// `amount` of the program's `currency` in minor units, with the currency's scale: 404 for an
/// unknown program, 400 for a currency it does not have, 422 for more decimals than it keeps.
/// The outer error is the database's; the inner one is the request's definite refusal.
pub async fn in_minor_units<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    org_id: i64,
    program_id: i64,
    currency: &str,
    amount: Decimal,
    field: &str,
) -> Result<Result<(i16, i64), AppError>, PersistenceError> {
    let Some(program) = state.caches.program(conn, org_id, program_id).await? else {
        return Ok(Err(AppError::not_found("program")));
    };
    let Some(cur) = program.currencies.iter().find(|c| c.code == currency) else {
        return Ok(Err(AppError::unknown_currency("currency", currency)));
    };
    let scale = match Scale::new(i64::from(cur.scale)) {
        Ok(scale) => scale,
        Err(_) => {
            return Ok(Err(AppError::Internal(format!(
                "currency {} has a bad scale",
                cur.code
            ))));
        }
    };
    Ok(scale
        .to_minor(amount)
        .map(|minor| (cur.scale, minor))
        .map_err(|e| AppError::not_representable(field, &e.message)))
}

/// The account of a customer in a program's currency.
pub fn account(org_id: i64, customer_id: uuid::Uuid, program_id: i64, currency: &str) -> Account {
    Account {
        org_id,
        customer_id,
        program_id,
        currency: currency.to_owned(),
    }
}

/// One round of a background job over the items it found due: each item in a transaction of
/// its own (`one`), its step counted, and a failure recorded under `job` (with the item's
/// `id`) without stopping the round.
pub async fn round<T, K, E, Fut>(
    job: &'static str,
    items: Vec<T>,
    id: impl Fn(&T) -> K,
    mut one: impl FnMut(T) -> Fut,
) -> Round<K>
where
    K: std::fmt::Debug,
    E: std::fmt::Display,
    Fut: Future<Output = Result<Step, E>>,
{
    let mut round = Round::default();
    for item in items {
        let key = id(&item);
        match one(item).await {
            Ok(step) => round.add(step),
            Err(e) => round.fail(job, key, &e),
        }
    }
    round
}
